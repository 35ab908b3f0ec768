"""A shard hosts the logical actors of its partitions. ``ShardCore`` is the logic (no Ray);
``ShardActor`` is the Ray actor that hosts it (named, restartable, zero CPUs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from thingsray.runtime.address import PartitionTable
from thingsray.runtime.envelope import Batch, Replies, Reply
from thingsray.runtime.host import ActorError, ActorFactory, ActorHost

log = logging.getLogger(__name__)


class WrongShard(ActorError):
    """The batch was routed with a partition table this shard does not hold."""


class ShardCore:
    def __init__(self, index: int, factories: Mapping[str, ActorFactory], table: PartitionTable, *,
                 env: Any = None, mailbox_size: int = 1000, idle_timeout_s: float = 600.0) -> None:
        self.index = index
        self.table = table
        self.host = ActorHost(factories, env=env, mailbox_size=mailbox_size, idle_timeout_s=idle_timeout_s)
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        period = max(0.05, min(self.host.idle_timeout_s / 4, 30.0))
        while True:
            await asyncio.sleep(period)
            try:
                await self.host.passivate_idle()
            except Exception:
                log.exception("passivation sweep failed on shard %d", self.index)

    async def deliver(self, batch: Batch) -> list[Reply]:
        """Queue every envelope in order, then wait for the answers of the asks.

        Tells are answered once queued; an envelope for a partition this shard does not own
        under the sender's epoch is refused, so a stale sender never reaches a second owner."""
        self.start()
        if batch.epoch != self.table.epoch:
            error = f"partition table epoch {batch.epoch} is not this shard's ({self.table.epoch})"
            return Replies(Reply(error=f"WrongShard: {error}") for _ in batch.envelopes)
        pending: list[asyncio.Future[Any] | Reply] = []
        for envelope in batch.envelopes:
            if not envelope.local and self.table.shard_of(envelope.address) != self.index:
                pending.append(Reply(error=f"WrongShard: {envelope.address} is not on shard {self.index}"))
                continue
            try:
                future = await self.host.enqueue(envelope.address, envelope.message, envelope.ask)
            except ActorError as exc:
                pending.append(Reply(error=str(exc)))
                continue
            pending.append(future if future is not None else Reply())
        replies = Replies()
        for item in pending:
            if isinstance(item, Reply):
                replies.append(item)
                continue
            try:
                replies.append(Reply(value=await item))
            except Exception as exc:
                replies.append(Reply(error=str(exc) or type(exc).__name__))
        return replies

    def stats(self) -> dict[str, Any]:
        return {"shard": self.index, "active_actors": self.host.active_count,
                "processed": self.host.processed, "restarts": self.host.restarts,
                "epoch": self.table.epoch}

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.host.stop()


Setup = Callable[[int], Awaitable[Any]]
"""Builds a shard's environment in the shard's own process (pools, writers); given the shard index."""


class ShardActor:
    """The Ray actor around a ``ShardCore``; created through ``runtime.cluster``. ``setup`` runs
    in the shard process before the first batch (and again after every restart)."""

    def __init__(self, index: int, factories: Mapping[str, ActorFactory], table: PartitionTable,
                 options: Mapping[str, Any], setup: Setup | None = None) -> None:
        self.core = ShardCore(index, factories, table, **dict(options))
        self._setup = setup
        self._ready: asyncio.Task[None] | None = None

    async def ready(self) -> int:
        """Run the setup if it has not run; raise what it raised."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_task(self._prepare())
        await asyncio.shield(self._ready)
        return self.core.index

    async def _prepare(self) -> None:
        if self._setup is not None:
            env = await self._setup(self.core.index)
            bind = getattr(env, "bind", None)
            if bind is not None:
                bind(self.core.host, self.core.table)  # lets actors message themselves and other shards
            self.core.host.env = env

    async def deliver(self, batch: Batch) -> list[Reply]:
        await self.ready()
        return await self.core.deliver(batch)

    async def poll(self, topic: str) -> Any:
        """What the environment holds for ``topic`` (a long poll: the environment's ``poll``
        answers when it has something); for pushes from shards to other processes."""
        await self.ready()
        poll = getattr(self.core.host.env, "poll", None)
        if poll is None:
            raise ActorError("this shard's environment has nothing to poll")
        return await poll(topic)

    async def stats(self) -> dict[str, Any]:
        return self.core.stats()

    async def ping(self) -> int:
        return self.core.index

    async def stop(self) -> None:
        await self.core.stop()
        env = self.core.host.env
        close = getattr(env, "close", None)
        if close is not None:
            await close()

    def pid(self) -> int:
        import os

        return os.getpid()
