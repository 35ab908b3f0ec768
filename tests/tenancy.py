"""A second tenant, made straight in the database, to show that tenants never see each other."""

from __future__ import annotations

import asyncio
import uuid

import httpx

import thingsray.serve_app  # noqa: F401  (before install: install -> passwords -> serve_app -> routers)
from tests.conftest import login
from thingsray import install
from thingsray.storage import connect
from thingsray.storage.entities import new_id, now_ms

NULL_UUID = "13814000-1dd2-11b2-8080-808080808080"
PASSWORD = "other-tenant-pw"


def create_tenant_admin(database_url: str) -> tuple[str, str]:
    """A new tenant with its defaults and an administrator; returns the admin's (email, password)."""
    email = f"other-{uuid.uuid4().hex[:8]}@thingsray.test"

    async def create() -> None:
        db = await connect(database_url, max_size=1)
        try:
            async with db.transaction() as conn:
                tenant_id = new_id()
                await conn.execute("INSERT INTO tenant (id, created_time, title) VALUES ($1, $2, $3)",
                                   tenant_id, now_ms(), f"Other tenant {email}")
                await install.create_tenant_defaults(conn, tenant_id)
                await install.create_user(conn, email=email, authority="TENANT_ADMIN", password=PASSWORD,
                                          tenant_id=tenant_id)
        finally:
            await db.close()

    asyncio.run(create())
    return email, PASSWORD


def other_tenant_client(base_url: str, database_url: str) -> httpx.Client:
    return login(base_url, *create_tenant_admin(database_url))


def customer_id(tenant: httpx.Client, title: str) -> str:
    response = tenant.get("/api/tenant/customers", params={"customerTitle": title})
    assert response.status_code == 200, response.text
    return response.json()["id"]["id"]


def demo_device_id(database_url: str, name: str) -> str:
    """The id of a demo device, read from the database so these tests do not lean on /api/device."""

    async def read() -> str:
        db = await connect(database_url, max_size=1)
        try:
            return str(await db.fetchval("SELECT id FROM device WHERE name = $1", name))
        finally:
            await db.close()

    return asyncio.run(read())
