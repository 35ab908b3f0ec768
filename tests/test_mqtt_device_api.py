"""ThingsBoard's MQTT device API end to end: real clients, the transport actor, device actors in
shard processes, PostgreSQL; acknowledged means stored."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import asyncpg
import paho.mqtt.client as paho
import pytest
import ray
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import eventually as _eventually
from tests.conftest import unique
from thingsray.actors.messages import DEVICE, GetDeviceState, RpcStatus, SaveAttributes, ToDeviceRpc
from thingsray.platform import partition_table
from thingsray.runtime import Address
from thingsray.runtime.cluster import connect_router

WAIT = 15.0  # a bound on waiting for what should happen at once; never a speed assertion


def eventually(check: Any, what: str = "condition") -> Any:
    return _eventually(check, what, WAIT)


@pytest.fixture
def device(tenant) -> dict[str, Any]:
    """A fresh device of the demo tenant with its own access token."""
    token = f"TOK-{uuid.uuid4().hex[:12]}"
    created = tenant.post("/api/device", params={"accessToken": token}, json={"name": unique("mqtt device")})
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": token, "name": created.json()["name"]}


def query(platform, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(platform.database_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()
    return asyncio.run(run())


def timeseries(platform, device_id: str) -> dict[str, list[tuple[int, Any]]]:
    rows = query(platform, "SELECT d.key, t.ts, coalesce(t.bool_v::text, t.str_v, t.long_v::text, t.dbl_v::text,"
                           " t.json_v::text) AS v FROM ts_kv t JOIN key_dictionary d ON d.key_id = t.key"
                           " WHERE t.entity_id = $1 ORDER BY t.ts", uuid.UUID(device_id))
    out: dict[str, list[tuple[int, Any]]] = {}
    for r in rows:
        out.setdefault(r["key"], []).append((r["ts"], r["v"]))
    return out


def attributes(platform, device_id: str, scope: int) -> dict[str, Any]:
    rows = query(platform, "SELECT d.key, coalesce(a.bool_v::text, a.str_v, a.long_v::text, a.dbl_v::text,"
                           " a.json_v::text) AS v FROM attribute_kv a JOIN key_dictionary d"
                           " ON d.key_id = a.attribute_key WHERE a.entity_id = $1 AND a.attribute_type = $2",
                 uuid.UUID(device_id), scope)
    return {r["key"]: r["v"] for r in rows}


def ask(platform, device_id: str, message: Any) -> Any:
    """Send a message to a device actor from this test process, as the REST API does."""
    async def run() -> Any:
        router = connect_router(platform.settings.shards, partition_table(platform.settings))
        try:
            return await router.ask(Address(DEVICE, device_id), message)
        finally:
            await router.close()
    return asyncio.run(run())


def test_tb_mqtt_client_end_to_end(platform, mqtt_port, device):
    from tb_device_mqtt import TBDeviceMqttClient

    client = TBDeviceMqttClient("127.0.0.1", port=mqtt_port, username=device["token"])
    client.connect()
    try:
        eventually(client.is_connected, "connected")
        assert client.send_telemetry({"temperature": 25.5, "humidity": 40}).get() == 0
        assert client.send_telemetry({"ts": 1700000000000, "values": {"pressure": 1013}}).get() == 0
        assert client.send_telemetry([{"batch": 1}, {"ts": 1700000000500, "values": {"batch": 2}}]).get() == 0
        assert client.send_attributes({"firmwareVersion": "v2", "model": "TR-1"}).get() == 0
        stored = timeseries(platform, device["id"])  # acknowledged, so already stored
        assert [v for _, v in stored["temperature"]] == ["25.5"]
        assert stored["pressure"] == [(1700000000000, "1013")]
        assert sorted(v for _, v in stored["batch"]) == ["1", "2"]
        assert attributes(platform, device["id"], 1) == {"firmwareVersion": "v2", "model": "TR-1"}

        ask(platform, device["id"], SaveAttributes("SHARED_SCOPE", {"targetTemperature": 21}, int(time.time() * 1000)))
        answers: list[Any] = []
        client.request_attributes(client_keys=["model"], shared_keys=["targetTemperature"],
                                  callback=lambda result, _exc: answers.append(result))
        eventually(lambda: answers, "attribute response")
        assert answers[0] == {"client": {"model": "TR-1"}, "shared": {"targetTemperature": 21}}

        updates: list[Any] = []
        client.subscribe_to_all_attributes(lambda result, *_: updates.append(result))
        time.sleep(0.3)  # let the subscription reach the device actor before the change
        ask(platform, device["id"], SaveAttributes("SHARED_SCOPE", {"targetTemperature": 23}, int(time.time() * 1000)))
        eventually(lambda: {"targetTemperature": 23} in updates, "shared attribute update")

        def on_rpc(request_id: Any, body: Any) -> None:
            client.send_rpc_reply(request_id, {"result": body["params"]["a"] * 2})

        client.set_server_side_rpc_request_handler(on_rpc)
        time.sleep(0.3)
        outcome = ask(platform, device["id"], ToDeviceRpc("double", {"a": 21}, oneway=False, timeout_ms=10_000))
        assert outcome.status is RpcStatus.SUCCESSFUL and outcome.response == {"result": 42}

        limits: list[Any] = []
        client.send_rpc_call("getSessionLimits", {}, lambda _id, result, *_: limits.append(result))
        eventually(lambda: limits, "session limits")
        assert limits[0]["maxPayloadSize"] == 65536

        state = ask(platform, device["id"], GetDeviceState())
        assert state["active"] is True and state["sessions"] == 1 and state["lastConnectTime"] > 0
        server = attributes(platform, device["id"], 2)
        assert server["active"] == "true" and int(server["lastConnectTime"]) > 0
    finally:
        client.disconnect()
    eventually(lambda: "lastDisconnectTime" in attributes(platform, device["id"], 2), "lastDisconnectTime")


def test_rpc_to_a_device_without_a_session_or_answer(platform, mqtt_port, device):
    outcome = ask(platform, device["id"], ToDeviceRpc("reboot", {}, oneway=False, timeout_ms=2000))
    assert outcome.status is RpcStatus.NOT_CONNECTED
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.username_pw_set(device["token"])
    c.connect("127.0.0.1", mqtt_port)
    c.loop_start()
    try:
        subscribed = threading.Event()
        c.on_subscribe = lambda *_: subscribed.set()
        c.subscribe("v1/devices/me/rpc/request/+", qos=1)
        assert subscribed.wait(WAIT)
        time.sleep(0.3)
        silent = ask(platform, device["id"], ToDeviceRpc("reboot", {}, oneway=False, timeout_ms=500))
        assert silent.status is RpcStatus.TIMEOUT
        oneway = ask(platform, device["id"], ToDeviceRpc("blink", {}, oneway=True, timeout_ms=5000))
        assert oneway.status is RpcStatus.DELIVERED  # the device's PUBACK is the delivery
    finally:
        c.disconnect()
        c.loop_stop()


def test_paho_311_qos1_and_a_wrong_token(platform, mqtt_port, device):
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    c.username_pw_set(device["token"])
    c.connect("127.0.0.1", mqtt_port)
    c.loop_start()
    for i in range(20):
        c.publish("v1/devices/me/telemetry", json.dumps({"seq": i}), qos=1).wait_for_publish(WAIT)
    c.disconnect()
    c.loop_stop()
    assert sorted(int(v) for _, v in timeseries(platform, device["id"])["seq"]) == list(range(20))

    refused: list[Any] = []
    bad = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    bad.username_pw_set("NOT-A-TOKEN")
    bad.on_connect = lambda _c, _u, _f, reason, _p: refused.append(reason)
    bad.connect("127.0.0.1", mqtt_port)
    bad.loop_start()
    eventually(lambda: refused, "CONNACK")
    bad.loop_stop()
    assert refused[0] == "Not authorized"


def test_deleting_the_device_closes_its_session(platform, mqtt_port, device, tenant):
    closed = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.username_pw_set(device["token"])
    c.on_disconnect = lambda *_: closed.set()
    c.connect("127.0.0.1", mqtt_port)
    c.loop_start()
    c.publish("v1/devices/me/telemetry", '{"x":1}', qos=1).wait_for_publish(WAIT)
    assert tenant.delete(f"/api/device/{device['id']}").status_code == 200
    assert closed.wait(WAIT)
    c.loop_stop()
    c.reconnect_delay_set(1, 1)
    refused: list[Any] = []
    again = paho.Client(CallbackAPIVersion.VERSION2)
    again.username_pw_set(device["token"])
    again.on_connect = lambda _c, _u, _f, reason, _p: refused.append(reason)
    again.connect("127.0.0.1", mqtt_port)
    again.loop_start()
    eventually(lambda: refused, "CONNACK")
    again.loop_stop()
    assert refused[0] == "Not authorized"  # the token died with the device


def test_a_shard_killed_under_qos1_load_loses_no_acknowledged_message(platform, mqtt_port, tenant):
    devices = []
    for _ in range(6):
        token = f"KILL-{uuid.uuid4().hex[:12]}"
        created = tenant.post("/api/device", params={"accessToken": token}, json={"name": unique("kill")})
        devices.append((created.json()["id"]["id"], token))
    acked: dict[str, list[int]] = {d: [] for d, _ in devices}
    stop = threading.Event()

    def publish(device_id: str, token: str) -> None:
        c = paho.Client(CallbackAPIVersion.VERSION2)
        c.username_pw_set(token)
        c.connect("127.0.0.1", mqtt_port)
        c.loop_start()
        seq = 0
        while not stop.is_set() and seq < 400:
            info = c.publish("v1/devices/me/telemetry", json.dumps({"seq": seq}), qos=1)
            info.wait_for_publish(WAIT * 2)
            if info.is_published():
                acked[device_id].append(seq)
            seq += 1
        c.disconnect()
        c.loop_stop()

    threads = [threading.Thread(target=publish, args=d) for d in devices]
    for t in threads:
        t.start()
    eventually(lambda: all(len(v) > 20 for v in acked.values()), "traffic flowing")
    victim = ray.get_actor("thingsray-shard-0")
    old_pid = ray.get(victim.pid.remote())
    ray.kill(victim, no_restart=False)
    eventually(lambda: all(len(v) > 150 for v in acked.values()), "traffic after the restart")
    stop.set()
    for t in threads:
        t.join(WAIT * 4)
    assert ray.get(victim.pid.remote()) != old_pid
    for device_id, _ in devices:
        stored = sorted(int(v) for _, v in timeseries(platform, device_id).get("seq", []))
        missing = set(acked[device_id]) - set(stored)
        assert not missing, f"acknowledged but not stored: {sorted(missing)[:10]}"
        assert len(stored) == len(set(stored)), "a retried message was stored twice"


def test_tenant_usage_counts_what_devices_sent_on_every_shard(platform, mqtt_port, tenant, device):
    before = tenant.get("/api/usage").json()
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.username_pw_set(device["token"])
    c.connect("127.0.0.1", mqtt_port)
    c.loop_start()
    for i in range(5):
        c.publish("v1/devices/me/telemetry", json.dumps({"a": i, "b": i}), qos=1).wait_for_publish(WAIT)
    c.disconnect()
    c.loop_stop()
    after = tenant.get("/api/usage").json()
    assert after["transportMessages"] - before["transportMessages"] == 5
    assert after["transportDataPoints"] - before["transportDataPoints"] == 10
    assert after["devices"] >= 1 and after["maxDevices"] == 0  # 0: unlimited, as ThingsBoard writes it


def test_a_changed_profile_reaches_the_live_device_actor(platform, mqtt_port, tenant, device):
    profile = tenant.post("/api/deviceProfile", json={"name": unique("live profile")}).json()
    moved = tenant.get(f"/api/device/{device['id']}").json()
    moved["deviceProfileId"] = profile["id"]
    assert tenant.post("/api/device", json=moved).status_code == 200
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.username_pw_set(device["token"])
    c.connect("127.0.0.1", mqtt_port)
    c.loop_start()
    c.publish("v1/devices/me/telemetry", '{"after":1}', qos=1).wait_for_publish(WAIT)
    c.disconnect()
    c.loop_stop()
    assert ask(platform, device["id"], GetDeviceState())["profileId"] == profile["id"]["id"]
    assert ask_tenant_profile(platform, device, profile["id"]["id"]) == profile["name"]  # now cached on every shard
    renamed = {**profile, "name": unique("renamed profile")}
    assert tenant.post("/api/deviceProfile", json=renamed).status_code == 200
    usage_of_profile = ask_tenant_profile(platform, device, profile["id"]["id"])
    assert usage_of_profile == renamed["name"]  # every shard forgot its cached copy and loads the new


def ask_tenant_profile(platform, device: dict[str, Any], profile_id: str) -> str:
    from thingsray.actors.tenant import TENANT, GetProfile

    tenant_id = query(platform, "SELECT tenant_id FROM device WHERE id = $1", uuid.UUID(device["id"]))[0][0]

    async def run() -> list[Any]:
        router = connect_router(platform.settings.shards, partition_table(platform.settings))
        try:
            return await router.broadcast(Address(TENANT, str(tenant_id)), GetProfile(uuid.UUID(profile_id)))
        finally:
            await router.close()

    names = {info.name for info in asyncio.run(run())}
    assert len(names) == 1, names
    return names.pop()
