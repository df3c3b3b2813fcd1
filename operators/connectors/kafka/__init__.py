"""Kafka transport of the flows: a source of `RawRecord`s, a delivery-checked sink of `OutRecord`s,
topic creation and an input loader. Used when `KAFKA_BOOTSTRAP_SERVERS` is set."""
