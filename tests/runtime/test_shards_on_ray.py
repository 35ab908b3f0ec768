"""Shards as real Ray actors: a router in this process, actors in shard processes, and a shard
killed mid-stream whose in-flight batches the router sends again."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import pytest
import ray
from ray import cloudpickle

from thingsray.runtime import Actor, Address, PartitionTable, RouterOptions
from thingsray.runtime.cluster import connect_router, start_shards

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # shard processes cannot import tests/


class Ledger:
    """A Ray actor standing for durable storage: it outlives shard processes."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}

    def append(self, key: str, value: int) -> int:
        self.rows.setdefault(key, []).append(value)
        return len(self.rows[key])

    def load(self, key: str) -> list[int]:
        return list(self.rows.get(key, []))

    def all(self) -> dict[str, list[int]]:
        return self.rows


class Counter(Actor):
    """Persists every value before answering, like a device actor persists before the PUBACK."""

    def __init__(self, address: Address, ledger_name: str) -> None:
        self.address = address
        self.ledger = ray.get_actor(ledger_name)
        self.values: list[int] = []

    async def activate(self) -> None:
        self.values = await self.ledger.load.remote(self.address.id)

    async def receive(self, message: Any) -> Any:
        if message == "pid":
            import os

            return os.getpid()
        if message in self.values:  # a retried message: recognised, not stored twice
            return len(self.values)
        self.values.append(message)
        return await self.ledger.append.remote(self.address.id, message)


@pytest.fixture
def shard_setup(platform):
    prefix = f"test-shard-{uuid.uuid4().hex[:6]}"
    ledger_name = f"{prefix}-ledger"
    ledger = ray.remote(Ledger).options(name=ledger_name, num_cpus=0).remote()
    table = PartitionTable.even(2)
    handles = start_shards(2, {"counter": lambda a, _env: Counter(a, ledger_name)}, table, prefix=prefix)
    yield prefix, table, handles, ledger
    for handle in handles:
        ray.kill(handle, no_restart=True)
    ray.kill(ledger)


async def test_many_actors_across_two_shard_processes(shard_setup):
    prefix, table, handles, _ = shard_setup
    router = connect_router(2, table, prefix=prefix)
    answers = await asyncio.gather(*(router.ask(Address("counter", f"c{i}"), i) for i in range(2000)))
    assert answers == [1] * 2000
    stats = await asyncio.gather(*(h.stats.remote() for h in handles))
    assert sum(s["active_actors"] for s in stats) == 2000
    assert all(s["active_actors"] > 0 for s in stats)
    pids = {await router.ask(Address("counter", f"c{i}"), "pid") for i in range(20)}
    assert len(pids) == 2  # two processes host them


async def test_a_killed_shard_restarts_and_loses_no_acknowledged_message(shard_setup):
    prefix, table, handles, ledger = shard_setup
    router = connect_router(2, table, prefix=prefix, options=RouterOptions(max_batch=50, retry_delay_s=0.2))
    victim = handles[0]
    old_pid = await victim.pid.remote()
    keys = [f"k{i}" for i in range(40)]

    async def stream(key: str) -> list[int]:
        acknowledged = []
        for value in range(30):
            await router.ask(Address("counter", key), value)
            acknowledged.append(value)
        return acknowledged

    senders = [asyncio.create_task(stream(k)) for k in keys]
    await asyncio.sleep(0.3)
    ray.kill(victim, no_restart=False)  # the process dies with batches in flight; Ray restarts it
    acknowledged = await asyncio.gather(*senders)
    assert await victim.pid.remote() != old_pid
    stored = await ledger.all.remote()
    for key, acked in zip(keys, acknowledged, strict=True):
        assert stored[key] == acked, f"{key}: acknowledged {acked}, stored {stored.get(key)}"
    assert router.retried_batches >= 1
