"""/api/entitiesQuery/find and /count: ThingsBoard's EntityQueryController over the entity query
engine (``storage.entity_query``). Tenant administrators query their tenant's entities, customer
users their customer's; a system administrator has no tenant entities to query (403)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from thingsray.serve_app.deps import PrincipalDep, ServicesDep
from thingsray.serve_app.errors import BadRequest, PermissionDenied
from thingsray.serve_app.security import Principal
from thingsray.storage.entity_query import (
    EntityQueryEngine,
    QueryError,
    QueryScope,
    parse_count_query,
    parse_data_query,
)

router = APIRouter(prefix="/api/entitiesQuery", tags=["entity-query"])

QueryBody = Annotated[dict[str, Any], Body(description="ThingsBoard's EntityDataQuery / EntityCountQuery JSON")]


def query_scope(principal: Principal) -> QueryScope:
    """Whose entities the caller may query; only tenant administrators and customer users may."""
    if principal.tenant_id is None or not (principal.is_tenant_admin or principal.is_customer_user):
        raise PermissionDenied()
    if principal.is_customer_user:
        if principal.customer_id is None:
            raise PermissionDenied()
        return QueryScope(principal.tenant_id, principal.customer_id, principal.user_id)
    return QueryScope(principal.tenant_id)


@router.post("/find", summary="Find entity data by query (EntityDataQuery -> PageData<EntityData>)")
async def find_entity_data_by_query(query: QueryBody, principal: PrincipalDep,
                                    services: ServicesDep) -> dict[str, Any]:
    scope = query_scope(principal)
    try:
        parsed = parse_data_query(query, services.settings.max_page_size)
    except QueryError as exc:
        raise BadRequest(str(exc)) from None
    return await EntityQueryEngine(services.db).find(parsed, scope)


@router.post("/count", summary="Count entities by query (EntityCountQuery -> number)")
async def count_entities_by_query(query: QueryBody, principal: PrincipalDep, services: ServicesDep) -> int:
    scope = query_scope(principal)
    try:
        parsed = parse_count_query(query)
    except QueryError as exc:
        raise BadRequest(str(exc)) from None
    return await EntityQueryEngine(services.db).count(parsed, scope)
