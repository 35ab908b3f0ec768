"""Claiming (ThingsBoard's ClaimDevicesService): a device offers itself with a secret key for a
while (MQTT, HTTP or CoAP ``claim``; its device actor keeps the offer as the server attribute
``claimingData``), and a customer user who knows the device's name and key makes it the
customer's. Claiming is allowed by default, as ThingsBoard's ``security.claim.allowClaimingByDefault``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, Response

from thingsray.actors.device import CLAIMING_DATA, claim_offer
from thingsray.serve_app.access import id_of
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep
from thingsray.serve_app.errors import NotFound, PermissionDenied
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.attributes import AttributeScope, find_text
from thingsray.storage.entities import now_ms

log = logging.getLogger(__name__)
router = APIRouter(tags=["device"])
CLAIMING_ALLOWED = "claimingAllowed"


async def _device(services: Services, principal: Principal, name: str) -> dict[str, Any]:
    device = await services.repo(tables.DEVICE).find_one(tenant_id=principal.tenant_id, name=name)
    if device is None:
        raise NotFound(f"Device with name [{name}] is not found")
    return device


async def _offer(services: Services, device_id: uuid.UUID) -> tuple[str, int] | None:
    return claim_offer(await find_text(services.db, device_id, AttributeScope.SERVER_SCOPE, CLAIMING_DATA))


async def _forget_offer(services: Services, device_id: uuid.UUID) -> None:
    live = services.require_live()
    await live.delete_attributes("DEVICE", device_id, "SERVER_SCOPE", (CLAIMING_ALLOWED, CLAIMING_DATA))


async def _changed(services: Services, device_id: uuid.UUID) -> None:
    try:
        await services.require_live().device_changed(device_id, "UPDATED")
    except Exception:
        log.exception("the live actor of device %s did not hear of its new customer", device_id)


@router.post("/api/customer/device/{deviceName}/claim", summary="Claim a device for the user's customer")
async def claim_device(deviceName: str, principal: PrincipalDep, services: ServicesDep,
                       body: dict[str, Any] | None = Body(default=None)) -> Response:
    """200 ``{"device", "response": "SUCCESS"}``; 400 ``"FAILURE"`` for no offer, an expired one or
    a wrong key; 400 ``{"device": null, "response": "CLAIMED"}`` when the device has a customer."""
    if not principal.is_customer_user:
        raise PermissionDenied()
    secret = (body or {}).get("secretKey")
    secret = secret if isinstance(secret, str) else ""
    device = await _device(services, principal, deviceName)
    device_id = uuid.UUID(device["id"]["id"])
    offer = await _offer(services, device_id)
    claimed = {"device": None, "response": "CLAIMED"}
    if offer is None:
        return JSONResponse("FAILURE" if id_of(device["customerId"]) is None else claimed, status_code=400)
    key, expiration = offer
    if now_ms() > expiration or key != secret:
        log.info("claiming device %s refused: %s", device_id, "expired" if now_ms() > expiration else "wrong key")
        return JSONResponse("FAILURE", status_code=400)
    assigned = await services.db.fetchval(
        "UPDATE device SET customer_id = $2, version = version + 1 WHERE id = $1 AND customer_id IS NULL"
        " RETURNING id", device_id, principal.customer_id)
    await _forget_offer(services, device_id)
    if assigned is None:
        return JSONResponse(claimed, status_code=400)
    await _changed(services, device_id)
    saved = await services.repo(tables.DEVICE).get(device_id)
    await services.audit.record(principal, ActionType.ASSIGNED_TO_CUSTOMER, entity_type="DEVICE",
                                entity_id=device_id, entity_name=device["name"],
                                data={"entityId": str(device_id), "assignedCustomerId": str(principal.customer_id)})
    return JSONResponse({"device": saved, "response": "SUCCESS"})


@router.delete("/api/customer/device/{deviceName}/claim", summary="Give a claimed device back to the tenant")
async def reclaim_device(deviceName: str, principal: PrincipalDep, services: ServicesDep) -> Response:
    """A tenant administrator takes back any device of the tenant; a customer user only its customer's."""
    if not (principal.is_tenant_admin or principal.is_customer_user):
        raise PermissionDenied()
    device = await _device(services, principal, deviceName)
    device_id = uuid.UUID(device["id"]["id"])
    owner = id_of(device["customerId"])
    if principal.is_customer_user and owner != principal.customer_id:
        raise PermissionDenied()
    await _forget_offer(services, device_id)
    if owner is not None:
        await services.db.execute("UPDATE device SET customer_id = NULL, version = version + 1 WHERE id = $1",
                                  device_id)
        await _changed(services, device_id)
        await services.audit.record(principal, ActionType.UNASSIGNED_FROM_CUSTOMER, entity_type="DEVICE",
                                    entity_id=device_id, entity_name=device["name"],
                                    data={"entityId": str(device_id), "unassignedCustomerId": str(owner)})
    return Response(status_code=200)
