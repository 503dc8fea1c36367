"""Ingest: the sensor registry, validation, the MQTT collector and its benchmark."""
