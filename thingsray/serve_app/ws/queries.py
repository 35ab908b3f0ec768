"""ThingsBoard's query commands of ``/api/ws``: ENTITY_DATA, ENTITY_COUNT, ALARM_DATA, ALARM_COUNT and
their unsubscribes; parsing what a client sends and shaping the updates it gets.

The updates are ThingsBoard's ``CmdUpdate``s, keyed by ``cmdId`` (not ``subscriptionId``):

- ``EntityDataUpdate``: ``{"cmdId", "errorCode", "errorMsg", "data": PageData<EntityData> | null,
  "update": [EntityData] | null, "allowedEntities", "cmdUpdateType": "ENTITY_DATA"}``; ``data`` is the
  page (first answer), ``update`` the entities whose values changed since.
- ``AlarmDataUpdate``: the same with AlarmData (AlarmInfo + ``entityId`` + ``latest``) and
  ``totalEntities``, ``cmdUpdateType`` "ALARM_DATA".
- ``EntityCountUpdate`` / ``AlarmCountUpdate``: ``{"cmdId", "errorCode", "errorMsg", "count",
  "cmdUpdateType": "ENTITY_COUNT" | "ALARM_COUNT"}``.

An entity query (``query``) is parsed when the command runs, against the server's page size limit.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from thingsray.serve_app.ws.protocol import (
    DEFAULT_LIMIT,
    CmdError,
    CmdType,
    ErrorCode,
    _agg,
    _int,
    _limit,
)
from thingsray.storage.alarms import SEARCH_STATUSES, SEVERITIES, SORT_COLUMNS, AlarmQuery, StatusFilter
from thingsray.storage.entities import PageQuery
from thingsray.storage.entity_query_model import ATTRIBUTE_SCOPES, KEY_TYPES, EntityKey
from thingsray.storage.timeseries import Aggregation

DATA_KINDS = frozenset({CmdType.ENTITY_DATA, CmdType.ENTITY_COUNT, CmdType.ALARM_DATA, CmdType.ALARM_COUNT})
UNSUBSCRIBES = {CmdType.ENTITY_DATA_UNSUBSCRIBE: CmdType.ENTITY_DATA,
                CmdType.ENTITY_COUNT_UNSUBSCRIBE: CmdType.ENTITY_COUNT,
                CmdType.ALARM_DATA_UNSUBSCRIBE: CmdType.ALARM_DATA,
                CmdType.ALARM_COUNT_UNSUBSCRIBE: CmdType.ALARM_COUNT}
KINDS = DATA_KINDS | frozenset(UNSUBSCRIBES)
MAX_ALARM_PAGE = 10_000


# --- commands ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TsCmd:
    """``tsCmd`` (live, ``end_ts`` None: from ``start_ts`` over ``time_window``) or ``historyCmd``."""

    keys: tuple[str, ...]
    start_ts: int
    end_ts: int
    interval: int = 0
    limit: int = DEFAULT_LIMIT
    agg: Aggregation = Aggregation.NONE


@dataclass(frozen=True, slots=True)
class EntityDataCmd:
    cmd_id: int
    query: dict[str, Any] | None
    """The EntityDataQuery JSON; None: keep the query of the command with this id."""
    latest: tuple[EntityKey, ...] | None = None
    ts: TsCmd | None = None
    history: TsCmd | None = None


@dataclass(frozen=True, slots=True)
class EntityCountCmd:
    cmd_id: int
    query: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """What an alarm query keeps of the alarms of its entities (AlarmDataPageLink / AlarmCountQuery)."""

    status: StatusFilter = field(default_factory=StatusFilter)
    severities: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    assignee_id: uuid.UUID | None = None
    start_ts: int = 0
    end_ts: int = 0
    time_window: int = 0
    propagated: bool = False

    def query(self, now_ms: int | None = None) -> AlarmQuery:
        start, end = self.window(now_ms)
        return AlarmQuery(self.status, self.severities, self.types, self.assignee_id, start, end)

    def window(self, now_ms: int | None = None) -> tuple[int | None, int | None]:
        """(created at or after, created at or before), as ThingsBoard: a ``timeWindow`` ends now."""
        if self.time_window > 0:
            now = now_ms if now_ms is not None else int(time.time() * 1000)
            return now - self.time_window, None
        return (self.start_ts or None), (self.end_ts or None)

    def matches(self, alarm: dict[str, Any]) -> bool:
        """Whether the alarm (AlarmInfo JSON) passes this filter now."""
        if self.status.cleared is not None and alarm["cleared"] != self.status.cleared:
            return False
        if self.status.acknowledged is not None and alarm["acknowledged"] != self.status.acknowledged:
            return False
        if self.severities and alarm["severity"] not in self.severities:
            return False
        if self.types and alarm["type"] not in self.types:
            return False
        assignee = alarm.get("assigneeId")
        if self.assignee_id is not None and (assignee is None or assignee["id"] != str(self.assignee_id)):
            return False
        start, end = self.window()
        created = alarm["createdTime"]
        return (start is None or created >= start) and (end is None or created <= end)


@dataclass(frozen=True, slots=True)
class AlarmDataCmd:
    cmd_id: int
    query: dict[str, Any]
    """The query JSON (its ``entityFilter`` and ``keyFilters`` are parsed when it runs)."""
    page: PageQuery
    filter: AlarmFilter


@dataclass(frozen=True, slots=True)
class AlarmCountCmd:
    cmd_id: int
    query: dict[str, Any]
    filter: AlarmFilter


@dataclass(frozen=True, slots=True)
class UnsubscribeCmd:
    kind: CmdType
    """The kind of subscription it ends (ENTITY_DATA, ...)."""
    cmd_id: int


QueryCmd = EntityDataCmd | EntityCountCmd | AlarmDataCmd | AlarmCountCmd


# --- parsing -------------------------------------------------------------------------------------
def parse(kind: CmdType, cmd_id: int, item: dict[str, Any]) -> QueryCmd | UnsubscribeCmd:
    if kind in UNSUBSCRIBES:
        return UnsubscribeCmd(UNSUBSCRIBES[kind], cmd_id)
    bad = _bad(kind, cmd_id)
    query = item.get("query")
    if query is not None and not isinstance(query, dict):
        raise bad("'query' must be an object")
    if kind is CmdType.ENTITY_DATA:
        return EntityDataCmd(cmd_id, query, _latest_cmd(item.get("latestCmd"), bad),
                             _ts_cmd(item.get("tsCmd"), cmd_id, bad, live=True),
                             _ts_cmd(item.get("historyCmd"), cmd_id, bad, live=False))
    if query is None:
        raise bad("Query is empty!")
    if kind is CmdType.ENTITY_COUNT:
        return EntityCountCmd(cmd_id, query)
    if kind is CmdType.ALARM_DATA:
        link = query.get("pageLink")
        if not isinstance(link, dict):
            raise bad("'query.pageLink' must be an object")
        return AlarmDataCmd(cmd_id, query, _alarm_page(link, cmd_id, bad), _alarm_filter(link, cmd_id, bad))
    return AlarmCountCmd(cmd_id, query, _alarm_filter(query, cmd_id, bad))


class _bad:
    """Makes the CmdError of one command (BAD_REQUEST, in the shape of its kind's updates)."""

    def __init__(self, kind: CmdType, cmd_id: int) -> None:
        self.kind, self.cmd_id = kind, cmd_id

    def __call__(self, message: str) -> CmdError:
        return CmdError(self.cmd_id, ErrorCode.BAD_REQUEST, message, self.kind)


def _latest_cmd(value: Any, bad: _bad) -> tuple[EntityKey, ...] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("keys", []), list):
        raise bad("'latestCmd' must be an object with a list of 'keys'")
    keys = []
    for key in value.get("keys") or ():
        if not isinstance(key, dict) or not isinstance(key.get("key"), str) or key.get("type") not in KEY_TYPES:
            raise bad(f"latestCmd.keys: each key needs a 'key' and a 'type' of {', '.join(sorted(KEY_TYPES))}")
        keys.append(EntityKey(key["type"], key["key"]))
    return tuple(dict.fromkeys(keys))


def _ts_cmd(value: Any, cmd_id: int, bad: _bad, *, live: bool) -> TsCmd | None:
    name = "tsCmd" if live else "historyCmd"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad(f"'{name}' must be an object")
    raw = value.get("keys")
    if not isinstance(raw, list) or not raw or not all(isinstance(k, str) and k for k in raw):
        raise bad(f"{name}.keys must be a non-empty list of key names")
    try:
        start = _int(value, "startTs", cmd_id)
        end = start + _int(value, "timeWindow", cmd_id) if live else _int(value, "endTs", cmd_id)
        interval, limit, agg = _int(value, "interval", cmd_id), _limit(value, cmd_id), _agg(value, cmd_id)
    except CmdError as exc:
        raise bad(f"{name}: {exc.message}") from None
    if end < start:
        raise bad(f"{name}: the time range ends before it starts")
    return TsCmd(tuple(dict.fromkeys(raw)), start, end, interval, limit, agg)


def _strings(value: Any, name: str, allowed: tuple[str, ...] | None, bad: _bad) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"'{name}' must be a list of strings")
    if allowed is not None:
        for v in value:
            if v not in allowed:
                raise bad(f"Invalid {name} value '{v[:32]}': use one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(value))


def _alarm_filter(data: dict[str, Any], cmd_id: int, bad: _bad) -> AlarmFilter:
    assignee = data.get("assigneeId")
    if isinstance(assignee, dict):
        assignee = assignee.get("id")
    assignee_id = None
    if assignee is not None:
        try:
            assignee_id = uuid.UUID(assignee) if isinstance(assignee, str) else None
        except ValueError:
            assignee_id = None
        if assignee_id is None:
            raise bad("'assigneeId' must be a user id")
    propagated = data.get("searchPropagatedAlarms", False)
    if not isinstance(propagated, bool):
        raise bad("'searchPropagatedAlarms' must be true or false")
    try:
        start, end, window = (_int(data, "startTs", cmd_id), _int(data, "endTs", cmd_id),
                              _int(data, "timeWindow", cmd_id))
    except CmdError as exc:
        raise bad(exc.message) from None
    return AlarmFilter(StatusFilter.of_search(_strings(data.get("statusList"), "statusList", SEARCH_STATUSES, bad)),
                       _strings(data.get("severityList"), "severityList", SEVERITIES, bad),
                       _strings(data.get("typeList"), "typeList", None, bad), assignee_id, start, end, window,
                       propagated)


def _alarm_page(link: dict[str, Any], cmd_id: int, bad: _bad) -> PageQuery:
    try:
        size = _int(link, "pageSize", cmd_id, 10)
        page = _int(link, "page", cmd_id)
    except CmdError as exc:
        raise bad(exc.message) from None
    if not 1 <= size <= MAX_ALARM_PAGE:
        raise bad(f"pageLink.pageSize must be between 1 and {MAX_ALARM_PAGE}, not {size}")
    if page < 0:
        raise bad("pageLink.page must not be negative")
    text = link.get("textSearch")
    if text is not None and not isinstance(text, str):
        raise bad("pageLink.textSearch must be a string")
    column, desc = None, True
    order = link.get("sortOrder")
    if order is not None:
        if not isinstance(order, dict):
            raise bad("pageLink.sortOrder must be an object")
        key = order.get("key")
        name = key.get("key") if isinstance(key, dict) else None
        direction = order.get("direction", "ASC")
        if direction not in ("ASC", "DESC"):
            raise bad(f"pageLink.sortOrder.direction must be ASC or DESC, not {str(direction)[:16]!r}")
        desc = direction == "DESC"
        column = SORT_COLUMNS.get(name) if isinstance(name, str) else None
        if column is None:  # an entity field or a latest value: ThingsBoard's default order, newest first
            desc = True
    return PageQuery(page, size, text or None, column or "a.created_time", desc)


# --- updates -------------------------------------------------------------------------------------
def entity_data_update(cmd_id: int, data: dict[str, Any] | None, update: list[dict[str, Any]] | None,
                       allowed: int) -> dict[str, Any]:
    return {"cmdId": cmd_id, "errorCode": 0, "errorMsg": None, "data": data, "update": update,
            "allowedEntities": allowed, "cmdUpdateType": CmdType.ENTITY_DATA.value}


def alarm_data_update(cmd_id: int, data: dict[str, Any] | None, update: list[dict[str, Any]] | None,
                      allowed: int, total: int) -> dict[str, Any]:
    return {"cmdId": cmd_id, "errorCode": 0, "errorMsg": None, "data": data, "update": update,
            "allowedEntities": allowed, "totalEntities": total, "cmdUpdateType": CmdType.ALARM_DATA.value}


def count_update(kind: CmdType, cmd_id: int, count: int) -> dict[str, Any]:
    return {"cmdId": cmd_id, "errorCode": 0, "errorMsg": None, "count": count, "cmdUpdateType": kind.value}


def error_update(kind: CmdType, cmd_id: int, code: ErrorCode, message: str | None) -> dict[str, Any]:
    kind = UNSUBSCRIBES.get(kind, kind)
    text = message if message is not None else code.default_message
    if kind in (CmdType.ENTITY_COUNT, CmdType.ALARM_COUNT):
        body: dict[str, Any] = {"cmdId": cmd_id, "errorCode": int(code), "errorMsg": text, "count": 0}
    else:
        body = {"cmdId": cmd_id, "errorCode": int(code), "errorMsg": text, "data": None, "update": None,
                "allowedEntities": 0}
        if kind is CmdType.ALARM_DATA:
            body["totalEntities"] = 0
    body["cmdUpdateType"] = kind.value
    return body


def attribute_key_types(scope: str | None) -> frozenset[str]:
    """The latest-value key types an attribute update of ``scope`` carries values for."""
    names = {"ATTRIBUTE"}
    for key_type, scope_id in ATTRIBUTE_SCOPES.items():
        if scope == {1: "CLIENT_SCOPE", 2: "SERVER_SCOPE", 3: "SHARED_SCOPE"}[scope_id]:
            names.add(key_type)
    return frozenset(names)
