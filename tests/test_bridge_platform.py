"""The broker bridge in the platform: its Ray actor subscribed to the machine's Mosquitto creates
the tenant's devices on first sight and stores their data, readable over REST; a bad bridge file
stops the start naming the file and the field."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import eventually, unique
from thingsray.actors.bridge_transport import BRIDGE_TRANSPORT_NAME
from thingsray.cli import build_parser, settings_from
from thingsray.config import ConfigError, Settings
from thingsray.platform import Platform, partition_table
from thingsray.transports.bridge import BridgeConfigError, parse_bridge, parse_bridges

BROKER = ("127.0.0.1", 1883)
WAIT = 30.0  # a bound on waiting for an acknowledgement; never a speed assertion


def broker_running() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=2):
            return True
    except OSError:
        return False


needs_broker = pytest.mark.skipif(not broker_running(), reason="no MQTT broker (Mosquitto) on 127.0.0.1:1883")


def mapping(prefix: str) -> list[dict[str, Any]]:
    return [{"topicFilter": f"{prefix}/+/telemetry", "subscriptionQos": 1, "converter": {
        "type": "json",
        "deviceInfo": {"deviceNameExpressionSource": "topic", "deviceNameExpression": f"{prefix}/([^/]+)/telemetry",
                       "deviceProfileExpressionSource": "message", "deviceProfileExpression": "${model}"},
        "timeseries": [{"type": "double", "key": "temperature", "value": "${temperature}"},
                       {"type": "long", "key": "rssi", "value": "${radio.rssi}"}],
        "attributes": [{"type": "string", "key": "firmware", "value": "${fw}"}]}}]


def bridge(prefix: str, tenant_id: str) -> dict[str, Any]:
    return {"name": prefix, "tenantId": tenant_id,
            "broker": {"host": BROKER[0], "port": BROKER[1], "clientId": f"thingsray-test-{prefix}"},
            "mapping": mapping(prefix)}


@pytest.fixture
def bridge_actor(platform: Platform, tenant: httpx.Client) -> Iterator[tuple[Any, str]]:
    """A bridge actor of its own, started as the platform starts its own, for the demo tenant."""
    import ray

    from thingsray.actors.bridge_transport import BridgeTransportActor

    prefix = f"thingsray-test/{uuid.uuid4().hex[:10]}"
    tenant_id = tenant.get("/api/auth/user").json()["tenantId"]["id"]
    name = f"thingsray-bridge-test-{uuid.uuid4().hex[:8]}"
    handle = ray.remote(BridgeTransportActor).options(name=name, num_cpus=0, max_concurrency=1000).remote(
        name, [parse_bridge(bridge(prefix, tenant_id))], platform.database_url, platform.settings.shards,
        partition_table(platform.settings), platform.settings.redis_url)
    try:
        assert ray.get(handle.start.remote(), timeout=WAIT) == 1
        yield handle, prefix
    finally:
        ray.get(handle.stop.remote(), timeout=WAIT)
        ray.kill(handle, no_restart=True)


def publish(topic: str, payload: dict[str, Any]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect(*BROKER)
    client.loop_start()
    try:
        client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


def bridge_stats(handle: Any) -> dict[str, Any]:
    import ray

    [stats] = ray.get(handle.stats.remote(), timeout=WAIT)["bridges"]
    return stats


@needs_broker
def test_a_bridged_device_appears_with_its_telemetry_and_attributes(bridge_actor, tenant: httpx.Client):
    handle, prefix = bridge_actor
    eventually(lambda: bridge_stats(handle)["connected"], "the bridge connected to the broker", WAIT)
    device_name = f"pump-{uuid.uuid4().hex[:6]}"
    profile = unique("bridged pumps").replace(" ", "-")
    publish(f"{prefix}/{device_name}/telemetry",
            {"temperature": "21.5", "radio": {"rssi": -71}, "fw": "1.2.0", "model": profile})

    def device() -> dict[str, Any] | None:
        found = tenant.get("/api/tenant/devices", params={"deviceName": device_name})
        return found.json() if found.status_code == 200 else None

    created = eventually(device, "the device created by the bridge", WAIT)
    # delivered: the platform returned from storing the telemetry and then the attributes
    eventually(lambda: bridge_stats(handle)["delivered"] == 1, "the message delivered", WAIT)
    assert created["name"] == device_name and created["type"] == profile
    device_id = created["id"]["id"]
    path = f"/api/plugins/telemetry/DEVICE/{device_id}"
    values = tenant.get(f"{path}/values/timeseries", params={"keys": "temperature,rssi",
                                                              "useStrictDataTypes": "true"}).json()
    assert values["temperature"][0]["value"] == 21.5 and values["rssi"][0]["value"] == -71
    attributes = tenant.get(f"{path}/values/attributes/CLIENT_SCOPE", params={"keys": "firmware"}).json()
    assert [(a["key"], a["value"]) for a in attributes] == [("firmware", "1.2.0")]

    publish(f"{prefix}/{device_name}/telemetry", {"temperature": 22, "model": profile})  # the same device again
    eventually(lambda: bridge_stats(handle)["delivered"] == 2, "the second message stored", WAIT)
    history = tenant.get(f"{path}/values/timeseries", params={"keys": "temperature", "startTs": 0,
                                                               "endTs": 2**62, "limit": 10}).json()
    assert sorted(float(point["value"]) for point in history["temperature"]) == [21.5, 22.0]
    named = tenant.get("/api/tenant/devices", params={"pageSize": 100, "page": 0, "textSearch": device_name}).json()
    assert [d["name"] for d in named["data"]] == [device_name]  # one device, however many messages
    stats = bridge_stats(handle)
    assert (stats["received"], stats["failed"], stats["unmapped"]) == (2, 0, 0)


@needs_broker
def test_the_platform_starts_and_stops_the_bridges_of_a_tenant_named_by_title(platform: Platform,
                                                                              sysadmin: httpx.Client):
    title = unique("bridged tenant")
    created = sysadmin.post("/api/tenant", json={"title": title})
    assert created.status_code == 200, created.text
    prefix = f"thingsray-test/{uuid.uuid4().hex[:10]}"
    entry = {**bridge(prefix, ""), "tenant": title}
    del entry["tenantId"]
    wiring = Platform(platform.settings, database_url=platform.database_url)
    wiring._bridge_configs = parse_bridges({"bridges": [entry]}, "bridges.json")
    try:
        wiring._start_bridges()
        [handle] = wiring._bridges
        eventually(lambda: bridge_stats(handle)["connected"], "the bridge connected", WAIT)
        assert bridge_stats(handle)["tenantId"] == created.json()["id"]["id"]
    finally:
        wiring.stop()
    assert wiring._bridges == []

    def name_free() -> bool:
        import ray

        try:
            ray.get_actor(BRIDGE_TRANSPORT_NAME)
        except ValueError:
            return True
        return False

    eventually(name_free, "the bridge actor gone, its name free for the next start", WAIT)


def test_a_tenant_that_does_not_exist_stops_the_start_naming_the_field(platform: Platform):
    entry = {**bridge("thingsray-test/none", ""), "tenant": unique("no such tenant")}
    del entry["tenantId"]
    wiring = Platform(platform.settings, database_url=platform.database_url)
    wiring._bridge_configs = parse_bridges({"bridges": [entry]}, "bridge file 'bridges.json'")
    try:
        with pytest.raises(ConfigError, match=r"bridges.json'?: bridges\[0\].tenant: no tenant has the title"):
            wiring._start_bridges()
    finally:
        wiring.stop()


def test_a_bad_bridge_file_stops_the_platform_before_anything_starts(tmp_path: Path):
    bad = tmp_path / "bridges.json"
    bad.write_text(json.dumps({"bridges": [{**bridge("p", str(uuid.uuid4())), "broker": {"port": 1883}}]}))
    settings = Settings.load({"bridge_config": str(bad), "data_dir": str(tmp_path), "host": "127.0.0.1",
                              "http_port": 0, "mqtt_port": 0}, environ={})
    platform = Platform(settings)
    with pytest.raises(BridgeConfigError, match=rf"{bad}.*bridges\[0\].broker.host: is required"):
        platform.start()
    assert platform.database_url is None and not platform._started_ray  # nothing was started


def test_the_bridge_file_comes_from_the_flag_or_the_environment():
    args = build_parser().parse_args(["up", "--bridge-config", "/etc/thingsray/bridges.json"])
    assert settings_from(args, environ={}).bridge_config == "/etc/thingsray/bridges.json"
    from_env = settings_from(build_parser().parse_args(["up"]), environ={"THINGSRAY_BRIDGE_CONFIG": "b.json"})
    assert from_env.bridge_config == "b.json"
    assert Settings.load({}, environ={}).bridge_config is None
