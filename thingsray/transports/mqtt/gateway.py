"""ThingsBoard's MQTT gateway API (spec 1.1, "Gateway API"): one gateway device's session speaks
for many child devices.

Each child gets a platform session of its own (``ChildSession``) that writes through the gateway's
connection. It opens on ``v1/gateway/connect`` or on the child's first message, subscribed to
shared attributes and RPC as ThingsBoard subscribes it, and ends on ``v1/gateway/disconnect`` or
with the gateway's session. A child's identity is looked up (or the device created) once per
gateway session.

Gateway publishes reach the platform in arrival order: a child's lookup holds up the publishes
after it, never lets them overtake. A QoS 1 publish is acknowledged once every device's part of it
is durably processed.

Bad input is answered per ``Fault`` (MQTT 5: a PUBACK reason code; MQTT 3.1.1: as ThingsBoard
answers), logged, and counted in ``refusals``. The other devices' parts of a message are still
processed; only a malformed 3.1.1 publish costs the gateway its session (3.1.1 has no negative
PUBACK, and ThingsBoard closes it too). Other sessions never notice.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thingsray.transports.mqtt import topics
from thingsray.transports.mqtt.codec import MQTT_5, Publish, Reason
from thingsray.transports.payloads import (
    AttributeRequest,
    PayloadError,
    TelemetryGroup,
    loads,
    telemetry_group,
    typed_values,
)
from thingsray.transports.service import AttributeUpdate, AuthError, AuthFailure, DeviceIdentity, RpcRequest

if TYPE_CHECKING:
    from thingsray.transports.mqtt.session import MqttSession

log = logging.getLogger(__name__)

CHILD_SEPARATOR = "/"
"""A child's session id is its gateway session's id, this, and a number."""
MAX_NAME_LENGTH = 255

refusals: collections.Counter[str] = collections.Counter()
"""Bad gateway input seen by this process, by kind (the transport's stats report it)."""


class Fault(enum.IntEnum):
    """What was wrong with a gateway publish; the worst one decides the answer."""

    NONE = 0
    REFUSED = 1
    """A device the gateway may not speak for. MQTT 5: NOT_AUTHORIZED; 3.1.1: acknowledged, as
    ThingsBoard acknowledges a publish whose device it cannot get."""
    SKIPPED = 2
    """A device's part of the wrong JSON type, or under a bad name; the other devices' parts are
    processed. MQTT 5: PAYLOAD_FORMAT_INVALID; 3.1.1: acknowledged (ThingsBoard skips the part)."""
    INVALID = 3
    """Malformed JSON, a payload of the wrong shape, or a device's data that does not parse.
    MQTT 5: PAYLOAD_FORMAT_INVALID; 3.1.1: the session closes, as ThingsBoard closes it."""

    def answer(self, level: int) -> Reason | None:
        """The PUBACK reason (None: success); the session closes a 3.1.1 connection on any reason."""
        if self is Fault.INVALID:
            return Reason.PAYLOAD_FORMAT_INVALID
        if level != MQTT_5:
            return None
        return {Fault.SKIPPED: Reason.PAYLOAD_FORMAT_INVALID, Fault.REFUSED: Reason.NOT_AUTHORIZED}.get(self)


@dataclass(slots=True)
class _Work:
    """One gateway publish on its way: what it started on the platform, and what was wrong with it."""

    received: int
    tasks: list[asyncio.Future[Any]] = field(default_factory=list)
    fault: Fault = Fault.NONE

    def start(self, call: Awaitable[Any]) -> None:
        """Hand ``call`` to the platform now (tasks start in the order made, which keeps the order)."""
        self.tasks.append(asyncio.ensure_future(call))

    def flag(self, fault: Fault) -> None:
        self.fault = max(self.fault, fault)


def _object(payload: bytes) -> dict[str, Any]:
    body = loads(payload)
    if not isinstance(body, dict):
        raise PayloadError("a gateway payload must be a JSON object")
    return body


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and 0 < len(name.strip()) <= MAX_NAME_LENGTH


def _name(value: Any) -> str:
    if not _valid_name(value):
        raise PayloadError(f"'device' must be a device name (1 to {MAX_NAME_LENGTH} characters), got {value!r}")
    return str(value)


def _integer(value: Any, what: str) -> int:
    if isinstance(value, str) and value.isdigit() and len(value) <= 10:
        return int(value)  # ThingsBoard's getAsInt takes a numeric string too
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise PayloadError(f"'{what}' must be an integer, got {value!r}")
    return value


def _telemetry_of(value: list[Any]) -> list[TelemetryGroup]:
    return [group for group in (telemetry_group(item) for item in value) if group.values]


def _claim_of(value: dict[str, Any]) -> tuple[str | None, int | None]:
    secret, duration = value.get("secretKey"), value.get("durationMs")
    if secret is not None and not isinstance(secret, str):
        raise PayloadError("'secretKey' must be a string")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
        raise PayloadError("'durationMs' must be an integer")
    return secret, duration


class ChildSession:
    """A child device's platform session (a ``SessionSink``), written through its gateway's connection."""

    def __init__(self, gateway: GatewaySession, name: str, identity: DeviceIdentity, session_id: str) -> None:
        self.gateway = gateway
        self.name = name
        """The name the gateway used; messages to the gateway carry the device's stored name, as ThingsBoard's do."""
        self.identity = identity
        self._session_id = session_id
        self.ended = False

    @property
    def session_id(self) -> str:
        return self._session_id

    async def push_attributes(self, update: AttributeUpdate) -> None:
        if self.ended:
            return
        data: dict[str, Any] = dict(update.values)
        if update.deleted:
            data["deleted"] = list(update.deleted)
        body = {"device": self.identity.device_name, "data": data}
        await self.gateway.session.deliver(topics.GATEWAY_ATTRIBUTES_TOPIC, body)

    async def push_rpc(self, request: RpcRequest) -> bool:
        """Sent with the QoS the gateway subscribed to ``v1/gateway/rpc`` with (0 when it did not,
        as ThingsBoard sends it anyway); True once acknowledged (QoS 1) or written (QoS 0)."""
        if self.ended:
            return False
        body = {"device": self.identity.device_name,
                "data": {"id": request.request_id, "method": request.method, "params": request.params}}
        qos = self.gateway.granted_qos(topics.GATEWAY_RPC_TOPIC)
        return await self.gateway.session.deliver(topics.GATEWAY_RPC_TOPIC, body, qos=qos)

    async def close(self, reason: str) -> None:
        """The platform ends the child's session (another session took over, the device was deleted):
        the gateway's connection stays; the child reconnects on its next message."""
        self.gateway.ended_by_platform(self, reason)


Handler = Callable[["GatewaySession", bytes, _Work], Awaitable[None]]


class GatewaySession:
    """The gateway half of a gateway device's MQTT session."""

    def __init__(self, session: MqttSession) -> None:
        assert session.device is not None
        self.session = session
        self.gateway = session.device
        self.service = session.service
        self._children: dict[str, ChildSession] = {}
        """Connected children by the name the gateway uses."""
        self._by_id: dict[str, ChildSession] = {}
        self._identities: dict[str, DeviceIdentity] = {}
        """Every name looked up in this session, connected or not."""
        self._order = asyncio.Lock()
        self._ids = itertools.count(1)
        self._qos: dict[str, int] = {}
        self._closed = False
        self._reports: set[asyncio.Task[None]] = set()

    # --- what the session asks ------------------------------------------------------------------
    def child(self, session_id: str) -> ChildSession | None:
        """The live child session with this id (the platform pushes to it)."""
        return self._by_id.get(session_id)

    def subscribe(self, topic_filter: str, qos: int) -> bool:
        """Take a subscription to a gateway topic; False for a filter that is not one."""
        if topic_filter not in topics.GATEWAY_SUBSCRIPTIONS:
            return False
        self._qos[topic_filter] = min(qos, 1)
        return True

    def unsubscribe(self, topic_filter: str) -> None:
        self._qos.pop(topic_filter, None)

    def granted_qos(self, topic: str) -> int:
        return self._qos.get(topic, 0)

    async def publish(self, packet: Publish) -> Reason | None:
        """Handle a publish to a ``v1/gateway/`` topic; the PUBACK reason (None: success)."""
        feature = topics.GATEWAY_FEATURES.get(packet.topic)
        if feature is None:
            self._refuse("unknown_topic", "publish to unknown topic %r", packet.topic)
            return Reason.TOPIC_NAME_INVALID
        handler = self._HANDLERS[feature]
        if len(packet.payload) > self.session.options.max_payload_size:
            self._refuse("too_large", "a %d-byte payload on %s", len(packet.payload), packet.topic)
            return Reason.PACKET_TOO_LARGE
        work = _Work(int(time.time() * 1000))
        try:
            async with self._order:
                await handler(self, packet.payload, work)
        except PayloadError as exc:
            self._refuse("bad_payload", "bad payload on %s: %s", packet.topic, exc)
            work.flag(Fault.INVALID)
        finally:
            outcomes = await asyncio.gather(*work.tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # the platform failed: answered as the session answers any such failure
        return work.fault.answer(self.session.level)

    async def close(self) -> None:
        """The gateway's session ended: every child's session ends with it."""
        self._closed = True
        children = list(self._children.values())
        self._children.clear()
        for child in children:
            try:
                await self._end(child)
            except Exception:
                log.exception("gateway session %s: ending child %s failed", self.session.session_id, child.name)

    def ended_by_platform(self, child: ChildSession, reason: str) -> None:
        if child.ended:
            return
        log.info("gateway session %s: child %s closed by the platform: %s", self.session.session_id, child.name,
                 reason)
        self._forget(child)
        self._identities.pop(child.name, None)  # deleted or changed: look it up again next time
        report = asyncio.get_running_loop().create_task(self._report_end(child))
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)

    # --- children -------------------------------------------------------------------------------
    async def _child(self, name: str, work: _Work, device_type: str | None = None) -> ChildSession | None:
        """The connected child of that name, connected now if it is not; None (and the fault noted)
        when the gateway may not speak for it, or once the gateway's session has ended."""
        child = self._children.get(name)
        if child is not None or self._closed:
            return child
        identity = self._identities.get(name)
        if identity is None:
            try:
                identity = await self.service.gateway_device(self.gateway, name, device_type)
                if identity.device_id == self.gateway.device_id:  # its child session would end its own
                    raise AuthError(AuthFailure.NOT_FOUND, "a gateway cannot be its own child")
            except (AuthError, ValueError) as exc:  # ValueError: a name no device may have
                self._refuse("device_refused", "device %r refused: %s", name, exc)
                work.flag(Fault.REFUSED)
                return None
            self._identities[name] = identity
        child = ChildSession(self, name, identity, f"{self.session.session_id}{CHILD_SEPARATOR}{next(self._ids)}")
        self._children[name] = child
        self._by_id[child.session_id] = child
        try:
            await self.service.connect(identity, child)
            await self.service.subscribe(identity, child, attributes=True, rpc=True)
        except BaseException:
            self._forget(child)
            raise
        if self._closed:  # the gateway's session ended meanwhile
            await self._end(child)
        return child

    def _forget(self, child: ChildSession) -> None:
        child.ended = True
        if self._children.get(child.name) is child:
            del self._children[child.name]
        self._by_id.pop(child.session_id, None)

    async def _end(self, child: ChildSession) -> None:
        self._forget(child)
        await self.service.disconnect(child.identity, child)

    async def _report_end(self, child: ChildSession) -> None:
        try:
            await self.service.disconnect(child.identity, child)
        except Exception:
            log.exception("gateway session %s: reporting the end of child %s failed", self.session.session_id,
                          child.name)

    def _refuse(self, kind: str, message: str, *args: Any) -> None:
        refusals[kind] += 1
        log.info("gateway %s session %s: " + message, self.gateway.device_name, self.session.session_id, *args)

    # --- the topics -----------------------------------------------------------------------------
    def _parts(self, payload: bytes, kind: type, convert: Callable[[Any], Any], work: _Work,
               what: str) -> list[tuple[str, Any]]:
        """``{"device": value, ...}`` as (name, converted value) pairs; a part under a bad name or
        of the wrong type is skipped, one that does not convert is invalid; no usable part at all
        makes the whole payload invalid."""
        parts = []
        for name, value in _object(payload).items():
            if not _valid_name(name) or not isinstance(value, kind):
                self._refuse("bad_device_part", "%s of device %r is not a JSON %s", what, name, kind.__name__)
                work.flag(Fault.SKIPPED)
                continue
            try:
                parts.append((name, convert(value)))
            except PayloadError as exc:
                self._refuse("bad_device_data", "%s of device %r: %s", what, name, exc)
                work.flag(Fault.INVALID)
        if not parts and work.fault is not Fault.INVALID:
            raise PayloadError(f"no device's {what} in the payload")
        return parts

    async def _on_connect(self, payload: bytes, work: _Work) -> None:
        body = _object(payload)
        name = _name(body.get("device"))
        device_type = body.get("type")
        if device_type is not None and not isinstance(device_type, str):
            raise PayloadError("'type' must be a device profile name")
        await self._child(name, work, device_type or None)

    async def _on_disconnect(self, payload: bytes, work: _Work) -> None:
        name = _name(_object(payload).get("device"))
        child = self._children.get(name)
        if child is None:
            log.debug("gateway session %s: disconnect of %r, which is not connected", self.session.session_id, name)
            return  # acknowledged, as ThingsBoard acknowledges it
        await self._end(child)

    async def _on_telemetry(self, payload: bytes, work: _Work) -> None:
        for name, groups in self._parts(payload, list, _telemetry_of, work, "telemetry"):
            child = await self._child(name, work)
            if child is not None and groups:
                work.start(self.service.post_telemetry(child.identity, groups, uuid.uuid4(), work.received))

    async def _on_attributes(self, payload: bytes, work: _Work) -> None:
        for name, values in self._parts(payload, dict, typed_values, work, "attributes"):
            child = await self._child(name, work)
            if child is not None and values:
                work.start(self.service.post_attributes(child.identity, values, uuid.uuid4(), work.received))

    async def _on_claim(self, payload: bytes, work: _Work) -> None:
        for name, (secret, duration) in self._parts(payload, dict, _claim_of, work, "claim"):
            child = await self._child(name, work)
            if child is not None:
                work.start(self.service.claim(child.identity, secret, duration))

    async def _on_attribute_request(self, payload: bytes, work: _Work) -> None:
        body = _object(payload)
        request_id = _integer(body.get("id"), "id")
        name = _name(body.get("device"))
        client = body.get("client")
        if not isinstance(client, bool):
            raise PayloadError("'client' must be true or false")
        asked = [body["key"]] if "key" in body else body.get("keys")
        if not isinstance(asked, list) or not all(isinstance(key, str) for key in asked):
            raise PayloadError("'key' must be a string, or 'keys' an array of strings")
        keys = tuple(asked)
        child = await self._child(name, work)
        if child is not None:
            request = AttributeRequest(keys, None) if client else AttributeRequest(None, keys)
            work.start(self._answer_attributes(child, request_id, "client" if client else "shared", request))

    async def _answer_attributes(self, child: ChildSession, request_id: int, scope: str,
                                 request: AttributeRequest) -> None:
        """``{"id","device"}`` with ``"value"`` for one attribute found, ``"values"`` for more, neither
        for none, as ThingsBoard answers."""
        found = (await self.service.get_attributes(child.identity, request)).get(scope) or {}
        body: dict[str, Any] = {"id": request_id, "device": child.identity.device_name}
        if len(found) == 1:
            body["value"] = next(iter(found.values()))
        elif found:
            body["values"] = found
        await self.session.deliver(topics.GATEWAY_ATTRIBUTE_RESPONSE_TOPIC, body)

    async def _on_rpc(self, payload: bytes, work: _Work) -> None:
        body = _object(payload)
        name = _name(body.get("device"))
        request_id = _integer(body.get("id"), "id")
        if "data" not in body:
            raise PayloadError("an RPC reply must carry 'data'")
        child = await self._child(name, work)
        if child is not None:
            work.start(self.service.rpc_response(child.identity, request_id, body["data"]))

    _HANDLERS: dict[topics.GatewayFeature, Handler] = {
        topics.GatewayFeature.CONNECT: _on_connect,
        topics.GatewayFeature.DISCONNECT: _on_disconnect,
        topics.GatewayFeature.TELEMETRY: _on_telemetry,
        topics.GatewayFeature.ATTRIBUTES: _on_attributes,
        topics.GatewayFeature.CLAIM: _on_claim,
        topics.GatewayFeature.ATTRIBUTE_REQUEST: _on_attribute_request,
        topics.GatewayFeature.RPC: _on_rpc,
    }
