"""Rule chains running in the shards: saved over REST, made root, driven by real MQTT devices.

Each test works in a tenant of its own (``other_tenant``), so changing its root chain touches
no other test."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import eventually, unique

WAIT = 20.0  # a bound on waiting for what should happen at once; never a speed assertion
P = "org.thingsboard.rule.engine."


def make_device(client: httpx.Client) -> dict[str, str]:
    token = f"RE-{uuid.uuid4().hex[:12]}"
    created = client.post("/api/device", params={"accessToken": token}, json={"name": unique("engine device")})
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": token}


def save_root_chain(client: httpx.Client, nodes: list[dict[str, Any]], connections: list[dict[str, Any]],
                    first: int = 0) -> str:
    chain = client.post("/api/ruleChain", json={"name": unique("chain"), "type": "CORE"})
    assert chain.status_code == 200, chain.text
    chain_id = chain.json()["id"]["id"]
    saved = client.post("/api/ruleChain/metadata", json={
        "ruleChainId": {"entityType": "RULE_CHAIN", "id": chain_id}, "firstNodeIndex": first,
        "nodes": nodes, "connections": connections})
    assert saved.status_code == 200, saved.text
    rooted = client.post(f"/api/ruleChain/{chain_id}/root")
    assert rooted.status_code == 200, rooted.text
    return chain_id


def mqtt(port: int, token: str) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"re-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(token)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish(client: paho.Client, topic: str, body: Any) -> None:
    info = client.publish(topic, json.dumps(body), qos=1)
    info.wait_for_publish(WAIT)
    assert info.is_published()


def series(client: httpx.Client, device_id: str, key: str) -> list[Any]:
    answer = client.get(f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries", params={
        "keys": key, "startTs": 0, "endTs": int(time.time() * 1000) + 60_000, "limit": 1000})
    assert answer.status_code == 200, answer.text
    return [v["value"] for v in reversed(answer.json().get(key, []))]  # as text, as ThingsBoard answers


def node(kind: str, name: str, configuration: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": P + kind, "name": name, "configuration": configuration, **extra}


def test_a_chain_saved_over_rest_filters_transforms_and_saves(other_tenant: httpx.Client, mqtt_port: int) -> None:
    nodes = [
        node("filter.TbMsgTypeSwitchNode", "switch", {"version": 0}),
        node("filter.TbJsFilterNode", "warm?", {"scriptLang": "JS", "jsScript": "return msg.temperature > 20;"}),
        node("transform.TbTransformMsgNode", "to fahrenheit", {
            "scriptLang": "TBEL",
            "tbelScript": "var out = {}; out.fahrenheit = msg.temperature * 1.8 + 32;"
                          " return {msg: out, metadata: metadata, msgType: msgType};"}),
        node("telemetry.TbMsgTimeseriesNode", "save", {"defaultTTL": 0}),
    ]
    connections = [{"fromIndex": 0, "toIndex": 1, "type": "Post telemetry"},
                   {"fromIndex": 1, "toIndex": 2, "type": "True"},
                   {"fromIndex": 2, "toIndex": 3, "type": "Success"}]
    save_root_chain(other_tenant, nodes, connections)
    device = make_device(other_tenant)
    client = mqtt(mqtt_port, device["token"])
    try:
        for temperature in (25, 10, 30):
            publish(client, "v1/devices/me/telemetry", {"temperature": temperature})
        # acknowledged means done: the warm readings are stored as Fahrenheit, the cold one not at all
        assert series(other_tenant, device["id"], "fahrenheit") == ["77.0", "86.0"]
        assert series(other_tenant, device["id"], "temperature") == []
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_failing_node_routes_to_failure_and_later_messages_still_flow(other_tenant: httpx.Client,
                                                                       mqtt_port: int) -> None:
    nodes = [
        node("transform.TbTransformMsgNode", "may throw", {
            "scriptLang": "JS",
            "jsScript": "if (msg.bad) { throw new Error('bad reading'); } return {msg: msg};"}),
        node("telemetry.TbMsgTimeseriesNode", "save", {}),
        node("transform.TbTransformMsgNode", "note failure", {
            "scriptLang": "TBEL", "tbelScript": "return {msg: {failed: 1, why: metadata.error}};"}),
        node("telemetry.TbMsgTimeseriesNode", "save failure", {}),
    ]
    connections = [{"fromIndex": 0, "toIndex": 1, "type": "Success"},
                   {"fromIndex": 0, "toIndex": 2, "type": "Failure"},
                   {"fromIndex": 2, "toIndex": 3, "type": "Success"}]
    save_root_chain(other_tenant, nodes, connections)
    device = make_device(other_tenant)
    client = mqtt(mqtt_port, device["token"])
    try:
        publish(client, "v1/devices/me/telemetry", {"value": 1})
        publish(client, "v1/devices/me/telemetry", {"bad": True})
        publish(client, "v1/devices/me/telemetry", {"value": 2})
        assert series(other_tenant, device["id"], "value") == ["1", "2"]
        assert series(other_tenant, device["id"], "failed") == ["1"]
        assert "bad reading" in series(other_tenant, device["id"], "why")[0]
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_saved_chain_takes_effect_without_a_restart(other_tenant: httpx.Client, mqtt_port: int) -> None:
    first = [node("telemetry.TbMsgTimeseriesNode", "save", {})]
    chain_id = save_root_chain(other_tenant, first, [])
    device = make_device(other_tenant)
    client = mqtt(mqtt_port, device["token"])
    try:
        publish(client, "v1/devices/me/telemetry", {"a": 1})
        assert series(other_tenant, device["id"], "a") == ["1"]
        changed = other_tenant.post("/api/ruleChain/metadata", json={
            "ruleChainId": {"entityType": "RULE_CHAIN", "id": chain_id}, "firstNodeIndex": 0,
            "nodes": [node("transform.TbTransformMsgNode", "double", {
                "scriptLang": "TBEL", "tbelScript": "return {msg: {a: msg.a * 2}};"}),
                node("telemetry.TbMsgTimeseriesNode", "save", {})],
            "connections": [{"fromIndex": 0, "toIndex": 1, "type": "Success"}]})
        assert changed.status_code == 200, changed.text

        def doubled() -> bool:
            publish(client, "v1/devices/me/telemetry", {"a": 5})
            return "10" in series(other_tenant, device["id"], "a")

        eventually(doubled, "the saved chain runs")  # every shard reloads it on the chain's notification
    finally:
        client.loop_stop()
        client.disconnect()


def save_rpc_answering_root_chain(client: httpx.Client) -> str:
    """A root chain that answers every device RPC with {time: 42, asked: <method>}."""
    nodes = [
        node("filter.TbMsgTypeSwitchNode", "switch", {"version": 0}),
        node("transform.TbTransformMsgNode", "answer", {
            "scriptLang": "TBEL", "tbelScript": "return {msg: {time: 42, asked: msg.method}};"}),
        node("rpc.TbSendRPCReplyNode", "reply", {"requestIdMetaDataAttribute": "requestId"}),
    ]
    connections = [{"fromIndex": 0, "toIndex": 1, "type": "RPC Request from Device"},
                   {"fromIndex": 1, "toIndex": 2, "type": "Success"}]
    return save_root_chain(client, nodes, connections)


def test_a_device_rpc_is_answered_by_the_chain(other_tenant: httpx.Client, mqtt_port: int) -> None:
    save_rpc_answering_root_chain(other_tenant)
    device = make_device(other_tenant)
    client = mqtt(mqtt_port, device["token"])
    answers: list[Any] = []
    client.on_message = lambda _c, _u, message: answers.append((message.topic, json.loads(message.payload)))
    try:
        client.subscribe("v1/devices/me/rpc/response/+", qos=1)
        time.sleep(0.2)  # let the SUBACK arrive (paho gives no future for it here)
        publish(client, "v1/devices/me/rpc/request/7", {"method": "getTime", "params": {}})
        eventually(lambda: answers, "the chain's answer")
        assert answers[0] == ("v1/devices/me/rpc/response/7", {"time": 42, "asked": "getTime"})
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.parametrize("bad_script", ["while (true) {}", "var a = []; while (true) { a.push(new Array(1e6)); }"])
def test_a_runaway_script_fails_its_message_only(other_tenant: httpx.Client, mqtt_port: int, bad_script: str) -> None:
    nodes = [
        node("filter.TbJsFilterNode", "runaway?", {
            "scriptLang": "JS", "jsScript": f"if (msg.runaway) {{ {bad_script} }} return true;"}),
        node("telemetry.TbMsgTimeseriesNode", "save", {}),
    ]
    save_root_chain(other_tenant, nodes, [{"fromIndex": 0, "toIndex": 1, "type": "True"}])
    device = make_device(other_tenant)
    client = mqtt(mqtt_port, device["token"])
    try:
        publish(client, "v1/devices/me/telemetry", {"runaway": True, "n": 0})
        publish(client, "v1/devices/me/telemetry", {"n": 1})
        assert series(other_tenant, device["id"], "n") == ["1"]
    finally:
        client.loop_stop()
        client.disconnect()
