"""Online scoring: routing, decisions on the record."""
