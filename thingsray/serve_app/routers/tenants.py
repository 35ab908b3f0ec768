"""/api/tenant, /api/tenants, /api/tenantInfos: the system administrator's tenants.

Tenant profiles are not modelled: every tenant answers with the one fixed profile
``DEFAULT_TENANT_PROFILE_ID`` named "Default" (ThingsBoard creates such a profile at install).
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from thingsray.serve_app import crud
from thingsray.serve_app.access import load
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest
from thingsray.serve_app.models import ContactIn, ShortText
from thingsray.serve_app.permissions import Operation, Resource, require
from thingsray.storage import tables
from thingsray.storage.entities import PageQuery

router = APIRouter(tags=["tenant"])
TenantPage = Annotated[PageQuery, Depends(page_params(tables.TENANT.sort_columns))]

DEFAULT_TENANT_PROFILE_ID = uuid.UUID("5a3d8f2e-0d6c-4b1e-9c7a-3f1e2d4c5b6a")
"""The id every tenant shows as its ``tenantProfileId``; fixed so clients may rely on it."""
DEFAULT_TENANT_PROFILE_NAME = "Default"

EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
"""ThingsBoard's DataValidator.validateEmail, with the apostrophe some addresses carry."""

# rows whose entity_id belongs to a tenant; nothing references them by foreign key
_OWNED = ("SELECT id FROM device WHERE tenant_id = $1 UNION ALL SELECT id FROM asset WHERE tenant_id = $1 "
          "UNION ALL SELECT id FROM customer WHERE tenant_id = $1 UNION ALL SELECT id FROM tb_user "
          "WHERE tenant_id = $1 UNION ALL SELECT id FROM entity_view WHERE tenant_id = $1 UNION ALL "
          "SELECT id FROM dashboard WHERE tenant_id = $1 UNION ALL SELECT id FROM rule_chain "
          "WHERE tenant_id = $1 UNION ALL SELECT $1")


def validate_email(email: str) -> None:
    if not EMAIL.match(email):
        raise BadRequest(f"Invalid email address format '{email}'!")


class TenantIn(ContactIn):
    title: ShortText | None = None
    region: ShortText | None = None


def shaped(tenant: dict[str, Any]) -> dict[str, Any]:
    """ThingsBoard's Tenant: every tenant has a profile."""
    if tenant.get("tenantProfileId") is None:
        tenant["tenantProfileId"] = {"entityType": "TENANT_PROFILE", "id": str(DEFAULT_TENANT_PROFILE_ID)}
    return tenant


def info(tenant: dict[str, Any]) -> dict[str, Any]:
    """ThingsBoard's TenantInfo: the Tenant and its profile's name."""
    return {**shaped(tenant), "tenantProfileName": DEFAULT_TENANT_PROFILE_NAME}


# only a UUID matches, so that /api/tenant/customers, /api/tenant/devices... reach their routers
@router.get("/api/tenant/{tenantId:uuid}", summary="Get a tenant (a tenant admin: its own only)")
async def get_tenant(tenantId: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return shaped(await load(services, principal, tables.TENANT, Resource.TENANT, tenantId))


@router.get("/api/tenant/info/{tenantId}", summary="Get a tenant with its profile name")
async def get_tenant_info(tenantId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return info(await load(services, principal, tables.TENANT, Resource.TENANT, parse_uuid(tenantId)))


@router.post("/api/tenant", summary="Create (with its default profiles) or update a tenant")
async def save_tenant(body: TenantIn, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.TENANT, Operation.WRITE if body.id else Operation.CREATE)
    if not body.title:
        raise BadRequest("Tenant title should be specified!")
    if body.email:
        validate_email(body.email)
    fields = body.model_dump(exclude_unset=True)
    if body.id is not None:
        saved, _ = await crud.save(services, principal, tables.TENANT, Resource.TENANT, fields)
        return shaped(saved)
    from thingsray.install import create_tenant_defaults  # install imports serve_app: import here

    async with services.db.transaction() as conn:
        saved, _ = await crud.save(services, principal, tables.TENANT, Resource.TENANT, fields,
                                   extra={"tenant_profile_id": DEFAULT_TENANT_PROFILE_ID}, conn=conn)
        await create_tenant_defaults(conn, uuid.UUID(saved["id"]["id"]))
    return shaped(saved)


@router.delete("/api/tenant/{tenantId:uuid}",
               summary="Delete a tenant and everything it owns; its users are logged out")
async def delete_tenant(tenantId: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> None:
    tenant_id = tenantId
    require(principal, Resource.TENANT, Operation.DELETE)  # a tenant admin: 403, as ThingsBoard
    tenant = await load(services, principal, tables.TENANT, Resource.TENANT, tenant_id, Operation.DELETE)
    users = await services.db.fetch("SELECT id FROM tb_user WHERE tenant_id = $1", tenant_id)
    for user in users:  # first, so no request slips in between the delete and the revocation
        await services.revocations.revoke_user_tokens(user["id"], deleted=True)
    async with services.db.transaction() as conn:
        for table in ("attribute_kv", "ts_kv", "ts_kv_latest"):
            await conn.execute(f"DELETE FROM {table} WHERE entity_id IN ({_OWNED})", tenant_id)
        await conn.execute(f"DELETE FROM relation WHERE from_id IN ({_OWNED}) OR to_id IN ({_OWNED})",
                           tenant_id)
        await conn.execute("DELETE FROM alarm WHERE tenant_id = $1", tenant_id)
        await conn.execute("DELETE FROM tenant WHERE id = $1", tenant_id)  # the rest cascades
    await services.audit.record(principal, ActionType.DELETED, entity_type="TENANT", entity_id=tenant_id,
                                entity_name=tenant["title"])


@router.get("/api/tenants", summary="A page of tenants (system administrator)")
async def get_tenants(page: TenantPage, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.TENANT, Operation.CREATE)  # listing is for those who manage them
    result = await services.repo(tables.TENANT).page(page)
    result["data"] = [shaped(t) for t in result["data"]]
    return result


@router.get("/api/tenantInfos", summary="A page of tenants with their profile names (system administrator)")
async def get_tenant_infos(page: TenantPage, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.TENANT, Operation.CREATE)
    result = await services.repo(tables.TENANT).page(page)
    result["data"] = [info(t) for t in result["data"]]
    return result
