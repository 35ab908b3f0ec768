"""The partition table in force, in PostgreSQL: a first start, a restart with the same or another
shard count, and two coordinators that both try to install a table for the same epoch."""

from __future__ import annotations

import pytest

from thingsray.runtime import PartitionTable
from thingsray.storage import connect
from thingsray.storage.partitions import PartitionMapConflict, load_table, save_table, table_for


@pytest.fixture
async def db(platform):
    database = await connect(platform.database_url, max_size=2)
    saved = await load_table(database)
    yield database
    await database.execute("DELETE FROM partition_map")
    if saved is not None:  # the running platform's table goes back as it was
        await save_table(database, saved, None)
    await database.close()


async def test_a_start_keeps_the_table_in_force_or_moves_on_from_it(db) -> None:
    await db.execute("DELETE FROM partition_map")
    first = await table_for(db, 2, 64)
    assert first == PartitionTable.even(2, 64, epoch=1)
    assert await table_for(db, 2, 64) == first  # a restart with the same shards: the same table
    grown = await table_for(db, 3, 64)
    assert grown.epoch == 2 and grown.shards == 3 and len(first.moved(grown)) == 21
    assert await load_table(db) == grown


async def test_two_coordinators_cannot_install_tables_for_one_epoch(db) -> None:
    await db.execute("DELETE FROM partition_map")
    base = await table_for(db, 2, 64)
    mine, theirs = base.with_shards(3), base.with_shards(4)
    await save_table(db, mine, base.epoch)
    with pytest.raises(PartitionMapConflict, match="another coordinator"):
        await save_table(db, theirs, base.epoch)
    assert await load_table(db) == mine
    with pytest.raises(PartitionMapConflict):
        await save_table(db, PartitionTable.even(5, 64), None)  # "first start" while one is in force
