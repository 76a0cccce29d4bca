"""The audit service's wire contracts."""
