"""Monitoring: outcomes, drift, data quality, performance and fairness per model version and window."""
