"""Who is calling: JWTs as ThingsBoard issues them, and the revocation of sessions.

Access and refresh tokens are HS512 JWTs with ThingsBoard's claims. Both carry the login's
``sessionId``: logging out revokes the session, so both stop working. Changing the password,
disabling or deleting a user revokes every token issued to it before that instant. Revocations
live in PostgreSQL, or in Redis when one is configured, so every replica and node agrees.
"""

from __future__ import annotations

import base64
import enum
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from thingsray.serve_app.errors import AuthenticationFailed, TokenExpired
from thingsray.storage.database import Database
from thingsray.storage.entities import now_ms

ISSUER = "thingsboard.io"
REFRESH_SCOPE = "REFRESH_TOKEN"


class Authority(enum.StrEnum):
    SYS_ADMIN = "SYS_ADMIN"
    TENANT_ADMIN = "TENANT_ADMIN"
    CUSTOMER_USER = "CUSTOMER_USER"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user of a request."""

    user_id: uuid.UUID
    email: str
    authority: Authority
    tenant_id: uuid.UUID | None
    customer_id: uuid.UUID | None
    session_id: uuid.UUID
    first_name: str | None = None
    last_name: str | None = None

    @property
    def is_sys_admin(self) -> bool:
        return self.authority is Authority.SYS_ADMIN

    @property
    def is_tenant_admin(self) -> bool:
        return self.authority is Authority.TENANT_ADMIN

    @property
    def is_customer_user(self) -> bool:
        return self.authority is Authority.CUSTOMER_USER


@dataclass(frozen=True, slots=True)
class TokenPair:
    token: str
    refresh_token: str

    def to_json(self) -> dict[str, str]:
        return {"token": self.token, "refreshToken": self.refresh_token}


class TokenService:
    """Issues and checks tokens; ``issued_ms`` (milliseconds) makes revocation by instant exact."""

    def __init__(self, secret: bytes, access_ttl: int, refresh_ttl: int) -> None:
        self._secret = secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue(self, user: dict[str, Any], enabled: bool = True, session_id: uuid.UUID | None = None) -> TokenPair:
        """A new pair for ``user`` (a ThingsBoard User JSON dict)."""
        session = str(session_id or uuid.uuid4())
        issued = now_ms()
        now = issued // 1000
        customer = user.get("customerId") or {}
        tenant = user.get("tenantId") or {}
        access = {
            "sub": user["email"], "iss": ISSUER, "iat": now, "exp": now + self.access_ttl,
            "jti": str(uuid.uuid4()),
            "scopes": [user["authority"]], "userId": user["id"]["id"],
            "firstName": user.get("firstName"), "lastName": user.get("lastName"),
            "enabled": enabled, "isPublic": False,
            "tenantId": tenant.get("id"), "customerId": customer.get("id"),
            "sessionId": session, "issuedMs": issued,
        }
        refresh = {
            "sub": user["email"], "iss": ISSUER, "iat": now, "exp": now + self.refresh_ttl,
            "jti": str(uuid.uuid4()), "scopes": [REFRESH_SCOPE], "userId": user["id"]["id"],
            "isPublic": False, "sessionId": session, "issuedMs": issued,
        }
        return TokenPair(jwt.encode(access, self._secret, algorithm="HS512"),
                         jwt.encode(refresh, self._secret, algorithm="HS512"))

    def decode(self, token: str, *, refresh: bool = False) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS512"], issuer=ISSUER,
                                options={"require": ["exp", "sub", "scopes", "userId", "sessionId"]})
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("Invalid JWT token") from None
        scopes = claims.get("scopes")
        is_refresh = isinstance(scopes, list) and scopes == [REFRESH_SCOPE]
        if is_refresh != refresh:
            raise AuthenticationFailed("Invalid JWT token")
        return claims

    @staticmethod
    def principal(claims: dict[str, Any]) -> Principal:
        try:
            return Principal(
                user_id=uuid.UUID(claims["userId"]), email=claims["sub"],
                authority=Authority(claims["scopes"][0]),
                tenant_id=_opt_uuid(claims.get("tenantId")),
                customer_id=_opt_uuid(claims.get("customerId")),
                session_id=uuid.UUID(claims["sessionId"]),
                first_name=claims.get("firstName"), last_name=claims.get("lastName"))
        except (KeyError, ValueError, IndexError, TypeError):
            raise AuthenticationFailed("Invalid JWT token") from None


def _opt_uuid(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    parsed = uuid.UUID(str(value))
    return None if str(parsed) == "13814000-1dd2-11b2-8080-808080808080" else parsed


async def load_signing_key(db: Database, configured: str | None) -> bytes:
    """The configured secret, else the one generated by the first process and kept in the database."""
    if configured:
        return configured.encode()
    candidate = base64.b64encode(secrets.token_bytes(64)).decode()
    await db.execute(
        "INSERT INTO admin_settings (key, json_value, created_time) VALUES ('jwt', $1, $2) "
        "ON CONFLICT (key) DO NOTHING", {"tokenSigningKey": candidate}, now_ms())
    stored = await db.fetchval("SELECT json_value FROM admin_settings WHERE key = 'jwt'")
    return base64.b64decode(stored["tokenSigningKey"])


class SessionState(enum.Enum):
    VALID = "valid"
    REVOKED = "revoked"
    USER_DISABLED = "disabled"
    USER_GONE = "gone"


class RevocationStore(Protocol):
    """Where revoked sessions and per-user cut-off instants live."""

    async def revoke_session(self, session_id: uuid.UUID, expires_at_ms: int) -> None: ...

    async def revoke_user_tokens(self, user_id: uuid.UUID, *, disabled: bool | None = None,
                                 deleted: bool = False) -> None:
        """Every token issued to the user until now stops working."""

    async def state(self, user_id: uuid.UUID, session_id: uuid.UUID, issued_ms: int) -> SessionState: ...


class PostgresRevocations:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def revoke_session(self, session_id: uuid.UUID, expires_at_ms: int) -> None:
        await self.db.execute(
            "INSERT INTO revoked_session (session_id, expires_at) VALUES ($1, $2) "
            "ON CONFLICT (session_id) DO UPDATE SET expires_at = GREATEST(revoked_session.expires_at, $2)",
            session_id, expires_at_ms)
        await self.db.execute("DELETE FROM revoked_session WHERE expires_at < $1", now_ms())

    async def revoke_user_tokens(self, user_id: uuid.UUID, *, disabled: bool | None = None,
                                 deleted: bool = False) -> None:
        # the row itself is the truth: a deleted user has none, a disabled one enabled = false
        await self.db.execute(
            "UPDATE user_credentials SET tokens_valid_after = $2 WHERE user_id = $1", user_id, now_ms())

    async def state(self, user_id: uuid.UUID, session_id: uuid.UUID, issued_ms: int) -> SessionState:
        row = await self.db.fetchrow(
            "SELECT uc.enabled, uc.tokens_valid_after, "
            " EXISTS (SELECT 1 FROM revoked_session WHERE session_id = $2) AS revoked "
            "FROM user_credentials uc WHERE uc.user_id = $1", user_id, session_id)
        if row is None:
            return SessionState.USER_GONE
        if row["revoked"] or issued_ms < row["tokens_valid_after"]:
            return SessionState.REVOKED
        if not row["enabled"]:
            return SessionState.USER_DISABLED
        return SessionState.VALID


class RedisRevocations:
    """Revocations in Redis, read with one round trip per request; PostgreSQL keeps the user's
    own state (enabled, deleted) as the truth and Redis mirrors it."""

    def __init__(self, redis: Any, db: Database) -> None:
        self.redis = redis
        self.db = db

    async def revoke_session(self, session_id: uuid.UUID, expires_at_ms: int) -> None:
        ttl_ms = max(1, expires_at_ms - now_ms())
        await self.redis.set(f"thingsray:revoked:{session_id}", b"1", px=ttl_ms)

    async def revoke_user_tokens(self, user_id: uuid.UUID, *, disabled: bool | None = None,
                                 deleted: bool = False) -> None:
        valid_after = now_ms()
        mapping: dict[str, Any] = {"valid_after": valid_after}
        if deleted:
            mapping["state"] = "gone"
        elif disabled is not None:
            mapping["state"] = "disabled" if disabled else "enabled"
        await self.db.execute(
            "UPDATE user_credentials SET tokens_valid_after = $2 WHERE user_id = $1", user_id, valid_after)
        if "state" in mapping:
            await self.redis.hset(f"thingsray:user:{user_id}", mapping=mapping)
        else:
            # state unknown here: drop the mirror, the next check reloads it from PostgreSQL
            await self.redis.delete(f"thingsray:user:{user_id}")

    async def state(self, user_id: uuid.UUID, session_id: uuid.UUID, issued_ms: int) -> SessionState:
        pipe = self.redis.pipeline()
        pipe.exists(f"thingsray:revoked:{session_id}")
        pipe.hmget(f"thingsray:user:{user_id}", "valid_after", "state")
        revoked, (valid_after, state) = await pipe.execute()
        if revoked:
            return SessionState.REVOKED
        if state is None:
            # first sight of this user on this Redis: mirror it from PostgreSQL once
            fallback = await PostgresRevocations(self.db).state(user_id, session_id, issued_ms)
            row = await self.db.fetchrow(
                "SELECT enabled, tokens_valid_after FROM user_credentials WHERE user_id = $1", user_id)
            if row is not None:
                await self.redis.hset(f"thingsray:user:{user_id}", mapping={
                    "valid_after": row["tokens_valid_after"],
                    "state": "enabled" if row["enabled"] else "disabled"})
            return fallback
        if state == b"gone":
            return SessionState.USER_GONE
        if issued_ms < int(valid_after or 0):
            return SessionState.REVOKED
        if state == b"disabled":
            return SessionState.USER_DISABLED
        return SessionState.VALID


def token_expiry_ms(claims: dict[str, Any]) -> int:
    return int(claims.get("exp", time.time())) * 1000
