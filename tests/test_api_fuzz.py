"""Schema-driven fuzzing of the whole REST API: whatever schemathesis generates from our own
/openapi.json, valid or not, no 5xx comes back and every error is ThingsBoard's error body.

It runs as the administrator of a tenant of its own (so what it creates stays out of the demo
tenant the other tests use), and without any token; it never logs out the session it uses.
The hypothesis runs are derandomized, so a failure reproduces.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from requests.adapters import HTTPAdapter

from tests.tenancy import create_tenant_admin

EXCLUDED = {"/api/auth/logout"}  # would end the fuzzer's own session
FUZZ_SOURCE = "127.0.0.77"
"""The fuzzer's failed logins trip the per-address login limit (as they should): it sends from a
loopback address of its own so that the other tests, from 127.0.0.1, can still log in."""


class _SourceAddress(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (FUZZ_SOURCE, 0)
        super().init_poolmanager(*args, **kwargs)


DEVICE_API = "/api/v1/"


def _device_api_bare_answer(path: str, response: Any) -> bool:
    """The HTTP device API answers as ThingsBoard's DeviceApiController does: an unknown token is a
    bare 401, a poll that times out a bare 408, an oversized body 413 with a plain string; its
    other errors carry the error body like the rest of the API."""
    if not path.startswith(DEVICE_API):
        return False
    return response.status_code == 413 or (response.status_code in (401, 408) and not response.content)


def _session() -> requests.Session:
    session = requests.Session()
    session.mount("http://", _SourceAddress())
    return session


@pytest.fixture(scope="module")
def fuzz_token(base_url: str, platform: Any) -> str:
    email, password = create_tenant_admin(platform.database_url)
    response = httpx.post(f"{base_url}/api/auth/login", json={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["token"]


@pytest.fixture(scope="module")
def operations(base_url: str) -> list[Any]:
    spec = httpx.get(f"{base_url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if op.path not in EXCLUDED]


def _fuzz(operations: list[Any], base_url: str, headers: dict[str, str], examples: int) -> list[str]:
    problems: list[str] = []
    session = _session()
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, session=session, timeout=30)
            where = f"{case.method} {case.formatted_path} {case.query or ''}"
            if response.status_code >= 500:
                problems.append(f"{where}: {response.status_code} {response.text[:300]}")
            elif response.status_code >= 400 and not _device_api_bare_answer(case.formatted_path, response):
                try:
                    body = response.json()
                except ValueError:
                    body = None
                if not isinstance(body, dict) or not {"status", "message", "errorCode", "timestamp"} <= set(body):
                    problems.append(f"{where}: {response.status_code} without ThingsBoard's error body")

        run()
    return problems


def test_no_server_error_as_tenant_admin(operations, base_url, fuzz_token):
    assert len(operations) > 50
    problems = _fuzz(operations, base_url, {"X-Authorization": f"Bearer {fuzz_token}"}, examples=10)
    assert not problems, "\n".join(problems[:20])


def test_no_server_error_without_a_token(operations, base_url):
    problems = _fuzz(operations, base_url, {}, examples=3)
    assert not problems, "\n".join(problems[:20])
