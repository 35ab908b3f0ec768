"""What the device and entity actors write directly, outside rule chains: time series saved over
REST (``SaveTimeseries``) and the device events they turn into rule engine messages."""

from __future__ import annotations

import asyncio
import enum
import uuid
from typing import TYPE_CHECKING

from thingsray.storage.writer import TsRow, WriteRequest
from thingsray.transports.payloads import TelemetryGroup

if TYPE_CHECKING:
    from thingsray.actors.env import ShardEnv
    from thingsray.actors.messages import SaveTimeseries


class DeviceEvent(enum.StrEnum):
    CONNECT = "CONNECT_EVENT"
    DISCONNECT = "DISCONNECT_EVENT"
    ACTIVITY = "ACTIVITY_EVENT"
    INACTIVITY = "INACTIVITY_EVENT"


def ts_rows(entity_id: uuid.UUID, groups: tuple[TelemetryGroup, ...], default_ts: int) -> list[TsRow]:
    return [TsRow(entity_id, key, group.ts if group.ts is not None else default_ts, value)
            for group in groups for key, value in group.values.items()]


def save_timeseries(env: ShardEnv, entity_id: uuid.UUID, message: SaveTimeseries) -> asyncio.Future[None]:
    """Time series saved over REST: ThingsBoard writes them directly, not through rule chains."""
    return env.writer.submit(WriteRequest(ts_rows(entity_id, message.groups, message.ts)))
