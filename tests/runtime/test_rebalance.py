"""Moving partitions between shards while mail flows: drain, hand off, resume. In process (the
shards are ShardCores, the router reaches them directly), so a message's whole way is observable."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thingsray.runtime import (
    Actor,
    Address,
    Batch,
    Envelope,
    PartitionTable,
    Reply,
    Router,
    RouterOptions,
    ShardCore,
)
from thingsray.runtime.shard import WRONG_SHARD, StaleTable


class Log:
    """What every actor saw, in order, wherever it ran; and who ran it (shard index)."""

    def __init__(self) -> None:
        self.seen: dict[str, list[int]] = {}
        self.hosts: dict[str, list[int]] = {}
        self.running: set[str] = set()
        self.overlaps = 0


class Counter(Actor):
    """Counts its messages in memory only (live state) and hands the count on when it moves."""

    def __init__(self, address: Address, log: Log, shard: int) -> None:
        self.address, self.log, self.shard, self.count = address, log, shard, 0

    async def receive(self, message: Any) -> Any:
        key = self.address.id
        if key in self.log.running:
            self.log.overlaps += 1  # two hosts running one actor at once
        self.log.running.add(key)
        try:
            await asyncio.sleep(0)
            self.count += 1
            self.log.seen.setdefault(key, []).append(message)
            hosts = self.log.hosts.setdefault(key, [])
            if not hosts or hosts[-1] != self.shard:
                hosts.append(self.shard)
            return self.count
        finally:
            self.log.running.discard(key)

    def export(self) -> Any:
        return self.count

    def resume(self, state: Any) -> None:
        self.count = state


class Cluster:
    """Shards, a directory holding the current table, and the rebalance a coordinator runs."""

    def __init__(self, shards: int, log: Log) -> None:
        self.log = log
        self.table = PartitionTable.even(shards)
        self.cores = [self._core(i) for i in range(shards)]

    def _core(self, index: int) -> ShardCore:
        return ShardCore(index, {"count": lambda a, _env, i=index: Counter(a, self.log, i)}, self.table,
                         pinned_kinds={"pinned"})

    async def refresh(self, _epoch: int) -> tuple[PartitionTable, list[Any]]:
        return self.table, list(self.cores)

    async def grow(self, shards: int) -> None:
        """New shards (built with the old table, as a new process would be), then the rebalance:
        the directory first, so routers that ask learn the new table; every shard begins
        (losers drain and hand off, gainers hold); then every shard ends (gainers resume)."""
        new = self.table.with_shards(shards)
        self.cores += [self._core(i) for i in range(len(self.cores), shards)]
        self.table = new
        handed = await asyncio.gather(*(core.begin_rebalance(new) for core in self.cores))
        everything = {address: state for part in handed for address, state in part.items()}
        await asyncio.gather(*(core.end_rebalance(everything) for core in self.cores))


def router_for(cluster: Cluster, **options: Any) -> Router:
    return Router(cluster.table, list(cluster.cores), RouterOptions(**{"linger_s": 0.0005, **options}),
                  refresh=cluster.refresh)


@given(st.integers(1, 256), st.integers(1, 12), st.integers(1, 12))
def test_a_new_table_is_even_and_moves_only_what_it_must(partitions: int, before: int, after: int) -> None:
    old = PartitionTable(tuple(p % before for p in range(partitions)), 3)
    new = old.with_shards(after)
    assert new.epoch == 4
    counts = [new.owners.count(s) for s in range(after)]
    assert max(counts) - min(counts) <= 1 and sum(counts) == partitions
    must_move = sum(max(0, old.owners.count(s) - counts[s]) if s < after else old.owners.count(s)
                    for s in range(before))
    assert len(old.moved(new)) == must_move


async def test_mail_keeps_its_order_and_state_through_a_rebalance() -> None:
    log = Log()
    cluster = Cluster(2, log)
    router = router_for(cluster, max_batch=50)
    addresses = [Address("count", f"device-{i}") for i in range(200)]

    async def stream(address: Address) -> list[int]:
        return [await router.ask(address, n) for n in range(60)]

    senders = asyncio.gather(*(stream(a) for a in addresses))
    await asyncio.sleep(0.02)
    await cluster.grow(3)
    answers = await senders
    assert all(counts == list(range(1, 61)) for counts in answers), "a count restarted: state was lost"
    assert all(log.seen[a.id] == list(range(60)) for a in addresses), "mail reordered, lost or repeated"
    assert log.overlaps == 0
    moved = [a for a in addresses if len(log.hosts[a.id]) > 1]
    assert moved, "the rebalance moved nothing while mail flowed"
    assert all(log.hosts[a.id][-1] == 2 for a in moved)
    assert router.table.epoch == 2 and router.forwarded > 0


async def test_tells_and_asks_after_a_rebalance_reach_the_new_owner() -> None:
    log = Log()
    cluster = Cluster(1, log)
    router = router_for(cluster)
    address = next(a for a in (Address("count", f"d{i}") for i in range(100))
                   if PartitionTable.even(1).with_shards(2).shard_of(a) == 1)
    assert await router.ask(address, 1) == 1
    await cluster.grow(2)
    await router.tell(address, 2)
    assert await router.ask_alone(address, 3) == 3  # the live count came with it
    assert log.hosts[address.id] == [0, 1]


async def test_a_shard_refuses_mail_routed_by_another_table() -> None:
    log = Log()
    cluster = Cluster(2, log)
    await cluster.grow(3)
    stale = Batch((Envelope(Address("count", "x"), 1, ask=True),), epoch=1)
    [reply] = await cluster.cores[0].deliver(stale)
    assert reply == Reply(2, WRONG_SHARD)


async def test_a_shard_never_goes_back_to_an_earlier_table() -> None:
    log = Log()
    cluster = Cluster(2, log)
    first = cluster.table
    await cluster.grow(3)
    with pytest.raises(StaleTable):
        await cluster.cores[0].begin_rebalance(first.with_shards(2))  # epoch 2 again, another table
    assert await cluster.cores[0].begin_rebalance(cluster.table) == {}  # the same one: a repeat


async def test_a_shard_started_again_fences_its_old_process() -> None:
    """Shard 1 runs again (epoch 2, same owners) while its old process still runs somewhere cut
    off: every other shard holds epoch 2, so what the old one sends with epoch 1 is refused, and
    routers that learned epoch 2 never reach it."""
    log = Log()
    cluster = Cluster(2, log)
    old = cluster.cores[1]
    fenced = PartitionTable(cluster.table.owners, cluster.table.epoch + 1)
    cluster.table = fenced
    cluster.cores[1] = cluster._core(1)
    cluster.cores[1].table = fenced
    assert await cluster.cores[0].begin_rebalance(fenced) == {}  # catching up: nothing moves
    await cluster.cores[0].end_rebalance({})
    on_shard_0 = next(Address("count", f"z{i}") for i in range(100) if fenced.shard_of(Address("count", f"z{i}")) == 0)
    [refused] = await cluster.cores[0].deliver(Batch((Envelope(on_shard_0, 1, ask=True),), epoch=1))
    assert refused == Reply(2, WRONG_SHARD), "the old process reached a current shard"
    router = router_for(cluster)
    on_shard_1 = next(Address("count", f"y{i}") for i in range(100) if fenced.shard_of(Address("count", f"y{i}")) == 1)
    assert await router.ask(on_shard_1, 1) == 1
    assert old.host.active_count == 0, "a router reached the old process"
    assert log.hosts[on_shard_1.id] == [1]
