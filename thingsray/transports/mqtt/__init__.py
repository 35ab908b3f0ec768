"""MQTT: codec, session, adaptor."""
