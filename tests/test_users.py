"""/api/user, /api/users, activation, impersonation, enabling and deleting users."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import parse_qs, urlparse

import asyncpg
import httpx
import pytest

from tests.conftest import CUSTOMER_A, SYSADMIN, TENANT_ADMIN, assert_tb_error, login, unique

PASSWORD = "s3cret-pass"


def email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def create_user(admin: httpx.Client, authority: str, *, tenant_id: str | None = None,
                customer_id: str | None = None, address: str | None = None) -> dict:
    body: dict = {"email": address or email(), "authority": authority, "firstName": "Ada", "lastName": "Byron"}
    if tenant_id:
        body["tenantId"] = {"entityType": "TENANT", "id": tenant_id}
    if customer_id:
        body["customerId"] = {"entityType": "CUSTOMER", "id": customer_id}
    response = admin.post("/api/user", params={"sendActivationMail": "false"}, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def activation_token(admin: httpx.Client, user_id: str) -> str:
    link = admin.get(f"/api/user/{user_id}/activationLink")
    assert link.status_code == 200, link.text
    return parse_qs(urlparse(link.text).query)["activateToken"][0]


def activate(base_url: str, admin: httpx.Client, user: dict, password: str = PASSWORD) -> dict:
    token = activation_token(admin, user["id"]["id"])
    response = httpx.post(f"{base_url}/api/noauth/activate", params={"sendActivationMail": "false"},
                          json={"activateToken": token, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(pair: dict) -> dict[str, str]:
    return {"X-Authorization": f"Bearer {pair['token']}"}


def customer_id_of(tenant: httpx.Client, title: str) -> str:
    return tenant.get("/api/tenant/customers", params={"customerTitle": title}).json()["id"]["id"]


@pytest.fixture(scope="module")
def customers(tenant: httpx.Client) -> dict[str, str]:
    return {t: customer_id_of(tenant, t) for t in ("Customer A", "Customer B")}


@pytest.fixture(scope="module")
def other_tenant(sysadmin: httpx.Client, base_url: str):
    """A second tenant, its admin (a client) and one customer of it."""
    tenant = sysadmin.post("/api/tenant", json={"title": unique("Users other tenant")}).json()
    admin = create_user(sysadmin, "TENANT_ADMIN", tenant_id=tenant["id"]["id"])
    pair = activate(base_url, sysadmin, admin)
    client = httpx.Client(base_url=base_url, headers=bearer(pair), timeout=30)
    customer = client.post("/api/customer", json={"title": unique("Other customer")}).json()
    yield {"tenant": tenant, "admin": admin, "client": client, "customer": customer}
    client.close()


def audit_actions(platform, entity_id: str) -> list[str]:
    async def query() -> list[str]:
        conn = await asyncpg.connect(platform.database_url)
        try:
            rows = await conn.fetch("SELECT action_type FROM audit_log WHERE entity_id = $1 ORDER BY created_time",
                                    uuid.UUID(entity_id))
            return [r["action_type"] for r in rows]
        finally:
            await conn.close()
    return asyncio.run(query())


# --- create, activate -----------------------------------------------------------------------------

def test_new_customer_user_is_disabled_until_activated_then_its_token_works(tenant, customers, base_url,
                                                                             anonymous, platform):
    address = email("Mixed.Case")
    user = create_user(tenant, "CUSTOMER_USER", customer_id=customers["Customer A"], address=address)
    assert user["email"] == address and user["name"] == address
    assert user["authority"] == "CUSTOMER_USER"
    assert user["customerId"] == {"entityType": "CUSTOMER", "id": customers["Customer A"]}
    assert user["tenantId"]["entityType"] == "TENANT" and user["id"]["entityType"] == "USER"
    assert user["firstName"] == "Ada" and user["lastName"] == "Byron"
    refused = anonymous.post("/api/auth/login", json={"username": address, "password": PASSWORD})
    assert_tb_error(refused, 401, 10)

    link = tenant.get(f"/api/user/{user['id']['id']}/activationLink")
    assert link.headers["content-type"].startswith("text/plain")
    assert link.text.startswith(f"{base_url}/api/noauth/activate?activateToken=")
    token = parse_qs(urlparse(link.text).query)["activateToken"][0]
    assert len(token) == 30 and token.isalnum()

    check = anonymous.get("/api/noauth/activate", params={"activateToken": token}, follow_redirects=False)
    assert check.status_code == 303
    assert check.headers["location"] == f"/login/createPassword?activateToken={token}"

    pair = anonymous.post("/api/noauth/activate", params={"sendActivationMail": "false"},
                          json={"activateToken": token, "password": PASSWORD}).json()
    me = anonymous.get("/api/auth/user", headers=bearer(pair))
    assert me.status_code == 200 and me.json()["id"] == user["id"]
    # the token is spent: checking it is a 409, using it again a 400; the link is gone
    assert anonymous.get("/api/noauth/activate", params={"activateToken": token},
                         follow_redirects=False).status_code == 409
    again = anonymous.post("/api/noauth/activate", json={"activateToken": token, "password": PASSWORD})
    assert_tb_error(again, 400, 31)
    assert_tb_error(tenant.get(f"/api/user/{user['id']['id']}/activationLink"), 400, 31)
    login(base_url, address.upper(), PASSWORD).close()  # logins are case-insensitive on the email
    assert tenant.get(f"/api/user/{user['id']['id']}").json()["additionalInfo"]["userCredentialsEnabled"] is True
    assert {"ADDED", "ACTIVATED"} <= set(audit_actions(platform, user["id"]["id"]))


def test_activation_refuses_unknown_tokens_and_weak_passwords(tenant, customers, anonymous):
    assert_tb_error(anonymous.post("/api/noauth/activate", json={"activateToken": "nope" * 5,
                                                                 "password": PASSWORD}), 400, 31)
    assert anonymous.get("/api/noauth/activate", params={"activateToken": "nope"},
                         follow_redirects=False).status_code == 409
    user = create_user(tenant, "CUSTOMER_USER", customer_id=customers["Customer A"])
    token = activation_token(tenant, user["id"]["id"])
    assert_tb_error(anonymous.post("/api/noauth/activate", json={"activateToken": token, "password": "123"}),
                    400, 45)
    assert_tb_error(anonymous.post("/api/noauth/activate", json={"activateToken": token}), 400)
    # still pending after the refusals
    assert anonymous.get("/api/noauth/activate", params={"activateToken": token},
                         follow_redirects=False).status_code == 303


def test_activation_mail_cannot_be_sent_so_the_user_is_not_created(tenant, customers):
    address = email()
    body = {"email": address, "authority": "CUSTOMER_USER",
            "customerId": {"entityType": "CUSTOMER", "id": customers["Customer A"]}}
    refused = assert_tb_error(tenant.post("/api/user", json=body), 400, 31)
    assert "mail" in refused["message"] and "sendActivationMail=false" in refused["message"]
    assert tenant.post("/api/user", params={"sendActivationMail": "false"}, json=body).status_code == 200


def test_email_is_unique_case_insensitively_and_validated(tenant, customers):
    address = email()
    create_user(tenant, "CUSTOMER_USER", customer_id=customers["Customer A"], address=address)
    duplicate = tenant.post("/api/user", params={"sendActivationMail": "false"},
                            json={"email": address.upper(), "authority": "TENANT_ADMIN"})
    assert assert_tb_error(duplicate, 400, 31)["message"] == \
        f"User with email '{address.upper()}' already present in database!"
    for bad in ("not-an-email", "a@b", "two@@example.com", "x" * 300 + "@example.com"):
        assert_tb_error(tenant.post("/api/user", params={"sendActivationMail": "false"},
                                    json={"email": bad, "authority": "TENANT_ADMIN"}), 400)
    assert_tb_error(tenant.post("/api/user", params={"sendActivationMail": "false"},
                                json={"authority": "TENANT_ADMIN"}), 400, 31)
    assert_tb_error(tenant.post("/api/user", params={"sendActivationMail": "false"},
                                json={"email": email()}), 400, 31)
    assert_tb_error(tenant.post("/api/user", params={"sendActivationMail": "false"},
                                json={"email": email(), "authority": "KING"}), 400, 31)
    assert_tb_error(tenant.post("/api/user", params={"sendActivationMail": "false"},
                                json={"email": email(), "authority": "CUSTOMER_USER"}), 400, 31)
    assert_tb_error(tenant.post("/api/user", params={"sendActivationMail": "maybe"},
                                json={"email": email(), "authority": "TENANT_ADMIN"}), 400)
    assert_tb_error(tenant.post("/api/user", params={"sendActivationMail": "false"},
                                json={"email": email(), "authority": "TENANT_ADMIN", "firstName": 12}), 400)
    assert_tb_error(tenant.post("/api/user", params={"sendActivationMail": "false"},
                                json={"email": email(), "authority": "CUSTOMER_USER",
                                      "customerId": {"id": "not-a-uuid"}}), 400)


# --- who creates whom -----------------------------------------------------------------------------

def test_tenant_admin_creates_in_its_own_tenant_only(tenant, other_tenant, customers):
    mine = tenant.get("/api/auth/user").json()["tenantId"]
    admin = create_user(tenant, "TENANT_ADMIN", tenant_id=other_tenant["tenant"]["id"]["id"])
    assert admin["tenantId"] == mine  # the body's tenantId is ignored, as ThingsBoard does
    foreign = tenant.post("/api/user", params={"sendActivationMail": "false"}, json={
        "email": email(), "authority": "CUSTOMER_USER",
        "customerId": {"entityType": "CUSTOMER", "id": other_tenant["customer"]["id"]["id"]}})
    assert assert_tb_error(foreign, 400, 31)["message"] == "User is referencing to non-existent customer!"
    sysadmin_user = tenant.post("/api/user", params={"sendActivationMail": "false"},
                                json={"email": email(), "authority": "SYS_ADMIN"})
    assert_tb_error(sysadmin_user, 403, 20)
    with_customer = tenant.post("/api/user", params={"sendActivationMail": "false"}, json={
        "email": email(), "authority": "TENANT_ADMIN",
        "customerId": {"entityType": "CUSTOMER", "id": customers["Customer A"]}})
    assert_tb_error(with_customer, 400, 31)


def test_sysadmin_creates_tenant_admins_but_not_customer_users(sysadmin, other_tenant, customers):
    tenant_id = other_tenant["tenant"]["id"]["id"]
    admin = create_user(sysadmin, "TENANT_ADMIN", tenant_id=tenant_id)
    assert admin["tenantId"]["id"] == tenant_id
    assert_tb_error(sysadmin.post("/api/user", params={"sendActivationMail": "false"},
                                  json={"email": email(), "authority": "TENANT_ADMIN"}), 400, 31)
    missing = sysadmin.post("/api/user", params={"sendActivationMail": "false"}, json={
        "email": email(), "authority": "TENANT_ADMIN", "tenantId": {"id": str(uuid.uuid4())}})
    assert assert_tb_error(missing, 400, 31)["message"] == "User is referencing to non-existent tenant!"
    customer_user = sysadmin.post("/api/user", params={"sendActivationMail": "false"}, json={
        "email": email(), "authority": "CUSTOMER_USER", "tenantId": {"id": tenant_id},
        "customerId": {"id": other_tenant["customer"]["id"]["id"]}})
    assert_tb_error(customer_user, 403, 20)


def test_customer_user_updates_itself_only_and_cannot_promote_itself(tenant, customers, base_url):
    user = create_user(tenant, "CUSTOMER_USER", customer_id=customers["Customer A"])
    pair = activate(base_url, tenant, user)
    with httpx.Client(base_url=base_url, headers=bearer(pair), timeout=30) as me:
        current = me.get(f"/api/user/{user['id']['id']}").json()
        updated = me.post("/api/user", json={**current, "firstName": "Grace"})
        assert updated.status_code == 200, updated.text
        assert updated.json()["firstName"] == "Grace"
        assert updated.json()["version"] == current["version"] + 1
        promoted = me.post("/api/user", json={**updated.json(), "authority": "TENANT_ADMIN",
                                              "customerId": None})
        assert_tb_error(promoted, 403, 20)
        assert me.get("/api/auth/user").json()["authority"] == "CUSTOMER_USER"
        stale = me.post("/api/user", json={**current, "firstName": "Stale"})
        assert_tb_error(stale, 409, 35)
        other = tenant.get("/api/users", params={"pageSize": 100, "page": 0,
                                                 "textSearch": "customerA@thingsboard.org"}).json()["data"][0]
        assert_tb_error(me.post("/api/user", json={**other, "firstName": "Mallory"}), 403, 20)
        assert_tb_error(me.post("/api/user", params={"sendActivationMail": "false"},
                                json={"email": email(), "authority": "CUSTOMER_USER"}), 403, 20)
        assert_tb_error(me.delete(f"/api/user/{other['id']['id']}"), 403, 20)


def test_tenant_admin_updates_its_users_and_duplicate_email_is_refused(tenant, customers):
    first = create_user(tenant, "CUSTOMER_USER", customer_id=customers["Customer B"])
    second = create_user(tenant, "CUSTOMER_USER", customer_id=customers["Customer B"])
    renamed = tenant.post("/api/user", json={**first, "lastName": "Lovelace", "phone": "+123"})
    assert renamed.status_code == 200 and renamed.json()["lastName"] == "Lovelace"
    clash = tenant.post("/api/user", json={**second, "email": first["email"].upper()})
    assert_tb_error(clash, 400, 31)
    ghost = tenant.post("/api/user", json={**first, "id": {"entityType": "USER", "id": str(uuid.uuid4())}})
    assert_tb_error(ghost, 404, 32)


# --- reading and listing --------------------------------------------------------------------------

def test_reading_users_by_id_respects_tenants_and_customers(tenant, customer_a, customer_b, sysadmin,
                                                            other_tenant, customers):
    a_user = customer_a.get("/api/auth/user").json()
    assert customer_a.get(f"/api/user/{a_user['id']['id']}").status_code == 200
    assert_tb_error(customer_b.get(f"/api/user/{a_user['id']['id']}"), 403, 20)
    assert tenant.get(f"/api/user/{a_user['id']['id']}").status_code == 200
    assert_tb_error(other_tenant["client"].get(f"/api/user/{a_user['id']['id']}"), 404, 32)
    admin = tenant.get("/api/auth/user").json()
    assert sysadmin.get(f"/api/user/{admin['id']['id']}").status_code == 200
    assert_tb_error(sysadmin.get(f"/api/user/{a_user['id']['id']}"), 403, 20)  # customers are not its
    me = sysadmin.get("/api/auth/user").json()
    assert_tb_error(tenant.get(f"/api/user/{me['id']['id']}"), 404, 32)
    assert_tb_error(tenant.get("/api/user/not-a-uuid"), 400, 31)
    assert_tb_error(tenant.get(f"/api/user/{uuid.uuid4()}"), 404, 32)


def test_user_lists_are_scoped(tenant, customer_a, customer_b, sysadmin, other_tenant, customers):
    page = {"pageSize": 1000, "page": 0}
    tenant_users = {u["email"] for u in tenant.get("/api/users", params=page).json()["data"]}
    assert {TENANT_ADMIN[0], CUSTOMER_A[0], "customerB@thingsboard.org"} <= tenant_users
    assert other_tenant["admin"]["email"] not in tenant_users
    a_users = customer_a.get("/api/users", params=page).json()["data"]
    assert {u["customerId"]["id"] for u in a_users} == {customers["Customer A"]}
    assert_tb_error(sysadmin.get("/api/users", params=page), 403, 20)

    b_users = tenant.get(f"/api/customer/{customers['Customer B']}/users", params=page).json()
    assert "customerB@thingsboard.org" in {u["email"] for u in b_users["data"]}
    assert {u["customerId"]["id"] for u in b_users["data"]} == {customers["Customer B"]}
    assert_tb_error(customer_a.get(f"/api/customer/{customers['Customer B']}/users", params=page), 403, 20)
    assert_tb_error(customer_a.get(f"/api/customer/{customers['Customer A']}/users", params=page), 403, 20)
    foreign = other_tenant["client"].get(f"/api/customer/{customers['Customer B']}/users", params=page)
    assert_tb_error(foreign, 404, 32)

    tenant_id = other_tenant["tenant"]["id"]["id"]
    admins = sysadmin.get(f"/api/tenant/{tenant_id}/users", params=page).json()
    assert other_tenant["admin"]["email"] in {u["email"] for u in admins["data"]}
    assert {u["authority"] for u in admins["data"]} == {"TENANT_ADMIN"}
    assert_tb_error(tenant.get(f"/api/tenant/{tenant_id}/users", params=page), 403, 20)
    assert_tb_error(sysadmin.get("/api/tenant/nope/users", params=page), 400, 31)


def test_user_paging_search_and_sorting(tenant, customers):
    prefix = f"pg-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        create_user(tenant, "CUSTOMER_USER", customer_id=customers["Customer B"],
                    address=f"{prefix}-{i}@example.com")
    first = tenant.get("/api/users", params={"pageSize": 2, "page": 0, "textSearch": prefix,
                                             "sortProperty": "email", "sortOrder": "ASC"}).json()
    assert first["totalElements"] == 3 and first["totalPages"] == 2 and first["hasNext"] is True
    assert [u["email"] for u in first["data"]] == [f"{prefix}-0@example.com", f"{prefix}-1@example.com"]
    second = tenant.get("/api/users", params={"pageSize": 2, "page": 1, "textSearch": prefix,
                                              "sortProperty": "email", "sortOrder": "DESC"}).json()
    assert [u["email"] for u in second["data"]] == [f"{prefix}-0@example.com"] and second["hasNext"] is False
    for bad in ({"pageSize": 0, "page": 0}, {"pageSize": 10, "page": -1}, {"page": 0},
                {"pageSize": 10, "page": 0, "sortProperty": "password"},
                {"pageSize": 10, "page": 0, "sortOrder": "UP"}, {"pageSize": "ten", "page": 0}):
        assert_tb_error(tenant.get("/api/users", params=bad), 400)


# --- impersonation, enabling, deleting ------------------------------------------------------------

def test_user_token_follows_who_may_act_for_whom(sysadmin, tenant, customer_a, customers, anonymous):
    admin = tenant.get("/api/auth/user").json()
    pair = sysadmin.get(f"/api/user/{admin['id']['id']}/token")
    assert pair.status_code == 200
    assert anonymous.get("/api/auth/user", headers=bearer(pair.json())).json()["email"] == TENANT_ADMIN[0]
    a_user = customer_a.get("/api/auth/user").json()
    as_customer = tenant.get(f"/api/user/{a_user['id']['id']}/token").json()
    assert anonymous.get("/api/auth/user", headers=bearer(as_customer)).json()["email"] == CUSTOMER_A[0]
    assert_tb_error(customer_a.get(f"/api/user/{a_user['id']['id']}/token"), 403, 20)
    assert_tb_error(sysadmin.get(f"/api/user/{a_user['id']['id']}/token"), 403, 20)
    me = sysadmin.get("/api/auth/user").json()
    assert_tb_error(tenant.get(f"/api/user/{me['id']['id']}/token"), 404, 32)


def test_disabling_ends_sessions_at_once_and_enabling_restores_login(tenant, customers, base_url, anonymous):
    user = create_user(tenant, "CUSTOMER_USER", customer_id=customers["Customer A"])
    pair = activate(base_url, tenant, user)
    assert anonymous.get("/api/auth/user", headers=bearer(pair)).status_code == 200
    user_id = user["id"]["id"]
    off = tenant.post(f"/api/user/{user_id}/userCredentialsEnabled", params={"userCredentialsEnabled": "false"})
    assert off.status_code == 200
    assert_tb_error(anonymous.get("/api/auth/user", headers=bearer(pair)), 401, 10)
    assert_tb_error(anonymous.post("/api/auth/token", json={"refreshToken": pair["refreshToken"]}), 401, 10)
    refused = anonymous.post("/api/auth/login", json={"username": user["email"], "password": PASSWORD})
    assert assert_tb_error(refused, 401, 10)["message"] == "User account is not active"
    assert tenant.post(f"/api/user/{user_id}/userCredentialsEnabled",
                       params={"userCredentialsEnabled": "true"}).status_code == 200
    fresh = login(base_url, user["email"], PASSWORD)
    assert fresh.get("/api/auth/user").status_code == 200
    assert_tb_error(fresh.post(f"/api/user/{user_id}/userCredentialsEnabled",
                               params={"userCredentialsEnabled": "false"}), 403, 20)
    fresh.close()
    assert_tb_error(tenant.post(f"/api/user/{user_id}/userCredentialsEnabled",
                                params={"userCredentialsEnabled": "sometimes"}), 400)


def test_deleting_a_user_ends_its_access(tenant, customers, base_url, anonymous, platform, other_tenant):
    user = create_user(tenant, "CUSTOMER_USER", customer_id=customers["Customer A"])
    pair = activate(base_url, tenant, user)
    user_id = user["id"]["id"]
    assert_tb_error(other_tenant["client"].delete(f"/api/user/{user_id}"), 404, 32)
    assert tenant.delete(f"/api/user/{user_id}").status_code == 200
    assert_tb_error(anonymous.get("/api/auth/user", headers=bearer(pair)), 401, 10)
    assert_tb_error(tenant.get(f"/api/user/{user_id}"), 404, 32)
    assert_tb_error(tenant.delete(f"/api/user/{user_id}"), 404, 32)
    refused = anonymous.post("/api/auth/login", json={"username": user["email"], "password": PASSWORD})
    assert_tb_error(refused, 401, 10)
    assert "DELETED" in audit_actions(platform, user_id)


def test_nobody_deletes_itself(sysadmin, tenant):
    for client in (sysadmin, tenant):
        me = client.get("/api/auth/user").json()
        assert_tb_error(client.delete(f"/api/user/{me['id']['id']}"), 403, 20)
    assert sysadmin.get("/api/auth/user").json()["email"] == SYSADMIN[0]
