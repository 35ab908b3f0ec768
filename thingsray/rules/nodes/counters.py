"""Nodes that keep time: the message counter (ThingsBoard's TbMsgCountNode) and the message
generator (TbMsgGeneratorNode).

Both drive themselves with messages they schedule for themselves (``ctx.schedule``, ThingsBoard's
``tellSelf``); a tick is recognised by its id, so the ticks of a replaced node (its chain was
saved again) fall on deaf ears. Their ``start`` hook runs when the engine builds the chain.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.msg import EntityId, MsgType, TbMsg
from thingsray.rules.node import (
    FAILURE,
    SUCCESS,
    NodeConfigError,
    NodeInit,
    Outputs,
    RuleNode,
    node,
    optional,
)
from thingsray.rules.nodes._script import compile_script, script_args, unbind
from thingsray.rules.pattern import process_pattern

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext

MSG_COUNT_SELF_MSG = "MSG_COUNT_SELF_MSG"
GENERATOR_NODE_SELF_MSG = "GENERATOR_NODE_SELF_MSG"
GENERATOR_SCRIPT = ("var msg = { temp: 42, humidity: 77 };\nvar metadata = { data: 40 };\n"
                    "var msgType = \"POST_TELEMETRY_REQUEST\";\n\n"
                    "return { msg: msg, metadata: metadata, msgType: msgType };")
GENERATOR_ARGS = ("prevMsg", "prevMetadata", "prevMsgType")
log = logging.getLogger(__name__)

ORIGINATOR_TYPES = ("DEVICE", "ASSET", "ENTITY_VIEW", "TENANT", "CUSTOMER", "USER", "DASHBOARD", "EDGE",
                    "RULE_NODE")


def _now() -> int:
    return time.time_ns() // 1_000_000


class _Ticker:
    """Ticks every ``period_ms`` on a fixed beat (a late tick does not push the next ones back)."""

    __slots__ = ("last", "next_id")

    def __init__(self) -> None:
        self.last = 0
        self.next_id: uuid.UUID | None = None

    def schedule(self, ctx: RuleContext, originator: EntityId, tick_type: str, period_ms: int) -> None:
        now = _now()
        self.last = (self.last or now) + period_ms
        tick = TbMsg(tick_type, originator, "", {})
        self.next_id = tick.id
        ctx.schedule(max(0, self.last - now) / 1000, tick)

    def owns(self, msg: TbMsg, tick_type: str) -> bool:
        return msg.type == tick_type and msg.id == self.next_id

    def stop(self) -> None:
        self.next_id = None
        self.last = 0


@node
class MsgCountNode(RuleNode):
    """Counts the messages it gets and, every ``interval`` seconds, sends on a
    POST_TELEMETRY_REQUEST of the tenant: ``{"<telemetryPrefix>_<service>": count}`` with the
    period's real length in metadata ``delta``. Each shard counts its own messages; the service
    part of the key names the shard, as ThingsBoard's names the server."""

    type = "org.thingsboard.rule.engine.action.TbMsgCountNode"
    name = "message count"
    component = "ACTION"
    relations: ClassVar[tuple[str, ...]] = (SUCCESS, FAILURE)
    default_config: ClassVar[dict[str, Any]] = {"interval": 1, "telemetryPrefix": "messageCount"}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.interval_ms = optional(config, "interval", int, 1) * 1000
        if self.interval_ms < 1000:
            raise NodeConfigError("'interval' must be at least 1 second")
        self.prefix = optional(config, "telemetryPrefix", str, "messageCount") or "messageCount"
        self.count = 0
        self.ticker = _Ticker()

    def _schedule(self, ctx: RuleContext) -> None:
        self.ticker.schedule(ctx, EntityId("RULE_NODE", self.init.node_id), MSG_COUNT_SELF_MSG, self.interval_ms)

    async def start(self, ctx: RuleContext) -> None:
        self._schedule(ctx)

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if not self.ticker.owns(msg, MSG_COUNT_SELF_MSG):
            self.count += 1
            return []
        count, self.count = self.count, 0
        delta = _now() - self.ticker.last + self.interval_ms
        self._schedule(ctx)
        report = TbMsg(MsgType.POST_TELEMETRY_REQUEST, EntityId("TENANT", ctx.tenant_id),
                       {f"{self.prefix}_shard-{ctx.shard}": count}, {"delta": str(delta)}, correlation=msg.id)
        return [(SUCCESS, report)]

    async def close(self) -> None:
        self.ticker.stop()


@node
class MsgGeneratorNode(RuleNode):
    """Every ``periodInSeconds`` (or the period a ``periodInSecondsPattern`` takes from the last
    generated message), runs ``function Generate(prevMsg, prevMetadata, prevMsgType)`` and sends on
    its ``{msg, metadata, msgType}`` with the configured originator; ``msgCount`` messages at most
    (0: no end). It runs on one shard only: the one owning its originator."""

    type = "org.thingsboard.rule.engine.debug.TbMsgGeneratorNode"
    name = "generator"
    component = "ACTION"
    source = True
    relations: ClassVar[tuple[str, ...]] = (SUCCESS, FAILURE)
    default_config: ClassVar[dict[str, Any]] = {
        "msgCount": 0, "periodInSeconds": 1, "originatorId": None, "originatorType": "RULE_NODE",
        "scriptLang": "TBEL", "jsScript": GENERATOR_SCRIPT, "tbelScript": GENERATOR_SCRIPT}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.msg_count = optional(config, "msgCount", int, 0)
        if self.msg_count < 0:
            raise NodeConfigError("'msgCount' must be 0 (no end) or more")
        self.period_s = optional(config, "periodInSeconds", int, 1)
        if self.period_s < 1:
            raise NodeConfigError("'periodInSeconds' must be at least 1")
        self.period_pattern = optional(config, "periodInSecondsPattern", str, "") or ""
        kind = config.get("originatorType") or "RULE_NODE"
        if kind not in ORIGINATOR_TYPES:
            raise NodeConfigError(f"Originator type '{kind}' is not supported.")
        if kind == "RULE_NODE":
            self.originator = EntityId("RULE_NODE", init.node_id)
        elif kind == "TENANT":
            self.originator = EntityId("TENANT", init.tenant_id)
        else:
            raw = config.get("originatorId")
            if not isinstance(raw, str) or not raw.strip():
                raise NodeConfigError("Originator entity must be selected.")
            try:
                self.originator = EntityId(kind, uuid.UUID(raw))
            except ValueError:
                raise NodeConfigError(f"'originatorId' must be a UUID, got {raw!r}") from None
        self.script = compile_script(config, init, arg_names=GENERATOR_ARGS)
        self.ticker = _Ticker()
        self.generated = 0
        self.running = False
        self.previous = TbMsg("", self.originator, {}, {})

    async def start(self, ctx: RuleContext) -> None:
        if not ctx.is_local(self.originator):
            return  # another shard generates
        if self.originator.entity_type not in ("RULE_NODE", "TENANT") and await ctx.get_entity(self.originator) is None:
            log.warning("generator %s of tenant %s does not run: its originator %s %s is not an entity of the "
                        "tenant", self.init.node_id, ctx.tenant_id, self.originator.entity_type, self.originator.id)
            return
        self.running = True
        self._schedule(ctx)

    def _period_ms(self) -> int:
        if self.period_pattern:
            text = process_pattern(self.period_pattern, self.previous)
            try:
                return max(1, int(float(text))) * 1000
            except ValueError:
                pass  # no usable period in the last message: the configured one
        return self.period_s * 1000

    def _schedule(self, ctx: RuleContext) -> None:
        self.ticker.schedule(ctx, EntityId("RULE_NODE", self.init.node_id), GENERATOR_NODE_SELF_MSG, self._period_ms())

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if not self.running or not self.ticker.owns(msg, GENERATOR_NODE_SELF_MSG):
            return []
        if self.msg_count and self.generated >= self.msg_count:
            self.close_now()
            return []
        self.generated += 1
        try:
            result = await self.script.invoke(*script_args(self.previous))
            made = unbind(result, self.previous)
        except Exception:
            self._schedule_more(ctx)
            raise
        self.previous = TbMsg(made.type, self.originator, made.data, made.metadata)
        self._schedule_more(ctx)
        return [(SUCCESS, self.previous.copy(correlation=msg.id))]

    def _schedule_more(self, ctx: RuleContext) -> None:
        if not self.msg_count or self.generated < self.msg_count:
            self._schedule(ctx)
        else:
            self.close_now()

    def close_now(self) -> None:
        self.running = False
        self.ticker.stop()

    async def close(self) -> None:
        self.close_now()
