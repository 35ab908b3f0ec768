"""The actor of an entity that is not a device (asset, customer, tenant...): the one owner of its
telemetry and attribute writes, so every write of an entity is ordered and notified in one place."""

from __future__ import annotations

import uuid
from typing import Any

from thingsray.actors.env import ShardEnv
from thingsray.actors.messages import DeleteAttributes, SaveAttributes, SaveTimeseries
from thingsray.actors.processing import Processing, default_processing
from thingsray.runtime import Actor, Address, Deferred
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.writer import AttributeRow, WriteRequest


class EntityActor(Actor):
    def __init__(self, address: Address, env: ShardEnv, processing: Processing | None = None) -> None:
        self.entity_id = uuid.UUID(address.id)
        self.env = env
        self.processing = processing or default_processing()

    async def receive(self, message: Any) -> Any:
        match message:
            case SaveAttributes(scope=scope, values=values, ts=ts):
                return Deferred(self.env.writer.submit(WriteRequest(attributes=[
                    AttributeRow(self.entity_id, AttributeScope[scope], k, v, ts) for k, v in values.items()])))
            case DeleteAttributes(scope=scope, keys=keys):
                await self.env.delete_attributes(self.entity_id, AttributeScope[scope], keys)
                return None
            case SaveTimeseries():
                return Deferred(self.processing.timeseries(self.env, self.entity_id, message))
            case _:
                raise TypeError(f"an entity actor does not handle {type(message).__name__}")
