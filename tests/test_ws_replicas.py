"""Two Serve replicas behind one port: WebSockets land on both, and every socket on either
replica gets every value an MQTT device publishes (each replica long-polls every shard).

``thingsray up --serve-replicas 2`` runs in a subprocess (as in test_up.py) on free ports with a
fresh database. A socket's replica is read from the ``X-Thingsray-Replica`` header of its
handshake response; the frames keep ThingsBoard's shapes.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import TENANT_ADMIN, free_port, unique
from tests.test_up import UpProcess, child_env, slow
from tests.test_ws import publish, receive, updates_until

REPLICA_HEADER = "X-Thingsray-Replica"
MAX_SOCKETS = 200  # a bound on opening sockets until both replicas hold some
PER_REPLICA = 5  # sockets each replica must hold before publishing
VALUES = 25


class TwoReplicas:
    def __init__(self, url: str, mqtt_port: int) -> None:
        self.url = url
        self.mqtt_port = mqtt_port
        self.ws_url = url.replace("http://", "ws://")


async def _admin(server: str, sql: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoReplicas]:
    data_dir: Path = tmp_path_factory.mktemp("replicas")
    server = os.environ.get("THINGSRAY_TEST_DATABASE_URL")
    args: list[str] = []
    name = None
    if server:  # a fresh database on the machine's PostgreSQL; else up's embedded one in data_dir
        name = f"thingsray_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(server, f"CREATE DATABASE {name}"))
        args = ["--database-url", f"{server.rpartition('/')[0]}/{name}"]
    http_port, mqtt_port = free_port(), free_port()
    up = UpProcess(data_dir, data_dir.parent / f"{data_dir.name}-up.log",
                   ["--host", "127.0.0.1", "--http-port", str(http_port), "--mqtt-port", str(mqtt_port),
                    "--coap-port", str(free_port()), "--serve-replicas", "2", "--demo", *args], child_env())
    try:
        url = f"http://127.0.0.1:{http_port}"
        up.wait_ready(url)
        yield TwoReplicas(url, mqtt_port)
    finally:
        up.kill()
        if server and name:
            asyncio.run(_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def tenant_token(two_replicas: TwoReplicas) -> str:
    login = httpx.post(f"{two_replicas.url}/api/auth/login",
                       json={"username": TENANT_ADMIN[0], "password": TENANT_ADMIN[1]}, timeout=30)
    assert login.status_code == 200, login.text
    return login.json()["token"]


def _device(two_replicas: TwoReplicas, token: str) -> dict[str, str]:
    access = f"WSR-{uuid.uuid4().hex[:12]}"
    created = httpx.post(f"{two_replicas.url}/api/device", params={"accessToken": access},
                         json={"name": unique("two replicas device")},
                         headers={"X-Authorization": f"Bearer {token}"}, timeout=30)
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": access}


async def _open_on_both(stack: AsyncExitStack, url: str) -> dict[str, list[ClientConnection]]:
    """Sockets by the replica that accepted them, opened until each of two replicas holds
    ``PER_REPLICA`` (every socket stays open, so each new one lands beside the others)."""
    by_replica: dict[str, list[ClientConnection]] = {}
    for _ in range(MAX_SOCKETS):
        ws = await stack.enter_async_context(connect(url))
        assert ws.response is not None
        replica = ws.response.headers.get(REPLICA_HEADER)
        assert replica, ws.response.headers
        by_replica.setdefault(replica, []).append(ws)
        if len(by_replica) == 2 and all(len(s) >= PER_REPLICA for s in by_replica.values()):
            break
    return by_replica


@slow
def test_http_responses_name_the_replica_and_both_replicas_answer(two_replicas: TwoReplicas) -> None:
    seen = set()
    with httpx.Client(base_url=two_replicas.url, timeout=30) as client:
        for _ in range(200):
            health = client.get("/api/health")
            assert health.status_code == 200, health.text
            assert health.headers[REPLICA_HEADER] == health.json()["replica"]
            seen.add(health.json()["replica"])
            if len(seen) == 2:
                break
    assert len(seen) == 2, seen


@slow
async def test_every_socket_on_both_replicas_gets_every_update(two_replicas: TwoReplicas, tenant_token: str) -> None:
    device = await asyncio.to_thread(_device, two_replicas, tenant_token)
    cmd = {"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": device["id"], "keys": "n"}]}
    async with AsyncExitStack() as stack:
        by_replica = await _open_on_both(stack, f"{two_replicas.ws_url}/api/ws/plugins/telemetry?token={tenant_token}")
        assert len(by_replica) == 2, {r: len(s) for r, s in by_replica.items()}
        sockets = [ws for group in by_replica.values() for ws in group]
        for ws in sockets:
            await ws.send(json.dumps(cmd))
        for ws in sockets:  # the first answer: subscribed, no value yet
            first = await receive(ws)
            assert (first["subscriptionId"], first["errorCode"]) == (1, 0), first
            assert first["data"]["n"][0][1] is None

        await asyncio.to_thread(publish, two_replicas.mqtt_port, device["token"],
                                [{"n": n} for n in range(1, VALUES + 1)])

        async def values_of(ws: ClientConnection) -> list[Any]:
            return [value for _, value in await updates_until(ws, 1, "n", VALUES)]

        got = await asyncio.gather(*(values_of(ws) for ws in sockets))
        expected = [str(n) for n in range(1, VALUES + 1)]
        start = 0
        for replica, group in by_replica.items():
            for index in range(len(group)):
                assert got[start + index] == expected, (replica, index)
            start += len(group)


@slow
async def test_the_general_endpoint_names_its_replica_too(two_replicas: TwoReplicas, tenant_token: str) -> None:
    async with AsyncExitStack() as stack:
        by_replica = await _open_on_both(stack, f"{two_replicas.ws_url}/api/ws")
        assert len(by_replica) == 2, {r: len(s) for r, s in by_replica.items()}
        ws = next(iter(by_replica.values()))[0]
        await ws.send(json.dumps({"authCmd": {"cmdId": 0, "token": tenant_token}, "cmds": [
            {"type": "TIMESERIES", "cmdId": 2, "entityType": "DEVICE", "entityId": str(uuid.uuid4()), "keys": "n"}]}))
        answer = await receive(ws)
        assert answer["subscriptionId"] == 2
        assert set(answer) <= {"subscriptionId", "errorCode", "errorMsg", "data", "latestValues"}  # TB's shape
