"""Where a logical actor lives: its address, its partition, and the shard that hosts it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

DEFAULT_PARTITIONS = 64


@dataclass(frozen=True, slots=True)
class Address:
    """A logical actor: its kind (``"device"``) and its id within the kind."""

    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.id}"


def partition_of(address: Address, partitions: int = DEFAULT_PARTITIONS) -> int:
    """A stable hash of the address over ``partitions``; the same in every process and release.

    Only the id is hashed, so every kind of actor for one entity (its device actor, its rule-chain
    state) lands on the same partition."""
    digest = hashlib.blake2b(address.id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


@dataclass(frozen=True, slots=True)
class PartitionTable:
    """Partition -> shard index. The only routing state; ``epoch`` grows with every change so a
    stale table is recognised."""

    owners: tuple[int, ...]
    epoch: int = 1

    @classmethod
    def even(cls, shards: int, partitions: int = DEFAULT_PARTITIONS, epoch: int = 1) -> PartitionTable:
        if shards < 1:
            raise ValueError("a partition table needs at least one shard")
        return cls(tuple(p % shards for p in range(partitions)), epoch)

    @property
    def partitions(self) -> int:
        return len(self.owners)

    def shard_of(self, address: Address) -> int:
        return self.owners[partition_of(address, len(self.owners))]

    def partitions_of(self, shard: int) -> list[int]:
        return [p for p, owner in enumerate(self.owners) if owner == shard]

    @property
    def shards(self) -> int:
        return max(self.owners) + 1

    def with_shards(self, shards: int) -> PartitionTable:
        """The table over ``shards`` shards that moves the fewest partitions: each shard ends with
        an even share (one more for the first ``partitions % shards``); a partition stays where it
        is while its shard is within its share. The epoch is the next one."""
        if shards < 1:
            raise ValueError("a partition table needs at least one shard")
        base, extra = divmod(self.partitions, shards)
        share = [base + (1 if s < extra else 0) for s in range(shards)]
        kept = [0] * shards
        owners: list[int | None] = []
        for owner in self.owners:
            if owner < shards and kept[owner] < share[owner]:
                kept[owner] += 1
                owners.append(owner)
            else:
                owners.append(None)
        room = [s for s in range(shards) for _ in range(share[s] - kept[s])]
        placed = iter(room)
        return PartitionTable(tuple(o if o is not None else next(placed) for o in owners), self.epoch + 1)

    def moved(self, other: PartitionTable) -> dict[int, tuple[int, int]]:
        """Partition -> (owner here, owner in ``other``) for each partition whose owner differs."""
        return {p: (a, b) for p, (a, b) in enumerate(zip(self.owners, other.owners, strict=True)) if a != b}
