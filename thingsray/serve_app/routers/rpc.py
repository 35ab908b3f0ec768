"""Server-side RPC: ThingsBoard's RpcV1Controller (/api/plugins/rpc) and RpcV2Controller (/api/rpc).

A call goes to the device's actor (``services.live.rpc``), which runs it through the device's rule
chain as RPC_CALL_FROM_SERVER_TO_DEVICE; the chain's RPC Call Request node sends it to the device,
and the call waits for the device's answer (ThingsBoard's way: a chain without that node never
sends it, and the call times out). The two APIs
differ only in their failure codes: v1 answers 408 on timeout and 409 when no session takes RPC,
v2 answers 504 for both. A persistent call is stored (table ``rpc``, status QUEUED) and answered
at once with ``{"rpcId"}``; its delivery is attempted in the background.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from thingsray.actors.messages import RpcOutcome, RpcStatus
from thingsray.serve_app.access import load
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest, ErrorCode, NotFound, error_body
from thingsray.serve_app.models import TbModel
from thingsray.serve_app.permissions import Operation, Resource
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.entities import PageQuery, new_id, now_ms, page_data

log = logging.getLogger(__name__)
router = APIRouter(tags=["rpc"])

DEFAULT_TIMEOUT_MS = 10_000
MIN_TIMEOUT_MS = 5_000
"""ThingsBoard's ``server.rest.server_side_rpc`` default and minimum timeouts."""
RPC_STATUSES = ("QUEUED", "SENT", "DELIVERED", "SUCCESSFUL", "TIMEOUT", "EXPIRED", "FAILED", "DELETED")
RPC_SORT = {"createdTime": "created_time", "expirationTime": "expiration_time", "status": "status"}
RpcPage = Annotated[PageQuery, Depends(page_params(RPC_SORT))]
_deliveries: set[asyncio.Task[None]] = set()

LONG = Field(default=None, ge=0, le=2**63 - 1)


class RpcIn(TbModel):
    method: str = Field(min_length=1, max_length=255)
    params: Any = None
    timeout: int | None = LONG
    expirationTime: int | None = LONG
    persistent: bool = False
    retries: int | None = Field(default=None, ge=0, le=1000)
    additionalInfo: Any = None


def _failure(status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(status, message, ErrorCode.GENERAL), status_code=status)


async def _call(services: Services, principal: Principal, device_id: str, body: RpcIn, *, oneway: bool,
                timeout_status: int, offline_status: int) -> Response:
    device = await load(services, principal, tables.DEVICE, Resource.DEVICE, parse_uuid(device_id),
                        Operation.RPC_CALL)
    device_uuid = uuid.UUID(device["id"]["id"])
    now = now_ms()
    timeout = body.timeout if body.timeout is not None else DEFAULT_TIMEOUT_MS
    expiration = body.expirationTime if body.expirationTime is not None else now + max(MIN_TIMEOUT_MS, timeout)
    if body.persistent:
        rpc_id = await _store(services, device, body, oneway, expiration)
        _deliver_later(services, rpc_id, device_uuid, body, oneway, expiration - now)
        return JSONResponse({"rpcId": str(rpc_id)})
    live = services.require_live()
    if expiration <= now:
        return _failure(timeout_status, "The RPC expired before it was sent")
    outcome: RpcOutcome = await live.rpc(device_uuid, body.method, body.params, oneway=oneway,
                                         timeout_ms=expiration - now)
    match outcome.status:
        case RpcStatus.NOT_CONNECTED:
            return _failure(offline_status, "Device is not connected, or does not subscribe to RPC")
        case RpcStatus.TIMEOUT:
            return _failure(timeout_status, "Device did not answer the RPC in time")
    if outcome.response is None or outcome.response == "":
        return Response(status_code=200)
    return JSONResponse(outcome.response)


@router.post("/api/plugins/rpc/oneway/{deviceId}", summary="One-way RPC to a device (v1)")
async def one_way_v1(deviceId: str, body: RpcIn, principal: PrincipalDep, services: ServicesDep) -> Response:
    return await _call(services, principal, deviceId, body, oneway=True, timeout_status=408, offline_status=409)


@router.post("/api/plugins/rpc/twoway/{deviceId}", summary="Two-way RPC to a device (v1): the device's answer")
async def two_way_v1(deviceId: str, body: RpcIn, principal: PrincipalDep, services: ServicesDep) -> Response:
    return await _call(services, principal, deviceId, body, oneway=False, timeout_status=408, offline_status=409)


@router.post("/api/rpc/oneway/{deviceId}", summary="One-way RPC to a device (v2)")
async def one_way_v2(deviceId: str, body: RpcIn, principal: PrincipalDep, services: ServicesDep) -> Response:
    return await _call(services, principal, deviceId, body, oneway=True, timeout_status=504, offline_status=504)


@router.post("/api/rpc/twoway/{deviceId}", summary="Two-way RPC to a device (v2): the device's answer")
async def two_way_v2(deviceId: str, body: RpcIn, principal: PrincipalDep, services: ServicesDep) -> Response:
    return await _call(services, principal, deviceId, body, oneway=False, timeout_status=504, offline_status=504)


# --- persistent RPC ------------------------------------------------------------------------------
def _rpc_json(row: Any) -> dict[str, Any]:
    return {"id": {"entityType": "RPC", "id": str(row["id"])}, "createdTime": row["created_time"],
            "tenantId": {"entityType": "TENANT", "id": str(row["tenant_id"])},
            "deviceId": {"entityType": "DEVICE", "id": str(row["device_id"])},
            "expirationTime": row["expiration_time"], "request": row["request"], "response": row["response"],
            "status": row["status"], "additionalInfo": row["additional_info"]}


async def _store(services: Services, device: dict[str, Any], body: RpcIn, oneway: bool, expiration: int) -> uuid.UUID:
    rpc_id, tenant_id, device_id = new_id(), device["tenantId"]["id"], device["id"]["id"]
    request = {"id": str(rpc_id), "tenantId": {"entityType": "TENANT", "id": tenant_id},
               "deviceId": {"entityType": "DEVICE", "id": device_id}, "oneway": oneway,
               "expirationTime": expiration,
               "body": {"method": body.method, "params": json.dumps(body.params, separators=(",", ":"))},
               "persisted": True, "retries": body.retries, "additionalInfo": body.additionalInfo}
    await services.db.execute(
        "INSERT INTO rpc (id, created_time, tenant_id, device_id, expiration_time, request, status, additional_info)"
        " VALUES ($1, $2, $3, $4, $5, $6, 'QUEUED', $7)",
        rpc_id, now_ms(), uuid.UUID(tenant_id), uuid.UUID(device_id), expiration, request, body.additionalInfo)
    return rpc_id


def _deliver_later(services: Services, rpc_id: uuid.UUID, device_id: uuid.UUID, body: RpcIn, oneway: bool,
                   timeout_ms: int) -> None:
    """Try the device once now; an offline device leaves the request QUEUED for its actor."""
    live = services.live
    if live is None or timeout_ms <= 0:
        return
    task = asyncio.create_task(_deliver(services, live, rpc_id, device_id, body, oneway, timeout_ms))
    _deliveries.add(task)
    task.add_done_callback(_deliveries.discard)


async def _deliver(services: Services, live: Any, rpc_id: uuid.UUID, device_id: uuid.UUID, body: RpcIn,
                   oneway: bool, timeout_ms: int) -> None:
    try:
        outcome: RpcOutcome = await live.rpc(device_id, body.method, body.params, oneway=oneway,
                                             timeout_ms=timeout_ms, persistent=True)
        status = {RpcStatus.SUCCESSFUL: "SUCCESSFUL", RpcStatus.DELIVERED: "SUCCESSFUL" if oneway else "DELIVERED",
                  RpcStatus.TIMEOUT: "TIMEOUT"}.get(outcome.status)
        if status is not None:
            await services.db.execute(
                "UPDATE rpc SET status = $2, response = $3 WHERE id = $1 AND status IN ('QUEUED', 'SENT', 'DELIVERED')",
                rpc_id, status, outcome.response)
    except Exception:
        log.exception("delivering persistent RPC %s to device %s failed", rpc_id, device_id)


async def _load_rpc(services: Services, principal: Principal, rpc_id: str, operation: Operation) -> Any:
    row = await services.db.fetchrow("SELECT * FROM rpc WHERE id = $1", parse_uuid(rpc_id))
    if row is None:
        raise NotFound(f"Rpc with id [{rpc_id}] is not found")
    try:
        await load(services, principal, tables.DEVICE, Resource.DEVICE, row["device_id"], operation)
    except NotFound:
        raise NotFound(f"Rpc with id [{rpc_id}] is not found") from None
    return row


@router.get("/api/rpc/persistent/{rpcId}", summary="A persistent RPC with its status and response")
async def get_persisted_rpc(rpcId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return _rpc_json(await _load_rpc(services, principal, rpcId, Operation.READ))


@router.delete("/api/rpc/persistent/{rpcId}", summary="Delete a persistent RPC")
async def delete_rpc(rpcId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    row = await _load_rpc(services, principal, rpcId, Operation.DELETE)
    await services.db.execute("DELETE FROM rpc WHERE id = $1", row["id"])


@router.get("/api/rpc/persistent/device/{deviceId}", summary="A page of a device's persistent RPCs")
async def get_persisted_rpc_by_device(deviceId: str, page: RpcPage, principal: PrincipalDep,
                                      services: ServicesDep,
                                      rpcStatus: Annotated[str | None, Query(max_length=32)] = None) -> dict[str, Any]:
    if rpcStatus is not None and rpcStatus not in RPC_STATUSES:
        raise BadRequest(f"Invalid rpcStatus '{rpcStatus}': use one of {', '.join(RPC_STATUSES)}")
    device = await load(services, principal, tables.DEVICE, Resource.DEVICE, parse_uuid(deviceId), Operation.READ)
    device_id = uuid.UUID(device["id"]["id"])
    where, args = "device_id = $1", [device_id]
    if rpcStatus is not None:
        where, args = where + " AND status = $2", [device_id, rpcStatus]
    total = await services.db.fetchval(f"SELECT count(*) FROM rpc WHERE {where}", *args)
    order = f"{page.sort_column or 'created_time'} {'DESC' if page.sort_desc else 'ASC'}, id"
    rows = await services.db.fetch(
        f"SELECT * FROM rpc WHERE {where} ORDER BY {order} LIMIT {page.page_size} OFFSET {page.page * page.page_size}",
        *args)
    return page_data([_rpc_json(r) for r in rows], total, page)
