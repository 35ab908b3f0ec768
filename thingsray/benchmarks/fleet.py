"""What the scenarios need around the platform: throwaway databases, bulk devices, process memory."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

DEVICE_DATA = '{"configuration":{"type":"DEFAULT"},"transportConfiguration":{"type":"DEFAULT"}}'
CHUNK = 50_000
"""Devices per INSERT statement of a bulk creation."""


def free_port() -> int:
    """A free port outside the ranges Ray binds in (see ``pick_free_port``)."""
    from thingsray.platform import pick_free_port

    return pick_free_port()


def _admin_url(server: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path="/postgres"))


async def create_database(server: str) -> tuple[str, str]:
    """A new empty database on ``server``; returns (its url, its name). The platform migrates it."""
    name = f"thingsray_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_admin_url(server))
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}")), name


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(_admin_url(server))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def bulk_devices(database_url: str, prefix: str, count: int) -> list[str]:
    """Devices ``<prefix>-<i>`` with access token ``<prefix>-token-<i>`` in the demo tenant, created with
    INSERT ... SELECT generate_series in one transaction (as thingsray/demo.py creates one); returns
    the tokens."""
    conn = await asyncpg.connect(database_url)
    try:
        tenant_id, profile_id = await _demo_tenant(conn)
        async with conn.transaction():
            for first in range(0, count, CHUNK):
                await conn.execute(
                    "WITH d AS (INSERT INTO device (id, created_time, tenant_id, device_profile_id, name, type,"
                    " device_data, additional_info)"
                    " SELECT gen_random_uuid(), $1, $2, $3, $4 || '-' || g, 'default', $7::jsonb, '{}'::jsonb"
                    " FROM generate_series($5::int, $6::int) g RETURNING id, name)"
                    " INSERT INTO device_credentials (id, created_time, device_id, credentials_type, credentials_id)"
                    " SELECT gen_random_uuid(), $1, d.id, 'ACCESS_TOKEN',"
                    " $4 || '-token-' || substr(d.name, length($4) + 2) FROM d",
                    _now_ms(), tenant_id, profile_id, prefix, first, min(first + CHUNK, count) - 1, DEVICE_DATA)
    finally:
        await conn.close()
    return [f"{prefix}-token-{i}" for i in range(count)]


async def device_ids(database_url: str, tokens: list[str]) -> dict[str, uuid.UUID]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT credentials_id, device_id FROM device_credentials"
                                " WHERE credentials_id = ANY($1::varchar[])", tokens)
    finally:
        await conn.close()
    return {r["credentials_id"]: r["device_id"] for r in rows}


async def _demo_tenant(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    row = await conn.fetchrow(
        "SELECT u.tenant_id, p.id AS profile_id FROM tb_user u JOIN device_profile p"
        " ON p.tenant_id = u.tenant_id AND p.name = 'default' WHERE lower(u.email) = 'tenant@thingsboard.org'")
    if row is None:
        raise RuntimeError("the demo tenant is missing: the bench platform runs with demo data")
    return row["tenant_id"], row["profile_id"]


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def rss(pids: list[int]) -> int:
    """Resident bytes of the processes (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total


def actor_pids(handles: list, class_name: str) -> list[int]:
    """Process ids of Ray actors: asked of the actors themselves, else found by their process title."""
    import ray

    try:
        return list(ray.get([h.pid.remote() for h in handles], timeout=30))
    except Exception:
        found = []
        for process in psutil.Process().children(recursive=True):
            try:
                if any(class_name in part for part in process.cmdline()[:1]):
                    found.append(process.pid)
            except psutil.Error:
                pass
        return found
