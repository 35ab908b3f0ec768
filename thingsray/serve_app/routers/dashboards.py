"""/api/dashboard, /api/tenant/dashboards, /api/customer/{id}/dashboards.

A dashboard belongs to its tenant and may be assigned to several customers
(``assignedCustomers``: ``{"customerId", "title", "public"}``); their users may read it.
Its ``configuration`` is stored as given.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from thingsray.serve_app import crud
from thingsray.serve_app.access import load
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest, NotFound
from thingsray.serve_app.models import LongText, Name, ShortText, Versioned
from thingsray.serve_app.permissions import Operation, Resource, require, tenant_scope
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.entities import PageQuery

router = APIRouter(tags=["dashboard"])
DashboardPage = Annotated[PageQuery, Depends(page_params(tables.DASHBOARD.sort_columns))]

MAX_CONFIGURATION_BYTES = 10 * 1024 * 1024
MAX_DATAPOINTS_LIMIT = 50_000


class DashboardIn(Versioned):
    title: Name
    image: LongText | None = None
    mobileHide: bool | None = None
    mobileOrder: int | None = None
    configuration: Any = None


def info(dashboard: dict[str, Any]) -> dict[str, Any]:
    """DashboardInfo: the dashboard without its configuration."""
    return {k: v for k, v in dashboard.items() if k != "configuration"}


@router.get("/api/dashboard/serverTime", summary="Server time in epoch milliseconds")
async def server_time() -> int:
    return int(time.time() * 1000)


@router.get("/api/dashboard/maxDatapointsLimit", summary="Most data points a widget may ask for")
async def max_datapoints_limit() -> int:
    return MAX_DATAPOINTS_LIMIT


@router.get("/api/dashboard/info/{dashboardId}", summary="A dashboard without its configuration")
async def get_dashboard_info(dashboardId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return info(await load(services, principal, tables.DASHBOARD, Resource.DASHBOARD, parse_uuid(dashboardId)))


@router.get("/api/dashboard/{dashboardId}", summary="A dashboard with its configuration")
async def get_dashboard(dashboardId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await load(services, principal, tables.DASHBOARD, Resource.DASHBOARD, parse_uuid(dashboardId))


@router.post("/api/dashboard", summary="Create or update a dashboard")
async def save_dashboard(body: DashboardIn, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    if body.configuration is not None and not isinstance(body.configuration, dict):
        raise BadRequest("Dashboard configuration must be a JSON object")
    size = len(json.dumps(body.configuration))
    if size > MAX_CONFIGURATION_BYTES:
        raise BadRequest(f"Dashboard configuration is {size} bytes; at most {MAX_CONFIGURATION_BYTES} are allowed")
    saved, _ = await crud.save(services, principal, tables.DASHBOARD, Resource.DASHBOARD,
                               body.model_dump(exclude_unset=True))
    return saved


@router.delete("/api/dashboard/{dashboardId}", summary="Delete a dashboard")
async def delete_dashboard(dashboardId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    await crud.delete(services, principal, tables.DASHBOARD, Resource.DASHBOARD, parse_uuid(dashboardId))


@router.get("/api/tenant/dashboards", summary="A page of the tenant's dashboards (DashboardInfo)")
async def get_tenant_dashboards(page: DashboardPage, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.DASHBOARD, Operation.CREATE)  # tenant administrators only
    result = await services.repo(tables.DASHBOARD).page(page, {"tenant_id": tenant_scope(principal)})
    return {**result, "data": [info(d) for d in result["data"]]}


@router.get("/api/customer/{customerId}/dashboards", summary="A page of the dashboards assigned to a customer")
async def get_customer_dashboards(customerId: str, page: DashboardPage, principal: PrincipalDep,
                                  services: ServicesDep) -> dict[str, Any]:
    customer_id = parse_uuid(customerId)
    await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, customer_id)
    require(principal, Resource.DASHBOARD, Operation.READ)
    assigned = [{"customerId": {"id": str(customer_id)}}]
    result = await services.repo(tables.DASHBOARD).page(
        page, {"tenant_id": tenant_scope(principal)}, extra=[("assigned_customers @> {}::jsonb", assigned)])
    return {**result, "data": [info(d) for d in result["data"]]}


async def _customer_entries(services: Services, principal: Principal, customer_ids: list[uuid.UUID]
                            ) -> list[dict[str, Any]]:
    entries = []
    for customer_id in dict.fromkeys(customer_ids):
        customer = await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, customer_id)
        public = await services.db.fetchval("SELECT is_public FROM customer WHERE id = $1", customer_id)
        entries.append({"customerId": customer["id"], "title": customer["title"], "public": bool(public)})
    return entries


async def _set_customers(services: Services, principal: Principal, dashboard_id: uuid.UUID,
                         change: str, customer_ids: list[uuid.UUID]) -> dict[str, Any]:
    """Assign (``add``), unassign (``remove``) or replace (``set``) the dashboard's customers."""
    operation = Operation.UNASSIGN_FROM_CUSTOMER if change == "remove" else Operation.ASSIGN_TO_CUSTOMER
    dashboard = await load(services, principal, tables.DASHBOARD, Resource.DASHBOARD, dashboard_id, operation)
    current = list(dashboard.get("assignedCustomers") or [])
    current_ids = [uuid.UUID(c["customerId"]["id"]) for c in current]
    if change == "remove":
        updated = [c for c, cid in zip(current, current_ids, strict=True) if cid not in customer_ids]
        added: list[uuid.UUID] = []
        removed = [cid for cid in current_ids if cid in customer_ids]
    else:
        wanted = customer_ids if change == "set" else [*current_ids, *customer_ids]
        entries = await _customer_entries(services, principal, wanted)
        updated = entries
        added = [cid for cid in dict.fromkeys(wanted) if cid not in current_ids]
        removed = [cid for cid in current_ids if cid not in wanted] if change == "set" else []
    saved = await services.repo(tables.DASHBOARD).update(dashboard_id, {"assigned_customers": updated})
    if saved is None:
        raise NotFound(f"Dashboard with id [{dashboard_id}] is not found")
    for action, ids in ((ActionType.ASSIGNED_TO_CUSTOMER, added), (ActionType.UNASSIGNED_FROM_CUSTOMER, removed)):
        for customer_id in ids:
            await services.audit.record(principal, action, entity_type="DASHBOARD", entity_id=dashboard_id,
                                        entity_name=dashboard["title"], customer_id=customer_id,
                                        data={"entityId": str(dashboard_id), "customerId": str(customer_id)})
    return saved


@router.post("/api/customer/{customerId}/dashboard/{dashboardId}", summary="Assign a dashboard to a customer")
async def assign_dashboard(customerId: str, dashboardId: str, principal: PrincipalDep,
                           services: ServicesDep) -> dict[str, Any]:
    return await _set_customers(services, principal, parse_uuid(dashboardId), "add", [parse_uuid(customerId)])


@router.delete("/api/customer/{customerId}/dashboard/{dashboardId}", summary="Unassign a dashboard from a customer")
async def unassign_dashboard(customerId: str, dashboardId: str, principal: PrincipalDep,
                             services: ServicesDep) -> dict[str, Any]:
    customer_id, dashboard_id = parse_uuid(customerId), parse_uuid(dashboardId)
    await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, customer_id)
    dashboard = await load(services, principal, tables.DASHBOARD, Resource.DASHBOARD, dashboard_id)
    if all(c["customerId"]["id"] != str(customer_id) for c in dashboard.get("assignedCustomers") or []):
        raise BadRequest(f"Dashboard isn't assigned to customer [{customer_id}]")
    return await _set_customers(services, principal, dashboard_id, "remove", [customer_id])


CustomerIds = Annotated[list[ShortText] | None, Body(max_length=10_000, description="Customer ids")]


def _ids(values: list[str] | None) -> list[uuid.UUID]:
    return [parse_uuid(v) for v in values or []]


@router.post("/api/dashboard/{dashboardId}/customers", summary="Set the customers a dashboard is assigned to")
async def update_dashboard_customers(dashboardId: str, principal: PrincipalDep, services: ServicesDep,
                                     customerIds: CustomerIds = None) -> dict[str, Any]:
    return await _set_customers(services, principal, parse_uuid(dashboardId), "set", _ids(customerIds))


@router.post("/api/dashboard/{dashboardId}/customers/add", summary="Assign a dashboard to more customers")
async def add_dashboard_customers(dashboardId: str, principal: PrincipalDep, services: ServicesDep,
                                  customerIds: CustomerIds = None) -> dict[str, Any]:
    return await _set_customers(services, principal, parse_uuid(dashboardId), "add", _ids(customerIds))


@router.post("/api/dashboard/{dashboardId}/customers/remove", summary="Unassign a dashboard from customers")
async def remove_dashboard_customers(dashboardId: str, principal: PrincipalDep, services: ServicesDep,
                                     customerIds: CustomerIds = None) -> dict[str, Any]:
    return await _set_customers(services, principal, parse_uuid(dashboardId), "remove", _ids(customerIds))
