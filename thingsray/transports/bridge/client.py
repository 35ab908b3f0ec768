"""One bridge: a subscription to an external broker whose messages become devices' telemetry and
attributes through the platform's ``TransportService``.

The promise (DESIGN.md 4): a QoS 1 message is acknowledged (PUBACK) only after the platform
returned from ``post_telemetry``/``post_attributes``, that is after the durable commit. paho's
manual acknowledgement does it; aiomqtt does not expose it, so the bridge turns it on in the paho
client aiomqtt wraps. With a persistent session (``cleanSession`` false, the default) a message
not yet acknowledged when the connection or the process is lost is delivered again: at least once.

Messages are processed concurrently (up to ``window`` at once), in order per device, and
acknowledged in the order they arrived, as MQTT asks of a receiver.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import aiomqtt

from thingsray.transports.bridge.config import BridgeConfig, Broker, Mapping
from thingsray.transports.bridge.convert import DeviceData, convert, topic_matches
from thingsray.transports.payloads import PayloadError
from thingsray.transports.service import AuthError, DeviceIdentity, TransportService

log = logging.getLogger(__name__)

IDENTITY_CACHE = 100_000
"""Device identities a bridge remembers by name (the oldest are forgotten first)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between attempts: ``first_s``, doubling, at most ``cap_s``."""

    first_s: float = 1.0
    cap_s: float = 30.0

    def delays(self) -> Iterator[float]:
        delay = self.first_s
        while True:
            yield delay
            delay = min(delay * 2, self.cap_s)


class BridgeState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"
    """Lost the broker (or never reached it); waiting to try again."""
    STOPPED = "stopped"


_NEXT_STATES = {
    BridgeState.IDLE: {BridgeState.CONNECTING, BridgeState.STOPPED},
    BridgeState.CONNECTING: {BridgeState.CONNECTED, BridgeState.WAITING, BridgeState.STOPPED},
    BridgeState.CONNECTED: {BridgeState.WAITING, BridgeState.STOPPED},
    BridgeState.WAITING: {BridgeState.CONNECTING, BridgeState.STOPPED},
    BridgeState.STOPPED: {BridgeState.STOPPED},
}


@dataclass(slots=True)
class BridgeStats:
    received: int = 0
    delivered: int = 0
    """Messages whose every device's data the platform stored."""
    unmapped: int = 0
    """Messages on a topic no mapping's filter matches (a subscription the session kept from before)."""
    failed: int = 0
    """Messages not JSON, without a device name or values, or refused by the platform."""
    reconnects: int = 0
    """Connections made after the first."""
    retries: int = 0
    """Deliveries tried again after the platform failed (the message stays unacknowledged meanwhile)."""
    skipped_values: int = 0
    """Values left out because they could not take their mapping's type."""


class _Rejected(Exception):
    """The platform refused the data for what it is; trying again would not help."""


class _AckQueue:
    """The QoS 1 messages of one connection not yet acknowledged, in arrival order."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._pending: collections.deque[list[Any]] = collections.deque()

    def add(self, mid: int) -> list[Any]:
        entry = [mid, False]
        self._pending.append(entry)
        return entry

    def ready(self, entry: list[Any]) -> None:
        entry[1] = True
        while self._pending and self._pending[0][1]:
            mid = self._pending.popleft()[0]
            self._client._client.ack(mid, 1)  # aiomqtt has no manual ack of its own


class MqttBridge:
    """``start()`` runs the subscription loop in a task until ``stop()``; ``stats()`` at any time."""

    def __init__(self, config: BridgeConfig, service: TransportService, *, backoff: Backoff | None = None,
                 window: int = 100) -> None:
        if config.tenant_id is None:
            raise ValueError(f"{config.where}: the tenant {config.tenant_title!r} is not resolved to its id")
        self.config = config
        self.tenant_id = config.tenant_id
        self.service = service
        self.backoff = backoff or Backoff()
        self.window = window
        self.state = BridgeState.IDLE
        self.counts = BridgeStats()
        self._ssl = _ssl_context(config.broker)
        self._task: asyncio.Task[None] | None = None
        self._identities: dict[str, DeviceIdentity] = {}
        self._last_per_device: dict[str, asyncio.Task[None]] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._subscriptions = _subscriptions(config.mappings)

    @property
    def name(self) -> str:
        return self.config.name

    def _move(self, state: BridgeState) -> None:
        if state not in _NEXT_STATES[self.state]:
            raise RuntimeError(f"bridge {self.name}: {self.state.value} cannot become {state.value}")
        self.state = state

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"bridge {self.name}")

    async def stop(self) -> None:
        """Disconnect; messages not yet stored stay unacknowledged, for the broker to deliver again."""
        task, self._task = self._task, None
        pending = [t for t in (task, *self._deliveries) if t is not None]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._move(BridgeState.STOPPED)

    def stats(self) -> dict[str, Any]:
        broker = self.config.broker
        return {"name": self.name, "broker": f"{broker.host}:{broker.port}", "tenantId": str(self.tenant_id),
                "state": self.state.value, "connected": self.state is BridgeState.CONNECTED,
                "inFlight": len(self._deliveries), "devices": len(self._identities), **asdict(self.counts)}

    # --- connection ---------------------------------------------------------------------------
    async def _run(self) -> None:
        delays = self.backoff.delays()
        connections = 0
        while True:
            self._move(BridgeState.CONNECTING)
            try:
                client = self._client()
                async with client:
                    connections += 1
                    if connections > 1:
                        self.counts.reconnects += 1
                    await self._subscribe(client)
                    self._move(BridgeState.CONNECTED)
                    delays = self.backoff.delays()  # a connection that worked starts the waits over
                    log.info("bridge %s: connected to %s:%s", self.name, self.config.broker.host,
                             self.config.broker.port)
                    await self._consume(client)
            except aiomqtt.MqttError as exc:
                log.warning("bridge %s: broker %s:%s: %s", self.name, self.config.broker.host,
                            self.config.broker.port, exc)
            except Exception:  # a fault of ours must not end the bridge: log it, and connect again
                log.exception("bridge %s: the subscription loop failed", self.name)
            self._move(BridgeState.WAITING)
            await asyncio.sleep(next(delays))

    def _client(self) -> aiomqtt.Client:
        broker = self.config.broker
        client = aiomqtt.Client(broker.host, broker.port, username=broker.username, password=broker.password,
                                identifier=broker.client_id, clean_session=broker.clean_session,
                                keepalive=broker.keepalive, tls_context=self._ssl, logger=log)
        client._client.manual_ack_set(True)  # the paho client aiomqtt wraps (see above)
        return client

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        granted = await client.subscribe(self._subscriptions)
        for (topic, _), code in zip(self._subscriptions, granted, strict=False):
            value = code if isinstance(code, int) else code.value
            if value >= 0x80:
                log.error("bridge %s: the broker refused the subscription to %r (code %s)", self.name, topic, value)

    async def _consume(self, client: aiomqtt.Client) -> None:
        acks = _AckQueue(client)
        room = asyncio.Semaphore(self.window)
        async for message in client.messages:
            await room.acquire()
            entry = acks.add(message.mid) if message.qos == 1 else None
            task = self._process(message.topic.value, _payload(message.payload))
            if task is None:
                room.release()
                if entry is not None:
                    acks.ready(entry)
                continue

            def done(finished: asyncio.Task[None], entry: list[Any] | None = entry) -> None:
                room.release()
                if entry is not None and not finished.cancelled():
                    acks.ready(entry)

            task.add_done_callback(done)

    # --- messages -----------------------------------------------------------------------------
    def _process(self, topic: str, payload: bytes) -> asyncio.Task[None] | None:
        """Convert at once; deliver in a task (None: nothing to deliver, acknowledge now)."""
        self.counts.received += 1
        mappings = [m for m in self.config.mappings if topic_matches(m.topic_filter, topic)]
        if not mappings:
            self.counts.unmapped += 1
            log.warning("bridge %s: no mapping for topic %r; message dropped", self.name, topic)
            return None
        devices: list[DeviceData] = []
        problems: list[str] = []
        for mapping in mappings:
            try:
                devices += convert(mapping.converter, topic, payload)
            except PayloadError as exc:
                problems.append(f"mapping {mapping.topic_filter!r}: {exc}")
        for data in devices:
            if data.skipped:
                self.counts.skipped_values += len(data.skipped)
                log.warning("bridge %s: device %r, topic %r: left out %s", self.name, data.device_name, topic,
                            "; ".join(data.skipped))
        if problems:
            self.counts.failed += 1
            log.warning("bridge %s: message on %r: %s", self.name, topic, "; ".join(problems))
            if not devices:
                return None
        received_ts = int(time.time() * 1000)
        previous = [self._last_per_device[d.device_name] for d in devices if d.device_name in self._last_per_device]
        task = asyncio.create_task(self._deliver(devices, previous, received_ts, counted=bool(problems)))
        self._deliveries.add(task)
        for data in devices:
            self._last_per_device[data.device_name] = task
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        for name in [n for n, t in self._last_per_device.items() if t is task]:
            del self._last_per_device[name]

    async def _deliver(self, devices: list[DeviceData], previous: list[asyncio.Task[None]], received_ts: int,
                       counted: bool) -> None:
        """Every device's data, after the same devices' earlier messages; never raises but CancelledError."""
        if previous:
            await asyncio.gather(*previous, return_exceptions=True)
        refused = []
        for data in devices:
            try:
                await self._post(data, received_ts)
            except _Rejected as exc:
                refused.append(str(exc))
        if refused:
            log.warning("bridge %s: the platform refused %s", self.name, "; ".join(refused))
            if not counted:
                self.counts.failed += 1
        elif not counted:
            self.counts.delivered += 1

    async def _post(self, data: DeviceData, received_ts: int) -> None:
        """Until stored: failures of the platform are tried again after a wait; refusals raise ``_Rejected``."""
        telemetry_id, attributes_id = uuid.uuid4(), uuid.uuid4()  # one id per message, so a retry is recognised
        telemetry_done = not data.telemetry
        attributes_done = not data.attributes
        delays = self.backoff.delays()
        while True:
            try:
                identity = await self._identity(data)
                if not telemetry_done:
                    await self.service.post_telemetry(identity, list(data.telemetry), telemetry_id, received_ts)
                    telemetry_done = True
                if not attributes_done:
                    await self.service.post_attributes(identity, dict(data.attributes), attributes_id, received_ts)
                return
            except (ValueError, AuthError) as exc:  # bad input, as the platform says: the same each time
                raise _Rejected(f"device {data.device_name!r}: {exc}") from exc
            except Exception as exc:
                self._identities.pop(data.device_name, None)  # the device may be gone: look it up again
                self.counts.retries += 1
                delay = next(delays)
                log.warning("bridge %s: storing data of device %r failed (%r); trying again in %.0f s",
                            self.name, data.device_name, exc, delay)
                await asyncio.sleep(delay)

    async def _identity(self, data: DeviceData) -> DeviceIdentity:
        identity = self._identities.get(data.device_name)
        if identity is None:
            identity = await self.service.tenant_device(self.tenant_id, data.device_name, data.device_type)
            if len(self._identities) >= IDENTITY_CACHE:
                self._identities.pop(next(iter(self._identities)))
            self._identities[data.device_name] = identity
        return identity


def _subscriptions(mappings: tuple[Mapping, ...]) -> list[tuple[str, int]]:
    """One subscription per topic filter, at the highest QoS its mappings ask."""
    wanted: dict[str, int] = {}
    for mapping in mappings:
        wanted[mapping.topic_filter] = max(wanted.get(mapping.topic_filter, 0), mapping.qos)
    return list(wanted.items())


def _payload(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return b"" if payload is None else str(payload).encode()


def _ssl_context(broker: Broker) -> ssl.SSLContext | None:
    if broker.tls is None:
        return None
    context = ssl.create_default_context(cafile=broker.tls.ca_cert)
    if broker.tls.cert:
        context.load_cert_chain(broker.tls.cert, broker.tls.private_key)
    if broker.tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
