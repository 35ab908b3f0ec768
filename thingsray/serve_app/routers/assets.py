"""/api/asset, /api/tenant/assets, /api/customer/{id}/assets; and the asset profiles they use.

An asset's ``type`` is the name of its asset profile: a ``type`` without ``assetProfileId`` picks
the tenant's profile of that name (created if absent), neither picks the default profile.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from thingsray import install
from thingsray.serve_app import crud
from thingsray.serve_app.access import id_of, load
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest, NotFound
from thingsray.serve_app.models import EntityIdIn, LongText, Name, ShortText, Versioned
from thingsray.serve_app.permissions import Operation, Owner, Resource, require, tenant_scope
from thingsray.serve_app.routers import assignable
from thingsray.serve_app.routers.assignable import TypeFilter
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.entities import PageQuery

router = APIRouter(tags=["asset"])
AssetPage = Annotated[PageQuery, Depends(page_params(tables.ASSET.sort_columns))]
AssetPageOrName = Annotated[PageQuery | None, Depends(assignable.optional_page(dict(tables.ASSET.sort_columns)))]
ProfilePage = Annotated[PageQuery, Depends(page_params(tables.ASSET_PROFILE.sort_columns))]


class AssetIn(Versioned):
    name: Name
    type: ShortText | None = None
    label: ShortText | None = None
    assetProfileId: EntityIdIn | None = None


class AssetProfileIn(Versioned):
    name: Name
    description: LongText | None = None
    image: LongText | None = None
    defaultRuleChainId: EntityIdIn | None = None
    defaultDashboardId: EntityIdIn | None = None
    defaultQueueName: ShortText | None = None


def tenant_shared(principal: Principal):
    """Owner of what every user of the tenant may read (profiles): customer users included."""
    customers = (principal.customer_id,) if principal.customer_id else ()
    return lambda entity: Owner(tenant_id=id_of(entity.get("tenantId")), customer_ids=customers)


async def asset_infos(services: Services, assets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AssetInfo: the asset plus customerTitle, customerIsPublic and assetProfileName."""
    infos = await assignable.with_customer_info(services, assets)
    profile_ids = list({pid for a in assets if (pid := id_of(a.get("assetProfileId"))) is not None})
    rows = await services.db.fetch("SELECT id, name FROM asset_profile WHERE id = ANY($1)", profile_ids)
    names = {r["id"]: r["name"] for r in rows}
    return [{**info, "assetProfileName": names.get(id_of(info.get("assetProfileId")))} for info in infos]


# --- assets ----------------------------------------------------------------------------------

@router.get("/api/asset/types", summary="The asset types (profile names) the tenant's assets use")
async def get_asset_types(principal: PrincipalDep, services: ServicesDep) -> list[dict[str, Any]]:
    return await assignable.types(services, principal, tables.ASSET, Resource.ASSET)


@router.get("/api/asset/info/{assetId}", summary="An asset with its customer and profile names")
async def get_asset_info(assetId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    asset = await load(services, principal, tables.ASSET, Resource.ASSET, parse_uuid(assetId))
    return (await asset_infos(services, [asset]))[0]


@router.get("/api/asset/{assetId}", summary="Get an asset")
async def get_asset(assetId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await load(services, principal, tables.ASSET, Resource.ASSET, parse_uuid(assetId))


@router.post("/api/asset", summary="Create or update an asset")
async def save_asset(body: AssetIn, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.ASSET, Operation.WRITE if body.id else Operation.CREATE)
    tenant_id = tenant_scope(principal)
    if body.assetProfileId is not None:
        profile = await load(services, principal, tables.ASSET_PROFILE, Resource.ASSET_PROFILE,
                             body.assetProfileId.id)
        profile_id = body.assetProfileId.id
    else:
        async with services.db.transaction() as conn:
            if body.type:
                profile_id = await install.ensure_asset_profile(conn, tenant_id, body.type)
            else:
                profile_id = await conn.fetchval(
                    "SELECT id FROM asset_profile WHERE tenant_id = $1 AND is_default", tenant_id)
                if profile_id is None:
                    profile_id = await install.ensure_asset_profile(conn, tenant_id, "default", default=True)
        found = await services.repo(tables.ASSET_PROFILE).get(profile_id)
        assert found is not None
        profile = found
    fields = body.model_dump(exclude_unset=True)
    fields["assetProfileId"] = {"id": profile_id}
    saved, _ = await crud.save(services, principal, tables.ASSET, Resource.ASSET, fields,
                               extra={"type": profile["name"]})
    return saved


@router.delete("/api/asset/{assetId}", summary="Delete an asset and its relations")
async def delete_asset(assetId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    await crud.delete(services, principal, tables.ASSET, Resource.ASSET, parse_uuid(assetId))


@router.get("/api/tenant/assets", summary="A page of the tenant's assets, or ?assetName= one by name")
async def get_tenant_assets(page: AssetPageOrName, principal: PrincipalDep, services: ServicesDep,
                            type: TypeFilter = None,
                            assetName: Annotated[str | None, Query(max_length=255)] = None) -> dict[str, Any]:
    if assetName is not None:
        return await assignable.find_by_name(services, principal, tables.ASSET, Resource.ASSET, assetName)
    return await assignable.tenant_page(services, principal, tables.ASSET, Resource.ASSET,
                                        assignable.require_page(page), type)


@router.get("/api/tenant/asset", summary="The tenant's asset called assetName")
async def get_tenant_asset(principal: PrincipalDep, services: ServicesDep,
                           assetName: Annotated[str, Query(max_length=255)]) -> dict[str, Any]:
    return await assignable.find_by_name(services, principal, tables.ASSET, Resource.ASSET, assetName)


@router.get("/api/tenant/assetInfos", summary="A page of the tenant's assets as AssetInfo")
async def get_tenant_asset_infos(page: AssetPage, principal: PrincipalDep, services: ServicesDep,
                                 type: TypeFilter = None,
                                 assetProfileId: Annotated[str | None, Query(max_length=64)] = None
                                 ) -> dict[str, Any]:
    if assetProfileId:
        require(principal, Resource.ASSET, Operation.CREATE)
        where = {"tenant_id": tenant_scope(principal), "asset_profile_id": parse_uuid(assetProfileId)}
        result = await services.repo(tables.ASSET).page(page, where)
    else:
        result = await assignable.tenant_page(services, principal, tables.ASSET, Resource.ASSET, page, type)
    return {**result, "data": await asset_infos(services, result["data"])}


@router.get("/api/customer/{customerId}/assets", summary="A page of the customer's assets")
async def get_customer_assets(customerId: str, page: AssetPage, principal: PrincipalDep,
                              services: ServicesDep, type: TypeFilter = None) -> dict[str, Any]:
    return await assignable.customer_page(services, principal, tables.ASSET, customerId, page, type)


@router.get("/api/customer/{customerId}/assetInfos", summary="A page of the customer's assets as AssetInfo")
async def get_customer_asset_infos(customerId: str, page: AssetPage, principal: PrincipalDep,
                                   services: ServicesDep, type: TypeFilter = None) -> dict[str, Any]:
    result = await assignable.customer_page(services, principal, tables.ASSET, customerId, page, type)
    return {**result, "data": await asset_infos(services, result["data"])}


@router.post("/api/customer/{customerId}/asset/{assetId}", summary="Assign an asset to a customer")
async def assign_asset(customerId: str, assetId: str, principal: PrincipalDep,
                       services: ServicesDep) -> dict[str, Any]:
    return await assignable.assign(services, principal, tables.ASSET, Resource.ASSET, assetId, customerId)


@router.delete("/api/customer/asset/{assetId}", summary="Unassign an asset from its customer")
async def unassign_asset(assetId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await assignable.unassign(services, principal, tables.ASSET, Resource.ASSET, assetId)


@router.get("/api/assets", summary="The listed assets the caller may read")
async def get_assets_by_ids(principal: PrincipalDep, services: ServicesDep,
                            assetIds: Annotated[str, Query(max_length=40_000)]) -> list[dict[str, Any]]:
    return await assignable.by_ids(services, principal, tables.ASSET, Resource.ASSET, assetIds)


# --- asset profiles --------------------------------------------------------------------------

def profile_info(profile: dict[str, Any]) -> dict[str, Any]:
    return {"id": profile["id"], "tenantId": profile["tenantId"], "name": profile["name"],
            "image": profile.get("image"), "defaultDashboardId": profile.get("defaultDashboardId")}


async def load_profile(services: Services, principal: Principal, profile_id: uuid.UUID,
                       operation: Operation = Operation.READ) -> dict[str, Any]:
    owner = tenant_shared(principal) if operation is Operation.READ else None
    if owner is None:
        return await load(services, principal, tables.ASSET_PROFILE, Resource.ASSET_PROFILE, profile_id, operation)
    return await load(services, principal, tables.ASSET_PROFILE, Resource.ASSET_PROFILE, profile_id,
                      operation, owner)


@router.get("/api/assetProfile/{assetProfileId}", summary="Get an asset profile")
async def get_asset_profile(assetProfileId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await load_profile(services, principal, parse_uuid(assetProfileId))


@router.get("/api/assetProfileInfo/default", summary="The tenant's default asset profile (info)")
async def get_default_asset_profile_info(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.ASSET_PROFILE, Operation.READ)
    profile = await services.repo(tables.ASSET_PROFILE).find_one(tenant_id=tenant_scope(principal),
                                                                  is_default=True)
    if profile is None:
        raise NotFound("Default asset profile is not found")
    return profile_info(profile)


@router.get("/api/assetProfileInfo/{assetProfileId}", summary="An asset profile's info")
async def get_asset_profile_info(assetProfileId: str, principal: PrincipalDep,
                                 services: ServicesDep) -> dict[str, Any]:
    return profile_info(await load_profile(services, principal, parse_uuid(assetProfileId)))


@router.get("/api/assetProfiles", summary="A page of the tenant's asset profiles")
async def get_asset_profiles(page: ProfilePage, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.ASSET_PROFILE, Operation.CREATE)
    return await services.repo(tables.ASSET_PROFILE).page(page, {"tenant_id": tenant_scope(principal)})


@router.get("/api/assetProfileInfos", summary="A page of the tenant's asset profile infos")
async def get_asset_profile_infos(page: ProfilePage, principal: PrincipalDep,
                                  services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.ASSET_PROFILE, Operation.READ)
    result = await services.repo(tables.ASSET_PROFILE).page(page, {"tenant_id": tenant_scope(principal)})
    return {**result, "data": [profile_info(p) for p in result["data"]]}


@router.post("/api/assetProfile", summary="Create or update an asset profile")
async def save_asset_profile(body: AssetProfileIn, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    if body.defaultRuleChainId is not None:
        await load(services, principal, tables.RULE_CHAIN, Resource.RULE_CHAIN, body.defaultRuleChainId.id)
    if body.defaultDashboardId is not None:
        await load(services, principal, tables.DASHBOARD, Resource.DASHBOARD, body.defaultDashboardId.id)
    saved, created = await crud.save(services, principal, tables.ASSET_PROFILE, Resource.ASSET_PROFILE,
                                     body.model_dump(exclude_unset=True))
    if not created:  # an asset's type is its profile's name
        await services.db.execute("UPDATE asset SET type = $2 WHERE asset_profile_id = $1 AND type <> $2",
                                  id_of(saved["id"]), saved["name"])
    return saved


@router.post("/api/assetProfile/{assetProfileId}/default", summary="Make an asset profile the tenant's default")
async def set_default_asset_profile(assetProfileId: str, principal: PrincipalDep,
                                    services: ServicesDep) -> dict[str, Any]:
    profile_id = parse_uuid(assetProfileId)
    profile = await load_profile(services, principal, profile_id, Operation.WRITE)
    async with services.db.transaction() as conn:
        await conn.execute("UPDATE asset_profile SET is_default = false WHERE tenant_id = $1 AND is_default",
                           id_of(profile["tenantId"]))
        await conn.execute("UPDATE asset_profile SET is_default = true WHERE id = $1", profile_id)
    saved = await services.repo(tables.ASSET_PROFILE).get(profile_id)
    assert saved is not None
    return saved


@router.delete("/api/assetProfile/{assetProfileId}", summary="Delete an asset profile no asset uses")
async def delete_asset_profile(assetProfileId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    profile_id = parse_uuid(assetProfileId)
    profile = await load_profile(services, principal, profile_id, Operation.DELETE)
    if profile["default"]:
        raise BadRequest("Deletion of Default Asset Profile is prohibited!")
    if await services.db.fetchval("SELECT 1 FROM asset WHERE asset_profile_id = $1 LIMIT 1", profile_id):
        raise BadRequest("The asset profile referenced by the assets cannot be deleted!")
    await crud.delete(services, principal, tables.ASSET_PROFILE, Resource.ASSET_PROFILE, profile_id)
