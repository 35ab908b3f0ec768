"""Relations between entities (ThingsBoard's ``relation`` table), as ``EntityRelation`` JSON.

A relation is keyed by (from, to, typeGroup, type) and carries no tenant: who may see it is
decided by its two ends. ``related`` walks the graph for an ``EntityRelationsQuery`` with a
recursive query that stops at ``max_level`` and never expands an entity already on its path (a
relation closing a cycle is returned, not followed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from thingsray.storage.database import Database

MAX_QUERY_LEVEL = 10
"""Deepest ``maxLevel`` a relations query may walk (0 or more asks for this)."""
MAX_QUERY_ROWS = 10_000
"""At most this many relations come back from one query walk."""

_COLUMNS = "from_id, from_type, to_id, to_type, relation_type_group, relation_type, additional_info, version"


@dataclass(frozen=True, slots=True)
class RelationKey:
    from_id: uuid.UUID
    from_type: str
    to_id: uuid.UUID
    to_type: str
    type: str
    type_group: str = "COMMON"


def to_json(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {
        "from": {"entityType": row["from_type"], "id": str(row["from_id"])},
        "to": {"entityType": row["to_type"], "id": str(row["to_id"])},
        "type": row["relation_type"],
        "typeGroup": row["relation_type_group"],
        "additionalInfo": row["additional_info"],
        "version": row["version"],
    }


class RelationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, key: RelationKey, additional_info: Any) -> dict[str, Any]:
        row = await self.db.fetchrow(
            f"INSERT INTO relation ({_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,1) "
            "ON CONFLICT ON CONSTRAINT relation_pkey DO UPDATE SET additional_info = EXCLUDED.additional_info,"
            f" version = relation.version + 1 RETURNING {_COLUMNS}",
            key.from_id, key.from_type, key.to_id, key.to_type, key.type_group, key.type, additional_info)
        assert row is not None
        return to_json(row)

    async def get(self, key: RelationKey) -> dict[str, Any] | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM relation WHERE from_id = $1 AND from_type = $2 AND to_id = $3"
            " AND to_type = $4 AND relation_type_group = $5 AND relation_type = $6",
            key.from_id, key.from_type, key.to_id, key.to_type, key.type_group, key.type)
        return None if row is None else to_json(row)

    async def delete(self, key: RelationKey) -> dict[str, Any] | None:
        """The deleted relation, or None when there was none."""
        row = await self.db.fetchrow(
            f"DELETE FROM relation WHERE from_id = $1 AND from_type = $2 AND to_id = $3 AND to_type = $4"
            f" AND relation_type_group = $5 AND relation_type = $6 RETURNING {_COLUMNS}",
            key.from_id, key.from_type, key.to_id, key.to_type, key.type_group, key.type)
        return None if row is None else to_json(row)

    async def find(self, direction: str, entity_id: uuid.UUID, entity_type: str, type_group: str,
                   relation_type: str | None = None) -> list[dict[str, Any]]:
        """Relations from (``direction`` "FROM") or to ("TO") one entity, oldest first."""
        side = "from" if direction == "FROM" else "to"
        args: list[Any] = [entity_id, entity_type, type_group]
        type_clause = ""
        if relation_type is not None:
            args.append(relation_type)
            type_clause = " AND relation_type = $4"
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM relation WHERE {side}_id = $1 AND {side}_type = $2"
            f" AND relation_type_group = $3{type_clause} ORDER BY relation_type, to_type, to_id, from_id", *args)
        return [to_json(r) for r in rows]

    async def related(self, root_id: uuid.UUID, root_type: str, direction: str, type_group: str,
                      max_level: int) -> list[tuple[int, bool, dict[str, Any]]]:
        """Every relation reachable from the root, with its level (1 = the root's own) and whether
        its far end is a leaf of the walk (no further relation, or ``max_level`` reached)."""
        level_cap = MAX_QUERY_LEVEL if max_level <= 0 else min(max_level, MAX_QUERY_LEVEL)
        near, far = ("from", "to") if direction == "FROM" else ("to", "from")
        rows = await self.db.fetch(
            f"""
            WITH RECURSIVE walk AS (
                SELECT r.*, 1 AS level, ARRAY[r.{near}_id, r.{far}_id] AS path, r.{far}_id = r.{near}_id AS closes
                FROM relation r
                WHERE r.{near}_id = $1 AND r.{near}_type = $2 AND r.relation_type_group = $3
              UNION ALL
                SELECT r.*, w.level + 1, w.path || r.{far}_id, r.{far}_id = ANY(w.path)
                FROM relation r JOIN walk w ON r.{near}_id = w.{far}_id AND r.{near}_type = w.{far}_type
                WHERE r.relation_type_group = $3 AND w.level < $4 AND NOT w.closes
            )
            SELECT DISTINCT ON (from_id, from_type, to_id, to_type, relation_type)
                   {_COLUMNS}, level,
                   level >= $4 OR NOT EXISTS (
                       SELECT 1 FROM relation n WHERE n.{near}_id = walk.{far}_id
                       AND n.{near}_type = walk.{far}_type AND n.relation_type_group = $3) AS leaf
            FROM (SELECT * FROM walk LIMIT {MAX_QUERY_ROWS}) walk
            ORDER BY from_id, from_type, to_id, to_type, relation_type, level
            """, root_id, root_type, type_group, level_cap)
        return [(r["level"], r["leaf"], to_json(r)) for r in rows]

    async def names(self, ids: set[tuple[str, uuid.UUID]]) -> dict[tuple[str, uuid.UUID], str]:
        """The display name of each (entity type, id) that exists."""
        by_type: dict[str, list[uuid.UUID]] = {}
        for entity_type, entity_id in ids:
            by_type.setdefault(entity_type, []).append(entity_id)
        names: dict[tuple[str, uuid.UUID], str] = {}
        for entity_type, entity_ids in by_type.items():
            source = NAME_COLUMNS.get(entity_type)
            if source is None:
                continue
            table, column = source
            for row in await self.db.fetch(f"SELECT id, {column} AS name FROM {table} WHERE id = ANY($1)",
                                           entity_ids):
                names[(entity_type, row["id"])] = row["name"]
        return names


NAME_COLUMNS: dict[str, tuple[str, str]] = {
    "TENANT": ("tenant", "title"), "CUSTOMER": ("customer", "title"), "USER": ("tb_user", "email"),
    "DEVICE": ("device", "name"), "ASSET": ("asset", "name"), "DASHBOARD": ("dashboard", "title"),
    "ENTITY_VIEW": ("entity_view", "name"), "DEVICE_PROFILE": ("device_profile", "name"),
    "ASSET_PROFILE": ("asset_profile", "name"), "RULE_CHAIN": ("rule_chain", "name"),
}


async def delete_entity_relations(db: Database | asyncpg.Connection, entity_type: str,
                                  entity_id: uuid.UUID) -> None:
    """Remove every relation from or to a deleted entity."""
    await db.execute("DELETE FROM relation WHERE (from_id = $1 AND from_type = $2) OR (to_id = $1 AND to_type = $2)",
                     entity_id, entity_type)
