"""The entity data query's model (ThingsBoard's ``EntityDataQuery``, ``EntityCountQuery``, entity
filters, keys, key filters, page link) and its parsing from ThingsBoard's JSON. Bad input raises
``QueryError`` with a message fit for the caller. The engine is ``entity_query``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class QueryError(ValueError):
    """The query is malformed or asks for something unsupported; the message says what."""


# --- the model -------------------------------------------------------------------------------------
ENTITY_FIELD = "ENTITY_FIELD"
TIME_SERIES = "TIME_SERIES"
ATTRIBUTE = "ATTRIBUTE"
ATTRIBUTE_SCOPES = {"CLIENT_ATTRIBUTE": 1, "SERVER_ATTRIBUTE": 2, "SHARED_ATTRIBUTE": 3}
"""Key type -> attribute_kv.attribute_type (AttributeScope's ids)."""
KEY_TYPES = frozenset({ENTITY_FIELD, TIME_SERIES, ATTRIBUTE, *ATTRIBUTE_SCOPES})

STRING_OPERATIONS = frozenset({"EQUAL", "NOT_EQUAL", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "NOT_CONTAINS",
                               "IN", "NOT_IN"})
NUMERIC_OPERATIONS = frozenset({"EQUAL", "NOT_EQUAL", "GREATER", "LESS", "GREATER_OR_EQUAL", "LESS_OR_EQUAL"})
BOOLEAN_OPERATIONS = frozenset({"EQUAL", "NOT_EQUAL"})
COMPLEX_OPERATIONS = frozenset({"AND", "OR"})

RELATION_DIRECTIONS = frozenset({"FROM", "TO"})


@dataclass(frozen=True, slots=True)
class QueryScope:
    """Whose entities a query may return: a tenant's, or (``customer_id`` set) only those of one of
    its customers; ``user_id`` is the customer user itself (the one user it may see)."""

    tenant_id: uuid.UUID
    customer_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class EntityKey:
    type: str
    key: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "key": self.key}


@dataclass(frozen=True, slots=True)
class SimplePredicate:
    """STRING, NUMERIC or BOOLEAN: ``operation`` against ``value`` (str, float or bool)."""

    kind: str
    operation: str
    value: Any
    ignore_case: bool = False


@dataclass(frozen=True, slots=True)
class ComplexPredicate:
    operation: str
    predicates: tuple[Predicate, ...]


Predicate = SimplePredicate | ComplexPredicate


@dataclass(frozen=True, slots=True)
class KeyFilter:
    key: EntityKey
    predicate: Predicate
    value_type: str | None = None


@dataclass(frozen=True, slots=True)
class EntityFilter:
    """One of ThingsBoard's entity filters. ``kind`` is its ``type``; the other fields hold what
    that kind carries (``entity_type`` is the type of the entities it returns, None for a
    relations query, which may return several)."""

    kind: str
    entity_type: str | None
    ids: tuple[uuid.UUID, ...] = ()
    name_prefix: str | None = None
    types: tuple[str, ...] = ()
    root: tuple[str, uuid.UUID] | None = None
    direction: str = "FROM"
    max_level: int = 1
    fetch_last_level_only: bool = False
    relation_filters: tuple[tuple[str | None, tuple[str, ...]], ...] = ()
    """(relationType or None, entity types) pairs, OR-ed, for a relations query."""


@dataclass(frozen=True, slots=True)
class PageLink:
    page_size: int
    page: int = 0
    text_search: str | None = None
    sort_key: EntityKey | None = None
    sort_desc: bool = False


@dataclass(frozen=True, slots=True)
class EntityCountQuery:
    entity_filter: EntityFilter
    key_filters: tuple[KeyFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class EntityDataQuery:
    entity_filter: EntityFilter
    page_link: PageLink
    entity_fields: tuple[EntityKey, ...] = ()
    latest_values: tuple[EntityKey, ...] = ()
    key_filters: tuple[KeyFilter, ...] = field(default=())


# --- parsing ThingsBoard's JSON ----------------------------------------------------------------------
QUERYABLE_TYPES = ("DEVICE", "ASSET", "ENTITY_VIEW", "CUSTOMER", "USER", "DASHBOARD", "TENANT",
                   "DEVICE_PROFILE", "ASSET_PROFILE", "RULE_CHAIN")
FILTER_KINDS = ("singleEntity", "entityList", "entityName", "entityType", "deviceType", "assetType",
                "entityViewType", "relationsQuery")
_TYPED_FILTERS = {"deviceType": ("DEVICE", "deviceType", "deviceTypes", "deviceNameFilter"),
                  "assetType": ("ASSET", "assetType", "assetTypes", "assetNameFilter"),
                  "entityViewType": ("ENTITY_VIEW", "entityViewType", "entityViewTypes", "entityViewNameFilter")}
MAX_PAGE = 10_000_000
MAX_PREDICATE_DEPTH = 16
"""How deeply COMPLEX predicates may nest."""
MAX_RELATION_LEVEL = 10
"""Deepest relation walk a relations query makes (its ``maxLevel`` is capped to this; 0 means this)."""


def parse_data_query(body: Any, max_page_size: int) -> EntityDataQuery:
    data = _object(body, "query")
    page_link = parse_page_link(data.get("pageLink"), max_page_size)
    return EntityDataQuery(
        entity_filter=parse_entity_filter(data.get("entityFilter")),
        page_link=page_link,
        entity_fields=_keys(data.get("entityFields"), "entityFields"),
        latest_values=_keys(data.get("latestValues"), "latestValues"),
        key_filters=_key_filters(data.get("keyFilters")),
    )


def parse_count_query(body: Any) -> EntityCountQuery:
    data = _object(body, "query")
    return EntityCountQuery(entity_filter=parse_entity_filter(data.get("entityFilter")),
                            key_filters=_key_filters(data.get("keyFilters")))


def parse_page_link(value: Any, max_page_size: int) -> PageLink:
    data = _object(value, "pageLink")
    page_size = _int(data.get("pageSize"), "pageLink.pageSize")
    page = _int(data.get("page", 0), "pageLink.page")
    if not 1 <= page_size <= max_page_size:
        raise QueryError(f"pageLink.pageSize must be between 1 and {max_page_size}, not {page_size}")
    if not 0 <= page <= MAX_PAGE:
        raise QueryError(f"pageLink.page must be between 0 and {MAX_PAGE}, not {page}")
    text_search = data.get("textSearch")
    if text_search is not None and not isinstance(text_search, str):
        raise QueryError("pageLink.textSearch must be a string")
    sort_key, sort_desc = None, False
    sort_order = data.get("sortOrder")
    if sort_order is not None:
        order = _object(sort_order, "pageLink.sortOrder")
        sort_key = _key(order.get("key"), "pageLink.sortOrder.key")
        direction = order.get("direction", "ASC")
        if direction not in ("ASC", "DESC"):
            raise QueryError(f"pageLink.sortOrder.direction must be ASC or DESC, not {direction!r}")
        sort_desc = direction == "DESC"
    return PageLink(page_size=page_size, page=page, text_search=text_search or None, sort_key=sort_key,
                    sort_desc=sort_desc)


def parse_entity_filter(value: Any) -> EntityFilter:
    data = _object(value, "entityFilter")
    kind = data.get("type")
    match kind:
        case "singleEntity":
            entity_type, entity_id = _entity_id(data.get("singleEntity"), "entityFilter.singleEntity")
            return EntityFilter(kind, entity_type, ids=(entity_id,))
        case "entityList":
            entity_type = _entity_type(data.get("entityType"), "entityFilter.entityType")
            raw = data.get("entityList")
            if not isinstance(raw, list):
                raise QueryError("entityFilter.entityList must be a list of ids")
            return EntityFilter(kind, entity_type, ids=tuple(_uuid(v, "entityFilter.entityList") for v in raw))
        case "entityName":
            entity_type = _entity_type(data.get("entityType"), "entityFilter.entityType")
            return EntityFilter(kind, entity_type, name_prefix=_optional_str(data.get("entityNameFilter"),
                                                                            "entityFilter.entityNameFilter"))
        case "entityType":
            return EntityFilter(kind, _entity_type(data.get("entityType"), "entityFilter.entityType"))
        case "deviceType" | "assetType" | "entityViewType":
            entity_type, single, plural, name_key = _TYPED_FILTERS[kind]
            types = data.get(plural)
            if types is None:
                one = _optional_str(data.get(single), f"entityFilter.{single}")
                types = [one] if one else []
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise QueryError(f"entityFilter.{plural} must be a list of strings")
            if not types:
                raise QueryError(f"entityFilter.{plural} must name at least one type")
            return EntityFilter(kind, entity_type, types=tuple(types),
                                name_prefix=_optional_str(data.get(name_key), f"entityFilter.{name_key}"))
        case "relationsQuery":
            return _relations_filter(data)
        case _:
            raise QueryError(f"Unsupported entity filter type {kind!r}; supported: {', '.join(FILTER_KINDS)}")


def _relations_filter(data: Mapping[str, Any]) -> EntityFilter:
    root_type, root_id = _entity_id(data.get("rootEntity"), "entityFilter.rootEntity", any_type=True)
    direction = data.get("direction", "FROM")
    if direction not in RELATION_DIRECTIONS:
        raise QueryError(f"entityFilter.direction must be FROM or TO, not {direction!r}")
    max_level = _int(data.get("maxLevel", 1) if data.get("maxLevel") is not None else 1, "entityFilter.maxLevel")
    if max_level < 0:
        raise QueryError("entityFilter.maxLevel must not be negative")
    max_level = MAX_RELATION_LEVEL if max_level == 0 else min(max_level, MAX_RELATION_LEVEL)
    filters = []
    for i, item in enumerate(data.get("filters") or ()):
        entry = _object(item, f"entityFilter.filters[{i}]")
        relation_type = _optional_str(entry.get("relationType"), f"entityFilter.filters[{i}].relationType")
        types = entry.get("entityTypes") or []
        if not isinstance(types, list):
            raise QueryError(f"entityFilter.filters[{i}].entityTypes must be a list")
        filters.append((relation_type or None,
                        tuple(_entity_type(t, f"entityFilter.filters[{i}].entityTypes") for t in types)))
    return EntityFilter("relationsQuery", None, root=(root_type, root_id), direction=direction, max_level=max_level,
                        fetch_last_level_only=bool(data.get("fetchLastLevelOnly", False)),
                        relation_filters=tuple(filters))


def _key_filters(value: Any) -> tuple[KeyFilter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise QueryError("keyFilters must be a list")
    out = []
    for i, item in enumerate(value):
        data = _object(item, f"keyFilters[{i}]")
        key = _key(data.get("key"), f"keyFilters[{i}].key")
        predicate = _predicate(data.get("predicate"), f"keyFilters[{i}].predicate")
        out.append(KeyFilter(key, predicate, data.get("valueType")))
    return tuple(out)


def _predicate(value: Any, where: str, depth: int = 0) -> Predicate:
    data = _object(value, where)
    if depth > MAX_PREDICATE_DEPTH:
        raise QueryError(f"{where}: COMPLEX predicates nest deeper than {MAX_PREDICATE_DEPTH} levels")
    kind = data.get("type")
    operation = data.get("operation")
    if kind == "COMPLEX":
        if operation not in COMPLEX_OPERATIONS:
            raise QueryError(f"{where}.operation must be AND or OR, not {operation!r}")
        items = data.get("predicates")
        if not isinstance(items, list):
            raise QueryError(f"{where}.predicates must be a list")
        return ComplexPredicate(operation, tuple(_predicate(p, f"{where}.predicates[{i}]", depth + 1)
                                                 for i, p in enumerate(items)))
    allowed = {"STRING": STRING_OPERATIONS, "NUMERIC": NUMERIC_OPERATIONS, "BOOLEAN": BOOLEAN_OPERATIONS}.get(kind)
    if allowed is None:
        raise QueryError(f"{where}.type must be STRING, NUMERIC, BOOLEAN or COMPLEX, not {kind!r}")
    if operation not in allowed:
        raise QueryError(f"{where}.operation {operation!r} is not one of {', '.join(sorted(allowed))}")
    raw = _predicate_value(data.get("value"), where)
    match kind:
        case "STRING":
            if raw is None:
                raw = ""
            if not isinstance(raw, str):
                raise QueryError(f"{where}.value must be a string")
            return SimplePredicate(kind, operation, raw, bool(data.get("ignoreCase", False)))
        case "NUMERIC":
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise QueryError(f"{where}.value must be a number")
            try:
                number = float(raw)
            except (ValueError, OverflowError):
                raise QueryError(f"{where}.value must be a number, not {raw!r}") from None
            return SimplePredicate(kind, operation, number)
        case _:
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                raw = raw.lower() == "true"
            if not isinstance(raw, bool):
                raise QueryError(f"{where}.value must be true or false")
            return SimplePredicate(kind, operation, raw)


def _predicate_value(value: Any, where: str) -> Any:
    """ThingsBoard's FilterPredicateValue: ``userValue`` if set, else ``defaultValue``. Dynamic
    values (another entity's attribute) are not resolved: their ``defaultValue`` is used."""
    if not isinstance(value, Mapping):
        raise QueryError(f"{where}.value must be an object with a defaultValue")
    if value.get("userValue") is not None:
        return value["userValue"]
    return value.get("defaultValue")


def _keys(value: Any, where: str) -> tuple[EntityKey, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise QueryError(f"{where} must be a list of keys")
    return tuple(_key(item, f"{where}[{i}]") for i, item in enumerate(value))


def _key(value: Any, where: str) -> EntityKey:
    data = _object(value, where)
    key_type, key = data.get("type"), data.get("key")
    if key_type not in KEY_TYPES:
        raise QueryError(f"{where}.type must be one of {', '.join(sorted(KEY_TYPES))}, not {key_type!r}")
    if not isinstance(key, str) or not key or len(key) > 255:
        raise QueryError(f"{where}.key must be a non-empty string of at most 255 characters")
    return EntityKey(key_type, key)


def _entity_id(value: Any, where: str, any_type: bool = False) -> tuple[str, uuid.UUID]:
    data = _object(value, where)
    entity_type = data.get("entityType")
    if any_type:
        if not isinstance(entity_type, str) or not entity_type:
            raise QueryError(f"{where}.entityType is required")
    else:
        entity_type = _entity_type(entity_type, f"{where}.entityType")
    return entity_type, _uuid(data.get("id"), f"{where}.id")


def _entity_type(value: Any, where: str) -> str:
    if value not in QUERYABLE_TYPES:
        raise QueryError(f"{where}: unsupported entity type {value!r}; use one of {', '.join(QUERYABLE_TYPES)}")
    return value


def _uuid(value: Any, where: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise QueryError(f"{where}: invalid UUID string: {value}") from None


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise QueryError(f"{where} is required and must be a JSON object")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueryError(f"{where} must be an integer")
    return value


def _optional_str(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise QueryError(f"{where} must be a string")
    return value
