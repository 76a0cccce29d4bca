"""Monitoring wire types: reference profiles, policies, figures, API bodies and events."""
