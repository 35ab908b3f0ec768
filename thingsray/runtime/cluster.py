"""Shards as Ray actors: started once per platform, found by name from any process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ray

from thingsray.runtime.address import PartitionTable
from thingsray.runtime.envelope import Batch, Reply
from thingsray.runtime.host import ActorFactory
from thingsray.runtime.router import Router, RouterOptions
from thingsray.runtime.shard import Setup, ShardActor

SHARD_PREFIX = "thingsray-shard"


class RayShardClient:
    """A router's way to one shard: one Ray call per batch."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def deliver(self, batch: Batch) -> list[Reply]:
        return await self.handle.deliver.remote(batch)


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index}"


def start_shards(count: int, factories: Mapping[str, ActorFactory], table: PartitionTable, *,
                 prefix: str = SHARD_PREFIX, options: Mapping[str, Any] | None = None,
                 setup: Setup | None = None) -> list[Any]:
    """Create ``count`` named shard actors, spread over the cluster's nodes.

    Shards reserve no CPU (DESIGN.md section 8) and restart without limit; a call in flight
    when one dies fails, and the router sends it again."""
    remote = ray.remote(ShardActor)
    handles = []
    for index in range(count):
        handles.append(remote.options(
            name=shard_name(prefix, index), num_cpus=0, max_restarts=-1, max_task_retries=0,
            max_concurrency=100_000, scheduling_strategy="SPREAD",
        ).remote(index, dict(factories), table, dict(options or {}), setup))
    ray.get([h.ready.remote() for h in handles])
    return handles


def connect_router(count: int, table: PartitionTable, *, prefix: str = SHARD_PREFIX,
                   options: RouterOptions | None = None) -> Router:
    """A router in this process to the named shards (looked up once)."""
    clients = [RayShardClient(ray.get_actor(shard_name(prefix, i))) for i in range(count)]
    return Router(table, clients, options)
