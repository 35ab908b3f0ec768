"""Debug events of rule nodes and rule chains (ThingsBoard's DEBUG_RULE_NODE and DEBUG_RULE_CHAIN),
recorded in batches by the engine and read back page by page over REST.

They are bounded: ``prune`` (run periodically by the engine) deletes what is older than a TTL
and what lies beyond the newest N of each entity and type.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from thingsray.storage.database import Database
from thingsray.storage.entities import like_pattern, now_ms

DEBUG_RULE_NODE = "DEBUG_RULE_NODE"
DEBUG_RULE_CHAIN = "DEBUG_RULE_CHAIN"
EVENT_TYPES = (DEBUG_RULE_NODE, DEBUG_RULE_CHAIN)
MAX_SYMBOLS = 4096
"""ThingsBoard's ``event.debug.max-symbols``: longer data, metadata and errors are cut."""

# body keys an event filter may match exactly, by filter field
_EXACT = {"msgDirectionType": "type", "entityId": "entityId", "entityType": "entityType", "msgId": "msgId",
          "msgType": "msgType", "relationType": "relationType", "server": "server"}
# body keys matched case-insensitively by substring
_CONTAINS = {"dataSearch": "data", "metadataSearch": "metadata", "errorStr": "error", "message": "message"}


@dataclass(frozen=True, slots=True)
class DebugEvent:
    tenant_id: uuid.UUID
    entity_id: uuid.UUID
    """The rule node (DEBUG_RULE_NODE) or rule chain (DEBUG_RULE_CHAIN)."""
    event_type: str
    body: dict[str, Any]
    ts: int = field(default_factory=now_ms)
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def rule_node_event(tenant_id: uuid.UUID, node_id: uuid.UUID, direction: str, msg: Any, *,
                    relation: str | None = None, error: str | None = None, server: str | None = None,
                    max_symbols: int = MAX_SYMBOLS) -> DebugEvent:
    """The debug event of a message (a ``TbMsg``) entering (``IN``) or leaving (``OUT``, with the
    relation it left by) a node, in ThingsBoard's DebugRuleNodeEvent body."""
    if direction not in ("IN", "OUT"):
        raise ValueError(f"direction must be IN or OUT, got {direction!r}")
    data = msg.data if isinstance(msg.data, str) else json.dumps(msg.data, separators=(",", ":"), default=str)
    body: dict[str, Any] = {
        "type": direction, "entityId": str(msg.originator.id), "entityType": msg.originator.entity_type,
        "msgId": str(msg.id), "msgType": msg.type, "dataType": "JSON", "relationType": relation,
        "data": _cut(data, max_symbols),
        "metadata": _cut(json.dumps(msg.metadata, separators=(",", ":")), max_symbols),
        "error": None if error is None else _cut(error, max_symbols), "server": server,
    }
    return DebugEvent(tenant_id, node_id, DEBUG_RULE_NODE, {k: v for k, v in body.items() if v is not None})


def rule_chain_event(tenant_id: uuid.UUID, chain_id: uuid.UUID, message: str, *, error: str | None = None,
                     server: str | None = None) -> DebugEvent:
    body = {"message": message, "error": error, "server": server}
    return DebugEvent(tenant_id, chain_id, DEBUG_RULE_CHAIN, {k: v for k, v in body.items() if v is not None})


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A page of one entity's events of one type, newest first unless ``ascending``."""

    page: int
    page_size: int
    start_time: int | None = None
    end_time: int | None = None
    ascending: bool = False
    sort_by_id: bool = False
    text_search: str | None = None
    filter: Mapping[str, Any] = field(default_factory=dict)
    """ThingsBoard's event filter fields (msgDirectionType, entityId, msgType, relationType,
    dataSearch, metadataSearch, isError, errorStr, server, message...)."""


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, events: Sequence[DebugEvent]) -> None:
        """Store a batch in one statement."""
        if not events:
            return
        await self.db.execute(
            "INSERT INTO event (id, tenant_id, entity_id, event_type, ts, body)"
            " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[], $6::jsonb[])"
            " ON CONFLICT (id) DO NOTHING",
            [e.id for e in events], [e.tenant_id for e in events], [e.entity_id for e in events],
            [e.event_type for e in events], [e.ts for e in events], [e.body for e in events])

    async def query(self, tenant_id: uuid.UUID, entity_id: uuid.UUID, event_type: str,
                    query: EventQuery) -> tuple[list[dict[str, Any]], int]:
        """(rows as ``{"id", "ts", "body"}``, total count)."""
        where, args = _where(tenant_id, entity_id, event_type, query.start_time, query.end_time, query.filter)
        if query.text_search:
            args.append(like_pattern(query.text_search))
            where.append(f"body::text ILIKE ${len(args)}")
        order = "id" if query.sort_by_id else "ts"
        direction = "ASC" if query.ascending else "DESC"
        args += [query.page_size, query.page * query.page_size]
        rows = await self.db.fetch(
            f"SELECT id, ts, body, count(*) OVER () AS total FROM event WHERE {' AND '.join(where)}"
            f" ORDER BY {order} {direction}, id {direction} LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
        if rows:
            total = rows[0]["total"]
        else:
            total = await self.db.fetchval(f"SELECT count(*) FROM event WHERE {' AND '.join(where)}", *args[:-2])
        return [{"id": r["id"], "ts": r["ts"], "body": r["body"]} for r in rows], total

    async def latest(self, tenant_id: uuid.UUID, node_id: uuid.UUID, direction: str = "IN") -> dict[str, Any] | None:
        """The body of the node's newest debug event of this direction."""
        return await self.db.fetchval(
            "SELECT body FROM event WHERE tenant_id = $1 AND entity_id = $2 AND event_type = $3"
            " AND body ->> 'type' = $4 ORDER BY ts DESC LIMIT 1", tenant_id, node_id, DEBUG_RULE_NODE, direction)

    async def clear(self, tenant_id: uuid.UUID, entity_id: uuid.UUID, event_type: str | None = None, *,
                    start_time: int | None = None, end_time: int | None = None,
                    filter: Mapping[str, Any] | None = None) -> int:
        """Delete the entity's events (of ``event_type``, or all) matching; returns how many."""
        where, args = _where(tenant_id, entity_id, event_type, start_time, end_time, filter or {})
        status = await self.db.execute(f"DELETE FROM event WHERE {' AND '.join(where)}", *args)
        return int(status.split()[-1])

    async def prune(self, ttl_s: int, max_per_entity: int, now: int | None = None) -> int:
        """Delete events older than ``ttl_s`` seconds (0: keep by age) and all but the newest
        ``max_per_entity`` of each entity and type (0: no count bound); returns how many."""
        deleted = 0
        if ttl_s > 0:
            status = await self.db.execute("DELETE FROM event WHERE ts < $1", (now or now_ms()) - ttl_s * 1000)
            deleted += int(status.split()[-1])
        if max_per_entity > 0:
            crowded = await self.db.fetch("SELECT entity_id, event_type FROM event GROUP BY entity_id, event_type"
                                          " HAVING count(*) > $1", max_per_entity)
            for row in crowded:
                status = await self.db.execute(
                    "DELETE FROM event WHERE entity_id = $1 AND event_type = $2 AND id IN (SELECT id FROM event"
                    " WHERE entity_id = $1 AND event_type = $2 ORDER BY ts DESC, id DESC OFFSET $3)",
                    row["entity_id"], row["event_type"], max_per_entity)
                deleted += int(status.split()[-1])
        return deleted


def event_info(row: Mapping[str, Any], tenant_id: uuid.UUID, entity_type: str, entity_id: uuid.UUID,
               event_type: str) -> dict[str, Any]:
    """ThingsBoard's EventInfo JSON."""
    return {"id": {"id": str(row["id"])}, "createdTime": row["ts"],
            "tenantId": {"entityType": "TENANT", "id": str(tenant_id)}, "type": event_type, "uid": str(row["id"]),
            "entityId": {"entityType": entity_type, "id": str(entity_id)}, "body": row["body"]}


def page_of(items: list[dict[str, Any]], total: int, page: int, page_size: int) -> dict[str, Any]:
    return {"data": items, "totalPages": math.ceil(total / page_size) if page_size else 0, "totalElements": total,
            "hasNext": (page + 1) * page_size < total}


def _where(tenant_id: uuid.UUID, entity_id: uuid.UUID, event_type: str | None, start_time: int | None,
           end_time: int | None, filter: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    where = ["tenant_id = $1", "entity_id = $2"]
    args: list[Any] = [tenant_id, entity_id]

    def add(clause: str, value: Any) -> None:
        args.append(value)
        where.append(clause.format(f"${len(args)}"))

    if event_type is not None:
        add("event_type = {}", event_type)
    if start_time is not None:
        add("ts >= {}", start_time)
    if end_time is not None:
        add("ts <= {}", end_time)
    for name, key in _EXACT.items():
        value = filter.get(name)
        if isinstance(value, str) and value:
            add(f"body ->> '{key}' = {{}}", value)
    for name, key in _CONTAINS.items():
        value = filter.get(name)
        if isinstance(value, str) and value:
            add(f"body ->> '{key}' ILIKE {{}}", like_pattern(value))
    if filter.get("isError") is True:
        where.append("coalesce(body ->> 'error', '') <> ''")
    return where, args
