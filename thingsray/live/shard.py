"""The publishing side, in each shard: which replicas watch which entities, and for each replica
an outbox it long-polls (``LivePublisher.poll``), answered as soon as something is in it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from thingsray.kv import to_json_value
from thingsray.live.updates import ALARM, ATTRIBUTES, TIMESERIES, LiveUpdate
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.writer import WriteRequest

log = logging.getLogger(__name__)

POLL_S = 20.0
"""How long a replica's poll waits for updates before it is answered with none."""
OUTBOX_LIMIT = 20_000
"""Updates kept for one replica between its polls; past it the oldest go (and are counted)."""
REPLICA_TIMEOUT_S = 90.0
"""A replica that has not polled for this long is gone: its watches are dropped."""


@dataclass(frozen=True, slots=True)
class Watch:
    """From a replica: start (``on``) or stop forwarding the updates of the addressed entity."""

    replica: str
    on: bool


@dataclass
class _Outbox:
    updates: list[LiveUpdate] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_poll: float = field(default_factory=time.monotonic)
    dropped: int = 0


class LivePublisher:
    def __init__(self) -> None:
        self.watchers: dict[uuid.UUID, set[str]] = {}
        self._outboxes: dict[str, _Outbox] = {}
        self.published = 0
        self.dropped = 0

    # --- from replicas -------------------------------------------------------------------------
    def watch(self, entity_id: uuid.UUID, message: Watch) -> None:
        if message.on:
            self.watchers.setdefault(entity_id, set()).add(message.replica)
            self._outbox(message.replica)
            return
        replicas = self.watchers.get(entity_id)
        if replicas is not None:
            replicas.discard(message.replica)
            if not replicas:
                del self.watchers[entity_id]

    async def poll(self, replica: str, timeout_s: float = POLL_S) -> tuple[bool, list[LiveUpdate]]:
        """(whether this shard knew the replica, its updates since its last poll); waits up to
        ``timeout_s`` for the first. A replica this shard did not know (the shard restarted)
        must watch its entities again."""
        known = replica in self._outboxes
        box = self._outbox(replica)
        box.last_poll = time.monotonic()
        if not box.updates:
            box.ready.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await box.ready.wait()
            except TimeoutError:
                pass
        box.last_poll = time.monotonic()
        updates, box.updates = box.updates, []
        self._expire()
        return known, updates

    def _outbox(self, replica: str) -> _Outbox:
        box = self._outboxes.get(replica)
        if box is None:
            box = self._outboxes[replica] = _Outbox()
        return box

    def _expire(self) -> None:
        now = time.monotonic()
        gone = [r for r, box in self._outboxes.items() if now - box.last_poll > REPLICA_TIMEOUT_S]
        for replica in gone:
            del self._outboxes[replica]
            for entity_id in [e for e, rs in self.watchers.items() if replica in rs]:
                self.watch(entity_id, Watch(replica, False))
            log.info("live updates: replica %s stopped polling; its watches are dropped", replica)

    # --- from the shard's writer and actors ------------------------------------------------------
    def committed(self, requests: Sequence[WriteRequest]) -> None:
        """The writer committed ``requests``: publish what any replica watches."""
        if not self.watchers:
            return
        series: dict[uuid.UUID, dict[str, list[tuple[int, Any]]]] = {}
        attributes: dict[tuple[uuid.UUID, int], dict[str, list[tuple[int, Any]]]] = {}
        for request in requests:
            for row in request.timeseries:
                if row.entity_id in self.watchers:
                    series.setdefault(row.entity_id, {}).setdefault(row.key, []).append(
                        (row.ts, to_json_value(row.value)))
            for attr in request.attributes:
                if attr.entity_id in self.watchers:
                    attributes.setdefault((attr.entity_id, attr.scope), {}).setdefault(attr.key, []).append(
                        (attr.ts, to_json_value(attr.value)))
        for entity_id, values in series.items():
            for points in values.values():
                points.sort(key=lambda point: point[0])
            self._publish(LiveUpdate(entity_id, TIMESERIES, None, values))
        for (entity_id, scope), values in attributes.items():
            self._publish(LiveUpdate(entity_id, ATTRIBUTES, AttributeScope(scope).name, values))

    def attributes_deleted(self, entity_id: uuid.UUID, scope: int | str, keys: Iterable[str]) -> None:
        if entity_id in self.watchers:
            name = scope if isinstance(scope, str) else AttributeScope(scope).name
            self._publish(LiveUpdate(entity_id, ATTRIBUTES, name, {}, tuple(keys)))

    def alarm_changed(self, entity_ids: Iterable[uuid.UUID], alarm_id: str, alarm: dict[str, Any] | None) -> None:
        """An alarm shown on ``entity_ids`` changed (``alarm`` its AlarmInfo JSON now, None: deleted)."""
        ts = int(time.time() * 1000)
        for entity_id in entity_ids:
            if entity_id in self.watchers:
                if alarm is None:
                    self._publish(LiveUpdate(entity_id, ALARM, None, {}, (alarm_id,)))
                else:
                    self._publish(LiveUpdate(entity_id, ALARM, None, {"alarm": [(ts, alarm)]}))

    def _publish(self, update: LiveUpdate) -> None:
        for replica in self.watchers.get(update.entity_id, ()):
            box = self._outbox(replica)
            box.updates.append(update)
            if len(box.updates) > OUTBOX_LIMIT:
                del box.updates[0]
                box.dropped += 1
                self.dropped += 1
            box.ready.set()
            self.published += 1
