"""One database, one Ray and one running platform for the whole test session.

The database is a fresh one on the PostgreSQL in THINGSRAY_TEST_DATABASE_URL when that is set
(CI sets it to the machine's service), else the embedded PostgreSQL in a temporary directory.
The platform runs exactly as ``thingsray up`` runs it, on 127.0.0.1 and ephemeral ports.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from thingsray.config import Settings
from thingsray.platform import Platform, use_loopback_ray

use_loopback_ray()  # before anything in the session imports ray

SYSADMIN = ("sysadmin@thingsboard.org", "sysadmin")
TENANT_ADMIN = ("tenant@thingsboard.org", "tenant")
CUSTOMER_A = ("customer@thingsboard.org", "customer")
CUSTOMER_B = ("customerB@thingsboard.org", "customer")


def free_port() -> int:
    """A free port outside the ranges Ray binds in (see ``pick_free_port``)."""
    from thingsray.platform import pick_free_port

    return pick_free_port()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = os.environ.get("THINGSRAY_TEST_DATABASE_URL")
    if not server:
        from thingsray.storage import EmbeddedPostgres

        embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "postgres")
        try:
            yield embedded.start()
        finally:
            embedded.stop()
        return
    import asyncio

    from thingsray.benchmarks.fleet import create_database, drop_database

    url, name = asyncio.run(create_database(server))
    try:
        yield url
    finally:
        asyncio.run(drop_database(server, name))


@pytest.fixture(scope="session")
def platform(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data_dir: Path = tmp_path_factory.mktemp("data")
    settings = Settings.load({
        "data_dir": str(data_dir), "host": "127.0.0.1", "http_port": free_port(),
        "mqtt_port": free_port(), "coap_port": free_port(), "database_url": database_url, "demo": True,
        "snmp_rescan_s": 1,
    }, environ={})
    running = Platform(settings)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def base_url(platform: Platform) -> str:
    assert platform.http_url is not None
    return platform.http_url


def login(base_url: str, email: str, password: str) -> httpx.Client:
    """An httpx client carrying the user's token (X-Authorization, as ThingsBoard's UI sends it)."""
    response = httpx.post(f"{base_url}/api/auth/login", json={"username": email, "password": password})
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    return httpx.Client(base_url=base_url, headers={"X-Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="session")
def sysadmin(base_url: str) -> Iterator[httpx.Client]:
    with login(base_url, *SYSADMIN) as client:
        yield client


@pytest.fixture(scope="session")
def tenant(base_url: str) -> Iterator[httpx.Client]:
    with login(base_url, *TENANT_ADMIN) as client:
        yield client


@pytest.fixture(scope="session")
def customer_a(base_url: str) -> Iterator[httpx.Client]:
    with login(base_url, *CUSTOMER_A) as client:
        yield client


@pytest.fixture(scope="session")
def customer_b(base_url: str) -> Iterator[httpx.Client]:
    with login(base_url, *CUSTOMER_B) as client:
        yield client


@pytest.fixture(scope="module")
def other_tenant(base_url: str, platform: Platform) -> Iterator[httpx.Client]:
    """The administrator of a second tenant of its own (one per test module), made in the database
    as the install makes tenants."""
    from tests.tenancy import other_tenant_client  # tenancy imports this module

    assert platform.database_url is not None
    with other_tenant_client(base_url, platform.database_url) as client:
        yield client


@pytest.fixture
def anonymous(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


EVENTUALLY_S = 20.0
"""A bound on waiting for what should happen at once; never a speed assertion."""


def eventually(check: Any, what: str = "condition", wait: float = EVENTUALLY_S) -> Any:
    """Poll ``check()`` until it returns something truthy (returned), or fail after ``wait`` s."""
    import time

    deadline = time.monotonic() + wait
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {wait} s")
        time.sleep(0.02)


def unique(prefix: str) -> str:
    """A name no other test uses, so tests share the session's platform without colliding."""
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def assert_tb_error(response: httpx.Response, status: int, error_code: int | None = None) -> dict:
    """The response is ThingsBoard's error body with this status (and code)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and isinstance(body["message"], str) and body["message"]
    assert isinstance(body["timestamp"], int)
    if error_code is not None:
        assert body["errorCode"] == error_code, body
    return body


@pytest.fixture(scope="session")
def mqtt_port(platform: Platform) -> int:
    assert platform.mqtt_port is not None
    return platform.mqtt_port


@pytest.fixture(scope="session")
def coap_port(platform: Platform) -> int:
    """The platform's CoAP listener (UDP, on 127.0.0.1)."""
    assert platform.coap_port is not None
    return platform.coap_port
