"""Shards as Ray actors: started once per platform, found by name from any process; and the
directory that holds the partition table in force and moves partitions when shards are added."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import ray

from thingsray.runtime.address import PartitionTable
from thingsray.runtime.envelope import Batch, Reply
from thingsray.runtime.host import ActorFactory
from thingsray.runtime.router import Router, RouterOptions, ShardClient
from thingsray.runtime.shard import Setup, ShardActor

log = logging.getLogger(__name__)

SHARD_PREFIX = "thingsray-shard"
DIRECTORY = "thingsray-directory"
"""The Ray actor name of the partition directory."""


class RayShardClient:
    """A router's way to one shard: one Ray call per batch. When the shard's actor is dead for
    good (its node died and the platform started the shard anew elsewhere, under the same name),
    the handle is looked up again by name for the next attempt."""

    def __init__(self, handle: Any, name: str | None = None) -> None:
        self.handle = handle
        self.name = name

    async def deliver(self, batch: Batch) -> list[Reply]:
        try:
            return await self.handle.deliver.remote(batch)
        except ray.exceptions.RayActorError:
            await self.lookup()
            raise

    async def lookup(self) -> Any:
        """The handle of the actor now holding the name (the same one when nothing replaced it)."""
        if self.name is not None:
            with contextlib.suppress(ValueError):
                self.handle = await asyncio.to_thread(ray.get_actor, self.name)
        return self.handle


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index}"


def start_shards(count: int, factories: Mapping[str, ActorFactory], table: PartitionTable, *,
                 prefix: str = SHARD_PREFIX, options: Mapping[str, Any] | None = None,
                 setup: Setup | None = None, first: int = 0, directory: str | None = None,
                 nodes: Sequence[str] | None = None) -> list[Any]:
    """Create ``count`` named shard actors (indexes from ``first``), dealt round-robin over
    ``nodes`` (every alive node when None): Ray's SPREAD does not spread actors that reserve no
    CPU. Ray restarts a shard whose process died on its node; one whose node died is the
    platform's to start again elsewhere.

    Shards reserve no CPU (DESIGN.md section 8) and restart without limit; a call in flight
    when one dies fails, and the router sends it again. With a ``directory``, a shard (re)starting
    takes the partition table in force from it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(ShardActor)
    source = directory_table(directory) if directory else None
    if nodes is None:
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
    handles = []
    for index in range(first, first + count):
        node = nodes[(index - first) % len(nodes)] if nodes else None
        # pinned: Ray's soft affinity was seen placing half of such actors elsewhere; a shard whose
        # node dies is started anew on another by the platform (Platform.supervise)
        strategy = NodeAffinitySchedulingStrategy(node, soft=False) if node else "SPREAD"
        handles.append(remote.options(
            name=shard_name(prefix, index), num_cpus=0, max_restarts=-1, max_task_retries=0,
            max_concurrency=100_000, scheduling_strategy=strategy,
        ).remote(index, dict(factories), table, dict(options or {}), setup, source))
    ray.get([h.ready.remote() for h in handles])
    return handles


def directory_table(name: str = DIRECTORY) -> Callable[[int | None], Awaitable[PartitionTable]]:
    """The directory's table in force, for a shard (re)starting; ``fence``: the index of a shard
    Ray restarted, which gets a new epoch (DirectoryActor.fence)."""
    async def current(fence: int | None = None) -> PartitionTable:
        handle = await asyncio.to_thread(ray.get_actor, name)
        table: PartitionTable = await (handle.fence.remote(fence) if fence is not None else handle.current.remote())
        return table

    return current


def connect_router(count: int, table: PartitionTable, *, prefix: str = SHARD_PREFIX,
                   options: RouterOptions | None = None, directory: str = DIRECTORY) -> Router:
    """A router in this process to the named shards (looked up once). When a shard refuses it for
    a newer partition table, it asks the directory (when one runs) for the table in force."""
    clients: list[ShardClient] = [RayShardClient(ray.get_actor(shard_name(prefix, i)), shard_name(prefix, i))
                                  for i in range(count)]

    async def refresh(epoch: int) -> tuple[PartitionTable, Sequence[ShardClient]]:
        handle = await asyncio.to_thread(ray.get_actor, directory)
        current: PartitionTable = await handle.current.remote(epoch)
        for index in range(len(clients), current.shards):
            name = shard_name(prefix, index)
            clients.append(RayShardClient(await asyncio.to_thread(ray.get_actor, name), name))
        return current, list(clients)

    return Router(table, clients, options, refresh=refresh)


class TableStore(Protocol):
    """Where the partition table in force is kept (PostgreSQL's ``partition_map`` in the platform)."""

    async def load(self) -> PartitionTable | None: ...

    async def save(self, table: PartitionTable, expected_epoch: int | None) -> None:
        """Install ``table`` only if the one in force has ``expected_epoch``; raise otherwise."""


class DirectoryActor:
    """Holds the partition table in force (loaded from its store after a restart) and moves
    partitions onto new shards: ``grow`` installs the new table in the store (a compare-and-set:
    a second coordinator cannot install another for the same epoch), then every shard begins the
    move (gainers hold mail, losers drain and hand off), then every shard ends it."""

    def __init__(self, store_factory: Callable[[], Awaitable[TableStore]], prefix: str = SHARD_PREFIX) -> None:
        self._store_factory = store_factory
        self._store: TableStore | None = None
        self._table: PartitionTable | None = None
        self.prefix = prefix
        self._moving = asyncio.Lock()

    async def _loaded(self) -> PartitionTable:
        if self._store is None:
            self._store = await self._store_factory()
        if self._table is None:
            self._table = await self._store.load()
            if self._table is None:
                raise RuntimeError("no partition table is in force: the platform installs one before it starts")
        return self._table

    async def current(self, min_epoch: int = 0) -> PartitionTable:
        table = await self._loaded()
        if table.epoch < min_epoch:  # another incarnation moved on: read what is in force
            assert self._store is not None
            self._table = table = await self._store.load() or table
        return table

    async def fence(self, restarted: int) -> PartitionTable:
        """Shard ``restarted`` came back in a new process: a new epoch with the same owners. The
        other shards are told to catch up (not waited for: one of them may be restarting and
        asking this very question), and from then on refuse what the old process, if it still runs
        somewhere cut off, sends with the old epoch; routers follow on their first refusal."""
        async with self._moving:
            table = await self._loaded()
            new = PartitionTable(table.owners, table.epoch + 1)
            assert self._store is not None
            await self._store.save(new, table.epoch)
            self._table = new
        for index in range(new.shards):
            if index != restarted:
                handle = await asyncio.to_thread(ray.get_actor, shard_name(self.prefix, index))
                handle.catch_up.remote()
        log.info("shard %d restarted: partition table epoch %d fences its previous process", restarted, new.epoch)
        return new

    async def grow(self, shards: int) -> PartitionTable:
        """Spread the partitions over ``shards`` shards (they run already); the new table."""
        async with self._moving:
            table = await self._loaded()
            if shards <= table.shards:
                return table
            new = table.with_shards(shards)
            assert self._store is not None
            await self._store.save(new, table.epoch)
            self._table = new
            handles = [await asyncio.to_thread(ray.get_actor, shard_name(self.prefix, i)) for i in range(shards)]
            handed = await asyncio.gather(*(h.begin_rebalance.remote(new) for h in handles))
            everything = {address: state for part in handed for address, state in part.items()}
            held = await asyncio.gather(*(h.end_rebalance.remote(everything) for h in handles))
            log.info("partition table epoch %d: %d shards; %d partitions moved, %d actors handed off, "
                     "%d messages held meanwhile", new.epoch, shards, len(table.moved(new)), len(everything),
                     sum(held))
            return new


def start_directory(store_factory: Callable[[], Awaitable[TableStore]], *,
                    prefix: str = SHARD_PREFIX, name: str = DIRECTORY) -> Any:
    handle = ray.remote(DirectoryActor).options(
        name=name, num_cpus=0, max_restarts=-1, max_concurrency=1000).remote(store_factory, prefix)
    ray.get(handle.current.remote())
    return handle
