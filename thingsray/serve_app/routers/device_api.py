"""ThingsBoard's HTTP device API (its transport's DeviceApiController, spec 1.3), under ``/api/v1``.

Devices authenticate by the access token in the path; the bodies go through the transports'
adaptor (thingsray.transports.http) to this replica's ``PlatformTransportService``, so an upload
is answered once its device actor has committed it. Answers keep ThingsBoard's shapes: empty 200s,
empty 401 for an unknown token, empty 408 for a long poll or client-side RPC that timed out; a
malformed body is 400 with the REST error body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from thingsray.actors.transport_service import PlatformTransportService
from thingsray.serve_app.deps import ServicesDep
from thingsray.serve_app.errors import ErrorCode, error_body
from thingsray.serve_app.services import Services
from thingsray.transports.http import HttpAnswer, HttpDeviceApi
from thingsray.transports.http.adaptor import too_large

router = APIRouter(prefix="/api/v1", tags=["device-api"])
TRANSPORT = "http"
_ERROR_CODES = {400: ErrorCode.BAD_REQUEST_PARAMS, 500: ErrorCode.GENERAL}


def _api(request: Request, services: Services) -> HttpDeviceApi:
    """The replica's adaptor, made on first use (it needs the shards' router)."""
    api: HttpDeviceApi | None = getattr(request.app.state, "device_api", None)
    if api is None:
        live = services.require_live()
        service = PlatformTransportService(TRANSPORT, live.router, services.credentials, services.db)
        api = request.app.state.device_api = HttpDeviceApi(service)
    return api


def _response(answer: HttpAnswer) -> Response:
    if answer.error is not None and answer.status in _ERROR_CODES:
        return JSONResponse(error_body(answer.status, answer.error, _ERROR_CODES[answer.status]),
                            status_code=answer.status)
    if answer.body is None:
        return Response(status_code=answer.status)
    return JSONResponse(answer.body, status_code=answer.status)


async def _body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _upload(request: Request, services: Services,
                  handle: Callable[[HttpDeviceApi, bytes], Awaitable[HttpAnswer]]) -> Response:
    """The body, read no further than the size limit (413 past it), then ``handle``'s answer."""
    api = _api(request, services)
    body = await _body(request, api.max_payload_size)
    return _response(too_large(api.max_payload_size) if body is None else await handle(api, body))


Timeout = Annotated[str | None, Query(alias="timeout", description="Milliseconds to wait (default 60000, max 300000)")]


@router.post("/{token}/telemetry", summary="Post telemetry as a device (HTTP transport)")
async def post_telemetry(token: str, request: Request, services: ServicesDep) -> Response:
    return await _upload(request, services, lambda api, body: api.post_telemetry(token, body))


@router.post("/{token}/attributes", summary="Post client attributes as a device")
async def post_attributes(token: str, request: Request, services: ServicesDep) -> Response:
    return await _upload(request, services, lambda api, body: api.post_attributes(token, body))


@router.get("/{token}/attributes", summary="Request client and shared attributes as a device")
async def get_attributes(token: str, request: Request, services: ServicesDep,
                         clientKeys: str | None = None, sharedKeys: str | None = None) -> Response:
    return _response(await _api(request, services).get_attributes(token, clientKeys, sharedKeys))


@router.get("/{token}/attributes/updates", summary="Long poll for the device's shared-attribute changes")
async def attribute_updates(token: str, request: Request, services: ServicesDep,
                            wait: Timeout = None) -> Response:
    api = _api(request, services)
    subscriptions = services.require_subscriptions()
    return _response(await api.attribute_updates(token, wait, subscriptions.subscribe))


@router.post("/{token}/rpc", summary="Client-side RPC, answered by the device's rule chain")
async def client_rpc(token: str, request: Request, services: ServicesDep) -> Response:
    return await _upload(request, services, lambda api, body: api.client_rpc(token, body))


@router.post("/{token}/rpc/{request_id}", summary="The device's answer to a server-side RPC")
async def rpc_response(token: str, request_id: str, request: Request, services: ServicesDep) -> Response:
    return await _upload(request, services, lambda api, body: api.rpc_response(token, request_id, body))


@router.post("/{token}/claim", summary="Make the device claimable by a customer")
async def claim(token: str, request: Request, services: ServicesDep) -> Response:
    return await _upload(request, services, lambda api, body: api.claim(token, body))


@router.get("/{token}/rpc", summary="Long poll for a server-side RPC to the device")
async def rpc_requests(token: str, request: Request, services: ServicesDep, wait: Timeout = None) -> Response:
    return _response(await _api(request, services).rpc_requests(token, wait))


@router.post("/provision", summary="Provision a device with its profile's provision key and secret")
async def provision(request: Request, services: ServicesDep) -> Response:
    return await _upload(request, services, lambda api, body: api.provision(body))
