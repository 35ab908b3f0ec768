"""/api/entityView, /api/tenant/entityViews, /api/customer/{id}/entityViews.

An entity view shows chosen telemetry and attribute keys of one device or asset of the same
tenant (``entityId``), optionally within ``startTimeMs``..``endTimeMs``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from thingsray.serve_app import crud
from thingsray.serve_app.access import load
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest
from thingsray.serve_app.models import Name, ShortText, TbModel, Versioned
from thingsray.serve_app.permissions import Resource
from thingsray.serve_app.routers import assignable
from thingsray.serve_app.routers.assignable import TypeFilter
from thingsray.storage import tables
from thingsray.storage.entities import PageQuery

router = APIRouter(tags=["entity-view"])
ViewPage = Annotated[PageQuery, Depends(page_params(tables.ENTITY_VIEW.sort_columns))]
ViewPageOrName = Annotated[PageQuery | None,
                           Depends(assignable.optional_page(dict(tables.ENTITY_VIEW.sort_columns)))]

KeyList = Annotated[list[ShortText], Field(max_length=1000)]
VIEWABLE = {"DEVICE": (tables.DEVICE, Resource.DEVICE), "ASSET": (tables.ASSET, Resource.ASSET)}


class AttributeKeys(TbModel):
    cs: KeyList = []
    ss: KeyList = []
    sh: KeyList = []


class TelemetryKeys(TbModel):
    timeseries: KeyList = []
    attributes: AttributeKeys = AttributeKeys()


class ViewedEntity(TbModel):
    entityType: Literal["DEVICE", "ASSET"]
    id: uuid.UUID


class EntityViewIn(Versioned):
    name: Name
    type: Name
    entityId: ViewedEntity
    keys: TelemetryKeys | None = None
    startTimeMs: int = Field(default=0, ge=0)
    endTimeMs: int = Field(default=0, ge=0)


@router.get("/api/entityView/types", summary="The entity view types the tenant uses")
async def get_entity_view_types(principal: PrincipalDep, services: ServicesDep) -> list[dict[str, Any]]:
    return await assignable.types(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW)


@router.get("/api/entityView/info/{entityViewId}", summary="An entity view with its customer's title")
async def get_entity_view_info(entityViewId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    view = await load(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW, parse_uuid(entityViewId))
    return (await assignable.with_customer_info(services, [view]))[0]


@router.get("/api/entityView/{entityViewId}", summary="Get an entity view")
async def get_entity_view(entityViewId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await load(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW, parse_uuid(entityViewId))


@router.post("/api/entityView", summary="Create or update an entity view of a device or asset")
async def save_entity_view(body: EntityViewIn, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    if body.endTimeMs and body.startTimeMs > body.endTimeMs:
        raise BadRequest("Entity view startTimeMs must not be after endTimeMs")
    target_id = body.entityId.id
    table, resource = VIEWABLE[body.entityId.entityType]
    await load(services, principal, table, resource, target_id)  # exists, and in the caller's tenant
    fields = body.model_dump(exclude_unset=True)
    fields["entityId"] = {"entityType": body.entityId.entityType, "id": target_id}
    if "keys" in fields and body.keys is not None:
        fields["keys"] = body.keys.model_dump()
    saved, _ = await crud.save(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW, fields)
    return saved


@router.delete("/api/entityView/{entityViewId}", summary="Delete an entity view")
async def delete_entity_view(entityViewId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    await crud.delete(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW, parse_uuid(entityViewId))


@router.get("/api/tenant/entityViews", summary="A page of the tenant's entity views, or ?entityViewName= one")
async def get_tenant_entity_views(page: ViewPageOrName, principal: PrincipalDep, services: ServicesDep,
                                  type: TypeFilter = None,
                                  entityViewName: Annotated[str | None, Query(max_length=255)] = None
                                  ) -> dict[str, Any]:
    if entityViewName is not None:
        return await assignable.find_by_name(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW,
                                             entityViewName)
    return await assignable.tenant_page(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW,
                                        assignable.require_page(page), type)


@router.get("/api/tenant/entityView", summary="The tenant's entity view called entityViewName")
async def get_tenant_entity_view(principal: PrincipalDep, services: ServicesDep,
                                 entityViewName: Annotated[str, Query(max_length=255)]) -> dict[str, Any]:
    return await assignable.find_by_name(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW,
                                         entityViewName)


@router.get("/api/tenant/entityViewInfos", summary="A page of the tenant's entity views as EntityViewInfo")
async def get_tenant_entity_view_infos(page: ViewPage, principal: PrincipalDep, services: ServicesDep,
                                       type: TypeFilter = None) -> dict[str, Any]:
    result = await assignable.tenant_page(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW, page, type)
    return {**result, "data": await assignable.with_customer_info(services, result["data"])}


@router.get("/api/customer/{customerId}/entityViews", summary="A page of the customer's entity views")
async def get_customer_entity_views(customerId: str, page: ViewPage, principal: PrincipalDep,
                                    services: ServicesDep, type: TypeFilter = None) -> dict[str, Any]:
    return await assignable.customer_page(services, principal, tables.ENTITY_VIEW, customerId, page, type)


@router.get("/api/customer/{customerId}/entityViewInfos", summary="A page of the customer's entity view infos")
async def get_customer_entity_view_infos(customerId: str, page: ViewPage, principal: PrincipalDep,
                                         services: ServicesDep, type: TypeFilter = None) -> dict[str, Any]:
    result = await assignable.customer_page(services, principal, tables.ENTITY_VIEW, customerId, page, type)
    return {**result, "data": await assignable.with_customer_info(services, result["data"])}


@router.post("/api/customer/{customerId}/entityView/{entityViewId}", summary="Assign an entity view to a customer")
async def assign_entity_view(customerId: str, entityViewId: str, principal: PrincipalDep,
                             services: ServicesDep) -> dict[str, Any]:
    return await assignable.assign(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW,
                                   entityViewId, customerId)


@router.delete("/api/customer/entityView/{entityViewId}", summary="Unassign an entity view from its customer")
async def unassign_entity_view(entityViewId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await assignable.unassign(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW, entityViewId)


@router.get("/api/entityViews", summary="The listed entity views the caller may read")
async def get_entity_views_by_ids(principal: PrincipalDep, services: ServicesDep,
                                  entityViewIds: Annotated[str, Query(max_length=40_000)]) -> list[dict[str, Any]]:
    return await assignable.by_ids(services, principal, tables.ENTITY_VIEW, Resource.ENTITY_VIEW, entityViewIds)
