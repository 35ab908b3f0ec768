"""Save time series and save attributes: where device data becomes durable.

Both submit their rows to the shard's writer and return at once; the message is acknowledged
when the rows are committed (rules/context.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.kv import JsonValue, Value
from thingsray.rules.msg import MsgType, TbMsg
from thingsray.rules.node import NodeConfigError, NodeInit, Outputs, RuleNode, flag, node, one_of, optional, success
from thingsray.transports.payloads import LONG_MAX, PayloadError, typed

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext

PREFIX = "org.thingsboard.rule.engine.telemetry."
PROCESSING = ("ON_EVERY_MESSAGE", "DEDUPLICATE", "WEBSOCKETS_ONLY")


def _values(obj: dict[str, Any]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for key, raw in obj.items():
        value = raw if isinstance(raw, JsonValue) else typed(key, raw)
        if value is not None:
            out[key] = value
    return out


def telemetry_rows(data: Any, default_ts: int) -> list[tuple[int, str, Value]]:
    """``(ts, key, value)`` of a telemetry body: ``{k: v}``, ``{"ts", "values"}`` or an array of them."""
    items = data if isinstance(data, list) else [data]
    rows: list[tuple[int, str, Value]] = []
    for item in items:
        if not isinstance(item, dict):
            raise PayloadError("telemetry must be a JSON object or an array of objects")
        if "ts" in item and "values" in item:
            ts, values = item["ts"], item["values"]
            if isinstance(ts, str) and ts.isdigit():
                ts = int(ts)
            if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= LONG_MAX:
                raise PayloadError("'ts' must be a non-negative integer of milliseconds")
            if not isinstance(values, dict):
                raise PayloadError("'values' must be a JSON object")
        else:
            ts, values = default_ts, item
        rows.extend((ts, key, value) for key, value in _values(values).items())
    return rows


def metadata_ts(msg: TbMsg) -> int:
    """The message's own time: metadata ``ts`` when it is a number, else the message's ts."""
    text = msg.metadata.get("ts")
    if text is not None:
        try:
            return int(text)
        except ValueError:
            pass
    return msg.ts


def _processing(config: dict[str, Any]) -> tuple[str, int]:
    settings = config.get("processingSettings") or {"type": "ON_EVERY_MESSAGE"}
    if not isinstance(settings, dict):
        raise NodeConfigError("'processingSettings' must be an object")
    kind = one_of(settings, "type", (*PROCESSING, "ADVANCED"), "ON_EVERY_MESSAGE")
    if kind == "ADVANCED":
        raise NodeConfigError("processingSettings type ADVANCED is not supported; use ON_EVERY_MESSAGE, "
                              "DEDUPLICATE or WEBSOCKETS_ONLY")
    interval = optional(settings, "deduplicationIntervalSecs", int, 60)
    if kind == "DEDUPLICATE" and interval < 1:
        raise NodeConfigError("'deduplicationIntervalSecs' must be at least 1")
    return kind, interval


class _Dedup:
    """DEDUPLICATE: the first message of each originator in each interval is saved, the rest pass."""

    __slots__ = ("interval_ms", "last")

    def __init__(self, interval_s: int) -> None:
        self.interval_ms = interval_s * 1000
        self.last: dict[Any, int] = {}

    def due(self, originator: Any, ts: int) -> bool:
        window = ts // self.interval_ms
        if self.last.get(originator) == window:
            return False
        if len(self.last) > 100_000:
            self.last.clear()
        self.last[originator] = window
        return True


@node
class MsgTimeseriesNode(RuleNode):
    type = PREFIX + "TbMsgTimeseriesNode"
    name = "save time series"
    component = "ACTION"
    default_config: ClassVar[dict[str, Any]] = {"defaultTTL": 0, "useServerTs": False,
                                                "processingSettings": {"type": "ON_EVERY_MESSAGE"}}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.ttl = optional(config, "defaultTTL", int, 0)
        if self.ttl < 0:
            raise NodeConfigError("'defaultTTL' must not be negative")
        self.server_ts = flag(config, "useServerTs", False)
        self.mode, interval = _processing(config)
        self.dedup = _Dedup(interval) if self.mode == "DEDUPLICATE" else None

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if msg.type != MsgType.POST_TELEMETRY_REQUEST:
            raise ValueError(f"Unsupported msg type: {msg.type}")
        ts = int(time.time() * 1000) if self.server_ts else metadata_ts(msg)
        rows = telemetry_rows(msg.data, ts)
        if not rows:
            raise ValueError("Msg body is empty: " + str(msg.data)[:200])
        if self.mode == "ON_EVERY_MESSAGE" or (self.dedup is not None and self.dedup.due(msg.originator, ts)):
            ttl = self.ttl
            if "TTL" in msg.metadata:
                try:
                    ttl = int(msg.metadata["TTL"])
                except ValueError:
                    pass
            await ctx.save_timeseries(msg.originator, rows, ttl)
        return success(msg)


@node
class MsgAttributesNode(RuleNode):
    type = PREFIX + "TbMsgAttributesNode"
    name = "save attributes"
    component = "ACTION"
    default_config: ClassVar[dict[str, Any]] = {
        "scope": "SERVER_SCOPE", "notifyDevice": False, "sendAttributesUpdatedNotification": False,
        "updateAttributesOnlyOnValueChange": True, "processingSettings": {"type": "ON_EVERY_MESSAGE"}}
    sync = False  # only-on-change may read the stored values

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.scope = one_of(config, "scope", ("CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE"), "SERVER_SCOPE")
        self.notify = flag(config, "notifyDevice", False)
        self.send_updated = flag(config, "sendAttributesUpdatedNotification", False)
        self.only_on_change = flag(config, "updateAttributesOnlyOnValueChange", False)
        self.mode, _ = _processing(config)

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if msg.type != MsgType.POST_ATTRIBUTES_REQUEST:
            raise ValueError(f"Unsupported msg type: {msg.type}")
        if not isinstance(msg.data, dict):
            raise ValueError("attributes must be a JSON object")
        values = _values(msg.data)
        if not values:
            return success(msg)
        scope = msg.metadata.get("scope") or self.scope
        if scope not in ("CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE"):
            raise ValueError(f"Unsupported attribute scope: {scope}")
        notify = self.notify or msg.metadata.get("notifyDevice") == "true"
        if self.mode != "WEBSOCKETS_ONLY":
            await ctx.save_attributes(msg.originator, scope, values, int(time.time() * 1000),
                                      notify_device=notify, only_on_change=self.only_on_change)
        if self.send_updated:
            ctx.enqueue(msg.copy(type=MsgType.ATTRIBUTES_UPDATED, metadata={**msg.metadata, "scope": scope}))
        return success(msg)
