"""Alarms as ThingsBoard keeps them: at most one active (not cleared) alarm per (tenant, originator,
type), acknowledged / cleared / assigned in place, shown on the entities it propagates to.

Every change returns an ``AlarmChange``: the alarm as ThingsBoard's ``AlarmInfo`` JSON and the
rule engine message type the change causes (``MsgType.ALARM_*``). A call that changes nothing
returns None (ack of an acknowledged alarm, clear of a cleared one, ...); the REST API turns that
into ThingsBoard's "already" errors. Changes of one alarm are serialised by a row lock; two
writers racing to raise the same alarm end with one alarm (a partial unique index, see
migrations/0005_alarms.sql, and a retry of the loser as an update).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from thingsray.rules.msg import EntityId, MsgType
from thingsray.storage.database import Database
from thingsray.storage.entities import NULL_UUID, PageQuery, entity_id, like_pattern, now_ms, page_data
from thingsray.storage.relations import MAX_QUERY_LEVEL, MAX_QUERY_ROWS

SEVERITIES = ("CRITICAL", "MAJOR", "MINOR", "WARNING", "INDETERMINATE")
"""Most severe first (ThingsBoard's AlarmSeverity order)."""
STATUSES = ("ACTIVE_UNACK", "ACTIVE_ACK", "CLEARED_UNACK", "CLEARED_ACK")
SEARCH_STATUSES = ("ANY", "ACTIVE", "CLEARED", "ACK", "UNACK")

SORT_COLUMNS: Mapping[str, str] = {
    "createdTime": "a.created_time", "startTs": "a.start_ts", "endTs": "a.end_ts", "type": "a.type",
    "ackTs": "a.ack_ts", "clearTs": "a.clear_ts", "severity": "a.severity_level", "status": "a.status",
}
"""``sortProperty`` -> column of the ``alarm_info`` view; severity sorts by level (DESC: CRITICAL first)."""

OWNED_BY_CUSTOMER = {"DEVICE": "device", "ASSET": "asset", "ENTITY_VIEW": "entity_view", "USER": "tb_user"}
"""Originator types whose rows carry a ``customer_id``: an alarm of theirs belongs to that customer."""

_CREATE_RETRIES = 5

CHANNEL = "thingsray_alarm"
"""Every committed alarm change is announced here (``{"alarmId", "entityIds", "deleted"}``): the
shards publish it to the replicas that watch one of the entities (``rules.runtime_context``)."""
_NOTIFY_BYTES = 7000
"""pg_notify payloads must stay under 8000 bytes: a change shown on many entities is announced in parts."""

_ANCESTORS = f"""
WITH RECURSIVE up AS (
    SELECT r.from_id, r.from_type, r.relation_type, 1 AS level, ARRAY[r.to_id, r.from_id] AS path
    FROM relation r WHERE r.to_id = $1 AND r.to_type = $2 AND r.relation_type_group = 'COMMON'
  UNION ALL
    SELECT r.from_id, r.from_type, r.relation_type, up.level + 1, up.path || r.from_id
    FROM relation r JOIN up ON r.to_id = up.from_id AND r.to_type = up.from_type
    WHERE r.relation_type_group = 'COMMON' AND up.level < {MAX_QUERY_LEVEL} AND NOT r.from_id = ANY(up.path)
)
SELECT from_type, from_id, min(level) AS level FROM (SELECT * FROM up LIMIT {MAX_QUERY_ROWS}) walk
WHERE $3::varchar[] IS NULL OR relation_type = ANY($3::varchar[])
GROUP BY from_type, from_id ORDER BY level, from_type, from_id
"""
"""The entities with a COMMON relation to the originator ($1, $2), at any level up to the deepest
a relations query walks, reached through a relation of one of the types $3 (any type when NULL)."""


class AlarmNotFound(LookupError):
    def __init__(self, alarm_id: uuid.UUID) -> None:
        super().__init__(f"Alarm with id [{alarm_id}] is not found")


@dataclass(frozen=True, slots=True)
class StatusFilter:
    """Which alarms a status filter keeps: None on a side means either."""

    cleared: bool | None = None
    acknowledged: bool | None = None

    @classmethod
    def of_search(cls, statuses: Iterable[str]) -> StatusFilter:
        """From AlarmSearchStatus values (ANY, ACTIVE, CLEARED, ACK, UNACK), as ThingsBoard
        combines a list of them: ACTIVE and CLEARED together filter nothing, and so on."""
        found = set(statuses)
        if not found or "ANY" in found:
            return cls()
        return cls(_one_side(found, "CLEARED", "ACTIVE"), _one_side(found, "ACK", "UNACK"))

    @classmethod
    def of_status(cls, status: str) -> StatusFilter:
        """From one AlarmStatus (ACTIVE_UNACK, ...)."""
        return cls(status.startswith("CLEARED"), status.endswith("_ACK"))


def _one_side(found: set[str], yes: str, no: str) -> bool | None:
    if (yes in found) == (no in found):
        return None
    return yes in found


@dataclass(frozen=True, slots=True)
class AlarmQuery:
    status: StatusFilter = StatusFilter()
    severities: Sequence[str] = ()
    types: Sequence[str] = ()
    assignee_id: uuid.UUID | None = None
    start_time: int | None = None
    """``createdTime`` at or after (ms)."""
    end_time: int | None = None
    """``createdTime`` at or before (ms)."""


@dataclass(frozen=True, slots=True)
class AlarmChange:
    alarm: dict[str, Any]
    """The alarm after the change (before it, for a delete), as ThingsBoard's AlarmInfo JSON."""
    msg_type: str | None
    """The rule engine message the change causes (``MsgType.ALARM_*``); None: nothing changed."""
    created: bool = False
    severity_changed: bool = False
    old_severity: str | None = None
    entities: tuple[EntityId, ...] = field(default=())
    """The entities the alarm shows on: its originator and those it propagates to."""


def alarm_json(info: Mapping[str, Any]) -> dict[str, Any]:
    """ThingsBoard's ``Alarm`` from an ``AlarmInfo`` (without originator names and assignee)."""
    return {k: v for k, v in info.items() if k not in ("originatorName", "originatorLabel", "assignee")}


def to_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """AlarmInfo JSON from a row of the ``alarm_info`` view."""
    assignee = None
    if row["assignee_id"] is not None:
        assignee = {"id": entity_id("USER", row["assignee_id"]), "firstName": row["assignee_first_name"],
                    "lastName": row["assignee_last_name"], "email": row["assignee_email"]}
    return {
        "id": entity_id("ALARM", row["id"]),
        "createdTime": row["created_time"],
        "tenantId": entity_id("TENANT", row["tenant_id"]),
        "customerId": entity_id("CUSTOMER", row["customer_id"]),
        "type": row["type"],
        "originator": entity_id(row["originator_type"], row["originator_id"]),
        "severity": row["severity"],
        "acknowledged": row["acknowledged"],
        "cleared": row["cleared"],
        "assigneeId": entity_id("USER", row["assignee_id"]),
        "startTs": row["start_ts"],
        "endTs": row["end_ts"],
        "ackTs": row["ack_ts"],
        "clearTs": row["clear_ts"],
        "assignTs": row["assign_ts"],
        "details": row["details"],
        "propagate": row["propagate"],
        "propagateToOwner": row["propagate_to_owner"],
        "propagateToTenant": row["propagate_to_tenant"],
        "propagateRelationTypes": _split(row["propagate_relation_types"]),
        "name": row["type"],
        "status": row["status"],
        "originatorName": row["originator_name"],
        "originatorLabel": row["originator_label"],
        "assignee": assignee,
    }


def _split(value: str | None) -> list[str]:
    return [part for part in (value or "").split(",") if part]


def _join(types: Sequence[str] | None) -> str | None:
    """ThingsBoard keeps the relation types comma-separated; none is NULL."""
    return ",".join(types) if types else None


async def _notify(conn: asyncpg.Connection, change: AlarmChange) -> AlarmChange:
    """Announce ``change`` on CHANNEL within its transaction (so only when it commits); a change
    that changed nothing is not announced."""
    if change.msg_type is None:
        return change
    alarm_id = change.alarm["id"]["id"]
    deleted = change.msg_type == MsgType.ALARM_DELETE
    ids = [str(entity.id) for entity in change.entities]
    per_payload = max(1, _NOTIFY_BYTES // 40)  # a quoted uuid and its comma take 39 bytes
    for start in range(0, max(len(ids), 1), per_payload):
        payload = {"alarmId": alarm_id, "entityIds": ids[start:start + per_payload], "deleted": deleted}
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(payload, separators=(",", ":")))
    return change


def check_severity(severity: str) -> str:
    if severity not in SEVERITIES:
        raise ValueError(f"Invalid alarm severity '{severity}': use one of {', '.join(SEVERITIES)}")
    return severity


class AlarmService:
    """Alarms over the ``alarm``, ``entity_alarm`` tables and the ``alarm_info`` view."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- reads ------------------------------------------------------------------------------------
    async def get(self, alarm_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self.db.fetchrow("SELECT * FROM alarm_info WHERE id = $1", alarm_id)
        return None if row is None else to_json(row)

    async def entities(self, alarm_id: uuid.UUID, conn: asyncpg.Connection | None = None) -> tuple[EntityId, ...]:
        rows = await (conn or self.db.pool).fetch(
            "SELECT entity_type, entity_id FROM entity_alarm WHERE alarm_id = $1 ORDER BY entity_type, entity_id",
            alarm_id)
        return tuple(EntityId(r["entity_type"], r["entity_id"]) for r in rows)

    async def owner_customer(self, originator: EntityId) -> uuid.UUID | None:
        """The customer an alarm of ``originator`` belongs to: the originator's customer, or the
        customer itself; None for the tenant's own entities."""
        if originator.entity_type == "CUSTOMER":
            return originator.id
        table = OWNED_BY_CUSTOMER.get(originator.entity_type)
        if table is None:
            return None
        customer = await self.db.fetchval(f"SELECT customer_id FROM {table} WHERE id = $1", originator.id)
        return None if customer is None or customer == NULL_UUID else customer

    async def find(self, tenant_id: uuid.UUID, page: PageQuery, query: AlarmQuery = AlarmQuery(), *,
                   entity: EntityId | None = None, customer_id: uuid.UUID | None = None) -> dict[str, Any]:
        """A page of AlarmInfo: the tenant's alarms, those shown on ``entity`` when given, only
        the customer's when ``customer_id`` is given. ``page.sort_column`` is a SORT_COLUMNS value."""
        where, args = self._where(tenant_id, query, entity, customer_id)
        if page.text_search:
            args.append(like_pattern(page.text_search))
            n = len(args)
            where.append(f"(a.type ILIKE ${n} OR a.severity ILIKE ${n} OR a.status ILIKE ${n})")
        join = "JOIN entity_alarm ea ON ea.alarm_id = a.id" if entity is not None else ""
        order = page.sort_column or "a.created_time"
        direction = "DESC" if (page.sort_desc or page.sort_column is None) else "ASC"
        args.extend([page.page_size, page.page * page.page_size])
        rows = await self.db.fetch(
            f"SELECT a.*, count(*) OVER () AS total_count FROM alarm_info a {join} WHERE {' AND '.join(where)} "
            f"ORDER BY {order} {direction}, a.id LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
        if rows:
            total = rows[0]["total_count"]
        else:
            total = await self.db.fetchval(
                f"SELECT count(*) FROM alarm_info a {join} WHERE {' AND '.join(where)}", *args[:-2])
        return page_data([to_json(r) for r in rows], total, page)

    async def find_for_entities(self, tenant_id: uuid.UUID, entities: Sequence[uuid.UUID], page: PageQuery,
                                query: AlarmQuery = AlarmQuery(), *, propagated: bool,
                                customer_id: uuid.UUID | None = None) -> dict[str, Any]:
        """ThingsBoard's ``PageData<AlarmData>`` of the alarms of ``entities`` (originated by one of
        them; with ``propagated`` also those shown on one of them): AlarmInfo plus ``entityId``
        (the originator when it is one of ``entities``, else one they show on) and ``latest``."""
        where, args, ids = self._entities_where(tenant_id, entities, query, propagated, customer_id)
        if page.text_search:
            args.append(like_pattern(page.text_search))
            n = len(args)
            where.append(f"(a.type ILIKE ${n} OR a.severity ILIKE ${n} OR a.status ILIKE ${n})")
        order = page.sort_column or "a.created_time"
        direction = "DESC" if (page.sort_desc or page.sort_column is None) else "ASC"
        args.extend([page.page_size, page.page * page.page_size])
        rows = await self.db.fetch(
            f"SELECT a.*, e.entity_type AS data_entity_type, e.entity_id AS data_entity_id, "
            f"count(*) OVER () AS total_count FROM alarm_info a CROSS JOIN LATERAL ("
            f"SELECT ea.entity_type, ea.entity_id FROM entity_alarm ea WHERE ea.alarm_id = a.id "
            f"AND ea.entity_id = ANY({ids}) ORDER BY ea.entity_id = a.originator_id DESC, ea.entity_id "
            f"LIMIT 1) e WHERE {' AND '.join(where)} "
            f"ORDER BY {order} {direction}, a.id LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
        if rows:
            total = rows[0]["total_count"]
        else:
            total = await self.db.fetchval(f"SELECT count(*) FROM alarm_info a WHERE {' AND '.join(where)}",
                                           *args[:-2])
        items = []
        for row in rows:
            item = to_json(row)
            item["entityId"] = entity_id(row["data_entity_type"], row["data_entity_id"])
            item["latest"] = {}
            items.append(item)
        return page_data(items, total, page)

    async def count_for_entities(self, tenant_id: uuid.UUID, entities: Sequence[uuid.UUID],
                                 query: AlarmQuery = AlarmQuery(), *, propagated: bool,
                                 customer_id: uuid.UUID | None = None) -> int:
        """How many alarms ``find_for_entities`` would find in all."""
        where, args, _ = self._entities_where(tenant_id, entities, query, propagated, customer_id)
        return int(await self.db.fetchval(f"SELECT count(*) FROM alarm_info a WHERE {' AND '.join(where)}", *args))

    def _entities_where(self, tenant_id: uuid.UUID, entities: Sequence[uuid.UUID], query: AlarmQuery,
                        propagated: bool, customer_id: uuid.UUID | None) -> tuple[list[str], list[Any], str]:
        """The conditions, their arguments and the parameter holding ``entities``."""
        where, args = self._where(tenant_id, query, None, customer_id)
        args.append(list(entities))
        ids = f"${len(args)}::uuid[]"
        if propagated:
            where.append(f"a.id IN (SELECT ea.alarm_id FROM entity_alarm ea WHERE ea.tenant_id = $1 "
                         f"AND ea.entity_id = ANY({ids}))")
        else:
            where.append(f"a.originator_id = ANY({ids})")
        return where, args, ids

    async def highest_severity(self, tenant_id: uuid.UUID, entity: EntityId, query: AlarmQuery = AlarmQuery(),
                               customer_id: uuid.UUID | None = None) -> str | None:
        """The most severe severity among the alarms shown on ``entity``, or None."""
        where, args = self._where(tenant_id, query, entity, customer_id)
        level = await self.db.fetchval(
            f"SELECT max(a.severity_level) FROM alarm_info a JOIN entity_alarm ea ON ea.alarm_id = a.id "
            f"WHERE {' AND '.join(where)}", *args)
        return None if level is None else SEVERITIES[len(SEVERITIES) - 1 - level]

    async def types(self, tenant_id: uuid.UUID, page: PageQuery) -> dict[str, Any]:
        """A page of the distinct alarm types of the tenant, as ThingsBoard's EntitySubtype."""
        args: list[Any] = [tenant_id]
        search = ""
        if page.text_search:
            args.append(like_pattern(page.text_search))
            search = " AND type ILIKE $2"
        direction = "DESC" if page.sort_desc else "ASC"
        args.extend([page.page_size, page.page * page.page_size])
        rows = await self.db.fetch(
            f"SELECT type, count(*) OVER () AS total_count FROM (SELECT DISTINCT type FROM alarm "
            f"WHERE tenant_id = $1{search}) t ORDER BY type {direction} LIMIT ${len(args) - 1} OFFSET ${len(args)}",
            *args)
        total = rows[0]["total_count"] if rows else await self.db.fetchval(
            f"SELECT count(DISTINCT type) FROM alarm WHERE tenant_id = $1{search}", *args[:-2])
        tenant = entity_id("TENANT", tenant_id)
        return page_data([{"tenantId": tenant, "entityType": "ALARM", "type": r["type"]} for r in rows], total, page)

    @staticmethod
    def _where(tenant_id: uuid.UUID, query: AlarmQuery, entity: EntityId | None,
               customer_id: uuid.UUID | None) -> tuple[list[str], list[Any]]:
        where = ["a.tenant_id = $1"]
        args: list[Any] = [tenant_id]

        def add(fragment: str, value: Any) -> None:
            args.append(value)
            where.append(fragment.format(f"${len(args)}"))

        if entity is not None:
            where.append("ea.tenant_id = $1")
            add("ea.entity_id = {}", entity.id)
            add("ea.entity_type = {}", entity.entity_type)
        if customer_id is not None:
            add("a.customer_id = {}", customer_id)
        if query.status.cleared is not None:
            add("a.cleared = {}", query.status.cleared)
        if query.status.acknowledged is not None:
            add("a.acknowledged = {}", query.status.acknowledged)
        if query.severities:
            add("a.severity = ANY({}::varchar[])", list(query.severities))
        if query.types:
            add("a.type = ANY({}::varchar[])", list(query.types))
        if query.assignee_id is not None:
            add("a.assignee_id = {}", query.assignee_id)
        if query.start_time is not None:
            add("a.created_time >= {}", query.start_time)
        if query.end_time is not None:
            add("a.created_time <= {}", query.end_time)
        return where, args

    # --- create or update the active alarm ---------------------------------------------------------
    async def create_or_update(self, tenant_id: uuid.UUID, customer_id: uuid.UUID | None, originator: EntityId,
                               alarm_type: str, severity: str, details: Any, *, propagate: bool = False,
                               propagate_to_owner: bool = False, propagate_to_tenant: bool = False,
                               propagate_relation_types: Sequence[str] | None = None, ts: int,
                               start_ts: int | None = None) -> AlarmChange:
        """Raise ``alarm_type`` on ``originator``: update the active alarm of that type (severity,
        details, propagation, ``endTs`` = ``ts`` unless it is already later), or create one
        (``startTs`` = ``start_ts`` or ``ts``, ``endTs`` = ``ts``). ``customer_id`` is the
        customer the alarm belongs to (see ``owner_customer``)."""
        check_severity(severity)
        relation_types = _join(propagate_relation_types)
        flags = (propagate, propagate_to_owner, propagate_to_tenant, relation_types)
        async with self.db.transaction() as conn:
            for _ in range(_CREATE_RETRIES):
                existing = await conn.fetchrow(
                    "SELECT * FROM alarm WHERE tenant_id = $1 AND originator_id = $2 AND type = $3 AND NOT cleared "
                    "FOR UPDATE", tenant_id, originator.id, alarm_type)
                if existing is not None:
                    return await self._update_active(conn, existing, severity, details, ts, flags)
                alarm_id = uuid.uuid4()
                inserted = await conn.fetchval(
                    "INSERT INTO alarm (id, created_time, tenant_id, customer_id, originator_id, originator_type, type,"
                    " severity, start_ts, end_ts, details, propagate, propagate_to_owner, propagate_to_tenant,"
                    " propagate_relation_types) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) "
                    "ON CONFLICT (tenant_id, originator_id, type) WHERE NOT cleared DO NOTHING RETURNING id",
                    alarm_id, now_ms(), tenant_id, customer_id, originator.id, originator.entity_type, alarm_type,
                    severity, start_ts if start_ts is not None else ts, ts, details, *flags)
                if inserted is None:
                    continue  # another writer raised it first and has committed: update theirs
                row = await self._row(conn, alarm_id)
                await self._propagate(conn, row)
                return await _notify(conn, AlarmChange(to_json(row), MsgType.ALARM_CREATED, created=True,
                                                       entities=await self.entities(alarm_id, conn)))
        raise RuntimeError(f"could not create or update the {alarm_type!r} alarm of {originator}: "
                           f"it was cleared and raised again {_CREATE_RETRIES} times meanwhile")

    async def _update_active(self, conn: asyncpg.Connection, existing: asyncpg.Record, severity: str, details: Any,
                             ts: int, flags: tuple[bool, bool, bool, str | None]) -> AlarmChange:
        end_ts = max(existing["end_ts"], ts)
        return await self._apply_update(conn, existing, severity, details, existing["start_ts"], end_ts, flags)

    async def update(self, alarm_id: uuid.UUID, *, severity: str, details: Any, start_ts: int, end_ts: int,
                     propagate: bool = False, propagate_to_owner: bool = False, propagate_to_tenant: bool = False,
                     propagate_relation_types: Sequence[str] | None = None) -> AlarmChange | None:
        """Update an alarm by id (ThingsBoard's ``POST /api/alarm`` with an id); None: nothing differs."""
        check_severity(severity)
        flags = (propagate, propagate_to_owner, propagate_to_tenant, _join(propagate_relation_types))
        async with self.db.transaction() as conn:
            existing = await self._locked(conn, alarm_id)
            change = await self._apply_update(conn, existing, severity, details, start_ts, end_ts, flags)
        return change if change.msg_type is not None else None

    async def _apply_update(self, conn: asyncpg.Connection, existing: asyncpg.Record, severity: str, details: Any,
                            start_ts: int, end_ts: int, flags: tuple[bool, bool, bool, str | None]) -> AlarmChange:
        old_flags = (existing["propagate"], existing["propagate_to_owner"], existing["propagate_to_tenant"],
                     existing["propagate_relation_types"])
        changed = (severity != existing["severity"] or details != existing["details"]
                   or start_ts != existing["start_ts"] or end_ts != existing["end_ts"] or flags != old_flags)
        alarm_id = existing["id"]
        if changed:
            await conn.execute(
                "UPDATE alarm SET severity = $2, details = $3, start_ts = $4, end_ts = $5, propagate = $6,"
                " propagate_to_owner = $7, propagate_to_tenant = $8, propagate_relation_types = $9 WHERE id = $1",
                alarm_id, severity, details, start_ts, end_ts, *flags)
        row = await self._row(conn, alarm_id)
        if flags != old_flags:
            await self._propagate(conn, row)
        severity_changed = severity != existing["severity"]
        msg_type = None
        if changed:
            msg_type = MsgType.ALARM_SEVERITY_UPDATED if severity_changed else MsgType.ALARM_UPDATED
        return await _notify(conn, AlarmChange(to_json(row), msg_type, severity_changed=severity_changed,
                                               old_severity=existing["severity"],
                                               entities=await self.entities(alarm_id, conn)))

    # --- state changes ------------------------------------------------------------------------------
    async def clear(self, tenant_id: uuid.UUID, originator: EntityId, alarm_type: str, details: Any,
                    ts: int) -> AlarmChange | None:
        """Clear the active ``alarm_type`` alarm of ``originator``; None when there is none.
        ``details`` replace the alarm's details unless None."""
        async with self.db.transaction() as conn:
            existing = await conn.fetchrow(
                "SELECT * FROM alarm WHERE tenant_id = $1 AND originator_id = $2 AND type = $3 AND NOT cleared "
                "FOR UPDATE", tenant_id, originator.id, alarm_type)
            if existing is None:
                return None
            return await self._clear(conn, existing["id"], details, ts)

    async def clear_by_id(self, alarm_id: uuid.UUID, ts: int, details: Any = None) -> AlarmChange | None:
        """None when the alarm was cleared already; AlarmNotFound when there is no such alarm."""
        async with self.db.transaction() as conn:
            existing = await self._locked(conn, alarm_id)
            if existing["cleared"]:
                return None
            return await self._clear(conn, alarm_id, details, ts)

    async def _clear(self, conn: asyncpg.Connection, alarm_id: uuid.UUID, details: Any, ts: int) -> AlarmChange:
        await conn.execute("UPDATE alarm SET cleared = true, clear_ts = $2, details = COALESCE($3, details) "
                           "WHERE id = $1", alarm_id, ts, details)
        return await self._change(conn, alarm_id, MsgType.ALARM_CLEAR)

    async def ack(self, alarm_id: uuid.UUID, ts: int) -> AlarmChange | None:
        """None when the alarm was acknowledged already."""
        async with self.db.transaction() as conn:
            if (await self._locked(conn, alarm_id))["acknowledged"]:
                return None
            await conn.execute("UPDATE alarm SET acknowledged = true, ack_ts = $2 WHERE id = $1", alarm_id, ts)
            return await self._change(conn, alarm_id, MsgType.ALARM_ACK)

    async def assign(self, alarm_id: uuid.UUID, user_id: uuid.UUID, ts: int) -> AlarmChange | None:
        """None when the alarm is assigned to that user already."""
        async with self.db.transaction() as conn:
            if (await self._locked(conn, alarm_id))["assignee_id"] == user_id:
                return None
            await conn.execute("UPDATE alarm SET assignee_id = $2, assign_ts = $3 WHERE id = $1", alarm_id, user_id, ts)
            return await self._change(conn, alarm_id, MsgType.ALARM_ASSIGNED)

    async def unassign(self, alarm_id: uuid.UUID, ts: int) -> AlarmChange | None:
        """None when the alarm has no assignee."""
        async with self.db.transaction() as conn:
            if (await self._locked(conn, alarm_id))["assignee_id"] is None:
                return None
            await conn.execute("UPDATE alarm SET assignee_id = NULL, assign_ts = $2 WHERE id = $1", alarm_id, ts)
            return await self._change(conn, alarm_id, MsgType.ALARM_UNASSIGNED)

    async def delete(self, alarm_id: uuid.UUID) -> AlarmChange | None:
        """The deleted alarm as it was; None when there was none."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT * FROM alarm_info WHERE id = $1", alarm_id)
            if row is None:
                return None
            entities = await self.entities(alarm_id, conn)
            await conn.execute("DELETE FROM alarm WHERE id = $1", alarm_id)
            return await _notify(conn, AlarmChange(to_json(row), MsgType.ALARM_DELETE, entities=entities))

    # --- helpers ------------------------------------------------------------------------------------
    async def _locked(self, conn: asyncpg.Connection, alarm_id: uuid.UUID) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM alarm WHERE id = $1 FOR UPDATE", alarm_id)
        if row is None:
            raise AlarmNotFound(alarm_id)
        return row

    async def _row(self, conn: asyncpg.Connection, alarm_id: uuid.UUID) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM alarm_info WHERE id = $1", alarm_id)
        assert row is not None, alarm_id
        return row

    async def _change(self, conn: asyncpg.Connection, alarm_id: uuid.UUID, msg_type: str) -> AlarmChange:
        row = await self._row(conn, alarm_id)
        return await _notify(conn, AlarmChange(to_json(row), msg_type, entities=await self.entities(alarm_id, conn)))

    async def _propagate(self, conn: asyncpg.Connection, alarm: asyncpg.Record) -> None:
        """Record the entities ``alarm`` shows on, as ThingsBoard's BaseAlarmService does: the
        originator; with ``propagate`` every entity with a COMMON relation to it, at any level
        (only relations of ``propagate_relation_types`` when given); with ``propagate_to_owner``
        its customer, else its tenant; with ``propagate_to_tenant`` the tenant. Rows already there
        stay (a change of the propagation settings adds, never removes)."""
        targets: dict[tuple[str, uuid.UUID], None] = {(alarm["originator_type"], alarm["originator_id"]): None}
        if alarm["propagate"]:
            wanted = _split(alarm["propagate_relation_types"]) or None
            for r in await conn.fetch(_ANCESTORS, alarm["originator_id"], alarm["originator_type"], wanted):
                targets[(r["from_type"], r["from_id"])] = None
        if alarm["propagate_to_owner"]:
            owner = ("CUSTOMER", alarm["customer_id"]) if alarm["customer_id"] else ("TENANT", alarm["tenant_id"])
            targets[owner] = None
        if alarm["propagate_to_tenant"]:
            targets[("TENANT", alarm["tenant_id"])] = None
        await conn.executemany(
            "INSERT INTO entity_alarm (tenant_id, entity_type, entity_id, created_time, alarm_type, customer_id,"
            " alarm_id) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT ON CONSTRAINT entity_alarm_pkey DO NOTHING",
            [(alarm["tenant_id"], entity_type, target, alarm["created_time"], alarm["type"], alarm["customer_id"],
              alarm["id"]) for entity_type, target in targets])
