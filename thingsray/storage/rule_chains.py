"""Rule chains' metadata in PostgreSQL: nodes in ``rule_node``, connections and the first node on
``rule_chain``; one root chain per tenant and type; change notices for the shards.

Every change that the engine must see (metadata saved, chain updated or deleted, root moved)
commits together with a ``NOTIFY thingsray_rule_chain`` whose payload is
``{"tenantId", "ruleChainId", "event"}`` (event: UPDATED, DELETED, ROOT), so shards reload the
chain from its next message on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from thingsray.rules.defaults import root_rule_chain
from thingsray.rules.model import INPUT_NODE, Connection, NodeSpec, RuleChainMetadata, parse_metadata
from thingsray.storage.database import Database
from thingsray.storage.entities import VersionConflict, new_id, now_ms

CHANNEL = "thingsray_rule_chain"
ROOT_NAME = "Root Rule Chain"

_NODE_COLUMNS = ("id, created_time, rule_chain_id, position, type, name, debug_mode, debug_failures, singleton_mode,"
                 " queue_name, configuration_version, configuration, additional_info, external_id")


class RuleChainStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- reads ------------------------------------------------------------------------------------
    async def load(self, chain_id: uuid.UUID, conn: asyncpg.Connection | None = None) -> RuleChainMetadata | None:
        """The chain's metadata, nodes in their saved order; None when there is no such chain."""
        source = conn or self.db.pool
        chain = await source.fetchrow(
            "SELECT first_rule_node_id, connections, notes, version FROM rule_chain WHERE id = $1", chain_id)
        if chain is None:
            return None
        rows = await source.fetch(f"SELECT {_NODE_COLUMNS} FROM rule_node WHERE rule_chain_id = $1"
                                  " ORDER BY position, created_time, id", chain_id)
        nodes = tuple(_node_of(row) for row in rows)
        index = {n.id: i for i, n in enumerate(nodes)}
        connections = sorted({Connection(index[uuid.UUID(c["from"])], index[uuid.UUID(c["to"])], c["type"])
                              for c in chain["connections"] or ()
                              if uuid.UUID(c["from"]) in index and uuid.UUID(c["to"]) in index})
        notes = chain["notes"]
        return RuleChainMetadata(rule_chain_id=chain_id, first_node_index=index.get(chain["first_rule_node_id"]),
                                 nodes=nodes, connections=tuple(connections), version=chain["version"],
                                 notes=None if notes is None else tuple(notes))

    async def node_ids(self, chain_id: uuid.UUID) -> set[uuid.UUID]:
        rows = await self.db.fetch("SELECT id FROM rule_node WHERE rule_chain_id = $1", chain_id)
        return {r["id"] for r in rows}

    async def root_chain_id(self, tenant_id: uuid.UUID, chain_type: str = "CORE") -> uuid.UUID | None:
        return await self.db.fetchval("SELECT id FROM rule_chain WHERE tenant_id = $1 AND type = $2 AND root",
                                      tenant_id, chain_type)

    async def chain_ids(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await self.db.fetch("SELECT id FROM rule_chain WHERE tenant_id = $1 ORDER BY created_time", tenant_id)
        return [r["id"] for r in rows]

    async def existing(self, tenant_id: uuid.UUID, chain_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``chain_ids`` are chains of this tenant."""
        rows = await self.db.fetch("SELECT id FROM rule_chain WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
                                   tenant_id, list(chain_ids))
        return {r["id"] for r in rows}

    async def callers(self, tenant_id: uuid.UUID, chain_id: uuid.UUID) -> list[dict[str, Any]]:
        """The rule chain input nodes (in this tenant's other chains) that forward to ``chain_id``:
        ``{"nodeId", "nodeName", "chainId", "chainName"}``."""
        rows = await self.db.fetch(
            "SELECT n.id, n.name, c.id AS chain_id, c.name AS chain_name FROM rule_node n"
            " JOIN rule_chain c ON c.id = n.rule_chain_id"
            " WHERE n.type = $3 AND n.configuration ->> 'ruleChainId' = $2 AND c.tenant_id = $1"
            " ORDER BY c.name, n.name", tenant_id, str(chain_id), INPUT_NODE)
        return [{"nodeId": r["id"], "nodeName": r["name"], "chainId": r["chain_id"], "chainName": r["chain_name"]}
                for r in rows if r["chain_id"] != chain_id]

    async def node_chain(self, node_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID] | None:
        """(chain id, tenant id) of a rule node."""
        row = await self.db.fetchrow("SELECT c.id, c.tenant_id FROM rule_node n JOIN rule_chain c"
                                     " ON c.id = n.rule_chain_id WHERE n.id = $1", node_id)
        return None if row is None else (row["id"], row["tenant_id"])

    # --- writes -----------------------------------------------------------------------------------
    async def save(self, chain_id: uuid.UUID, meta: RuleChainMetadata, *, expected_version: int | None = None,
                   conn: asyncpg.Connection | None = None) -> int | None:
        """Replace the chain's nodes and connections with ``meta`` (every node carrying its id:
        see ``RuleChainMetadata.with_ids``) in one transaction; nodes left out are deleted with
        their debug events. Returns the chain's new version, None when the chain is gone; a
        stale ``expected_version`` raises VersionConflict."""
        if conn is not None:
            return await save_metadata(conn, chain_id, meta, expected_version=expected_version)
        async with self.db.transaction() as own:
            return await save_metadata(own, chain_id, meta, expected_version=expected_version)

    async def rename_relations(self, node_id: uuid.UUID, renames: dict[str, str]) -> uuid.UUID | None:
        """Relabel the connections leaving ``node_id`` (``old -> new``), as ThingsBoard does for
        the callers of a chain whose output nodes were renamed; returns the node's chain when
        something changed."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT c.id, c.tenant_id, c.connections FROM rule_chain c JOIN rule_node n"
                                      " ON n.rule_chain_id = c.id WHERE n.id = $1 FOR UPDATE OF c", node_id)
            if row is None:
                return None
            changed = False
            connections = []
            for c in row["connections"] or ():
                if c["from"] == str(node_id) and c["type"] in renames:
                    c = {**c, "type": renames[c["type"]]}
                    changed = True
                connections.append(c)
            if not changed:
                return None
            unique = list({(c["from"], c["to"], c["type"]): c for c in connections}.values())
            await conn.execute("UPDATE rule_chain SET connections = $2, version = version + 1 WHERE id = $1",
                               row["id"], unique)
            await notify(conn, row["tenant_id"], row["id"], "UPDATED")
            return row["id"]

    async def set_root(self, tenant_id: uuid.UUID, chain_id: uuid.UUID) -> uuid.UUID | None:
        """Make the chain its tenant's root chain of its type; returns the previous root (None
        when there was none, or when the chain already was the root)."""
        async with self.db.transaction() as conn:
            await lock_roots(conn, tenant_id)
            chain = await conn.fetchrow("SELECT type, root FROM rule_chain WHERE id = $1 AND tenant_id = $2",
                                        chain_id, tenant_id)
            if chain is None or chain["root"]:
                return None
            previous = await conn.fetchval(
                "UPDATE rule_chain SET root = false, version = version + 1 WHERE tenant_id = $1 AND type = $2"
                " AND root RETURNING id", tenant_id, chain["type"])
            await conn.execute("UPDATE rule_chain SET root = true, version = version + 1 WHERE id = $1", chain_id)
            await notify(conn, tenant_id, chain_id, "ROOT")
            return previous

    async def delete(self, tenant_id: uuid.UUID, chain_id: uuid.UUID) -> bool:
        async with self.db.transaction() as conn:
            nodes = await conn.fetch("SELECT id FROM rule_node WHERE rule_chain_id = $1", chain_id)
            status = await conn.execute("DELETE FROM rule_chain WHERE id = $1 AND tenant_id = $2", chain_id,
                                        tenant_id)
            if not status.endswith(" 1"):
                return False
            await conn.execute("DELETE FROM event WHERE tenant_id = $1 AND entity_id = ANY($2::uuid[])",
                               tenant_id, [chain_id, *(r["id"] for r in nodes)])
            await notify(conn, tenant_id, chain_id, "DELETED")
            return True


async def save_metadata(conn: asyncpg.Connection, chain_id: uuid.UUID, meta: RuleChainMetadata, *,
                        expected_version: int | None = None) -> int | None:
    """``RuleChainStore.save`` inside the caller's transaction."""
    if any(n.id is None for n in meta.nodes):
        raise ValueError("every node must carry its id: use RuleChainMetadata.with_ids first")
    chain = await conn.fetchrow("SELECT tenant_id, version FROM rule_chain WHERE id = $1 FOR UPDATE", chain_id)
    if chain is None:
        return None
    if expected_version is not None and chain["version"] != expected_version:
        raise VersionConflict("RULE_CHAIN", chain_id)
    ids = [n.id for n in meta.nodes]
    removed = await conn.fetch("DELETE FROM rule_node WHERE rule_chain_id = $1 AND id <> ALL($2::uuid[])"
                               " RETURNING id", chain_id, ids)
    if removed:
        await conn.execute("DELETE FROM event WHERE tenant_id = $1 AND entity_id = ANY($2::uuid[])",
                           chain["tenant_id"], [r["id"] for r in removed])
    now = now_ms()
    for position, spec in enumerate(meta.nodes):
        saved = await conn.fetchval(
            f"INSERT INTO rule_node ({_NODE_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"
            " ON CONFLICT (id) DO UPDATE SET position = EXCLUDED.position, type = EXCLUDED.type,"
            " name = EXCLUDED.name, debug_mode = EXCLUDED.debug_mode, debug_failures = EXCLUDED.debug_failures,"
            " singleton_mode = EXCLUDED.singleton_mode, queue_name = EXCLUDED.queue_name,"
            " configuration_version = EXCLUDED.configuration_version, configuration = EXCLUDED.configuration,"
            " additional_info = EXCLUDED.additional_info, external_id = EXCLUDED.external_id"
            " WHERE rule_node.rule_chain_id = EXCLUDED.rule_chain_id RETURNING id",
            spec.id, spec.created_time or now, chain_id, position, spec.type, spec.name, spec.debug_mode,
            spec.debug_failures, spec.singleton_mode, spec.queue_name, spec.configuration_version,
            spec.configuration, spec.additional_info, spec.external_id)
        if saved is None:
            raise ValueError(f"rule node {spec.id} belongs to another rule chain")
    connections = [{"from": str(ids[c.from_index]), "to": str(ids[c.to_index]), "type": c.type}
                   for c in sorted(meta.connections)]
    first = None if meta.first_node_index is None else ids[meta.first_node_index]
    version = await conn.fetchval(
        "UPDATE rule_chain SET connections = $2, first_rule_node_id = $3, notes = $4, version = version + 1"
        " WHERE id = $1 RETURNING version", chain_id, connections, first,
        None if meta.notes is None else list(meta.notes))
    await notify(conn, chain["tenant_id"], chain_id, "UPDATED")
    return version


async def notify(conn: asyncpg.Connection, tenant_id: uuid.UUID, chain_id: uuid.UUID, event: str) -> None:
    """Tell the shards (at commit) that a chain changed."""
    payload = json.dumps({"tenantId": str(tenant_id), "ruleChainId": str(chain_id), "event": event})
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


async def lock_roots(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
    """Serialise root changes of one tenant until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('rule_chain_root:' || $1::text, 0))",
                       str(tenant_id))


async def create_chain(conn: asyncpg.Connection, tenant_id: uuid.UUID, chain: dict[str, Any],
                       meta: RuleChainMetadata, *, root: bool = False) -> uuid.UUID:
    """Insert a chain header (export format: name, type, debugMode, configuration,
    additionalInfo) and its metadata; not checked against the node catalogue."""
    chain_id = new_id()
    await conn.execute(
        "INSERT INTO rule_chain (id, created_time, tenant_id, name, type, root, debug_mode, configuration,"
        " additional_info) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        chain_id, now_ms(), tenant_id, chain.get("name") or ROOT_NAME, chain.get("type") or "CORE", root,
        bool(chain.get("debugMode")), chain.get("configuration"), chain.get("additionalInfo"))
    await save_metadata(conn, chain_id, meta.with_ids(()))
    return chain_id


async def ensure_root_rule_chain(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> uuid.UUID:
    """The tenant's root CORE chain, created from ThingsBoard's default root chain when it has none.
    Idempotent and safe to run from several processes at once."""
    async with conn.transaction():
        await lock_roots(conn, tenant_id)
        existing = await conn.fetchval(
            "SELECT id FROM rule_chain WHERE tenant_id = $1 AND type = 'CORE' AND root", tenant_id)
        if existing is not None:
            return existing
        template = root_rule_chain()
        return await create_chain(conn, tenant_id, template["ruleChain"], parse_metadata(template["metadata"]),
                                  root=True)


async def ensure_root_rule_chains(conn: asyncpg.Connection) -> int:
    """Give every tenant without a root chain the default one; returns how many were created."""
    tenants = await conn.fetch("SELECT t.id FROM tenant t WHERE NOT EXISTS (SELECT 1 FROM rule_chain c"
                               " WHERE c.tenant_id = t.id AND c.type = 'CORE' AND c.root)")
    for row in tenants:
        await ensure_root_rule_chain(conn, row["id"])
    return len(tenants)


def _node_of(row: asyncpg.Record) -> NodeSpec:
    return NodeSpec(type=row["type"], name=row["name"], configuration=row["configuration"] or {}, id=row["id"],
                    debug_mode=row["debug_mode"], debug_failures=row["debug_failures"],
                    singleton_mode=row["singleton_mode"], queue_name=row["queue_name"],
                    configuration_version=row["configuration_version"], additional_info=row["additional_info"],
                    external_id=row["external_id"], created_time=row["created_time"])
