"""The MQTT transport on its own, behind an in-memory platform, driven by real clients:
paho (MQTT 3.1.1 and 5), the official tb-mqtt-client, and raw sockets for what clients never send."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.transports.memory_service import MemoryService
from thingsray.transports.mqtt import codec
from thingsray.transports.mqtt.server import MqttServer
from thingsray.transports.payloads import JsonValue, TelemetryGroup

WAIT = 10.0  # a bound on waiting for something that should happen at once; never a speed assertion


class Running:
    """The MQTT listener in a thread of its own, behind an in-memory platform."""

    def __init__(self, service: MemoryService | None = None, ssl_context: Any = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.service = service or MemoryService()
        self.server = MqttServer(self.service, "127.0.0.1", 0, ssl_context=ssl_context)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self.run(self.server.start())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)


@pytest.fixture(scope="module")
def mqtt() -> Iterator[Running]:
    running = Running()
    yield running
    running.stop()


def eventually(check: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met")
        time.sleep(0.01)


def client(port: int, username: str | None, *, v5: bool = False, client_id: str = "", password: str | None = None,
           on_message: Any = None) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
    if username is not None:
        c.username_pw_set(username, password)
    if on_message is not None:
        c.on_message = on_message
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c


def connack_code(port: int, **kwargs: Any) -> Any:
    results: list[Any] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=kwargs.pop("client_id", ""),
                    protocol=paho.MQTTv5 if kwargs.pop("v5", False) else paho.MQTTv311)
    c.username_pw_set(kwargs.get("username"), kwargs.get("password"))
    c.on_connect = lambda _c, _u, _f, reason, _p: results.append(reason)
    c.connect("127.0.0.1", port)
    c.loop_start()
    eventually(lambda: results)
    c.loop_stop()
    c.disconnect()
    return results[0]


def test_token_as_username_and_qos1_telemetry_in_every_form(mqtt):
    mqtt.service.add_token("TOKEN-1", "dev1")
    c = client(mqtt.port, "TOKEN-1")
    for payload in ('{"temperature":25}', '{"ts":1609459200000,"values":{"humidity":"40"}}',
                    '[{"a":true},{"ts":5,"values":{"j":{"x":[1]}}}]'):
        c.publish("v1/devices/me/telemetry", payload, qos=1).wait_for_publish(WAIT)
    c.publish("v2/t", '{"short":1.5}', qos=1).wait_for_publish(WAIT)
    c.disconnect()
    eventually(lambda: "disconnect dev1" in mqtt.service.events)  # the platform hears a clean DISCONNECT
    mine = [g for name, g in mqtt.service.telemetry if name == "dev1"]
    assert mine == [TelemetryGroup(None, {"temperature": 25}), TelemetryGroup(1609459200000, {"humidity": 40}),
                    TelemetryGroup(None, {"a": True}), TelemetryGroup(5, {"j": JsonValue('{"x":[1]}')}),
                    TelemetryGroup(None, {"short": 1.5})]
    c.loop_stop()


def test_wrong_credentials_are_refused_at_connect(mqtt):
    assert connack_code(mqtt.port, username="NO-SUCH-TOKEN") == "Not authorized"
    mqtt.service.add_basic("basic-client", "basic-user", "secret", "basic-dev")
    assert connack_code(mqtt.port, client_id="basic-client", username="basic-user",
                        password="wrong") == "Bad user name or password"
    assert connack_code(mqtt.port, client_id="basic-client", username="basic-user", password="secret") == "Success"
    assert connack_code(mqtt.port, username="NO-SUCH-TOKEN", v5=True) == "Not authorized"


def test_attribute_request_shared_updates_and_server_rpc(mqtt):
    identity = mqtt.service.add_token("TOKEN-2", "dev2")
    mqtt.service.shared["dev2"] = {"target": 21}
    received: list[tuple[str, Any]] = []
    c = client(mqtt.port, "TOKEN-2", on_message=lambda _c, _u, m: received.append((m.topic, json.loads(m.payload))))
    c.subscribe([("v1/devices/me/attributes", 1), ("v1/devices/me/attributes/response/+", 1),
                 ("v1/devices/me/rpc/request/+", 1)])
    eventually(lambda: identity.device_id in mqtt.service.rpc_sinks)
    c.publish("v1/devices/me/attributes", '{"fw":"1.2.3","model":"X"}', qos=1).wait_for_publish(WAIT)
    c.publish("v1/devices/me/attributes/request/7", '{"clientKeys":"model","sharedKeys":"target"}', qos=1)
    eventually(lambda: any(t.endswith("/response/7") for t, _ in received))
    assert ("v1/devices/me/attributes/response/7", {"client": {"model": "X"}, "shared": {"target": 21}}) in received
    mqtt.run(mqtt.service.share(identity, {"target": 23}))
    eventually(lambda: ("v1/devices/me/attributes", {"target": 23}) in received)
    assert mqtt.run(mqtt.service.call(identity, 1, "setGpio", {"pin": 4})) is True  # the device PUBACKed it
    assert ("v1/devices/me/rpc/request/1", {"method": "setGpio", "params": {"pin": 4}}) in received
    c.publish("v1/devices/me/rpc/response/1", '{"ok":true}', qos=1).wait_for_publish(WAIT)
    assert mqtt.service.rpc_responses[1] == {"ok": True}
    c.disconnect()
    c.loop_stop()


def test_client_side_rpc_session_limits_and_claim(mqtt):
    mqtt.service.add_token("TOKEN-3", "dev3")
    received: list[tuple[str, Any]] = []
    c = client(mqtt.port, "TOKEN-3", v5=True,
               on_message=lambda _c, _u, m: received.append((m.topic, json.loads(m.payload))))
    c.subscribe("v1/devices/me/rpc/response/+", qos=1)
    time.sleep(0.05)
    c.publish("v1/devices/me/rpc/request/5", '{"method":"getSessionLimits","params":{}}', qos=1)
    c.publish("v1/devices/me/rpc/request/6", '{"method":"echo","params":{"a":1}}', qos=1)
    c.publish("v1/devices/me/rpc/request/8", '{"method":"fail","params":null}', qos=1)
    eventually(lambda: len(received) == 3)
    answers = dict(received)
    assert answers["v1/devices/me/rpc/response/5"]["maxPayloadSize"] == 65536
    assert set(answers["v1/devices/me/rpc/response/5"]["rateLimits"]) == {
        "messages", "telemetryMessages", "telemetryDataPoints"}
    assert answers["v1/devices/me/rpc/response/6"] == {"echo": {"a": 1}, "method": "echo"}
    assert answers["v1/devices/me/rpc/response/8"] == {"error": "no such method"}
    c.publish("v1/devices/me/claim", '{"secretKey":"s3cret","durationMs":60000}', qos=1).wait_for_publish(WAIT)
    assert ("dev3", "s3cret", 60000) in mqtt.service.claims
    c.disconnect()
    c.loop_stop()


def test_mqtt5_bad_payload_and_unknown_topic_get_reason_codes_and_the_session_lives(mqtt):
    mqtt.service.add_token("TOKEN-4", "dev4")
    acks: dict[int, Any] = {}
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.username_pw_set("TOKEN-4")
    c.on_publish = lambda _c, _u, mid, reason, _p: acks.__setitem__(mid, reason)
    c.connect("127.0.0.1", mqtt.port)
    c.loop_start()
    bad = c.publish("v1/devices/me/telemetry", "not json", qos=1)
    unknown = c.publish("v1/devices/me/nowhere", "{}", qos=1)
    good = c.publish("v1/devices/me/telemetry", '{"after":1}', qos=1)
    eventually(lambda: len(acks) == 3)
    assert acks[bad.mid] == "Payload format invalid"
    assert acks[unknown.mid] == "Topic name invalid"
    assert acks[good.mid] == "Success"
    assert ("dev4", TelemetryGroup(None, {"after": 1})) in mqtt.service.telemetry
    c.disconnect()
    c.loop_stop()


def test_mqtt311_bad_payload_closes_only_that_session(mqtt):
    mqtt.service.add_token("TOKEN-5", "dev5")
    mqtt.service.add_token("TOKEN-6", "dev6")
    other = client(mqtt.port, "TOKEN-6")
    disconnected = threading.Event()
    victim = client(mqtt.port, "TOKEN-5")
    victim.on_disconnect = lambda *_: disconnected.set()
    victim.publish("v1/devices/me/telemetry", "{broken", qos=1)
    assert disconnected.wait(WAIT)
    victim.loop_stop()
    other.publish("v1/devices/me/telemetry", '{"still":"here"}', qos=1).wait_for_publish(WAIT)
    assert ("dev6", TelemetryGroup(None, {"still": "here"})) in mqtt.service.telemetry
    other.disconnect()
    other.loop_stop()


def test_wildcard_and_unknown_subscriptions_are_refused(mqtt):
    mqtt.service.add_token("TOKEN-7", "dev7")
    granted: list[Any] = []
    c = client(mqtt.port, "TOKEN-7", v5=True)
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.extend(codes)
    c.subscribe([("#", 1), ("v1/devices/me/other", 1), ("v1/devices/me/attributes", 2)])
    eventually(lambda: len(granted) == 3)
    assert [g.value for g in granted] == [0xA2, 0x8F, 1]  # wildcards refused, unknown filter, QoS capped at 1
    c.disconnect()
    c.loop_stop()


def test_a_second_connection_of_the_device_replaces_the_first(mqtt):
    mqtt.service.add_token("TOKEN-8", "dev8")
    first_closed = threading.Event()
    first = client(mqtt.port, "TOKEN-8")
    first.on_disconnect = lambda *_: first_closed.set()
    eventually(lambda: "connect dev8" in mqtt.service.events)
    second = client(mqtt.port, "TOKEN-8")
    assert first_closed.wait(WAIT)
    first.loop_stop()
    second.publish("v1/devices/me/telemetry", '{"from":"second"}', qos=1).wait_for_publish(WAIT)
    second.disconnect()
    second.loop_stop()


def test_official_tb_mqtt_client(mqtt):
    from tb_device_mqtt import TBDeviceMqttClient

    identity = mqtt.service.add_token("TB-CLIENT-TOKEN", "tb-dev")
    tb = TBDeviceMqttClient("127.0.0.1", port=mqtt.port, username="TB-CLIENT-TOKEN")
    tb.connect()
    try:
        eventually(tb.is_connected)
        assert tb.send_telemetry({"temperature": 41.5}).get() == 0
        assert tb.send_telemetry({"ts": 1700000000000, "values": {"pressure": 3}}).get() == 0
        assert tb.send_attributes({"firmware": "2.0"}).get() == 0
        assert ("tb-dev", TelemetryGroup(None, {"temperature": 41.5})) in mqtt.service.telemetry
        answers: list[Any] = []
        tb.request_attributes(client_keys=["firmware"], callback=lambda result, _e: answers.append(result))
        eventually(lambda: answers)
        assert answers[0] == {"client": {"firmware": 2.0}}
        rpcs: list[Any] = []

        def on_rpc(request_id: Any, body: Any) -> None:
            rpcs.append(body)
            tb.send_rpc_reply(request_id, {"done": True})

        tb.set_server_side_rpc_request_handler(on_rpc)
        eventually(lambda: identity.device_id in mqtt.service.rpc_sinks)
        mqtt.service.rpc_answered.clear()
        assert mqtt.run(mqtt.service.call(identity, 42, "reboot", {})) is True
        eventually(lambda: 42 in mqtt.service.rpc_responses)
        assert rpcs == [{"method": "reboot", "params": {}}]
        assert mqtt.service.rpc_responses[42] == {"done": True}
    finally:
        tb.disconnect()


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_unsupported_protocol_level_gets_its_connack_and_garbage_a_close(mqtt):
    old = codec._frame(0x10, codec._str("MQTT") + bytes([3, 2, 0, 60]) + codec._str("c"))
    assert raw_exchange(mqtt.port, old) == b"\x20\x02\x00\x01"
    assert raw_exchange(mqtt.port, b"\x00\x00garbage") == b""
    publish_first = codec.publish(codec.MQTT_311, "v1/devices/me/telemetry", b"{}")
    assert raw_exchange(mqtt.port, publish_first) == b""


def test_random_and_mutated_packets_never_hurt_the_listener(mqtt):
    import random

    mqtt.service.add_token("FUZZ-TOKEN", "fuzz")
    rng = random.Random(1234)
    base = (codec.connect_packet("fz", username="FUZZ-TOKEN")
            + codec.publish(codec.MQTT_311, "v1/devices/me/telemetry", b'{"a":1}', qos=1, packet_id=3)
            + codec.subscribe_packet(4, [("v1/devices/me/attributes", 1)]))
    for _ in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = bytearray(rng.randbytes(rng.randint(1, 300)))
        with socket.create_connection(("127.0.0.1", mqtt.port), timeout=WAIT) as s:
            s.sendall(bytes(data))
            s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(4096):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
    # the listener still serves a well-behaved device
    mqtt.service.add_token("AFTER-FUZZ", "after")
    c = client(mqtt.port, "AFTER-FUZZ")
    c.publish("v1/devices/me/telemetry", '{"ok":1}', qos=1).wait_for_publish(WAIT)
    assert ("after", TelemetryGroup(None, {"ok": 1})) in mqtt.service.telemetry
    c.disconnect()
    c.loop_stop()
