"""Attribute rows (attribute_kv) with ThingsBoard's typing of values."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from thingsray.kv import JsonValue


class AttributeScope(enum.IntEnum):
    CLIENT_SCOPE = 1
    SERVER_SCOPE = 2
    SHARED_SCOPE = 3


def typed_columns(value: Any) -> tuple[bool | None, str | None, int | None, float | None, str | None]:
    """(bool_v, str_v, long_v, dbl_v, json_v) for a JSON value: exactly one is set."""
    if isinstance(value, bool):
        return value, None, None, None, None
    if isinstance(value, int):
        return None, None, value, None, None
    if isinstance(value, float):
        return None, None, None, value, None
    if isinstance(value, str):
        return None, value, None, None, None
    if isinstance(value, JsonValue):
        return None, None, None, None, value.text
    return None, None, None, None, json.dumps(value)


async def key_ids(conn: asyncpg.Connection, keys: list[str]) -> dict[str, int]:
    """Intern ``keys`` in key_dictionary; return key -> key_id."""
    await conn.execute("INSERT INTO key_dictionary (key) SELECT unnest($1::varchar[]) ON CONFLICT DO NOTHING",
                       keys)
    rows = await conn.fetch("SELECT key, key_id FROM key_dictionary WHERE key = ANY($1::varchar[])", keys)
    return {r["key"]: r["key_id"] for r in rows}


async def find_text(db: Any, entity_id: uuid.UUID, scope: AttributeScope, key: str, *,
                    lock: bool = False) -> str | None:
    """The text value of one attribute (None when absent or not text); ``lock``: its row is locked
    until the caller's transaction ends (``db`` is then that transaction's connection)."""
    value: str | None = await db.fetchval(
        "SELECT a.str_v FROM attribute_kv a JOIN key_dictionary k ON k.key_id = a.attribute_key"
        " WHERE a.entity_id = $1 AND a.attribute_type = $2 AND k.key = $3" + (" FOR UPDATE OF a" if lock else ""),
        entity_id, int(scope), key)
    return value


async def save_attributes(conn: asyncpg.Connection, entity_id: uuid.UUID, scope: AttributeScope,
                          values: Mapping[str, Any], ts: int) -> None:
    ids = await key_ids(conn, sorted(values))
    await conn.executemany(
        "INSERT INTO attribute_kv (entity_id, attribute_type, attribute_key, bool_v, str_v, long_v, dbl_v,"
        " json_v, last_update_ts) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::text::json,$9) "
        "ON CONFLICT (entity_id, attribute_type, attribute_key) DO UPDATE SET bool_v = EXCLUDED.bool_v,"
        " str_v = EXCLUDED.str_v, long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, json_v = EXCLUDED.json_v,"
        " last_update_ts = EXCLUDED.last_update_ts, version = attribute_kv.version + 1",
        [(entity_id, int(scope), ids[k], *typed_columns(v), ts) for k, v in values.items()])
