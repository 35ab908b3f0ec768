"""What assets and entity views share: both belong to at most one customer (``customer_id``).

Assigning, unassigning, the customer's page, the ``...Infos`` shapes (customerTitle,
customerIsPublic), the distinct ``types``, and the ``?assetName=``-style lookups that share a
path with a paged listing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query, Request

from thingsray.serve_app.access import id_of, load, owner_of
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.crud import display_name
from thingsray.serve_app.deps import page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest, NotFound, PermissionDenied
from thingsray.serve_app.permissions import Operation, Resource, check, require, tenant_scope
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.entities import EntityTable, PageQuery

TypeFilter = Annotated[str | None, Query(max_length=255, description="Only entities of this type")]


def optional_page(sort_columns: dict[str, str]) -> Callable[..., PageQuery | None]:
    """Paging parameters, or None when neither ``pageSize`` nor ``page`` is given (the path also
    answers a lookup by name)."""
    paged = page_params(sort_columns)

    def dependency(
        request: Request,
        pageSize: Annotated[int | None, Query(ge=1, le=100_000)] = None,
        page: Annotated[int | None, Query(ge=0, le=10_000_000)] = None,
        textSearch: Annotated[str | None, Query(max_length=255)] = None,
        sortProperty: Annotated[str | None, Query(max_length=255)] = None,
        sortOrder: Annotated[str | None, Query(max_length=16)] = None,
    ) -> PageQuery | None:
        if pageSize is None and page is None:
            return None
        if pageSize is None or page is None:
            missing = "pageSize" if pageSize is None else "page"
            raise BadRequest(f"Required request parameter '{missing}' is not present")
        return paged(request, pageSize, page, textSearch, sortProperty, sortOrder)

    return dependency


def require_page(page: PageQuery | None) -> PageQuery:
    if page is None:
        raise BadRequest("Required request parameter 'pageSize' is not present")
    return page


async def find_by_name(services: Services, principal: Principal, table: EntityTable, resource: Resource,
                       name: str) -> dict[str, Any]:
    """The tenant's entity called ``name`` (ThingsBoard: ``/api/tenant/assets?assetName=``)."""
    require(principal, resource, Operation.READ)
    found = await services.repo(table).find_one(tenant_id=tenant_scope(principal), name=name)
    label = table.entity_type.replace("_", " ").capitalize()
    if found is None:
        raise NotFound(f"{label} with name [{name}] is not found")
    check(principal, resource, Operation.READ, owner_of(found))
    return found


async def tenant_page(services: Services, principal: Principal, table: EntityTable, resource: Resource,
                      page: PageQuery, entity_type: str | None) -> dict[str, Any]:
    require(principal, resource, Operation.CREATE)  # the tenant-wide listing is for those who manage them
    where: dict[str, Any] = {"tenant_id": tenant_scope(principal)}
    if entity_type:
        where["type"] = entity_type
    return await services.repo(table).page(page, where)


async def customer_page(services: Services, principal: Principal, table: EntityTable, customer: str,
                        page: PageQuery, entity_type: str | None) -> dict[str, Any]:
    customer_id = parse_uuid(customer)
    await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, customer_id)
    where: dict[str, Any] = {"tenant_id": tenant_scope(principal), "customer_id": customer_id}
    if entity_type:
        where["type"] = entity_type
    return await services.repo(table).page(page, where)


async def with_customer_info(services: Services, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``customerTitle`` and ``customerIsPublic`` (ThingsBoard's ``...Info`` shapes)."""
    ids = {cid for e in entities if (cid := id_of(e.get("customerId"))) is not None}
    customers: dict[uuid.UUID, Any] = {}
    if ids:
        rows = await services.db.fetch("SELECT id, title, is_public FROM customer WHERE id = ANY($1)", list(ids))
        customers = {r["id"]: r for r in rows}
    out = []
    for entity in entities:
        customer = customers.get(id_of(entity.get("customerId")))  # type: ignore[arg-type]
        out.append({**entity, "customerTitle": customer["title"] if customer else None,
                    "customerIsPublic": bool(customer["is_public"]) if customer else False})
    return out


async def types(services: Services, principal: Principal, table: EntityTable, resource: Resource
                ) -> list[dict[str, Any]]:
    """The distinct ``type`` values of the tenant's entities, as ThingsBoard's EntitySubtype."""
    require(principal, resource, Operation.READ)
    tenant_id = tenant_scope(principal)
    rows = await services.db.fetch(
        f"SELECT DISTINCT type FROM {table.table} WHERE tenant_id = $1 AND type IS NOT NULL ORDER BY type",
        tenant_id)
    return [{"tenantId": {"entityType": "TENANT", "id": str(tenant_id)}, "entityType": table.entity_type,
             "type": r["type"]} for r in rows]


async def by_ids(services: Services, principal: Principal, table: EntityTable, resource: Resource,
                 raw_ids: str) -> list[dict[str, Any]]:
    """The listed entities the caller may read; others are left out, as ThingsBoard does."""
    require(principal, resource, Operation.READ)
    ids = [parse_uuid(part.strip()) for part in raw_ids.split(",") if part.strip()]
    if not ids:
        raise BadRequest("Required request parameter is empty: give at least one id")
    if len(ids) > 1000:
        raise BadRequest("At most 1000 ids may be asked for at once")
    repo = services.repo(table)
    rows = await services.db.fetch(
        f"SELECT id FROM {table.table} WHERE id = ANY($1) AND tenant_id = $2 ORDER BY created_time",
        ids, tenant_scope(principal))
    found = []
    for row in rows:
        entity = await repo.get(row["id"])
        if entity is None:
            continue
        try:
            check(principal, resource, Operation.READ, owner_of(entity))
        except PermissionDenied:
            continue
        found.append(entity)
    return found


async def assign(services: Services, principal: Principal, table: EntityTable, resource: Resource,
                 entity: str, customer: str) -> dict[str, Any]:
    entity_id, customer_id = parse_uuid(entity), parse_uuid(customer)
    current = await load(services, principal, table, resource, entity_id, Operation.ASSIGN_TO_CUSTOMER)
    target = await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, customer_id)
    saved = await services.repo(table).update(entity_id, {"customer_id": customer_id})
    if saved is None:
        raise NotFound(f"{table.entity_type} with id [{entity_id}] is not found")
    await services.audit.record(principal, ActionType.ASSIGNED_TO_CUSTOMER, entity_type=table.entity_type,
                                entity_id=entity_id, entity_name=display_name(current),
                                customer_id=customer_id,
                                data={"entityId": str(entity_id), "assignedCustomerId": str(customer_id),
                                      "assignedCustomerName": target["title"]})
    return saved


async def unassign(services: Services, principal: Principal, table: EntityTable, resource: Resource,
                   entity: str) -> dict[str, Any]:
    entity_id = parse_uuid(entity)
    current = await load(services, principal, table, resource, entity_id, Operation.UNASSIGN_FROM_CUSTOMER)
    customer_id = id_of(current.get("customerId"))
    if customer_id is None:
        label = table.entity_type.replace("_", " ").capitalize()
        raise BadRequest(f"{label} isn't assigned to any customer!")
    saved = await services.repo(table).update(entity_id, {"customer_id": None})
    if saved is None:
        raise NotFound(f"{table.entity_type} with id [{entity_id}] is not found")
    await services.audit.record(principal, ActionType.UNASSIGNED_FROM_CUSTOMER, entity_type=table.entity_type,
                                entity_id=entity_id, entity_name=display_name(current), customer_id=customer_id,
                                data={"entityId": str(entity_id), "unassignedCustomerId": str(customer_id)})
    return saved
