"""A shard hosts the logical actors of its partitions. ``ShardCore`` is the logic (no Ray);
``ShardActor`` is the Ray actor that hosts it (named, restartable, zero CPUs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from thingsray.runtime.address import Address, PartitionTable, partition_of
from thingsray.runtime.envelope import Batch, Envelope, Replies, Reply
from thingsray.runtime.host import ActorError, ActorFactory, ActorHost

log = logging.getLogger(__name__)


WRONG_SHARD = "WrongShard"
"""The error of a reply refused for its partition table: its value is the shard's epoch."""


class WrongShard(ActorError):
    """The batch was routed with a partition table this shard does not hold."""


class StaleTable(ActorError):
    """A rebalance asked a shard to go back to an earlier partition table epoch."""


class ShardCore:
    def __init__(self, index: int, factories: Mapping[str, ActorFactory], table: PartitionTable, *,
                 env: Any = None, mailbox_size: int = 1000, idle_timeout_s: float = 600.0,
                 pinned_kinds: Iterable[str] = ()) -> None:
        self.index = index
        self.table = table
        self.host = ActorHost(factories, env=env, mailbox_size=mailbox_size, idle_timeout_s=idle_timeout_s)
        self.pinned_kinds = frozenset(pinned_kinds)
        """Kinds with an actor on every shard (reached by broadcast): they never move."""
        self._held: dict[int, list[tuple[Envelope, asyncio.Future[Any] | None]]] = {}
        """Mail for partitions this shard is taking over, kept until their previous shard has
        handed them off (``end_rebalance``): nothing for a moved actor runs twice at once."""
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

        Tells are answered once queued. A batch routed by another partition table epoch, or an
        envelope for a partition this shard does not own, is refused with ``WRONG_SHARD`` and this
        shard's epoch: the sender learns the current table and sends it to the owner, so a stale
        sender never reaches a second owner."""
        self.start()
        table = self.table
        if batch.epoch != table.epoch:
            return Replies(Reply(table.epoch, WRONG_SHARD) for _ in batch.envelopes)
        pending: list[asyncio.Future[Any] | Reply] = []
        for envelope in batch.envelopes:
            if not envelope.local:
                partition = partition_of(envelope.address, table.partitions)
                if table.owners[partition] != self.index:
                    pending.append(Reply(table.epoch, WRONG_SHARD))
                    continue
                held = self._held.get(partition)
                if held is not None:
                    future = asyncio.get_running_loop().create_future() if envelope.ask else None
                    held.append((envelope, future))
                    pending.append(future if future is not None else Reply())
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

    # --- rebalancing: drain, hand off, resume ----------------------------------------------------
    async def begin_rebalance(self, table: PartitionTable) -> dict[Address, Any]:
        """Adopt ``table`` (a later epoch): mail for partitions this shard gains is held; the actors
        of partitions it loses finish their mail and are dropped; what they export comes back, for
        the partitions' new shards (``end_rebalance``). Adopting the same table again is a no-op."""
        if table.epoch <= self.table.epoch:
            if table == self.table:
                return {}
            raise StaleTable(f"shard {self.index} holds epoch {self.table.epoch}; refusing epoch {table.epoch}")
        moved = self.table.moved(table)
        self.table = table
        adopt = getattr(self.host.env, "adopt_table", None)
        if adopt is not None:
            adopt(table)
        for partition, (_, owner) in moved.items():
            if owner == self.index:
                self._held.setdefault(partition, [])
        lost = {p for p, (owner, _) in moved.items() if owner == self.index}
        if not lost:
            return {}
        partitions = table.partitions
        return await self.host.hand_off(
            lambda address: address.kind not in self.pinned_kinds and partition_of(address, partitions) in lost)

    async def end_rebalance(self, handed: Mapping[Address, Any]) -> int:
        """Take the state the previous shards handed off, then run the held mail in arrival order;
        return how many messages were held."""
        self.host.handed_in.update(handed)
        held, self._held = self._held, {}
        count = 0
        for partition in sorted(held):
            for envelope, future in held[partition]:
                count += 1
                try:
                    reply = await self.host.enqueue(envelope.address, envelope.message, future is not None)
                except ActorError as exc:
                    if future is not None and not future.done():
                        future.set_exception(exc)
                    continue
                if future is not None and reply is not None:
                    _chain(reply, future)
        return count

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
                 options: Mapping[str, Any], setup: Setup | None = None,
                 table_source: Callable[[int | None], Awaitable[PartitionTable]] | None = None) -> None:
        self.core = ShardCore(index, factories, table, **dict(options))
        self._setup = setup
        self._table_source = table_source
        """The table in force (the directory's): a shard Ray restarts is built with the table it
        was first given, which partitions may have moved away from since."""
        self._ready: asyncio.Task[None] | None = None

    async def ready(self) -> int:
        """Run the setup if it has not run; raise what it raised."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_task(self._prepare())
        await asyncio.shield(self._ready)
        return self.core.index

    async def _prepare(self) -> None:
        if self._table_source is not None:
            import ray

            restarted = ray.get_runtime_context().was_current_actor_reconstructed
            current = await self._table_source(self.core.index if restarted else None)
            if current.epoch > self.core.table.epoch:
                log.info("shard %d starts with partition table epoch %d", self.core.index, current.epoch)
                self.core.table = current
        if self._setup is not None:
            env = await self._setup(self.core.index)
            bind = getattr(env, "bind", None)
            if bind is not None:
                bind(self.core.host, self.core.table)  # lets actors message themselves and other shards
            self.core.host.env = env

    async def deliver(self, batch: Batch) -> list[Reply]:
        await self.ready()
        if batch.epoch > self.core.table.epoch:
            await self.catch_up()
        return await self.core.deliver(batch)

    async def catch_up(self) -> int:
        """Take a newer table in force that moves none of this shard's partitions (a fence after
        another shard's restart); a move comes as a rebalance instead. The epoch held after."""
        await self.ready()
        if self._table_source is None:
            return self.core.table.epoch
        current = await self._table_source(None)
        table = self.core.table
        if current.epoch > table.epoch and not table.moved(current):
            self.core.table = current
            adopt = getattr(self.core.host.env, "adopt_table", None)
            if adopt is not None:
                adopt(current)
        return self.core.table.epoch

    async def begin_rebalance(self, table: PartitionTable) -> dict[Address, Any]:
        await self.ready()
        return await self.core.begin_rebalance(table)

    async def end_rebalance(self, handed: Mapping[Address, Any]) -> int:
        await self.ready()
        return await self.core.end_rebalance(handed)

    def table(self) -> PartitionTable:
        return self.core.table

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


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    def copy(done: asyncio.Future[Any]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif done.exception() is not None:
            target.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)
