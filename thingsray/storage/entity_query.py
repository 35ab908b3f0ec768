"""The entity query engine: ThingsBoard's entity data and count queries answered with SQL over our
tables (``DefaultEntityQueryRepository``'s job).

The engine knows nothing of HTTP: ``EntityQueryEngine.find`` and ``count`` take a parsed query
(``entity_query_model``) and a ``QueryScope`` (whose entities the caller may see) and return
ThingsBoard's ``PageData<EntityData>`` or a number, so the REST routes and the WebSocket ENTITY_DATA
command share it. Every statement confines each entity table to the scope's tenant (and customer)
in its WHERE clause.

One statement answers a page: ``base`` selects the matching entities of each table (UNION ALL for a
relations query, which may reach several types) with the entity fields the query names as columns
``f0, f1, ...``; each latest value (attribute or time series) is a LATERAL join ``k0, k1, ...``
whose key filters sit inside it (an entity without a matching value drops out); entity field key
filters, text search, order and page apply on top.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from thingsray.kv import java_double
from thingsray.storage.database import Database
from thingsray.storage.entity_query_model import (
    ATTRIBUTE,
    ATTRIBUTE_SCOPES,
    ENTITY_FIELD,
    QUERYABLE_TYPES,
    TIME_SERIES,
    ComplexPredicate,
    EntityCountQuery,
    EntityDataQuery,
    EntityFilter,
    EntityKey,
    KeyFilter,
    Predicate,
    QueryError,
    QueryScope,
    SimplePredicate,
    parse_count_query,
    parse_data_query,
)

__all__ = ["EntityQueryEngine", "QueryError", "QueryScope", "parse_count_query", "parse_data_query"]


# --- where each entity type's fields come from ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Source:
    """An entity table as the query sees it: ``fields`` maps ThingsBoard's entity field names (with
    its aliases, e.g. a device's ``title`` is its name) to SQL over the table aliased ``e``."""

    table: str
    fields: Mapping[str, str]
    name_column: str
    """What the entity name filters match (ThingsBoard's search text)."""


def _fields(*names: str, **aliases: str) -> dict[str, str]:
    columns = {"createdTime": "e.created_time", "name": "e.name", "type": "e.type", "label": "e.label",
               "additionalInfo": "e.additional_info::text", "firstName": "e.first_name",
               "lastName": "e.last_name", "email": "e.email", "title": "e.title", "region": "e.region",
               "country": "e.country", "state": "e.state", "city": "e.city", "address": "e.address",
               "address2": "e.address2", "zip": "e.zip", "phone": "e.phone"}
    out = {name: columns[name] for name in ("createdTime", *names)}
    out.update({alias: columns[target] for alias, target in aliases.items()})
    return out


_CONTACT = ("email", "title", "country", "state", "city", "address", "address2", "zip", "phone", "additionalInfo")
SOURCES: dict[str, Source] = {
    "DEVICE": Source("device", _fields("name", "type", "label", "additionalInfo", title="name"), "e.name"),
    "ASSET": Source("asset", _fields("name", "type", "label", "additionalInfo", title="name"), "e.name"),
    "ENTITY_VIEW": Source("entity_view", _fields("name", "type", "additionalInfo", title="name"), "e.name"),
    "TENANT": Source("tenant", _fields(*_CONTACT, "region", name="title", label="title"), "e.title"),
    "CUSTOMER": Source("customer", _fields(*_CONTACT, name="title", label="title"), "e.title"),
    "USER": Source("tb_user", _fields("firstName", "lastName", "email", "phone", "additionalInfo",
                                      name="email", title="email", label="email"), "e.email"),
    "DASHBOARD": Source("dashboard", _fields("title", name="title", label="title"), "e.title"),
    "DEVICE_PROFILE": Source("device_profile", _fields("name", "type"), "e.name"),
    "ASSET_PROFILE": Source("asset_profile", _fields("name"), "e.name"),
    "RULE_CHAIN": Source("rule_chain", _fields("name", "additionalInfo"), "e.name"),
}
assert set(SOURCES) == set(QUERYABLE_TYPES)

_NUMBER_TEXT = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


class Params:
    """Positional parameters of one statement: ``add`` returns the placeholder, cast to ``cast``."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"


# --- building a statement ------------------------------------------------------------------------------
@dataclass(slots=True)
class _Latest:
    key: EntityKey
    alias: str
    filters: list[KeyFilter]
    selected: bool = False
    searchable: bool = False


class _Statement:
    """What find and count share: the visible, filtered entities and their latest-value joins."""

    def __init__(self, entity_filter: EntityFilter, key_filters: Sequence[KeyFilter], scope: QueryScope,
                 fields: Sequence[str] = (), latest: Sequence[EntityKey] = ()) -> None:
        self.filter = entity_filter
        self.scope = scope
        self.params = Params()
        self.fields: list[str] = list(dict.fromkeys(fields))
        self.latest: dict[EntityKey, _Latest] = {}
        for key in latest:
            self._latest(key).selected = True
        self.field_filters: list[KeyFilter] = []
        for key_filter in key_filters:
            if key_filter.key.type == ENTITY_FIELD:
                self.column(key_filter.key.key)
                self.field_filters.append(key_filter)
            else:
                self._latest(key_filter.key).filters.append(key_filter)

    def _latest(self, key: EntityKey) -> _Latest:
        if key not in self.latest:
            self.latest[key] = _Latest(key, f"k{len(self.latest)}", [])
        return self.latest[key]

    def column(self, field: str) -> str:
        if field not in self.fields:
            self.fields.append(field)
        return f"b.f{self.fields.index(field)}"

    # -- the entities ---------------------------------------------------------------------------------
    def with_base(self) -> str:
        """``WITH [RECURSIVE related ..., matched ...,] base AS (...)``."""
        f = self.filter
        if f.kind == "relationsQuery":
            branches = [self._branch(t, f"e.id IN (SELECT id FROM matched WHERE entity_type = '{t}')")
                        for t in QUERYABLE_TYPES]
            return f"WITH RECURSIVE {self._related()}, base AS ({' UNION ALL '.join(branches)})"
        assert f.entity_type is not None
        return f"WITH base AS ({self._branch(f.entity_type, self._filter_condition(f))})"

    def _branch(self, entity_type: str, condition: str | None) -> str:
        source = SOURCES[entity_type]
        columns = ["e.id", f"'{entity_type}'::text AS entity_type", "e.created_time AS created_time_"]
        for i, name in enumerate(self.fields):
            columns.append(f"{self._field_sql(entity_type, name)} AS f{i}")
        where = [c for c in (self._permission(entity_type), condition) if c]
        return f"SELECT {', '.join(columns)} FROM {source.table} e WHERE {' AND '.join(where)}"

    def _field_sql(self, entity_type: str, name: str) -> str:
        if name == "createdTime":
            return "e.created_time"
        if name == "entityType":
            return f"'{entity_type}'::text"
        expression = SOURCES[entity_type].fields.get(name)
        return f"({expression})::text" if expression else "''::text"

    def _permission(self, entity_type: str) -> str:
        """The scope's tenant, and for a customer user what belongs or is assigned to its customer."""
        scope, p = self.scope, self.params
        tenant = p.add(scope.tenant_id, "uuid")
        clauses = [f"e.id = {tenant}" if entity_type == "TENANT" else f"e.tenant_id = {tenant}"]
        if scope.customer_id is not None:
            match entity_type:
                case "DEVICE" | "ASSET" | "ENTITY_VIEW":
                    clauses.append(f"e.customer_id = {p.add(scope.customer_id, 'uuid')}")
                case "CUSTOMER":
                    clauses.append(f"e.id = {p.add(scope.customer_id, 'uuid')}")
                case "USER":  # a customer user sees itself only, as everywhere else
                    clauses.append(f"e.customer_id = {p.add(scope.customer_id, 'uuid')} "
                                   f"AND e.id = {p.add(scope.user_id, 'uuid')}")
                case "DASHBOARD":
                    assigned = json.dumps([{"customerId": {"id": str(scope.customer_id)}}])
                    clauses.append(f"e.assigned_customers @> {p.add(assigned, 'jsonb')}")
                case "DEVICE_PROFILE" | "ASSET_PROFILE":
                    pass  # the tenant's profiles serve all its customers
                case _:
                    clauses.append("false")
        return " AND ".join(clauses)

    def _filter_condition(self, f: EntityFilter) -> str | None:
        p = self.params
        assert f.entity_type is not None
        name_column = SOURCES[f.entity_type].name_column
        clauses = []
        if f.kind in ("singleEntity", "entityList"):
            clauses.append(f"e.id = ANY({p.add(list(f.ids), 'uuid[]')})")
        if f.types:
            clauses.append(f"e.type = ANY({p.add(list(f.types), 'text[]')})")
        if f.name_prefix:  # ThingsBoard's starts-with, case-insensitive (and % works as a wildcard there too)
            clauses.append(f"lower({name_column}) LIKE lower({p.add(f.name_prefix, 'text')}) || '%'")
        return " AND ".join(clauses) or None

    def _related(self) -> str:
        """``related``: every entity reachable from the root over COMMON relations within maxLevel
        (cycles cut); ``matched``: those whose last relation passes the filters."""
        f, p = self.filter, self.params
        assert f.root is not None
        near, far = ("from", "to") if f.direction == "FROM" else ("to", "from")
        root_type, root_id = f.root
        root_id_sql, root_type_sql = p.add(root_id, "uuid"), p.add(root_type, "text")
        condition = self._relation_condition("re.relation_type", "re.entity_type")
        if f.fetch_last_level_only:
            deeper = self._relation_condition("nr.relation_type", f"nr.{far}_type")
            condition = (f"{condition} AND (re.lvl = {f.max_level} OR NOT EXISTS (SELECT 1 FROM relation nr "
                         f"WHERE nr.{near}_id = re.id AND nr.{near}_type = re.entity_type "
                         f"AND nr.relation_type_group = 'COMMON' AND {deeper}))")
        return (f"related(id, entity_type, relation_type, lvl, path) AS ("
                f"SELECT r.{far}_id, r.{far}_type, r.relation_type, 1, ARRAY[r.{near}_id, r.{far}_id] "
                f"FROM relation r WHERE r.{near}_id = {root_id_sql} AND r.{near}_type = {root_type_sql} "
                f"AND r.relation_type_group = 'COMMON' "
                f"UNION ALL SELECT r.{far}_id, r.{far}_type, r.relation_type, re.lvl + 1, re.path || r.{far}_id "
                f"FROM relation r JOIN related re ON r.{near}_id = re.id AND r.{near}_type = re.entity_type "
                f"WHERE r.relation_type_group = 'COMMON' AND re.lvl < {f.max_level} AND NOT r.{far}_id = ANY(re.path)"
                f"), matched AS (SELECT DISTINCT re.id, re.entity_type FROM related re WHERE {condition})")

    def _relation_condition(self, type_column: str, far_type_column: str) -> str:
        p = self.params
        alternatives = []
        for relation_type, entity_types in self.filter.relation_filters:
            parts = []
            if relation_type:
                parts.append(f"{type_column} = {p.add(relation_type, 'text')}")
            if entity_types:
                parts.append(f"{far_type_column} = ANY({p.add(list(entity_types), 'text[]')})")
            if parts:
                alternatives.append(f"({' AND '.join(parts)})")
        if not alternatives:
            return f"{far_type_column} = ANY({p.add(list(QUERYABLE_TYPES), 'text[]')})"
        return f"({' OR '.join(alternatives)})"

    # -- latest values and key filters ----------------------------------------------------------------
    def joins(self, only_filtered: bool = False) -> str:
        out = []
        for latest in self.latest.values():
            if only_filtered and not latest.filters:
                continue
            out.append(self._join(latest))
        return " ".join(out)

    def _join(self, latest: _Latest) -> str:
        p, key = self.params, latest.key
        key_id = f"(SELECT key_id FROM key_dictionary WHERE key = {p.add(key.key, 'text')})"
        predicates = [sql for sql in (_predicate_sql(kf.predicate, _LatestOperand("x"), p) for kf in latest.filters)
                      if sql]
        conditions = " ".join(f"AND {sql}" for sql in predicates)
        values = "x.bool_v, x.str_v, x.long_v, x.dbl_v, x.json_v::text AS json_v"
        if key.type == TIME_SERIES:
            body = (f"SELECT x.ts, {values} FROM ts_kv_latest x "
                    f"WHERE x.entity_id = b.id AND x.key = {key_id} {conditions}")
        else:
            scope = f"AND x.attribute_type = {ATTRIBUTE_SCOPES[key.type]}" if key.type != ATTRIBUTE else ""
            body = (f"SELECT x.last_update_ts AS ts, {values} FROM attribute_kv x "
                    f"WHERE x.entity_id = b.id AND x.attribute_key = {key_id} {scope} {conditions} "
                    f"ORDER BY x.last_update_ts DESC LIMIT 1")
        join = "JOIN LATERAL" if predicates else "LEFT JOIN LATERAL"
        return f"{join} ({body}) {latest.alias} ON true"

    def field_filter_sql(self) -> list[str]:
        out = []
        for key_filter in self.field_filters:
            operand = _FieldOperand(self.column(key_filter.key.key), key_filter.key.key == "createdTime")
            sql = _predicate_sql(key_filter.predicate, operand, self.params)
            if sql:
                out.append(sql)
        return out


_COLUMNS = "/*columns*/"


class DataStatement(_Statement):
    """A page of entity data: selection, text search, order, limit."""

    def __init__(self, query: EntityDataQuery, scope: QueryScope) -> None:
        super().__init__(query.entity_filter, query.key_filters, scope,
                         [k.key for k in query.entity_fields], query.latest_values)
        self.query = query
        self.selected_fields = list(dict.fromkeys(k.key for k in query.entity_fields))
        for key in query.latest_values:
            self.latest[key].searchable = True
        sort = query.page_link.sort_key
        if sort is not None:
            if sort.type == ENTITY_FIELD:
                self.column(sort.key)
            else:
                self._latest(sort)
        self._sql: tuple[str, str] | None = None
        self._count_args: list[Any] = []

    def _parts(self) -> tuple[str, str]:
        """(FROM ... WHERE ..., ORDER BY ...), built once so parameters are numbered once."""
        if self._sql is None:
            base = self.with_base()
            joins = self.joins()
            where = self.field_filter_sql()
            search = self._text_search()
            if search:
                where.append(search)
            where_sql = f"WHERE {' AND '.join(where)}" if where else ""
            self._sql = (f"{base} SELECT {_COLUMNS} FROM base b {joins} {where_sql}", self._order())
            self._count_args = list(self.params.values)
        return self._sql

    def page_sql(self) -> str:
        body, order = self._parts()
        columns = ["b.id", "b.entity_type", *(f"b.f{i}" for i in range(len(self.fields)))]
        for latest in self.latest.values():
            a = latest.alias
            columns += [f"{a}.ts AS {a}_ts", f"{a}.bool_v AS {a}_bool_v", f"{a}.str_v AS {a}_str_v",
                        f"{a}.long_v AS {a}_long_v", f"{a}.dbl_v AS {a}_dbl_v", f"{a}.json_v AS {a}_json_v"]
        columns.append("count(*) OVER () AS total_count")
        link = self.query.page_link
        limit = self.params.add(link.page_size, "bigint")
        offset = self.params.add(link.page_size * link.page, "bigint")
        return f"{body.replace(_COLUMNS, ', '.join(columns))} {order} LIMIT {limit} OFFSET {offset}"

    def count_sql(self) -> str:
        body, _ = self._parts()
        return body.replace(_COLUMNS, "count(*)")

    def count_args(self) -> list[Any]:
        self._parts()
        return self._count_args

    @property
    def args(self) -> list[Any]:
        return self.params.values

    def _text_search(self) -> str | None:
        text = self.query.page_link.text_search
        if not text:
            return None
        parts = [f"b.f{self.fields.index(name)}::text" for name in self.selected_fields if name != "additionalInfo"]
        for latest in self.latest.values():
            if latest.searchable:
                a = latest.alias
                parts.append(f"concat({a}.bool_v::text, {a}.str_v, {a}.long_v::text, {a}.dbl_v::text, {a}.json_v)")
        if not parts:
            return None
        return f"lower(concat({', '.join(parts)})) LIKE {self.params.add('%' + text.lower() + '%', 'text')}"

    def _order(self) -> str:
        link = self.query.page_link
        if link.sort_key is None:
            return "ORDER BY b.created_time_ DESC, b.id"
        direction = "DESC" if link.sort_desc else "ASC"
        if link.sort_key.type == ENTITY_FIELD:
            return f"ORDER BY {self.column(link.sort_key.key)} {direction}, b.id"
        a = self.latest[link.sort_key].alias
        number = (f"coalesce({a}.dbl_v, {a}.long_v::float8, "
                  f"CASE WHEN {a}.bool_v IS NULL THEN NULL WHEN {a}.bool_v THEN 1 ELSE 0 END)")
        return f"ORDER BY {number} {direction}, coalesce({a}.str_v, {a}.json_v, '') {direction}, b.id"


class CountStatement(_Statement):
    def __init__(self, query: EntityCountQuery, scope: QueryScope) -> None:
        super().__init__(query.entity_filter, query.key_filters, scope)

    def sql(self) -> str:
        base = self.with_base()
        joins = self.joins(only_filtered=True)
        where = self.field_filter_sql()
        where_sql = f"WHERE {' AND '.join(where)}" if where else ""
        return f"{base} SELECT count(*) FROM base b {joins} {where_sql}"

    @property
    def args(self) -> list[Any]:
        return self.params.values


# --- predicates --------------------------------------------------------------------------------------
class _LatestOperand:
    """The value columns of an attribute or time series row aliased ``alias``."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def string(self) -> str:
        return f"{self.alias}.str_v"

    def numbers(self) -> list[str]:
        return [f"{self.alias}.long_v", f"{self.alias}.dbl_v"]

    def boolean(self) -> str:
        return f"{self.alias}.bool_v"


class _FieldOperand:
    """An entity field column: text, except ``createdTime`` (bigint)."""

    def __init__(self, column: str, numeric: bool) -> None:
        self.column = column
        self.numeric = numeric

    def string(self) -> str:
        return f"{self.column}::text" if self.numeric else self.column

    def numbers(self) -> list[str]:
        if self.numeric:
            return [self.column]
        return [f"(CASE WHEN {self.column} ~ '{_NUMBER_TEXT}' THEN {self.column}::float8 END)"]

    def boolean(self) -> str:
        return f"(CASE WHEN lower({self.string()}) IN ('true', 'false') THEN lower({self.string()}) = 'true' END)"


_COMPARISONS = {"EQUAL": "=", "NOT_EQUAL": "!=", "GREATER": ">", "LESS": "<", "GREATER_OR_EQUAL": ">=",
                "LESS_OR_EQUAL": "<="}


def _predicate_sql(predicate: Predicate, operand: _LatestOperand | _FieldOperand, p: Params) -> str | None:
    """ThingsBoard's SQL for a key filter predicate; None when it filters nothing (an empty string
    value, a complex predicate of such)."""
    if isinstance(predicate, ComplexPredicate):
        parts = [sql for sql in (_predicate_sql(q, operand, p) for q in predicate.predicates) if sql]
        return f"({f' {predicate.operation} '.join(parts)})" if parts else None
    assert isinstance(predicate, SimplePredicate)
    match predicate.kind:
        case "STRING":
            return _string_sql(predicate, operand.string(), p)
        case "NUMERIC":
            value = p.add(float(predicate.value), "float8")
            op = _COMPARISONS[predicate.operation]
            parts = [f"({c} IS NOT NULL AND {c} {op} {value})" for c in operand.numbers()]
            return f"({' OR '.join(parts)})"
        case _:
            column = operand.boolean()
            op = _COMPARISONS[predicate.operation]
            return f"({column} IS NOT NULL AND {column} {op} {p.add(bool(predicate.value), 'boolean')})"


def _string_sql(predicate: SimplePredicate, column: str, p: Params) -> str | None:
    value: str = predicate.value
    if not value:
        return None
    target = column
    if predicate.ignore_case:
        value, target = value.lower(), f"lower({column})"
    match predicate.operation:
        case "EQUAL":
            condition = f"{target} = {p.add(value, 'text')}"
        case "NOT_EQUAL":
            condition = f"({target} != {p.add(value, 'text')} OR {target} IS NULL)"
        case "STARTS_WITH":
            condition = f"{target} LIKE {p.add(value + '%', 'text')}"
        case "ENDS_WITH":
            condition = f"{target} LIKE {p.add('%' + value, 'text')}"
        case "CONTAINS":
            condition = f"{target} LIKE {p.add('%' + value + '%', 'text')}"
        case "NOT_CONTAINS":
            condition = f"({target} NOT LIKE {p.add('%' + value + '%', 'text')} OR {target} IS NULL)"
        case "IN":
            condition = f"{target} = ANY({p.add(split_by_comma(value), 'text[]')})"
        case _:  # NOT_IN
            condition = f"NOT ({target} = ANY({p.add(split_by_comma(value), 'text[]')}))"
    return f"({column} IS NOT NULL AND {condition})"


def split_by_comma(value: str) -> list[str]:
    """ThingsBoard's ``splitByCommaWithoutQuotes``: commas inside double quotes do not split; items
    are trimmed and lose their quotes."""
    items, current, quoted = [], [], False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return [item[1:-1] if len(item) >= 2 and item[0] == item[-1] == '"' else item for item in items]


# --- rows to EntityData -------------------------------------------------------------------------------
def entity_data(row: asyncpg.Record, statement: DataStatement, now: int) -> dict[str, Any]:
    latest: dict[str, dict[str, dict[str, Any]]] = {}
    if statement.selected_fields:
        fields = latest.setdefault(ENTITY_FIELD, {})
        for name in statement.selected_fields:
            value = row[f"f{statement.fields.index(name)}"]
            fields[name] = {"ts": now, "value": _field_text(name, value)}
    for item in statement.latest.values():
        if item.selected:
            a = item.alias
            ts = row[f"{a}_ts"]
            latest.setdefault(item.key.type, {})[item.key.key] = {
                "ts": ts if ts is not None else 0,
                "value": tb_value(row[f"{a}_bool_v"], row[f"{a}_str_v"], row[f"{a}_long_v"], row[f"{a}_dbl_v"],
                                  row[f"{a}_json_v"])}
    return {"entityId": {"entityType": row["entity_type"], "id": str(row["id"])}, "latest": latest,
            "timeseries": {}}


def _field_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if name == "additionalInfo" and value:
        return json.dumps(json.loads(value), separators=(",", ":"), ensure_ascii=False)
    return str(value)


def tb_value(bool_v: bool | None, str_v: str | None, long_v: int | None, dbl_v: float | None,
             json_v: str | None) -> str:
    """A latest value as ThingsBoard's entity query writes it: the PostgreSQL text of the set column,
    re-read as a Java long or double when it parses as one ("" when there is no value)."""
    if bool_v is not None:
        return "true" if bool_v else "false"
    if long_v is not None:
        return str(long_v)
    if dbl_v is not None:
        if math.isfinite(dbl_v) and dbl_v == int(dbl_v) and abs(dbl_v) < 1e15:
            return str(int(dbl_v))  # PostgreSQL writes 25.0 as "25", which Java then reads as a long
        return java_double(dbl_v)
    if str_v is not None:
        return java_number_text(str_v)
    return json_v or ""


_JAVA_LONG = re.compile(r"[+-]?[0-9]+")
_JAVA_DOUBLE = re.compile(r"[+-]?(NaN|Infinity|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[fFdD]?)")
_LONG_MIN, _LONG_MAX = -(2 ** 63), 2 ** 63 - 1


def java_number_text(text: str) -> str:
    """``text`` as ThingsBoard's ``convertValue`` leaves it: a Java long or finite double in canonical
    form, else unchanged."""
    if _JAVA_LONG.fullmatch(text) and _LONG_MIN <= int(text) <= _LONG_MAX:
        return str(int(text))
    trimmed = text.strip("".join(chr(c) for c in range(33)))
    if trimmed and _JAVA_DOUBLE.fullmatch(trimmed):
        number = float(trimmed.rstrip("fFdD"))
        if not math.isinf(number):
            return java_double(number)
    return text


# --- the engine --------------------------------------------------------------------------------------
class EntityQueryEngine:
    """Answers entity data and count queries, each for one scope."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(self, query: EntityDataQuery, scope: QueryScope) -> dict[str, Any]:
        """ThingsBoard's ``PageData<EntityData>``."""
        statement = DataStatement(query, scope)
        sql = statement.page_sql()
        rows = await self.db.fetch(sql, *statement.args)
        if rows:
            total = rows[0]["total_count"]
        elif query.page_link.page == 0:
            total = 0
        else:
            total = await self.db.fetchval(statement.count_sql(), *statement.count_args())
        page_size = query.page_link.page_size
        now = int(time.time() * 1000)
        return {
            "data": [entity_data(row, statement, now) for row in rows],
            "totalPages": math.ceil(total / page_size),
            "totalElements": total,
            "hasNext": total > page_size * query.page_link.page + len(rows),
        }

    async def count(self, query: EntityCountQuery, scope: QueryScope) -> int:
        statement = CountStatement(query, scope)
        return int(await self.db.fetchval(statement.sql(), *statement.args))

