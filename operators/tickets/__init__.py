"""The tickets domain: reference data, enrich, parse, sessions, intents, router, workers, respond,
its surge."""
