"""Device state (ThingsBoard's TbDeviceStateNode): tells the originating device's actor that it
connected, disconnected, was active or went inactive, as a transport would; the actor updates
its state attributes and sends the matching event into the rule engine, as ThingsBoard's device
state service does. Events of one device are rate limited (ThingsBoard's default
``1:1,30:60,60:3600``: at most 1 a second, 30 a minute, 60 an hour); past the limit the message
leaves by "Rate limited"."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.msg import MsgType, TbMsg
from thingsray.rules.node import FAILURE, SUCCESS, NodeConfigError, NodeInit, Outputs, RuleNode, node
from thingsray.rules.nodes.telemetry import metadata_ts

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext

EVENTS = (MsgType.CONNECT_EVENT, MsgType.ACTIVITY_EVENT, MsgType.DISCONNECT_EVENT, MsgType.INACTIVITY_EVENT)
RATE_LIMITED = "Rate limited"
DEFAULT_RATE_LIMITS = "1:1,30:60,60:3600"
MAX_TRACKED_DEVICES = 100_000


class RateLimit:
    """ThingsBoard's ``TbRateLimits``: token buckets ``capacity:seconds``, each refilled greedily
    (``capacity`` tokens spread evenly over ``seconds``); a call passes when every bucket has a token."""

    __slots__ = ("buckets",)

    def __init__(self, spec: str) -> None:
        self.buckets: list[list[float]] = []  # [capacity, seconds, tokens, last refill]
        now = time.monotonic()
        for part in spec.split(","):
            capacity, _, seconds = part.strip().partition(":")
            try:
                c, s = int(capacity), int(seconds)
            except ValueError:
                raise ValueError(f"rate limit '{part}' is not 'capacity:seconds'") from None
            if c < 1 or s < 1:
                raise ValueError(f"rate limit '{part}' needs a capacity and a period of at least 1")
            self.buckets.append([c, s, c, now])

    def try_consume(self) -> bool:
        now = time.monotonic()
        for bucket in self.buckets:
            capacity, seconds, tokens, last = bucket
            bucket[2] = min(capacity, tokens + (now - last) * capacity / seconds)
            bucket[3] = now
        if any(bucket[2] < 1 for bucket in self.buckets):
            return False
        for bucket in self.buckets:
            bucket[2] -= 1
        return True


@node
class DeviceStateNode(RuleNode):
    type = "org.thingsboard.rule.engine.action.TbDeviceStateNode"
    name = "device state"
    component = "ACTION"
    relations: ClassVar[tuple[str, ...]] = (SUCCESS, FAILURE, RATE_LIMITED)
    default_config: ClassVar[dict[str, Any]] = {"event": MsgType.ACTIVITY_EVENT}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        event = config.get("event")
        if event is None:
            raise NodeConfigError("Event cannot be null!")
        if event not in EVENTS:
            raise NodeConfigError(f"Unsupported event: {event}")
        self.event = event
        self.limits: dict[uuid.UUID, RateLimit] = {}

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if msg.originator.entity_type != "DEVICE":
            raise ValueError(f"Unsupported originator entity type: [{msg.originator.entity_type}]. "
                             "Only DEVICE entity type is supported.")
        limit = self.limits.get(msg.originator.id)
        if limit is None:
            if len(self.limits) >= MAX_TRACKED_DEVICES:
                self.limits.clear()
            limit = self.limits[msg.originator.id] = RateLimit(DEFAULT_RATE_LIMITS)
        if not limit.try_consume():
            return [(RATE_LIMITED, msg)]
        ctx.report_device_state(msg.originator.id, self.event, metadata_ts(msg))
        return [(SUCCESS, msg)]

    async def close(self) -> None:
        self.limits.clear()
