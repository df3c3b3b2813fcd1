"""The ground floor: every setting (`operators.config.settings.Settings`) and the redaction of
secrets in what is shown (`operators.config.redact`). Imports nothing of the project but
`operators.errors`, so every layer can read it."""
