"""/api/alarm, /api/alarms, /api/v2/alarm(s): raise, read, acknowledge, clear, assign, delete
and query alarms, as ThingsBoard's AlarmController does.

Who may touch an alarm is decided on the alarm itself: a tenant administrator its tenant's, a
customer user those that belong to its customer (the alarm's ``customerId``, the originator's
customer when the alarm was raised). Lists by entity need the entity to be readable; a customer
user's lists hold only its customer's alarms. Every change is written to the audit log and handed
to the rule engine (``Services.alarm_changed``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from thingsray.rules.msg import EntityId
from thingsray.serve_app.access import load
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest, NotFound, PermissionDenied
from thingsray.serve_app.models import EntityIdIn, ShortText, TbModel
from thingsray.serve_app.permissions import Operation, Owner, Resource, check, require, tenant_scope
from thingsray.serve_app.routers.relations import authorize
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.alarms import (
    SEARCH_STATUSES,
    SEVERITIES,
    SORT_COLUMNS,
    STATUSES,
    AlarmChange,
    AlarmNotFound,
    AlarmQuery,
    AlarmService,
    StatusFilter,
    alarm_json,
)
from thingsray.storage.entities import NULL_UUID, PageQuery, now_ms

router = APIRouter(tags=["alarm"])
AlarmPage = Annotated[PageQuery, Depends(page_params(SORT_COLUMNS))]
TypePage = Annotated[PageQuery, Depends(page_params({"type": "type"}))]

Timestamp = Annotated[int, Field(ge=0, le=2**62)]
OptText = Annotated[str | None, Query(max_length=64)]
OptTime = Annotated[int | None, Query(ge=0, le=2**62)]
ListParam = Annotated[list[str] | None, Query(max_length=100)]

BOTH_STATUSES = ("Invalid alarms search query: Both parameters 'searchStatus' and 'status' "
                 "can't be specified at the same time!")


class AlarmIn(TbModel):
    """ThingsBoard's Alarm as a client sends it; ``status``, ``name`` and the like are ignored."""

    id: EntityIdIn | None = None
    type: Annotated[str, Field(max_length=255)] | None = None
    originator: EntityIdIn | None = None
    customerId: EntityIdIn | None = None
    severity: ShortText | None = None
    acknowledged: bool = False
    cleared: bool = False
    assigneeId: EntityIdIn | None = None
    startTs: Timestamp = 0
    endTs: Timestamp = 0
    ackTs: Timestamp = 0
    clearTs: Timestamp = 0
    assignTs: Timestamp = 0
    details: Any = None
    propagate: bool = False
    propagateToOwner: bool = False
    propagateToTenant: bool = False
    propagateRelationTypes: Annotated[list[ShortText], Field(max_length=100)] | None = None


def alarm_owner(alarm: dict[str, Any]) -> Owner:
    customer = alarm.get("customerId")
    customers = (uuid.UUID(customer["id"]),) if customer else ()
    return Owner(tenant_id=uuid.UUID(alarm["tenantId"]["id"]), customer_ids=customers)


async def load_alarm(services: Services, principal: Principal, raw_id: str, operation: Operation) -> dict[str, Any]:
    """The alarm as AlarmInfo, if it exists and the caller may perform ``operation`` on it; another
    tenant's alarm is "not found", as ThingsBoard answers."""
    alarm_id = parse_uuid(raw_id)
    alarm = await AlarmService(services.db).get(alarm_id)
    if alarm is None:
        raise NotFound(f"Alarm with id [{alarm_id}] is not found")
    owner = alarm_owner(alarm)
    try:
        check(principal, Resource.ALARM, operation, owner)
    except PermissionDenied:
        if not principal.is_sys_admin and owner.tenant_id != principal.tenant_id:
            raise NotFound(f"Alarm with id [{alarm_id}] is not found") from None
        raise
    return alarm


async def _record(services: Services, principal: Principal, action: ActionType, alarm: dict[str, Any]) -> None:
    await services.audit.record(principal, action, entity_type="ALARM", entity_id=alarm["id"]["id"],
                                entity_name=alarm["type"], data={"entity": alarm_json(alarm)})


async def _publish(services: Services, changes: list[AlarmChange | None]) -> None:
    for change in changes:
        if change is not None and change.msg_type is not None:
            await services.alarm_changed(change)


def _severity(value: str | None) -> str:
    if not value:
        raise BadRequest("Alarm severity should be specified!")
    if value not in SEVERITIES:
        raise BadRequest(f"Invalid alarm severity '{value}': use one of {', '.join(SEVERITIES)}")
    return value


def _ts(value: int) -> int:
    return value if value > 0 else now_ms()


def _not_found(exc: AlarmNotFound) -> NotFound:
    return NotFound(str(exc))


# --- one alarm --------------------------------------------------------------------------------------

@router.get("/api/alarm/info/{alarmId}", summary="An alarm with its originator's name and its assignee (AlarmInfo)")
async def get_alarm_info(alarmId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await load_alarm(services, principal, alarmId, Operation.READ)


@router.get("/api/alarm/types", summary="A page of the alarm types of the caller's tenant (EntitySubtype)")
async def get_alarm_types(page: TypePage, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.ALARM, Operation.READ)
    return await AlarmService(services.db).types(tenant_scope(principal), page)


@router.get("/api/alarm/{alarmId}", summary="Get an alarm")
async def get_alarm(alarmId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return alarm_json(await load_alarm(services, principal, alarmId, Operation.READ))


@router.post("/api/alarm", summary="Create or update an alarm; a new alarm of a type already active on its "
             "originator updates that one")
async def save_alarm(body: AlarmIn, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.ALARM, Operation.WRITE if body.id else Operation.CREATE)
    tenant_id = tenant_scope(principal)
    if not body.type:
        raise BadRequest("Alarm type should be specified!")
    if body.originator is None:
        raise BadRequest("Alarm originator should be specified!")
    if not body.originator.entityType:
        raise BadRequest("Alarm originator should be specified with its entityType!")
    severity = _severity(body.severity)
    if body.endTs > 0 and body.startTs > body.endTs:
        raise BadRequest("Alarm start ts can't be greater then alarm end ts!")
    originator = EntityId(body.originator.entityType, body.originator.id)
    await authorize(services, principal, originator.entity_type, originator.id, Operation.READ)
    if body.assigneeId is not None:
        await load(services, principal, tables.USER, Resource.USER, body.assigneeId.id)
    alarms = AlarmService(services.db)
    changes: list[AlarmChange | None] = []
    try:
        if body.id is None:
            customer_id = await alarms.owner_customer(originator)
            asked = body.customerId.id if body.customerId and body.customerId.id != NULL_UUID else None
            if asked is not None and customer_id is None:
                raise BadRequest("Can't assign alarm to customer. Originator is not assigned to customer!")
            if asked is not None and asked != customer_id:
                raise BadRequest("Can't assign alarm to customer. Originator belongs to different customer!")
            start = _ts(body.startTs)
            change = await alarms.create_or_update(
                tenant_id, customer_id, originator, body.type, severity, body.details, propagate=body.propagate,
                propagate_to_owner=body.propagateToOwner, propagate_to_tenant=body.propagateToTenant,
                propagate_relation_types=body.propagateRelationTypes, ts=body.endTs or start, start_ts=start)
            action = ActionType.ADDED if change.created else ActionType.UPDATED
            changes.append(change)
            current = change.alarm
        else:
            existing = await load_alarm(services, principal, str(body.id.id), Operation.WRITE)
            start = body.startTs or existing["startTs"]
            updated = await alarms.update(
                body.id.id, severity=severity, details=body.details, start_ts=start,
                end_ts=max(body.endTs, start) if body.endTs else max(existing["endTs"], start),
                propagate=body.propagate, propagate_to_owner=body.propagateToOwner,
                propagate_to_tenant=body.propagateToTenant, propagate_relation_types=body.propagateRelationTypes)
            action = ActionType.UPDATED
            changes.append(updated)
            current = updated.alarm if updated else existing
        alarm_id = uuid.UUID(current["id"]["id"])
        # the state the body asks for, as ThingsBoard's save does it: ack, clear, (un)assign
        if body.acknowledged and not current["acknowledged"]:
            changes.append(await alarms.ack(alarm_id, _ts(body.ackTs)))
        if body.cleared and not current["cleared"]:
            changes.append(await alarms.clear_by_id(alarm_id, _ts(body.clearTs)))
        assignee = body.assigneeId.id if body.assigneeId else None
        current_assignee = current["assigneeId"]["id"] if current["assigneeId"] else None
        if assignee is not None and str(assignee) != current_assignee:
            changes.append(await alarms.assign(alarm_id, assignee, _ts(body.assignTs)))
        elif assignee is None and current_assignee is not None:
            changes.append(await alarms.unassign(alarm_id, _ts(body.assignTs)))
    except AlarmNotFound as exc:
        raise _not_found(exc) from None
    final = next((c.alarm for c in reversed(changes) if c is not None), current)
    await _record(services, principal, action, final)
    await _publish(services, changes)
    return alarm_json(final)


@router.delete("/api/alarm/{alarmId}", summary="Delete an alarm")
async def delete_alarm(alarmId: str, principal: PrincipalDep, services: ServicesDep) -> bool:
    alarm = await load_alarm(services, principal, alarmId, Operation.DELETE)
    change = await AlarmService(services.db).delete(uuid.UUID(alarm["id"]["id"]))
    if change is None:
        raise NotFound(f"Alarm with id [{alarm['id']['id']}] is not found")
    await _record(services, principal, ActionType.ALARM_DELETE, change.alarm)
    await _publish(services, [change])
    return True


async def _state_change(services: Services, principal: Principal, alarm_id: str, action: ActionType,
                        already: str, apply: Any) -> dict[str, Any]:
    alarm = await load_alarm(services, principal, alarm_id, Operation.WRITE)
    try:
        change = await apply(AlarmService(services.db), uuid.UUID(alarm["id"]["id"]))
    except AlarmNotFound as exc:
        raise _not_found(exc) from None
    if change is None:
        raise BadRequest(already)
    await _record(services, principal, action, change.alarm)
    await _publish(services, [change])
    return change.alarm


@router.post("/api/alarm/{alarmId}/ack", summary="Acknowledge an alarm")
async def ack_alarm(alarmId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await _state_change(services, principal, alarmId, ActionType.ALARM_ACK, "Alarm was already acknowledged!",
                               lambda alarms, alarm_id: alarms.ack(alarm_id, now_ms()))


@router.post("/api/alarm/{alarmId}/clear", summary="Clear an alarm")
async def clear_alarm(alarmId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await _state_change(services, principal, alarmId, ActionType.ALARM_CLEAR, "Alarm was already cleared!",
                               lambda alarms, alarm_id: alarms.clear_by_id(alarm_id, now_ms()))


@router.post("/api/alarm/{alarmId}/assign/{assigneeId}", summary="Assign (or reassign) an alarm to a user")
async def assign_alarm(alarmId: str, assigneeId: str, principal: PrincipalDep,
                       services: ServicesDep) -> dict[str, Any]:
    await load_alarm(services, principal, alarmId, Operation.WRITE)
    user_id = parse_uuid(assigneeId)
    await load(services, principal, tables.USER, Resource.USER, user_id)
    return await _state_change(services, principal, alarmId, ActionType.ALARM_ASSIGNED,
                               "Alarm was already assigned to this user!",
                               lambda alarms, alarm_id: alarms.assign(alarm_id, user_id, now_ms()))


@router.delete("/api/alarm/{alarmId}/assign", summary="Unassign an alarm")
async def unassign_alarm(alarmId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await _state_change(services, principal, alarmId, ActionType.ALARM_UNASSIGNED,
                               "Alarm was already unassigned!",
                               lambda alarms, alarm_id: alarms.unassign(alarm_id, now_ms()))


# --- queries ---------------------------------------------------------------------------------------

def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise BadRequest(f"Invalid {what} '{value}': use one of {', '.join(allowed)}")
    return value


def _status_filter(searchStatus: str | None, status: str | None) -> StatusFilter:
    if searchStatus and status:
        raise BadRequest(BOTH_STATUSES)
    if searchStatus:
        return StatusFilter.of_search([_choice(searchStatus, SEARCH_STATUSES, "alarm search status")])
    if status:
        return StatusFilter.of_status(_choice(status, STATUSES, "alarm status"))
    return StatusFilter()


def _listed(values: list[str] | None) -> list[str]:
    """Values of a list parameter given as ``a,b`` or repeated, as Spring reads a String[]."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def _query(status: StatusFilter, assigneeId: str | None, startTime: int | None, endTime: int | None,
           severities: Sequence[str] = (), types: Sequence[str] = ()) -> AlarmQuery:
    assignee = parse_uuid(assigneeId) if assigneeId else None
    return AlarmQuery(status=status, severities=tuple(severities), types=tuple(types), assignee_id=assignee,
                      start_time=startTime, end_time=endTime)


def _v2_query(statusList: list[str] | None, severityList: list[str] | None, typeList: list[str] | None,
              assigneeId: str | None, startTime: int | None, endTime: int | None) -> AlarmQuery:
    statuses = [_choice(s, SEARCH_STATUSES, "alarm search status") for s in _listed(statusList)]
    severities = [_choice(s, SEVERITIES, "alarm severity") for s in _listed(severityList)]
    return _query(StatusFilter.of_search(statuses), assigneeId, startTime, endTime, severities, _listed(typeList))


async def _entity(services: Services, principal: Principal, entityType: str, entityId: str) -> EntityId:
    """The entity an alarm list is about, if the caller may read it."""
    entity = EntityId(entityType, parse_uuid(entityId))
    await authorize(services, principal, entity.entity_type, entity.id, Operation.READ)
    return entity


def _customer_filter(principal: Principal) -> uuid.UUID | None:
    return principal.customer_id if principal.is_customer_user else None


@router.get("/api/alarm/highestSeverity/{entityType}/{entityId}",
            summary="The highest severity of the alarms shown on an entity (empty when it has none)")
async def get_highest_alarm_severity(entityType: str, entityId: str, principal: PrincipalDep, services: ServicesDep,
                                     searchStatus: OptText = None, status: OptText = None,
                                     assigneeId: OptText = None) -> Response:
    require(principal, Resource.ALARM, Operation.READ)
    query = _query(_status_filter(searchStatus, status), assigneeId, None, None)
    entity = await _entity(services, principal, entityType, entityId)
    severity = await AlarmService(services.db).highest_severity(tenant_scope(principal), entity, query,
                                                                _customer_filter(principal))
    return Response(status_code=200) if severity is None else JSONResponse(severity)


@router.get("/api/alarm/{entityType}/{entityId}", summary="A page of the alarms shown on an entity (AlarmInfo)")
async def get_alarms(entityType: str, entityId: str, page: AlarmPage, principal: PrincipalDep,
                     services: ServicesDep, searchStatus: OptText = None, status: OptText = None,
                     assigneeId: OptText = None, startTime: OptTime = None, endTime: OptTime = None,
                     fetchOriginator: bool | None = None) -> dict[str, Any]:
    require(principal, Resource.ALARM, Operation.READ)
    query = _query(_status_filter(searchStatus, status), assigneeId, startTime, endTime)
    entity = await _entity(services, principal, entityType, entityId)
    return await AlarmService(services.db).find(tenant_scope(principal), page, query, entity=entity,
                                                 customer_id=_customer_filter(principal))


@router.get("/api/alarms", summary="A page of the alarms of the caller's tenant, or of its customer")
async def get_all_alarms(page: AlarmPage, principal: PrincipalDep, services: ServicesDep,
                         searchStatus: OptText = None, status: OptText = None, assigneeId: OptText = None,
                         startTime: OptTime = None, endTime: OptTime = None,
                         fetchOriginator: bool | None = None) -> dict[str, Any]:
    require(principal, Resource.ALARM, Operation.READ)
    query = _query(_status_filter(searchStatus, status), assigneeId, startTime, endTime)
    return await AlarmService(services.db).find(tenant_scope(principal), page, query,
                                                 customer_id=_customer_filter(principal))


@router.get("/api/v2/alarm/{entityType}/{entityId}", summary="A page of the alarms shown on an entity, "
            "filtered by lists of statuses, severities and types")
async def get_alarms_v2(entityType: str, entityId: str, page: AlarmPage, principal: PrincipalDep,
                        services: ServicesDep, statusList: ListParam = None, severityList: ListParam = None,
                        typeList: ListParam = None, assigneeId: OptText = None, startTime: OptTime = None,
                        endTime: OptTime = None) -> dict[str, Any]:
    require(principal, Resource.ALARM, Operation.READ)
    query = _v2_query(statusList, severityList, typeList, assigneeId, startTime, endTime)
    entity = await _entity(services, principal, entityType, entityId)
    return await AlarmService(services.db).find(tenant_scope(principal), page, query, entity=entity,
                                                 customer_id=_customer_filter(principal))


@router.get("/api/v2/alarms", summary="A page of the alarms of the caller's tenant, or of its customer, "
            "filtered by lists of statuses, severities and types")
async def get_all_alarms_v2(page: AlarmPage, principal: PrincipalDep, services: ServicesDep,
                            statusList: ListParam = None, severityList: ListParam = None, typeList: ListParam = None,
                            assigneeId: OptText = None, startTime: OptTime = None,
                            endTime: OptTime = None) -> dict[str, Any]:
    require(principal, Resource.ALARM, Operation.READ)
    query = _v2_query(statusList, severityList, typeList, assigneeId, startTime, endTime)
    return await AlarmService(services.db).find(tenant_scope(principal), page, query,
                                                 customer_id=_customer_filter(principal))
