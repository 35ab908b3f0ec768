"""The router with in-process shards: batching, order, answers, retries after a shard failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.runtime.test_host import Recorder, Store
from thingsray.runtime import (
    ActorError,
    Address,
    Batch,
    PartitionTable,
    RemoteError,
    Reply,
    Router,
    RouterOptions,
    ShardCore,
    ShardUnavailable,
)


class LocalShard:
    """A ShardCore reached directly; ``fail_next`` makes the next calls fail as a dead shard's do."""

    def __init__(self, core: ShardCore) -> None:
        self.core = core
        self.batches: list[int] = []
        self.fail_next = 0

    async def deliver(self, batch: Batch) -> list[Reply]:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("shard died")
        self.batches.append(len(batch.envelopes))
        return await self.core.deliver(batch)


def make(shards: int, store: Store, **options: Any) -> tuple[Router, list[LocalShard]]:
    table = PartitionTable.even(shards)
    local = [LocalShard(ShardCore(i, {"rec": lambda a, _env: Recorder(a, store)}, table)) for i in range(shards)]
    return Router(table, local, RouterOptions(**options)), local


async def test_asks_are_answered_and_batched_per_shard():
    store = Store()
    router, shards = make(3, store)
    answers = await asyncio.gather(*(router.ask(Address("rec", f"d{i}"), i) for i in range(3000)))
    assert answers == [1] * 3000
    batches = [n for s in shards for n in s.batches]
    assert sum(batches) == 3000
    assert len(batches) < 100  # thousands of messages, a few dozen calls
    assert all(s.core.host.active_count > 0 for s in shards)  # spread over every shard


async def test_order_per_actor_is_kept_across_batches():
    store = Store()
    router, _ = make(2, store, max_batch=7)
    await asyncio.gather(*(router.tell(Address("rec", f"o{i % 5}"), i) for i in range(500)))
    for n in range(5):
        assert await router.ask(Address("rec", f"o{n}"), ("get",)) == [i for i in range(500) if i % 5 == n]


async def test_a_batch_to_a_failed_shard_is_sent_again_whole():
    store = Store()
    router, shards = make(1, store, retry_delay_s=0.01)
    shards[0].fail_next = 2
    answers = await asyncio.gather(*(router.ask(Address("rec", "r"), i) for i in range(50)))
    assert sorted(answers) == list(range(1, 51))
    assert router.retried_batches == 2
    assert store.values["r"] == list(range(50))  # nothing lost, nothing reordered


async def test_a_shard_that_stays_down_fails_the_asks_with_a_clear_error():
    router, shards = make(1, Store(), retry_delay_s=0.001, retry_attempts=3)
    shards[0].fail_next = 10
    with pytest.raises(ShardUnavailable, match="after 3 attempts"):
        await router.ask(Address("rec", "x"), 1)


async def test_actor_errors_come_back_as_remote_errors():
    router, _ = make(1, Store())
    with pytest.raises(RemoteError, match="failed on tuple"):
        await router.ask(Address("rec", "e"), ("boom",))


async def test_a_stale_partition_table_is_refused():
    store = Store()
    table = PartitionTable.even(1, epoch=2)
    shard = LocalShard(ShardCore(0, {"rec": lambda a, _env: Recorder(a, store)}, table))
    router = Router(PartitionTable.even(1, epoch=1), [shard])
    with pytest.raises(ActorError, match="moved to epoch 2 and this router cannot refresh it"):
        await router.ask(Address("rec", "s"), 1)
    assert "s" not in store.values


async def test_broadcast_reaches_the_actor_of_an_address_on_every_shard():
    store = Store()
    router, shards = make(3, store)
    answers = await router.broadcast(Address("rec", "per-shard"), "hello")
    # three actors, one per shard; they share the test's store, so each saw the ones before it
    assert sorted(answers) == [1, 2, 3]
    assert all(s.core.host.is_active(Address("rec", "per-shard")) for s in shards)
