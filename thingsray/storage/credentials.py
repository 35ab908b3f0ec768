"""Device credentials: the repository, and the cache transports authenticate devices through.

A device has one row in device_credentials: an ACCESS_TOKEN (the token is the credentialsId),
an X509_CERTIFICATE (credentialsId is the SHA3-256 hex of the PEM body), MQTT_BASIC
(credentialsId derived from clientId and userName, the password in credentialsValue) or
LWM2M_CREDENTIALS. Transports look a device up by credentialsId on every connect, so
``CredentialStore.find_device_by_credentials_id`` answers from a cache: Redis (shared by every
process and node) or an in-process LRU that hears invalidations from other processes through
PostgreSQL NOTIFY. Every write made here invalidates what it changed, once committed; code that
changes device_credentials rows elsewhere (a tenant deleted, say) calls ``invalidate`` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import secrets
import string
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from thingsray.storage.database import Database
from thingsray.storage.entities import entity_id, new_id, now_ms

log = logging.getLogger(__name__)

INVALIDATION_CHANNEL = "thingsray_credentials"
"""The PostgreSQL NOTIFY channel; the payload is one credentialsId that changed."""
REDIS_PREFIX = "thingsray:cred:"
ACCESS_TOKEN_LENGTH = 20
_TOKEN_ALPHABET = string.ascii_letters + string.digits
MAX_CREDENTIALS_ID_LENGTH = 255


class CredentialsType(enum.StrEnum):
    ACCESS_TOKEN = "ACCESS_TOKEN"
    X509_CERTIFICATE = "X509_CERTIFICATE"
    MQTT_BASIC = "MQTT_BASIC"
    LWM2M_CREDENTIALS = "LWM2M_CREDENTIALS"


class CredentialsError(ValueError):
    """Credentials ThingsBoard would refuse; the message is its wording."""


DUPLICATE_MESSAGE = "Device credentials are already assigned to another device!"


# --- shapes ------------------------------------------------------------------------------------

def sha3_hex(text: str) -> str:
    return hashlib.sha3_256(text.encode("utf-8")).hexdigest()


def generate_access_token() -> str:
    """A random 20-character alphanumeric token, as ThingsBoard generates one."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(ACCESS_TOKEN_LENGTH))


def trim_certificate(pem: str) -> str:
    """The PEM body without BEGIN/END lines and line breaks: what ThingsBoard hashes and stores."""
    for marker in ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----", "\n", "\r"):
        pem = pem.replace(marker, "")
    return pem


@dataclass(frozen=True, slots=True)
class Credentials:
    """Credentials as ThingsBoard stores them (credentialsId derived, value normalised)."""

    type: CredentialsType
    credentials_id: str
    value: str | None = None


def normalize(credentials_type: str | None, credentials_id: str | None,
              credentials_value: str | None) -> Credentials:
    """Validate credentials sent by a client and derive ``credentialsId`` as ThingsBoard does."""
    credentials = _normalize(credentials_type, credentials_id, credentials_value)
    if len(credentials.credentials_id) > MAX_CREDENTIALS_ID_LENGTH:
        raise CredentialsError(f"Device credentials id is too long: at most {MAX_CREDENTIALS_ID_LENGTH} "
                               "characters")
    return credentials


def _normalize(credentials_type: str | None, credentials_id: str | None,
               credentials_value: str | None) -> Credentials:
    if not credentials_type:
        raise CredentialsError("Device credentials type should be specified")
    try:
        kind = CredentialsType(credentials_type)
    except ValueError:
        raise CredentialsError(f"Unsupported device credentials type '{credentials_type}': use one of "
                               f"{', '.join(CredentialsType)}") from None
    match kind:
        case CredentialsType.ACCESS_TOKEN:
            if not credentials_id:
                raise CredentialsError("Device credentials id should be specified!")
            if any(c.isspace() for c in credentials_id):
                raise CredentialsError("Access token should not contain whitespace!")
            return Credentials(kind, credentials_id, None)
        case CredentialsType.X509_CERTIFICATE:
            body = trim_certificate(credentials_value or "").strip()
            if not body:
                raise CredentialsError("Device credentials value (the PEM certificate) should be specified!")
            return Credentials(kind, sha3_hex(body), body)
        case CredentialsType.MQTT_BASIC:
            return _mqtt_basic(credentials_value)
        case CredentialsType.LWM2M_CREDENTIALS:
            return _lwm2m(credentials_value)


def _json_object(value: str | None, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value or "")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise CredentialsError(f"Invalid credentials body for {what}!")
    return parsed


def _mqtt_basic(value: str | None) -> Credentials:
    parsed = _json_object(value, "simple mqtt credentials")
    fields = {k: parsed.get(k) for k in ("clientId", "userName", "password")}
    if any(v is not None and not isinstance(v, str) for v in fields.values()):
        raise CredentialsError("Invalid credentials body for simple mqtt credentials!")
    client_id, user_name, password = fields["clientId"], fields["userName"], fields["password"]
    if not client_id and not user_name:
        raise CredentialsError("Both mqtt client id and user name are empty!")
    if client_id and password and not user_name:
        raise CredentialsError("Password cannot be specified along with client id")
    if not client_id:
        credentials_id = str(user_name)
    elif not user_name:
        credentials_id = sha3_hex(client_id)
    else:
        credentials_id = sha3_hex(f"{client_id}|{user_name}")
    return Credentials(CredentialsType.MQTT_BASIC, credentials_id, json.dumps(fields))


def _lwm2m(value: str | None) -> Credentials:
    parsed = _json_object(value, "LwM2M credentials")
    client = parsed.get("client")
    if not isinstance(client, dict) or not client.get("endpoint"):
        raise CredentialsError("LwM2M client endpoint must be specified!")
    mode = client.get("securityConfigClientMode")
    if mode == "PSK":
        credentials_id = client.get("identity")
    elif mode == "X509" and client.get("cert"):
        credentials_id = sha3_hex(str(client["cert"]))
    else:
        credentials_id = client.get("endpoint")
    if not isinstance(credentials_id, str) or not credentials_id:
        raise CredentialsError("Invalid credentials body for LwM2M credentials!")
    return Credentials(CredentialsType.LWM2M_CREDENTIALS, credentials_id, json.dumps(parsed))


@dataclass(frozen=True, slots=True)
class DeviceAuth:
    """What a transport learns from a credentialsId: whose device it is and how to check it."""

    device_id: uuid.UUID
    tenant_id: uuid.UUID
    credentials_type: CredentialsType
    credentials_id: str
    credentials_value: str | None

    def to_json(self) -> dict[str, Any]:
        return {"deviceId": str(self.device_id), "tenantId": str(self.tenant_id),
                "credentialsType": str(self.credentials_type), "credentialsId": self.credentials_id,
                "credentialsValue": self.credentials_value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceAuth:
        return cls(uuid.UUID(data["deviceId"]), uuid.UUID(data["tenantId"]),
                   CredentialsType(data["credentialsType"]), data["credentialsId"], data.get("credentialsValue"))


def credentials_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A device_credentials row as ThingsBoard's DeviceCredentials JSON."""
    return {"id": {"id": str(row["id"])}, "createdTime": row["created_time"],
            "deviceId": entity_id("DEVICE", row["device_id"]), "credentialsType": row["credentials_type"],
            "credentialsId": row["credentials_id"], "credentialsValue": row["credentials_value"],
            "version": row["version"]}


# --- caches ------------------------------------------------------------------------------------

class _Miss(enum.Enum):
    MISS = 0


MISS = _Miss.MISS
"""A cache's answer when it knows nothing; ``None`` means "known: no such credentials"."""


class CredentialsCache(Protocol):
    """credentialsId -> DeviceAuth, or None for an id known not to exist (kept briefly)."""

    async def get(self, credentials_id: str) -> DeviceAuth | _Miss | None: ...

    async def put(self, credentials_id: str, auth: DeviceAuth | None) -> None: ...

    async def invalidate(self, *credentials_ids: str) -> None: ...

    async def close(self) -> None: ...


class InProcessCredentialsCache:
    """A bounded LRU in this process. ``listen`` subscribes it to invalidations made by other
    processes; while that subscription is down the cache holds nothing, so it is never stale."""

    def __init__(self, max_entries: int = 100_000, ttl_s: float = 3600.0, negative_ttl_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, DeviceAuth | None]] = OrderedDict()
        self._database_url: str | None = None
        self._listener: asyncpg.Connection | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, credentials_id: str) -> DeviceAuth | _Miss | None:
        entry = self._entries.get(credentials_id)
        if entry is None:
            return MISS
        expires, auth = entry
        if expires <= self._clock():
            del self._entries[credentials_id]
            return MISS
        self._entries.move_to_end(credentials_id)
        return auth

    async def put(self, credentials_id: str, auth: DeviceAuth | None) -> None:
        if self._database_url is not None and self._listener is None:
            return  # invalidations from other processes cannot reach us right now
        ttl = self.ttl_s if auth is not None else self.negative_ttl_s
        self._entries[credentials_id] = (self._clock() + ttl, auth)
        self._entries.move_to_end(credentials_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def invalidate(self, *credentials_ids: str) -> None:
        for credentials_id in credentials_ids:
            self._entries.pop(credentials_id, None)

    async def listen(self, database_url: str) -> None:
        """Evict what other processes announce on ``INVALIDATION_CHANNEL``."""
        self._database_url = database_url
        await self._connect()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._database_url)
        await conn.add_listener(INVALIDATION_CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_lost)
        self._listener = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._entries.pop(payload, None)

    def _on_lost(self, _conn: Any) -> None:
        self._listener = None
        self._entries.clear()
        if not self._closed and (self._reconnect is None or self._reconnect.done()):
            log.warning("credentials cache lost its invalidation listener; caching is off until it is back")
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while not self._closed and self._listener is None:
            await asyncio.sleep(2.0)
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("credentials cache: listener reconnect failed: %s", exc)

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        self._entries.clear()


class RedisCredentialsCache:
    """``thingsray:cred:{credentialsId}`` -> DeviceAuth JSON (``null`` for a known miss), with a TTL."""

    def __init__(self, redis: Any, ttl_s: int = 3600, negative_ttl_s: int = 10) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s

    @staticmethod
    def key(credentials_id: str) -> str:
        return REDIS_PREFIX + credentials_id

    async def get(self, credentials_id: str) -> DeviceAuth | _Miss | None:
        raw = await self.redis.get(self.key(credentials_id))
        if raw is None:
            return MISS
        data = json.loads(raw)
        return None if data is None else DeviceAuth.from_json(data)

    async def put(self, credentials_id: str, auth: DeviceAuth | None) -> None:
        payload = json.dumps(None if auth is None else auth.to_json())
        ttl = self.ttl_s if auth is not None else self.negative_ttl_s
        await self.redis.set(self.key(credentials_id), payload, ex=ttl)

    async def invalidate(self, *credentials_ids: str) -> None:
        if credentials_ids:
            await self.redis.delete(*(self.key(c) for c in credentials_ids))

    async def close(self) -> None:
        """The Redis client belongs to whoever passed it in."""


async def build_cache(redis: Any | None, database_url: str | None) -> CredentialsCache:
    """Redis when a client is given; else an in-process cache that listens on ``database_url``."""
    if redis is not None:
        return RedisCredentialsCache(redis)
    cache = InProcessCredentialsCache()
    if database_url:
        await cache.listen(database_url)
    return cache


# --- the store ---------------------------------------------------------------------------------

_COLUMNS = "id, created_time, device_id, credentials_type, credentials_id, credentials_value, version"


class CredentialStore:
    """device_credentials rows, and the cached lookup by credentialsId."""

    def __init__(self, db: Database, cache: CredentialsCache) -> None:
        self.db = db
        self.cache = cache

    async def find_device_by_credentials_id(self, credentials_id: str) -> DeviceAuth | None:
        """The device these credentials belong to, or None; the transports' one question."""
        if not credentials_id:
            return None
        cached = await self.cache.get(credentials_id)
        if cached is not MISS:
            return cached
        row = await self.db.fetchrow(
            "SELECT c.device_id, d.tenant_id, c.credentials_type, c.credentials_id, c.credentials_value"
            " FROM device_credentials c JOIN device d ON d.id = c.device_id WHERE c.credentials_id = $1",
            credentials_id)
        auth = None if row is None else DeviceAuth(row["device_id"], row["tenant_id"],
                                                   CredentialsType(row["credentials_type"]),
                                                   row["credentials_id"], row["credentials_value"])
        await self.cache.put(credentials_id, auth)
        return auth

    async def get_by_device(self, device_id: uuid.UUID, conn: asyncpg.Connection | None = None
                            ) -> dict[str, Any] | None:
        row = await (conn or self.db.pool).fetchrow(
            f"SELECT {_COLUMNS} FROM device_credentials WHERE device_id = $1", device_id)
        return None if row is None else credentials_json(row)

    async def owner_of(self, credentials_id: str, conn: asyncpg.Connection | None = None) -> uuid.UUID | None:
        """The device holding ``credentials_id``, uncached: for uniqueness checks before a write."""
        return await (conn or self.db.pool).fetchval(
            "SELECT device_id FROM device_credentials WHERE credentials_id = $1", credentials_id)

    async def create(self, conn: asyncpg.Connection, device_id: uuid.UUID,
                     credentials: Credentials) -> dict[str, Any]:
        """Credentials for a new device, in the caller's transaction; ``invalidate`` after commit."""
        try:
            row = await conn.fetchrow(
                "INSERT INTO device_credentials (id, created_time, device_id, credentials_type, credentials_id,"
                f" credentials_value) VALUES ($1,$2,$3,$4,$5,$6) RETURNING {_COLUMNS}",
                new_id(), now_ms(), device_id, str(credentials.type), credentials.credentials_id,
                credentials.value)
        except asyncpg.UniqueViolationError:
            raise CredentialsError(DUPLICATE_MESSAGE) from None
        assert row is not None
        return credentials_json(row)

    async def replace(self, conn: asyncpg.Connection, device_id: uuid.UUID, credentials: Credentials, *,
                      expected_version: int | None = None) -> tuple[dict[str, Any], str | None]:
        """Set a device's credentials (creating the row if it has none); return the saved
        credentials and the credentialsId they replaced. ``invalidate`` both after commit."""
        old = await conn.fetchrow(
            "SELECT id, credentials_id, version FROM device_credentials WHERE device_id = $1 FOR UPDATE", device_id)
        if old is None:
            return await self.create(conn, device_id, credentials), None
        if expected_version is not None and old["version"] != expected_version:
            raise StaleCredentials(device_id)
        try:
            row = await conn.fetchrow(
                "UPDATE device_credentials SET credentials_type = $2, credentials_id = $3, credentials_value = $4,"
                f" version = version + 1 WHERE id = $1 RETURNING {_COLUMNS}",
                old["id"], str(credentials.type), credentials.credentials_id, credentials.value)
        except asyncpg.UniqueViolationError:
            raise CredentialsError(DUPLICATE_MESSAGE) from None
        assert row is not None
        return credentials_json(row), old["credentials_id"]

    async def invalidate(self, *credentials_ids: str | None) -> None:
        """Forget these ids here and, through NOTIFY, in every process listening; call after commit."""
        ids = tuple(dict.fromkeys(c for c in credentials_ids if c))
        if not ids:
            return
        await self.cache.invalidate(*ids)
        for credentials_id in ids:
            await self.db.execute("SELECT pg_notify($1, $2)", INVALIDATION_CHANNEL, credentials_id)

    async def close(self) -> None:
        await self.cache.close()


class StaleCredentials(Exception):
    """The credentials were changed by someone else since the caller read them."""

    def __init__(self, device_id: uuid.UUID) -> None:
        super().__init__(f"credentials of device {device_id} were already changed by someone else")
