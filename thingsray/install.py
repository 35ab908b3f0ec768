"""What every installation has: the system administrator, and each tenant's defaults."""

from __future__ import annotations

import uuid

import asyncpg

from thingsray.serve_app.passwords import hash_password
from thingsray.storage.entities import new_id, now_ms
from thingsray.storage.rule_chains import ensure_root_rule_chain, ensure_root_rule_chains

SYSADMIN_EMAIL = "sysadmin@thingsboard.org"
SYSADMIN_PASSWORD = "sysadmin"

DEFAULT_DEVICE_PROFILE_DATA = {
    "configuration": {"type": "DEFAULT"},
    "transportConfiguration": {"type": "DEFAULT"},
    "provisionConfiguration": {"type": "DISABLED", "provisionDeviceSecret": None},
    "alarms": None,
}


async def create_user(conn: asyncpg.Connection, *, email: str, authority: str, password: str | None,
                      tenant_id: uuid.UUID | None = None, customer_id: uuid.UUID | None = None,
                      first_name: str | None = None, last_name: str | None = None,
                      additional_info: dict | None = None) -> uuid.UUID:
    """Insert a user and its credentials (enabled when a password is given); return its id."""
    user_id = new_id()
    await conn.execute(
        "INSERT INTO tb_user (id, created_time, tenant_id, customer_id, email, authority, first_name,"
        " last_name, additional_info) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        user_id, now_ms(), tenant_id, customer_id, email, authority, first_name, last_name,
        additional_info or {})
    hashed = await hash_password(password) if password is not None else None
    await conn.execute(
        "INSERT INTO user_credentials (id, created_time, user_id, enabled, password) VALUES ($1,$2,$3,$4,$5)",
        new_id(), now_ms(), user_id, password is not None, hashed)
    return user_id


async def ensure_system_admin(conn: asyncpg.Connection) -> None:
    exists = await conn.fetchval("SELECT 1 FROM tb_user WHERE authority = 'SYS_ADMIN' LIMIT 1")
    if not exists:
        await create_user(conn, email=SYSADMIN_EMAIL, authority="SYS_ADMIN", password=SYSADMIN_PASSWORD)


async def create_tenant_defaults(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
    """The default device profile, asset profile and root rule chain a new tenant starts with."""
    await ensure_default_device_profile(conn, tenant_id)
    await ensure_asset_profile(conn, tenant_id, "default", default=True)
    await ensure_root_rule_chain(conn, tenant_id)


async def ensure_tenant_defaults(conn: asyncpg.Connection) -> None:
    """At start-up, after the migrations: what tenants made before a default existed lack
    (the root rule chain). Idempotent."""
    await ensure_root_rule_chains(conn)


async def ensure_default_device_profile(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> uuid.UUID:
    row = await conn.fetchrow("SELECT id FROM device_profile WHERE tenant_id = $1 AND is_default", tenant_id)
    if row is not None:
        return row["id"]
    return await ensure_device_profile(conn, tenant_id, "default", default=True)


async def ensure_device_profile(conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str, *,
                                default: bool = False, description: str | None = None) -> uuid.UUID:
    """The tenant's device profile called ``name``, created (DEFAULT type and transport) if absent."""
    existing = await conn.fetchval("SELECT id FROM device_profile WHERE tenant_id = $1 AND name = $2",
                                   tenant_id, name)
    if existing is not None:
        return existing
    profile_id = new_id()
    await conn.execute(
        "INSERT INTO device_profile (id, created_time, tenant_id, name, description, type, transport_type,"
        " provision_type, profile_data, is_default) VALUES ($1,$2,$3,$4,$5,'DEFAULT','DEFAULT','DISABLED',$6,$7)"
        " ON CONFLICT (tenant_id, name) DO NOTHING",
        profile_id, now_ms(), tenant_id, name, description or f"{name} device profile",
        DEFAULT_DEVICE_PROFILE_DATA, default)
    return await conn.fetchval("SELECT id FROM device_profile WHERE tenant_id = $1 AND name = $2",
                               tenant_id, name)


async def ensure_asset_profile(conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str, *,
                               default: bool = False) -> uuid.UUID:
    existing = await conn.fetchval("SELECT id FROM asset_profile WHERE tenant_id = $1 AND name = $2",
                                   tenant_id, name)
    if existing is not None:
        return existing
    await conn.execute(
        "INSERT INTO asset_profile (id, created_time, tenant_id, name, description, is_default)"
        " VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (tenant_id, name) DO NOTHING",
        new_id(), now_ms(), tenant_id, name, f"{name} asset profile", default)
    return await conn.fetchval("SELECT id FROM asset_profile WHERE tenant_id = $1 AND name = $2",
                               tenant_id, name)
