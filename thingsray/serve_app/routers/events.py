"""/api/events: an entity's events page by page (ThingsBoard's EventController).

thingsray records the rule engine's debug events (DEBUG_RULE_NODE for rule nodes,
DEBUG_RULE_CHAIN for rule chains); the other event types ThingsBoard knows (ERROR, LC_EVENT,
STATS, DEBUG_CALCULATED_FIELD) are accepted and come back empty. Whoever may read the entity may
read its events; clearing them needs the right to change it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from thingsray.serve_app.access import load
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, parse_uuid
from thingsray.serve_app.errors import BadRequest, NotFound
from thingsray.serve_app.permissions import Operation, Resource, tenant_scope
from thingsray.serve_app.routers.relations import ENDS
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.events import EventQuery, EventStore, event_info, page_of
from thingsray.storage.rule_chains import RuleChainStore

router = APIRouter(tags=["event"])

EVENT_TYPES = ("ERROR", "LC_EVENT", "STATS", "DEBUG_RULE_NODE", "DEBUG_RULE_CHAIN", "DEBUG_CALCULATED_FIELD")
SORT_PROPERTIES = {"ts": False, "createdTime": False, "id": True}

TenantIdParam = Annotated[str, Query(max_length=64, description="The tenant whose events to read")]
PageSize = Annotated[int, Query(ge=1, le=100_000)]
Page = Annotated[int, Query(ge=0, le=10_000_000)]
Text = Annotated[str | None, Query(max_length=255)]
Time = Annotated[int | None, Query(ge=0, le=2**62)]
Filter = Annotated[dict[str, Any], Body(description="An event filter: eventType and the fields of its kind")]


def resolve_event_type(value: str) -> str:
    if value.upper() not in EVENT_TYPES:
        raise BadRequest(f"Event type: '{value}' is not supported!")
    return value.upper()


async def _entity(services: Services, principal: Principal, entity_type: str, entity_id: str,
                  operation: Operation) -> tuple[str, uuid.UUID]:
    """The entity, once the caller may perform ``operation`` on it (rule nodes: on their chain)."""
    value = parse_uuid(entity_id)
    if entity_type == "RULE_NODE":
        found = await RuleChainStore(services.db).node_chain(value)
        if found is None or (principal.tenant_id is not None and found[1] != principal.tenant_id):
            raise NotFound(f"Rule node with id [{value}] is not found")
        await load(services, principal, tables.RULE_CHAIN, Resource.RULE_CHAIN, found[0], operation)
    elif entity_type in ENDS:
        table, resource = ENDS[entity_type]
        await load(services, principal, table, resource, value, operation)
    else:
        raise BadRequest(f"Events of entity type '{entity_type}' are not supported")
    return entity_type, value


def _query(pageSize: int, page: int, services: Services, textSearch: str | None, sortProperty: str | None,
           sortOrder: str | None, startTime: int | None, endTime: int | None,
           event_filter: dict[str, Any] | None = None) -> EventQuery:
    if pageSize > services.settings.max_page_size:
        raise BadRequest(f"pageSize must not exceed {services.settings.max_page_size}")
    if sortProperty and sortProperty not in SORT_PROPERTIES:
        raise BadRequest(f"Unsupported sort property '{sortProperty}'; use one of {', '.join(SORT_PROPERTIES)}")
    order = (sortOrder or "DESC").upper()
    if order not in ("ASC", "DESC"):
        raise BadRequest(f"Invalid sortOrder '{sortOrder}': use ASC or DESC")
    if startTime is not None and endTime is not None and startTime > endTime:
        raise BadRequest("startTime must not be after endTime")
    return EventQuery(page=page, page_size=pageSize, start_time=startTime, end_time=endTime,
                      ascending=order == "ASC", sort_by_id=SORT_PROPERTIES.get(sortProperty or "ts", False),
                      text_search=textSearch, filter=event_filter or {})


def _filter_type(event_filter: dict[str, Any]) -> str:
    kind = event_filter.get("eventType")
    if not isinstance(kind, str):
        raise BadRequest("The event filter must say its eventType (DEBUG_RULE_NODE, DEBUG_RULE_CHAIN, ERROR, "
                         "LC_EVENT or STATS)")
    if "isError" in event_filter and not isinstance(event_filter["isError"], bool):
        raise BadRequest("The event filter's isError must be true or false")
    return resolve_event_type(kind)


async def _page(services: Services, principal: Principal, tenant_id: str, entity: tuple[str, uuid.UUID],
                event_type: str, query: EventQuery) -> dict[str, Any]:
    asked = parse_uuid(tenant_id)
    if asked != tenant_scope(principal):  # another tenant's events of this entity: there are none
        return page_of([], 0, query.page, query.page_size)
    rows, total = await EventStore(services.db).query(asked, entity[1], event_type, query)
    return page_of([event_info(r, asked, entity[0], entity[1], event_type) for r in rows], total, query.page,
                   query.page_size)


@router.get("/api/events/{entityType}/{entityId}/{eventType}", summary="A page of an entity's events of one type")
async def get_events_by_type(entityType: str, entityId: str, eventType: str, principal: PrincipalDep,
                             services: ServicesDep, tenantId: TenantIdParam, pageSize: PageSize, page: Page,
                             textSearch: Text = None, sortProperty: Text = None, sortOrder: Text = None,
                             startTime: Time = None, endTime: Time = None) -> dict[str, Any]:
    event_type = resolve_event_type(eventType)
    query = _query(pageSize, page, services, textSearch, sortProperty, sortOrder, startTime, endTime)
    entity = await _entity(services, principal, entityType, entityId, Operation.READ)
    return await _page(services, principal, tenantId, entity, event_type, query)


@router.get("/api/events/{entityType}/{entityId}", summary="A page of an entity's lifecycle events (deprecated)")
async def get_events(entityType: str, entityId: str, principal: PrincipalDep, services: ServicesDep,
                     tenantId: TenantIdParam, pageSize: PageSize, page: Page, textSearch: Text = None,
                     sortProperty: Text = None, sortOrder: Text = None, startTime: Time = None,
                     endTime: Time = None) -> dict[str, Any]:
    query = _query(pageSize, page, services, textSearch, sortProperty, sortOrder, startTime, endTime)
    entity = await _entity(services, principal, entityType, entityId, Operation.READ)
    return await _page(services, principal, tenantId, entity, "LC_EVENT", query)


@router.post("/api/events/{entityType}/{entityId}", summary="A page of an entity's events matching a filter")
async def get_events_by_filter(entityType: str, entityId: str, principal: PrincipalDep, services: ServicesDep,
                               tenantId: TenantIdParam, pageSize: PageSize, page: Page, eventFilter: Filter,
                               textSearch: Text = None, sortProperty: Text = None, sortOrder: Text = None,
                               startTime: Time = None, endTime: Time = None) -> dict[str, Any]:
    event_type = _filter_type(eventFilter)
    query = _query(pageSize, page, services, textSearch, sortProperty, sortOrder, startTime, endTime, eventFilter)
    entity = await _entity(services, principal, entityType, entityId, Operation.READ)
    return await _page(services, principal, tenantId, entity, event_type, query)


@router.post("/api/events/{entityType}/{entityId}/clear", summary="Delete an entity's events matching a filter")
async def clear_events(entityType: str, entityId: str, principal: PrincipalDep, services: ServicesDep,
                       eventFilter: Filter, startTime: Time = None, endTime: Time = None) -> None:
    event_type = _filter_type(eventFilter)
    entity = await _entity(services, principal, entityType, entityId, Operation.WRITE)
    await EventStore(services.db).clear(tenant_scope(principal), entity[1], event_type, start_time=startTime,
                                        end_time=endTime, filter=eventFilter)
