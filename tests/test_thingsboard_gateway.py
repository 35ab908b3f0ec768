"""The real ThingsBoard IoT Gateway (``thingsboard-gateway``, the judge of gateway compatibility)
against the running platform: its MQTT connector reads a sensor's messages from Mosquitto and
reports the sensor as a child device through our gateway API.

The gateway is not a dependency of thingsray (it pins libraries of its own); it runs from a
virtualenv of its own, found by THINGSRAY_TB_GATEWAY (the ``thingsboard-gateway`` program), on the
PATH, or in /tmp/tbgw-venv."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from tests.conftest import eventually, unique

INSTALL = ("python3.11 -m venv /tmp/tbgw-venv && /tmp/tbgw-venv/bin/pip install thingsboard-gateway==3.8.5 "
           "(or set THINGSRAY_TB_GATEWAY to a thingsboard-gateway program)")
BROKER = ("127.0.0.1", 1883)


def gateway_program() -> str | None:
    for candidate in (os.environ.get("THINGSRAY_TB_GATEWAY"), shutil.which("thingsboard-gateway"),
                      "/tmp/tbgw-venv/bin/thingsboard-gateway"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def broker_up() -> bool:
    try:
        socket.create_connection(BROKER, timeout=2).close()
        return True
    except OSError:
        return False


PROGRAM = gateway_program()
pytestmark = [
    pytest.mark.skipif(PROGRAM is None, reason=f"the thingsboard-gateway program is not installed: {INSTALL}"),
    pytest.mark.skipif(not broker_up(), reason="no Mosquitto on 127.0.0.1:1883 for the gateway's MQTT connector"),
]


def write_config(directory: Path, mqtt_port: int, token: str, topic: str) -> None:
    directory.mkdir()
    (directory / "tb_gateway.json").write_text(json.dumps({
        "thingsboard": {
            "host": "127.0.0.1", "port": mqtt_port, "remoteShell": False, "remoteConfiguration": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False}, "maxPayloadSizeBytes": 8196, "minPackSendDelayMS": 50,
            "checkConnectorsConfigurationInSeconds": 60, "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": token}, "qos": 1,
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 100000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "mqtt", "name": "Sensors from Mosquitto", "configuration": "mqtt.json"}],
    }))
    (directory / "mqtt.json").write_text(json.dumps({
        "broker": {"host": BROKER[0], "port": BROKER[1], "clientId": f"tbgw-{uuid.uuid4().hex[:8]}",
                   "version": 5, "maxMessageNumberPerWorker": 10, "maxNumberOfWorkers": 10,
                   "security": {"type": "anonymous"}},
        "mapping": [{
            "topicFilter": topic, "subscriptionQos": 1,
            "converter": {
                "type": "json",
                "deviceInfo": {"deviceNameExpressionSource": "message", "deviceNameExpression": "${serialNumber}",
                               "deviceProfileExpressionSource": "constant", "deviceProfileExpression": "Sensor"},
                "timeout": 60000,
                "attributes": [{"type": "string", "key": "model", "value": "${model}"}],
                "timeseries": [{"type": "double", "key": "temperature", "value": "${temp}"}],
            },
        }],
        "requestsMapping": {},
    }))
    (directory / "logs.json").write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "plain",
                              "filename": str(directory.parent / "gateway.log")}},
        "root": {"level": "INFO", "handlers": ["file"]},
    }))


@pytest.fixture
def running_gateway(tmp_path: Path, tenant, mqtt_port) -> Iterator[dict[str, Any]]:
    token = f"TBGW-{uuid.uuid4().hex[:12]}"
    created = tenant.post("/api/device", params={"accessToken": token},
                          json={"name": unique("iot gateway"), "additionalInfo": {"gateway": True}})
    assert created.status_code == 200, created.text
    topic = f"thingsray-test/{uuid.uuid4().hex[:8]}/data"
    write_config(tmp_path / "config", mqtt_port, token, topic)
    assert PROGRAM is not None
    output = (tmp_path / "gateway.out").open("w")
    process = subprocess.Popen([PROGRAM], cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
                               env={**os.environ, "TB_GW_CONFIG_DIR": str(tmp_path / "config")})
    try:
        yield {"id": created.json()["id"]["id"], "topic": topic, "log": tmp_path / "gateway.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()


def test_a_sensor_behind_the_real_gateway_appears_with_its_telemetry(tenant, running_gateway):
    sensor = unique("sensor")
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
    publisher.connect(*BROKER)
    publisher.loop_start()

    def child() -> dict[str, Any] | None:
        # repeated until the gateway's connector has subscribed and reported the sensor
        publisher.publish(running_gateway["topic"], json.dumps({"serialNumber": sensor, "temp": 42.5,
                                                                "model": "TH-1"}), qos=1)
        found = tenant.get("/api/tenant/devices", params={"deviceName": sensor})
        return found.json() if found.status_code == 200 else None

    try:
        device = eventually(child, "the sensor reported by thingsboard-gateway", wait=90)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    log = running_gateway["log"]
    assert device["type"] == "Sensor", log.read_text() if log.exists() else "no gateway log"
    relations = tenant.get("/api/relations", params={"fromId": running_gateway["id"], "fromType": "DEVICE"}).json()
    assert [(r["to"]["id"], r["type"]) for r in relations] == [(device["id"]["id"], "Created")]

    def telemetry() -> dict[str, Any] | None:
        values = tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']['id']}/values/timeseries",
                            params={"keys": "temperature"}).json()
        points = values.get("temperature") or [{}]
        return points if points[0].get("value") is not None else None  # a key without data has value null

    temperature = eventually(telemetry, "the sensor's telemetry")
    assert float(temperature[0]["value"]) == 42.5

    def model() -> bool:
        attributes = tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']['id']}/values/attributes/CLIENT_SCOPE")
        return any(a["key"] == "model" and a["value"] == "TH-1" for a in attributes.json())

    eventually(model, "the sensor's client attribute")
