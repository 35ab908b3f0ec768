"""The MQTT gateway API on its own, behind an in-memory platform, driven by the official
``TBGatewayMqttClient`` and by paho (MQTT 3.1.1 and 5) for what that client never sends."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest

from tests.transports.memory_service import MemoryService
from tests.transports.test_mqtt_server import WAIT, Running, client, eventually
from thingsray.transports.mqtt import gateway
from thingsray.transports.payloads import TelemetryGroup
from thingsray.transports.service import AttributeUpdate, DeviceIdentity, SessionSink

GATEWAY_TOPICS = [("v1/gateway/attributes", 1), ("v1/gateway/attributes/response", 1), ("v1/gateway/rpc", 1)]


@pytest.fixture(scope="module")
def mqtt() -> Iterator[Running]:
    running = Running()
    yield running
    running.stop()


def token() -> str:
    return f"GW-{uuid.uuid4().hex[:8]}"


def stored(service: MemoryService, name: str) -> list[TelemetryGroup]:
    return [group for device, group in service.telemetry if device == name]


class Acks:
    """A paho client's PUBACK reasons by message id."""

    def __init__(self, c: paho.Client) -> None:
        self.reasons: dict[int, Any] = {}
        c.on_publish = lambda _c, _u, mid, reason, _p: self.reasons.__setitem__(mid, reason)

    def of(self, info: paho.MQTTMessageInfo) -> str:
        eventually(lambda: info.mid in self.reasons)
        return str(self.reasons[info.mid])


def child_sink(mqtt: Running, identity: DeviceIdentity) -> SessionSink:
    sink = mqtt.service.sessions.get(identity.device_id)
    assert sink is not None
    return sink


def test_official_gateway_client_every_topic_both_ways(mqtt):
    from tb_gateway_mqtt import TBGatewayMqttClient

    gw_token = token()
    mqtt.service.add_gateway(gw_token, "Gateway 1")
    tb = TBGatewayMqttClient("127.0.0.1", port=mqtt.port, username=gw_token)
    tb.connect()
    try:
        eventually(tb.is_connected)
        tb.gw_connect_device("Thermostat A", "thermostat")
        eventually(lambda: "Thermostat A" in mqtt.service.children)
        child = mqtt.service.children["Thermostat A"]
        assert child.device_type == "thermostat"
        # subscribed to shared attributes and RPC on connect, as ThingsBoard subscribes a gateway's child
        eventually(lambda: child.device_id in mqtt.service.rpc_sinks)
        assert child.device_id in mqtt.service.attribute_sinks

        tb.gw_send_telemetry("Thermostat A", {"ts": 1700000000000, "values": {"temperature": 21.5}})
        tb.gw_send_telemetry("Thermostat A", [{"humidity": 40}, {"ts": 1700000000001, "values": {"on": True}}])
        tb.gw_send_attributes("Thermostat A", {"firmware": "1.2", "model": "T-100"})
        eventually(lambda: len(stored(mqtt.service, "Thermostat A")) == 3)
        assert stored(mqtt.service, "Thermostat A") == [
            TelemetryGroup(1700000000000, {"temperature": 21.5}), TelemetryGroup(None, {"humidity": 40}),
            TelemetryGroup(1700000000001, {"on": True})]
        eventually(lambda: mqtt.service.attributes.get("Thermostat A") == {"firmware": 1.2, "model": "T-100"})

        updates: list[Any] = []
        tb.gw_subscribe_to_all_attributes(updates.append)
        mqtt.run(mqtt.service.share(child, {"target": 22}))
        mqtt.run(child_sink(mqtt, child).push_attributes(AttributeUpdate(deleted=("old",))))
        eventually(lambda: len(updates) == 2)
        assert updates == [{"device": "Thermostat A", "data": {"target": 22}},
                           {"device": "Thermostat A", "data": {"deleted": ["old"]}}]

        answers: list[Any] = []
        tb.gw_request_shared_attributes("Thermostat A", ["target"], lambda body, _e: answers.append(body))
        eventually(lambda: answers)
        tb.gw_request_client_attributes("Thermostat A", ["firmware", "model", "absent"],
                                        lambda body, _e: answers.append(body))
        eventually(lambda: len(answers) == 2)
        assert answers[0]["device"] == "Thermostat A" and answers[0]["value"] == 22
        assert answers[1]["values"] == {"firmware": 1.2, "model": "T-100"} and "value" not in answers[1]

        rpcs: list[Any] = []

        def on_rpc(client: Any, body: Any) -> None:
            rpcs.append(body)
            client.gw_send_rpc_reply(body["device"], body["data"]["id"], {"applied": body["data"]["params"]})

        tb.gw_set_server_side_rpc_request_handler(on_rpc)
        assert mqtt.run(mqtt.service.call(child, 7, "setTarget", {"t": 23})) is True  # the gateway acked it
        eventually(lambda: 7 in mqtt.service.rpc_responses)
        assert rpcs == [{"device": "Thermostat A", "data": {"id": 7, "method": "setTarget", "params": {"t": 23}}}]
        assert mqtt.service.rpc_responses[7] == {"applied": {"t": 23}}

        tb.gw_claim("Thermostat A", "s3cret", 60000)
        eventually(lambda: ("Thermostat A", "s3cret", 60000) in mqtt.service.claims)

        tb.gw_disconnect_device("Thermostat A")
        eventually(lambda: "disconnect Thermostat A" in mqtt.service.events)
        assert child.device_id not in mqtt.service.sessions
    finally:
        tb.disconnect()


def test_gateway_session_limits_carry_gateway_rate_limits(mqtt):
    gw_token = token()
    mqtt.service.add_gateway(gw_token, "Gateway limits")
    received: list[Any] = []
    c = client(mqtt.port, gw_token, v5=True, on_message=lambda _c, _u, m: received.append(json.loads(m.payload)))
    c.subscribe("v1/devices/me/rpc/response/+", qos=1)
    c.publish("v1/devices/me/rpc/request/1", '{"method":"getSessionLimits","params":{}}', qos=1)
    eventually(lambda: received)
    assert set(received[0]["gatewayRateLimits"]) == {"messages", "telemetryMessages", "telemetryDataPoints"}
    assert received[0]["gatewayRateLimits"] == received[0]["rateLimits"]
    c.disconnect()
    c.loop_stop()


def test_a_child_connects_on_its_first_message_and_is_looked_up_once_per_session(mqtt):
    gw_token = token()
    mqtt.service.add_gateway(gw_token, "Gateway lazy")
    c = client(mqtt.port, gw_token)
    c.publish("v1/gateway/telemetry", '{"Lazy 1":[{"n":1}]}', qos=1).wait_for_publish(WAIT)
    assert "connect Lazy 1" in mqtt.service.events
    child = mqtt.service.children["Lazy 1"]
    assert child.device_type == "default"
    c.publish("v1/gateway/disconnect", '{"device":"Lazy 1"}', qos=1).wait_for_publish(WAIT)
    assert child.device_id not in mqtt.service.sessions
    c.publish("v1/gateway/attributes", '{"Lazy 1":{"a":1}}', qos=1).wait_for_publish(WAIT)
    assert child.device_id in mqtt.service.sessions  # connected again by its next message
    assert mqtt.service.gateway_lookups.count("Lazy 1") == 1
    assert [e for e in mqtt.service.events if e.endswith("Lazy 1")] == [
        "connect Lazy 1", "disconnect Lazy 1", "connect Lazy 1"]
    c.disconnect()
    c.loop_stop()


def test_the_gateway_session_end_disconnects_its_children_and_their_sinks_go(mqtt):
    gw_token = token()
    mqtt.service.add_gateway(gw_token, "Gateway end")
    c = client(mqtt.port, gw_token)
    for name in ("End 1", "End 2"):
        c.publish("v1/gateway/connect", json.dumps({"device": name}), qos=1).wait_for_publish(WAIT)
    sinks = [child_sink(mqtt, mqtt.service.children[name]) for name in ("End 1", "End 2")]
    assert all(mqtt.server.session(sink.session_id) is sink for sink in sinks)  # how the platform finds them
    c.disconnect()
    c.loop_stop()
    eventually(lambda: {"disconnect End 1", "disconnect End 2", "disconnect Gateway end"} <= set(mqtt.service.events))
    assert all(mqtt.server.session(sink.session_id) is None for sink in sinks)


def test_the_platform_pushes_to_a_child_found_by_its_session_id(mqtt):
    gw_token = token()
    mqtt.service.add_gateway(gw_token, "Gateway push")
    received: list[tuple[str, Any]] = []
    c = client(mqtt.port, gw_token, on_message=lambda _c, _u, m: received.append((m.topic, json.loads(m.payload))))
    c.subscribe(GATEWAY_TOPICS)
    c.publish("v1/gateway/connect", '{"device":"Pushed"}', qos=1).wait_for_publish(WAIT)
    sink = mqtt.server.session(child_sink(mqtt, mqtt.service.children["Pushed"]).session_id)
    assert sink is not None
    mqtt.run(sink.push_attributes(AttributeUpdate({"mode": "eco"})))
    eventually(lambda: received)
    assert received == [("v1/gateway/attributes", {"device": "Pushed", "data": {"mode": "eco"}})]
    mqtt.run(sink.close("the device was deleted"))  # the platform ends the child alone
    eventually(lambda: "disconnect Pushed" in mqtt.service.events)
    assert mqtt.server.session(sink.session_id) is None
    c.publish("v1/gateway/telemetry", '{"Pushed":[{"after":1}]}', qos=1).wait_for_publish(WAIT)
    assert TelemetryGroup(None, {"after": 1}) in stored(mqtt.service, "Pushed")  # the gateway's session lives
    assert mqtt.service.gateway_lookups.count("Pushed") == 2  # looked up again after the platform ended it
    c.disconnect()
    c.loop_stop()


def test_mqtt5_bad_input_gets_reason_codes_and_spares_the_other_devices(mqtt):
    gw_token = token()
    mqtt.service.add_gateway(gw_token, "Gateway bad5")
    mqtt.service.foreign.add("Not Mine")
    c = client(mqtt.port, gw_token, v5=True)
    acks = Acks(c)
    before = sum(gateway.refusals.values())
    answers = {
        "malformed": c.publish("v1/gateway/telemetry", "{not json", qos=1),
        "array": c.publish("v1/gateway/telemetry", '[{"A5":[]}]', qos=1),
        "part not array": c.publish("v1/gateway/telemetry", '{"A5":{"t":1},"B5":[{"t":2}]}', qos=1),
        "part not object": c.publish("v1/gateway/attributes", '{"A5":[1],"B5":{"a":"x"}}', qos=1),
        "bad data": c.publish("v1/gateway/telemetry", '{"B5":[{"ts":-1,"values":{"t":3}}]}', qos=1),
        "empty name": c.publish("v1/gateway/connect", '{"device":""}', qos=1),
        "name not string": c.publish("v1/gateway/connect", '{"device":5}', qos=1),
        "empty part name": c.publish("v1/gateway/telemetry", '{"":[{"t":4}],"B5":[{"t":5}]}', qos=1),
        "foreign": c.publish("v1/gateway/telemetry", '{"Not Mine":[{"t":6}],"B5":[{"t":7}]}', qos=1),
        "itself": c.publish("v1/gateway/connect", '{"device":"Gateway bad5"}', qos=1),
        "rpc without data": c.publish("v1/gateway/rpc", '{"device":"B5","id":1}', qos=1),
        "request without keys": c.publish("v1/gateway/attributes/request",
                                          '{"id":1,"device":"B5","client":true}', qos=1),
        "unknown topic": c.publish("v1/gateway/nowhere", "{}", qos=1),
        "good": c.publish("v1/gateway/telemetry", '{"B5":[{"t":8}]}', qos=1),
    }
    reasons = {what: acks.of(info) for what, info in answers.items()}
    assert reasons == {
        "malformed": "Payload format invalid", "array": "Payload format invalid",
        "part not array": "Payload format invalid", "part not object": "Payload format invalid",
        "bad data": "Payload format invalid", "empty name": "Payload format invalid",
        "name not string": "Payload format invalid", "empty part name": "Payload format invalid",
        "foreign": "Not authorized", "itself": "Not authorized", "rpc without data": "Payload format invalid",
        "request without keys": "Payload format invalid", "unknown topic": "Topic name invalid", "good": "Success"}
    # the good parts of each message were stored; nothing of the bad ones
    assert [g.values for g in stored(mqtt.service, "B5")] == [{"t": 2}, {"t": 5}, {"t": 7}, {"t": 8}]
    assert mqtt.service.attributes["B5"] == {"a": "x"}
    assert "A5" not in mqtt.service.children and "Not Mine" not in mqtt.service.children
    assert sum(gateway.refusals.values()) - before == 13  # every refusal counted
    assert "connect Gateway bad5" in mqtt.service.events and "disconnect Gateway bad5" not in mqtt.service.events
    c.disconnect()
    c.loop_stop()


def test_mqtt311_a_bad_part_is_skipped_as_thingsboard_does_and_malformed_json_closes_only_that_session(mqtt):
    gw_token, other_token = token(), token()
    mqtt.service.add_gateway(gw_token, "Gateway bad311")
    mqtt.service.add_gateway(other_token, "Gateway bystander")
    bystander = client(mqtt.port, other_token)
    bystander.publish("v1/gateway/connect", '{"device":"Bystander child"}', qos=1).wait_for_publish(WAIT)
    disconnected = threading.Event()
    victim = client(mqtt.port, gw_token)
    victim.on_disconnect = lambda *_: disconnected.set()
    mqtt.service.foreign.add("Not Mine 311")
    victim.publish("v1/gateway/telemetry", '{"A311":{"t":1},"B311":[{"t":2}]}', qos=1).wait_for_publish(WAIT)
    victim.publish("v1/gateway/telemetry", '{"Not Mine 311":[{"t":3}],"B311":[{"t":4}]}', qos=1).wait_for_publish(WAIT)
    assert [g.values for g in stored(mqtt.service, "B311")] == [{"t": 2}, {"t": 4}]  # both acknowledged
    assert not disconnected.is_set()
    victim.publish("v1/gateway/telemetry", "{broken", qos=1)
    assert disconnected.wait(WAIT)
    victim.loop_stop()
    eventually(lambda: "disconnect B311" in mqtt.service.events)
    bystander.publish("v1/gateway/telemetry", '{"Bystander child":[{"still":"here"}]}', qos=1).wait_for_publish(WAIT)
    assert [g.values for g in stored(mqtt.service, "Bystander child")] == [{"still": "here"}]
    bystander.disconnect()
    bystander.loop_stop()


def test_a_device_that_is_not_a_gateway_gets_no_gateway_api(mqtt):
    mqtt.service.add_token("PLAIN-GW-TEST", "plain device")
    c = client(mqtt.port, "PLAIN-GW-TEST", v5=True)
    acks = Acks(c)
    granted: list[Any] = []
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.extend(codes)
    c.subscribe(GATEWAY_TOPICS)
    refused = c.publish("v1/gateway/telemetry", '{"Sneaky":[{"t":1}]}', qos=1)
    assert acks.of(refused) == "Topic name invalid"
    eventually(lambda: len(granted) == 3)
    assert [g.value for g in granted] == [0x8F, 0x8F, 0x8F]
    assert "Sneaky" not in mqtt.service.children
    c.disconnect()
    c.loop_stop()


class HeldService(MemoryService):
    """Holds telemetry of the device ``held`` until released, and the lookup of ``slow`` until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release_telemetry = threading.Event()
        self.release_lookup = threading.Event()
        self.lookup_started = threading.Event()

    async def post_telemetry(self, device: DeviceIdentity, groups: list[TelemetryGroup], msg_id: uuid.UUID,
                             received_ts: int) -> None:
        if device.device_name == "held":
            await asyncio.to_thread(self.release_telemetry.wait, WAIT)
        await super().post_telemetry(device, groups, msg_id, received_ts)

    async def gateway_device(self, gateway: DeviceIdentity, device_name: str,
                             device_type: str | None = None) -> DeviceIdentity:
        if device_name == "slow":
            self.lookup_started.set()
            await asyncio.to_thread(self.release_lookup.wait, WAIT)
        return await super().gateway_device(gateway, device_name, device_type)


@pytest.fixture
def held() -> Iterator[Running]:
    running = Running(HeldService())
    yield running
    running.stop()


def test_puback_leaves_only_once_every_devices_part_is_stored(held):
    service = held.service
    assert isinstance(service, HeldService)
    service.add_gateway("HELD-GW", "Gateway held")
    c = client(held.port, "HELD-GW", v5=True)
    acks = Acks(c)
    info = c.publish("v1/gateway/telemetry", '{"quick":[{"q":1}],"held":[{"h":1}]}', qos=1)
    eventually(lambda: stored(service, "quick"))
    assert info.mid not in acks.reasons  # "held" is not stored yet: no PUBACK
    service.release_telemetry.set()
    assert acks.of(info) == "Success"
    assert [g.values for g in stored(service, "held")] == [{"h": 1}]
    c.disconnect()
    c.loop_stop()


def test_a_slow_child_lookup_never_lets_later_publishes_overtake(held):
    service = held.service
    assert isinstance(service, HeldService)
    service.add_gateway("ORDER-GW", "Gateway order")
    c = client(held.port, "ORDER-GW", v5=True)
    c.publish("v1/gateway/telemetry", '{"known":[{"seq":0}]}', qos=1).wait_for_publish(WAIT)
    first = c.publish("v1/gateway/telemetry", '{"slow":[{"s":1}],"known":[{"seq":1}]}', qos=1)
    second = c.publish("v1/gateway/telemetry", '{"known":[{"seq":2}]}', qos=1)
    eventually(service.lookup_started.is_set)
    # the gateway's own telemetry, read after seq 2, is not held up: once it is stored, seq 2 was read too
    c.publish("v1/devices/me/telemetry", '{"marker":1}', qos=1)
    eventually(lambda: stored(service, "Gateway order"))
    assert [g.values for g in stored(service, "known")] == [{"seq": 0}]  # seq 2 waits behind the lookup
    service.release_lookup.set()
    first.wait_for_publish(WAIT)
    second.wait_for_publish(WAIT)
    assert [g.values for g in stored(service, "known")] == [{"seq": 0}, {"seq": 1}, {"seq": 2}]
    c.disconnect()
    c.loop_stop()
