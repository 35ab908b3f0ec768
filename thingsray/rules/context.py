"""What a node may do while it processes a message: the engine's services, one object per
(tenant, shard). Nodes talk to this protocol only, never to the database pool, the writer or
Ray directly, so the same node runs on any shard and is tested with the real engine.

Every ``save_*`` submits its write in order and returns; the message is acknowledged only once
all of them are committed (DESIGN.md section 4), so a node never waits for a commit and the next
message of the device can start. ``dispatch`` is for external calls (REST, MQTT, email), which
the acknowledgement does not wait for.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from thingsray.kv import Value

if TYPE_CHECKING:
    from thingsray.rules.msg import EntityId, TbMsg


class RuleContext(Protocol):
    tenant_id: uuid.UUID
    shard: int

    # --- persistence (awaited: committed when they return) ------------------------------------
    async def save_timeseries(self, entity: EntityId, rows: Sequence[tuple[int, str, Value]],
                              ttl_s: int = 0) -> None:
        """Store ``(ts, key, value)`` rows as time series and latest values. Returns once the rows
        are submitted in order; the message's acknowledgement waits for their commit."""

    async def save_attributes(self, entity: EntityId, scope: str, values: Mapping[str, Value], ts: int, *,
                              notify_device: bool = False, only_on_change: bool = False) -> None:
        """``scope`` is CLIENT_SCOPE, SERVER_SCOPE or SHARED_SCOPE; shared attributes of a device
        reach its sessions when ``notify_device``."""

    async def delete_attributes(self, entity: EntityId, scope: str, keys: Sequence[str]) -> None: ...

    # --- reads --------------------------------------------------------------------------------
    async def get_attributes(self, entity: EntityId, scope: str, keys: Sequence[str]) -> dict[str, Value]:
        """The named attributes that exist (missing keys are absent from the answer)."""

    async def get_latest(self, entity: EntityId, keys: Sequence[str]) -> dict[str, tuple[int, Value]]:
        """key -> (ts, value) of the latest time series values that exist."""

    async def get_entity(self, entity: EntityId) -> dict[str, Any] | None:
        """The entity as the REST API shows it (a device, asset, customer, tenant, ...), or None."""

    async def find_related(self, entity: EntityId, query: Mapping[str, Any]) -> list[EntityId]:
        """Entities reached by a ThingsBoard ``relationsQuery`` (direction, maxLevel,
        fetchLastLevelOnly, filters[{relationType, entityTypes}]) from ``entity``."""

    async def relation_exists(self, from_id: EntityId, to_id: EntityId, relation_type: str) -> bool: ...

    # --- messages -----------------------------------------------------------------------------
    def enqueue(self, msg: TbMsg, chain_id: uuid.UUID | None = None) -> None:
        """Start a new message in a chain of this tenant (its root chain when None); for
        generators, alarm events and the like. Not awaited by the current message."""

    def schedule(self, delay_s: float, msg: TbMsg) -> None:
        """Hand ``msg`` back to the calling node after ``delay_s`` (generators, counters)."""

    def continuation(self) -> Callable[[str, TbMsg], None]:
        """A function ``(relation, msg)`` that routes a message on from the calling node, later,
        as a message of its own (answers that arrive after the node returned: RPC responses,
        REST API call results). Take it inside ``process``: it remembers where the node is."""

    def dispatch(self, work: Coroutine[Any, Any, Any], *, what: str) -> None:
        """Run an external call in the background; failures are logged and counted, and the
        node routes its own retries. ``what`` names it in the log."""

    def enqueue_to_originator(self, msg: TbMsg) -> None:
        """Start ``msg`` where its originator's own messages start (a device's profile chain,
        else the root chain), by the originator's actor on its shard, after what that actor does
        now; not awaited (ThingsBoard's enqueue of an alarm node's action message)."""

    # --- devices, alarms ------------------------------------------------------------------------
    async def device_profile(self, device_id: uuid.UUID) -> Any:
        """The ``ProfileInfo`` of a device of this tenant (``profile_id``, ``name``,
        ``profile_data``...; actors/tenant.py), None when there is no such device. Cached per
        shard; a saved profile is seen from the next message on."""

    def is_local(self, entity: EntityId) -> bool:
        """Whether this shard owns ``entity``: its messages run here (state a node loads for
        many entities at start-up is only for its own)."""

    def send_rpc(self, device_id: uuid.UUID, request: Mapping[str, Any]) -> asyncio.Future[Any]:
        """A server-side RPC to a device (``{"method", "params", "oneway", "timeout", ...}``; a
        ``requestUUID`` from a REST call's message makes the device's answer that call's answer
        too); the future of its ``RpcOutcome``. Never await it inside ``process`` (the device's own answer
        cannot arrive while its message runs): ``dispatch`` a waiter that ``enqueue``s the reply."""

    async def reply_rpc(self, device_id: uuid.UUID, request_id: int, body: Any) -> None:
        """Answer a device's client-side RPC (``TO_SERVER_RPC_REQUEST``)."""

    def report_device_state(self, device_id: uuid.UUID, event: str, ts: int) -> None:
        """Tell a device's actor it connected, was active, disconnected or went inactive
        (CONNECT_EVENT, ACTIVITY_EVENT, DISCONNECT_EVENT, INACTIVITY_EVENT at ``ts``), as a
        transport would: it updates its state attributes and sends the event into the rule
        engine (ThingsBoard's RuleEngineDeviceStateManager). Not awaited."""

    @property
    def db(self) -> Any:
        """The shard's ``Database``, for enrichment queries the methods above do not cover."""

    @property
    def alarms(self) -> Any:
        """The tenant's ``AlarmService`` (storage/alarms.py)."""

    @property
    def http(self) -> Any:
        """A shared ``httpx.AsyncClient`` for external REST calls."""
