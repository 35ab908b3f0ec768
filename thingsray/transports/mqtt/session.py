"""One MQTT device connection: CONNECT and authentication, then publishes, subscriptions and
what the platform pushes back, until the socket closes.

Publishes of a session are handled one after the other, so the platform sees them in order and
each QoS 1 PUBACK leaves once its message is durably processed (DESIGN.md section 4). A bad
payload or an unknown topic costs the session (3.1.1) or that message (MQTT 5 reason code),
never another session.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from thingsray.transports.mqtt import codec, topics
from thingsray.transports.mqtt.codec import (
    MQTT_5,
    Ack,
    Auth,
    Connect,
    Decoder,
    Disconnect,
    MalformedPacket,
    PacketType,
    PingReq,
    Publish,
    Reason,
    Subscribe,
    Unsubscribe,
)
from thingsray.transports.mqtt.gateway import GatewaySession
from thingsray.transports.mqtt.provisioning import ProvisioningExchange, is_provisioning
from thingsray.transports.mqtt.tls import peer_certificate_pem
from thingsray.transports.payloads import (
    PayloadError,
    loads,
    parse_attribute_request,
    parse_attributes,
    parse_telemetry,
)
from thingsray.transports.service import (
    AttributeUpdate,
    AuthError,
    AuthFailure,
    DeviceIdentity,
    RpcRequest,
    TransportService,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MqttOptions:
    connect_timeout_s: float = 10.0
    max_packet_size: int = 65536 + 4096
    max_payload_size: int = 65536
    rpc_ack_timeout_s: float = 10.0
    max_inflight: int = 100
    """Publishes of one session in processing at once; past it the session stops reading."""


_MSG_ID_BASE = uuid.uuid4().int & ~((1 << 64) - 1)
_msg_counter = itertools.count(1)


def _msg_id() -> uuid.UUID:
    """A message id unique to this process's life: a random 64-bit prefix and a counter (no
    entropy read per message). Ids tell repeats apart; stored rows are keyed by timestamps."""
    return uuid.UUID(int=_MSG_ID_BASE | next(_msg_counter))


_TELEMETRY_TOPICS = frozenset(("v1/devices/me/telemetry", "v2/t"))


def _answered(reason: Reason | None) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(reason)
    return future


class State(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class SessionClosed(Exception):
    pass


class MqttSession:
    """Also the ``SessionSink`` the platform pushes through."""

    _ids = itertools.count(1)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: TransportService,
                 options: MqttOptions) -> None:
        self.reader = reader
        self.writer = writer
        self.service = service
        self.options = options
        self.state = State.CONNECTING
        self.level = codec.MQTT_311
        self.device: DeviceIdentity | None = None
        self.peer_certificate_pem = peer_certificate_pem(writer)
        """The client certificate of a TLS connection, verified against the CA (X.509 devices)."""
        self._session_id = f"mqtt-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        self._decoder = Decoder(options.max_packet_size)
        self._write_lock = asyncio.Lock()
        self._packet_ids = itertools.cycle(range(1, 65536))
        self._awaiting_ack: dict[int, asyncio.Future[None]] = {}
        self._attributes_short: bool | None = None
        self._rpc_short: bool | None = None
        self.keep_alive = 0
        self._pending: list[codec.Packet] = []
        self._registered = False
        """The platform knows this session (connect succeeded): it must hear of its end."""
        self._inflight: asyncio.Queue[tuple[Publish, asyncio.Future[Reason | None]]] = asyncio.Queue(
            maxsize=options.max_inflight)
        self._acker: asyncio.Task[None] | None = None
        self._tasks = 0
        """Publishes on the general path (``_process`` tasks) not finished yet."""
        self._rpc_waiters: set[asyncio.Task[None]] = set()
        self.gateway: GatewaySession | None = None
        """The gateway API's side of the session, for a gateway device (``v1/gateway/*``)."""
        """Device-side RPCs waiting for a rule chain's answer (their publish is acknowledged)."""

    @property
    def session_id(self) -> str:
        return self._session_id

    # --- the connection's life -------------------------------------------------------------
    async def run(self) -> None:
        try:
            connect = await self._read_connect()
            if connect is not None and await self._accept(connect):
                await self._serve()
        except (SessionClosed, ConnectionError, asyncio.IncompleteReadError):
            pass
        except MalformedPacket as exc:
            log.debug("session %s: malformed packet: %s", self._session_id, exc)
            await self._send_disconnect(exc.reason)
        except Exception:
            log.exception("session %s failed", self._session_id)
            await self._send_disconnect(Reason.IMPLEMENTATION_SPECIFIC_ERROR)
        finally:
            await self._finish()

    async def _read_connect(self) -> Connect | None:
        deadline = time.monotonic() + self.options.connect_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    data = await self.reader.read(65536)
            except TimeoutError:
                return None
            if not data:
                return None
            try:
                packets = self._decoder.feed(data)
            except MalformedPacket as exc:
                if exc.reason is Reason.UNSUPPORTED_PROTOCOL_VERSION:
                    await self._write(codec.connack(codec.MQTT_311, Reason.UNSUPPORTED_PROTOCOL_VERSION))
                return None
            if packets:
                first = packets[0]
                if not isinstance(first, Connect):
                    return None  # the first packet must be CONNECT: close
                self.level = first.protocol_level
                self._pending = packets[1:]
                return first

    async def _accept(self, connect: Connect) -> bool:
        self.keep_alive = connect.keep_alive
        refusal = Reason.BAD_USER_NAME_OR_PASSWORD if connect.username and connect.password else Reason.NOT_AUTHORIZED
        if is_provisioning(connect):
            self.state = State.CONNECTED
            await self._write(codec.connack(self.level, Reason.SUCCESS))
            await ProvisioningExchange(self).run(self._pending)
            return False
        password = None
        if connect.password is not None:
            try:
                password = connect.password.decode()
            except UnicodeDecodeError:
                await self._write(codec.connack(self.level, Reason.BAD_USER_NAME_OR_PASSWORD))
                return False
        try:
            self.device = await self._certificate_device()
            if self.device is None:
                self.device = await self.service.authenticate_basic(connect.client_id, connect.username, password)
        except AuthError as exc:
            reason = Reason.SERVER_UNAVAILABLE if exc.failure is AuthFailure.UNAVAILABLE else refusal
            await self._write(codec.connack(self.level, reason))
            return False
        properties = {}
        if self.level == MQTT_5:
            # no Maximum Packet Size / Receive Maximum: tb-mqtt-client mistakes them for its service
            # configuration and warns; it asks getSessionLimits for the real limits anyway
            properties = {codec.PROP["maximum_qos"]: 1, codec.PROP["retain_available"]: 0,
                          codec.PROP["wildcard_subscription_available"]: 0,
                          codec.PROP["shared_subscription_available"]: 0}
        await self.service.connect(self.device, self)
        self._registered = True
        if self.device.gateway:
            self.gateway = GatewaySession(self)
        self.state = State.CONNECTED
        await self._write(codec.connack(self.level, Reason.SUCCESS, properties=properties))
        return True

    async def _certificate_device(self) -> DeviceIdentity | None:
        """The X.509 device of the client certificate (verified against the CA by the handshake);
        None without a certificate or when no device has it: then the CONNECT's credentials decide."""
        if self.peer_certificate_pem is None:
            return None
        try:
            return await self.service.authenticate_x509(self.peer_certificate_pem)
        except AuthError as exc:
            if exc.failure is AuthFailure.UNAVAILABLE:
                raise
            return None

    async def _serve(self) -> None:
        self._acker = asyncio.get_running_loop().create_task(self._acknowledge())
        for packet in self._pending:
            await self._handle(packet)
        self._pending = []
        idle_limit = self.keep_alive * 1.5 if self.keep_alive else None
        while self.state is State.CONNECTED:
            try:
                async with asyncio.timeout(idle_limit):
                    data = await self.reader.read(65536)
            except TimeoutError:
                await self._send_disconnect(Reason.KEEP_ALIVE_TIMEOUT)
                return
            if not data:
                return
            for packet in self._decoder.feed(data):
                await self._handle(packet)
                if self.state is not State.CONNECTED:
                    return

    async def _finish(self) -> None:
        self.state = State.CLOSED
        if self._acker is not None:
            self._acker.cancel()  # what is in flight still reaches the platform; its acks cannot leave
        for waiter in list(self._rpc_waiters):
            waiter.cancel()
        for future in self._awaiting_ack.values():
            if not future.done():
                future.cancel()
        if self.gateway is not None:
            await self.gateway.close()
        if self._registered and self.device is not None:
            self._registered = False
            try:
                await self.service.disconnect(self.device, self)
            except Exception:
                log.exception("session %s: reporting the disconnect failed", self._session_id)
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    # --- packets ---------------------------------------------------------------------------
    async def _handle(self, packet: codec.Packet) -> None:
        match packet:
            case Publish():
                await self._publish(packet)
            case Ack(kind=PacketType.PUBACK, packet_id=packet_id):
                future = self._awaiting_ack.pop(packet_id, None)
                if future is not None and not future.done():
                    future.set_result(None)
            case Ack(kind=PacketType.PUBREL, packet_id=packet_id):
                await self._write(codec.ack(self.level, PacketType.PUBCOMP, packet_id))
            case Ack():
                pass  # PUBREC/PUBCOMP: we never publish with QoS 2
            case Subscribe():
                await self._subscribe(packet)
            case Unsubscribe():
                await self._unsubscribe(packet)
            case PingReq():
                await self._write(codec.pingresp())
            case Disconnect():
                self.state = State.CLOSED
            case Connect():
                raise MalformedPacket("a second CONNECT", Reason.PROTOCOL_ERROR)
            case Auth():
                raise MalformedPacket("enhanced authentication is not supported", Reason.PROTOCOL_ERROR)

    async def _publish(self, packet: Publish) -> None:
        """Start processing now, in arrival order; ``_acknowledge`` answers in the same order.

        Publishes of a session are pipelined: each goes to the platform as it arrives (the platform
        keeps their order per device), and PUBACKs leave in order as they complete. The window is
        ``max_inflight``; when it is full the session stops reading its socket."""
        assert self.device is not None
        if packet.qos == 2 and self.level == MQTT_5:
            raise MalformedPacket("QoS 2 is not supported", Reason.QOS_NOT_SUPPORTED)
        processing = None
        if packet.topic in _TELEMETRY_TOPICS and not self._tasks:
            processing = self._telemetry_nowait(packet)
        if processing is None:
            # while a task has not finished, later publishes take tasks too: tasks reach the
            # platform in the order they were made, and the fast path must not overtake them
            processing = asyncio.ensure_future(self._process(packet))
            self._tasks += 1
            processing.add_done_callback(self._task_done)
        await self._inflight.put((packet, processing))

    def _task_done(self, _: asyncio.Future[Any]) -> None:
        self._tasks -= 1

    def _telemetry_nowait(self, packet: Publish) -> asyncio.Future[Any] | None:
        """The hot path without a task: parse, hand to the platform, and the future of the commit
        (answered with None, or a refusal's reason). None: take the general path (``_process``)."""
        submit = getattr(self.service, "post_telemetry_nowait", None)
        if submit is None or len(packet.payload) > self.options.max_payload_size:
            return None
        received = int(time.time() * 1000)
        try:
            groups = parse_telemetry(packet.payload)
        except PayloadError as exc:
            log.debug("session %s: bad payload on %s: %s", self._session_id, packet.topic, exc)
            return _answered(Reason.PAYLOAD_FORMAT_INVALID)
        if not groups:
            return _answered(None)
        assert self.device is not None
        try:
            future: asyncio.Future[Any] | None = submit(self.device, groups, _msg_id(), received)
        except Exception as exc:  # answered like a failure of the general path
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        return future

    async def _acknowledge(self) -> None:
        acks = bytearray()
        """Acks ready together leave in one write (one send() for a session's whole answered window)."""
        try:
            while True:
                if acks and self._inflight.empty():
                    await self._flush_acks(acks)
                packet, processing = await self._inflight.get()
                if acks and not processing.done():
                    await self._flush_acks(acks)
                try:
                    reason = await processing
                    if not isinstance(reason, Reason):
                        reason = None  # the platform's answer to a telemetry future: committed
                except Exception:
                    log.exception("session %s: the platform failed a publish to %s", self._session_id,
                                  packet.topic)
                    reason = Reason.IMPLEMENTATION_SPECIFIC_ERROR if self.level == MQTT_5 else Reason.UNSPECIFIED_ERROR
                    if self.level != MQTT_5:
                        raise SessionClosed("the platform failed a publish") from None
                if reason is not None and self.level != MQTT_5:
                    raise SessionClosed(f"refused a publish to {packet.topic}")  # 3.1.1 has no negative PUBACK
                if packet.qos == 1:
                    acks += codec.ack(self.level, PacketType.PUBACK, packet.packet_id or 0, int(reason or 0))
                elif packet.qos == 2:
                    acks += codec.ack(self.level, PacketType.PUBREC, packet.packet_id or 0)
        except (SessionClosed, ConnectionError):
            if acks:  # the acks of what completed before the failure are still owed
                with contextlib.suppress(Exception):
                    self.writer.write(bytes(acks))
            self.state = State.CLOSED
            self.writer.close()

    async def _flush_acks(self, acks: bytearray) -> None:
        self.writer.write(bytes(acks))
        acks.clear()
        await self.writer.drain()

    async def _process(self, packet: Publish) -> Reason | None:
        """Hand a publish to the platform; a reason code when it was refused."""
        device = self.device
        assert device is not None
        if self.gateway is not None and packet.topic.startswith(topics.GATEWAY_PREFIX):
            return await self.gateway.publish(packet)
        route = topics.route(packet.topic)
        if route is None:
            log.debug("session %s: publish to unknown topic %r", self._session_id, packet.topic)
            return Reason.TOPIC_NAME_INVALID
        if len(packet.payload) > self.options.max_payload_size:
            return Reason.PACKET_TOO_LARGE
        received = int(time.time() * 1000)
        try:
            match route.feature:
                case topics.Feature.TELEMETRY:
                    groups = parse_telemetry(packet.payload)
                    if groups:
                        await self.service.post_telemetry(device, groups, _msg_id(), received)
                case topics.Feature.ATTRIBUTES:
                    values = parse_attributes(packet.payload)
                    if values:
                        await self.service.post_attributes(device, values, _msg_id(), received)
                case topics.Feature.ATTRIBUTE_REQUEST:
                    request = parse_attribute_request(packet.payload)
                    answer = await self.service.get_attributes(device, request)
                    body = {section: values for section, values in answer.items() if values}
                    await self._send(topics.attribute_response_topic(route.request_id or 0, route.short), body)
                case topics.Feature.RPC_RESPONSE:
                    payload = loads(packet.payload) if packet.payload else None
                    await self.service.rpc_response(device, route.request_id or 0, payload)
                case topics.Feature.CLIENT_RPC:
                    await self._client_rpc(route, packet.payload)
                case topics.Feature.CLAIM:
                    body = loads(packet.payload) if packet.payload.strip() else {}
                    if not isinstance(body, dict):
                        raise PayloadError("a claim must be a JSON object")
                    duration = body.get("durationMs")
                    if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool)):
                        raise PayloadError("'durationMs' must be an integer")
                    await self.service.claim(device, body.get("secretKey"), duration)
        except PayloadError as exc:
            log.debug("session %s: bad payload on %s: %s", self._session_id, packet.topic, exc)
            return Reason.PAYLOAD_FORMAT_INVALID
        return None

    async def _client_rpc(self, route: topics.Route, payload: bytes) -> None:
        assert self.device is not None
        body = loads(payload)
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            raise PayloadError("a client-side RPC must be {\"method\": ..., \"params\": ...}")
        topic = topics.rpc_response_topic(route.request_id or 0, route.short)
        if body["method"] == "getSessionLimits":
            await self._send(topic, self.service.session_limits(self.device).to_json(self.device.gateway))
            return
        device = self.device

        async def answer_when_ready() -> None:
            # the publish is acknowledged now; the rule chain's answer (RPC Call Reply) may take a
            # while, and nothing is sent when no chain answers, as with ThingsBoard
            try:
                answer = await self.service.client_rpc(device, body["method"], body.get("params"))
            except Exception as exc:
                answer = {"error": str(exc) or type(exc).__name__}
            if answer is not None and self.state is State.CONNECTED:
                await self._send(topic, answer)

        waiter = asyncio.get_running_loop().create_task(answer_when_ready())
        self._rpc_waiters.add(waiter)
        waiter.add_done_callback(self._rpc_waiters.discard)

    async def _subscribe(self, packet: Subscribe) -> None:
        assert self.device is not None
        codes = []
        for topic_filter, qos in packet.topics:
            kind = topics.SUBSCRIPTIONS.get(topic_filter)
            if kind is None and self.gateway is not None and self.gateway.subscribe(topic_filter, qos):
                codes.append(min(qos, 1))
                continue
            if kind is None:
                wildcard = "#" in topic_filter or "+" in topic_filter
                failure = Reason.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED if wildcard else Reason.TOPIC_FILTER_INVALID
                codes.append(int(failure) if self.level == MQTT_5 else 0x80)
                continue
            if kind in (topics.Subscription.ATTRIBUTES, topics.Subscription.ATTRIBUTES_SHORT):
                self._attributes_short = kind is topics.Subscription.ATTRIBUTES_SHORT
                await self.service.subscribe(self.device, self, attributes=True)
            elif kind in (topics.Subscription.RPC, topics.Subscription.RPC_SHORT):
                self._rpc_short = kind is topics.Subscription.RPC_SHORT
                await self.service.subscribe(self.device, self, rpc=True)
            codes.append(min(qos, 1))
        await self._write(codec.suback(self.level, packet.packet_id, codes))

    async def _unsubscribe(self, packet: Unsubscribe) -> None:
        assert self.device is not None
        for topic_filter in packet.topics:
            if self.gateway is not None:
                self.gateway.unsubscribe(topic_filter)
            kind = topics.SUBSCRIPTIONS.get(topic_filter)
            if kind in (topics.Subscription.ATTRIBUTES, topics.Subscription.ATTRIBUTES_SHORT):
                self._attributes_short = None
                await self.service.subscribe(self.device, self, attributes=False)
            elif kind in (topics.Subscription.RPC, topics.Subscription.RPC_SHORT):
                self._rpc_short = None
                await self.service.subscribe(self.device, self, rpc=False)
        await self._write(codec.unsuback(self.level, packet.packet_id, len(packet.topics)))

    # --- the sink: what the platform pushes -----------------------------------------------
    async def push_attributes(self, update: AttributeUpdate) -> None:
        if self.state is not State.CONNECTED or self._attributes_short is None:
            return
        body: dict[str, Any] = dict(update.values)
        if update.deleted:
            body["deleted"] = list(update.deleted)
        await self._send(topics.attributes_topic(self._attributes_short), body)

    async def push_rpc(self, request: RpcRequest) -> bool:
        if self.state is not State.CONNECTED or self._rpc_short is None:
            return False
        topic = topics.rpc_request_topic(request.request_id, self._rpc_short)
        return await self.deliver(topic, {"method": request.method, "params": request.params}, qos=1)

    async def deliver(self, topic: str, body: Any, qos: int = 0) -> bool:
        """Publish ``body`` to the client: True once written (QoS 0) or acknowledged (QoS 1); False
        when the session is not connected, ends first, or no PUBACK comes within ``rpc_ack_timeout_s``."""
        if self.state is not State.CONNECTED:
            return False
        packet_id = next(self._packet_ids) if qos else None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if packet_id is not None:
            self._awaiting_ack[packet_id] = future
        try:
            await self._send(topic, body, qos=qos, packet_id=packet_id)
            if packet_id is not None:
                async with asyncio.timeout(self.options.rpc_ack_timeout_s):
                    await future
        except (TimeoutError, asyncio.CancelledError, ConnectionError, SessionClosed):
            return False
        finally:
            if packet_id is not None:
                self._awaiting_ack.pop(packet_id, None)
        return True

    async def close(self, reason: str) -> None:
        log.info("session %s closed by the platform: %s", self._session_id, reason)
        if self.state is State.CONNECTED:
            code = Reason.SESSION_TAKEN_OVER if "another session" in reason else Reason.NOT_AUTHORIZED
            await self._send_disconnect(code)
        self.state = State.CLOSED
        self.writer.close()

    # --- writing ---------------------------------------------------------------------------
    async def _send(self, topic: str, body: Any, qos: int = 0, packet_id: int | None = None) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        await self._write(codec.publish(self.level, topic, payload, qos=qos, packet_id=packet_id))

    async def _send_disconnect(self, reason: Reason) -> None:
        frame = codec.disconnect(self.level, reason) if self.state is State.CONNECTED else None
        if frame is not None:
            with contextlib.suppress(Exception):
                await self._write(frame)

    async def _write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise SessionClosed("socket is closing")
        async with self._write_lock:
            self.writer.write(data)
            await self.writer.drain()
