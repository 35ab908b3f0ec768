"""One APIRouter per area; ``ALL`` is what the application mounts, in this order."""

from thingsray.serve_app.routers import (
    alarms,
    assets,
    audit_logs,
    auth,
    claiming,
    customers,
    dashboards,
    device_api,
    device_profiles,
    devices,
    entity_query,
    entity_views,
    events,
    relations,
    rpc,
    rule_chain_transfer,
    rule_chains,
    telemetry,
    tenants,
    usage,
    users,
)

ALL = (auth.router, tenants.router, customers.router, users.router, device_profiles.router, devices.router,
       assets.router, dashboards.router, entity_views.router, relations.router, audit_logs.router,
       telemetry.router, rpc.router, usage.router, alarms.router,
       rule_chains.router, rule_chain_transfer.router, events.router, entity_query.router,
       device_api.router, claiming.router)
