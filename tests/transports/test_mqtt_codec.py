"""The MQTT codec: what real clients send decodes; what is malformed raises MalformedPacket
with the right reason, whatever the bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thingsray.transports.mqtt import codec
from thingsray.transports.mqtt.codec import (
    MQTT_5,
    MQTT_311,
    Ack,
    Connect,
    Decoder,
    MalformedPacket,
    PacketType,
    Publish,
    Reason,
    Subscribe,
)


def test_connect_311_with_token_as_username():
    decoder = Decoder()
    [packet] = decoder.feed(codec.connect_packet("dev-1", username="A1_TEST_TOKEN", keep_alive=30))
    assert isinstance(packet, Connect)
    assert (packet.protocol_level, packet.client_id, packet.username, packet.password) == (
        MQTT_311, "dev-1", "A1_TEST_TOKEN", None)
    assert packet.keep_alive == 30 and packet.clean_start


def test_connect_5_with_properties_then_publish_with_properties():
    decoder = Decoder()
    data = codec.connect_packet("c", level=MQTT_5, username="u", password=b"p",
                                properties={codec.PROP["session_expiry_interval"]: 60,
                                            codec.PROP["user_property"]: [("a", "b")]})
    [connect] = decoder.feed(data)
    assert connect.protocol_level == MQTT_5 and connect.password == b"p"
    assert connect.properties[codec.PROP["session_expiry_interval"]] == 60
    assert connect.properties[codec.PROP["user_property"]] == [("a", "b")]
    frame = codec.publish(MQTT_5, "v1/devices/me/telemetry", b'{"t":1}', qos=1, packet_id=7,
                          properties={codec.PROP["content_type"]: "application/json"})
    [publish] = decoder.feed(frame)
    assert isinstance(publish, Publish)
    assert (publish.topic, publish.payload, publish.qos, publish.packet_id) == (
        "v1/devices/me/telemetry", b'{"t":1}', 1, 7)
    assert publish.properties[codec.PROP["content_type"]] == "application/json"


def test_packets_split_anywhere_and_glued_together_decode_the_same():
    stream = (codec.connect_packet("x", username="t")
              + codec.publish(MQTT_311, "a/b", b"1" * 300, qos=1, packet_id=1)
              + codec.subscribe_packet(2, [("v1/devices/me/rpc/request/+", 1)])
              + bytes([0xC0, 0]))
    for cut in (1, 2, 3, 7, 150, 333):
        decoder = Decoder()
        packets = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert [type(p).__name__ for p in packets] == ["Connect", "Publish", "Subscribe", "PingReq"]
    decoder = Decoder()
    packets = [p for b in stream for p in decoder.feed(bytes([b]))]
    assert isinstance(packets[2], Subscribe) and packets[2].topics == [("v1/devices/me/rpc/request/+", 1)]


def test_client_acks_decode():
    decoder = Decoder()
    decoder.feed(codec.connect_packet("x"))
    [puback, pubrel] = decoder.feed(codec.ack(MQTT_311, PacketType.PUBACK, 5)
                                    + codec.ack(MQTT_311, PacketType.PUBREL, 6))
    assert puback == Ack(PacketType.PUBACK, 5, 0) and pubrel == Ack(PacketType.PUBREL, 6, 0)


@pytest.mark.parametrize(("data", "reason"), [
    (bytes([0x10, 0x05]) + b"\x00\x03MQX", Reason.MALFORMED_PACKET),                      # truncated
    (codec._frame(0x10, codec._str("MQTT") + bytes([9, 2, 0, 60]) + codec._str("c")),
     Reason.UNSUPPORTED_PROTOCOL_VERSION),
    (codec._frame(0x10, codec._str("MQIsdp") + bytes([3, 2, 0, 60]) + codec._str("c")),
     Reason.UNSUPPORTED_PROTOCOL_VERSION),
    (codec._frame(0x10, codec._str("MQTT") + bytes([4, 3, 0, 60]) + codec._str("c")), Reason.MALFORMED_PACKET),
    (bytes([0x00, 0x00]), Reason.MALFORMED_PACKET),                                         # reserved type
    (bytes([0x20, 0x02, 0, 0]), Reason.PROTOCOL_ERROR),                                     # CONNACK from a client
    (bytes([0x36, 0x05]) + codec._str("a") + b"\x00\x01", Reason.MALFORMED_PACKET),       # QoS 3
    (bytes([0x32, 0x05]) + codec._str("a") + b"\x00\x00", Reason.MALFORMED_PACKET),       # packet id 0
    (bytes([0x30, 0x04]) + struct.pack("!H", 2) + b"\xff\xfe", Reason.MALFORMED_PACKET),  # invalid UTF-8 topic
    (bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), Reason.MALFORMED_PACKET),                # 5-byte length
    (bytes([0x80, 0x03, 0, 1]) + b"\x00", Reason.MALFORMED_PACKET),                         # SUBSCRIBE bad flags
])
def test_malformed_packets_raise_with_their_reason(data, reason):
    decoder = Decoder()
    with pytest.raises(MalformedPacket) as caught:
        decoder.feed(data)
    assert caught.value.reason == reason


def test_oversized_packet_is_refused_before_it_is_buffered():
    decoder = Decoder(max_packet_size=1024)
    header = bytes([0x30]) + codec._varint(10_000)
    with pytest.raises(MalformedPacket) as caught:
        decoder.feed(header)
    assert caught.value.reason == Reason.PACKET_TOO_LARGE


def test_server_frames_have_the_bytes_the_spec_gives():
    assert codec.connack(MQTT_311, Reason.SUCCESS) == b"\x20\x02\x00\x00"
    assert codec.connack(MQTT_311, Reason.NOT_AUTHORIZED) == b"\x20\x02\x00\x05"
    assert codec.connack(MQTT_311, Reason.BAD_USER_NAME_OR_PASSWORD) == b"\x20\x02\x00\x04"
    assert codec.connack(MQTT_5, Reason.NOT_AUTHORIZED) == b"\x20\x03\x00\x87\x00"
    assert codec.ack(MQTT_311, PacketType.PUBACK, 258) == b"\x40\x02\x01\x02"
    assert codec.ack(MQTT_5, PacketType.PUBACK, 1, Reason.PAYLOAD_FORMAT_INVALID) == b"\x40\x03\x00\x01\x99"
    assert codec.suback(MQTT_311, 3, [1, 0x80]) == b"\x90\x04\x00\x03\x01\x80"
    assert codec.pingresp() == b"\xd0\x00"
    assert codec.disconnect(MQTT_311) is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([MQTT_311, MQTT_5]))
def test_random_bytes_never_raise_anything_but_malformed_packet(data, level):
    decoder = Decoder(max_packet_size=4096)
    decoder.protocol_level = level
    try:
        decoder.feed(data)
    except MalformedPacket:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_packets_never_raise_anything_but_malformed_packet(data):
    stream = bytearray(codec.connect_packet("dev", level=MQTT_5, username="tok", password=b"pw")
                       + codec.publish(MQTT_5, "v1/devices/me/telemetry", b'{"a":1}', qos=1, packet_id=9)
                       + codec.subscribe_packet(4, [("v1/devices/me/attributes", 1)], level=MQTT_5))
    for _ in range(data.draw(st.integers(1, 6))):
        index = data.draw(st.integers(0, len(stream) - 1))
        stream[index] = data.draw(st.integers(0, 255))
    decoder = Decoder(max_packet_size=4096)
    try:
        decoder.feed(bytes(stream))
    except MalformedPacket:
        pass
