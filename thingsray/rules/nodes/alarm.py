"""Alarm nodes: raise or update the active alarm of the message's originator (Create Alarm) and
clear it (Clear Alarm), as ThingsBoard's TbCreateAlarmNode and TbClearAlarmNode do.

A node that changes an alarm sends on a message of type ALARM with the alarm (AlarmInfo JSON)
as its body and ``isNewAlarm`` / ``isExistingAlarm`` / ``isClearedAlarm`` in its metadata, and
starts an action message (ENTITY_CREATED, ENTITY_UPDATED, ALARM_CLEAR with the alarm as body)
where the originator's own messages start, as ThingsBoard's ``alarmActionMsg`` does. The details
script (``function Details(msg, metadata, msgType)``) sees the alarm's current details as the
JSON text ``metadata.prevAlarmDetails``.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.msg import EntityId, MsgType, TbMsg
from thingsray.rules.node import (
    FAILURE,
    FALSE,
    SUCCESS,
    NodeConfigError,
    NodeInit,
    Outputs,
    RuleNode,
    flag,
    node,
    optional,
    require_str,
    str_list,
)
from thingsray.rules.nodes._script import compile_script, plain, script_args
from thingsray.rules.nodes.telemetry import metadata_ts
from thingsray.rules.pattern import json_text, process_pattern
from thingsray.storage.alarms import SEVERITIES, AlarmNotFound, to_json

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.script import Script

PREFIX = "org.thingsboard.rule.engine.action."
PREV_ALARM_DETAILS = "prevAlarmDetails"
CREATED, UPDATED, CLEARED = "Created", "Updated", "Cleared"

DETAILS_JS = ("var details = {};\nif (metadata.prevAlarmDetails) {\n"
              "    details = JSON.parse(metadata.prevAlarmDetails);\n"
              "    //remove prevAlarmDetails from metadata\n    delete metadata.prevAlarmDetails;\n"
              "    //now metadata is the same as it comes IN this rule node\n}\n\n\nreturn details;")
DETAILS_TBEL = ("var details = {};\nif (metadata.prevAlarmDetails != null) {\n"
                "    details = JSON.parse(metadata.prevAlarmDetails);\n"
                "    //remove prevAlarmDetails from metadata\n    metadata.remove('prevAlarmDetails');\n"
                "    //now metadata is the same as it comes IN this rule node\n}\n\n\nreturn details;")
_ACTIVE = "SELECT * FROM alarm_info WHERE tenant_id = $1 AND originator_id = $2 AND type = $3 AND NOT cleared"


def _now() -> int:
    return time.time_ns() // 1_000_000


async def active_alarm(ctx: RuleContext, originator: EntityId, alarm_type: str) -> dict[str, Any] | None:
    """The active (not cleared) alarm of that type on ``originator`` as AlarmInfo JSON, or None."""
    row = await ctx.alarms.db.fetchrow(_ACTIVE, ctx.tenant_id, originator.id, alarm_type)
    return None if row is None else to_json(row)


class _AlarmNode(RuleNode):
    """What both alarm nodes share: the details script and the messages they send on."""

    component = "ACTION"

    def __init__(self, config: dict[str, Any], init: NodeInit, *, script_needed: bool = True) -> None:
        super().__init__(config, init)
        self.alarm_type = optional(config, "alarmType", str, "General Alarm") or "General Alarm"
        self.script: Script | None = None
        if script_needed:
            self.script = compile_script(config, init, js_key="alarmDetailsBuildJs",
                                         tbel_key="alarmDetailsBuildTbel")

    async def details(self, msg: TbMsg, previous: Any) -> Any:
        """The details script's answer for ``msg``; ``previous`` (the alarm's details, when there is
        an alarm) reaches it as ``metadata.prevAlarmDetails``."""
        assert self.script is not None
        data, metadata, msg_type = script_args(msg)
        if previous is not None:
            metadata[PREV_ALARM_DETAILS] = json_text(plain(previous))
        return await self.script.invoke(data, metadata, msg_type)

    def outputs(self, ctx: RuleContext, msg: TbMsg, alarm: dict[str, Any], relation: str, marker: str,
                action: str) -> Outputs:
        """The ALARM message for ``relation``; the action message starts where the originator's
        messages start (not awaited by this one)."""
        originator = EntityId.parse(alarm["originator"])
        ctx.enqueue_to_originator(TbMsg(action, originator, alarm, {"ruleNodeId": str(self.init.node_id)},
                                        customer_id=msg.customer_id, correlation=msg.id))
        return [(relation, msg.copy(type=MsgType.ALARM, data=alarm, metadata={**msg.metadata, marker: "true"}))]


@node
class CreateAlarmNode(_AlarmNode):
    """Raises an alarm of ``alarmType`` on the message's originator, or updates the active one of
    that type (severity, details, propagation, ``endTs``): out by Created or Updated."""

    type = PREFIX + "TbCreateAlarmNode"
    name = "create alarm"
    relations: ClassVar[tuple[str, ...]] = (CREATED, UPDATED, FALSE, FAILURE)
    default_config: ClassVar[dict[str, Any]] = {
        "alarmType": "General Alarm", "severity": "CRITICAL", "propagate": False, "propagateToOwner": False,
        "propagateToTenant": False, "useMessageAlarmData": False, "overwriteAlarmDetails": False,
        "dynamicSeverity": False, "relationTypes": [], "scriptLang": "TBEL",
        "alarmDetailsBuildJs": DETAILS_JS, "alarmDetailsBuildTbel": DETAILS_TBEL}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        self.use_message = flag(config, "useMessageAlarmData", False)
        self.overwrite = flag(config, "overwriteAlarmDetails", False)
        self.build_details = not self.use_message or self.overwrite
        super().__init__(config, init, script_needed=self.build_details)
        self.severity = require_str(config, "severity") if not self.use_message else str(config.get("severity") or "")
        self.dynamic = flag(config, "dynamicSeverity", False) or "${" in self.severity or "$[" in self.severity
        if not self.use_message and not self.dynamic and self.severity not in SEVERITIES:
            raise NodeConfigError(f"Incorrect Alarm Severity value: {self.severity}")
        self.propagate = flag(config, "propagate", False)
        self.propagate_to_owner = flag(config, "propagateToOwner", False)
        self.propagate_to_tenant = flag(config, "propagateToTenant", False)
        self.relation_types = str_list(config, "relationTypes")

    def _severity(self, msg: TbMsg) -> str:
        if not self.dynamic:
            return self.severity
        severity = process_pattern(self.severity, msg)
        if severity not in SEVERITIES:
            raise ValueError("Used incorrect pattern or Alarm Severity not included in message")
        return severity

    @staticmethod
    def _message_alarm(msg: TbMsg) -> dict[str, Any]:
        """The alarm a message carries in its body (``useMessageAlarmData``)."""
        data = plain(msg.data)
        if isinstance(data, str):
            import json

            try:
                data = json.loads(data)
            except ValueError:
                raise ValueError("Message body is not an alarm: not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str) or not data["type"]:
            raise ValueError("Message body is not an alarm: it has no 'type'")
        return data

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        carried = self._message_alarm(msg) if self.use_message else None
        alarm_type = carried["type"] if carried is not None else process_pattern(self.alarm_type, msg)
        existing = await active_alarm(ctx, msg.originator, alarm_type)
        if self.build_details:
            details = await self.details(msg, existing["details"] if existing is not None else None)
        else:
            details = carried.get("details") if carried is not None else None
        if carried is not None:
            severity = str(carried.get("severity") or "")
            if severity not in SEVERITIES:
                raise ValueError(f"Invalid alarm severity '{severity}': use one of {', '.join(SEVERITIES)}")
            propagation = {"propagate": bool(carried.get("propagate")),
                           "propagate_to_owner": bool(carried.get("propagateToOwner")),
                           "propagate_to_tenant": bool(carried.get("propagateToTenant")),
                           "propagate_relation_types": [str(t) for t in carried.get("propagateRelationTypes") or ()]}
        else:
            severity = self._severity(msg)
            propagation = {"propagate": self.propagate, "propagate_to_owner": self.propagate_to_owner,
                           "propagate_to_tenant": self.propagate_to_tenant,
                           "propagate_relation_types": self.relation_types}
        if existing is not None:
            ts, start_ts = _now(), None  # an update moves endTs to now
        elif carried is not None and isinstance(carried.get("startTs"), int) and carried["startTs"] > 0:
            start_ts = carried["startTs"]
            end = carried.get("endTs")
            ts = end if isinstance(end, int) and end >= start_ts else start_ts
        else:
            ts = start_ts = metadata_ts(msg)
        customer = await ctx.alarms.owner_customer(msg.originator)
        change = await ctx.alarms.create_or_update(ctx.tenant_id, customer, msg.originator, alarm_type, severity,
                                                   details, ts=ts, start_ts=start_ts, **propagation)
        if change.created:
            return self.outputs(ctx, msg, change.alarm, CREATED, "isNewAlarm", MsgType.ENTITY_CREATED)
        if change.msg_type is not None:
            return self.outputs(ctx, msg, change.alarm, UPDATED, "isExistingAlarm", MsgType.ENTITY_UPDATED)
        return [(SUCCESS, msg)]  # nothing changed, as ThingsBoard answers an unmodified update


@node
class ClearAlarmNode(_AlarmNode):
    """Clears the active alarm of ``alarmType`` on the message's originator (the alarm itself when
    the originator is an ALARM): out by Cleared, or False when there is none."""

    type = PREFIX + "TbClearAlarmNode"
    name = "clear alarm"
    relations: ClassVar[tuple[str, ...]] = (CLEARED, FALSE, FAILURE)
    default_config: ClassVar[dict[str, Any]] = {
        "alarmType": "General Alarm", "scriptLang": "TBEL", "alarmDetailsBuildJs": DETAILS_JS,
        "alarmDetailsBuildTbel": DETAILS_TBEL}

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if msg.originator.entity_type == "ALARM":
            alarm = await ctx.alarms.get(msg.originator.id)
            if alarm is not None and alarm["tenantId"]["id"] != str(ctx.tenant_id):
                alarm = None  # never another tenant's alarm
        else:
            alarm = await active_alarm(ctx, msg.originator, process_pattern(self.alarm_type, msg))
        if alarm is None or alarm["cleared"]:
            return [(FALSE, msg)]
        details = await self.details(msg, alarm["details"])
        try:
            change = await ctx.alarms.clear_by_id(uuid.UUID(alarm["id"]["id"]), _now(), details)
        except AlarmNotFound:
            raise RuntimeError("Failed to clear alarm: API returned unsuccessful result. "
                               "Probably alarm was already deleted.") from None
        if change is None:
            return [(SUCCESS, msg)]  # cleared by someone else meanwhile
        return self.outputs(ctx, msg, change.alarm, CLEARED, "isClearedAlarm", MsgType.ALARM_CLEAR)
