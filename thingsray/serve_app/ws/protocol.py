"""ThingsBoard's WebSocket commands and updates: parsing what a client sends, shaping what it gets.

Two wire forms carry the same commands. The telemetry plugin endpoint takes
``{"attrSubCmds": [..], "tsSubCmds": [..], "historyCmds": [..], ...}``; ``/api/ws`` takes
``{"authCmd": {"cmdId": 0, "token": ".."}, "cmds": [{"type": "TIMESERIES", ...}, ...]}``.
Both answer with ThingsBoard's ``TelemetrySubscriptionUpdate``:
``{"subscriptionId", "errorCode", "errorMsg", "data": {key: [[ts, "value"], ..]}, "latestValues"}``
where ``subscriptionId`` is the command's ``cmdId`` and nulls are written as null.

A message that is not a JSON object fails as a whole (``PayloadError``); a command that is wrong
fails alone (``CmdError``, answered with that command's id), the others still run.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import orjson

from thingsray.kv import JsonValue, java_double
from thingsray.storage.timeseries import Aggregation


class ErrorCode(enum.IntEnum):
    """ThingsBoard's SubscriptionErrorCode."""

    NO_ERROR = 0
    INTERNAL_ERROR = 1
    BAD_REQUEST = 2
    UNAUTHORIZED = 3

    @property
    def default_message(self) -> str | None:
        return _DEFAULT_MESSAGES.get(self)


_DEFAULT_MESSAGES = {ErrorCode.INTERNAL_ERROR: "Internal Server error!", ErrorCode.BAD_REQUEST: "Bad request",
                     ErrorCode.UNAUTHORIZED: "Unauthorized"}

FAILED_TO_FETCH_DATA = "Failed to fetch data!"
FAILED_TO_PARSE = "Failed to parse the payload"
PARSE_ERROR_ID = 1
"""The subscriptionId ThingsBoard answers a message it cannot parse with."""


class CmdType(enum.StrEnum):
    """ThingsBoard's WsCmdType (``type`` of a command in ``cmds``)."""

    AUTH = "AUTH"
    ATTRIBUTES = "ATTRIBUTES"
    TIMESERIES = "TIMESERIES"
    TIMESERIES_HISTORY = "TIMESERIES_HISTORY"
    ENTITY_DATA = "ENTITY_DATA"
    ENTITY_COUNT = "ENTITY_COUNT"
    ALARM_DATA = "ALARM_DATA"
    ALARM_COUNT = "ALARM_COUNT"
    NOTIFICATIONS = "NOTIFICATIONS"
    NOTIFICATIONS_COUNT = "NOTIFICATIONS_COUNT"
    MARK_NOTIFICATIONS_AS_READ = "MARK_NOTIFICATIONS_AS_READ"
    MARK_ALL_NOTIFICATIONS_AS_READ = "MARK_ALL_NOTIFICATIONS_AS_READ"
    ALARM_DATA_UNSUBSCRIBE = "ALARM_DATA_UNSUBSCRIBE"
    ALARM_COUNT_UNSUBSCRIBE = "ALARM_COUNT_UNSUBSCRIBE"
    ENTITY_DATA_UNSUBSCRIBE = "ENTITY_DATA_UNSUBSCRIBE"
    ENTITY_COUNT_UNSUBSCRIBE = "ENTITY_COUNT_UNSUBSCRIBE"
    NOTIFICATIONS_UNSUBSCRIBE = "NOTIFICATIONS_UNSUBSCRIBE"
    RPC = "RPC"


PLUGIN_LISTS: tuple[tuple[str, CmdType], ...] = (
    ("attrSubCmds", CmdType.ATTRIBUTES), ("tsSubCmds", CmdType.TIMESERIES), ("historyCmds", CmdType.TIMESERIES_HISTORY),
    ("entityDataCmds", CmdType.ENTITY_DATA), ("entityDataUnsubscribeCmds", CmdType.ENTITY_DATA_UNSUBSCRIBE),
    ("alarmDataCmds", CmdType.ALARM_DATA), ("alarmDataUnsubscribeCmds", CmdType.ALARM_DATA_UNSUBSCRIBE),
    ("entityCountCmds", CmdType.ENTITY_COUNT), ("entityCountUnsubscribeCmds", CmdType.ENTITY_COUNT_UNSUBSCRIBE),
    ("alarmCountCmds", CmdType.ALARM_COUNT), ("alarmCountUnsubscribeCmds", CmdType.ALARM_COUNT_UNSUBSCRIBE),
)
"""The plugin endpoint's command lists, in the order ThingsBoard's TelemetryCmdsWrapper runs them."""

SCOPES = ("CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE")
DEFAULT_LIMIT = 100
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


class PayloadError(ValueError):
    """The message as a whole cannot be read."""


class CmdError(Exception):
    """One command is wrong; answered as an error update on its ``cmd_id``."""

    def __init__(self, cmd_id: int, code: ErrorCode, message: str, kind: CmdType | None = None) -> None:
        super().__init__(message)
        self.cmd_id = cmd_id
        self.code = code
        self.message = message
        self.kind = kind
        """A query command's kind (ENTITY_DATA, ...): answered in the shape of its updates."""

    def __repr__(self) -> str:
        return f"CmdError({self.cmd_id}, {self.code.name}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CmdError) and (other.cmd_id, other.code, other.message) == (
            self.cmd_id, self.code, self.message)

    __hash__ = None  # type: ignore[assignment]

    def update(self) -> dict[str, Any]:
        if self.kind is not None:
            from thingsray.serve_app.ws import queries

            return queries.error_update(self.kind, self.cmd_id, self.code, self.message)
        return error_update(self.cmd_id, self.code, self.message)


@dataclass(frozen=True, slots=True)
class SubscriptionCmd:
    """A TIMESERIES or ATTRIBUTES subscription (or, with ``unsubscribe``, its end). ``keys`` None
    means every key; ``scope`` None every attribute scope."""

    type: CmdType
    cmd_id: int
    entity_type: str
    entity_id: str
    keys: tuple[str, ...] | None = None
    scope: str | None = None
    unsubscribe: bool = False
    start_ts: int = 0
    time_window: int = 0
    interval: int = 0
    limit: int = DEFAULT_LIMIT
    agg: Aggregation = Aggregation.NONE


@dataclass(frozen=True, slots=True)
class HistoryCmd:
    cmd_id: int
    entity_type: str
    entity_id: str
    keys: tuple[str, ...]
    start_ts: int = 0
    end_ts: int = 0
    interval: int = 0
    limit: int = DEFAULT_LIMIT
    agg: Aggregation = Aggregation.NONE


Cmd = Any
"""SubscriptionCmd, HistoryCmd, or one of ``queries``' commands."""


@dataclass(frozen=True, slots=True)
class Message:
    """One client message: the token of its ``authCmd`` (if any), then its commands in order, each
    parsed or the error it is answered with."""

    token: str | None
    has_auth: bool
    cmds: list[Cmd | CmdError]


# --- parsing -------------------------------------------------------------------------------------
def parse_plugin_message(text: str | bytes, max_cmds: int) -> Message:
    """A message of ``/api/ws/plugins/telemetry``."""
    body = _object(text)
    raw: list[tuple[CmdType, Any]] = []
    for field, kind in PLUGIN_LISTS:
        items = body.get(field)
        if items is None:
            continue
        if not isinstance(items, list):
            raise PayloadError(f"'{field}' must be a list of commands")
        raw.extend((kind, item) for item in items)
    return Message(None, False, _commands(raw, max_cmds))


def parse_general_message(text: str | bytes, max_cmds: int) -> Message:
    """A message of ``/api/ws``: ``authCmd`` and/or ``cmds``."""
    body = _object(text)
    auth = body.get("authCmd")
    token: str | None = None
    if auth is not None:
        if not isinstance(auth, dict):
            raise PayloadError("'authCmd' must be an object")
        value = auth.get("token")
        token = value if isinstance(value, str) and value else None
    items = body.get("cmds")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise PayloadError("'cmds' must be a list of commands")
    raw: list[tuple[CmdType | None, Any]] = []
    for item in items:
        kind = item.get("type") if isinstance(item, dict) else None
        raw.append((_cmd_type(kind), item))
    return Message(token, auth is not None, _commands(raw, max_cmds))


def _object(text: str | bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"Invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise PayloadError("A message must be a JSON object")
    return body


def _cmd_type(kind: Any) -> CmdType | None:
    if not isinstance(kind, str):
        return None
    try:
        return CmdType(kind)
    except ValueError:
        return None


def _commands(raw: list[tuple[CmdType | None, Any]], max_cmds: int) -> list[Cmd | CmdError]:
    if len(raw) > max_cmds:
        first = _cmd_id_or(raw[0][1], PARSE_ERROR_ID)
        return [CmdError(first, ErrorCode.BAD_REQUEST,
                         f"Too many commands in one message: {len(raw)}; send at most {max_cmds} at a time")]
    cmds: list[Cmd | CmdError] = []
    for kind, item in raw:
        try:
            cmds.append(parse_cmd(kind, item))
        except CmdError as error:
            cmds.append(error)
    return cmds


def parse_cmd(kind: CmdType | None, item: Any) -> Cmd:
    """One command of a known ``kind`` (None: a ``type`` that is missing or unknown)."""
    if not isinstance(item, dict):
        raise CmdError(PARSE_ERROR_ID, ErrorCode.BAD_REQUEST, "A command must be a JSON object")
    cmd_id = _int(item, "cmdId", PARSE_ERROR_ID, 0, INT_MIN, INT_MAX)
    if kind is None:
        given = item.get("type")
        if given is None:
            raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "Command type is missing")
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST,
                       f"Unknown command type: {str(given)[:64]}; use one of {', '.join(CmdType)}")
    from thingsray.serve_app.ws import queries  # it builds on this module

    query_kind = kind if kind in queries.KINDS else None
    if cmd_id < 0:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "Cmd id is negative value!", query_kind)
    if query_kind is not None:
        return queries.parse(kind, cmd_id, item)
    if kind in (CmdType.TIMESERIES, CmdType.ATTRIBUTES):
        return _subscription(kind, cmd_id, item)
    if kind is CmdType.TIMESERIES_HISTORY:
        return _history(cmd_id, item)
    raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, f"Command type {kind} is not supported by this server")


def _subscription(kind: CmdType, cmd_id: int, item: dict[str, Any]) -> SubscriptionCmd:
    unsubscribe = item.get("unsubscribe", False)
    if not isinstance(unsubscribe, bool):
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "'unsubscribe' must be true or false")
    entity_id = _str(item, "entityId", cmd_id)
    entity_type = _str(item, "entityType", cmd_id)
    if unsubscribe:  # an unsubscribe needs nothing else; an empty entityId ends every subscription
        return SubscriptionCmd(kind, cmd_id, entity_type, entity_id, unsubscribe=True)
    if not entity_id:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "Device id is empty!")
    if not entity_type:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "Entity type is empty!")
    keys = parse_keys(_str(item, "keys", cmd_id))
    if kind is CmdType.ATTRIBUTES:
        scope = _str(item, "scope", cmd_id) or None
        if scope is not None and scope not in SCOPES:
            raise CmdError(cmd_id, ErrorCode.BAD_REQUEST,
                           f"Invalid scope: {scope[:64]}; use CLIENT_SCOPE, SERVER_SCOPE or SHARED_SCOPE")
        return SubscriptionCmd(kind, cmd_id, entity_type, entity_id, keys, scope)
    start_ts = _int(item, "startTs", cmd_id)
    time_window = _int(item, "timeWindow", cmd_id)
    interval = _int(item, "interval", cmd_id)
    limit, agg = _limit(item, cmd_id), _agg(item, cmd_id)
    if time_window < 0:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "'timeWindow' must not be negative")
    return SubscriptionCmd(kind, cmd_id, entity_type, entity_id, keys, None, False, start_ts, time_window,
                           interval, limit, agg)


def _history(cmd_id: int, item: dict[str, Any]) -> HistoryCmd:
    entity_id = _str(item, "entityId", cmd_id)
    entity_type = _str(item, "entityType", cmd_id)
    if not entity_id or not entity_type:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "Device id is empty!")
    keys = parse_keys(_str(item, "keys", cmd_id))
    if not keys:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "Keys are empty!")
    start_ts, end_ts = _int(item, "startTs", cmd_id), _int(item, "endTs", cmd_id)
    if end_ts < start_ts:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "endTs must not be before startTs")
    return HistoryCmd(cmd_id, entity_type, entity_id, keys, start_ts, end_ts, _int(item, "interval", cmd_id),
                      _limit(item, cmd_id), _agg(item, cmd_id))


def parse_keys(keys: str) -> tuple[str, ...] | None:
    """``"a,b"`` -> ("a", "b"); empty means every key (None)."""
    names = tuple(dict.fromkeys(k.strip() for k in keys.split(",") if k.strip()))
    return names or None


def _str(item: dict[str, Any], name: str, cmd_id: int) -> str:
    value = item.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, f"'{name}' must be a string")
    return value


def _int(item: dict[str, Any], name: str, cmd_id: int, default: int = 0, low: int = LONG_MIN,
         high: int = LONG_MAX) -> int:
    value = item.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, f"'{name}' must be an integer")
    if not low <= value <= high:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, f"'{name}' is out of range")
    return value


def _cmd_id_or(item: Any, default: int) -> int:
    value = item.get("cmdId") if isinstance(item, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX else default


def _limit(item: dict[str, Any], cmd_id: int) -> int:
    limit = _int(item, "limit", cmd_id, 0, INT_MIN, INT_MAX)
    if limit < 0:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, "'limit' must not be negative")
    return limit or DEFAULT_LIMIT


def _agg(item: dict[str, Any], cmd_id: int) -> Aggregation:
    raw = _str(item, "agg", cmd_id)
    if not raw:
        return Aggregation.NONE
    try:
        return Aggregation(raw)
    except ValueError:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST,
                       f"Invalid agg '{raw[:32]}': use NONE, MIN, MAX, AVG, SUM or COUNT") from None


# --- updates -------------------------------------------------------------------------------------
Points = dict[str, list[list[Any]]]
"""key -> [[ts, value as string or None], ...]"""


def value_text(value: Any) -> str | None:
    """A value as ThingsBoard's ``getValueAsString`` writes it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, JsonValue):
        return value.text
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def data_update(subscription_id: int, data: Points) -> dict[str, Any]:
    """An update carrying values; keys in sorted order (ThingsBoard keeps them in a TreeMap)."""
    ordered = {key: data[key] for key in sorted(data)}
    latest = {key: points[-1][0] for key, points in ordered.items() if points}
    return {"subscriptionId": subscription_id, "errorCode": 0, "errorMsg": None, "data": ordered,
            "latestValues": latest}


def error_update(subscription_id: int, code: ErrorCode, message: str | None = None) -> dict[str, Any]:
    return {"subscriptionId": subscription_id, "errorCode": int(code),
            "errorMsg": message if message is not None else code.default_message, "data": None,
            "latestValues": {}}


def encode(update: dict[str, Any]) -> str:
    return orjson.dumps(update).decode()
