"""The live side of the query commands (``queries``): one object per command id of a session.

- ENTITY_DATA runs the entity query under the socket user's scope and answers with the page. With
  ``historyCmd`` each entity of the page carries its history; with ``latestCmd`` / ``tsCmd`` the
  session watches every entity of the page, answers with their current values (or the time
  window's history), then sends each committed change as ``update``: the changed entity alone,
  with the changed keys only. The page itself is not re-run when entities are added, removed or
  renamed (ThingsBoard refreshes dynamic queries periodically; this server does not).
- ENTITY_COUNT answers the count once; it is not re-counted when entities change.
- ALARM_DATA / ALARM_COUNT find the entities of the query's ``entityFilter`` (at most
  ``MAX_ALARM_ENTITIES``), then the alarms of those entities; the session watches the entities,
  and each committed change of an alarm shown on one of them (``live.ALARM``) is sent: the
  changed AlarmData as ``update`` when it still passes the filter, the page again when an alarm
  on it left it (cleared, deleted, ...); the new count for ALARM_COUNT.

As for single-entity subscriptions, an entity is watched before its values are read, and what
arrives meanwhile is sent after the first answer: a change committed in between arrives twice
rather than never.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any, Protocol

from thingsray.live import ALARM, ATTRIBUTES, TIMESERIES, LiveUpdate
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.serve_app.ws import protocol, queries
from thingsray.serve_app.ws.protocol import CmdError, CmdType, ErrorCode
from thingsray.serve_app.ws.queries import AlarmCountCmd, AlarmDataCmd, AlarmFilter, EntityDataCmd, TsCmd
from thingsray.storage.alarms import AlarmService
from thingsray.storage.entity_query import (
    EntityQueryEngine,
    QueryError,
    QueryScope,
    parse_data_query,
)
from thingsray.storage.entity_query_model import (
    TIME_SERIES,
    EntityDataQuery,
    PageLink,
    parse_entity_filter,
)
from thingsray.storage.timeseries import HistoryQuery, TimeseriesRepository

log = logging.getLogger(__name__)

MAX_ALARM_ENTITIES = 1000
"""The entities an alarm subscription watches at most (ThingsBoard's maxEntitiesPerAlarmSubscription)."""

Sink = Callable[[LiveUpdate], None]


class Host(Protocol):
    """What a query subscription needs of its ``WsSession``."""

    services: Services
    principal: Principal | None
    live: Any

    def send(self, update: dict[str, Any]) -> None: ...

    def background(self, work: Coroutine[Any, Any, Any], what: str) -> None: ...

    def overflow(self) -> None: ...


HistoryQueryOf = Callable[[int, tuple[str, ...], int, int, int, int, Any], HistoryQuery]


class QuerySub:
    """One command id's subscription: the entities it watches and what arrived while it read."""

    kind: CmdType

    def __init__(self, host: Host, cmd_id: int, scope: QueryScope) -> None:
        self.host = host
        self.cmd_id = cmd_id
        self.scope = scope
        self.pending: list[LiveUpdate] | None = []
        self.closed = False
        self._unsubscribes: list[Callable[[], Awaitable[None]]] = []
        self.watched: set[uuid.UUID] = set()

    async def watch(self, ids: list[uuid.UUID]) -> None:
        if self.host.live is None:
            raise CmdError(self.cmd_id, ErrorCode.INTERNAL_ERROR,
                           "Live updates need the platform's shards, which this server cannot reach", self.kind)
        for entity_id in ids:
            if entity_id in self.watched or self.closed:
                continue
            self._unsubscribes.append(await self.host.live.subscribe(entity_id, self._sink))
            self.watched.add(entity_id)

    def _sink(self, update: LiveUpdate) -> None:
        if self.closed:
            return
        if self.pending is not None:
            self.pending.append(update)
            if len(self.pending) > self.host.services.settings.ws_send_queue:
                self.host.overflow()
            return
        self.on_update(update)

    def flush(self) -> None:
        """The first answer is out: send what arrived meanwhile, then live."""
        held, self.pending = self.pending or [], None
        for update in held:
            self.on_update(update)

    def on_update(self, update: LiveUpdate) -> None:
        """A committed change of a watched entity (on the session's loop; must not block)."""

    async def close(self) -> None:
        self.closed = True
        unsubscribes, self._unsubscribes = self._unsubscribes, []
        for unsubscribe in unsubscribes:
            await unsubscribe()


# --- ENTITY_DATA -----------------------------------------------------------------------------------
class EntityDataSub(QuerySub):
    kind = CmdType.ENTITY_DATA

    def __init__(self, host: Host, cmd_id: int, scope: QueryScope, query: EntityDataQuery) -> None:
        super().__init__(host, cmd_id, scope)
        self.query = query
        self.allowed = host.services.settings.max_page_size
        self.latest: dict[str, set[str]] = {}
        """Watched latest values: key type -> names."""
        self.ts_keys: frozenset[str] = frozenset()
        self.types: dict[uuid.UUID, str] = {}

    async def run(self, cmd: EntityDataCmd, history_query: HistoryQueryOf) -> None:
        engine = EntityQueryEngine(self.host.services.db)
        query = self.query
        if cmd.latest:
            merged = tuple(dict.fromkeys((*query.latest_values, *cmd.latest)))
            query = replace(query, latest_values=merged)
            for key in cmd.latest:
                self.latest.setdefault(key.type, set()).add(key.key)
        page = await engine.find(query, self.scope)
        if cmd.history is not None:
            await self._fill(page, cmd.history, history_query)
        live = bool(cmd.latest) or cmd.ts is not None
        if not live:
            self.pending = None
            self.host.send(queries.entity_data_update(self.cmd_id, page, None, self.allowed))
            return
        if cmd.ts is not None:
            self.ts_keys = frozenset(cmd.ts.keys)
        await self.watch(self._ids(page))
        if self.closed:
            return
        if cmd.latest:  # read again now that changes are watched: none is missed in between
            page = await engine.find(query, self.scope)
            await self.watch(self._ids(page))
            if cmd.history is not None:
                await self._fill(page, cmd.history, history_query)
        if cmd.ts is not None:
            await self._fill(page, cmd.ts, history_query)
        if self.closed:
            return
        self.host.send(queries.entity_data_update(self.cmd_id, page, None, self.allowed))
        self.flush()

    def _ids(self, page: dict[str, Any]) -> list[uuid.UUID]:
        ids = []
        for item in page["data"]:
            entity_id = uuid.UUID(item["entityId"]["id"])
            self.types[entity_id] = item["entityId"]["entityType"]
            ids.append(entity_id)
        return ids

    async def _fill(self, page: dict[str, Any], cmd: TsCmd, history_query: HistoryQueryOf) -> None:
        repo = TimeseriesRepository(self.host.services.db)
        query = history_query(self.cmd_id, cmd.keys, cmd.start_ts, cmd.end_ts, cmd.interval, cmd.limit, cmd.agg)
        for item in page["data"]:
            points = await repo.history(uuid.UUID(item["entityId"]["id"]), query)
            series: dict[str, list[dict[str, Any]]] = {key: [] for key in cmd.keys}
            for point in points:
                series.setdefault(point.key, []).append({"ts": point.ts, "value": protocol.value_text(point.value)})
            item["timeseries"] = series

    def on_update(self, update: LiveUpdate) -> None:
        entity = {"entityType": self.types.get(update.entity_id, "DEVICE"), "id": str(update.entity_id)}
        latest: dict[str, dict[str, dict[str, Any]]] = {}
        series: dict[str, list[dict[str, Any]]] = {}
        if update.kind == TIMESERIES:
            names = self.latest.get(TIME_SERIES, set())
            for key, points in update.values.items():
                if not points:
                    continue
                if key in names:
                    ts, value = max(points, key=lambda point: point[0])
                    latest.setdefault(TIME_SERIES, {})[key] = {"ts": ts, "value": protocol.value_text(value)}
                if key in self.ts_keys:
                    series[key] = [{"ts": ts, "value": protocol.value_text(value)} for ts, value in points]
        elif update.kind == ATTRIBUTES:
            for key_type in queries.attribute_key_types(update.scope):
                names = self.latest.get(key_type, set())
                for key, points in update.values.items():
                    if key in names and points:
                        ts, value = max(points, key=lambda point: point[0])
                        latest.setdefault(key_type, {})[key] = {"ts": ts, "value": protocol.value_text(value)}
        if latest:
            self.host.send(queries.entity_data_update(
                self.cmd_id, None, [{"entityId": entity, "latest": latest, "timeseries": None}], self.allowed))
        if series:
            self.host.send(queries.entity_data_update(
                self.cmd_id, None, [{"entityId": entity, "latest": None, "timeseries": series}], self.allowed))


# --- ALARM_DATA and ALARM_COUNT --------------------------------------------------------------------
class _AlarmSub(QuerySub):
    def __init__(self, host: Host, cmd_id: int, scope: QueryScope, raw: dict[str, Any], alarm_filter: AlarmFilter):
        super().__init__(host, cmd_id, scope)
        self.raw = raw
        self.filter = alarm_filter
        self.entities: list[uuid.UUID] = []
        self.types: dict[uuid.UUID, str] = {}
        self.total_entities = 0
        self._rerun: asyncio.Event | None = None
        self._running = False

    async def find_entities(self) -> None:
        try:
            entity_filter = parse_entity_filter(self.raw.get("entityFilter"))
            key_filters = parse_data_query({"entityFilter": self.raw.get("entityFilter"),
                                            "keyFilters": self.raw.get("keyFilters"),
                                            "pageLink": {"pageSize": 1}}, 1).key_filters
        except QueryError as exc:
            raise CmdError(self.cmd_id, ErrorCode.BAD_REQUEST, str(exc), self.kind) from None
        query = EntityDataQuery(entity_filter, PageLink(MAX_ALARM_ENTITIES), key_filters=key_filters)
        page = await EntityQueryEngine(self.host.services.db).find(query, self.scope)
        self.entities = [uuid.UUID(item["entityId"]["id"]) for item in page["data"]]
        self.types = {uuid.UUID(item["entityId"]["id"]): item["entityId"]["entityType"] for item in page["data"]}
        self.total_entities = page["totalElements"]

    @property
    def customer_id(self) -> uuid.UUID | None:
        return self.scope.customer_id

    def relevant(self, update: LiveUpdate, alarm: dict[str, Any]) -> bool:
        """Whether ``alarm`` is one this query looks at, whatever its state."""
        if self.customer_id is not None and (alarm.get("customerId") or {}).get("id") != str(self.customer_id):
            return False
        return self.filter.propagated or alarm["originator"]["id"] == str(update.entity_id)

    def again(self) -> None:
        """Run ``refresh`` (again): one run at a time, the last request always followed by a run."""
        if self._running:
            assert self._rerun is not None
            self._rerun.set()
            return
        self._running = True
        self._rerun = asyncio.Event()

        async def loop() -> None:
            assert self._rerun is not None
            try:
                while not self.closed:
                    self._rerun.clear()
                    await self.refresh()
                    if not self._rerun.is_set():
                        break
            finally:
                self._running = False

        self.host.background(loop(), f"refreshing {self.kind} {self.cmd_id}")

    async def refresh(self) -> None: ...


class AlarmDataSub(_AlarmSub):
    kind = CmdType.ALARM_DATA

    def __init__(self, host: Host, cmd: AlarmDataCmd, scope: QueryScope) -> None:
        super().__init__(host, cmd.cmd_id, scope, cmd.query, cmd.filter)
        self.page = cmd.page
        self.shown: dict[str, dict[str, Any]] = {}
        """Alarm id -> the AlarmData last sent for it."""

    async def run(self) -> None:
        await self.find_entities()
        await self.watch(self.entities)
        if self.closed:
            return
        self.host.send(queries.alarm_data_update(self.cmd_id, await self._find(), None, MAX_ALARM_ENTITIES,
                                                 self.total_entities))
        self.flush()

    async def _find(self) -> dict[str, Any]:
        page = await AlarmService(self.host.services.db).find_for_entities(
            self.scope.tenant_id, self.entities, self.page, self.filter.query(), propagated=self.filter.propagated,
            customer_id=self.customer_id)
        self.shown = {item["id"]["id"]: item for item in page["data"]}
        return page

    async def refresh(self) -> None:
        page = await self._find()
        if not self.closed:
            self.host.send(queries.alarm_data_update(self.cmd_id, page, None, MAX_ALARM_ENTITIES,
                                                     self.total_entities))

    def on_update(self, update: LiveUpdate) -> None:
        if update.kind != ALARM:
            return
        for alarm_id in update.deleted:
            if alarm_id in self.shown:
                self.again()
        for _, alarm in update.values.get("alarm", ()):
            if not self.relevant(update, alarm):
                continue
            alarm_id = alarm["id"]["id"]
            if not self.filter.matches(alarm):
                if alarm_id in self.shown:
                    self.again()  # it left the page: the page again
                continue
            originator = alarm["originator"]
            shown_on = originator if uuid.UUID(originator["id"]) in self.watched else {
                "entityType": self.types.get(update.entity_id), "id": str(update.entity_id)}
            data = {**alarm, "entityId": shown_on, "latest": {}}
            previous = self.shown.get(alarm_id)
            if previous is not None and {**previous, "entityId": None} == {**data, "entityId": None}:
                continue  # the same change, seen on another entity it shows on
            self.shown[alarm_id] = data
            self.host.send(queries.alarm_data_update(self.cmd_id, None, [data], MAX_ALARM_ENTITIES,
                                                     self.total_entities))


class AlarmCountSub(_AlarmSub):
    kind = CmdType.ALARM_COUNT

    def __init__(self, host: Host, cmd: AlarmCountCmd, scope: QueryScope) -> None:
        super().__init__(host, cmd.cmd_id, scope, cmd.query, cmd.filter)
        self.count: int | None = None

    async def run(self) -> None:
        await self.find_entities()
        await self.watch(self.entities)
        if self.closed:
            return
        await self.refresh()
        self.flush()

    async def refresh(self) -> None:
        count = await AlarmService(self.host.services.db).count_for_entities(
            self.scope.tenant_id, self.entities, self.filter.query(), propagated=self.filter.propagated,
            customer_id=self.customer_id)
        if count != self.count and not self.closed:
            self.count = count
            self.host.send(queries.count_update(CmdType.ALARM_COUNT, self.cmd_id, count))

    def on_update(self, update: LiveUpdate) -> None:
        if update.kind != ALARM:
            return
        if update.deleted or any(self.relevant(update, alarm) for _, alarm in update.values.get("alarm", ())):
            self.again()

