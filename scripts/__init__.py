"""Developer scripts; a package so tests can import ``scripts.kafka_broker``."""
