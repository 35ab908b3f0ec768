"""/api/device, /api/tenant/devices, /api/customer/{id}/devices...: devices and their credentials.

A device's ``type`` is the name of its device profile. A new device gets ACCESS_TOKEN credentials
(the ``accessToken`` given, else a random 20-character token). The PE client's owner calls
(/api/owner/{CUSTOMER|TENANT}/{ownerId}/DEVICE/{id}) assign and unassign like ThingsBoard CE's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from thingsray.install import ensure_default_device_profile, ensure_device_profile
from thingsray.serve_app import crud
from thingsray.serve_app.access import id_of, load, owner_of
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest, Conflict, NotFound, PermissionDenied
from thingsray.serve_app.models import EntityIdIn, LongText, Name, ShortText, TbModel, Versioned
from thingsray.serve_app.permissions import Operation, Resource, check, require, tenant_scope
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.credentials import (
    DUPLICATE_MESSAGE,
    Credentials,
    CredentialsError,
    CredentialsType,
    StaleCredentials,
    generate_access_token,
    normalize,
)
from thingsray.storage.devices import device_data
from thingsray.storage.entities import PageQuery, entity_id, like_pattern, page_data
from thingsray.transports.snmp import SnmpConfigError

log = logging.getLogger(__name__)
router = APIRouter(tags=["device"])

DEVICE_SORT = {**tables.DEVICE.sort_columns, "customerTitle": "customer_title",
               "deviceProfileName": "profile_name"}
"""What device listings sort by; names of the columns of ``_INFO_SQL``."""
DevicePage = Annotated[PageQuery, Depends(page_params(DEVICE_SORT))]


class DeviceIn(Versioned):
    name: Name
    type: ShortText | None = None
    label: ShortText | None = None
    deviceProfileId: EntityIdIn | None = None
    deviceData: dict[str, Any] | None = None
    firmwareId: EntityIdIn | None = None
    softwareId: EntityIdIn | None = None
    externalId: EntityIdIn | None = None


class CredentialsIn(TbModel):
    id: EntityIdIn | None = None
    deviceId: EntityIdIn | None = None
    credentialsType: ShortText | None = None
    credentialsId: ShortText | None = None
    credentialsValue: LongText | None = None
    version: int | None = Field(default=None, ge=0)

    def normalized(self) -> Credentials:
        with _credentials_errors():
            return normalize(self.credentialsType, self.credentialsId, self.credentialsValue)


class DeviceWithCredentialsIn(TbModel):
    device: DeviceIn
    credentials: CredentialsIn


@contextmanager
def _credentials_errors() -> Iterator[None]:
    try:
        yield
    except CredentialsError as exc:
        raise BadRequest(str(exc)) from None
    except StaleCredentials as exc:
        raise Conflict(f"{Conflict.default_message}: {exc}") from None


# --- saving ------------------------------------------------------------------------------------

async def _profile_for(conn: asyncpg.Connection, tenant_id: uuid.UUID, body: DeviceIn,
                       existing: dict[str, Any] | None) -> asyncpg.Record:
    """The profile a saved device gets: the one named by id, else the one named by ``type``
    (created if missing), else the one it has, else the tenant's default."""
    if body.deviceProfileId is not None:
        profile_id = body.deviceProfileId.id
    elif body.type:
        profile_id = await ensure_device_profile(conn, tenant_id, body.type)
    elif existing is not None:
        profile_id = id_of(existing["deviceProfileId"])
    else:
        profile_id = await ensure_default_device_profile(conn, tenant_id)
    row = await conn.fetchrow("SELECT id, name, type, transport_type FROM device_profile"
                              " WHERE id = $1 AND tenant_id = $2", profile_id, tenant_id)
    if row is None:
        raise BadRequest("Device is referencing non existing device profile!")
    return row


def _device_data(profile: asyncpg.Record, data: Any) -> dict[str, Any]:
    try:
        return device_data(profile, data)
    except SnmpConfigError as exc:  # ThingsBoard's defaults filled in, an invalid one refused
        raise BadRequest(f"Transport configuration is not valid: {exc}") from None


async def _save_device(services: Services, principal: Principal, body: DeviceIn,
                       credentials: Credentials | None, *, by_name: bool = False) -> dict[str, Any]:
    """Create or update a device; ``credentials`` replace the device's (a new device without them
    gets a random token); ``by_name``: a body without id updates the tenant's device of that name."""
    tenant_id = tenant_scope(principal)
    fields = body.model_dump(exclude_unset=True)
    device_id = body.id.id if body.id is not None else None
    if device_id is None and by_name:
        device_id = await services.db.fetchval("SELECT id FROM device WHERE tenant_id = $1 AND name = $2",
                                               tenant_id, body.name)
        if device_id is not None:
            fields.update(id={"entityType": "DEVICE", "id": device_id}, version=None)
    existing = None
    if device_id is not None:
        existing = await load(services, principal, tables.DEVICE, Resource.DEVICE, device_id, Operation.WRITE)
    else:
        require(principal, Resource.DEVICE, Operation.CREATE)
    if credentials is not None:
        holder = await services.credentials.owner_of(credentials.credentials_id)
        if holder is not None and holder != device_id:
            raise BadRequest(DUPLICATE_MESSAGE)
    stored: dict[str, Any] | None = None
    replaced: str | None = None
    async with services.db.transaction() as conn:
        profile = await _profile_for(conn, tenant_id, body, existing)
        data = body.deviceData if "deviceData" in fields else (existing or {}).get("deviceData")
        extra = {"type": profile["name"], "device_profile_id": profile["id"],
                 "device_data": _device_data(profile, data)}
        saved, created = await crud.save(services, principal, tables.DEVICE, Resource.DEVICE, fields, extra=extra,
                                         conn=conn)
        saved_id = id_of(saved["id"])
        assert saved_id is not None
        with _credentials_errors():
            if created:
                stored = await services.credentials.create(
                    conn, saved_id, credentials or Credentials(CredentialsType.ACCESS_TOKEN, generate_access_token()))
            elif credentials is not None:
                stored, replaced = await services.credentials.replace(conn, saved_id, credentials)
    if stored is not None:
        await services.credentials.invalidate(stored["credentialsId"], replaced)
        if not created:
            await _audit_credentials(services, principal, saved, stored)
    if not created:
        await _tell_live(services, saved_id, "CREDENTIALS_UPDATED" if replaced else "UPDATED")
    return saved


async def _tell_live(services: Services, device_id: uuid.UUID, kind: str) -> None:
    """The device's live actor hears of the change: sessions close on delete or new credentials."""
    if services.live is None:
        return
    try:
        await services.live.device_changed(device_id, kind)
    except Exception:
        log.exception("the live actor of device %s did not hear that it was %s", device_id, kind)


async def _audit_credentials(services: Services, principal: Principal, device: dict[str, Any],
                             stored: dict[str, Any]) -> None:
    await services.audit.record(principal, ActionType.CREDENTIALS_UPDATED, entity_type="DEVICE",
                                entity_id=id_of(device["id"]), entity_name=device["name"],
                                data={"credentialsType": stored["credentialsType"]})


# --- reading -----------------------------------------------------------------------------------

_INFO_SQL = """
SELECT d.*, c.title AS customer_title, COALESCE(c.is_public, false) AS customer_is_public,
       p.name AS profile_name, t.title AS tenant_title,
       COALESCE((SELECT a.bool_v FROM attribute_kv a JOIN key_dictionary k ON k.key_id = a.attribute_key
                 WHERE a.entity_id = d.id AND a.attribute_type = 2 AND k.key = 'active'), false) AS active
FROM device d
LEFT JOIN customer c ON c.id = d.customer_id
LEFT JOIN device_profile p ON p.id = d.device_profile_id
LEFT JOIN tenant t ON t.id = d.tenant_id
"""
"""Each device with what DeviceInfo adds: customer, profile name, ``active`` (server attribute)."""


def _info_json(services: Services, row: asyncpg.Record) -> dict[str, Any]:
    device = services.repo(tables.DEVICE).to_json(row)
    assigned = row["customer_id"] is not None
    return {**device, "customerTitle": row["customer_title"], "customerIsPublic": row["customer_is_public"],
            "deviceProfileName": row["profile_name"], "active": row["active"],
            # what the PE client's DeviceInfo reads
            "ownerName": row["customer_title"] if assigned else row["tenant_title"],
            "ownerId": device["customerId"] if assigned else device["tenantId"]}


async def _device_page(services: Services, query: PageQuery, *, tenant_id: uuid.UUID, infos: bool,
                       customer_id: uuid.UUID | None = None, unassigned_only: bool = False,
                       device_type: str | None = None, profile_id: uuid.UUID | None = None,
                       active: bool | None = None) -> dict[str, Any]:
    clauses, args = ["tenant_id = $1"], [tenant_id]

    def where(fragment: str, value: Any) -> None:
        args.append(value)
        clauses.append(fragment.format(f"${len(args)}"))

    if customer_id is not None:
        where("customer_id = {}", customer_id)
    elif unassigned_only:
        clauses.append("customer_id IS NULL")
    if device_type:
        where("type = {}", device_type)
    elif profile_id is not None:
        where("device_profile_id = {}", profile_id)
    if active is not None:
        where("active = {}", active)
    if query.text_search:
        where("name ILIKE {}", like_pattern(query.text_search))
    order = query.sort_column or "created_time"
    direction = "DESC" if (query.sort_desc or query.sort_column is None) else "ASC"
    args.extend([query.page_size, query.page * query.page_size])
    rows = await services.db.fetch(
        f"SELECT *, count(*) OVER () AS total_count FROM ({_INFO_SQL}) AS info WHERE {' AND '.join(clauses)} "
        f"ORDER BY {order} {direction}, id LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    if rows:
        total = rows[0]["total_count"]
    else:
        total = await services.db.fetchval(
            f"SELECT count(*) FROM ({_INFO_SQL}) AS info WHERE {' AND '.join(clauses)}", *args[:-2])
    to_json = (lambda r: _info_json(services, r)) if infos else services.repo(tables.DEVICE).to_json
    return page_data([to_json(r) for r in rows], total, query)


async def _device_info(services: Services, device_id: uuid.UUID) -> dict[str, Any]:
    row = await services.db.fetchrow(f"SELECT * FROM ({_INFO_SQL}) AS info WHERE id = $1", device_id)
    if row is None:
        raise NotFound(f"Device with id [{device_id}] is not found")
    return _info_json(services, row)


def _profile_filter(deviceProfileId: str | None) -> uuid.UUID | None:
    return parse_uuid(deviceProfileId) if deviceProfileId else None


async def _customer_for_listing(services: Services, principal: Principal, customer_id: str) -> uuid.UUID:
    """The customer whose devices are asked for, if the caller may see them."""
    parsed = parse_uuid(customer_id)
    await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, parsed)
    require(principal, Resource.DEVICE, Operation.READ)
    return parsed


async def _find_by_name(services: Services, principal: Principal, name: str) -> dict[str, Any]:
    require(principal, Resource.DEVICE, Operation.CREATE)  # as in ThingsBoard: tenant administrators
    device = await services.repo(tables.DEVICE).find_one(tenant_id=tenant_scope(principal), name=name)
    if device is None:
        raise NotFound(f"Device with name [{name}] is not found")
    return device


# --- assignment --------------------------------------------------------------------------------

async def _assign(services: Services, principal: Principal, customer_id: uuid.UUID,
                  device_id: uuid.UUID) -> dict[str, Any]:
    customer = await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, customer_id)
    await load(services, principal, tables.DEVICE, Resource.DEVICE, device_id, Operation.ASSIGN_TO_CUSTOMER)
    saved = await services.repo(tables.DEVICE).update(device_id, {"customer_id": customer_id})
    if saved is None:
        raise NotFound(f"Device with id [{device_id}] is not found")
    await services.audit.record(principal, ActionType.ASSIGNED_TO_CUSTOMER, entity_type="DEVICE",
                                entity_id=device_id, entity_name=saved["name"],
                                data={"entityId": str(device_id), "assignedCustomerId": str(customer_id),
                                      "assignedCustomerName": customer["title"]})
    return saved


async def _unassign(services: Services, principal: Principal, device_id: uuid.UUID, *,
                    must_be_assigned: bool = True) -> dict[str, Any]:
    device = await load(services, principal, tables.DEVICE, Resource.DEVICE, device_id,
                        Operation.UNASSIGN_FROM_CUSTOMER)
    customer_id = id_of(device["customerId"])
    if customer_id is None:
        if must_be_assigned:
            raise BadRequest("Device isn't assigned to any customer!")
        return device
    customer = await services.repo(tables.CUSTOMER).get(customer_id)
    saved = await services.repo(tables.DEVICE).update(device_id, {"customer_id": None})
    if saved is None:
        raise NotFound(f"Device with id [{device_id}] is not found")
    await services.audit.record(principal, ActionType.UNASSIGNED_FROM_CUSTOMER, entity_type="DEVICE",
                                entity_id=device_id, entity_name=saved["name"],
                                data={"entityId": str(device_id), "unassignedCustomerId": str(customer_id),
                                      "unassignedCustomerName": customer["title"] if customer else None})
    return saved


# --- routes: one device ------------------------------------------------------------------------

@router.get("/api/device/types", summary="The device types (profile names) in use in the tenant")
async def get_device_types(principal: PrincipalDep, services: ServicesDep) -> list[dict[str, Any]]:
    require(principal, Resource.DEVICE, Operation.READ)
    tenant_id = tenant_scope(principal)
    rows = await services.db.fetch("SELECT DISTINCT type FROM device WHERE tenant_id = $1 AND type IS NOT NULL"
                                   " ORDER BY type", tenant_id)
    return [{"tenantId": entity_id("TENANT", tenant_id), "entityType": "DEVICE", "type": r["type"]} for r in rows]


@router.get("/api/device/info/{deviceId}", summary="A device with its customer, profile name and activity")
async def get_device_info(deviceId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    device_id = parse_uuid(deviceId)
    await load(services, principal, tables.DEVICE, Resource.DEVICE, device_id)
    return await _device_info(services, device_id)


@router.get("/api/device/{deviceId}", summary="Get a device")
async def get_device(deviceId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await load(services, principal, tables.DEVICE, Resource.DEVICE, parse_uuid(deviceId))


@router.post("/api/device", summary="Create or update a device (new devices get ACCESS_TOKEN credentials)")
async def save_device(body: DeviceIn, principal: PrincipalDep, services: ServicesDep,
                      accessToken: Annotated[str | None, Query(max_length=255)] = None) -> dict[str, Any]:
    """``accessToken``: the token of a new device (a random one when absent); ignored on update."""
    credentials = None
    if accessToken and body.id is None:
        with _credentials_errors():
            credentials = normalize(CredentialsType.ACCESS_TOKEN, accessToken, None)
    return await _save_device(services, principal, body, credentials)


@router.post("/api/device-with-credentials", summary="Create or update a device together with its credentials")
async def save_device_with_credentials(body: DeviceWithCredentialsIn, principal: PrincipalDep,
                                       services: ServicesDep) -> dict[str, Any]:
    return await _save_device(services, principal, body.device, body.credentials.normalized(), by_name=True)


@router.delete("/api/device/{deviceId}", summary="Delete a device, its credentials and its relations")
async def delete_device(deviceId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    device_id = parse_uuid(deviceId)
    await load(services, principal, tables.DEVICE, Resource.DEVICE, device_id, Operation.DELETE)
    if await services.db.fetchval("SELECT 1 FROM entity_view WHERE entity_id = $1 LIMIT 1", device_id):
        raise BadRequest("Can't delete device that has entity views!")
    credentials = await services.credentials.get_by_device(device_id)
    await crud.delete(services, principal, tables.DEVICE, Resource.DEVICE, device_id)  # relations go too
    if credentials is not None:
        await services.credentials.invalidate(credentials["credentialsId"])
    await _tell_live(services, device_id, "DELETED")


@router.get("/api/device/{deviceId}/credentials", summary="The credentials of a device")
async def get_device_credentials(deviceId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    device_id = parse_uuid(deviceId)
    device = await load(services, principal, tables.DEVICE, Resource.DEVICE, device_id, Operation.READ_CREDENTIALS)
    credentials = await services.credentials.get_by_device(device_id)
    if credentials is None:
        raise NotFound(f"Credentials of device [{device_id}] are not found")
    await services.audit.record(principal, ActionType.CREDENTIALS_READ, entity_type="DEVICE", entity_id=device_id,
                                entity_name=device["name"])
    return credentials


@router.post("/api/device/credentials", summary="Change the credentials of a device")
async def update_device_credentials(body: CredentialsIn, principal: PrincipalDep,
                                    services: ServicesDep) -> dict[str, Any]:
    if body.deviceId is None:
        raise BadRequest("Device credentials should be assigned to device!")
    device_id = body.deviceId.id
    device = await load(services, principal, tables.DEVICE, Resource.DEVICE, device_id, Operation.WRITE_CREDENTIALS)
    credentials = body.normalized()
    current = await services.credentials.get_by_device(device_id)
    if body.id is not None and (current is None or str(body.id.id) != current["id"]["id"]):
        raise BadRequest("Unable to update non-existent device credentials!")
    holder = await services.credentials.owner_of(credentials.credentials_id)
    if holder is not None and holder != device_id:
        raise BadRequest(DUPLICATE_MESSAGE)
    with _credentials_errors():
        async with services.db.transaction() as conn:
            stored, replaced = await services.credentials.replace(conn, device_id, credentials,
                                                                  expected_version=body.version)
    await services.credentials.invalidate(stored["credentialsId"], replaced)
    await _audit_credentials(services, principal, device, stored)
    if replaced:
        await _tell_live(services, device_id, "CREDENTIALS_UPDATED")
    return stored


# --- routes: customers -------------------------------------------------------------------------

@router.post("/api/customer/{customerId}/device/{deviceId}", summary="Assign a device to a customer")
async def assign_device_to_customer(customerId: str, deviceId: str, principal: PrincipalDep,
                                    services: ServicesDep) -> dict[str, Any]:
    return await _assign(services, principal, parse_uuid(customerId), parse_uuid(deviceId))


@router.delete("/api/customer/device/{deviceId}", summary="Unassign a device from its customer")
async def unassign_device_from_customer(deviceId: str, principal: PrincipalDep,
                                        services: ServicesDep) -> dict[str, Any]:
    return await _unassign(services, principal, parse_uuid(deviceId))


@router.post("/api/owner/CUSTOMER/{ownerId}/DEVICE/{entityId}", summary="Make a customer the device's owner")
async def change_device_owner_to_customer(ownerId: str, entityId: str, principal: PrincipalDep,
                                          services: ServicesDep) -> None:
    """What tb-rest-client's ``assign_device_to_customer`` calls; the body (entity groups) is ignored."""
    await _assign(services, principal, parse_uuid(ownerId), parse_uuid(entityId))


@router.post("/api/owner/TENANT/{ownerId}/DEVICE/{entityId}", summary="Make the tenant the device's owner")
async def change_device_owner_to_tenant(ownerId: str, entityId: str, principal: PrincipalDep,
                                        services: ServicesDep) -> None:
    """What tb-rest-client's ``unassign_device_from_customer`` calls."""
    if parse_uuid(ownerId) != tenant_scope(principal):
        raise PermissionDenied()
    await _unassign(services, principal, parse_uuid(entityId), must_be_assigned=False)


@router.get("/api/customer/{customerId}/devices", summary="A page of a customer's devices")
async def get_customer_devices(customerId: str, page: DevicePage, principal: PrincipalDep, services: ServicesDep,
                               type: Annotated[str | None, Query(max_length=255)] = None) -> dict[str, Any]:
    customer_id = await _customer_for_listing(services, principal, customerId)
    return await _device_page(services, page, tenant_id=tenant_scope(principal), infos=False,
                              customer_id=customer_id, device_type=type)


@router.get("/api/customer/{customerId}/deviceInfos", summary="A page of a customer's devices as DeviceInfo")
async def get_customer_device_infos(customerId: str, page: DevicePage, principal: PrincipalDep,
                                    services: ServicesDep,
                                    type: Annotated[str | None, Query(max_length=255)] = None,
                                    deviceProfileId: str | None = None, active: bool | None = None) -> dict[str, Any]:
    customer_id = await _customer_for_listing(services, principal, customerId)
    return await _device_page(services, page, tenant_id=tenant_scope(principal), infos=True,
                              customer_id=customer_id, device_type=type,
                              profile_id=_profile_filter(deviceProfileId), active=active)


# --- routes: the tenant's devices --------------------------------------------------------------

@router.get("/api/tenant/devices", summary="A page of the tenant's devices, or (deviceName=) one by name")
async def get_tenant_devices(
        request: Request, principal: PrincipalDep, services: ServicesDep,
        deviceName: Annotated[str | None, Query(max_length=255)] = None,
        pageSize: Annotated[int | None, Query(ge=1, le=100_000)] = None,
        page: Annotated[int | None, Query(ge=0, le=10_000_000)] = None,
        type: Annotated[str | None, Query(max_length=255)] = None,
        textSearch: Annotated[str | None, Query(max_length=255)] = None,
        sortProperty: Annotated[str | None, Query(max_length=255)] = None,
        sortOrder: Annotated[str | None, Query(max_length=16)] = None,
) -> dict[str, Any]:
    """ThingsBoard answers both on this path and tells them apart by ``deviceName``."""
    if deviceName is not None:
        return await _find_by_name(services, principal, deviceName)
    if pageSize is None or page is None:
        raise BadRequest("Required request parameters 'pageSize' and 'page' are not present")
    query = page_params(DEVICE_SORT)(request, pageSize, page, textSearch, sortProperty, sortOrder)
    require(principal, Resource.DEVICE, Operation.CREATE)  # listing is for those who manage them
    return await _device_page(services, query, tenant_id=tenant_scope(principal), infos=False, device_type=type)


@router.get("/api/tenant/device", summary="The tenant's device with this name")
async def get_tenant_device(principal: PrincipalDep, services: ServicesDep,
                            deviceName: Annotated[str, Query(max_length=255)]) -> dict[str, Any]:
    return await _find_by_name(services, principal, deviceName)


@router.get("/api/tenant/deviceInfos", summary="A page of the tenant's devices as DeviceInfo")
async def get_tenant_device_infos(page: DevicePage, principal: PrincipalDep, services: ServicesDep,
                                  type: Annotated[str | None, Query(max_length=255)] = None,
                                  deviceProfileId: str | None = None, active: bool | None = None) -> dict[str, Any]:
    require(principal, Resource.DEVICE, Operation.CREATE)
    return await _device_page(services, page, tenant_id=tenant_scope(principal), infos=True, device_type=type,
                              profile_id=_profile_filter(deviceProfileId), active=active)


@router.get("/api/deviceInfos/all", summary="A page of the caller's devices as DeviceInfo (PE client)")
async def get_all_device_infos(page: DevicePage, principal: PrincipalDep, services: ServicesDep,
                               includeCustomers: bool = False, deviceProfileId: str | None = None,
                               active: bool | None = None) -> dict[str, Any]:
    """A tenant administrator gets the tenant's own (unassigned) devices, or with
    ``includeCustomers`` all of them; a customer user gets its customer's."""
    require(principal, Resource.DEVICE, Operation.READ)
    return await _device_page(services, page, tenant_id=tenant_scope(principal), infos=True,
                              customer_id=principal.customer_id,
                              unassigned_only=principal.customer_id is None and not includeCustomers,
                              profile_id=_profile_filter(deviceProfileId), active=active)


@router.get("/api/user/devices", summary="A page of the devices the caller may see")
async def get_user_devices(page: DevicePage, principal: PrincipalDep, services: ServicesDep,
                           type: Annotated[str | None, Query(max_length=255)] = None) -> dict[str, Any]:
    require(principal, Resource.DEVICE, Operation.READ)
    return await _device_page(services, page, tenant_id=tenant_scope(principal), infos=False,
                              customer_id=principal.customer_id, device_type=type)


@router.get("/api/devices", summary="The devices with these ids that the caller may read")
async def get_devices_by_ids(principal: PrincipalDep, services: ServicesDep,
                             deviceIds: Annotated[str, Query(max_length=100_000, description="Comma-separated ids")]
                             ) -> list[dict[str, Any]]:
    require(principal, Resource.DEVICE, Operation.READ)
    ids = [parse_uuid(part.strip()) for part in deviceIds.split(",") if part.strip()]
    if not ids:
        raise BadRequest("Parameter 'deviceIds' can't be empty!")
    repo = services.repo(tables.DEVICE)
    rows = await services.db.fetch("SELECT * FROM device WHERE id = ANY($1::uuid[]) AND tenant_id = $2"
                                   " ORDER BY name", ids, tenant_scope(principal))
    return [device for device in map(repo.to_json, rows) if _may_read(principal, device)]


def _may_read(principal: Principal, device: dict[str, Any]) -> bool:
    try:
        check(principal, Resource.DEVICE, Operation.READ, owner_of(device))
    except PermissionDenied:
        return False
    return True
