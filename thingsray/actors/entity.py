"""The actor of an entity that is not a device (asset, customer, tenant...): the one owner of its
telemetry and attribute writes, so every write of an entity is ordered and notified in one place,
and the one that runs rule engine messages about it (an alarm's change) through its tenant's chain."""

from __future__ import annotations

import uuid
from typing import Any

from thingsray.actors.env import ShardEnv
from thingsray.actors.messages import DeleteAttributes, SaveAttributes, SaveTimeseries, ToRuleEngine
from thingsray.actors.processing import save_timeseries
from thingsray.runtime import Actor, Address, Deferred
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.writer import AttributeRow, WriteRequest


class EntityActor(Actor):
    def __init__(self, address: Address, env: ShardEnv) -> None:
        self.entity_id = uuid.UUID(address.id)
        self.env = env

    async def receive(self, message: Any) -> Any:
        match message:
            case SaveAttributes(scope=scope, values=values, ts=ts):
                return Deferred(self.env.writer.submit(WriteRequest(attributes=[
                    AttributeRow(self.entity_id, AttributeScope[scope], k, v, ts) for k, v in values.items()])))
            case DeleteAttributes(scope=scope, keys=keys):
                await self.env.delete_attributes(self.entity_id, AttributeScope[scope], keys)
                return None
            case SaveTimeseries():
                return Deferred(save_timeseries(self.env, self.entity_id, message))
            case ToRuleEngine(tenant_id=tenant_id, msg=msg):
                # an entity that is not a device starts its messages in the tenant's root chain
                return Deferred(await self.env.tenant_view(tenant_id).rules.process(msg))
            case _:
                raise TypeError(f"an entity actor does not handle {type(message).__name__}")
