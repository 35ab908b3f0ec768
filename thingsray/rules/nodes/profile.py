"""The device profile node (ThingsBoard's TbDeviceProfileNode): raises, updates and clears the
alarms a device's profile defines (``profileData.alarms``) as the device's data arrives, and
passes every message on by Success.

Each device's progress (repeat counts, when a DURATION condition began to hold, the latest values
its rules use, its active alarms) lives in the node, keyed by device id, as in ThingsBoard:
- the progress belongs to the node: two chains with a profile node each keep their own, and
  ``rule_node_state`` rows are keyed by the node;
- a device's messages all run on the shard that owns the device, one at a time, so that shard's
  instance of the node sees all of them; a per-device lock orders them with the node's timers;
- a DURATION rule under way arms a timer (``ctx.schedule``) for the moment it would turn true,
  which comes back to this node with the device as originator, so an alarm is raised when the
  duration passes without new data.
With ``persistAlarmRulesState`` the progress is written to ``rule_node_state`` whenever it changes
and read back the first time a device needs it after a restart; ``fetchAlarmRulesStateOnStart``
loads the shard's devices' progress when the node starts, so their DURATION timers run again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.msg import EntityId, MsgType, TbMsg
from thingsray.rules.node import FAILURE, SUCCESS, NodeConfigError, NodeInit, Outputs, RuleNode, node, success
from thingsray.rules.nodes.telemetry import metadata_ts, telemetry_rows
from thingsray.rules.profile_alarms import AlarmDefinition, Lookup, owner_attributes, parse_alarms, profile_keys
from thingsray.rules.profile_eval import (
    AlarmEvaluation,
    AlarmEvaluationError,
    Snapshot,
    Update,
    Verdict,
    details_of,
)
from thingsray.storage.alarms import SEVERITIES, alarm_json, to_json
from thingsray.storage.entities import NULL_UUID, now_ms
from thingsray.storage.rule_node_state import RuleNodeStateStore
from thingsray.transports.payloads import typed

if TYPE_CHECKING:
    from thingsray.kv import Value
    from thingsray.rules.context import RuleContext

log = logging.getLogger(__name__)

PREFIX = "org.thingsboard.rule.engine.profile."
SELF_MSG = "DEVICE_PROFILE_PERIODIC_SELF_MSG"
"""The node's own timer message (ThingsBoard's TbMsgType of the same name)."""
ALARM_CREATED, ALARM_UPDATED = "Alarm Created", "Alarm Updated"
ALARM_SEVERITY_UPDATED, ALARM_CLEARED = "Alarm Severity Updated", "Alarm Cleared"
SCOPES = ("CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE")
"""The order attribute scopes are read in: a key in several scopes takes the last one's value."""
_UNKNOWN: Any = object()


class DeviceAlarms:
    """One device's progress on its profile's alarm rules (ThingsBoard's DeviceState)."""

    __slots__ = ("current", "customer_id", "device", "evaluations", "lock", "metadata", "owners", "profile_data",
                 "profile_id", "snapshot", "timer_due")

    def __init__(self, device: EntityId, profile_id: uuid.UUID, profile_data: Any,
                 definitions: tuple[AlarmDefinition, ...], persisted: Any) -> None:
        self.device = device
        self.profile_id = profile_id
        self.profile_data = profile_data
        states = persisted.get("alarmStates") if isinstance(persisted, dict) else None
        states = states if isinstance(states, dict) else {}
        self.evaluations = {d.id: AlarmEvaluation.start(d, states.get(d.id)) for d in definitions}
        self.snapshot: Snapshot | None = None
        self.current: dict[str, dict[str, Any] | None] | None = None
        """alarm type -> the active alarm (AlarmInfo JSON) or None; None until read from storage."""
        self.customer_id: uuid.UUID | None = _UNKNOWN
        self.owners: Lookup = {}
        self.metadata: dict[str, str] = {}
        self.lock = asyncio.Lock()
        self.timer_due: int | None = None

    @property
    def definitions(self) -> list[AlarmDefinition]:
        return [e.definition for e in self.evaluations.values()]

    def update_profile(self, profile_data: Any, definitions: tuple[AlarmDefinition, ...]) -> None:
        """The profile was saved: rules that still exist keep their progress (ThingsBoard's updateProfile)."""
        self.profile_data = profile_data
        old = self.evaluations
        self.evaluations = {}
        for definition in definitions:
            evaluation = old.get(definition.id)
            if evaluation is None:
                evaluation = AlarmEvaluation.start(definition)
            else:
                evaluation.load(definition)
            self.evaluations[definition.id] = evaluation
        self.snapshot = None  # the new rules may use other keys: read them again
        self.current = None

    def to_json(self) -> dict[str, Any]:
        """ThingsBoard's PersistedDeviceState."""
        return {"alarmStates": {alarm_id: e.to_json() for alarm_id, e in self.evaluations.items()}}


def _flag(config: dict[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value is None or isinstance(value, bool):
        return bool(value)
    raise NodeConfigError(f"'{key}' must be true or false, got {value!r}")


@node
class DeviceProfileNode(RuleNode):
    type = PREFIX + "TbDeviceProfileNode"
    name = "device profile"
    component = "ACTION"
    relations = (ALARM_CREATED, ALARM_UPDATED, ALARM_SEVERITY_UPDATED, ALARM_CLEARED, SUCCESS, FAILURE)
    default_config: ClassVar[dict[str, Any]] = {"persistAlarmRulesState": False, "fetchAlarmRulesStateOnStart": False}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.persist = _flag(config, "persistAlarmRulesState")
        self.fetch_on_start = _flag(config, "fetchAlarmRulesStateOnStart")
        self.states: dict[uuid.UUID, DeviceAlarms] = {}
        self._parsed: dict[uuid.UUID, tuple[Any, tuple[AlarmDefinition, ...]]] = {}
        self._closed = False

    # --- life ---------------------------------------------------------------------------------------
    async def start(self, ctx: RuleContext) -> None:
        store = RuleNodeStateStore(ctx.db)
        me = self.init.node_id
        if not self.persist and ctx.is_local(EntityId("RULE_NODE", me)):
            ctx.dispatch(store.clear(me), what=f"forgetting the alarm rule states of node {me}")
        if self.persist and self.fetch_on_start:
            ctx.dispatch(self._fetch_states(ctx, store), what=f"loading the alarm rule states of node {me}")

    async def _fetch_states(self, ctx: RuleContext, store: RuleNodeStateStore) -> None:
        """The shard's devices' progress, read at start; timers of DURATION rules under way are armed."""
        loaded = 0
        async for entity_type, entity_id, data in store.all(self.init.node_id):
            device = EntityId(entity_type, entity_id)
            if entity_type != "DEVICE" or not ctx.is_local(device) or self._closed:
                continue
            _, state = await self._state(ctx, device, persisted=data)
            if state is None:
                continue
            loaded += 1
            async with state.lock:
                if state.snapshot is None:
                    await self._load_snapshot(ctx, state)
                    state.owners = await self._owners(ctx, state)
                await self._ensure_current(ctx, state)
                self._arm(ctx, state)
        log.info("device profile node %s: alarm rule state of %d devices loaded", self.init.node_id, loaded)

    async def close(self) -> None:
        self._closed = True
        self.states.clear()

    # --- messages -------------------------------------------------------------------------------------
    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if msg.type == SELF_MSG:
            return await self._harvest(ctx, msg)
        device = msg.originator
        if device.entity_type != "DEVICE":
            return success(msg)
        if msg.type == MsgType.ENTITY_UPDATED:
            state = self.states.get(device.id)
            profile = msg.data.get("deviceProfileId") if isinstance(msg.data, dict) else None
            if state is not None and isinstance(profile, dict) and profile.get("id") != str(state.profile_id):
                await self._forget(ctx, device)
            return success(msg)
        if msg.type == MsgType.ENTITY_DELETED:
            await self._forget(ctx, device)
            return success(msg)
        exists, state = await self._state(ctx, device)
        if state is None:
            # no alarm rules in its profile: on by Success; no such device (any more): acknowledged
            # and dropped, as ThingsBoard does
            return success(msg) if exists else []
        async with state.lock:
            outputs, changed = await self._on_message(ctx, state, msg)
            if changed and self.persist:
                await self._save(ctx, state)
            self._arm(ctx, state)
        return [*outputs, (SUCCESS, msg)]

    async def _on_message(self, ctx: RuleContext, state: DeviceAlarms, msg: TbMsg) -> tuple[Outputs, bool]:
        kind = msg.type
        scope = msg.metadata.get("scope") or ""
        if kind == MsgType.POST_TELEMETRY_REQUEST or (
                kind in (MsgType.ACTIVITY_EVENT, MsgType.INACTIVITY_EVENT) and not scope):
            return await self._telemetry(ctx, state, msg)
        if kind in (MsgType.POST_ATTRIBUTES_REQUEST, MsgType.ATTRIBUTES_UPDATED, MsgType.ACTIVITY_EVENT,
                    MsgType.INACTIVITY_EVENT):
            return await self._attributes(ctx, state, msg)
        if kind == MsgType.ATTRIBUTES_DELETED:
            keys = msg.data.get("attributes") if isinstance(msg.data, dict) else None
            if not isinstance(keys, list) or not keys:
                return [], False
            snapshot = await self._snapshot(ctx, state)
            removed = frozenset(("ATTRIBUTE", str(k)) for k in keys)
            for key in removed:
                snapshot.remove(key)
            return await self._evaluate(ctx, state, msg, Update("ATTRIBUTE", removed), {k for _, k in removed})
        if kind in (MsgType.ALARM_CLEAR, MsgType.ALARM_DELETE, MsgType.ALARM_ACK):
            return [], self._alarm_changed(state, msg)
        if kind in (MsgType.ENTITY_ASSIGNED, MsgType.ENTITY_UNASSIGNED):
            state.customer_id = _UNKNOWN
        return [], False

    async def _telemetry(self, ctx: RuleContext, state: DeviceAlarms, msg: TbMsg) -> tuple[Outputs, bool]:
        by_ts: dict[int, list[tuple[str, Value]]] = {}
        for ts, key, value in telemetry_rows(msg.data, metadata_ts(msg)):
            by_ts.setdefault(ts, []).append((key, value))
        snapshot = await self._snapshot(ctx, state)
        outputs: Outputs = []
        changed = False
        for ts in sorted(by_ts):  # oldest first, as ThingsBoard
            updated = frozenset([("TIME_SERIES", key) for key, value in by_ts[ts]
                                 if snapshot.put(("TIME_SERIES", key), ts, value)])
            snapshot.ts = ts
            if updated:
                out, more = await self._evaluate(ctx, state, msg, Update("TIME_SERIES", updated), set())
                outputs += out
                changed |= more
        return outputs, changed

    async def _attributes(self, ctx: RuleContext, state: DeviceAlarms, msg: TbMsg) -> tuple[Outputs, bool]:
        if not isinstance(msg.data, dict):
            raise ValueError(f"{msg.type} data must be a JSON object of attributes")
        values = {k: v for k, v in ((k, typed(k, raw)) for k, raw in msg.data.items()) if v is not None}
        if not values:
            return [], False
        snapshot = await self._snapshot(ctx, state)
        ts = now_ms()  # attributes carry their save time, as ThingsBoard's converter gives them
        updated = frozenset(key for key in (("ATTRIBUTE", k) for k in values) if snapshot.put(key, ts, values[key[1]]))
        snapshot.ts = ts
        if not updated:
            return [], False
        return await self._evaluate(ctx, state, msg, Update("ATTRIBUTE", updated), set(values))

    def _alarm_changed(self, state: DeviceAlarms, msg: TbMsg) -> bool:
        """An alarm of the device was cleared, deleted or acknowledged elsewhere (REST, another node)."""
        alarm = msg.data if isinstance(msg.data, dict) else {}
        alarm_id = (alarm.get("id") or {}).get("id") if isinstance(alarm.get("id"), dict) else None
        changed = False
        for evaluation in state.evaluations.values():
            alarm_type = evaluation.definition.alarm_type
            current = (state.current or {}).get(alarm_type)
            if current is None or alarm_id is None or current["id"]["id"] != alarm_id:
                continue
            if msg.type == MsgType.ALARM_ACK:
                current["acknowledged"] = True
                continue
            assert state.current is not None
            state.current[alarm_type] = None
            changed |= evaluation.alarm_gone()
            if msg.type == MsgType.ALARM_DELETE and evaluation.clear is not None:
                changed |= evaluation.clear.clear()
        return changed

    async def _harvest(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        """The node's timer: DURATION rules of the device whose condition still holds may now be
        long enough. Only alarm messages leave; the timer message itself goes nowhere."""
        state = self.states.get(msg.originator.id)
        if state is None or self._closed:
            return []
        async with state.lock:
            state.timer_due = None
            if state.snapshot is None:
                return []
            await self._refresh_attributes(ctx, state, set())
            state.owners = await self._owners(ctx, state)
            await self._ensure_current(ctx, state)
            now = now_ms()
            outputs: Outputs = []
            changed = False
            assert state.current is not None
            for evaluation in state.evaluations.values():
                has_alarm = state.current.get(evaluation.definition.alarm_type) is not None
                verdict = self._guarded(state, lambda e=evaluation, h=has_alarm: e.evaluate_at(
                    now, state.snapshot, h, state.owners))
                changed |= verdict.changed
                outputs += await self._carry_out(ctx, state, evaluation, verdict, msg)
            if changed and self.persist:
                await self._save(ctx, state)
            self._arm(ctx, state)
        return outputs

    # --- evaluation -----------------------------------------------------------------------------------
    async def _evaluate(self, ctx: RuleContext, state: DeviceAlarms, msg: TbMsg, update: Update,
                        from_message: set[str]) -> tuple[Outputs, bool]:
        state.metadata = dict(msg.metadata)
        await self._refresh_attributes(ctx, state, from_message)
        state.owners = await self._owners(ctx, state)
        await self._ensure_current(ctx, state)
        assert state.current is not None and state.snapshot is not None
        now = now_ms()
        outputs: Outputs = []
        changed = False
        for evaluation in state.evaluations.values():
            has_alarm = state.current.get(evaluation.definition.alarm_type) is not None
            snapshot = state.snapshot
            verdict = self._guarded(state, lambda e=evaluation, h=has_alarm, s=snapshot: e.evaluate(
                s, update, h, state.owners, now))
            changed |= verdict.changed
            outputs += await self._carry_out(ctx, state, evaluation, verdict, msg)
        return outputs, changed

    @staticmethod
    def _guarded(state: DeviceAlarms, evaluate: Any) -> Verdict:
        try:
            return evaluate()
        except AlarmEvaluationError as exc:
            raise RuntimeError(f"Failed to process alarm rule for Device [{state.device.id}]: {exc}") from None

    async def _carry_out(self, ctx: RuleContext, state: DeviceAlarms, evaluation: AlarmEvaluation,
                         verdict: Verdict, msg: TbMsg) -> Outputs:
        """Raise or clear the alarm as the verdict says (ThingsBoard's AlarmState side effects)."""
        definition = evaluation.definition
        assert state.current is not None and state.snapshot is not None
        current = state.current.get(definition.alarm_type)
        now = now_ms()
        if verdict.raise_rule is not None:
            rule_state = verdict.raise_rule
            severity = rule_state.rule.severity or "INDETERMINATE"
            if current is not None and SEVERITIES.index(severity) > SEVERITIES.index(current["severity"]):
                # a less severe rule holds while a more severe alarm is active: ThingsBoard keeps the
                # alarm as it is (read again first: it may have been cleared meanwhile)
                current = state.current[definition.alarm_type] = await self._active_alarm(ctx, state, definition)
                if current is not None and SEVERITIES.index(severity) > SEVERITIES.index(current["severity"]):
                    return []
            details = details_of(rule_state.rule, state.snapshot, current["details"] if current else None)
            if current is None:
                start = state.snapshot.ts if 0 < state.snapshot.ts <= now else now
                ts, start_ts = start, start
            else:
                ts, start_ts = now, None
            change = await ctx.alarms.create_or_update(
                ctx.tenant_id, await self._customer(ctx, state), state.device, definition.alarm_type, severity,
                details, propagate=definition.propagate, propagate_to_owner=definition.propagate_to_owner,
                propagate_to_tenant=definition.propagate_to_tenant,
                propagate_relation_types=list(definition.relation_types) or None, ts=ts, start_ts=start_ts)
            state.current[definition.alarm_type] = change.alarm
            if change.msg_type is None:
                return []
            if change.created:
                relation, flags = ALARM_CREATED, {"isNewAlarm": "true"}
            elif change.severity_changed:
                relation, flags = ALARM_SEVERITY_UPDATED, {"isExistingAlarm": "true", "isSeverityUpdated": "true"}
            else:
                relation, flags = ALARM_UPDATED, {"isExistingAlarm": "true"}
            return [(relation, self._alarm_msg(state, change.alarm, flags, rule_state, msg))]
        if verdict.clear_rule is not None:
            rule = verdict.clear_rule.rule
            details = details_of(rule, state.snapshot, None) if (rule.details or rule.dashboard_id) else None
            cleared = await ctx.alarms.clear(ctx.tenant_id, state.device, definition.alarm_type, details, now)
            state.current[definition.alarm_type] = None
            if cleared is None:
                return []
            return [(ALARM_CLEARED, self._alarm_msg(state, cleared.alarm, {"isClearedAlarm": "true"},
                                                    verdict.clear_rule, msg))]
        return []

    @staticmethod
    def _alarm_msg(state: DeviceAlarms, alarm: Mapping[str, Any], flags: dict[str, str], rule_state: Any,
                   msg: TbMsg) -> TbMsg:
        metadata = {**state.metadata, **flags}
        spec = rule_state.rule.spec.type
        if spec == "REPEATING":
            metadata["alarmConditionRepeats"] = str(rule_state.progress.event_count)
        elif spec == "DURATION":
            metadata["alarmConditionDuration"] = str(rule_state.progress.duration)
        return TbMsg(MsgType.ALARM, state.device, alarm_json(alarm), metadata, customer_id=msg.customer_id,
                     correlation=msg.id)

    def _arm(self, ctx: RuleContext, state: DeviceAlarms) -> None:
        """A timer for the earliest moment a DURATION rule under way would turn true."""
        if state.snapshot is None or state.current is None:
            return
        times = [t for t in (e.due(state.snapshot, state.current.get(e.definition.alarm_type) is not None,
                                   state.owners) for e in state.evaluations.values()) if t is not None]
        if not times:
            return
        due = min(times)
        if state.timer_due is not None and state.timer_due <= due:
            return  # a timer already comes at or before then, and arms the next one
        state.timer_due = due
        ctx.schedule(max(0, due - now_ms()) / 1000, TbMsg(SELF_MSG, state.device, {}, {}))

    # --- the device's state and data ------------------------------------------------------------------
    def _definitions(self, profile: Any) -> tuple[AlarmDefinition, ...]:
        cached = self._parsed.get(profile.profile_id)
        if cached is not None and (cached[0] is profile.profile_data or cached[0] == profile.profile_data):
            return cached[1]
        definitions = parse_alarms(profile.profile_data)
        self._parsed[profile.profile_id] = (profile.profile_data, definitions)
        return definitions

    async def _state(self, ctx: RuleContext, device: EntityId,
                     persisted: Any = None) -> tuple[bool, DeviceAlarms | None]:
        """(whether the device exists, its progress for its profile now): created on first use,
        updated when the profile was saved, started over when the device moved to another
        profile; None when the profile has no alarm rules."""
        profile = await ctx.device_profile(device.id)
        if profile is None:
            self.states.pop(device.id, None)
            return False, None
        definitions = self._definitions(profile)
        state = self.states.get(device.id)
        if state is not None and state.profile_id == profile.profile_id:
            if not definitions:
                del self.states[device.id]
                return True, None
            if state.profile_data is not profile.profile_data and state.profile_data != profile.profile_data:
                async with state.lock:
                    state.update_profile(profile.profile_data, definitions)
            return True, state
        if state is not None:  # moved to another profile
            await self._forget(ctx, device)
        if not definitions:
            return True, None
        if persisted is None and self.persist:
            persisted = await RuleNodeStateStore(ctx.db).get(self.init.node_id, device.id)
        state = self.states.get(device.id)
        if state is None or state.profile_id != profile.profile_id:  # not made meanwhile by another task
            state = self.states[device.id] = DeviceAlarms(device, profile.profile_id, profile.profile_data,
                                                          definitions, persisted)
        return True, state

    async def _forget(self, ctx: RuleContext, device: EntityId) -> None:
        state = self.states.pop(device.id, None)
        if self.persist and (state is not None or not self.fetch_on_start):
            await RuleNodeStateStore(ctx.db).delete(self.init.node_id, device.id)

    async def _save(self, ctx: RuleContext, state: DeviceAlarms) -> None:
        await RuleNodeStateStore(ctx.db).save(self.init.node_id, "DEVICE", state.device.id, state.to_json())

    async def _snapshot(self, ctx: RuleContext, state: DeviceAlarms) -> Snapshot:
        if state.snapshot is None:
            await self._load_snapshot(ctx, state)
        assert state.snapshot is not None
        return state.snapshot

    async def _load_snapshot(self, ctx: RuleContext, state: DeviceAlarms) -> None:
        """The latest values of the keys the rules use, from storage (ThingsBoard's fetchLatestValues)."""
        snapshot = Snapshot(profile_keys(state.definitions))
        series = [k for t, k in snapshot.keys if t == "TIME_SERIES"]
        if series:
            for key, (ts, value) in (await ctx.get_latest(state.device, series)).items():
                snapshot.put(("TIME_SERIES", key), ts, value)
        fields = [k for t, k in snapshot.keys if t == "ENTITY_FIELD"]
        if fields:
            entity = await ctx.get_entity(state.device) or {}
            created = entity.get("createdTime", 0)
            for name in fields:
                value = entity.get(name)
                if name in ("name", "type", "label", "createdTime") and value is not None:
                    snapshot.put(("ENTITY_FIELD", name), created, value)
        state.snapshot = snapshot
        await self._refresh_attributes(ctx, state, set())

    async def _refresh_attributes(self, ctx: RuleContext, state: DeviceAlarms, skip: set[str]) -> None:
        """The device's attributes the rules use, as stored now (all scopes; server wins over
        shared over client), but those the message itself carries."""
        snapshot = state.snapshot
        assert snapshot is not None
        names = [k for t, k in snapshot.keys if t == "ATTRIBUTE" and k not in skip]
        if not names:
            return
        found: dict[str, Value] = {}
        for scope in SCOPES:
            found.update(await ctx.get_attributes(state.device, scope, names))
        for name in names:
            if name in found:
                snapshot.values[("ATTRIBUTE", name)] = found[name]
            else:
                snapshot.remove(("ATTRIBUTE", name))

    async def _customer(self, ctx: RuleContext, state: DeviceAlarms) -> uuid.UUID | None:
        if state.customer_id is _UNKNOWN:
            entity = await ctx.get_entity(state.device) or {}
            customer = (entity.get("customerId") or {}).get("id")
            state.customer_id = None if customer in (None, str(NULL_UUID)) else uuid.UUID(customer)
        return state.customer_id

    async def _owners(self, ctx: RuleContext, state: DeviceAlarms) -> Lookup:
        """The customer's and tenant's server attributes dynamic values may read."""
        wanted = owner_attributes(state.definitions)
        if not wanted:
            return {}
        found: dict[tuple[str, str], Value] = {}
        customer = await self._customer(ctx, state) if any(s == "CURRENT_CUSTOMER" for s, _ in wanted) else None
        for source, entity in (("CURRENT_CUSTOMER", EntityId("CUSTOMER", customer) if customer else None),
                               ("CURRENT_TENANT", EntityId("TENANT", ctx.tenant_id))):
            names = sorted(a for s, a in wanted if s == source)
            if entity is not None and names:
                for name, value in (await ctx.get_attributes(entity, "SERVER_SCOPE", names)).items():
                    found[(source, name)] = value
        return found

    async def _ensure_current(self, ctx: RuleContext, state: DeviceAlarms) -> None:
        """The device's active alarms of the profile's types, read once (ThingsBoard's initCurrentAlarm)."""
        if state.current is not None:
            return
        types = [d.alarm_type for d in state.definitions]
        rows = await ctx.db.fetch("SELECT * FROM alarm_info WHERE tenant_id = $1 AND originator_id = $2"
                                  " AND NOT cleared AND type = ANY($3::varchar[])", ctx.tenant_id, state.device.id,
                                  types)
        current: dict[str, dict[str, Any] | None] = dict.fromkeys(types)
        for row in rows:
            current[row["type"]] = to_json(row)
        state.current = current

    async def _active_alarm(self, ctx: RuleContext, state: DeviceAlarms,
                            definition: AlarmDefinition) -> dict[str, Any] | None:
        row = await ctx.db.fetchrow("SELECT * FROM alarm_info WHERE tenant_id = $1 AND originator_id = $2"
                                    " AND NOT cleared AND type = $3", ctx.tenant_id, state.device.id,
                                    definition.alarm_type)
        return None if row is None else to_json(row)
