"""ThingsBoard's CoAP device API (its CoapTransportResource) as one aiocoap resource: each request
becomes calls on a ``TransportService``, and its outcome a CoAP response code.

Answers, as ThingsBoard gives them: POST telemetry, attributes, claim and rpc/{id}: 2.01 Created,
sent once the platform has durably processed the message (DESIGN.md section 4); GET attributes:
2.05 ``{"client","shared"}`` (a section only when it has attributes), 4.04 when there are none;
POST rpc (client-side RPC): 2.05 with the rule chain's answer; POST provision: 2.01 with the
answer, 4.00 when its status is not SUCCESS. GET attributes or rpc with Observe 0 registers an
observation (``session.py``), Observe 1 ends it (2.02 Deleted).

Refusals: 4.00 for a malformed payload or an unknown feature, 4.01 for an unknown or missing
token, 4.02 for a critical option this API does not understand, 4.04 for a path outside
``/api/v1``, 4.05 for a method other than GET and POST, 4.13 for a body over the size limit (with
Size1 saying the limit), 5.00 on an internal error, 5.03 when too many requests are in processing.
Where ThingsBoard sends nothing (a client-side RPC no rule chain answers in time) this answers 5.04
Gateway Timeout, so that a client is not left waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from aiocoap import Message
from aiocoap.blockwise import Block1Spool, Block2Cache
from aiocoap.error import ConstructionRenderableError
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.pipe import Pipe

from thingsray.transports.coap.paths import Feature, Route, RouteError, route
from thingsray.transports.coap.session import CoapClient, Observation, ObservedFeature, json_message
from thingsray.transports.payloads import (
    AttributeRequest,
    PayloadError,
    attribute_request_from_query,
    loads,
    parse_attributes,
    parse_telemetry,
)
from thingsray.transports.service import AuthError, AuthFailure, DeviceIdentity, TransportService

log = logging.getLogger(__name__)

_UNDERSTOOD = frozenset((
    OptionNumber.URI_HOST, OptionNumber.URI_PORT, OptionNumber.URI_PATH, OptionNumber.URI_QUERY,
    OptionNumber.CONTENT_FORMAT, OptionNumber.ACCEPT, OptionNumber.OBSERVE, OptionNumber.BLOCK1,
    OptionNumber.BLOCK2, OptionNumber.SIZE1, OptionNumber.SIZE2, OptionNumber.NO_RESPONSE))
"""Options a request may carry; an unknown critical one is refused with 4.02 (RFC 7252 section 5.4.1)."""


@dataclass(frozen=True, slots=True)
class CoapOptions:
    max_payload_size: int = 65536
    """The largest request body taken (ThingsBoard's transport payload limit), also over Block1."""
    request_timeout_s: float = 10.0
    """How long a client-side RPC waits for the rule chain's answer (ThingsBoard's ``transport.coap.timeout``)."""
    rpc_ack_timeout_s: float = 45.0
    """How long a confirmable RPC notification may go unacknowledged (RFC 7252's MAX_TRANSMIT_SPAN)."""
    max_inflight_requests: int = 10_000
    """Requests in processing at once; past it new ones are answered 5.03 until some finish."""


class Refusal(Exception):
    """A request answered with an error code; the text goes out as the diagnostic payload."""

    def __init__(self, code: Code, message: str = "") -> None:
        super().__init__(message)
        self.code = code

    def response(self) -> Message:
        return Message(code=self.code, payload=str(self).encode()[:512])


class Clients(Protocol):
    async def observe(self, device: DeviceIdentity, pipe: Pipe, feature: ObservedFeature
                      ) -> tuple[CoapClient, Observation]:
        """Register an observation for the device's client at the request's remote endpoint."""


@dataclass(slots=True)
class CoapCounters:
    requests: int = 0
    inflight: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    """Final responses by code ("2.01 Created", "4.00 Bad Request", ...)."""


class DeviceApiResource:
    """The site aiocoap renders every request to (it implements ``render_to_pipe`` only)."""

    def __init__(self, service: TransportService, clients: Clients, options: CoapOptions,
                 counters: CoapCounters | None = None) -> None:
        self.service = service
        self.clients = clients
        self.options = options
        self.counters = counters or CoapCounters()
        self._block1 = Block1Spool()
        self._block2 = Block2Cache()

    async def render_to_pipe(self, pipe: Pipe) -> None:
        request = pipe.request
        counters = self.counters
        counters.requests += 1
        if counters.inflight >= self.options.max_inflight_requests:
            self._respond(pipe, Refusal(Code.SERVICE_UNAVAILABLE, "too many requests in processing").response())
            return
        counters.inflight += 1
        try:
            response = await self._render(pipe)
        except Refusal as refusal:
            log.debug("coap %s %s from %s: %s %s", request.code, _path(request), request.remote.hostinfo,
                      refusal.code, refusal)
            response = refusal.response()
        except ConstructionRenderableError as renderable:  # blockwise: 2.31 Continue, 4.08 Incomplete
            response = renderable.to_message()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("coap %s %s from %s failed", request.code, _path(request), request.remote.hostinfo)
            response = Message(code=Code.INTERNAL_SERVER_ERROR)
        finally:
            counters.inflight -= 1
        if response is not None:
            self._respond(pipe, response)

    def _respond(self, pipe: Pipe, response: Message) -> None:
        self.counters.answers[str(response.code)] += 1
        pipe.add_response(response, is_last=True)

    async def _render(self, pipe: Pipe) -> Message | None:
        """The final response; None when an observation answers through its own notifications."""
        request = pipe.request
        _check_options(request)
        block2 = request.opt.block2
        if block2 is not None and block2.block_number > 0:  # later blocks of a large answer already made
            return await self._block2.extract_or_insert(request, _no_answer)
        self._check_size(request)
        if request.code not in (Code.GET, Code.POST):
            raise Refusal(Code.METHOD_NOT_ALLOWED, f"{request.code} is not supported: use GET or POST")
        try:
            where = route(request.opt.uri_path)
        except RouteError as exc:
            raise Refusal(exc.code, str(exc)) from None
        if request.code == Code.POST:
            try:
                request = self._block1.feed_and_take(request)  # 2.31 Continue until the last block
            except ValueError:  # a block that leaves a gap or overlaps
                raise Refusal(Code.REQUEST_ENTITY_INCOMPLETE, "the blocks do not follow each other") from None
        if where.feature is Feature.PROVISION:
            response = await self._provision(request)
        elif request.code == Code.GET and request.opt.observe is not None:
            return await self._observe(pipe, where)
        else:
            device = await self._device(where)
            response = await (self._get(request, where, device) if request.code == Code.GET
                              else self._post(request, where, device))
        response.opt.block1 = request.opt.block1

        async def built() -> Message:
            return response

        return await self._block2.extract_or_insert(request, built)

    def _check_size(self, request: Message) -> None:
        limit = self.options.max_payload_size
        block1 = request.opt.block1
        end = (block1.start if block1 is not None else 0) + len(request.payload)
        if end > limit or (request.opt.size1 or 0) > limit:
            refusal = Refusal(Code.REQUEST_ENTITY_TOO_LARGE, f"Payload size exceeds the limit of {limit} bytes")
            raise _TooLarge(refusal, limit)

    async def _device(self, where: Route) -> DeviceIdentity:
        try:
            return await self.service.authenticate_token(where.token or "")
        except AuthError as exc:
            if exc.failure is AuthFailure.UNAVAILABLE:
                raise Refusal(Code.INTERNAL_SERVER_ERROR, "credentials lookup failed") from exc
            raise Refusal(Code.UNAUTHORIZED, "unknown access token") from None

    # --- requests --------------------------------------------------------------------------
    async def _get(self, request: Message, where: Route, device: DeviceIdentity) -> Message:
        if where.feature is not Feature.ATTRIBUTES:
            raise Refusal(Code.BAD_REQUEST, f"GET of {where.feature.value} needs Observe"
                          if where.feature is Feature.RPC else f"no GET for {where.feature.value}")
        query = _query(request)
        try:
            keys = attribute_request_from_query(query.get("clientKeys") or None, query.get("sharedKeys") or None)
        except PayloadError as exc:
            raise Refusal(Code.BAD_REQUEST, str(exc)) from None
        answer = await self.service.get_attributes(device, keys)
        body = {section: values for section, values in answer.items() if values}
        if not body:
            return Message(code=Code.NOT_FOUND)
        return json_message(Code.CONTENT, body)

    async def _post(self, request: Message, where: Route, device: DeviceIdentity) -> Message:
        payload = request.payload
        try:
            match where.feature:
                case Feature.TELEMETRY:
                    groups = parse_telemetry(payload)
                    if groups:
                        await self.service.post_telemetry(device, groups, _msg_id(), _now())
                case Feature.ATTRIBUTES:
                    values = parse_attributes(payload)
                    if values:
                        await self.service.post_attributes(device, values, _msg_id(), _now())
                case Feature.CLAIM:
                    secret, duration = _claim(payload)
                    await self.service.claim(device, secret, duration)
                case Feature.RPC if where.request_id is not None:
                    if not where.request_id.isdigit() or int(where.request_id) > 2**31 - 1:
                        raise PayloadError("the RPC request id must be a non-negative integer")
                    answer = loads(payload) if payload.strip() else None
                    await self.service.rpc_response(device, int(where.request_id), answer)
                case Feature.RPC:
                    return await self._client_rpc(device, payload)
        except PayloadError as exc:
            raise Refusal(Code.BAD_REQUEST, str(exc)) from None
        return Message(code=Code.CREATED)

    async def _client_rpc(self, device: DeviceIdentity, payload: bytes) -> Message:
        body = loads(payload)
        if not isinstance(body, dict) or not isinstance(body.get("method"), str) or not body["method"]:
            raise PayloadError("a client-side RPC must be {\"method\": ..., \"params\": ...}")
        try:
            async with asyncio.timeout(self.options.request_timeout_s):
                answer = await self.service.client_rpc(device, body["method"], body.get("params"))
        except TimeoutError:
            answer = None
        if answer is None:
            raise Refusal(Code.GATEWAY_TIMEOUT, "no rule chain answered the RPC in time")
        return json_message(Code.CONTENT, answer)

    async def _provision(self, request: Message) -> Message:
        if request.code != Code.POST:
            raise Refusal(Code.BAD_REQUEST, "provisioning takes POST")
        try:
            body = loads(request.payload)
        except PayloadError as exc:
            raise Refusal(Code.BAD_REQUEST, str(exc)) from None
        answer = await self.service.provision(body)
        return json_message(Code.CREATED if answer.get("status") == "SUCCESS" else Code.BAD_REQUEST, answer)

    # --- observations ----------------------------------------------------------------------
    async def _observe(self, pipe: Pipe, where: Route) -> Message | None:
        request = pipe.request
        if where.feature not in (Feature.ATTRIBUTES, Feature.RPC):
            raise Refusal(Code.BAD_REQUEST, f"{where.feature.value} cannot be observed")
        device = await self._device(where)
        if request.opt.observe == 1:
            # aiocoap already ended the observation of this token and endpoint, as a new request on it
            return Message(code=Code.DELETED)
        feature = ObservedFeature(where.feature.value)
        client, observation = await self.clients.observe(device, pipe, feature)
        try:
            if feature is ObservedFeature.ATTRIBUTES:
                # the first answer is every shared attribute, as ThingsBoard's shared state message
                answer = await self.service.get_attributes(device, AttributeRequest(None, None))
                observation.notify(json_message(Code.CONTENT, answer.get("shared", {})))
            else:
                await client.start_rpc(observation)
        except Exception:
            log.exception("coap observation of %s by %s failed", feature.value, request.remote.hostinfo)
            observation.finish(Message(code=Code.INTERNAL_SERVER_ERROR))
        return None


class _TooLarge(Refusal):
    def __init__(self, refusal: Refusal, limit: int) -> None:
        super().__init__(refusal.code, str(refusal))
        self.limit = limit

    def response(self) -> Message:
        message = super().response()
        message.opt.size1 = self.limit
        return message


def _check_options(request: Message) -> None:
    for option in request.opt.option_list():
        if option.number.is_critical() and option.number not in _UNDERSTOOD:
            raise Refusal(Code.BAD_OPTION, f"option {int(option.number)} is not supported")


def _query(request: Message) -> dict[str, str]:
    """Uri-Query ``name=value`` pairs; the last of a name wins, as in ThingsBoard."""
    pairs: dict[str, str] = {}
    for item in request.opt.uri_query:
        name, sep, value = item.partition("=")
        if sep:
            pairs[name] = value
    return pairs


def _claim(payload: bytes) -> tuple[str | None, int | None]:
    data = loads(payload) if payload.strip() else {}
    if not isinstance(data, dict):
        raise PayloadError("a claim must be a JSON object")
    secret = data.get("secretKey")
    if secret is not None and not isinstance(secret, str):
        raise PayloadError("'secretKey' must be a string")
    duration = data.get("durationMs")
    if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool)):
        raise PayloadError("'durationMs' must be an integer")
    return secret, duration


async def _no_answer() -> Message:
    """Never called: a later block is served from the cache, or refused as incomplete."""
    raise Refusal(Code.REQUEST_ENTITY_INCOMPLETE, "no earlier block of this answer")


def _path(request: Message) -> str:
    return "/" + "/".join(request.opt.uri_path)


def _now() -> int:
    return int(time.time() * 1000)


_MSG_ID_BASE = int.from_bytes(os.urandom(8), "big") << 64
_msg_counter = itertools.count()


def _msg_id() -> uuid.UUID:
    """Unique in this process's life: a random 64-bit prefix and a counter (as the other transports)."""
    return uuid.UUID(int=_MSG_ID_BASE | next(_msg_counter))
