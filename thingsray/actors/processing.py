"""What happens to a device's messages once its actor has them.

Until the rule engine lands, ``SaveProcessing`` is ThingsBoard's root chain in its simplest
form: telemetry is saved as time series (and latest values), client attributes as attributes,
and device events are logged. The rule engine replaces it behind the same ``Processing``
protocol, so neither transports nor the device actor change.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from typing import TYPE_CHECKING, Protocol

from thingsray.actors.messages import PostAttributes, PostTelemetry, SaveTimeseries
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.writer import AttributeRow, TsRow, WriteRequest
from thingsray.transports.payloads import TelemetryGroup

if TYPE_CHECKING:
    from thingsray.actors.env import ShardEnv

log = logging.getLogger(__name__)


class DeviceEvent(enum.StrEnum):
    CONNECT = "CONNECT_EVENT"
    DISCONNECT = "DISCONNECT_EVENT"
    ACTIVITY = "ACTIVITY_EVENT"
    INACTIVITY = "INACTIVITY_EVENT"


class Processing(Protocol):
    def telemetry(self, env: ShardEnv, entity_id: uuid.UUID, message: PostTelemetry) -> asyncio.Future[None]:
        """Start processing; the future resolves once everything the message causes is durable."""

    def attributes(self, env: ShardEnv, entity_id: uuid.UUID, message: PostAttributes) -> asyncio.Future[None]: ...

    def timeseries(self, env: ShardEnv, entity_id: uuid.UUID, message: SaveTimeseries) -> asyncio.Future[None]: ...

    def event(self, env: ShardEnv, entity_id: uuid.UUID, event: DeviceEvent, ts: int) -> None: ...


def ts_rows(entity_id: uuid.UUID, groups: tuple[TelemetryGroup, ...], default_ts: int) -> list[TsRow]:
    return [TsRow(entity_id, key, group.ts if group.ts is not None else default_ts, value)
            for group in groups for key, value in group.values.items()]


class SaveProcessing:
    def telemetry(self, env: ShardEnv, entity_id: uuid.UUID, message: PostTelemetry) -> asyncio.Future[None]:
        return env.writer.submit(WriteRequest(ts_rows(entity_id, message.groups, message.received_ts)))

    def attributes(self, env: ShardEnv, entity_id: uuid.UUID, message: PostAttributes) -> asyncio.Future[None]:
        return env.writer.submit(WriteRequest(attributes=[
            AttributeRow(entity_id, AttributeScope.CLIENT_SCOPE, k, v, message.received_ts)
            for k, v in message.values.items()]))

    def timeseries(self, env: ShardEnv, entity_id: uuid.UUID, message: SaveTimeseries) -> asyncio.Future[None]:
        return env.writer.submit(WriteRequest(ts_rows(entity_id, message.groups, message.ts)))

    def event(self, env: ShardEnv, entity_id: uuid.UUID, event: DeviceEvent, ts: int) -> None:
        log.debug("device %s: %s at %d", entity_id, event, ts)


def default_processing() -> Processing:
    return SaveProcessing()
