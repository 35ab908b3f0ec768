"""No cross-tenant or cross-customer read, list, update or delete, on any endpoint.

The endpoints come from the running platform's own /openapi.json, so an endpoint added later is
covered (or fails this test until its path parameters are known here): every operation with an
entity id in its path is called by another tenant's administrator with the ids of the demo
tenant's entities, and by a customer user with the ids of another customer's entities; every
list is read by them; nothing of the victims may come back and nothing may change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.tenancy import other_tenant_client

# path parameter -> the victim entity whose id goes there
ID_PARAMS = {
    "deviceId": "device", "customerId": "customer", "assetId": "asset", "dashboardId": "dashboard",
    "entityViewId": "entity_view", "userId": "user", "tenantId": "tenant",
    "deviceProfileId": "device_profile", "assetProfileId": "asset_profile", "entityId": "device",
    "fromId": "device", "toId": "device", "id": "device", "rpcId": "rpc", "alarmId": "alarm", "assigneeId": "user",
    "ruleChainId": "rule_chain", "ruleNodeId": "rule_node",
}
# path parameters that are not ids, with a value that fits the device victim
OTHER_PARAMS = {"entityType": "DEVICE", "fromType": "DEVICE", "toType": "DEVICE", "relationType": "Contains",
                "deviceName": "victim", "scope": "SERVER_SCOPE", "ttl": "0",
                "eventType": "DEBUG_RULE_NODE"}
SKIPPED_PREFIXES = ("/api/noauth", "/api/auth", "/api/v1/")
"""Not user operations: login, and the HTTP device API (a device's access token in the path is its
only credential; tests/test_http_device_api.py checks that a wrong one gets nothing)."""


@pytest.fixture(scope="module")
def victims(tenant: httpx.Client, base_url: str) -> dict[str, Any]:
    """One entity of each kind in the demo tenant, owned by Customer A where that applies."""
    def ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        return response.json()

    customer = ok(tenant.get("/api/tenant/customers", params={"customerTitle": "Customer A"}))
    device = ok(tenant.post("/api/device", json={"name": unique("victim device")}))
    asset = ok(tenant.post("/api/asset", json={"name": unique("victim asset"), "type": "building"}))
    dashboard = ok(tenant.post("/api/dashboard", json={"title": unique("victim dashboard")}))
    profile = ok(tenant.post("/api/deviceProfile", json={"name": unique("victim profile")}))
    view = ok(tenant.post("/api/entityView", json={
        "name": unique("victim view"), "type": "view", "entityId": device["id"],
        "keys": {"timeseries": [], "attributes": {"cs": [], "ss": [], "sh": []}}}))
    customer_id = customer["id"]["id"]
    for path in (f"/api/customer/{customer_id}/device/{device['id']['id']}",
                 f"/api/customer/{customer_id}/asset/{asset['id']['id']}",
                 f"/api/customer/{customer_id}/dashboard/{dashboard['id']['id']}",
                 f"/api/customer/{customer_id}/entityView/{view['id']['id']}"):
        ok(tenant.post(path))
    user = ok(tenant.post("/api/user", params={"sendActivationMail": "false"}, json={
        "email": f"victim-{unique('u').split()[1]}@thingsray.test", "authority": "CUSTOMER_USER",
        "customerId": customer["id"]}))
    asset_profile_id = ok(tenant.get(f"/api/asset/{asset['id']['id']}"))["assetProfileId"]["id"]
    me = ok(tenant.get("/api/auth/user"))
    alarm = ok(tenant.post("/api/alarm", json={"type": unique("victim alarm"), "originator": device["id"],
                                               "severity": "CRITICAL"}))
    rpc = ok(tenant.post(f"/api/rpc/oneway/{device['id']['id']}",
                         json={"method": "victimRpc", "params": {}, "persistent": True}))
    chain = ok(tenant.post("/api/ruleChain", json={"name": unique("victim chain")}))
    chain_meta = ok(tenant.post("/api/ruleChain/metadata", json={
        "ruleChainId": chain["id"], "firstNodeIndex": 0, "connections": [],
        "nodes": [{"type": "org.thingsboard.rule.engine.flow.TbRuleChainOutputNode", "name": "victim output"}]}))
    return {
        "device": device["id"]["id"], "customer": customer_id, "asset": asset["id"]["id"],
        "dashboard": dashboard["id"]["id"], "entity_view": view["id"]["id"], "user": user["id"]["id"],
        "tenant": me["tenantId"]["id"], "device_profile": profile["id"]["id"],
        "asset_profile": asset_profile_id, "rpc": rpc["rpcId"]["id"] if isinstance(rpc["rpcId"], dict)
        else rpc["rpcId"], "alarm": alarm["id"]["id"],
        "rule_chain": chain["id"]["id"], "rule_node": chain_meta["nodes"][0]["id"]["id"],
        "names": [device["name"], asset["name"], dashboard["title"], view["name"], user["email"], profile["name"],
                  alarm["type"], chain["name"]],
    }


@pytest.fixture(scope="module")
def intruder(base_url: str, platform) -> Iterator[httpx.Client]:
    client = other_tenant_client(base_url, platform.database_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def operations(tenant: httpx.Client) -> list[tuple[str, str]]:
    spec = tenant.get("/openapi.json").json()
    return [(method.upper(), path) for path, item in spec["paths"].items() for method in item
            if method in ("get", "post", "put", "delete") and not path.startswith(SKIPPED_PREFIXES)]


def _fill(path: str, ids: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name == "ownerId":  # /api/owner/{CUSTOMER|TENANT}/{ownerId}/...
            return str(ids["customer" if "/CUSTOMER/" in path else "tenant"])
        if name in ID_PARAMS:
            return str(ids[ID_PARAMS[name]])
        if name in OTHER_PARAMS:
            return OTHER_PARAMS[name]
        raise AssertionError(f"test_isolation does not know the path parameter {{{name}}} of {path}: "
                             "add it to ID_PARAMS or OTHER_PARAMS")
    return re.sub(r"\{([^}]+)\}", value, path)


def _paged_query(path: str) -> dict[str, Any]:
    return {"pageSize": 1000, "page": 0}


def _assert_refused_or_empty(method: str, url: str, response: httpx.Response, victims: dict[str, Any]) -> None:
    """Refused, or (a read of a list keyed by a foreign id, such as its audit log) an empty page."""
    if response.status_code == 200 and method == "GET":
        body = response.json()
        assert isinstance(body, dict | list) and not (body.get("data") if isinstance(body, dict) else body), (
            f"GET {url} returned data to a caller who may not see it: {response.text[:300]}")
    else:
        assert response.status_code in (400, 401, 403, 404, 405), (
            f"{method} {url} answered {response.status_code}: {response.text[:300]}")
    for name in victims["names"]:
        assert name not in response.text, f"{method} {url} leaked {name!r}"


def test_another_tenant_reaches_nothing_by_id(intruder, victims, operations, tenant):
    touched = []
    for method, path in operations:
        if "{" not in path:
            continue
        url = _fill(path, victims)
        response = intruder.request(method, url, params=_paged_query(path),
                                    json={} if method in ("POST", "PUT") else None)
        touched.append(url)
        _assert_refused_or_empty(method, url, response, victims)
    assert touched, "no operation with an id in its path was found"
    # nothing was deleted or changed on the way
    for kind, path in (("device", "/api/device/{}"), ("asset", "/api/asset/{}"),
                       ("dashboard", "/api/dashboard/{}"), ("customer", "/api/customer/{}"),
                       ("entity_view", "/api/entityView/{}"), ("user", "/api/user/{}"), ("alarm", "/api/alarm/{}"),
                       ("rule_chain", "/api/ruleChain/{}")):
        assert tenant.get(path.format(victims[kind])).status_code == 200, f"the victim {kind} is gone"


def test_another_tenant_lists_none_of_the_victims(intruder, victims, operations):
    listed = 0
    for method, path in operations:
        if method != "GET" or "{" in path:
            continue
        response = intruder.get(path, params=_paged_query(path))
        if response.status_code != 200:
            assert response.status_code in (400, 403, 404), f"GET {path}: {response.status_code} {response.text}"
            continue
        listed += 1
        for key in ("device", "asset", "dashboard", "entity_view", "user", "customer", "device_profile", "rule_chain"):
            assert victims[key] not in response.text, f"GET {path} listed the victim {key} to another tenant"
    assert listed >= 5


def test_another_tenant_cannot_overwrite_by_body(intruder, victims, tenant):
    """Saving an entity JSON that carries another tenant's id is refused and changes nothing."""
    for path, get_path, field in (("/api/device", "/api/device/{}", "device"),
                                  ("/api/asset", "/api/asset/{}", "asset"),
                                  ("/api/customer", "/api/customer/{}", "customer"),
                                  ("/api/dashboard", "/api/dashboard/{}", "dashboard")):
        original = tenant.get(get_path.format(victims[field])).json()
        hijack = {**original, "name": "hijacked", "title": "hijacked", "label": "hijacked"}
        response = intruder.post(path, json=hijack)
        assert response.status_code in (403, 404), f"POST {path} with a foreign id: {response.status_code}"
        after = tenant.get(get_path.format(victims[field])).json()
        assert after.get("name") == original.get("name") and after.get("title") == original.get("title")


def test_customer_user_reaches_nothing_of_another_customer(customer_b, victims, operations):
    for method, path in operations:
        if "{" not in path:
            continue
        url = _fill(path, victims)
        response = customer_b.request(method, url, params=_paged_query(path),
                                      json={} if method in ("POST", "PUT") else None)
        if "deviceProfile" in path or "assetProfile" in path:
            # profiles are the tenant's, readable by its customers as in ThingsBoard; never writable
            if method != "GET":
                assert response.status_code in (400, 403, 404, 405), f"{method} {url}: {response.status_code}"
            continue
        _assert_refused_or_empty(method, url, response, victims)
