"""Live updates from the shards that commit them to a replica's subscriptions, through Ray only."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
import ray
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import unique
from thingsray.live import LiveUpdate
from thingsray.live.replica import LiveSubscriptions
from thingsray.live.shard import LivePublisher, Watch
from thingsray.platform import Platform, partition_table
from thingsray.runtime.cluster import SHARD_PREFIX, connect_router, shard_name
from thingsray.storage.writer import AttributeRow, TsRow, WriteRequest

WAIT = 20.0


def test_a_publisher_sends_what_is_watched_to_each_watching_replica_only() -> None:
    async def run() -> None:
        publisher = LivePublisher()
        watched, other = uuid.uuid4(), uuid.uuid4()
        publisher.watch(watched, Watch("r1", True))
        publisher.watch(watched, Watch("r2", True))
        publisher.committed([WriteRequest([TsRow(watched, "t", 2, 20), TsRow(watched, "t", 1, 10),
                                           TsRow(other, "t", 1, 99)],
                                          attributes=[AttributeRow(watched, 3, "mode", "eco", 5)])])
        known, updates = await publisher.poll("r1", timeout_s=1)
        assert known
        assert [(u.kind, u.scope, u.values) for u in updates] == [
            ("TIMESERIES", None, {"t": [(1, 10), (2, 20)]}), ("ATTRIBUTES", "SHARED_SCOPE", {"mode": [(5, "eco")]})]
        publisher.watch(watched, Watch("r2", False))
        publisher.attributes_deleted(watched, 3, ["mode"])
        assert (await publisher.poll("r1", timeout_s=1))[1][0].deleted == ("mode",)
        assert (await publisher.poll("r2", timeout_s=0.05))[1][:2] == updates[:2]  # what r2 had before it left
        assert await publisher.poll("r2", timeout_s=0.05) == (True, [])
        assert (await publisher.poll("r3", timeout_s=0.05))[0] is False  # unknown: it must watch again

    asyncio.run(run())


@pytest.fixture
def device(tenant: httpx.Client) -> dict[str, str]:
    token = f"LIVE-{uuid.uuid4().hex[:12]}"
    created = tenant.post("/api/device", params={"accessToken": token}, json={"name": unique("live device")})
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": token}


async def test_committed_values_reach_a_subscription_in_order(platform: Platform, device: dict[str, str],
                                                              mqtt_port: int, tenant: httpx.Client) -> None:
    router = connect_router(platform.settings.shards, partition_table(platform.settings))
    shards = [ray.get_actor(shard_name(SHARD_PREFIX, i)) for i in range(platform.settings.shards)]
    subscriptions = LiveSubscriptions(router, shards)
    got: list[LiveUpdate] = []
    arrived = asyncio.Event()

    def sink(update: LiveUpdate) -> None:
        got.append(update)
        arrived.set()

    unsubscribe = await subscriptions.subscribe(uuid.UUID(device["id"]), sink)
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set(device["token"])
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        for n in range(1, 21):
            client.publish("v1/devices/me/telemetry", json.dumps({"n": n}), qos=1)

        async def wait_for(done: Any) -> None:
            deadline = time.monotonic() + WAIT
            while not done() and time.monotonic() < deadline:
                arrived.clear()
                try:
                    async with asyncio.timeout(1):
                        await arrived.wait()
                except TimeoutError:
                    pass

        def values() -> list[Any]:
            return [v for u in got if u.kind == "TIMESERIES" for _, v in u.values.get("n", [])]

        await wait_for(lambda: len(values()) >= 20)
        assert values() == list(range(1, 21))  # every value, in the order the device sent them

        saved = await asyncio.to_thread(tenant.post, f"/api/plugins/telemetry/DEVICE/{device['id']}/SHARED_SCOPE",
                                        json={"target": 21.5})
        assert saved.status_code == 200, saved.text
        def shared() -> list[LiveUpdate]:
            return [u for u in got if u.kind == "ATTRIBUTES" and u.scope == "SHARED_SCOPE"]

        await wait_for(shared)
        assert shared() and shared()[0].values["target"][0][1] == 21.5

        await unsubscribe()
        before = len(got)
        client.publish("v1/devices/me/telemetry", json.dumps({"n": 99}), qos=1).wait_for_publish(WAIT)
        await asyncio.sleep(0.5)
        assert len(got) == before  # nothing after unsubscribing
    finally:
        client.loop_stop()
        client.disconnect()
        await subscriptions.close()
        await router.close()
