"""The HTTP device API's requests as ``TransportService`` calls (ThingsBoard's DeviceApiController).

Each request authenticates its token afresh (HTTP has no session) and gets an ``HttpAnswer``:
ThingsBoard answers 200 with an empty body once an upload is processed, 401 with an empty body
for an unknown token, 408 with an empty body when a long poll or a client-side RPC times out, and
413 (the message as a JSON string) for a body over the size limit. Malformed bodies are 400 here
(ThingsBoard lets its JSON parser fail); the application writes them as its REST error body.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from thingsray.live.updates import ATTRIBUTES, LiveUpdate
from thingsray.transports.payloads import (
    PayloadError,
    attribute_request_from_query,
    loads,
    parse_attributes,
    parse_telemetry,
)
from thingsray.transports.service import AuthError, AuthFailure, DeviceIdentity, TransportService

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 60_000
"""ThingsBoard's ``transport.http.request_timeout``: long polls without ``timeout`` and client-side RPC."""
MAX_TIMEOUT_MS = 300_000
"""ThingsBoard's ``transport.http.max_request_timeout``: a longer ``timeout`` is cut to this."""
MAX_PAYLOAD_SIZE = 65_536
"""The largest request body taken, as the MQTT transport's limit (ThingsBoard: ``transport.http.max_payload_size``)."""
SHARED_SCOPE = "SHARED_SCOPE"

Subscribe = Callable[[uuid.UUID, Callable[[LiveUpdate], None]], Awaitable[Callable[[], Awaitable[None]]]]
"""``LiveSubscriptions.subscribe``: every later committed update of the device reaches the callback
until the returned coroutine function is called."""

_MSG_ID_BASE = int.from_bytes(os.urandom(8), "big") << 64
_msg_counter = itertools.count()


def _msg_id() -> uuid.UUID:
    return uuid.UUID(int=_MSG_ID_BASE | next(_msg_counter))


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """``body`` is a JSON value, or None for an empty body; ``error`` the message of a refusal."""

    status: int
    body: Any = None
    error: str | None = None


OK = HttpAnswer(200)
UNAUTHORIZED = HttpAnswer(401)
TIMED_OUT = HttpAnswer(408)


def bad_request(message: str) -> HttpAnswer:
    return HttpAnswer(400, error=message)


def too_large(limit: int) -> HttpAnswer:
    return HttpAnswer(413, body=f"Payload size exceeds the limit of {limit} bytes", error="payload too large")


class _Refused(Exception):
    def __init__(self, answer: HttpAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def long_poll_timeout_ms(raw: str | None) -> int:
    """``timeout`` of a long poll: absent or 0 is the default, more than the maximum is the maximum."""
    if raw is None or raw.strip() == "":
        return DEFAULT_TIMEOUT_MS
    try:
        value = int(raw.strip())
    except ValueError:
        raise PayloadError("'timeout' must be an integer of milliseconds") from None
    if value < 0:
        raise PayloadError("'timeout' must not be negative")
    if value == 0:
        return DEFAULT_TIMEOUT_MS
    return min(value, MAX_TIMEOUT_MS)


def shared_attribute_update(update: LiveUpdate) -> dict[str, Any] | None:
    """What ThingsBoard's HTTP transport writes for a shared-attribute change (its JsonConverter):
    the changed keys with their new values, and ``"deleted": [keys]`` when some were removed.
    None for any other update."""
    if update.kind != ATTRIBUTES or update.scope != SHARED_SCOPE:
        return None
    body: dict[str, Any] = {key: points[-1][1] for key, points in update.values.items() if points}
    if update.deleted:
        body["deleted"] = list(update.deleted)
    return body or None


class HttpDeviceApi:
    """One per Serve replica, over that replica's ``TransportService``."""

    def __init__(self, service: TransportService, *, max_payload_size: int = MAX_PAYLOAD_SIZE,
                 request_timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        self.service = service
        self.max_payload_size = max_payload_size
        self.request_timeout_ms = request_timeout_ms

    async def _device(self, token: str) -> DeviceIdentity:
        try:
            return await self.service.authenticate_token(token)
        except AuthError as exc:
            if exc.failure is AuthFailure.UNAVAILABLE:
                raise _Refused(HttpAnswer(500, error="Failed to process request")) from exc
            raise _Refused(UNAUTHORIZED) from None

    async def _run(self, token: str, body: bytes | None, work: Callable[[DeviceIdentity], Awaitable[HttpAnswer]]
                   ) -> HttpAnswer:
        if body is not None and len(body) > self.max_payload_size:
            return too_large(self.max_payload_size)
        try:
            device = await self._device(token)
            return await work(device)
        except _Refused as refused:
            return refused.answer
        except PayloadError as exc:
            return bad_request(str(exc))

    # --- uplink ---------------------------------------------------------------------------------
    async def post_telemetry(self, token: str, body: bytes) -> HttpAnswer:
        async def work(device: DeviceIdentity) -> HttpAnswer:
            groups = parse_telemetry(body)
            if groups:
                await self.service.post_telemetry(device, groups, _msg_id(), _now())
            return OK

        return await self._run(token, body, work)

    async def post_attributes(self, token: str, body: bytes) -> HttpAnswer:
        async def work(device: DeviceIdentity) -> HttpAnswer:
            values = parse_attributes(body)
            if values:
                await self.service.post_attributes(device, values, _msg_id(), _now())
            return OK

        return await self._run(token, body, work)

    async def get_attributes(self, token: str, client_keys: str | None, shared_keys: str | None) -> HttpAnswer:
        async def work(device: DeviceIdentity) -> HttpAnswer:
            request = attribute_request_from_query(client_keys or None, shared_keys or None)
            answer = await self.service.get_attributes(device, request)
            # ThingsBoard's JsonConverter writes a section only when it has attributes
            return HttpAnswer(200, {section: values for section, values in answer.items() if values})

        return await self._run(token, None, work)

    async def claim(self, token: str, body: bytes) -> HttpAnswer:
        async def work(device: DeviceIdentity) -> HttpAnswer:
            data = loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise PayloadError("a claim must be a JSON object")
            secret = data.get("secretKey")
            if secret is not None and not isinstance(secret, str):
                raise PayloadError("'secretKey' must be a string")
            duration = data.get("durationMs")
            if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool)):
                raise PayloadError("'durationMs' must be an integer")
            await self.service.claim(device, secret, duration)
            return OK

        return await self._run(token, body, work)

    async def client_rpc(self, token: str, body: bytes) -> HttpAnswer:
        """The rule chain's answer (RPC Call Reply) as the body; 408 when none comes in time."""
        async def work(device: DeviceIdentity) -> HttpAnswer:
            data = loads(body)
            if not isinstance(data, dict) or not isinstance(data.get("method"), str) or not data["method"]:
                raise PayloadError("a client-side RPC must be {\"method\": ..., \"params\": ...}")
            try:
                async with asyncio.timeout(self.request_timeout_ms / 1000):
                    answer = await self.service.client_rpc(device, data["method"], data.get("params"))
            except TimeoutError:
                return TIMED_OUT
            return TIMED_OUT if answer is None else HttpAnswer(200, answer)

        return await self._run(token, body, work)

    async def rpc_response(self, token: str, request_id: str, body: bytes) -> HttpAnswer:
        """The device's answer to the server-side RPC ``request_id`` (delivered over any transport)."""
        async def work(device: DeviceIdentity) -> HttpAnswer:
            if not request_id.isdigit() or int(request_id) > 2**31 - 1:
                raise PayloadError("the RPC request id must be a non-negative integer")
            payload = loads(body) if body.strip() else None
            await self.service.rpc_response(device, int(request_id), payload)
            return OK

        return await self._run(token, body, work)

    # --- long polls -----------------------------------------------------------------------------
    async def attribute_updates(self, token: str, wait: str | None, subscribe: Subscribe) -> HttpAnswer:
        """Wait for the next change of the device's shared attributes (``wait``: the ``timeout`` parameter)."""
        async def work(device: DeviceIdentity) -> HttpAnswer:
            wait_ms = long_poll_timeout_ms(wait)
            answered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

            def sink(update: LiveUpdate) -> None:
                body = shared_attribute_update(update)
                if body is not None and not answered.done():
                    answered.set_result(body)

            unsubscribe = await subscribe(device.device_id, sink)
            try:
                async with asyncio.timeout(wait_ms / 1000):
                    return HttpAnswer(200, await answered)
            except TimeoutError:
                return TIMED_OUT
            finally:
                await unsubscribe()

        return await self._run(token, None, work)


    async def rpc_requests(self, token: str, wait: str | None) -> HttpAnswer:
        """Wait for the next server-side RPC: ``{"id", "method", "params"}``; 408 when none comes."""
        async def work(device: DeviceIdentity) -> HttpAnswer:
            request = await self.service.wait_rpc(device, long_poll_timeout_ms(wait))
            if request is None:
                return TIMED_OUT
            return HttpAnswer(200, {"id": request.request_id, "method": request.method, "params": request.params})

        return await self._run(token, None, work)

    # --- provisioning ------------------------------------------------------------------------------
    async def provision(self, body: bytes) -> HttpAnswer:
        """ThingsBoard answers 200 with its provisioning JSON, success or not."""
        if len(body) > self.max_payload_size:
            return too_large(self.max_payload_size)
        try:
            request = loads(body)
        except PayloadError as exc:
            return bad_request(str(exc))
        if not isinstance(request, dict):
            return bad_request("a provisioning request must be a JSON object")
        return HttpAnswer(200, await self.service.provision(request))


def _now() -> int:
    return int(time.time() * 1000)
