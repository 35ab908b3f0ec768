"""/api/plugins/telemetry: ThingsBoard's TelemetryController. Reads go to the database; writes
and attribute deletes go through the entity's actor (``services.live``); time series deletes go
to the database directly."""

from __future__ import annotations

import json
import math
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from thingsray.kv import JsonValue, Value, to_json_value, value_text
from thingsray.serve_app.access import load
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, parse_uuid
from thingsray.serve_app.errors import BadRequest
from thingsray.serve_app.permissions import Operation, Resource
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.entities import EntityTable, now_ms
from thingsray.storage.timeseries import (
    Aggregation,
    AttributeRepository,
    HistoryQuery,
    TimeseriesRepository,
    TsPoint,
)
from thingsray.transports.payloads import LONG_MAX, LONG_MIN, PayloadError, parse_telemetry

router = APIRouter(prefix="/api/plugins/telemetry", tags=["telemetry"])

ENTITY_TABLES: dict[str, EntityTable] = {t.entity_type: t for t in (
    tables.TENANT, tables.CUSTOMER, tables.USER, tables.DEVICE, tables.DEVICE_PROFILE, tables.ASSET,
    tables.ASSET_PROFILE, tables.DASHBOARD, tables.ENTITY_VIEW, tables.RULE_CHAIN)}
MAX_INTERVALS = 700
"""ThingsBoard's ``database.ts_max_intervals``: more aggregation buckets than this are refused."""
MAX_LIMIT = 1_000_000

Keys = Annotated[str | None, Query(max_length=100_000, description="Comma-separated keys")]
RepeatedKeys = Annotated[list[str] | None, Query(description="Repeatable alternative to 'keys'")]
StrictTypes = Annotated[bool, Query(description="Typed values instead of strings")]


# --- resolving and authorizing -------------------------------------------------------------------
async def _entity(services: Services, principal: Principal, entity_type: str, entity_id: str,
                  operation: Operation) -> dict[str, Any]:
    table = ENTITY_TABLES.get(entity_type.upper())
    if table is None:
        raise BadRequest(f"Unsupported entity type: {entity_type}; use one of {', '.join(ENTITY_TABLES)}")
    return await load(services, principal, table, Resource(table.entity_type), parse_uuid(entity_id), operation)


def _id(entity: dict[str, Any]) -> tuple[str, uuid.UUID]:
    return entity["id"]["entityType"], uuid.UUID(entity["id"]["id"])


def _name(entity: dict[str, Any]) -> str | None:
    return entity.get("name") or entity.get("title") or entity.get("email")


def _scope(scope: str, *, writable: bool = False) -> AttributeScope:
    try:
        parsed = AttributeScope[scope]
    except KeyError:
        raise BadRequest(f"Invalid scope: {scope}; use CLIENT_SCOPE, SERVER_SCOPE or SHARED_SCOPE") from None
    if writable and parsed is AttributeScope.CLIENT_SCOPE:
        raise BadRequest(f"Invalid scope: {scope}; only SERVER_SCOPE and SHARED_SCOPE can be written")
    return parsed


def _keys(keys: str | None, key: list[str] | None) -> list[str] | None:
    """``keys=a,b`` and/or ``key=a&key=b``; None when neither names a key."""
    names = [k.strip() for k in (keys or "").split(",")] + [k.strip() for k in key or ()]
    found = [k for k in dict.fromkeys(names) if k]
    return found or None


# --- answer shapes -------------------------------------------------------------------------------




def ts_answer(points: list[TsPoint], strict: bool) -> dict[str, list[dict[str, Any]]]:
    answer: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        if point.value is None:
            value = None
        else:
            value = to_json_value(point.value) if strict else value_text(point.value)
        answer.setdefault(point.key, []).append({"ts": point.ts, "value": value})
    return answer


# --- time series ---------------------------------------------------------------------------------
@router.get("/{entityType}/{entityId}/keys/timeseries", summary="Time series keys of an entity")
async def get_timeseries_keys(entityType: str, entityId: str, principal: PrincipalDep,
                              services: ServicesDep) -> list[str]:
    entity = await _entity(services, principal, entityType, entityId, Operation.READ_TELEMETRY)
    return await TimeseriesRepository(services.db).keys(_id(entity)[1])


@router.get("/{entityType}/{entityId}/values/timeseries",
            summary="Latest time series values; with startTs and endTs, history")
async def get_timeseries(entityType: str, entityId: str, request: Request, principal: PrincipalDep,
                         services: ServicesDep, keys: Keys = None, key: RepeatedKeys = None,
                         useStrictDataTypes: StrictTypes = False) -> dict[str, Any]:
    params = request.query_params
    if keys and "startTs" in params and "endTs" in params:  # ThingsBoard's getTimeseries mapping
        return await _history(services, principal, entityType, entityId, keys, key, request, useStrictDataTypes)
    entity = await _entity(services, principal, entityType, entityId, Operation.READ_TELEMETRY)
    points = await TimeseriesRepository(services.db).latest(_id(entity)[1], _keys(keys, key))
    return ts_answer(points, useStrictDataTypes)


@router.get("/{entityType}/{entityId}/values/timeseries/history", summary="Time series history")
async def get_timeseries_history(entityType: str, entityId: str, request: Request, principal: PrincipalDep,
                                 services: ServicesDep, keys: Keys = None, key: RepeatedKeys = None,
                                 useStrictDataTypes: StrictTypes = False) -> dict[str, Any]:
    return await _history(services, principal, entityType, entityId, keys, key, request, useStrictDataTypes)


def _long(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"Required request parameter '{name}' is not present")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Parameter '{name}' must be an integer, not '{raw[:64]}'") from None
    if not LONG_MIN <= value <= LONG_MAX:
        raise BadRequest(f"Parameter '{name}' is out of range")
    return value


async def _history(services: Services, principal: Principal, entity_type: str, entity_id: str,
                   keys: str | None, key: list[str] | None, request: Request, strict: bool) -> dict[str, Any]:
    params = request.query_params
    names = _keys(keys, key)
    if not names:
        raise BadRequest("Required request parameter 'keys' is not present")
    start_ts, end_ts = _long(request, "startTs"), _long(request, "endTs")
    interval, limit = _long(request, "interval", 0), _long(request, "limit", 100)
    try:
        agg = Aggregation(params.get("agg") or "NONE")
    except ValueError:
        raise BadRequest(f"Invalid agg '{params.get('agg')}': use NONE, MIN, MAX, AVG, SUM or COUNT") from None
    order = (params.get("orderBy") or "DESC").upper()
    if order not in ("ASC", "DESC"):
        raise BadRequest(f"Invalid orderBy '{params.get('orderBy')}': use ASC or DESC")
    interval_type = params.get("intervalType")
    if interval_type not in (None, "", "MILLISECONDS"):
        raise BadRequest(f"intervalType '{interval_type}' is not supported; use MILLISECONDS")
    if end_ts < start_ts:
        raise BadRequest("endTs must not be before startTs")
    if interval < 1:
        agg = Aggregation.NONE  # as ThingsBoard: no interval, no aggregation
    if agg is Aggregation.NONE and not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    if agg is not Aggregation.NONE and -(-(end_ts - start_ts) // interval) > MAX_INTERVALS:
        raise BadRequest(f"Incorrect TsKvQuery. Number of intervals is to high - "
                         f"{-(-(end_ts - start_ts) // interval)}. Please increase 'interval' parameter "
                         "for your query or reduce the time range of the query.")
    entity = await _entity(services, principal, entity_type, entity_id, Operation.READ_TELEMETRY)
    query = HistoryQuery(tuple(names), start_ts, end_ts, interval, limit, agg, order == "DESC")
    return ts_answer(await TimeseriesRepository(services.db).history(_id(entity)[1], query), strict)


@router.post("/{entityType}/{entityId}/timeseries/{scope}", response_class=Response,
             summary="Save time series (scope is ignored)")
async def save_telemetry(entityType: str, entityId: str, scope: str, request: Request,
                         principal: PrincipalDep, services: ServicesDep) -> None:
    await _save_telemetry(services, principal, entityType, entityId, await request.body())


@router.post("/{entityType}/{entityId}/timeseries/{scope}/{ttl}",
             summary="Save time series with a TTL in seconds (kept for compatibility; not applied)")
async def save_telemetry_with_ttl(entityType: str, entityId: str, scope: str, ttl: int, request: Request,
                                  principal: PrincipalDep, services: ServicesDep) -> None:
    await _save_telemetry(services, principal, entityType, entityId, await request.body())


async def _save_telemetry(services: Services, principal: Principal, entity_type: str, entity_id: str,
                          body: bytes) -> None:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Unable to parse time series payload: Invalid JSON body!") from None
    try:
        groups = parse_telemetry(body)
    except PayloadError as exc:
        raise BadRequest(f"Unable to parse time series payload. Invalid JSON body: {exc}") from None
    if not groups:
        raise BadRequest("No time series data found in request body!")
    entity = await _entity(services, principal, entity_type, entity_id, Operation.WRITE_TELEMETRY)
    kind, uid = _id(entity)
    await services.require_live().save_timeseries(kind, uid, groups)
    received = now_ms()
    await services.audit.record(principal, ActionType.TIMESERIES_UPDATED, entity_type=kind, entity_id=uid,
                                entity_name=_name(entity), data={"timeseries": [
                                    {"ts": g.ts if g.ts is not None else received, "key": k,
                                     "value": to_json_value(v)} for g in groups for k, v in g.values.items()]})


@router.delete("/{entityType}/{entityId}/timeseries/delete", summary="Delete time series of keys")
async def delete_timeseries(entityType: str, entityId: str, principal: PrincipalDep, services: ServicesDep,
                            keys: Keys = None, key: RepeatedKeys = None, deleteAllDataForKeys: bool = False,
                            startTs: int | None = None, endTs: int | None = None, deleteLatest: bool = True,
                            rewriteLatestIfDeleted: bool = False) -> None:
    names = _keys(keys, key)
    if not names:
        raise BadRequest(f"Empty keys: {keys or ''}")
    if deleteAllDataForKeys:
        start, end = 0, now_ms()
    elif startTs is None or endTs is None:
        raise BadRequest("When deleteAllDataForKeys is false, start and end timestamp values shouldn't be empty")
    else:
        start, end = startTs, endTs
    entity = await _entity(services, principal, entityType, entityId, Operation.WRITE_TELEMETRY)
    kind, uid = _id(entity)
    await TimeseriesRepository(services.db).delete(uid, names, start, end, delete_latest=deleteLatest,
                                                   rewrite_latest=rewriteLatestIfDeleted)
    await services.audit.record(principal, ActionType.TIMESERIES_DELETED, entity_type=kind, entity_id=uid,
                                entity_name=_name(entity),
                                data={"timeseries": names, "startTs": start, "endTs": end})


# --- attributes ----------------------------------------------------------------------------------
def _attribute_answer(entries: list[Any]) -> list[dict[str, Any]]:
    return [{"lastUpdateTs": e.last_update_ts, "key": e.key, "value": to_json_value(e.value)} for e in entries]


@router.get("/{entityType}/{entityId}/keys/attributes", summary="Attribute keys of every scope")
async def get_attribute_keys(entityType: str, entityId: str, principal: PrincipalDep,
                             services: ServicesDep) -> list[str]:
    entity = await _entity(services, principal, entityType, entityId, Operation.READ_ATTRIBUTES)
    return await AttributeRepository(services.db).keys(_id(entity)[1])


@router.get("/{entityType}/{entityId}/keys/attributes/{scope}", summary="Attribute keys of a scope")
async def get_attribute_keys_by_scope(entityType: str, entityId: str, scope: str, principal: PrincipalDep,
                                      services: ServicesDep) -> list[str]:
    parsed = _scope(scope)
    entity = await _entity(services, principal, entityType, entityId, Operation.READ_ATTRIBUTES)
    return await AttributeRepository(services.db).keys(_id(entity)[1], parsed)


@router.get("/{entityType}/{entityId}/values/attributes", summary="Attributes of every scope")
async def get_attributes(entityType: str, entityId: str, principal: PrincipalDep, services: ServicesDep,
                         keys: Keys = None, key: RepeatedKeys = None) -> list[dict[str, Any]]:
    entity = await _entity(services, principal, entityType, entityId, Operation.READ_ATTRIBUTES)
    entries = await AttributeRepository(services.db).find(_id(entity)[1], None, _keys(keys, key))
    return _attribute_answer(entries)


@router.get("/{entityType}/{entityId}/values/attributes/{scope}", summary="Attributes of a scope")
async def get_attributes_by_scope(entityType: str, entityId: str, scope: str, principal: PrincipalDep,
                                  services: ServicesDep, keys: Keys = None,
                                  key: RepeatedKeys = None) -> list[dict[str, Any]]:
    parsed = _scope(scope)
    entity = await _entity(services, principal, entityType, entityId, Operation.READ_ATTRIBUTES)
    entries = await AttributeRepository(services.db).find(_id(entity)[1], parsed, _keys(keys, key))
    return _attribute_answer(entries)


def attribute_values(body: bytes) -> dict[str, Value]:
    """A REST attributes body as ThingsBoard's TelemetryController reads it: strings stay strings
    (no numeric cast, unlike device payloads), nulls are skipped, integers beyond 64 bits refused."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Request is not a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("Request is not a JSON object")
    values: dict[str, Value] = {}
    for name, raw in data.items():
        if not name.strip():
            raise BadRequest("Key cannot be empty or contains only spaces")
        if len(name) > 255:
            raise BadRequest(f"Key '{name[:32]}...' is longer than 255 characters")
        if raw is None:
            continue
        if isinstance(raw, bool | str):
            values[name] = raw
        elif isinstance(raw, int):
            if not LONG_MIN <= raw <= LONG_MAX:
                raise BadRequest("Big integer values are not supported!")
            values[name] = raw
        elif isinstance(raw, float):
            if not math.isfinite(raw):
                raise BadRequest(f"Value of '{name}' is not a finite number")
            values[name] = raw
        else:
            values[name] = JsonValue.of(raw)
    if not values:
        raise BadRequest("No attributes data found in request body!")
    return values


async def _save_attributes(services: Services, principal: Principal, entity_type: str, entity_id: str,
                           scope: str, body: bytes) -> None:
    parsed = _scope(scope, writable=True)
    values = attribute_values(body)
    entity = await _entity(services, principal, entity_type, entity_id, Operation.WRITE_ATTRIBUTES)
    kind, uid = _id(entity)
    await services.require_live().save_attributes(kind, uid, parsed.name, values)
    await services.audit.record(principal, ActionType.ATTRIBUTES_UPDATED, entity_type=kind, entity_id=uid,
                                entity_name=_name(entity), data={"scope": parsed.name, "attributes": {
                                    k: to_json_value(v) for k, v in values.items()}})


async def _delete_attributes(services: Services, principal: Principal, entity_type: str, entity_id: str,
                             scope: str, keys: str | None, key: list[str] | None) -> None:
    parsed = _scope(scope)
    names = _keys(keys, key)
    if not names:
        raise BadRequest(f"Empty keys: {keys or ''}")
    entity = await _entity(services, principal, entity_type, entity_id, Operation.WRITE_ATTRIBUTES)
    kind, uid = _id(entity)
    await services.require_live().delete_attributes(kind, uid, parsed.name, tuple(names))
    await services.audit.record(principal, ActionType.ATTRIBUTES_DELETED, entity_type=kind, entity_id=uid,
                                entity_name=_name(entity), data={"scope": parsed.name, "attributes": names})


@router.post("/{entityType}/{entityId}/attributes/{scope}", response_class=Response,
             summary="Save attributes of an entity")
async def save_entity_attributes_v2(entityType: str, entityId: str, scope: str, request: Request,
                                    principal: PrincipalDep, services: ServicesDep) -> None:
    await _save_attributes(services, principal, entityType, entityId, scope, await request.body())


@router.post("/{entityType}/{entityId}/{scope}", response_class=Response,
             summary="Save attributes of an entity (older path)")
async def save_entity_attributes_v1(entityType: str, entityId: str, scope: str, request: Request,
                                    principal: PrincipalDep, services: ServicesDep) -> None:
    await _save_attributes(services, principal, entityType, entityId, scope, await request.body())


@router.post("/{deviceId}/{scope}", response_class=Response,
             summary="Save attributes of a device")
async def save_device_attributes(deviceId: str, scope: str, request: Request, principal: PrincipalDep,
                                 services: ServicesDep) -> None:
    await _save_attributes(services, principal, "DEVICE", deviceId, scope, await request.body())


@router.delete("/{entityType}/{entityId}/{scope}", response_class=Response,
             summary="Delete attributes of an entity")
async def delete_entity_attributes(entityType: str, entityId: str, scope: str, principal: PrincipalDep,
                                   services: ServicesDep, keys: Keys = None, key: RepeatedKeys = None) -> None:
    await _delete_attributes(services, principal, entityType, entityId, scope, keys, key)


@router.delete("/{deviceId}/{scope}", response_class=Response,
             summary="Delete attributes of a device")
async def delete_device_attributes(deviceId: str, scope: str, principal: PrincipalDep, services: ServicesDep,
                                   keys: Keys = None, key: RepeatedKeys = None) -> None:
    await _delete_attributes(services, principal, "DEVICE", deviceId, scope, keys, key)
