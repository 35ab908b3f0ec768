"""Entities as ThingsBoard shapes them, over plain tables.

An ``EntityTable`` says how a table's columns map to the JSON fields of ThingsBoard's entity
(``deviceProfileId`` <-> ``device_profile_id``, ids as ``{"entityType","id"}``); an
``EntityRepository`` reads and writes it: get, page with text search and sorting, insert,
update with the optimistic ``version`` check, delete. Routers build on these and never write
their own CRUD SQL.
"""

from __future__ import annotations

import enum
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from thingsray.storage.database import Database

NULL_UUID = uuid.UUID("13814000-1dd2-11b2-8080-808080808080")
"""ThingsBoard's "no such entity" id, e.g. the customerId of an unassigned device."""


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def entity_id(entity_type: str, value: uuid.UUID | str | None) -> dict[str, str] | None:
    if value is None:
        return None
    return {"entityType": entity_type, "id": str(value)}


class Kind(enum.Enum):
    TEXT = "text"
    JSON = "json"
    BOOL = "bool"
    INT = "int"
    ID = "id"
    """A uuid column shown as ``{"entityType": ref, "id": ...}``."""
    UUID = "uuid"
    """A uuid column shown as a bare string."""
    TYPED_ID = "typed_id"
    """A uuid column shown as ``{"entityType": <type_column>, "id": ...}``: an id that may
    point to entities of several types (an entity view's ``entityId``)."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    column: str
    kind: Kind = Kind.TEXT
    ref: str | None = None
    """For ``Kind.ID``: the entity type the id points to."""
    null_id: bool = False
    """Show NULL as ThingsBoard's NULL_UUID id (customerId of an unassigned entity)."""
    writable: bool = True
    """False: set by the server only (tenantId, customerId: set through their own calls)."""
    type_column: str | None = None
    """For ``Kind.TYPED_ID``: the column holding the entity type."""


@dataclass(frozen=True, slots=True)
class EntityTable:
    entity_type: str
    table: str
    fields: tuple[Field, ...]
    search_column: str
    """What ``textSearch`` matches (case-insensitive substring), as ThingsBoard does."""
    sort_columns: Mapping[str, str]
    """``sortProperty`` -> column; anything else is refused."""
    duplicate_message: str = "Entity with such name already exists!"
    by_column: Mapping[str, Field] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_column", {f.column: f for f in self.fields})


STANDARD_SORT = {"createdTime": "created_time"}


class PageQuery:
    """A validated page request: 0-based page, size, optional search and order."""

    __slots__ = ("page", "page_size", "sort_column", "sort_desc", "text_search")

    def __init__(self, page: int, page_size: int, text_search: str | None = None,
                 sort_column: str | None = None, sort_desc: bool = False) -> None:
        self.page = page
        self.page_size = page_size
        self.text_search = text_search or None
        self.sort_column = sort_column
        self.sort_desc = sort_desc


def page_data(items: list[dict[str, Any]], total: int, query: PageQuery) -> dict[str, Any]:
    total_pages = math.ceil(total / query.page_size) if query.page_size else 0
    return {
        "data": items,
        "totalPages": total_pages,
        "totalElements": total,
        "hasNext": (query.page + 1) * query.page_size < total,
    }


def like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class EntityRepository:
    """CRUD and paging for one ``EntityTable``; results are ThingsBoard JSON dicts."""

    def __init__(self, db: Database, table: EntityTable) -> None:
        self.db = db
        self.t = table
        columns = [f.column for f in table.fields]
        columns += [f.type_column for f in table.fields if f.type_column and f.type_column not in columns]
        self._columns = ", ".join(dict.fromkeys(columns))

    # --- shapes ---------------------------------------------------------------------------
    def to_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.t.fields:
            value = row[f.column]
            match f.kind:
                case Kind.ID:
                    if value is None and f.null_id:
                        value = NULL_UUID
                    out[f.name] = entity_id(f.ref or self.t.entity_type, value)
                case Kind.UUID:
                    out[f.name] = None if value is None else str(value)
                case Kind.TYPED_ID:
                    out[f.name] = entity_id(row[f.type_column or ""], value)
                case _:
                    out[f.name] = value
        return out

    def to_row(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Writable columns from a validated body; ids may come as dicts or strings."""
        row: dict[str, Any] = {}
        for f in self.t.fields:
            if not f.writable or f.name not in body or f.column in ("id", "created_time", "version"):
                continue
            value = body[f.name]
            if f.kind is Kind.TYPED_ID and f.type_column:
                row[f.type_column] = value.get("entityType") if isinstance(value, Mapping) else None
            if f.kind in (Kind.ID, Kind.UUID, Kind.TYPED_ID) and value is not None:
                raw = value.get("id") if isinstance(value, Mapping) else value
                value = None if raw is None else uuid.UUID(str(raw))
                if value == NULL_UUID and f.null_id:
                    value = None
            row[f.column] = value
        return row

    # --- reads ----------------------------------------------------------------------------
    async def get_row(self, entity_id: uuid.UUID, conn: asyncpg.Connection | None = None
                      ) -> asyncpg.Record | None:
        sql = f"SELECT {self._columns} FROM {self.t.table} WHERE id = $1"
        return await (conn or self.db.pool).fetchrow(sql, entity_id)

    async def get(self, entity_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self.get_row(entity_id)
        return None if row is None else self.to_json(row)

    async def find_one(self, **where: Any) -> dict[str, Any] | None:
        clauses, args = _equalities(where)
        row = await self.db.fetchrow(
            f"SELECT {self._columns} FROM {self.t.table} WHERE {' AND '.join(clauses)} LIMIT 1", *args)
        return None if row is None else self.to_json(row)

    async def page(self, query: PageQuery, where: Mapping[str, Any] | None = None,
                   extra: Sequence[tuple[str, Any]] = ()) -> dict[str, Any]:
        """A page of rows matching ``where`` (column = value; None = IS NULL) and ``extra``
        (SQL fragments with one ``{}`` placeholder for their argument)."""
        clauses, args = _equalities(where or {})
        for fragment, value in extra:
            args.append(value)
            clauses.append(fragment.format(f"${len(args)}"))
        if query.text_search:
            args.append(like_pattern(query.text_search))
            clauses.append(f"{self.t.search_column} ILIKE ${len(args)}")
        where_sql = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = query.sort_column or "created_time"
        direction = "DESC" if (query.sort_desc or query.sort_column is None) else "ASC"
        args.extend([query.page_size, query.page * query.page_size])
        sql = (f"SELECT {self._columns}, count(*) OVER () AS total_count FROM {self.t.table} {where_sql} "
               f"ORDER BY {order} {direction}, id LIMIT ${len(args) - 1} OFFSET ${len(args)}")
        rows = await self.db.fetch(sql, *args)
        if rows:
            total = rows[0]["total_count"]
        else:
            total = await self.db.fetchval(f"SELECT count(*) FROM {self.t.table} {where_sql}", *args[:-2])
        return page_data([self.to_json(r) for r in rows], total, query)

    # --- writes ---------------------------------------------------------------------------
    async def insert(self, row: Mapping[str, Any], conn: asyncpg.Connection | None = None) -> dict[str, Any]:
        values = dict(row)
        values.setdefault("id", new_id())
        values.setdefault("created_time", now_ms())
        columns = list(values)
        placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        sql = (f"INSERT INTO {self.t.table} ({', '.join(columns)}) VALUES ({placeholders}) "
               f"RETURNING {self._columns}")
        record = await self._write(conn, sql, *values.values())
        assert record is not None
        return self.to_json(record)

    async def update(self, entity_id: uuid.UUID, row: Mapping[str, Any], *, expected_version: int | None = None,
                     conn: asyncpg.Connection | None = None) -> dict[str, Any] | None:
        """Update and bump ``version``; None when the row is gone. A stale ``expected_version``
        raises ``VersionConflict``."""
        columns = [c for c in row if c not in ("id", "created_time", "version", "tenant_id")]
        sets = [f"{c} = ${i}" for i, c in enumerate(columns, start=3)]
        has_version = "version" in self.t.by_column
        if has_version:
            sets.append("version = version + 1")
        if not sets:
            return await self.get(entity_id)
        version_check = "AND ($2::bigint IS NULL OR version = $2)" if has_version else "AND $2::bigint IS NULL"
        sql = (f"UPDATE {self.t.table} SET {', '.join(sets)} WHERE id = $1 {version_check} "
               f"RETURNING {self._columns}")
        record = await self._write(conn, sql, entity_id, expected_version, *(row[c] for c in columns))
        if record is None:
            if expected_version is not None and await self.get_row(entity_id, conn) is not None:
                raise VersionConflict(self.t.entity_type, entity_id)
            return None
        return self.to_json(record)

    async def delete(self, entity_id: uuid.UUID, conn: asyncpg.Connection | None = None) -> bool:
        status = await (conn or self.db.pool).execute(f"DELETE FROM {self.t.table} WHERE id = $1", entity_id)
        return status.endswith(" 1")

    async def _write(self, conn: asyncpg.Connection | None, sql: str, *args: Any) -> asyncpg.Record | None:
        try:
            return await (conn or self.db.pool).fetchrow(sql, *args)
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateEntity(self.t.duplicate_message, exc.constraint_name) from None


class DuplicateEntity(Exception):
    """A unique constraint refused the write; the message is ThingsBoard's wording."""

    def __init__(self, message: str, constraint: str | None) -> None:
        super().__init__(message)
        self.constraint = constraint


class VersionConflict(Exception):
    def __init__(self, entity_type: str, entity_id: uuid.UUID) -> None:
        super().__init__(f"{entity_type} {entity_id} was already changed by someone else")


def _equalities(where: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in where.items():
        if value is None:
            clauses.append(f"{column} IS NULL")
        else:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    return clauses, args
