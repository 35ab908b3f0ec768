"""/api/usage: what a tenant has and what its devices sent (ThingsBoard's UsageInfo)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from thingsray.serve_app.deps import PrincipalDep, ServicesDep
from thingsray.serve_app.permissions import Operation, Resource, require, tenant_scope

router = APIRouter(tags=["usage"])

COUNTED = {"devices": "device", "assets": "asset", "customers": "customer", "users": "tb_user",
           "dashboards": "dashboard"}


@router.get("/api/usage", summary="Entity counts and transport messages of the caller's tenant")
async def get_usage(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.DEVICE, Operation.CREATE)  # tenant administrators, as in ThingsBoard
    tenant_id = tenant_scope(principal)
    counts = await services.db.fetchrow(
        "SELECT " + ", ".join(f"(SELECT count(*) FROM {table} WHERE tenant_id = $1) AS {name}"
                              for name, table in COUNTED.items()) + ","
        " (SELECT count(*) FROM alarm WHERE tenant_id = $1 AND NOT cleared) AS alarms", tenant_id)
    usage: dict[str, Any] = {name: counts[name] for name in (*COUNTED, "alarms")}
    live = await services.live.tenant_usage(tenant_id) if services.live is not None else {}
    usage.update({
        "transportMessages": live.get("messages", 0),
        "transportDataPoints": live.get("dataPoints", 0),
        "jsExecutions": 0, "tbelExecutions": 0, "emails": 0, "sms": 0, "smsEnabled": False,
        "edges": 0,
    })
    # the default tenant profile limits nothing: ThingsBoard writes 0 for "unlimited"
    for name in ("Devices", "Assets", "Customers", "Users", "Dashboards", "Edges", "TransportMessages",
                 "JsExecutions", "TbelExecutions", "Emails", "Sms", "Alarms"):
        usage[f"max{name}"] = 0
    return usage
