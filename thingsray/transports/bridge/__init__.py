"""Bridges to external MQTT brokers: subscribe, map each message to a device's telemetry and
attributes (ThingsBoard IoT Gateway's MQTT connector mapping), create devices on first sight."""

from thingsray.transports.bridge.client import Backoff, BridgeState, BridgeStats, MqttBridge
from thingsray.transports.bridge.config import (
    BridgeConfig,
    BridgeConfigError,
    load_bridge_file,
    parse_bridge,
    parse_bridges,
)
from thingsray.transports.bridge.convert import DeviceData, convert, topic_matches

__all__ = ["Backoff", "BridgeConfig", "BridgeConfigError", "BridgeState", "BridgeStats", "DeviceData", "MqttBridge",
           "convert", "load_bridge_file", "parse_bridge", "parse_bridges", "topic_matches"]
