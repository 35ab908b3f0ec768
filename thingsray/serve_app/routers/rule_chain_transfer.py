"""/api/ruleChains/export and /api/ruleChains/import: a tenant's rule chains as ThingsBoard's
RuleChainData (``{"ruleChains": [...], "metadata": [...]}``).

As ThingsBoard does, an export names its chains by ids of its own (chains pointing at each other
keep pointing at each other) and carries no node ids, and an import gives every chain new ids
(or, with ``overwrite``, the ids of the chains of the same names) and points configurations
that name a tenant at the importing one. Unlike ThingsBoard, an import is all or nothing: every
chain is checked before any is saved.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from thingsray.rules.model import INPUT_NODE, RuleChainError, RuleChainMetadata, parse_metadata
from thingsray.serve_app.access import id_of
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep
from thingsray.serve_app.errors import BadRequest
from thingsray.serve_app.permissions import Operation, Resource, require, tenant_scope
from thingsray.serve_app.routers.rule_chains import CHAIN_TYPES, bad_request, checked_metadata
from thingsray.storage import tables
from thingsray.storage.entities import PageQuery, new_id, now_ms
from thingsray.storage.rule_chains import RuleChainStore, save_metadata

router = APIRouter(tags=["rule-chain"])
MAX_EXPORT = 1000


@router.get("/api/ruleChains/export", summary="The tenant's rule chains and their metadata (RuleChainData)")
async def export_rule_chains(principal: PrincipalDep, services: ServicesDep,
                             limit: Annotated[int, Query(ge=1, le=MAX_EXPORT)]) -> dict[str, Any]:
    require(principal, Resource.RULE_CHAIN, Operation.READ)
    tenant_id = tenant_scope(principal)
    page = await services.repo(tables.RULE_CHAIN).page(
        PageQuery(page=0, page_size=limit, sort_column="created_time"), {"tenant_id": tenant_id})
    chains = page["data"]
    fresh = {uuid.UUID(c["id"]["id"]): new_id() for c in chains}  # as ThingsBoard: ids of the export only
    store = RuleChainStore(services.db)
    exported, metadata = [], []
    for chain in chains:
        old_id = uuid.UUID(chain["id"]["id"])
        meta = await store.load(old_id)
        if meta is None:  # deleted meanwhile
            continue
        exported.append({**chain, "id": {"entityType": "RULE_CHAIN", "id": str(fresh[old_id])}, "tenantId": None,
                         "firstRuleNodeId": None})
        body = meta.to_json(export=True)
        for node in body["nodes"]:
            if node["type"] == INPUT_NODE:
                node["configuration"] = _retarget(node["configuration"], fresh)
        metadata.append({"ruleChainId": {"entityType": "RULE_CHAIN", "id": str(fresh[old_id])}, **body})
    return {"ruleChains": exported, "metadata": metadata}


@dataclass
class _Import:
    header: dict[str, Any]
    raw_meta: Any
    name: str
    type: str
    chain_id: uuid.UUID
    updated: bool
    meta: RuleChainMetadata | None = None


@router.post("/api/ruleChains/import", summary="Import rule chains (RuleChainData), all checked before any is saved")
async def import_rule_chains(principal: PrincipalDep, services: ServicesDep,
                             body: Annotated[dict[str, Any], Body(description="RuleChainData")],
                             overwrite: bool = False) -> list[dict[str, Any]]:
    """Also takes one chain in the export format of ThingsBoard's UI (``{"ruleChain", "metadata"}``).
    ``overwrite``: a chain of the same type and name is replaced (its id and root flag kept)."""
    require(principal, Resource.RULE_CHAIN, Operation.CREATE)
    tenant_id = tenant_scope(principal)
    imports: list[_Import] = []
    fresh: dict[uuid.UUID, uuid.UUID] = {}
    for index, (header, raw_meta) in enumerate(_import_pairs(body)):
        name, chain_type = _import_header(header, index)
        existing = None
        if overwrite:
            existing = await services.db.fetchval(
                "SELECT id FROM rule_chain WHERE tenant_id = $1 AND type = $2 AND name = $3"
                " ORDER BY created_time LIMIT 1", tenant_id, chain_type, name)
        item = _Import(header, raw_meta, name, chain_type, existing or new_id(), existing is not None)
        if _is_id(header.get("id")):
            fresh[uuid.UUID(str(id_of(header["id"])))] = item.chain_id
        imports.append(item)
    importing = frozenset(item.chain_id for item in imports)
    for item in imports:
        try:
            parsed = parse_metadata(_retarget_metadata(item.raw_meta, fresh, tenant_id))
            item.meta = await checked_metadata(services, tenant_id, item.chain_id, parsed, set(), importing=importing)
        except RuleChainError as exc:
            raise bad_request(exc, item.name) from None
    async with services.db.transaction() as conn:
        for item in imports:
            header = (item.name, item.type, bool(item.header.get("debugMode")), item.header.get("configuration"),
                      item.header.get("additionalInfo"))
            if item.updated:
                await conn.execute("UPDATE rule_chain SET name = $2, type = $3, debug_mode = $4, configuration = $5,"
                                   " additional_info = $6, version = version + 1 WHERE id = $1", item.chain_id, *header)
            else:
                await conn.execute("INSERT INTO rule_chain (id, created_time, tenant_id, name, type, debug_mode,"
                                   " configuration, additional_info) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                   item.chain_id, now_ms(), tenant_id, *header)
            assert item.meta is not None
            await save_metadata(conn, item.chain_id, item.meta)
    repo = services.repo(tables.RULE_CHAIN)
    for item in imports:
        await services.audit.record(principal, ActionType.UPDATED if item.updated else ActionType.ADDED,
                                    entity_type="RULE_CHAIN", entity_id=item.chain_id, entity_name=item.name,
                                    data={"entity": await repo.get(item.chain_id)})
    return [{"tenantId": {"entityType": "TENANT", "id": str(tenant_id)},
             "ruleChainId": {"entityType": "RULE_CHAIN", "id": str(item.chain_id)},
             "ruleChainName": item.name, "updated": item.updated, "error": None} for item in imports]


def _import_pairs(body: Mapping[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    """(chain header, metadata) pairs from RuleChainData, or from one exported chain."""
    if isinstance(body.get("ruleChain"), dict):
        return [(body["ruleChain"], body.get("metadata"))]
    chains, metadata = body.get("ruleChains"), body.get("metadata")
    if not isinstance(chains, list) or not all(isinstance(c, dict) for c in chains):
        raise BadRequest("'ruleChains' must be a list of rule chains")
    if len(chains) > MAX_EXPORT:
        raise BadRequest(f"At most {MAX_EXPORT} rule chains may be imported at once, got {len(chains)}")
    metadata = metadata if isinstance(metadata, list) else []
    by_chain = {}
    for meta in metadata:
        key = id_of(meta.get("ruleChainId")) if isinstance(meta, dict) and _is_id(meta.get("ruleChainId")) else None
        if key is not None:
            by_chain[key] = meta
    pairs = []
    for index, chain in enumerate(chains):
        key = id_of(chain.get("id")) if _is_id(chain.get("id")) else None
        meta = by_chain.get(key) if key is not None else None
        if meta is None and index < len(metadata):  # ids that do not match: ThingsBoard's order
            meta = metadata[index]
        pairs.append((chain, meta if meta is not None else {"nodes": [], "connections": []}))
    return pairs


def _import_header(chain: Mapping[str, Any], index: int) -> tuple[str, str]:
    name = chain.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"Rule chain {index}: Rule chain name should be specified!")
    if len(name) > 255:
        raise BadRequest(f"Rule chain {index}: the name may have at most 255 characters")
    chain_type = chain.get("type") or "CORE"
    if chain_type not in CHAIN_TYPES:
        raise BadRequest(f"Rule chain '{name}': invalid type {chain_type!r}: use one of {', '.join(CHAIN_TYPES)}")
    if not isinstance(chain.get("debugMode"), bool | None):
        raise BadRequest(f"Rule chain '{name}': debugMode must be true or false, got {chain['debugMode']!r:.100}")
    return name, chain_type


def _retarget_metadata(raw: Any, fresh: Mapping[uuid.UUID, uuid.UUID], tenant_id: uuid.UUID) -> Any:
    """The imported metadata pointing at the imported chains' new ids, and at this tenant where
    a configuration names a tenant (as ThingsBoard does on import)."""
    if not isinstance(raw, dict):
        return raw
    out = {**raw, "ruleChainId": None}
    if isinstance(raw.get("nodes"), list):
        nodes = []
        for node in raw["nodes"]:
            if isinstance(node, dict):
                node = {**node, "id": None}
                if isinstance(node.get("configuration"), dict):
                    configuration = _own_tenant(node["configuration"], tenant_id)
                    if node.get("type") == INPUT_NODE:
                        configuration = _retarget(configuration, fresh)
                    node["configuration"] = configuration
            nodes.append(node)
        out["nodes"] = nodes
    if isinstance(raw.get("ruleChainConnections"), list):
        connections = []
        for connection in raw["ruleChainConnections"]:
            if isinstance(connection, dict) and _is_id(connection.get("targetRuleChainId")):
                target = id_of(connection["targetRuleChainId"])
                if target in fresh:
                    connection = {**connection, "targetRuleChainId": {"entityType": "RULE_CHAIN",
                                                                      "id": str(fresh[target])}}
            connections.append(connection)
        out["ruleChainConnections"] = connections
    return out


def _retarget(configuration: dict[str, Any], fresh: Mapping[uuid.UUID, uuid.UUID]) -> dict[str, Any]:
    raw = configuration.get("ruleChainId")
    try:
        target = uuid.UUID(str(raw)) if raw is not None else None
    except ValueError:
        return configuration
    if target in fresh:
        return {**configuration, "ruleChainId": str(fresh[target])}
    return configuration


def _own_tenant(value: Any, tenant_id: uuid.UUID) -> Any:
    if isinstance(value, dict):
        if value.get("entityType") == "TENANT" and "id" in value:
            return {**value, "id": str(tenant_id)}
        return {k: _own_tenant(v, tenant_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_own_tenant(v, tenant_id) for v in value]
    return value


def _is_id(value: Any) -> bool:
    raw = value.get("id") if isinstance(value, dict) else value
    try:
        uuid.UUID(str(raw))
    except ValueError:
        return False
    return raw is not None
