"""The tenant actor: one per (tenant, shard), as ThingsBoard has one tenant actor per node.

It is the shard's view of its tenant: the device profiles its device actors need (loaded once,
dropped when a profile changes), and usage counters of what the tenant's devices sent through
this shard. Device actors reach it in-process (``TenantView``); the REST API reaches every
shard's copy by broadcast (``ProfileChanged``, ``GetUsage``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thingsray.runtime import Actor, Address

if TYPE_CHECKING:
    from thingsray.actors.env import ShardEnv

TENANT = "tenant"


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    profile_id: uuid.UUID
    name: str
    transport_type: str
    default_rule_chain_id: uuid.UUID | None
    profile_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GetProfile:
    profile_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    """A device profile was saved or deleted: the next message of its devices sees the change."""

    profile_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class GetUsage:
    """Answered with this shard's counters for the tenant."""


@dataclass(slots=True)
class Usage:
    messages: int = 0
    data_points: int = 0
    attribute_writes: int = 0
    rpc_requests: int = 0
    active_devices: int = 0

    def to_json(self) -> dict[str, int]:
        return {"messages": self.messages, "dataPoints": self.data_points,
                "attributeWrites": self.attribute_writes, "rpcRequests": self.rpc_requests}


class TenantActor(Actor):
    def __init__(self, address: Address, env: ShardEnv) -> None:
        self.tenant_id = uuid.UUID(address.id)
        self.env = env
        self.view = env.tenant_view(self.tenant_id)

    def can_passivate(self) -> bool:
        return False  # the view holds counters device actors write into

    async def receive(self, message: Any) -> Any:
        match message:
            case GetProfile(profile_id=profile_id):
                return await self.view.profile(profile_id)
            case ProfileChanged(profile_id=profile_id):
                self.view.profiles.pop(profile_id, None)
                return None
            case GetUsage():
                return {"tenantId": str(self.tenant_id), "shard": self.env.shard, **self.view.usage.to_json()}
            case _:
                raise TypeError(f"a tenant actor does not handle {type(message).__name__}")


class TenantView:
    """The tenant's state on one shard, shared in-process by its device actors and its actor."""

    __slots__ = ("db", "profiles", "rules", "tenant_id", "usage")

    def __init__(self, tenant_id: uuid.UUID, env: ShardEnv) -> None:
        from thingsray.rules.engine import TenantRules

        self.tenant_id = tenant_id
        self.db = env.db
        self.profiles: dict[uuid.UUID, ProfileInfo] = {}
        self.usage = Usage()
        self.rules = TenantRules(tenant_id, env.engine)
        """The tenant's rule chains as this shard runs them."""

    async def profile(self, profile_id: uuid.UUID) -> ProfileInfo | None:
        cached = self.profiles.get(profile_id)
        if cached is not None:
            return cached
        row = await self.db.fetchrow(
            "SELECT id, name, transport_type, default_rule_chain_id, profile_data FROM device_profile"
            " WHERE id = $1 AND tenant_id = $2", profile_id, self.tenant_id)
        if row is None:
            return None
        info = ProfileInfo(row["id"], row["name"], row["transport_type"], row["default_rule_chain_id"],
                           row["profile_data"] or {})
        self.profiles[profile_id] = info
        return info
