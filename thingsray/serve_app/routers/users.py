"""/api/user, /api/users, activation: users, their credentials and who may act for them.

No mail server exists: a new user is created disabled with an activation token, and its
administrator shares the activation link (``GET /api/user/{id}/activationLink``). Asking for an
activation mail (``sendActivationMail``, true unless told otherwise, as in ThingsBoard) fails
the way ThingsBoard fails when its mail cannot be sent: the user is not created and the answer
is a 400 that says what to do instead.

``GET /api/noauth/activate`` answers as ThingsBoard does: a 303 redirect to the UI's
``/login/createPassword?activateToken=...`` for a pending token, 409 for an unknown or used one.
"""

from __future__ import annotations

import secrets
import string
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse

from thingsray.serve_app import crud
from thingsray.serve_app.access import id_of, load, owner_of
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest, ErrorCode, PermissionDenied, error_body
from thingsray.serve_app.models import EntityIdIn, LongText, ShortText, TbModel, Versioned
from thingsray.serve_app.passwords import check_policy, hash_password
from thingsray.serve_app.permissions import Operation, Owner, Resource, check, require, tenant_scope
from thingsray.serve_app.routers.tenants import validate_email
from thingsray.serve_app.security import Authority, Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.entities import NULL_UUID, DuplicateEntity, PageQuery, now_ms

router = APIRouter(tags=["user"])
UserPage = Annotated[PageQuery, Depends(page_params(tables.USER.sort_columns))]

ACTIVATION_TTL_MS = 24 * 3600 * 1000
"""How long an activation link works (ThingsBoard's default); asking for the link again renews it."""
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class UserIn(Versioned):
    email: ShortText | None = None
    authority: ShortText | None = None
    tenantId: EntityIdIn | None = None
    customerId: EntityIdIn | None = None
    firstName: ShortText | None = None
    lastName: ShortText | None = None
    phone: ShortText | None = None


class ActivateUserRequest(TbModel):
    activateToken: ShortText
    password: LongText


def activation_token() -> str:
    """30 letters and digits, like ThingsBoard's ``generateSafeToken(30)``."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(30))


def _id(ref: EntityIdIn | None) -> uuid.UUID | None:
    return None if ref is None or ref.id == NULL_UUID else ref.id


def _placement(authority: Authority, tenant_id: uuid.UUID | None, customer_id: uuid.UUID | None) -> None:
    """ThingsBoard's UserDataValidator rules on where a user of each authority belongs."""
    match authority:
        case Authority.SYS_ADMIN if tenant_id is not None or customer_id is not None:
            raise BadRequest("System administrator can't be assigned neither to tenant nor to customer!")
        case Authority.TENANT_ADMIN if tenant_id is None:
            raise BadRequest("Tenant administrator should be assigned to tenant!")
        case Authority.TENANT_ADMIN if customer_id is not None:
            raise BadRequest("Tenant administrator can't be assigned to customer!")
        case Authority.CUSTOMER_USER if tenant_id is None or customer_id is None:
            raise BadRequest("Customer user should be assigned to customer!")


async def _check_references(services: Services, tenant_id: uuid.UUID | None,
                            customer_id: uuid.UUID | None) -> None:
    if tenant_id is not None and not await services.db.fetchval("SELECT 1 FROM tenant WHERE id = $1", tenant_id):
        raise BadRequest("User is referencing to non-existent tenant!")
    if customer_id is not None and not await services.db.fetchval(
            "SELECT 1 FROM customer WHERE id = $1 AND tenant_id = $2", customer_id, tenant_id):
        raise BadRequest("User is referencing to non-existent customer!")  # another tenant's too


def _authority(value: str | None) -> Authority:
    if not value:
        raise BadRequest("User authority isn't defined!")
    try:
        return Authority(value)
    except ValueError:
        raise BadRequest(f"Invalid authority '{value}': use SYS_ADMIN, TENANT_ADMIN or CUSTOMER_USER") from None


@router.get("/api/users", summary="A page of the users a tenant admin (its tenant's) or customer user "
                                  "(its customer's) may see")
@router.get("/api/user/users", include_in_schema=False)  # the path tb-rest-client 4.x's get_users calls
async def get_users(page: UserPage, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.USER, Operation.READ)
    where: dict[str, Any] = {"tenant_id": tenant_scope(principal)}  # a system administrator has none: 403
    if principal.is_customer_user:
        where["customer_id"] = principal.customer_id
    return await services.repo(tables.USER).page(page, where)


@router.get("/api/tenant/{tenantId}/users", summary="A page of a tenant's administrators (system administrator)")
async def get_tenant_admins(tenantId: str, page: UserPage, principal: PrincipalDep,
                            services: ServicesDep) -> dict[str, Any]:
    tenant_id = parse_uuid(tenantId)
    require(principal, Resource.TENANT, Operation.CREATE)  # those who manage tenants
    return await services.repo(tables.USER).page(
        page, {"tenant_id": tenant_id, "authority": str(Authority.TENANT_ADMIN)})


@router.get("/api/customer/{customerId}/users", summary="A page of a customer's users (tenant admin)")
async def get_customer_users(customerId: str, page: UserPage, principal: PrincipalDep,
                             services: ServicesDep) -> dict[str, Any]:
    customer_id = parse_uuid(customerId)
    require(principal, Resource.USER, Operation.CREATE)  # those who manage users
    await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, customer_id)
    return await services.repo(tables.USER).page(
        page, {"tenant_id": tenant_scope(principal), "customer_id": customer_id})


@router.get("/api/user/{userId}", summary="Get a user")
async def get_user(userId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    user_id = parse_uuid(userId)
    user = await load(services, principal, tables.USER, Resource.USER, user_id)
    enabled = await services.db.fetchval("SELECT enabled FROM user_credentials WHERE user_id = $1", user_id)
    info = user.get("additionalInfo")
    if enabled and isinstance(info, dict):
        info.setdefault("userCredentialsEnabled", True)
    elif enabled and info is None:
        user["additionalInfo"] = {"userCredentialsEnabled": True}
    return user


@router.post("/api/user", summary="Create (disabled, with an activation link) or update a user")
async def save_user(body: UserIn, principal: PrincipalDep, services: ServicesDep,
                    sendActivationMail: bool = True) -> dict[str, Any]:
    if not body.email:
        raise BadRequest("User email should be specified!")
    validate_email(body.email)
    fields = body.model_dump(exclude_unset=True)
    if body.id is not None:
        return await _update(services, principal, body, fields)
    require(principal, Resource.USER, Operation.CREATE)
    authority = _authority(body.authority)
    tenant_id = _id(body.tenantId)
    if not principal.is_sys_admin:
        tenant_id = tenant_scope(principal)  # as ThingsBoard: a tenant admin creates in its own tenant
    customer_id = _id(body.customerId)
    check(principal, Resource.USER, Operation.CREATE,
          Owner(tenant_id, (customer_id,) if customer_id else (), None, authority))
    _placement(authority, tenant_id, customer_id)
    await _check_references(services, tenant_id, customer_id)
    if sendActivationMail:
        raise BadRequest("Unable to send mail: no mail server is configured. Create the user with "
                         "sendActivationMail=false and share its activation link "
                         "(GET /api/user/{userId}/activationLink)")
    extra = {"authority": str(authority), "tenant_id": tenant_id, "customer_id": customer_id}
    try:
        async with services.db.transaction() as conn:
            saved, _ = await crud.save(services, principal, tables.USER, Resource.USER, fields, extra=extra,
                                       conn=conn)
            await conn.execute(
                "INSERT INTO user_credentials (id, created_time, user_id, enabled, activate_token,"
                " activate_token_exp) VALUES ($1, $2, $3, false, $4, $5)",
                uuid.uuid4(), now_ms(), uuid.UUID(saved["id"]["id"]), activation_token(),
                now_ms() + ACTIVATION_TTL_MS)
    except DuplicateEntity:
        raise BadRequest(f"User with email '{body.email}' already present in database!") from None
    return saved


async def _update(services: Services, principal: Principal, body: UserIn,
                  fields: dict[str, Any]) -> dict[str, Any]:
    assert body.id is not None
    stored = await load(services, principal, tables.USER, Resource.USER, body.id.id, Operation.WRITE)
    owner = owner_of(stored)
    authority = _authority(body.authority) if body.authority else owner.authority
    assert authority is not None
    customer_id = owner.customer_ids[0] if owner.customer_ids else None
    if authority is not owner.authority:
        # the rules of a new user of that authority; a customer user may not change its own
        customer_id = _id(body.customerId) if authority is Authority.CUSTOMER_USER else None
        check(principal, Resource.USER, Operation.WRITE,
              Owner(owner.tenant_id, (customer_id,) if customer_id else (), owner.subject_id, authority))
        _placement(authority, owner.tenant_id, customer_id)
        await _check_references(services, owner.tenant_id, customer_id)
    extra = {"authority": str(authority), "customer_id": customer_id}
    try:
        saved, _ = await crud.save(services, principal, tables.USER, Resource.USER, fields, extra=extra)
    except DuplicateEntity:
        raise BadRequest(f"User with email '{body.email}' already present in database!") from None
    return saved


@router.get("/api/user/{userId}/activationLink", summary="The link that activates a new user",
            response_class=PlainTextResponse)
async def get_activation_link(userId: str, request: Request, principal: PrincipalDep,
                              services: ServicesDep) -> PlainTextResponse:
    user_id = parse_uuid(userId)
    user = await load(services, principal, tables.USER, Resource.USER, user_id)
    check(principal, Resource.USER, Operation.READ_CREDENTIALS, owner_of(user))
    row = await services.db.fetchrow(
        "SELECT enabled, activate_token, activate_token_exp FROM user_credentials WHERE user_id = $1", user_id)
    if row is None or row["enabled"] or row["activate_token"] is None:
        raise BadRequest("User is already activated!")
    token = row["activate_token"]
    if (row["activate_token_exp"] or 0) < now_ms():
        token = activation_token()
        await services.db.execute(
            "UPDATE user_credentials SET activate_token = $2, activate_token_exp = $3 WHERE user_id = $1",
            user_id, token, now_ms() + ACTIVATION_TTL_MS)
    base = str(request.base_url).rstrip("/")
    return PlainTextResponse(f"{base}/api/noauth/activate?activateToken={token}")


@router.get("/api/noauth/activate", summary="Check an activation token: 303 to the password form, or 409")
async def check_activate_token(services: ServicesDep,
                               activateToken: Annotated[str, Query(max_length=255)]) -> Response:
    expires = await services.db.fetchval(
        "SELECT activate_token_exp FROM user_credentials WHERE activate_token = $1 AND NOT enabled",
        activateToken)
    if expires is None or expires < now_ms():
        return JSONResponse(error_body(409, "Activation token is unknown, used or expired; ask for a new "
                                            "activation link", ErrorCode.ITEM_NOT_FOUND), status_code=409)
    return RedirectResponse(f"/login/createPassword?activateToken={activateToken}", status_code=303)


@router.post("/api/noauth/activate", summary="Activate a user: set its password, get its first token pair")
async def activate_user(body: ActivateUserRequest, services: ServicesDep,
                        sendActivationMail: bool = True) -> dict[str, str]:
    # sendActivationMail: ThingsBoard logs a failed "account activated" mail and carries on; so do we
    check_policy(body.password)
    row = await services.db.fetchrow(
        "SELECT user_id, enabled, activate_token_exp FROM user_credentials WHERE activate_token = $1",
        body.activateToken)
    if row is None:
        raise BadRequest(f"Unable to find user credentials by activateToken [{body.activateToken}]")
    if row["enabled"]:
        raise BadRequest("User credentials already activated")
    if (row["activate_token_exp"] or 0) < now_ms():
        raise BadRequest("Activation token expired; ask your administrator for a new activation link")
    hashed = await hash_password(body.password)
    user_id = await services.db.fetchval(
        "UPDATE user_credentials SET enabled = true, password = $2, activate_token = NULL,"
        " activate_token_exp = NULL WHERE activate_token = $1 AND NOT enabled RETURNING user_id",
        body.activateToken, hashed)
    if user_id is None:  # a concurrent activation won
        raise BadRequest(f"Unable to find user credentials by activateToken [{body.activateToken}]")
    await services.revocations.revoke_user_tokens(user_id, disabled=False)
    user = await services.repo(tables.USER).get(user_id)
    assert user is not None
    for action in (ActionType.ACTIVATED, ActionType.LOGIN):
        await services.audit.record(None, action, entity_type="USER", entity_id=user_id,
                                    entity_name=user["email"], tenant_id=id_of(user.get("tenantId")),
                                    customer_id=id_of(user.get("customerId")), user_id=user_id,
                                    user_name=user["email"])
    return services.tokens.issue(user).to_json()


@router.get("/api/user/{userId}/token", summary="A token pair of another user (log in as that user)")
async def get_user_token(userId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, str]:
    user_id = parse_uuid(userId)
    user = await load(services, principal, tables.USER, Resource.USER, user_id)
    check(principal, Resource.USER, Operation.IMPERSONATE, owner_of(user))
    enabled = await services.db.fetchval("SELECT enabled FROM user_credentials WHERE user_id = $1", user_id)
    await services.audit.record(principal, ActionType.LOGIN, entity_type="USER", entity_id=user_id,
                                entity_name=user["email"], data={"impersonatedBy": principal.email})
    return services.tokens.issue(user, enabled=bool(enabled)).to_json()


@router.post("/api/user/{userId}/userCredentialsEnabled",
             summary="Enable or disable a user; disabling ends its sessions at once")
async def set_user_credentials_enabled(userId: str, principal: PrincipalDep, services: ServicesDep,
                                       userCredentialsEnabled: bool = True) -> None:
    user_id = parse_uuid(userId)
    user = await load(services, principal, tables.USER, Resource.USER, user_id, Operation.WRITE)
    check(principal, Resource.USER, Operation.WRITE_CREDENTIALS, owner_of(user))
    if user_id == principal.user_id and not userCredentialsEnabled:
        raise BadRequest("You can't disable your own account")
    await services.db.execute("UPDATE user_credentials SET enabled = $2 WHERE user_id = $1",
                              user_id, userCredentialsEnabled)
    await services.revocations.revoke_user_tokens(user_id, disabled=not userCredentialsEnabled)
    await services.audit.record(principal, ActionType.CREDENTIALS_UPDATED, entity_type="USER",
                                entity_id=user_id, entity_name=user["email"],
                                data={"userCredentialsEnabled": userCredentialsEnabled})


@router.delete("/api/user/{userId}", summary="Delete a user; its tokens stop working")
async def delete_user(userId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    user_id = parse_uuid(userId)
    if user_id == principal.user_id:
        raise PermissionDenied("You can't delete yourself")
    await crud.delete(services, principal, tables.USER, Resource.USER, user_id)
    await services.revocations.revoke_user_tokens(user_id, deleted=True)
