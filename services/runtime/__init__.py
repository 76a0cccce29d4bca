"""What every service shares: settings, db, event bus, outbox, auth, errors, telemetry."""
