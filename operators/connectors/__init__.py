"""Where records come from and go to: files and stdout (`sources`, `sinks`), Kafka (`kafka/`), and
`io`, which picks them from the settings."""
