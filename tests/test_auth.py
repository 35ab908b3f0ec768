"""/api/auth: ThingsBoard's login, token shapes and claims, refresh, logout, password change."""

from __future__ import annotations

import jwt

from tests.conftest import SYSADMIN, TENANT_ADMIN, assert_tb_error, login


def test_login_returns_thingsboard_token_pair_with_its_claims(anonymous):
    response = anonymous.post("/api/auth/login", json={"username": TENANT_ADMIN[0], "password": TENANT_ADMIN[1]})
    assert response.status_code == 200
    pair = response.json()
    claims = jwt.decode(pair["token"], options={"verify_signature": False})
    assert jwt.get_unverified_header(pair["token"])["alg"] == "HS512"
    assert claims["iss"] == "thingsboard.io"
    assert claims["sub"] == TENANT_ADMIN[0]
    assert claims["scopes"] == ["TENANT_ADMIN"]
    assert claims["tenantId"] and claims["userId"] and claims["sessionId"]
    assert claims["exp"] - claims["iat"] == 9000
    refresh = jwt.decode(pair["refreshToken"], options={"verify_signature": False})
    assert refresh["scopes"] == ["REFRESH_TOKEN"]
    assert refresh["exp"] - refresh["iat"] == 604800


def test_wrong_password_and_unknown_user_get_the_same_401(anonymous):
    wrong = anonymous.post("/api/auth/login", json={"username": SYSADMIN[0], "password": "nope-nope"})
    body = assert_tb_error(wrong, 401, 10)
    assert body["message"] == "Invalid username or password"
    unknown = anonymous.post("/api/auth/login", json={"username": "nobody@example.com", "password": "x123456"})
    assert assert_tb_error(unknown, 401, 10)["message"] == "Invalid username or password"


def test_current_user_is_the_token_owner(tenant):
    user = tenant.get("/api/auth/user").json()
    assert user["email"] == TENANT_ADMIN[0]
    assert user["authority"] == "TENANT_ADMIN"
    assert user["id"]["entityType"] == "USER"
    assert user["name"] == user["email"]


def test_missing_forged_and_garbage_tokens_are_refused(anonymous, tenant):
    assert_tb_error(anonymous.get("/api/auth/user"), 401, 10)
    token = tenant.headers["X-Authorization"].split(" ", 1)[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "scopes": ["SYS_ADMIN"]}, "not-the-secret" * 8, algorithm="HS512")
    assert_tb_error(anonymous.get("/api/auth/user", headers={"X-Authorization": f"Bearer {forged}"}), 401, 10)
    assert_tb_error(anonymous.get("/api/auth/user", headers={"X-Authorization": "Bearer garbage"}), 401, 10)
    # plain Authorization works as well as ThingsBoard's X-Authorization
    assert anonymous.get("/api/auth/user", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_refresh_gives_a_working_pair_and_rejects_an_access_token(anonymous):
    pair = anonymous.post("/api/auth/login", json={"username": SYSADMIN[0], "password": SYSADMIN[1]}).json()
    refreshed = anonymous.post("/api/auth/token", json={"refreshToken": pair["refreshToken"]})
    assert refreshed.status_code == 200
    new_token = refreshed.json()["token"]
    assert anonymous.get("/api/auth/user", headers={"X-Authorization": f"Bearer {new_token}"}).status_code == 200
    assert_tb_error(anonymous.post("/api/auth/token", json={"refreshToken": pair["token"]}), 401, 10)


def test_logout_ends_access_and_refresh_tokens_of_that_session_only(base_url, anonymous):
    other = login(base_url, *SYSADMIN)
    pair = anonymous.post("/api/auth/login", json={"username": SYSADMIN[0], "password": SYSADMIN[1]}).json()
    headers = {"X-Authorization": f"Bearer {pair['token']}"}
    assert anonymous.post("/api/auth/logout", headers=headers).status_code == 200
    assert_tb_error(anonymous.get("/api/auth/user", headers=headers), 401)
    assert_tb_error(anonymous.post("/api/auth/token", json={"refreshToken": pair["refreshToken"]}), 401)
    assert other.get("/api/auth/user").status_code == 200  # another login is another session
    other.close()


def test_expired_token_gets_code_11(anonymous, tenant, platform):
    import asyncio

    from thingsray.serve_app.security import load_signing_key
    from thingsray.storage import connect

    async def secret() -> bytes:
        db = await connect(platform.database_url, max_size=1)
        try:
            return await load_signing_key(db, None)
        finally:
            await db.close()

    token = tenant.headers["X-Authorization"].split(" ", 1)[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    expired = jwt.encode({**claims, "exp": claims["iat"] - 10}, asyncio.run(secret()), algorithm="HS512")
    assert_tb_error(anonymous.get("/api/auth/user", headers={"X-Authorization": f"Bearer {expired}"}), 401, 11)
