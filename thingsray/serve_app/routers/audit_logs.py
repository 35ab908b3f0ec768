"""/api/audit/logs: a tenant's audit log, whole or by entity, user or customer.

As in ThingsBoard, only tenant administrators read audit logs, and only their tenant's; a
system administrator has no tenant and is refused (403).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest
from thingsray.serve_app.permissions import Operation, Resource, require, tenant_scope
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage.entities import NULL_UUID, PageQuery, entity_id, like_pattern, page_data

router = APIRouter(tags=["audit-log"])

SORT_COLUMNS = {"createdTime": "created_time", "entityType": "entity_type", "entityName": "entity_name",
                "userName": "user_name", "actionType": "action_type", "actionStatus": "action_status"}
AuditPage = Annotated[PageQuery, Depends(page_params(SORT_COLUMNS))]
Time = Annotated[int | None, Query(ge=0, le=10**15, description="Epoch milliseconds")]
ActionTypes = Annotated[str | None, Query(max_length=4096, description="Comma-separated action types")]
ENTITY_TYPES = {"TENANT", "CUSTOMER", "USER", "DEVICE", "ASSET", "DASHBOARD", "ENTITY_VIEW", "DEVICE_PROFILE",
                "ASSET_PROFILE", "RULE_CHAIN", "ALARM", "TENANT_PROFILE", "OTA_PACKAGE", "EDGE", "WIDGETS_BUNDLE",
                "WIDGET_TYPE", "TB_RESOURCE", "RULE_NODE"}
_COLUMNS = ("id, created_time, tenant_id, customer_id, entity_id, entity_type, entity_name, user_id, user_name,"
            " action_type, action_data, action_status, action_failure_details")


def to_json(row: Any) -> dict[str, Any]:
    return {
        "id": entity_id("AUDIT_LOG", row["id"]),
        "createdTime": row["created_time"],
        "tenantId": entity_id("TENANT", row["tenant_id"] or NULL_UUID),
        "customerId": entity_id("CUSTOMER", row["customer_id"] or NULL_UUID),
        "entityId": entity_id(row["entity_type"], row["entity_id"]) if row["entity_type"] else None,
        "entityName": row["entity_name"],
        "userId": entity_id("USER", row["user_id"] or NULL_UUID),
        "userName": row["user_name"],
        "actionType": row["action_type"],
        "actionData": row["action_data"],
        "actionStatus": row["action_status"],
        "actionFailureDetails": row["action_failure_details"],
    }


def _action_types(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    wanted = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [w for w in wanted if w not in ActionType.__members__]
    if unknown:
        raise BadRequest(f"Unknown action type(s): {', '.join(unknown[:5])}")
    return wanted


async def _page(services: Services, principal: Principal, page: PageQuery, start: int | None, end: int | None,
                action_types: str | None, **where: uuid.UUID | str) -> dict[str, Any]:
    require(principal, Resource.AUDIT_LOG, Operation.READ)
    args: list[Any] = [tenant_scope(principal)]  # a system administrator has none: 403
    clauses = ["tenant_id = $1"]
    for column, value in where.items():
        args.append(value)
        clauses.append(f"{column} = ${len(args)}")
    if start is not None:
        args.append(start)
        clauses.append(f"created_time >= ${len(args)}")
    if end is not None:
        args.append(end)
        clauses.append(f"created_time <= ${len(args)}")
    if (types := _action_types(action_types)) is not None:
        args.append(types)
        clauses.append(f"action_type = ANY(${len(args)})")
    if page.text_search:
        args.append(like_pattern(page.text_search))
        n = len(args)
        clauses.append(f"(entity_name ILIKE ${n} OR user_name ILIKE ${n} OR action_type ILIKE ${n}"
                       f" OR entity_type ILIKE ${n})")
    where_sql = " AND ".join(clauses)
    total = await services.db.fetchval(f"SELECT count(*) FROM audit_log WHERE {where_sql}", *args)
    order = page.sort_column or "created_time"
    direction = "DESC" if (page.sort_desc or page.sort_column is None) else "ASC"
    args.extend([page.page_size, page.page * page.page_size])
    rows = await services.db.fetch(
        f"SELECT {_COLUMNS} FROM audit_log WHERE {where_sql} ORDER BY {order} {direction}, id"
        f" LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    return page_data([to_json(r) for r in rows], total, page)


@router.get("/api/audit/logs", summary="A page of the tenant's audit log")
async def get_audit_logs(page: AuditPage, principal: PrincipalDep, services: ServicesDep,
                         startTime: Time = None, endTime: Time = None,
                         actionTypes: ActionTypes = None) -> dict[str, Any]:
    return await _page(services, principal, page, startTime, endTime, actionTypes)


@router.get("/api/audit/logs/entity/{entityType}/{entityId}", summary="A page of an entity's audit log")
async def get_audit_logs_by_entity(entityType: str, entityId: str, page: AuditPage, principal: PrincipalDep,
                                   services: ServicesDep, startTime: Time = None, endTime: Time = None,
                                   actionTypes: ActionTypes = None) -> dict[str, Any]:
    if entityType not in ENTITY_TYPES:
        raise BadRequest(f"Unsupported entity type '{entityType[:64]}'")
    return await _page(services, principal, page, startTime, endTime, actionTypes,
                       entity_type=entityType, entity_id=parse_uuid(entityId))


@router.get("/api/audit/logs/user/{userId}", summary="A page of what a user did")
async def get_audit_logs_by_user(userId: str, page: AuditPage, principal: PrincipalDep, services: ServicesDep,
                                 startTime: Time = None, endTime: Time = None,
                                 actionTypes: ActionTypes = None) -> dict[str, Any]:
    return await _page(services, principal, page, startTime, endTime, actionTypes, user_id=parse_uuid(userId))


@router.get("/api/audit/logs/customer/{customerId}", summary="A page of the audit log of a customer's users")
async def get_audit_logs_by_customer(customerId: str, page: AuditPage, principal: PrincipalDep,
                                     services: ServicesDep, startTime: Time = None, endTime: Time = None,
                                     actionTypes: ActionTypes = None) -> dict[str, Any]:
    return await _page(services, principal, page, startTime, endTime, actionTypes,
                       customer_id=parse_uuid(customerId))
