"""The audit service: an append-only, hash-chained copy of every event, rebuilt from the log."""
