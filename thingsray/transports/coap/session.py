"""One CoAP client of a device: its observations (RFC 7641) of shared attributes and of server-side
RPC, and the one platform session both share, as ThingsBoard's TbCoapClientState keeps them.

A client is a device seen from one remote endpoint (address and port). The platform hears of it
(``connect``) when its first observation starts and of its end (``disconnect``) when the last one
ends: deregistered (Observe 1), reset by the client, no longer acknowledged (a confirmable
notification's retransmissions ran out), replaced, or closed by the platform. Plain requests
(telemetry, attribute reads, RPC answers) need no session.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import orjson
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.numbers.types import Type
from aiocoap.pipe import Pipe

from thingsray.transports.service import AttributeUpdate, DeviceIdentity, RpcRequest, TransportService

log = logging.getLogger(__name__)

OBSERVE_SEQUENCE_MODULUS = 2**24
"""Observe option values are 24-bit sequence numbers (RFC 7641 section 4.4)."""

Spawn = Callable[[Coroutine[Any, Any, None]], None]
"""Run a coroutine to its end in the background (the server keeps and awaits the tasks)."""


class ObservedFeature(enum.Enum):
    ATTRIBUTES = "attributes"
    RPC = "rpc"


class ClientState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    """The platform knows the session: it must hear of its end."""
    CLOSED = "closed"


class Acknowledgements(Protocol):
    def watch(self, message: Message) -> asyncio.Future[bool] | None:
        """Called right after ``message`` went out: a future of whether the peer acknowledged (True)
        or reset (False) it; None when the stack cannot tell (the message counts as delivered)."""


def json_message(code: Code, body: Any = None) -> Message:
    """A response with a JSON body (Content-Format application/json), or an empty one."""
    if body is None:
        return Message(code=code)
    message = Message(code=code, payload=orjson.dumps(body))
    message.opt.content_format = ContentFormat.JSON
    return message


class Observation:
    """One observation request of a client: the pipe its notifications go down, until it ends."""

    __slots__ = ("_sequence", "confirmable", "ended", "feature", "pipe", "token")

    def __init__(self, feature: ObservedFeature, pipe: Pipe) -> None:
        self.feature = feature
        self.pipe = pipe
        self.token: bytes = pipe.request.token
        self.confirmable = pipe.request.mtype is Type.CON
        """Notifications go out confirmable when the registration was (as ThingsBoard sends them)."""
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sequence = 0

    @property
    def gone(self) -> bool:
        return self.ended.done()

    def notify(self, message: Message) -> Message:
        """Send ``message`` as the next notification (the first is the registration's answer);
        nothing is sent once the observation ended."""
        if self.gone:
            return message
        message.opt.observe = self._sequence
        self._sequence = (self._sequence + 1) % OBSERVE_SEQUENCE_MODULUS
        self.pipe.add_response(message, is_last=False)
        return message

    def finish(self, message: Message) -> None:
        """End the observation with a last response (it carries no Observe option)."""
        if not self.gone:
            self.pipe.add_response(message, is_last=True)  # ends the pipe: ``CoapClient.lost`` follows

    def mark_ended(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


class CoapClient:
    """Also the ``SessionSink`` the platform pushes through."""

    _ids = itertools.count(1)

    def __init__(self, key: tuple[uuid.UUID, str], device: DeviceIdentity, service: TransportService, *,
                 acks: Acknowledgements, spawn: Spawn, on_closed: Callable[[CoapClient], None],
                 rpc_ack_timeout_s: float) -> None:
        self.key = key
        self.device = device
        self.service = service
        self.state = ClientState.NEW
        self.observations: dict[ObservedFeature, Observation] = {}
        self._acks = acks
        self._spawn = spawn
        self._on_closed = on_closed
        self._rpc_ack_timeout_s = rpc_ack_timeout_s
        self._lock = asyncio.Lock()
        """Orders the platform calls of the client (connect, subscribe, disconnect)."""
        self._session_id = f"coap-{next(self._ids)}-{uuid.uuid4().hex[:8]}"

    @property
    def session_id(self) -> str:
        return self._session_id

    # --- observations ----------------------------------------------------------------------
    async def observe(self, feature: ObservedFeature, pipe: Pipe) -> Observation | None:
        """Start an observation (the platform session first, when it is the client's first); None
        when the client closed meanwhile (the caller asks its server for a fresh one)."""
        async with self._lock:
            if self.state is ClientState.CLOSED:
                return None
            if self.state is ClientState.NEW:
                try:
                    await self.service.connect(self.device, self)
                except BaseException:
                    self._close()
                    raise
                self.state = ClientState.OPEN
            observation = Observation(feature, pipe)
            pipe.on_interest_end(lambda: self.lost(observation))
            previous = self.observations.get(feature)
            self.observations[feature] = observation
            if previous is not None:
                # a new registration of the feature replaces the old one, which ends with 2.02 as in ThingsBoard
                previous.finish(Message(code=Code.DELETED))
            elif feature is ObservedFeature.ATTRIBUTES:
                await self.service.subscribe(self.device, self, attributes=True)
            return observation

    async def start_rpc(self, observation: Observation) -> None:
        """Answer the registration (2.03 Valid, as ThingsBoard does), then let RPCs come."""
        observation.notify(Message(code=Code.VALID))
        async with self._lock:
            if self.observations.get(ObservedFeature.RPC) is observation and not observation.gone:
                await self.service.subscribe(self.device, self, rpc=True)

    def lost(self, observation: Observation) -> None:
        """The observation's pipe ended (any cause): forget it in the background."""
        observation.mark_ended()
        self._spawn(self._forget(observation))

    async def _forget(self, observation: Observation) -> None:
        async with self._lock:
            if self.observations.get(observation.feature) is not observation:
                return  # replaced by a newer registration, which keeps the subscription
            del self.observations[observation.feature]
            if self.state is not ClientState.OPEN:
                return
            try:
                if self.observations:
                    await self.service.subscribe(self.device, self, **{observation.feature.value: False})
                else:
                    await self.service.disconnect(self.device, self)
                    self._close()
            except Exception:
                log.exception("coap client %s: telling the platform an observation ended failed", self._session_id)
                if not self.observations:
                    self._close()

    def _close(self) -> None:
        self.state = ClientState.CLOSED
        self._on_closed(self)

    # --- the sink: what the platform pushes ------------------------------------------------
    async def push_attributes(self, update: AttributeUpdate) -> None:
        observation = self.observations.get(ObservedFeature.ATTRIBUTES)
        if observation is None or observation.gone:
            return
        body: dict[str, Any] = dict(update.values)
        if update.deleted:
            body["deleted"] = list(update.deleted)
        observation.notify(json_message(Code.CONTENT, body))

    async def push_rpc(self, request: RpcRequest) -> bool:
        """True once a confirmable notification is acknowledged, or a non-confirmable one is sent."""
        observation = self.observations.get(ObservedFeature.RPC)
        if observation is None or observation.gone:
            return False
        body = {"id": request.request_id, "method": request.method, "params": request.params}
        sent = observation.notify(json_message(Code.CONTENT, body))
        acknowledged = self._acks.watch(sent) if sent.mtype is Type.CON else None
        if acknowledged is None:
            return True
        try:
            await asyncio.wait((acknowledged, observation.ended), timeout=self._rpc_ack_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not acknowledged.done():
                acknowledged.cancel()  # no ACK in time, or the observation ended first: the client is gone
        return not acknowledged.cancelled() and acknowledged.result()

    async def close(self, reason: str) -> None:
        """End every observation (2.02 Deleted, as ThingsBoard's remote session close does)."""
        log.info("coap client %s closed by the platform: %s", self._session_id, reason)
        for observation in list(self.observations.values()):
            observation.finish(Message(code=Code.DELETED))
