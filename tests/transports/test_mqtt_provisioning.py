"""The MQTT provisioning exchange alone (behind the in-memory platform): what a "provision" session
may and may not do, on raw MQTT 3.1.1 frames."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.transports.test_mqtt_server import WAIT, Running
from thingsray.transports.mqtt import codec

DISCONNECT = b"\xe0\x00"


@pytest.fixture(scope="module")
def mqtt() -> Iterator[Running]:
    running = Running()
    yield running
    running.stop()


def exchange(port: int, *frames: bytes, until_closed: bool = True) -> bytes:
    """Send the frames and read what comes back until the server closes (or a short quiet spell)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"".join(frames))
        received = b""
        sock.settimeout(WAIT if until_closed else 1.0)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
        return received


CONNACK_OK = b"\x20\x02\x00\x00"


def suback(packet_id: int, code: int) -> bytes:
    return bytes([0x90, 3, 0, packet_id, code])


def puback(packet_id: int) -> bytes:
    return bytes([0x40, 2, 0, packet_id])


def published(frame: bytes) -> tuple[str, dict]:
    """Topic and JSON body of a QoS 0 PUBLISH frame (remaining length under 128 bytes)."""
    assert frame[0] == 0x30 and frame[1] == len(frame) - 2, frame
    topic_length = int.from_bytes(frame[2:4], "big")
    return frame[4:4 + topic_length].decode(), json.loads(frame[4 + topic_length:])


def subscribe(packet_id: int, topic: str) -> bytes:
    return codec.subscribe_packet(packet_id, [(topic, 1)])


def publish(topic: str, body: object, packet_id: int = 7) -> bytes:
    return codec.publish(codec.MQTT_311, topic, json.dumps(body).encode(), qos=1, packet_id=packet_id)


def test_a_provision_session_gets_its_answer(mqtt: Running) -> None:
    request = {"deviceName": "fresh", "provisionDeviceKey": "KEY", "provisionDeviceSecret": "SECRET"}
    data = exchange(mqtt.port, codec.connect_packet("any", username="provision"),
                    subscribe(1, "/provision/response"), publish("/provision/request", request), DISCONNECT)
    head = CONNACK_OK + suback(1, 1) + puback(7)
    assert data.startswith(head), data
    assert published(data[len(head):]) == ("/provision/response", {
        "credentialsType": "ACCESS_TOKEN", "credentialsValue": "token-of-fresh", "status": "SUCCESS"})
    assert mqtt.service.provision_requests[-1] == request
    assert "connect fresh" not in mqtt.service.events, "a provisioning session is no device session"


def test_a_client_id_of_provision_is_a_provision_session_too(mqtt: Running) -> None:
    request = {"provisionDeviceKey": "KEY", "provisionDeviceSecret": "wrong"}
    data = exchange(mqtt.port, codec.connect_packet("provision"), publish("/provision/request", request), DISCONNECT)
    head = CONNACK_OK + puback(7)
    assert data.startswith(head), data
    assert published(data[len(head):]) == ("/provision/response", {"errorMsg": "Provision data was not found!",
                                                                   "status": "NOT_FOUND"})


def test_other_topics_close_a_provision_session(mqtt: Running) -> None:
    data = exchange(mqtt.port, codec.connect_packet("x", username="provision"),
                    subscribe(1, "v1/devices/me/rpc/request/+"), publish("v1/devices/me/telemetry", {"a": 1}))
    assert data == CONNACK_OK + suback(1, 0x80)  # the publish gets no PUBACK: the session is closed


def test_a_malformed_request_closes_an_mqtt_311_provision_session(mqtt: Running) -> None:
    bad = codec.publish(codec.MQTT_311, "/provision/request", b"{not json", qos=1, packet_id=3)
    assert exchange(mqtt.port, codec.connect_packet("x", username="provision"), bad) == CONNACK_OK
