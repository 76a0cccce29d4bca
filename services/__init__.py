"""modelgov's services and the runtime they share."""
