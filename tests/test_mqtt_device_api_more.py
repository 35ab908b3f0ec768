"""More of the MQTT device API against the running platform: MQTT_BASIC credentials, the
mosquitto_pub line of the README, keep-alive, and the layering rule of transports."""

from __future__ import annotations

import ast
import json
import pathlib
import shutil
import socket
import subprocess
import time
import uuid
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import unique
from tests.test_mqtt_device_api import WAIT, eventually, timeseries
from thingsray.transports.mqtt import codec


def connack(port: int, client_id: str, username: str | None, password: str | None) -> Any:
    results: list[Any] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if username is not None:
        c.username_pw_set(username, password)
    c.on_connect = lambda _c, _u, _f, reason, _p: results.append(reason)
    c.connect("127.0.0.1", port)
    c.loop_start()
    eventually(lambda: results, "CONNACK")
    c.loop_stop()
    c.disconnect()
    return results[0]


def test_mqtt_basic_credentials(platform, mqtt_port, tenant):
    client_id, user, password = f"cid-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}", "s3cret-pw"
    body = {"device": {"name": unique("basic device")},
            "credentials": {"credentialsType": "MQTT_BASIC", "credentialsValue": json.dumps(
                {"clientId": client_id, "userName": user, "password": password})}}
    created = tenant.post("/api/device-with-credentials", json=body)
    assert created.status_code == 200, created.text
    device_id = created.json()["id"]["id"]
    assert connack(mqtt_port, client_id, user, "wrong") == "Bad user name or password"
    # another client id does not match the credentials; with a password given, ThingsBoard says so
    assert connack(mqtt_port, "other-client", user, password) == "Bad user name or password"
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(user, password)
    c.connect("127.0.0.1", mqtt_port)
    c.loop_start()
    c.publish("v1/devices/me/telemetry", '{"basic":1}', qos=1).wait_for_publish(WAIT)
    c.disconnect()
    c.loop_stop()
    assert "basic" in timeseries(platform, device_id)


def test_the_readme_mosquitto_pub_line(platform, mqtt_port, tenant):
    binary = shutil.which("mosquitto_pub")
    if binary is None:
        pytest.skip("mosquitto_pub is not installed (Debian package mosquitto-clients)")
    token = f"PUB-{uuid.uuid4().hex[:10]}"
    created = tenant.post("/api/device", params={"accessToken": token}, json={"name": unique("pub device")})
    device_id = created.json()["id"]["id"]
    done = subprocess.run([binary, "-h", "127.0.0.1", "-p", str(mqtt_port), "-u", token, "-q", "1",
                           "-t", "v1/devices/me/telemetry", "-m", '{"temperature":25}'],
                          capture_output=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert timeseries(platform, device_id)["temperature"][0][1] == "25"


def test_a_silent_session_is_closed_after_one_and_a_half_keep_alives(platform, mqtt_port):
    with socket.create_connection(("127.0.0.1", mqtt_port), timeout=WAIT) as s:
        s.sendall(codec.connect_packet("silent", username="A1_TEST_TOKEN", keep_alive=1))
        assert s.recv(4) == b"\x20\x02\x00\x00"
        started = time.monotonic()
        assert s.recv(16) == b""  # closed by the server, not by our timeout
        assert time.monotonic() - started < WAIT


def test_transports_import_neither_ray_nor_actors():
    root = pathlib.Path(__file__).resolve().parent.parent / "thingsray" / "transports"
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("ray", "thingsray.actors", "thingsray.runtime")), (
                    f"{path.name} imports {name}: transports talk to the platform through TransportService")


def test_a_transport_process_that_dies_comes_back_on_the_same_port(platform, mqtt_port, tenant):
    import ray

    from thingsray.platform import mqtt_transport_name

    token = f"REV-{uuid.uuid4().hex[:10]}"
    created = tenant.post("/api/device", params={"accessToken": token}, json={"name": unique("revive")})
    device_id = created.json()["id"]["id"]
    transport = ray.get_actor(mqtt_transport_name(0))
    ray.kill(transport, no_restart=False)  # the process dies; Ray restarts the actor, not its listener

    def listening() -> bool:
        platform.supervise()
        try:  # a raw CONNECT with a short timeout: the dying process may still accept and never answer
            with socket.create_connection(("127.0.0.1", mqtt_port), timeout=2) as s:
                s.sendall(codec.connect_packet("probe", username=token))
                return s.recv(4) == b"\x20\x02\x00\x00"
        except OSError:
            return False

    eventually(listening, "the MQTT listener back")
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.username_pw_set(token)
    c.connect("127.0.0.1", mqtt_port)
    c.loop_start()
    c.publish("v1/devices/me/telemetry", '{"revived":1}', qos=1).wait_for_publish(WAIT)
    c.disconnect()
    c.loop_stop()
    assert "revived" in timeseries(platform, device_id)


def test_a_device_rpc_no_chain_answers_holds_back_no_other_message(platform, mqtt_port, tenant):
    """The demo tenant's root chain only logs device RPCs, so this one waits for an answer that
    never comes (60 s); meanwhile another device on the same shard and transport publishes and is
    acknowledged, and its value is stored: a long wait never blocks the way to the shard."""
    from thingsray.platform import partition_table
    from thingsray.runtime import Address

    table = partition_table(platform.settings)

    def new_device() -> dict[str, str]:
        token = f"HOL-{uuid.uuid4().hex[:12]}"
        created = tenant.post("/api/device", params={"accessToken": token}, json={"name": unique("hol device")})
        assert created.status_code == 200, created.text
        return {"id": created.json()["id"]["id"], "token": token}

    asker = new_device()
    shard = table.shard_of(Address("device", asker["id"]))
    publisher = new_device()
    while table.shard_of(Address("device", publisher["id"])) != shard:
        publisher = new_device()

    clients = []
    answers: list[Any] = []
    try:
        for device in (asker, publisher):
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"hol-{uuid.uuid4().hex[:8]}")
            client.username_pw_set(device["token"])
            client.connect("127.0.0.1", mqtt_port)
            client.loop_start()
            clients.append(client)
        clients[0].on_message = lambda _c, _u, message: answers.append(message.payload)
        clients[0].subscribe("v1/devices/me/rpc/response/+", qos=1)
        clients[0].publish("v1/devices/me/rpc/request/1", json.dumps({"method": "unanswered", "params": {}}),
                           qos=1).wait_for_publish(WAIT)
        info = clients[1].publish("v1/devices/me/telemetry", json.dumps({"hol": 1}), qos=1)
        info.wait_for_publish(WAIT)  # bounded by WAIT (15 s), well inside the RPC's 60 s
        assert info.is_published()
        assert [v for _, v in timeseries(platform, publisher["id"])["hol"]] == ["1"]
        assert answers == []  # the RPC is still waiting
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
