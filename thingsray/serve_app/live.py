"""Writes of live data from the REST API, through the shard that owns the entity.

Telemetry and attribute writes, attribute deletes and RPC all go to the entity's actor (a
device actor for devices, an entity actor for assets, customers and the rest), which persists,
updates its live state and pushes to the device; reads go to the database directly. A
server-side RPC and an alarm's change enter the rule engine there, as in ThingsBoard.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from thingsray.actors.messages import (
    DEVICE,
    ENTITY,
    DeleteAttributes,
    DeviceChanged,
    GetDeviceState,
    RpcOutcome,
    RpcStatus,
    SaveAttributes,
    SaveTimeseries,
    ServerRpc,
    ToRuleEngine,
)
from thingsray.actors.tenant import TENANT, GetUsage, ProfileChanged
from thingsray.kv import Value
from thingsray.rules.msg import TbMsg
from thingsray.runtime import Address, Router
from thingsray.storage.entities import now_ms
from thingsray.transports.payloads import TelemetryGroup

RPC_MARGIN_S = 5.0


def address_of(entity_type: str, entity_id: uuid.UUID) -> Address:
    return Address(DEVICE if entity_type == "DEVICE" else ENTITY, str(entity_id))


class LiveData:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def save_attributes(self, entity_type: str, entity_id: uuid.UUID, scope: str,
                              values: dict[str, Value]) -> None:
        """Returns once committed; SHARED_SCOPE values of a device reach its session at once."""
        await self.router.ask(address_of(entity_type, entity_id), SaveAttributes(scope, values, now_ms()))

    async def delete_attributes(self, entity_type: str, entity_id: uuid.UUID, scope: str,
                                keys: tuple[str, ...]) -> None:
        await self.router.ask(address_of(entity_type, entity_id), DeleteAttributes(scope, keys))

    async def save_timeseries(self, entity_type: str, entity_id: uuid.UUID,
                              groups: list[TelemetryGroup]) -> None:
        await self.router.ask(address_of(entity_type, entity_id), SaveTimeseries(tuple(groups), now_ms()))

    async def rpc(self, device_id: uuid.UUID, method: str, params: Any, *, oneway: bool,
                  timeout_ms: int, persistent: bool = False) -> RpcOutcome:
        """A server-side RPC through the device's rule chain (as ThingsBoard sends it): the
        device's answer, or TIMEOUT when none came within ``timeout_ms``."""
        expiration = now_ms() + timeout_ms
        request = ServerRpc(str(uuid.uuid4()), method, params, oneway, expiration, persistent)
        try:
            # the device actor answers at the expiration; the margin covers a restarted actor
            async with asyncio.timeout(timeout_ms / 1000 + RPC_MARGIN_S):
                outcome: RpcOutcome = await self.router.ask_alone(Address(DEVICE, str(device_id)), request)
        except TimeoutError:
            return RpcOutcome(RpcStatus.TIMEOUT, 0)
        return outcome

    async def rule_engine(self, tenant_id: uuid.UUID, msg: TbMsg) -> None:
        """Start ``msg`` where its originator's messages start, through the shard that owns the
        originator; returns once that shard has it (not once the chain has run)."""
        originator = msg.originator
        await self.router.tell(address_of(originator.entity_type, originator.id), ToRuleEngine(tenant_id, msg))

    async def device_changed(self, device_id: uuid.UUID, kind: str) -> None:
        """Tell the live device actor its entity changed ("UPDATED", "DELETED", "CREDENTIALS_UPDATED")."""
        await self.router.tell(Address(DEVICE, str(device_id)), DeviceChanged(kind))

    async def profile_changed(self, tenant_id: uuid.UUID, profile_id: uuid.UUID) -> None:
        """Every shard's view of the tenant forgets the profile; the next message loads it anew."""
        await self.router.broadcast(Address(TENANT, str(tenant_id)), ProfileChanged(profile_id))

    async def tenant_usage(self, tenant_id: uuid.UUID) -> dict[str, int]:
        """What the tenant's devices sent, summed over every shard since the shards started."""
        totals: dict[str, int] = {}
        for part in await self.router.broadcast(Address(TENANT, str(tenant_id)), GetUsage()):
            for key, value in part.items():
                if isinstance(value, int) and key != "shard":
                    totals[key] = totals.get(key, 0) + value
        return totals

    async def device_state(self, device_id: uuid.UUID) -> dict[str, Any]:
        state: dict[str, Any] = await self.router.ask(Address(DEVICE, str(device_id)), GetDeviceState())
        return state
