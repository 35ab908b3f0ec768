"""The partition table in force, kept in PostgreSQL (``partition_map``): what every shard, router
and coordinator agrees on after a restart. A change is a compare-and-set on the epoch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from thingsray.runtime.address import PartitionTable
from thingsray.storage.database import Database, connect
from thingsray.storage.entities import now_ms


class PartitionMapConflict(Exception):
    """Another coordinator installed a table first: the epoch expected is not the one in force."""


async def load_table(db: Database) -> PartitionTable | None:
    row = await db.fetchrow("SELECT epoch, owners FROM partition_map WHERE id = 1")
    return None if row is None else PartitionTable(tuple(row["owners"]), row["epoch"])


async def save_table(db: Database, table: PartitionTable, expected_epoch: int | None) -> None:
    """Install ``table`` if the table in force has ``expected_epoch`` (None: there is none yet)."""
    if expected_epoch is None:
        done = await db.fetchval(
            "INSERT INTO partition_map (id, epoch, owners, updated_time) VALUES (1, $1, $2, $3)"
            " ON CONFLICT (id) DO NOTHING RETURNING epoch", table.epoch, list(table.owners), now_ms())
    else:
        done = await db.fetchval(
            "UPDATE partition_map SET epoch = $1, owners = $2, updated_time = $3 WHERE id = 1 AND epoch = $4"
            " RETURNING epoch", table.epoch, list(table.owners), now_ms(), expected_epoch)
    if done is None:
        current = await load_table(db)
        raise PartitionMapConflict(f"the partition table in force has epoch {current.epoch if current else None}, "
                                   f"not {expected_epoch}: another coordinator changed it")


async def table_for(db: Database, shards: int, partitions: int) -> PartitionTable:
    """The table to start a platform of ``shards`` shards with: the one in force when it fits,
    else one moved to ``shards`` from it (a later epoch, so nothing of an earlier run is taken
    for current), or an even one for a first start."""
    current = await load_table(db)
    if current is not None and current.partitions == partitions and current.shards == shards:
        return current
    if current is None or current.partitions != partitions:
        table = PartitionTable.even(shards, partitions, epoch=(current.epoch + 1) if current else 1)
    else:
        table = current.with_shards(shards)
    await save_table(db, table, current.epoch if current else None)
    return table


class PostgresTableStore:
    """The directory's ``TableStore`` (thingsray.runtime.cluster) on ``partition_map``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self) -> PartitionTable | None:
        return await load_table(self.db)

    async def save(self, table: PartitionTable, expected_epoch: int | None) -> None:
        await save_table(self.db, table, expected_epoch)


def postgres_table_store(database_url: str) -> Callable[[], Awaitable[PostgresTableStore]]:
    """What the directory actor builds its store with, in its own process."""
    async def build() -> PostgresTableStore:
        return PostgresTableStore(await connect(database_url, min_size=1, max_size=2))

    return build
