"""/api/deviceProfile, /api/deviceProfiles, /api/deviceProfileInfo(s): a tenant's device profiles.

Full profiles (they carry provisioning keys and secrets) are for those who manage profiles;
customer users read the short ``DeviceProfileInfo`` of their tenant's profiles.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from thingsray.rules.profile_alarms import AlarmRulesError, parse_alarms
from thingsray.serve_app import crud
from thingsray.serve_app.access import id_of, load
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest, NotFound
from thingsray.serve_app.models import EntityIdIn, LongText, Name, ShortText, Versioned
from thingsray.serve_app.permissions import Operation, Resource, require, tenant_scope
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.entities import DuplicateEntity, PageQuery
from thingsray.transports.snmp import SnmpConfigError, SnmpProfileConfig

log = logging.getLogger(__name__)
router = APIRouter(tags=["device-profile"])
ProfilePage = Annotated[PageQuery, Depends(page_params(tables.DEVICE_PROFILE.sort_columns))]

TransportType = Literal["DEFAULT", "MQTT", "COAP", "LWM2M", "SNMP"]
ProvisionType = Literal["DISABLED", "ALLOW_CREATE_NEW_DEVICES", "CHECK_PRE_PROVISIONED_DEVICES",
                        "X509_CERTIFICATE_CHAIN"]


def default_profile_data(transport_type: str = "DEFAULT") -> dict[str, Any]:
    """ThingsBoard's profileData of a new DEFAULT profile."""
    return {"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": transport_type},
            "provisionConfiguration": {"type": "DISABLED", "provisionDeviceSecret": None}, "alarms": None}


class DeviceProfileIn(Versioned):
    name: Name
    description: LongText | None = None
    image: LongText | None = None
    type: Literal["DEFAULT"] = "DEFAULT"
    transportType: TransportType = "DEFAULT"
    provisionType: ProvisionType = "DISABLED"
    defaultRuleChainId: EntityIdIn | None = None
    defaultDashboardId: EntityIdIn | None = None
    defaultQueueName: ShortText | None = None
    provisionDeviceKey: ShortText | None = None
    firmwareId: EntityIdIn | None = None
    softwareId: EntityIdIn | None = None
    profileData: dict[str, Any] | None = None


def info_of(profile: dict[str, Any]) -> dict[str, Any]:
    """The DeviceProfileInfo of a DeviceProfile JSON."""
    return {"id": profile["id"], "tenantId": profile["tenantId"], "name": profile["name"],
            "image": profile["image"], "defaultDashboardId": profile["defaultDashboardId"],
            "type": profile["type"], "transportType": profile["transportType"]}


def _require_manager(principal: Principal) -> None:
    """Full profiles are for those who manage them (tenant administrators), as in ThingsBoard."""
    require(principal, Resource.DEVICE_PROFILE, Operation.WRITE)


async def _load(services: Services, principal: Principal, profile_id: str) -> dict[str, Any]:
    return await load(services, principal, tables.DEVICE_PROFILE, Resource.DEVICE_PROFILE, parse_uuid(profile_id))


async def _default_profile(services: Services, principal: Principal) -> dict[str, Any]:
    require(principal, Resource.DEVICE_PROFILE, Operation.READ)
    profile = await services.repo(tables.DEVICE_PROFILE).find_one(tenant_id=tenant_scope(principal),
                                                                   is_default=True)
    if profile is None:
        raise NotFound("Default device profile is not found")
    return profile


def _profile_data(body: DeviceProfileIn, transport_type: str, existing: dict[str, Any] | None) -> dict[str, Any]:
    """The profileData to store: the client's (else the stored one), with missing parts filled in."""
    sent = body.profileData is not None
    data = body.profileData if sent else (existing or {}).get("profileData")
    if not isinstance(data, dict):
        return default_profile_data(transport_type)
    merged = {**default_profile_data(transport_type), **data}
    transport = merged.get("transportConfiguration")
    if not isinstance(transport, dict) or not transport.get("type") or (
            not sent and transport["type"] != transport_type):
        merged["transportConfiguration"] = {"type": transport_type}
    elif transport["type"] != transport_type:
        raise BadRequest(f"Device profile transport configuration type '{transport['type']}' does not match "
                         f"the transport type '{transport_type}'")
    return merged


def _check_snmp(profile_data: dict[str, Any]) -> None:
    """An SNMP transport configuration is kept as ThingsBoard writes it; an invalid one is refused."""
    transport = profile_data.get("transportConfiguration")
    if not isinstance(transport, dict) or transport.get("type") != "SNMP":
        return
    try:
        profile_data["transportConfiguration"] = SnmpProfileConfig.from_json(transport).to_json()
    except SnmpConfigError as exc:
        raise BadRequest(f"SNMP transport configuration is not valid: {exc}") from None


async def _check_references(services: Services, tenant_id: uuid.UUID, body: DeviceProfileIn) -> None:
    """A profile may only point at its own tenant's rule chain and dashboard."""
    for field, table, label in (("defaultRuleChainId", "rule_chain", "rule chain"),
                                ("defaultDashboardId", "dashboard", "dashboard")):
        ref = getattr(body, field)
        if ref is not None and not await services.db.fetchval(
                f"SELECT 1 FROM {table} WHERE id = $1 AND tenant_id = $2", ref.id, tenant_id):
            raise BadRequest(f"Device profile is referencing a non-existent {label} [{ref.id}]!")


@router.get("/api/deviceProfile/default", summary="The tenant's default device profile")
async def get_default_device_profile(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    _require_manager(principal)
    return await _default_profile(services, principal)


@router.get("/api/deviceProfile/names", summary="Ids and names of the tenant's device profiles")
async def get_device_profile_names(principal: PrincipalDep, services: ServicesDep,
                                   activeOnly: bool = False) -> list[dict[str, Any]]:
    """``activeOnly``: only the profiles some device uses."""
    require(principal, Resource.DEVICE_PROFILE, Operation.READ)
    used = " AND EXISTS (SELECT 1 FROM device d WHERE d.device_profile_id = p.id)" if activeOnly else ""
    rows = await services.db.fetch(
        f"SELECT p.id, p.name FROM device_profile p WHERE p.tenant_id = $1{used} ORDER BY p.name",
        tenant_scope(principal))
    return [{"id": {"entityType": "DEVICE_PROFILE", "id": str(r["id"])}, "name": r["name"]} for r in rows]


@router.get("/api/deviceProfile/{deviceProfileId}", summary="Get a device profile")
async def get_device_profile(deviceProfileId: str, principal: PrincipalDep, services: ServicesDep,
                             inlineImages: bool = False) -> dict[str, Any]:
    _require_manager(principal)
    return await _load(services, principal, deviceProfileId)


@router.get("/api/deviceProfileInfo/default", summary="Short info of the tenant's default device profile")
async def get_default_device_profile_info(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return info_of(await _default_profile(services, principal))


@router.get("/api/deviceProfileInfo/{deviceProfileId}", summary="Short info of a device profile")
async def get_device_profile_info(deviceProfileId: str, principal: PrincipalDep,
                                  services: ServicesDep) -> dict[str, Any]:
    return info_of(await _load(services, principal, deviceProfileId))


@router.post("/api/deviceProfile", summary="Create or update a device profile")
async def save_device_profile(body: DeviceProfileIn, principal: PrincipalDep,
                              services: ServicesDep) -> dict[str, Any]:
    tenant_id = tenant_scope(principal)
    profile_id = body.id.id if body.id is not None else None
    existing = None
    if profile_id is not None:
        existing = await load(services, principal, tables.DEVICE_PROFILE, Resource.DEVICE_PROFILE, profile_id,
                              Operation.WRITE)
    else:
        require(principal, Resource.DEVICE_PROFILE, Operation.CREATE)
    await _check_references(services, tenant_id, body)
    fields = body.model_dump(exclude_unset=True)
    for name in ("type", "transportType", "provisionType"):  # left out of an update: kept as stored
        if name not in fields:
            fields[name] = existing[name] if existing is not None else getattr(body, name)
    fields["profileData"] = _profile_data(body, fields["transportType"], existing)
    _check_snmp(fields["profileData"])
    try:
        parse_alarms(fields["profileData"])  # a profile whose alarm rules cannot run is refused
    except AlarmRulesError as exc:
        raise BadRequest(str(exc)) from None
    async with services.db.transaction() as conn:
        if existing is not None and existing["transportType"] != fields["transportType"] and await conn.fetchval(
                "SELECT 1 FROM device WHERE device_profile_id = $1 LIMIT 1", profile_id):
            raise BadRequest("Changing transport type for device profile with existing devices is prohibited!")
        try:
            saved, _ = await crud.save(services, principal, tables.DEVICE_PROFILE, Resource.DEVICE_PROFILE,
                                       fields, conn=conn)
        except DuplicateEntity as exc:
            if exc.constraint and "provision" in exc.constraint:
                raise BadRequest("Device profile with such provision device key already exists!") from None
            raise
        if existing is not None and existing["name"] != saved["name"]:
            # a device's type is its profile's name
            await conn.execute("UPDATE device SET type = $2 WHERE device_profile_id = $1", profile_id,
                               saved["name"])
    if existing is not None:
        await _tell_shards(services, tenant_id, profile_id)
    return saved


async def _tell_shards(services: Services, tenant_id: uuid.UUID, profile_id: uuid.UUID) -> None:
    """Device actors see a changed profile from their next message on."""
    if services.live is None:
        return
    try:
        await services.live.profile_changed(tenant_id, profile_id)
    except Exception:
        log.exception("the shards did not hear that device profile %s changed", profile_id)


@router.delete("/api/deviceProfile/{deviceProfileId}", summary="Delete a device profile no device uses")
async def delete_device_profile(deviceProfileId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    profile_id = parse_uuid(deviceProfileId)
    profile = await load(services, principal, tables.DEVICE_PROFILE, Resource.DEVICE_PROFILE, profile_id,
                         Operation.DELETE)
    if profile["default"]:
        raise BadRequest("Deletion of Default Device Profile is prohibited!")
    if await services.db.fetchval("SELECT 1 FROM device WHERE device_profile_id = $1 LIMIT 1", profile_id):
        raise BadRequest("The device profile referenced by the devices cannot be deleted!")
    await crud.delete(services, principal, tables.DEVICE_PROFILE, Resource.DEVICE_PROFILE, profile_id)
    await _tell_shards(services, tenant_scope(principal), profile_id)


@router.post("/api/deviceProfile/{deviceProfileId}/default", summary="Make a device profile the tenant's default")
async def set_default_device_profile(deviceProfileId: str, principal: PrincipalDep,
                                     services: ServicesDep) -> dict[str, Any]:
    profile_id = parse_uuid(deviceProfileId)
    profile = await load(services, principal, tables.DEVICE_PROFILE, Resource.DEVICE_PROFILE, profile_id,
                         Operation.WRITE)
    tenant_id = id_of(profile["tenantId"])
    if profile["default"]:
        return profile
    async with services.db.transaction() as conn:
        # lock the current default first: concurrent calls then take turns
        previous = await conn.fetch("SELECT id FROM device_profile WHERE tenant_id = $1 AND is_default FOR UPDATE",
                                    tenant_id)
        await conn.execute("UPDATE device_profile SET is_default = false, version = version + 1"
                           " WHERE tenant_id = $1 AND is_default AND id <> $2", tenant_id, profile_id)
        await conn.execute("UPDATE device_profile SET is_default = true, version = version + 1 WHERE id = $1",
                           profile_id)
    saved = await services.repo(tables.DEVICE_PROFILE).get(profile_id)
    if saved is None:  # deleted meanwhile
        raise NotFound(f"Device profile with id [{profile_id}] is not found")
    for row in previous:
        await services.audit.record(principal, ActionType.UPDATED, entity_type="DEVICE_PROFILE",
                                    entity_id=row["id"], data={"default": False})
    await services.audit.record(principal, ActionType.UPDATED, entity_type="DEVICE_PROFILE", entity_id=profile_id,
                                entity_name=saved["name"], data={"entity": saved, "default": True})
    return saved


@router.get("/api/deviceProfiles", summary="A page of the tenant's device profiles")
async def get_device_profiles(page: ProfilePage, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    _require_manager(principal)
    return await services.repo(tables.DEVICE_PROFILE).page(page, {"tenant_id": tenant_scope(principal)})


@router.get("/api/deviceProfileInfos", summary="A page of short infos of the tenant's device profiles")
async def get_device_profile_infos(page: ProfilePage, principal: PrincipalDep, services: ServicesDep,
                                   transportType: TransportType | None = None) -> dict[str, Any]:
    require(principal, Resource.DEVICE_PROFILE, Operation.READ)
    where: dict[str, Any] = {"tenant_id": tenant_scope(principal)}
    if transportType:
        where["transport_type"] = transportType
    result = await services.repo(tables.DEVICE_PROFILE).page(page, where)
    return {**result, "data": [info_of(p) for p in result["data"]]}


@router.get("/api/deviceProfileInfos/list", summary="Short infos of the tenant's device profiles with these ids")
async def get_device_profile_infos_by_ids(
        principal: PrincipalDep, services: ServicesDep,
        deviceProfileIds: Annotated[str, Query(max_length=100_000, description="Comma-separated ids")],
) -> list[dict[str, Any]]:
    require(principal, Resource.DEVICE_PROFILE, Operation.READ)
    ids = [parse_uuid(part.strip()) for part in deviceProfileIds.split(",") if part.strip()]
    rows = await services.db.fetch("SELECT * FROM device_profile WHERE id = ANY($1::uuid[]) AND tenant_id = $2"
                                   " ORDER BY name", ids, tenant_scope(principal))
    repo = services.repo(tables.DEVICE_PROFILE)
    return [info_of(repo.to_json(r)) for r in rows]
