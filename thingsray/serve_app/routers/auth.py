"""/api/auth: login, refresh, the current user, password change, logout."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from thingsray.serve_app.access import id_of
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep
from thingsray.serve_app.errors import AuthenticationFailed, BadRequest, NotFound, TooManyRequests
from thingsray.serve_app.models import LongText, ShortText, TbModel
from thingsray.serve_app.passwords import check_policy, hash_password, verify_password
from thingsray.serve_app.security import SessionState
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.entities import now_ms

router = APIRouter(tags=["auth"])


class LoginRequest(TbModel):
    username: ShortText
    password: LongText


class RefreshRequest(TbModel):
    refreshToken: LongText


class ChangePasswordRequest(TbModel):
    currentPassword: LongText
    newPassword: LongText


def client_address(request: Request) -> str:
    """The socket peer. X-Forwarded-For is not trusted: anyone may send it, and trusting it would
    let a caller pick a fresh address for every attempt and never meet the per-address limit."""
    return request.client.host if request.client else "unknown"


async def load_user_by_email(services: Services, email: str) -> dict[str, Any] | None:
    row = await services.db.fetchrow("SELECT id FROM tb_user WHERE lower(email) = lower($1)", email)
    return None if row is None else await services.repo(tables.USER).get(row["id"])


@router.post("/api/auth/login", summary="Log in with a username (email) and password")
async def login(body: LoginRequest, request: Request, services: ServicesDep) -> dict[str, str]:
    address = client_address(request)
    keys = (f"user:{body.username.lower()}", f"ip:{address}")
    if await services.login_limiter.blocked(*keys):
        raise TooManyRequests("Too many failed login attempts, try again in a minute")
    user = await load_user_by_email(services, body.username)
    credentials = None if user is None else await services.db.fetchrow(
        "SELECT enabled, password FROM user_credentials WHERE user_id = $1", id_of(user["id"]))
    if user is None or credentials is None or not await verify_password(body.password, credentials["password"]):
        await services.login_limiter.failed(*keys)
        if user is not None:
            await services.audit.record(None, ActionType.LOGIN, entity_type="USER", entity_id=id_of(user["id"]),
                                        entity_name=user["email"], failure="Invalid username or password",
                                        tenant_id=id_of(user.get("tenantId")),
                                        customer_id=id_of(user.get("customerId")),
                                        user_id=id_of(user["id"]), user_name=user["email"],
                                        data={"clientAddress": address})
        raise AuthenticationFailed("Invalid username or password")
    if not credentials["enabled"]:
        raise AuthenticationFailed("User account is not active")
    await services.db.execute("UPDATE user_credentials SET last_login_ts = $2, failed_login_attempts = 0 "
                              "WHERE user_id = $1", id_of(user["id"]), now_ms())
    await services.audit.record(None, ActionType.LOGIN, entity_type="USER", entity_id=id_of(user["id"]),
                                entity_name=user["email"], tenant_id=id_of(user.get("tenantId")),
                                customer_id=id_of(user.get("customerId")), user_id=id_of(user["id"]),
                                user_name=user["email"], data={"clientAddress": address})
    return services.tokens.issue(user).to_json()


@router.post("/api/auth/token", summary="Exchange a refresh token for a new token pair")
async def refresh(body: RefreshRequest, services: ServicesDep) -> dict[str, str]:
    claims = services.tokens.decode(body.refreshToken, refresh=True)
    principal_ids = services.tokens.principal({**claims, "scopes": ["TENANT_ADMIN"]})
    state = await services.revocations.state(principal_ids.user_id, principal_ids.session_id,
                                             int(claims.get("issuedMs", 0)))
    if state is SessionState.USER_DISABLED:
        raise AuthenticationFailed("User account is not active")
    if state is not SessionState.VALID:
        raise AuthenticationFailed("Token is not valid anymore")
    user = await services.repo(tables.USER).get(principal_ids.user_id)
    if user is None:
        raise AuthenticationFailed("User not found")
    return services.tokens.issue(user, session_id=principal_ids.session_id).to_json()


@router.get("/api/auth/user", summary="The user the token belongs to")
async def current_user(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    user = await services.repo(tables.USER).get(principal.user_id)
    if user is None:
        raise NotFound("User not found")
    return user


@router.post("/api/auth/changePassword", summary="Change the caller's password; other sessions end")
async def change_password(body: ChangePasswordRequest, principal: PrincipalDep,
                          services: ServicesDep) -> dict[str, str]:
    stored = await services.db.fetchval("SELECT password FROM user_credentials WHERE user_id = $1",
                                        principal.user_id)
    if not await verify_password(body.currentPassword, stored):
        raise BadRequest("Current password doesn't match!")
    if body.currentPassword == body.newPassword:
        raise BadRequest("New password should be different from existing!")
    check_policy(body.newPassword)
    hashed = await hash_password(body.newPassword)
    await services.db.execute("UPDATE user_credentials SET password = $2 WHERE user_id = $1",
                              principal.user_id, hashed)
    await services.revocations.revoke_user_tokens(principal.user_id)
    user = await services.repo(tables.USER).get(principal.user_id)
    assert user is not None
    await services.audit.record(principal, ActionType.CREDENTIALS_UPDATED, entity_type="USER",
                                entity_id=principal.user_id, entity_name=principal.email)
    return services.tokens.issue(user).to_json()


@router.post("/api/auth/logout", summary="End this session: its access and refresh tokens stop working")
async def logout(request: Request, principal: PrincipalDep, services: ServicesDep) -> Response:
    await services.revocations.revoke_session(
        principal.session_id, now_ms() + services.settings.refresh_token_ttl * 1000)
    await services.audit.record(principal, ActionType.LOGOUT, entity_type="USER",
                                entity_id=principal.user_id, entity_name=principal.email,
                                data={"clientAddress": client_address(request)})
    return Response(status_code=200)
