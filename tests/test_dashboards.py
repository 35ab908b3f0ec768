"""/api/dashboard: configuration kept verbatim, infos, customer assignment, isolation."""

from __future__ import annotations

import uuid

from tests.conftest import assert_tb_error, unique
from tests.tenancy import customer_id

CONFIGURATION = {
    "description": "plant floor",
    "widgets": {"w1": {"type": "timeseries", "config": {"datasources": [{"keys": ["t", "h"]}], "n": 1.5}}},
    "states": {"default": {"name": "Main", "root": True, "layouts": {}}},
    "entityAliases": {"a1": {"alias": "pumps", "filter": {"type": "entityList", "entityList": []}}},
    "settings": {"unicode": "température ✓", "nested": [[1, 2], {"x": None}]},
}


def create_dashboard(client, title: str, **fields) -> dict:
    response = client.post("/api/dashboard", json={"title": title, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_configuration_is_stored_as_given_and_info_leaves_it_out(tenant):
    dashboard = create_dashboard(tenant, unique("Plant"), configuration=CONFIGURATION, mobileHide=True)
    assert dashboard["id"]["entityType"] == "DASHBOARD"
    assert dashboard["title"] == dashboard["name"] and dashboard["assignedCustomers"] == []
    full = tenant.get(f"/api/dashboard/{dashboard['id']['id']}").json()
    assert full["configuration"] == CONFIGURATION and full["mobileHide"] is True
    info = tenant.get(f"/api/dashboard/info/{dashboard['id']['id']}").json()
    assert "configuration" not in info and info["title"] == dashboard["title"]
    page = tenant.get("/api/tenant/dashboards", params={"pageSize": 10, "page": 0, "textSearch": dashboard["title"]})
    assert [d["id"] for d in page.json()["data"]] == [dashboard["id"]]
    assert "configuration" not in page.json()["data"][0]


def test_large_configuration_is_kept_and_an_oversized_one_refused(tenant):
    big = {"widgets": {f"w{i}": {"payload": "x" * 1000} for i in range(2000)}}  # about 2 MB
    dashboard = create_dashboard(tenant, unique("Big"), configuration=big)
    assert tenant.get(f"/api/dashboard/{dashboard['id']['id']}").json()["configuration"] == big
    huge = {"blob": "y" * (10 * 1024 * 1024 + 10)}
    assert_tb_error(tenant.post("/api/dashboard", json={"title": unique("Huge"), "configuration": huge}), 400)


def test_update_delete_and_versions(tenant):
    dashboard = create_dashboard(tenant, unique("Editable"))
    updated = tenant.post("/api/dashboard", json={**dashboard, "title": dashboard["title"] + "!",
                                                  "configuration": {"widgets": {}}})
    assert updated.status_code == 200 and updated.json()["version"] == dashboard["version"] + 1
    assert_tb_error(tenant.post("/api/dashboard", json={**dashboard, "title": "stale"}), 409, 35)
    assert tenant.delete(f"/api/dashboard/{dashboard['id']['id']}").status_code == 200
    assert_tb_error(tenant.get(f"/api/dashboard/{dashboard['id']['id']}"), 404, 32)


def test_server_time_and_datapoint_limit_are_not_taken_for_ids(anonymous, tenant):
    assert isinstance(anonymous.get("/api/dashboard/serverTime").json(), int)
    assert tenant.get("/api/dashboard/maxDatapointsLimit").json() > 0


def test_assign_and_unassign_customers(tenant, customer_a, customer_b):
    cid_a, cid_b = customer_id(tenant, "Customer A"), customer_id(tenant, "Customer B")
    dashboard = create_dashboard(tenant, unique("Shared"), configuration={"widgets": {}})
    did = dashboard["id"]["id"]
    assigned = tenant.post(f"/api/customer/{cid_a}/dashboard/{did}").json()
    assert assigned["assignedCustomers"] == [
        {"customerId": {"entityType": "CUSTOMER", "id": cid_a}, "title": "Customer A", "public": False}]
    assert customer_a.get(f"/api/dashboard/{did}").json()["configuration"] == {"widgets": {}}
    assert_tb_error(customer_b.get(f"/api/dashboard/{did}"), 403, 20)
    mine = customer_a.get(f"/api/customer/{cid_a}/dashboards", params={"pageSize": 100, "page": 0,
                                                                       "textSearch": dashboard["title"]}).json()
    assert [d["id"] for d in mine["data"]] == [dashboard["id"]]
    assert_tb_error(customer_a.get(f"/api/customer/{cid_b}/dashboards", params={"pageSize": 10, "page": 0}), 403)

    both = tenant.post(f"/api/dashboard/{did}/customers/add", json=[cid_b]).json()
    assert {c["title"] for c in both["assignedCustomers"]} == {"Customer A", "Customer B"}
    assert customer_b.get(f"/api/dashboard/info/{did}").status_code == 200
    only_b = tenant.post(f"/api/dashboard/{did}/customers/remove", json=[cid_a]).json()
    assert [c["title"] for c in only_b["assignedCustomers"]] == ["Customer B"]
    assert_tb_error(customer_a.get(f"/api/dashboard/{did}"), 403)
    replaced = tenant.post(f"/api/dashboard/{did}/customers", json=[cid_a]).json()
    assert [c["title"] for c in replaced["assignedCustomers"]] == ["Customer A"]
    unassigned = tenant.delete(f"/api/customer/{cid_a}/dashboard/{did}").json()
    assert unassigned["assignedCustomers"] == []
    assert_tb_error(tenant.delete(f"/api/customer/{cid_a}/dashboard/{did}"), 400)


def test_customer_users_write_nothing(tenant, customer_a):
    cid_a = customer_id(tenant, "Customer A")
    dashboard = create_dashboard(tenant, unique("Readonly"))
    did = dashboard["id"]["id"]
    tenant.post(f"/api/customer/{cid_a}/dashboard/{did}")
    assert_tb_error(customer_a.post("/api/dashboard", json={"title": unique("mine")}), 403)
    assert_tb_error(customer_a.post("/api/dashboard", json={**dashboard, "title": "changed"}), 403)
    assert_tb_error(customer_a.delete(f"/api/dashboard/{did}"), 403)
    assert_tb_error(customer_a.post(f"/api/dashboard/{did}/customers", json=[]), 403)
    assert_tb_error(customer_a.get("/api/tenant/dashboards", params={"pageSize": 10, "page": 0}), 403)


def test_bad_input(tenant):
    dashboard = create_dashboard(tenant, unique("Target"))
    did = dashboard["id"]["id"]
    assert_tb_error(tenant.get("/api/dashboard/nope"), 400, 31)
    assert_tb_error(tenant.post("/api/dashboard", json={"configuration": {}}), 400)
    assert_tb_error(tenant.post("/api/dashboard", json={"title": "t" * 300}), 400)
    assert_tb_error(tenant.post("/api/dashboard", json={"title": "x", "configuration": [1, 2]}), 400)
    assert_tb_error(tenant.post(f"/api/dashboard/{did}/customers", json=["not-a-uuid"]), 400)
    assert_tb_error(tenant.post(f"/api/dashboard/{did}/customers", json={"a": 1}), 400)
    assert_tb_error(tenant.post(f"/api/customer/{uuid.uuid4()}/dashboard/{did}"), 404)
    assert_tb_error(tenant.get("/api/tenant/dashboards", params={"pageSize": 10, "page": -1}), 400)


def test_another_tenant_sees_and_touches_nothing(tenant, other_tenant):
    dashboard = create_dashboard(tenant, unique("Secret"), configuration={"k": "v"})
    did = dashboard["id"]["id"]
    assert_tb_error(other_tenant.get(f"/api/dashboard/{did}"), 404, 32)
    assert_tb_error(other_tenant.get(f"/api/dashboard/info/{did}"), 404)
    assert_tb_error(other_tenant.delete(f"/api/dashboard/{did}"), 404)
    assert_tb_error(other_tenant.post("/api/dashboard", json={**dashboard, "title": "stolen"}), 404)
    page = other_tenant.get("/api/tenant/dashboards", params={"pageSize": 100, "page": 0,
                                                              "textSearch": dashboard["title"]})
    assert page.json()["totalElements"] == 0
    own = create_dashboard(other_tenant, unique("Theirs"))
    cid = customer_id(tenant, "Customer A")
    assert_tb_error(other_tenant.post(f"/api/customer/{cid}/dashboard/{own['id']['id']}"), 404)
    assert tenant.get(f"/api/dashboard/{did}").json()["title"] == dashboard["title"]


def test_official_rest_client_round_trip(base_url):
    from tb_rest_client.models.dashboard import Dashboard
    from tb_rest_client.rest_client import RestClient

    client = RestClient(base_url=base_url)
    client.login("tenant@thingsboard.org", "tenant")
    title = unique("Client dashboard")
    saved = client.save_dashboard(Dashboard(title=title, configuration=CONFIGURATION))
    assert saved.id.entity_type == "DASHBOARD" and saved.title == title
    assert client.get_dashboard_by_id(saved.id).configuration == CONFIGURATION
    assert client.get_dashboard_info_by_id(saved.id).title == title
    page = client.get_tenant_dashboards(page_size=10, page=0, text_search=title)
    assert page.total_elements == 1 and page.data[0].id.id == saved.id.id
    client.delete_dashboard(saved.id)
    assert client.get_tenant_dashboards(page_size=10, page=0, text_search=title).total_elements == 0
