"""The actor a replica addresses to watch an entity: it lands on the shard that owns the entity
(the partition hashes the entity id, whatever the actor kind) and registers the watch there."""

from __future__ import annotations

import uuid
from typing import Any

from thingsray.actors.env import ShardEnv
from thingsray.live.shard import Watch
from thingsray.runtime import Actor, Address

LIVE = "live"
"""The actor kind of watches; the address id is the watched entity's id."""


class LiveWatchActor(Actor):
    __slots__ = ("entity_id", "env")

    def __init__(self, address: Address, env: ShardEnv) -> None:
        self.entity_id = uuid.UUID(address.id)
        self.env = env

    async def receive(self, message: Any) -> Any:
        match message:
            case Watch():
                self.env.live.watch(self.entity_id, message)
            case _:
                raise TypeError(f"a live watch actor does not handle {type(message).__name__}")
        return None
