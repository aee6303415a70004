"""Kafka adapters: topic administration, a confirming producer and the shared consumer loop."""
