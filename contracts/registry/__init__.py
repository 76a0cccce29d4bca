"""The registry's wire contracts."""
