"""/api/audit/logs: what was done, by whom, to what; each tenant sees only its own."""

from __future__ import annotations

from tests.conftest import TENANT_ADMIN, assert_tb_error, login, unique
from tests.tenancy import NULL_UUID, customer_id


def logs(client, path: str = "/api/audit/logs", **params) -> dict:
    response = client.get(path, params={"pageSize": 100, "page": 0, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_create_update_delete_leave_entries_with_thingsboard_shape(tenant):
    created = tenant.post("/api/asset", json={"name": unique("Audited")}).json()
    asset_id = created["id"]["id"]
    tenant.post("/api/asset", json={**created, "label": "changed"})
    tenant.delete(f"/api/asset/{asset_id}")
    entries = logs(tenant, f"/api/audit/logs/entity/ASSET/{asset_id}")["data"]
    assert [e["actionType"] for e in entries] == ["DELETED", "UPDATED", "ADDED"]  # newest first
    me = tenant.get("/api/auth/user").json()
    entry = entries[-1]
    assert entry["id"]["entityType"] == "AUDIT_LOG"
    assert entry["entityId"] == {"entityType": "ASSET", "id": asset_id}
    assert entry["entityName"] == created["name"]
    assert entry["tenantId"] == me["tenantId"] and entry["customerId"]["id"] == NULL_UUID
    assert entry["userId"] == me["id"] and entry["userName"] == me["email"]
    assert entry["actionStatus"] == "SUCCESS" and entry["actionFailureDetails"] is None
    assert entry["actionData"]["entity"]["name"] == created["name"]
    assert isinstance(entry["createdTime"], int)
    everything = logs(tenant, textSearch=created["name"], actionTypes="ADDED,DELETED")["data"]
    assert {e["actionType"] for e in everything} == {"ADDED", "DELETED"}


def test_login_is_audited_for_the_user(base_url, tenant):
    since = tenant.get("/api/dashboard/serverTime").json()
    with login(base_url, *TENANT_ADMIN) as fresh:
        user_id = fresh.get("/api/auth/user").json()["id"]["id"]
    entries = logs(tenant, f"/api/audit/logs/user/{user_id}", actionTypes="LOGIN", startTime=since)["data"]
    assert entries and all(e["actionType"] == "LOGIN" and e["createdTime"] >= since for e in entries)
    assert logs(tenant, f"/api/audit/logs/user/{user_id}", actionTypes="LOGIN", startTime=since,
                endTime=since - 1)["totalElements"] == 0


def test_customer_entries_and_paging(tenant):
    cid = customer_id(tenant, "Customer B")
    prefix = unique("Paged audit")
    for i in range(3):
        asset = tenant.post("/api/asset", json={"name": f"{prefix} {i}"}).json()
        tenant.post(f"/api/customer/{cid}/asset/{asset['id']['id']}")
    assigned = logs(tenant, f"/api/audit/logs/customer/{cid}", textSearch=prefix)["data"]
    assert len(assigned) == 3 and {e["actionType"] for e in assigned} == {"ASSIGNED_TO_CUSTOMER"}
    first = logs(tenant, textSearch=prefix, pageSize=2, sortProperty="entityName", sortOrder="ASC")
    assert first["totalElements"] == 6 and first["totalPages"] == 3 and first["hasNext"] is True
    assert [e["entityName"] for e in first["data"]] == [f"{prefix} 0", f"{prefix} 0"]


def test_only_tenant_administrators_read_and_only_their_tenant(tenant, other_tenant, sysadmin, customer_a):
    asset = tenant.post("/api/asset", json={"name": unique("Not yours")}).json()
    assert logs(other_tenant, textSearch=asset["name"])["totalElements"] == 0
    assert logs(other_tenant, f"/api/audit/logs/entity/ASSET/{asset['id']['id']}")["totalElements"] == 0
    me = tenant.get("/api/auth/user").json()
    assert logs(other_tenant, f"/api/audit/logs/user/{me['id']['id']}")["totalElements"] == 0
    theirs = other_tenant.post("/api/asset", json={"name": unique("Theirs")}).json()
    assert logs(tenant, textSearch=theirs["name"])["totalElements"] == 0
    assert logs(other_tenant, textSearch=theirs["name"])["totalElements"] == 1
    assert_tb_error(sysadmin.get("/api/audit/logs", params={"pageSize": 10, "page": 0}), 403, 20)
    assert_tb_error(customer_a.get("/api/audit/logs", params={"pageSize": 10, "page": 0}), 403, 20)


def test_bad_input(tenant):
    assert_tb_error(tenant.get("/api/audit/logs", params={"pageSize": 10, "page": 0, "actionTypes": "EXPLODED"}), 400)
    assert_tb_error(tenant.get("/api/audit/logs", params={"pageSize": 10, "page": 0, "startTime": "yesterday"}), 400)
    assert_tb_error(tenant.get("/api/audit/logs", params={"pageSize": 10, "page": 0, "sortProperty": "id"}), 400)
    assert_tb_error(tenant.get("/api/audit/logs", params={"page": 0}), 400)
    assert_tb_error(tenant.get("/api/audit/logs/entity/NOPE/00000000-0000-0000-0000-000000000000",
                               params={"pageSize": 10, "page": 0}), 400)
    assert_tb_error(tenant.get("/api/audit/logs/user/not-a-uuid", params={"pageSize": 10, "page": 0}), 400)


def test_official_rest_client_reads_the_log(base_url, tenant):
    from tb_rest_client.rest_client import RestClient

    name = unique("Client audit")
    tenant.post("/api/asset", json={"name": name})
    client = RestClient(base_url=base_url)
    client.login(*TENANT_ADMIN)
    page = client.get_audit_logs(page_size=10, page=0, text_search=name)
    assert page.total_elements == 1
    assert page.data[0].action_type == "ADDED" and page.data[0].entity_name == name
