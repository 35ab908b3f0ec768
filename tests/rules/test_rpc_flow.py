"""Server-side RPC over REST goes through the device's rule chain, as in ThingsBoard: it enters as
RPC_CALL_FROM_SERVER_TO_DEVICE, a chain may change it, the RPC Call Request node sends it, and the
REST caller gets the device's answer (or a timeout when the chain never sends it)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import assert_tb_error
from tests.rules.test_engine_e2e import WAIT, eventually, make_device, node, save_root_chain, series


@pytest.fixture
def echo_device(other_tenant: httpx.Client, mqtt_port: int) -> Iterator[tuple[dict[str, str], list[Any]]]:
    """A device of the tenant connected over MQTT that answers every RPC with ``{"echo": params}``."""
    device = make_device(other_tenant)
    received: list[Any] = []
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"rpc-flow-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(device["token"])

    def on_message(c: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        request = json.loads(message.payload)
        received.append(request)
        request_id = message.topic.rsplit("/", 1)[1]
        c.publish(f"v1/devices/me/rpc/response/{request_id}", json.dumps({"echo": request["params"]}), qos=1)

    client.on_connect = lambda c, *_: c.subscribe("v1/devices/me/rpc/request/+", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        assert subscribed.wait(WAIT), "the device did not get its RPC subscription"
        yield device, received
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_chain_changes_the_rpc_and_the_caller_gets_the_devices_answer(
        other_tenant: httpx.Client, echo_device: tuple[dict[str, str], list[Any]]) -> None:
    nodes = [
        node("filter.TbMsgTypeSwitchNode", "Message Type Switch", {"version": 0}),
        node("transform.TbTransformMsgNode", "Double it", {
            "scriptLang": "TBEL",
            "tbelScript": "msg.params = {value: msg.params.value * 2, seen: metadata.requestUUID != null};"
                          " return {msg: msg, metadata: metadata, msgType: msgType};"}),
        node("rpc.TbSendRPCRequestNode", "RPC Call Request", {"timeoutInSeconds": 60}),
        node("transform.TbTransformMsgNode", "Record the answer", {
            "scriptLang": "TBEL",
            "tbelScript": "return {msg: {answered: msg.echo.value}, metadata: metadata,"
                          " msgType: 'POST_TELEMETRY_REQUEST'};"}),
        node("telemetry.TbMsgTimeseriesNode", "Save Timeseries", {}),
    ]
    connections = [{"fromIndex": 0, "toIndex": 1, "type": "RPC Request to Device"},
                   {"fromIndex": 1, "toIndex": 2, "type": "Success"},
                   {"fromIndex": 2, "toIndex": 3, "type": "Success"},
                   {"fromIndex": 3, "toIndex": 4, "type": "Success"}]
    save_root_chain(other_tenant, nodes, connections)
    device, received = echo_device
    for prefix in ("/api/plugins/rpc", "/api/rpc"):
        answer = other_tenant.post(f"{prefix}/twoway/{device['id']}", json={"method": "scale", "params": {"value": 21}})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"echo": {"value": 42, "seen": True}}  # the device's answer to what the chain sent
    assert received[-1] == {"method": "scale", "params": {"value": 42, "seen": True}}
    one_way = other_tenant.post(f"/api/rpc/oneway/{device['id']}", json={"method": "blink", "params": {"value": 1}})
    assert one_way.status_code == 200, one_way.text
    # the node also sent the device's answer on through the chain
    eventually(lambda: series(other_tenant, device["id"], "answered")[:2] == ["42", "42"], "the answers saved")


def test_a_chain_that_never_sends_the_rpc_times_the_call_out(
        other_tenant: httpx.Client, echo_device: tuple[dict[str, str], list[Any]]) -> None:
    save_root_chain(other_tenant, [node("filter.TbMsgTypeSwitchNode", "Message Type Switch", {"version": 0})], [])
    device, received = echo_device
    assert_tb_error(other_tenant.post(f"/api/rpc/twoway/{device['id']}",
                                      json={"method": "lost", "params": {}, "timeout": 5000}), 504)
    assert received == []  # it never reached the device
