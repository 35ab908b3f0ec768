"""MQTT 3.1.1 and 5.0 packets: an incremental decoder for what clients send, encoders for what
the server sends. Protocol only: no sockets, no sessions.

A malformed packet raises ``MalformedPacket`` carrying the MQTT 5 reason code that answers it
(0x81 malformed, 0x82 protocol error, 0x95 packet too large, 0x84 unsupported protocol version);
the session decides whether that becomes a CONNACK, a DISCONNECT or a plain close (3.1.1).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Any

MQTT_311 = 4
MQTT_5 = 5


class PacketType(enum.IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class Reason(enum.IntEnum):
    """MQTT 5 reason codes we send (3.1.1 maps CONNACK ones to its return codes)."""

    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_TOO_LARGE = 0x95
    QUOTA_EXCEEDED = 0x97
    PAYLOAD_FORMAT_INVALID = 0x99
    QOS_NOT_SUPPORTED = 0x9B
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2
    CONNECTION_RATE_EXCEEDED = 0x9F
    KEEP_ALIVE_TIMEOUT = 0x8D


# 3.1.1 CONNACK return codes for the MQTT 5 reasons that refuse a connection
CONNACK_311 = {
    Reason.SUCCESS: 0, Reason.UNSUPPORTED_PROTOCOL_VERSION: 1, Reason.CLIENT_IDENTIFIER_NOT_VALID: 2,
    Reason.SERVER_UNAVAILABLE: 3, Reason.SERVER_BUSY: 3, Reason.CONNECTION_RATE_EXCEEDED: 3,
    Reason.BAD_USER_NAME_OR_PASSWORD: 4, Reason.NOT_AUTHORIZED: 5,
}


class MalformedPacket(Exception):
    def __init__(self, message: str, reason: Reason = Reason.MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason = reason


# --- packets ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Connect:
    protocol_level: int
    client_id: str
    clean_start: bool
    keep_alive: int
    username: str | None = None
    password: bytes | None = None
    will: Publish | None = None
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Ack:
    """PUBACK, PUBREC, PUBREL, PUBCOMP from the client."""

    kind: PacketType
    packet_id: int
    reason: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    topics: list[tuple[str, int]]
    """(filter, requested QoS)."""
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topics: list[str]


@dataclass(slots=True)
class PingReq:
    pass


@dataclass(slots=True)
class Disconnect:
    reason: int = 0


@dataclass(slots=True)
class Auth:
    reason: int = 0


Packet = Connect | Publish | Ack | Subscribe | Unsubscribe | PingReq | Disconnect | Auth

# --- MQTT 5 properties -----------------------------------------------------------------------
# id -> (name, kind); kinds: byte, u16, u32, varint, str, bin, pair
PROPERTIES: dict[int, tuple[str, str]] = {
    0x01: ("payload_format_indicator", "byte"), 0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"), 0x08: ("response_topic", "str"), 0x09: ("correlation_data", "bin"),
    0x0B: ("subscription_identifier", "varint"), 0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "str"), 0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "str"), 0x16: ("authentication_data", "bin"),
    0x17: ("request_problem_information", "byte"), 0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "byte"), 0x1A: ("response_information", "str"),
    0x1C: ("server_reference", "str"), 0x1F: ("reason_string", "str"), 0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"), 0x23: ("topic_alias", "u16"), 0x24: ("maximum_qos", "byte"),
    0x25: ("retain_available", "byte"), 0x26: ("user_property", "pair"),
    0x27: ("maximum_packet_size", "u32"), 0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"), 0x2A: ("shared_subscription_available", "byte"),
}
PROP = {name: pid for pid, (name, _) in PROPERTIES.items()}


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = bytes(data)
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedPacket("packet ends before its fields do")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("!I", self.take(4))[0]

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
        raise MalformedPacket("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("string is not valid UTF-8") from None
        if "\x00" in text:
            raise MalformedPacket("string contains U+0000")
        return text

    def properties(self) -> dict[int, Any]:
        length = self.varint()
        end = self.pos + length
        if end > len(self.data):
            raise MalformedPacket("properties run past the packet")
        props: dict[int, Any] = {}
        while self.pos < end:
            pid = self.varint()
            spec = PROPERTIES.get(pid)
            if spec is None:
                raise MalformedPacket(f"unknown property 0x{pid:02x}")
            kind = spec[1]
            value: Any
            match kind:
                case "byte":
                    value = self.byte()
                case "u16":
                    value = self.u16()
                case "u32":
                    value = self.u32()
                case "varint":
                    value = self.varint()
                case "str":
                    value = self.string()
                case "bin":
                    value = self.binary()
                case _:
                    value = (self.string(), self.string())
            if kind == "pair" or pid == 0x0B:
                props.setdefault(pid, []).append(value)
            elif pid in props:
                raise MalformedPacket(f"property 0x{pid:02x} given twice", Reason.PROTOCOL_ERROR)
            else:
                props[pid] = value
        if self.pos != end:
            raise MalformedPacket("properties length does not match their content")
        return props


# --- decoding --------------------------------------------------------------------------------
class Decoder:
    """Feed bytes as they arrive; get whole packets. ``protocol_level`` is learnt from CONNECT."""

    def __init__(self, max_packet_size: int = 65536 + 1024) -> None:
        self.max_packet_size = max_packet_size
        self.protocol_level = MQTT_311
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        self._buffer += data
        packets: list[Packet] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return packets
            first, body = frame
            packets.append(self._decode(first, body))

    def _next_frame(self) -> tuple[int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return None
            b = buf[i]
            length |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
            if i > 4:
                raise MalformedPacket("remaining length longer than 4 bytes")
        if length + i > self.max_packet_size:
            raise MalformedPacket(f"packet of {length + i} bytes exceeds the maximum of {self.max_packet_size}",
                                  Reason.PACKET_TOO_LARGE)
        if len(buf) < i + length:
            return None
        first = buf[0]
        body = bytes(buf[i:i + length])
        del buf[:i + length]
        return first, body

    def _decode(self, first: int, body: bytes) -> Packet:
        kind, flags = first >> 4, first & 0x0F
        try:
            packet_type = PacketType(kind)
        except ValueError:
            raise MalformedPacket(f"reserved packet type {kind}") from None
        r = _Reader(body)
        v5 = self.protocol_level == MQTT_5
        match packet_type:
            case PacketType.CONNECT:
                return self._connect(r)
            case PacketType.PUBLISH:
                return self._publish(r, flags, v5)
            case PacketType.PUBACK | PacketType.PUBREC | PacketType.PUBREL | PacketType.PUBCOMP:
                expected = 0x02 if packet_type is PacketType.PUBREL else 0
                if flags != expected:
                    raise MalformedPacket(f"{packet_type.name} with flags {flags:#x}")
                packet_id = r.u16()
                reason = r.byte() if v5 and r.remaining() else 0
                if v5 and r.remaining():
                    r.properties()
                return Ack(packet_type, packet_id, reason)
            case PacketType.SUBSCRIBE:
                if flags != 0x02:
                    raise MalformedPacket("SUBSCRIBE flags must be 0x2")
                packet_id = r.u16()
                props = r.properties() if v5 else {}
                topics = []
                while r.remaining():
                    topic = r.string()
                    options = r.byte()
                    if options & 0xC0 or (not v5 and options & 0xFC) or (options & 0x03) == 3:
                        raise MalformedPacket("bad subscription options")
                    topics.append((topic, options & 0x03))
                if not topics:
                    raise MalformedPacket("SUBSCRIBE with no topic filter", Reason.PROTOCOL_ERROR)
                return Subscribe(packet_id, topics, props)
            case PacketType.UNSUBSCRIBE:
                if flags != 0x02:
                    raise MalformedPacket("UNSUBSCRIBE flags must be 0x2")
                packet_id = r.u16()
                if v5:
                    r.properties()
                names = []
                while r.remaining():
                    names.append(r.string())
                if not names:
                    raise MalformedPacket("UNSUBSCRIBE with no topic filter", Reason.PROTOCOL_ERROR)
                return Unsubscribe(packet_id, names)
            case PacketType.PINGREQ:
                return PingReq()
            case PacketType.DISCONNECT:
                reason = r.byte() if v5 and r.remaining() else 0
                return Disconnect(reason)
            case PacketType.AUTH:
                return Auth(r.byte() if r.remaining() else 0)
            case _:
                raise MalformedPacket(f"a client may not send {packet_type.name}", Reason.PROTOCOL_ERROR)

    def _connect(self, r: _Reader) -> Connect:
        name = r.string()
        level = r.byte()
        if name != "MQTT" or level not in (MQTT_311, MQTT_5):
            if name == "MQIsdp" or level in (3,):
                raise MalformedPacket(f"protocol {name} level {level} is not supported",
                                      Reason.UNSUPPORTED_PROTOCOL_VERSION)
            raise MalformedPacket(f"protocol {name!r} level {level} is not supported",
                                  Reason.UNSUPPORTED_PROTOCOL_VERSION)
        self.protocol_level = level
        v5 = level == MQTT_5
        flags = r.byte()
        if flags & 0x01:
            raise MalformedPacket("CONNECT reserved flag is set")
        keep_alive = r.u16()
        props = r.properties() if v5 else {}
        client_id = r.string()
        will = None
        if flags & 0x04:
            will_props = r.properties() if v5 else {}
            will_topic = r.string()
            will = Publish(will_topic, r.binary(), qos=(flags >> 3) & 0x03, retain=bool(flags & 0x20),
                           properties=will_props)
            if will.qos > 2:
                raise MalformedPacket("will QoS 3")
        elif flags & 0x38:
            raise MalformedPacket("will QoS or retain set without a will")
        username = r.string() if flags & 0x80 else None
        password = r.binary() if flags & 0x40 else None
        if r.remaining():
            raise MalformedPacket("bytes after the CONNECT payload")
        return Connect(level, client_id, bool(flags & 0x02), keep_alive, username, password, will, props)

    @staticmethod
    def _publish(r: _Reader, flags: int, v5: bool) -> Publish:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        topic = r.string()
        packet_id = r.u16() if qos else None
        if packet_id == 0:
            raise MalformedPacket("PUBLISH packet identifier 0")
        props = r.properties() if v5 else {}
        payload = r.take(r.remaining())
        return Publish(topic, payload, qos, bool(flags & 0x01), bool(flags & 0x08), packet_id, props)


# --- encoding --------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def encode_properties(props: dict[int, Any]) -> bytes:
    out = bytearray()
    for pid, value in props.items():
        kind = PROPERTIES[pid][1]
        values = value if kind == "pair" or (pid == 0x0B and isinstance(value, list)) else [value]
        for v in values:
            out += _varint(pid)
            match kind:
                case "byte":
                    out.append(v)
                case "u16":
                    out += struct.pack("!H", v)
                case "u32":
                    out += struct.pack("!I", v)
                case "varint":
                    out += _varint(v)
                case "str":
                    out += _str(v)
                case "bin":
                    out += struct.pack("!H", len(v)) + v
                case _:
                    out += _str(v[0]) + _str(v[1])
    return _varint(len(out)) + bytes(out)


def _frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connack(level: int, reason: Reason, session_present: bool = False,
            properties: dict[int, Any] | None = None) -> bytes:
    if level == MQTT_5:
        body = bytes([1 if session_present else 0, int(reason)]) + encode_properties(properties or {})
    else:
        body = bytes([1 if session_present else 0, CONNACK_311.get(reason, 5)])
    return _frame(PacketType.CONNACK << 4, body)


def publish(level: int, topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None,
            retain: bool = False, properties: dict[int, Any] | None = None) -> bytes:
    body = _str(topic)
    if qos:
        assert packet_id is not None
        body += struct.pack("!H", packet_id)
    if level == MQTT_5:
        body += encode_properties(properties or {})
    return _frame((PacketType.PUBLISH << 4) | (qos << 1) | int(retain), body + payload)


def ack(level: int, kind: PacketType, packet_id: int, reason: int = 0) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""
    body = struct.pack("!H", packet_id)
    if level == MQTT_5 and reason:
        body += bytes([reason])
    first = (kind << 4) | (0x02 if kind is PacketType.PUBREL else 0)
    return _frame(first, body)


def suback(level: int, packet_id: int, codes: list[int]) -> bytes:
    body = struct.pack("!H", packet_id)
    if level == MQTT_5:
        body += encode_properties({})
    return _frame(PacketType.SUBACK << 4, body + bytes(codes))


def unsuback(level: int, packet_id: int, count: int) -> bytes:
    body = struct.pack("!H", packet_id)
    if level == MQTT_5:
        body += encode_properties({}) + bytes([0] * count)
    return _frame(PacketType.UNSUBACK << 4, body)


def pingresp() -> bytes:
    return bytes([PacketType.PINGRESP << 4, 0])


def disconnect(level: int, reason: Reason = Reason.SUCCESS) -> bytes | None:
    """A server DISCONNECT exists in MQTT 5 only; for 3.1.1 the server just closes (None)."""
    if level != MQTT_5:
        return None
    return _frame(PacketType.DISCONNECT << 4, bytes([int(reason)]) + encode_properties({}))


# --- client-side encoders (tests, benchmarks, fuzzers) ---------------------------------------
def connect_packet(client_id: str, *, level: int = MQTT_311, username: str | None = None,
                   password: bytes | None = None, keep_alive: int = 60, clean: bool = True,
                   properties: dict[int, Any] | None = None) -> bytes:
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _str("MQTT") + bytes([level, flags]) + struct.pack("!H", keep_alive)
    if level == MQTT_5:
        body += encode_properties(properties or {})
    body += _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += struct.pack("!H", len(password)) + password
    return _frame(PacketType.CONNECT << 4, body)


def subscribe_packet(packet_id: int, topics: list[tuple[str, int]], level: int = MQTT_311) -> bytes:
    body = struct.pack("!H", packet_id)
    if level == MQTT_5:
        body += encode_properties({})
    for topic, qos in topics:
        body += _str(topic) + bytes([qos])
    return _frame((PacketType.SUBSCRIBE << 4) | 0x02, body)
