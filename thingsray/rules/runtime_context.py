"""The rule engine's services on a shard (``EngineServices``) and the ``RuleContext`` a node gets
for one message (``RunContext``).

Writes are submitted to the shard's writer in the order nodes make them and collected on the
run: the message's durability future waits for all of them. So a node never waits for a commit
(the next message of the device can start), yet nothing is acknowledged before it is committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from thingsray.kv import JsonValue, Value
from thingsray.rules.msg import EntityId, TbMsg
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.writer import AttributeRow, TsRow, WriteRequest

if TYPE_CHECKING:
    from thingsray.rules.engine import ChainRuntime, TenantRules
    from thingsray.storage.database import Database
    from thingsray.storage.events import DebugEvent
    from thingsray.storage.writer import TelemetryWriter

log = logging.getLogger(__name__)

CHANNEL = "thingsray_rule_chain"
EVENT_FLUSH_S = 1.0
EVENT_PRUNE_S = 600.0
_DONE: asyncio.Future[None] | None = None

ENTITY_TABLES = {"DEVICE": "DEVICE", "ASSET": "ASSET", "CUSTOMER": "CUSTOMER", "TENANT": "TENANT",
                 "USER": "USER", "ENTITY_VIEW": "ENTITY_VIEW", "DASHBOARD": "DASHBOARD",
                 "DEVICE_PROFILE": "DEVICE_PROFILE", "ASSET_PROFILE": "ASSET_PROFILE", "RULE_CHAIN": "RULE_CHAIN"}


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _log_failure(what: str) -> Any:
    """A done-callback that logs (and so retrieves) the failure of a message nobody awaits."""
    def done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("rule engine: %s failed: %r", what, future.exception())

    return done


def typed(value: Any) -> Value:
    """A JSON value as stored: objects and arrays become JSON text."""
    if isinstance(value, bool | int | float | str | JsonValue):
        return value
    if value is None:
        return JsonValue("null")
    return JsonValue.of(value)


class EngineServices:
    """What the tenants' engines on one shard share: storage, the writer, scripts, debug events."""

    def __init__(self, db: Database, writer: TelemetryWriter, *, shard: int, send: Any = None,
                 node_timeout_s: float = 10.0, debug_event_ttl_s: int = 604_800,
                 debug_events_per_entity: int = 10_000) -> None:
        from thingsray.rules.script import ScriptService
        from thingsray.storage.alarms import AlarmService
        from thingsray.storage.events import EventStore
        from thingsray.storage.rule_chains import RuleChainStore

        self.db = db
        self.writer = writer
        self.shard = shard
        self._send = send
        self.node_timeout_s = node_timeout_s
        self.chains = RuleChainStore(db)
        self.events = EventStore(db)
        self.alarms = AlarmService(db)
        self._scripts: ScriptService | None = None
        self._script_class = ScriptService
        self._http: Any = None
        self._pending_events: list[DebugEvent] = []
        self._flusher: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: Any = None
        self._alarm_reads = asyncio.Lock()
        self._tenants: Mapping[uuid.UUID, Any] = {}
        self._view_of: Callable[[uuid.UUID], Any] | None = None
        self.debug_event_ttl_s = debug_event_ttl_s
        self.debug_events_per_entity = debug_events_per_entity
        self.background_failures = 0
        self.live: Any = None
        """The shard's LivePublisher (set by the shard): deletes made here are published too."""
        self.partitions: Any = None
        """The shard's ``PartitionTable`` (set when the shard binds its host): which entities are
        this shard's. None: every entity is (one shard, tests)."""

    @property
    def scripts(self) -> Any:
        if self._scripts is None:
            self._scripts = self._script_class()
        return self._scripts

    @property
    def http(self) -> Any:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=30, follow_redirects=False)
        return self._http

    def send(self, address: Any, message: Any) -> asyncio.Future[Any]:
        """Ask an actor of this platform (a device) without waiting (ShardEnv.send)."""
        if self._send is None:
            raise RuntimeError("this rule engine has no way to reach actors")
        return self._send(address, message)

    def run_context(self, rules: TenantRules, msg: TbMsg, device: Any) -> RunContext:
        return RunContext(self, rules, msg, device)

    def context_for(self, rules: TenantRules, chain: ChainRuntime, index: int) -> RunContext:
        """A context for a node outside any message (its ``start``: generators arm their timers)."""
        ctx = RunContext(self, rules, None, None)
        ctx.at(chain, index)
        return ctx

    # --- background work and debug events -------------------------------------------------------
    def background(self, work: Coroutine[Any, Any, Any], *, what: str) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def finished(done: asyncio.Task[Any]) -> None:
            self._tasks.discard(done)
            if not done.cancelled() and done.exception() is not None:
                self.background_failures += 1
                log.warning("rule engine: %s failed: %r", what, done.exception())

        task.add_done_callback(finished)

    def record_event(self, event: DebugEvent) -> None:
        self._pending_events.append(event)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().call_later(EVENT_FLUSH_S, self._flush_events)

    def _flush_events(self) -> None:
        self._flusher = None
        events, self._pending_events = self._pending_events, []
        if events:
            self.background(self.events.record(events), what=f"recording {len(events)} debug events")

    async def prune_events(self) -> int:
        return await self.events.prune(self.debug_event_ttl_s, self.debug_events_per_entity)

    def start_pruning(self, every_s: float = EVENT_PRUNE_S) -> None:
        """Delete debug events past their TTL or beyond the newest N per node, every ``every_s``
        (one shard does it for the platform)."""
        async def prune_forever() -> None:
            while True:
                await asyncio.sleep(every_s)
                try:
                    removed = await self.prune_events()
                except Exception as exc:
                    log.warning("rule engine: pruning debug events failed: %r", exc)
                    continue
                if removed:
                    log.info("rule engine: pruned %d debug events", removed)

        self.background(prune_forever(), what="pruning debug events")

    # --- chain changes from other processes -----------------------------------------------------
    async def listen(self, database_url: str, tenants: Mapping[uuid.UUID, Any]) -> None:
        """Follow ``CHANNEL``: a saved chain reloads on every shard (``TenantRules.chain_changed``);
        and the alarm changes (``storage.alarms.CHANNEL``), published to the replicas watching."""
        import asyncpg

        from thingsray.storage.alarms import CHANNEL as ALARM_CHANNEL

        self._tenants = tenants
        conn = await asyncpg.connect(database_url)
        await conn.add_listener(CHANNEL, self._on_notify)
        await conn.add_listener(ALARM_CHANNEL, self._on_alarm)
        self._listener = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            change = json.loads(payload)
            tenant_id, chain_id = uuid.UUID(change["tenantId"]), uuid.UUID(change["ruleChainId"])
        except (ValueError, KeyError, TypeError):
            log.warning("rule engine: ignored a malformed chain notification %r", payload[:200])
            return
        event = str(change.get("event", "UPDATED"))
        view = self._tenants.get(tenant_id)
        if view is not None:
            view.rules.chain_changed(chain_id, event)
        if self._view_of is not None and event != "DELETED":
            self.background(self.start_sources(self._view_of, chain_id),
                            what=f"starting the generators of rule chain {chain_id}")

    def _on_alarm(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        """An alarm changed (``AlarmService`` announces it): publish it to the replicas watching
        one of the entities it shows on. Only the shard owning an entity has its watchers, so each
        replica gets each change once; the alarm is read only when someone watches."""
        if self.live is None:
            return
        try:
            change = json.loads(payload)
            alarm_id = uuid.UUID(change["alarmId"])
            entity_ids = [uuid.UUID(e) for e in change["entityIds"]]
            deleted = bool(change.get("deleted", False))
        except (ValueError, KeyError, TypeError):
            log.warning("rule engine: ignored a malformed alarm notification %r", payload[:200])
            return
        watched = [e for e in entity_ids if e in self.live.watchers]
        if watched:
            self.background(self._publish_alarm(alarm_id, watched, deleted), what=f"publishing alarm {alarm_id}")

    async def _publish_alarm(self, alarm_id: uuid.UUID, entity_ids: list[uuid.UUID], deleted: bool) -> None:
        # one read at a time, in notification order: a later change is never overtaken by an older read
        async with self._alarm_reads:
            alarm = None if deleted else await self.alarms.get(alarm_id)
            if alarm is None and not deleted:
                return  # deleted meanwhile: its delete notification follows
            self.live.alarm_changed(entity_ids, str(alarm_id), alarm)

    async def start_sources(self, view_of: Callable[[uuid.UUID], Any], chain_id: uuid.UUID | None = None) -> None:
        """Load the chains that hold source nodes (``RuleNode.source``: generators, which make
        messages of their own, so no message would ever load their chain) so that their ``start``
        runs on this shard: every such chain when the shard starts, ``chain_id`` when it changed.
        ``view_of`` gives a tenant's view (its ``rules``) on this shard."""
        import thingsray.rules.nodes  # noqa: F401  (fills NODE_TYPES with the catalogue)
        from thingsray.rules.node import NODE_TYPES

        self._view_of = view_of
        types = [name for name, cls in NODE_TYPES.items() if getattr(cls, "source", False)]
        query = ("SELECT DISTINCT c.tenant_id, c.id FROM rule_node n JOIN rule_chain c ON c.id = n.rule_chain_id"
                 " WHERE n.type = ANY($1::varchar[])")
        rows = await (self.db.fetch(query, types) if chain_id is None
                      else self.db.fetch(query + " AND c.id = $2", types, chain_id))
        for row in rows:
            try:
                await view_of(row["tenant_id"]).rules.chain(row["id"])
            except Exception as exc:  # one tenant's broken chain must not keep the others' from starting
                self.background_failures += 1
                log.warning("rule engine: rule chain %s of tenant %s did not start: %r", row["id"],
                            row["tenant_id"], exc)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flush_events()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
        if self._http is not None:
            await self._http.aclose()


class RunContext:
    """The ``RuleContext`` of one message's run (see rules/context.py for the contract)."""

    __slots__ = ("_chain", "_index", "device", "failure", "msg", "pending", "rules", "services")

    def __init__(self, services: EngineServices, rules: TenantRules, msg: TbMsg | None, device: Any) -> None:
        self.services = services
        self.rules = rules
        self.msg = msg
        self.device = device
        self.pending: list[asyncio.Future[Any]] = []
        self.failure: BaseException | None = None
        self._chain: ChainRuntime | None = None
        self._index = 0

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.rules.tenant_id

    @property
    def shard(self) -> int:
        return self.services.shard

    @property
    def alarms(self) -> Any:
        return self.services.alarms

    @property
    def http(self) -> Any:
        return self.services.http

    @property
    def db(self) -> Database:
        return self.services.db

    # --- the engine's bookkeeping ---------------------------------------------------------------
    def at(self, chain: ChainRuntime, index: int) -> None:
        self._chain, self._index = chain, index

    def debug(self, event: DebugEvent) -> None:
        self.services.record_event(event)

    def fail(self, error: BaseException) -> None:
        log.warning("rule engine, tenant %s: %s", self.rules.tenant_id, error)
        self.failure = error

    def note_unrouted(self, msg: TbMsg, why: str) -> None:
        log.debug("tenant %s: message %s (%s) not processed: %s", self.rules.tenant_id, msg.id, msg.type, why)

    def finish(self) -> asyncio.Future[None]:
        if self.failure is not None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(self.failure)
            return future
        if not self.pending:
            return _done()
        if len(self.pending) == 1:
            return self.pending[0]
        return asyncio.gather(*self.pending)  # type: ignore[return-value]

    def _is_originator(self, entity: EntityId) -> bool:
        return self.device is not None and entity.id == self.device.device_id

    # --- persistence ----------------------------------------------------------------------------
    async def save_timeseries(self, entity: EntityId, rows: Sequence[tuple[int, str, Value]],
                              ttl_s: int = 0) -> None:
        self.pending.append(self.services.writer.submit(
            WriteRequest([TsRow(entity.id, key, ts, value) for ts, key, value in rows])))

    async def save_attributes(self, entity: EntityId, scope: str, values: Mapping[str, Value], ts: int, *,
                              notify_device: bool = False, only_on_change: bool = False) -> None:
        if scope not in AttributeScope.__members__:
            raise ValueError(f"unknown attribute scope {scope!r}")
        values = {k: typed(v) for k, v in values.items()}
        if only_on_change:
            current = await self.get_attributes(entity, scope, list(values))
            values = {k: v for k, v in values.items() if k not in current or current[k] != v}
            if not values:
                return
        if self._is_originator(entity):
            self.pending.append(self.device.save_attributes_now(scope, dict(values), ts, notify=notify_device))
            return
        if entity.entity_type == "DEVICE":
            from thingsray.actors.messages import SaveAttributes
            from thingsray.runtime import Address

            self.pending.append(self.services.send(Address("device", str(entity.id)),
                                                   SaveAttributes(scope, dict(values), ts)))
            return
        self.pending.append(self.services.writer.submit(WriteRequest(attributes=[
            AttributeRow(entity.id, AttributeScope[scope], k, v, ts) for k, v in values.items()])))

    async def delete_attributes(self, entity: EntityId, scope: str, keys: Sequence[str]) -> None:
        if entity.entity_type == "DEVICE" and not self._is_originator(entity):
            from thingsray.actors.messages import DeleteAttributes
            from thingsray.runtime import Address

            self.pending.append(self.services.send(Address("device", str(entity.id)),
                                                   DeleteAttributes(scope, tuple(keys))))
            return
        if self._is_originator(entity):
            await self.device.delete_attributes(scope, tuple(keys))
            return
        await self.services.db.execute(
            "DELETE FROM attribute_kv a USING key_dictionary d WHERE a.entity_id = $1 AND a.attribute_type = $2"
            " AND d.key_id = a.attribute_key AND d.key = ANY($3::varchar[])",
            entity.id, int(AttributeScope[scope]), list(keys))
        if self.services.live is not None:
            self.services.live.attributes_deleted(entity.id, scope, keys)

    # --- reads ----------------------------------------------------------------------------------
    async def get_attributes(self, entity: EntityId, scope: str, keys: Sequence[str]) -> dict[str, Value]:
        if self._is_originator(entity):
            cache = self.device.attribute_cache(scope)
            if cache is not None:
                return {k: cache[k][0] for k in keys if k in cache}
        from thingsray.actors.env import row_value

        rows = await self.services.db.fetch(
            "SELECT d.key, a.bool_v, a.str_v, a.long_v, a.dbl_v, a.json_v::text AS json_v FROM attribute_kv a"
            " JOIN key_dictionary d ON d.key_id = a.attribute_key"
            " WHERE a.entity_id = $1 AND a.attribute_type = $2 AND d.key = ANY($3::varchar[])",
            entity.id, int(AttributeScope[scope]), list(keys))
        return {r["key"]: row_value(r) for r in rows}

    async def get_latest(self, entity: EntityId, keys: Sequence[str]) -> dict[str, tuple[int, Value]]:
        from thingsray.actors.env import row_value

        rows = await self.services.db.fetch(
            "SELECT d.key, l.ts, l.bool_v, l.str_v, l.long_v, l.dbl_v, l.json_v::text AS json_v"
            " FROM ts_kv_latest l JOIN key_dictionary d ON d.key_id = l.key"
            " WHERE l.entity_id = $1 AND d.key = ANY($2::varchar[])", entity.id, list(keys))
        return {r["key"]: (r["ts"], row_value(r)) for r in rows}

    async def get_entity(self, entity: EntityId) -> dict[str, Any] | None:
        from thingsray.storage import tables
        from thingsray.storage.entities import EntityRepository

        table = getattr(tables, ENTITY_TABLES.get(entity.entity_type, ""), None)
        if table is None:
            return None
        found = await EntityRepository(self.services.db, table).get(entity.id)
        if found is None:
            return None
        tenant = found.get("tenantId")
        owner = tenant.get("id") if isinstance(tenant, dict) else None
        if entity.entity_type != "TENANT" and owner is not None and owner != str(self.tenant_id):
            return None  # never another tenant's entity
        if entity.entity_type == "TENANT" and entity.id != self.tenant_id:
            return None
        return found

    async def find_related(self, entity: EntityId, query: Mapping[str, Any]) -> list[EntityId]:
        from thingsray.storage.relations import RelationStore

        direction = str(query.get("direction") or "FROM").upper()
        if direction not in ("FROM", "TO"):
            raise ValueError(f"relationsQuery.direction must be FROM or TO, got {direction!r}")
        max_level = int(query.get("maxLevel") or 1)
        last_only = bool(query.get("fetchLastLevelOnly"))
        filters = query.get("filters") or []
        found = await RelationStore(self.services.db).related(entity.id, entity.entity_type, direction,
                                                              "COMMON", max_level)
        far = "to" if direction == "FROM" else "from"
        out: dict[tuple[str, uuid.UUID], EntityId] = {}
        for _level, leaf, relation in found:
            if last_only and not leaf:
                continue
            target = relation[far]
            if filters and not any(
                    (not f.get("relationType") or f.get("relationType") == relation["type"])
                    and (not f.get("entityTypes") or target["entityType"] in f.get("entityTypes"))
                    for f in filters):
                continue
            related = EntityId(target["entityType"], uuid.UUID(target["id"]))
            out[(related.entity_type, related.id)] = related
        return list(out.values())

    async def relation_exists(self, from_id: EntityId, to_id: EntityId, relation_type: str) -> bool:
        return bool(await self.services.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM relation WHERE from_id = $1 AND from_type = $2 AND to_id = $3"
            " AND to_type = $4 AND relation_type = $5 AND relation_type_group = 'COMMON')",
            from_id.id, from_id.entity_type, to_id.id, to_id.entity_type, relation_type))

    async def device_profile(self, device_id: uuid.UUID) -> Any:
        """The ``ProfileInfo`` (actors/tenant.py: id, name, default chain, ``profile_data``) of a
        device of this tenant; None when there is no such device. The tenant view's cached copy
        when the shard has one (a saved profile is seen from the next message on)."""
        if self._is_originator(EntityId("DEVICE", device_id)) and self.device.tenant is not None:
            if self.device.profile_id is None:
                return None
            return await self.device.tenant.profile(self.device.profile_id)
        from thingsray.actors.tenant import ProfileInfo

        profile_id = await self.services.db.fetchval(
            "SELECT device_profile_id FROM device WHERE id = $1 AND tenant_id = $2", device_id, self.tenant_id)
        if profile_id is None:
            return None
        view = self.services._tenants.get(self.tenant_id)
        if view is not None:
            return await view.profile(profile_id)
        row = await self.services.db.fetchrow(
            "SELECT id, name, transport_type, default_rule_chain_id, profile_data FROM device_profile"
            " WHERE id = $1 AND tenant_id = $2", profile_id, self.tenant_id)
        if row is None:
            return None
        return ProfileInfo(row["id"], row["name"], row["transport_type"], row["default_rule_chain_id"],
                           row["profile_data"] or {})

    def is_local(self, entity: EntityId) -> bool:
        """Whether this shard owns ``entity`` (its actor lives here and its messages run here)."""
        table = self.services.partitions
        if table is None:
            return True
        from thingsray.runtime import Address

        return bool(table.shard_of(Address(entity.entity_type.lower(), str(entity.id))) == self.services.shard)

    async def originator_default_chain(self) -> uuid.UUID | None:
        if self.device is not None:
            return await self.device.default_rule_chain()
        return None

    # --- messages -------------------------------------------------------------------------------
    def enqueue(self, msg: TbMsg, chain_id: uuid.UUID | None = None) -> None:
        rules = self.rules

        async def run() -> None:
            await (await rules.process(msg, chain_id))

        self.services.background(run(), what=f"message {msg.type} of {msg.originator.entity_type} "
                                              f"{msg.originator.id}")

    def schedule(self, delay_s: float, msg: TbMsg) -> None:
        chain, index, rules = self._chain, self._index, self.rules
        if chain is None:
            raise RuntimeError("schedule() is only for a node's own messages")
        services = self.services

        async def run() -> None:
            await (await rules.process(msg, start=(chain, index)))

        def fire() -> None:
            services.background(run(), what=f"a message scheduled by node {index} of chain {chain.chain_id}")

        asyncio.get_running_loop().call_later(max(0.0, delay_s), fire)

    def continuation(self) -> Any:
        """A function ``(relation, msg)`` that routes a message on from the calling node, later,
        as a message of its own (answers that arrive after the node returned: RPC responses,
        REST API call results). Take it inside ``process``: it remembers where the node is."""
        chain, index, rules, services = self._chain, self._index, self.rules, self.services
        if chain is None:
            raise RuntimeError("continuation() needs the node's place in its chain")

        def tell_next(relation: str, msg: TbMsg) -> None:
            async def run() -> None:
                ctx = services.run_context(rules, msg, None)
                stack: list[Any] = []
                rules._route(ctx, stack, chain, index, relation, msg, ())
                if stack:
                    await rules._walk(ctx, stack)
                await ctx.finish()

            services.background(run(), what=f"{relation} of node {index} of chain {chain.chain_id}")

        return tell_next

    def dispatch(self, work: Coroutine[Any, Any, Any], *, what: str) -> None:
        self.services.background(work, what=what)

    def enqueue_to_originator(self, msg: TbMsg) -> None:
        """Start ``msg`` where its originator's own messages start (a device's chain: its
        profile's default, else the root chain), run by the originator's actor on the shard that
        owns it, after what that actor does now. Not awaited by the current message."""
        from thingsray.actors.messages import DEVICE, ENTITY, ToRuleEngine
        from thingsray.runtime import Address

        kind = DEVICE if msg.originator.entity_type == "DEVICE" else ENTITY
        sent = self.services.send(Address(kind, str(msg.originator.id)), ToRuleEngine(self.tenant_id, msg))
        sent.add_done_callback(_log_failure(f"message {msg.type} to {msg.originator.entity_type} "
                                            f"{msg.originator.id}"))

    # --- devices --------------------------------------------------------------------------------
    def send_rpc(self, device_id: uuid.UUID, request: Mapping[str, Any]) -> asyncio.Future[Any]:
        from thingsray.actors.messages import ToDeviceRpc
        from thingsray.runtime import Address, Deferred

        rpc = ToDeviceRpc(str(request.get("method", "")), request.get("params"),
                          bool(request.get("oneway", False)), int(request.get("timeout", 10_000)),
                          request.get("requestUUID") or None)
        if self._is_originator(EntityId("DEVICE", device_id)):
            outcome = self.device.rpc(rpc)
            if isinstance(outcome, Deferred):
                return outcome.future
            answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            answered.set_result(outcome)
            return answered
        return self.services.send(Address("device", str(device_id)), rpc)

    def report_device_state(self, device_id: uuid.UUID, event: str, ts: int) -> None:
        from thingsray.actors.messages import DeviceStateEvent
        from thingsray.runtime import Address

        if self._is_originator(EntityId("DEVICE", device_id)):
            self.device.state_event(event, ts)
            return
        sent = self.services.send(Address("device", str(device_id)), DeviceStateEvent(event, ts))
        sent.add_done_callback(_log_failure(f"{event} of device {device_id}"))

    async def reply_rpc(self, device_id: uuid.UUID, request_id: int, body: Any) -> None:
        from thingsray.actors.messages import ClientRpcReply
        from thingsray.runtime import Address

        if self._is_originator(EntityId("DEVICE", device_id)):
            self.device.client_rpc_reply(request_id, body)
            return
        self.pending.append(self.services.send(Address("device", str(device_id)), ClientRpcReply(request_id, body)))
