"""The scoring service's wire contracts."""
