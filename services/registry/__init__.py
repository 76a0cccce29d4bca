"""Registry service: models, versions, artifacts, aliases and their lifecycle."""
