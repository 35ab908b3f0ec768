"""/api/tenant, /api/tenants, /api/tenantInfos: the system administrator's tenants, and what a
tenant's deletion takes with it."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from tests.conftest import assert_tb_error, unique
from tests.test_users import PASSWORD, activate, bearer, create_user

DEFAULT_PROFILE = {"entityType": "TENANT_PROFILE", "id": "5a3d8f2e-0d6c-4b1e-9c7a-3f1e2d4c5b6a"}


def db_value(platform, sql: str, *args):
    async def query():
        conn = await asyncpg.connect(platform.database_url)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()
    return asyncio.run(query())


def test_create_tenant_has_thingsboard_shape_and_default_profiles(sysadmin, platform):
    title = unique("Tenant shape")
    response = sysadmin.post("/api/tenant", json={
        "title": title, "region": "EU", "country": "Ukraine", "city": "Kyiv", "address": "Street 1",
        "address2": "Floor 2", "zip": "01001", "phone": "+380", "email": "ops@example.com",
        "additionalInfo": {"description": "for tests"}, "state": "Kyiv"})
    assert response.status_code == 200, response.text
    tenant = response.json()
    assert tenant["id"]["entityType"] == "TENANT" and uuid.UUID(tenant["id"]["id"])
    assert tenant["title"] == tenant["name"] == title
    assert (tenant["region"], tenant["country"], tenant["city"], tenant["zip"]) == ("EU", "Ukraine", "Kyiv", "01001")
    assert tenant["additionalInfo"] == {"description": "for tests"}
    assert tenant["tenantProfileId"] == DEFAULT_PROFILE
    assert isinstance(tenant["createdTime"], int) and tenant["version"] == 1
    tenant_id = uuid.UUID(tenant["id"]["id"])
    assert db_value(platform, "SELECT count(*) FROM device_profile WHERE tenant_id = $1 AND is_default",
                    tenant_id) == 1
    assert db_value(platform, "SELECT count(*) FROM asset_profile WHERE tenant_id = $1 AND is_default",
                    tenant_id) == 1
    assert sysadmin.get(f"/api/tenant/{tenant_id}").json() == tenant
    info = sysadmin.get(f"/api/tenant/info/{tenant_id}").json()
    assert info["tenantProfileName"] == "Default" and info["title"] == title


def test_update_tenant_bumps_version_and_refuses_stale_versions(sysadmin):
    tenant = sysadmin.post("/api/tenant", json={"title": unique("Tenant update")}).json()
    renamed = sysadmin.post("/api/tenant", json={**tenant, "title": tenant["title"] + " renamed", "city": "Lviv"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == tenant["title"] + " renamed" and renamed.json()["version"] == 2
    assert_tb_error(sysadmin.post("/api/tenant", json={**tenant, "title": "stale"}), 409, 35)
    ghost = {**tenant, "id": {"entityType": "TENANT", "id": str(uuid.uuid4())}, "version": None}
    assert_tb_error(sysadmin.post("/api/tenant", json=ghost), 404, 32)


def test_bad_tenant_input_is_a_400(sysadmin):
    assert assert_tb_error(sysadmin.post("/api/tenant", json={}), 400, 31)["message"] == \
        "Tenant title should be specified!"
    assert_tb_error(sysadmin.post("/api/tenant", json={"title": ""}), 400, 31)
    assert_tb_error(sysadmin.post("/api/tenant", json={"title": "x" * 256}), 400)
    assert_tb_error(sysadmin.post("/api/tenant", json={"title": unique("T"), "email": "nope"}), 400, 31)
    assert_tb_error(sysadmin.post("/api/tenant", json={"title": ["list"]}), 400)
    assert_tb_error(sysadmin.post("/api/tenant", json={"title": unique("T"), "id": {"id": "zzz"}}), 400)
    assert_tb_error(sysadmin.post("/api/tenant", content=b"{not json", headers={"content-type":
                                                                                "application/json"}), 400)
    assert_tb_error(sysadmin.get(f"/api/tenant/{uuid.uuid4()}"), 404, 32)
    assert_tb_error(sysadmin.get("/api/tenant/info/not-a-uuid"), 400, 31)
    # /api/tenant/<not a uuid> is some other route or none: /api/tenant/customers must reach its router
    assert_tb_error(sysadmin.get("/api/tenant/not-a-uuid"), 404, 32)
    assert_tb_error(sysadmin.delete("/api/tenant/not-a-uuid"), 404, 32)


def test_tenant_pages_search_and_sort(sysadmin):
    marker = uuid.uuid4().hex[:8]
    for name in ("b", "a", "c"):
        sysadmin.post("/api/tenant", json={"title": f"Paged {marker} {name}"})
    page = sysadmin.get("/api/tenants", params={"pageSize": 2, "page": 0, "textSearch": f"paged {marker}",
                                                "sortProperty": "title", "sortOrder": "ASC"}).json()
    assert [t["title"] for t in page["data"]] == [f"Paged {marker} a", f"Paged {marker} b"]
    assert page["totalElements"] == 3 and page["totalPages"] == 2 and page["hasNext"] is True
    assert all(t["tenantProfileId"] == DEFAULT_PROFILE for t in page["data"])
    infos = sysadmin.get("/api/tenantInfos", params={"pageSize": 10, "page": 0, "textSearch": marker,
                                                     "sortProperty": "title", "sortOrder": "DESC"}).json()
    assert [t["title"][-1] for t in infos["data"]] == ["c", "b", "a"]
    assert {t["tenantProfileName"] for t in infos["data"]} == {"Default"}
    demo = sysadmin.get("/api/tenants", params={"pageSize": 1000, "page": 0, "textSearch": "Tenant"}).json()
    assert "Tenant" in {t["title"] for t in demo["data"]}
    for bad in ({"pageSize": 0, "page": 0}, {"pageSize": 5}, {"pageSize": 5, "page": 0, "sortProperty": "x"},
                {"pageSize": 5, "page": 0, "sortOrder": "sideways"}, {"pageSize": 5, "page": 0,
                                                                      "textSearch": "x" * 300}):
        assert_tb_error(sysadmin.get("/api/tenants", params=bad), 400)


def test_tenant_admin_sees_only_its_own_tenant(tenant, customer_a, sysadmin):
    mine = tenant.get("/api/auth/user").json()["tenantId"]["id"]
    own = tenant.get(f"/api/tenant/{mine}")
    assert own.status_code == 200 and own.json()["title"] == "Tenant"
    assert tenant.get(f"/api/tenant/info/{mine}").json()["tenantProfileName"] == "Default"
    other = sysadmin.post("/api/tenant", json={"title": unique("Not yours")}).json()
    assert_tb_error(tenant.get(f"/api/tenant/{other['id']['id']}"), 404, 32)
    assert_tb_error(tenant.get(f"/api/tenant/info/{other['id']['id']}"), 404, 32)
    assert_tb_error(tenant.get("/api/tenants", params={"pageSize": 10, "page": 0}), 403, 20)
    assert_tb_error(tenant.get("/api/tenantInfos", params={"pageSize": 10, "page": 0}), 403, 20)
    assert_tb_error(tenant.post("/api/tenant", json={"title": unique("Mine now")}), 403, 20)
    assert_tb_error(tenant.post("/api/tenant", json={**own.json(), "title": "Renamed by admin"}), 403, 20)
    assert_tb_error(tenant.delete(f"/api/tenant/{other['id']['id']}"), 403, 20)
    assert_tb_error(tenant.delete(f"/api/tenant/{mine}"), 403, 20)
    assert_tb_error(customer_a.get(f"/api/tenant/{mine}"), 403, 20)
    assert sysadmin.get(f"/api/tenant/{other['id']['id']}").status_code == 200


def test_deleting_a_tenant_removes_everything_and_its_users_access(sysadmin, base_url, anonymous, platform):
    tenant = sysadmin.post("/api/tenant", json={"title": unique("Doomed")}).json()
    tenant_id = tenant["id"]["id"]
    admin = create_user(sysadmin, "TENANT_ADMIN", tenant_id=tenant_id)
    pair = activate(base_url, sysadmin, admin)
    with httpx.Client(base_url=base_url, headers=bearer(pair), timeout=30) as client:
        customer = client.post("/api/customer", json={"title": unique("Doomed customer")}).json()
        user = create_user(client, "CUSTOMER_USER", customer_id=customer["id"]["id"])
        user_pair = activate(base_url, client, user)
    assert anonymous.get("/api/auth/user", headers=bearer(user_pair)).status_code == 200

    assert sysadmin.delete(f"/api/tenant/{tenant_id}").status_code == 200
    for token_pair in (pair, user_pair):
        assert_tb_error(anonymous.get("/api/auth/user", headers=bearer(token_pair)), 401, 10)
        assert_tb_error(anonymous.post("/api/auth/token", json={"refreshToken": token_pair["refreshToken"]}),
                        401, 10)
    for address in (admin["email"], user["email"]):
        assert_tb_error(anonymous.post("/api/auth/login", json={"username": address, "password": PASSWORD}),
                        401, 10)
    assert_tb_error(sysadmin.get(f"/api/tenant/{tenant_id}"), 404, 32)
    assert_tb_error(sysadmin.delete(f"/api/tenant/{tenant_id}"), 404, 32)
    tid = uuid.UUID(tenant_id)
    for table in ("customer", "tb_user", "device_profile", "asset_profile"):
        assert db_value(platform, f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tid) == 0, table
    assert db_value(platform, "SELECT count(*) FROM audit_log WHERE entity_id = $1 AND action_type = 'DELETED'",
                    tid) == 1
