"""/api/ruleChain, /api/ruleChains: a tenant's rule chains, their metadata, the root chain and
the script test (ThingsBoard's RuleChainController; tenant administrators only). Export and
import are in rule_chain_transfer.py.

A chain's metadata is checked before it is saved: every node must be of a known class and accept
its configuration (scripts compile), connections must point at nodes and make no loop, and rule
chain input nodes may only forward to chains of the same tenant. The shards hear of every change
through the ``thingsray_rule_chain`` notice (storage/rule_chains.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import Field

from thingsray.rules.defaults import root_rule_chain
from thingsray.rules.model import OUTPUT_NODE, RuleChainError, RuleChainMetadata, check_nodes, parse_metadata
from thingsray.rules.script import ScriptError, ScriptRuntimeError
from thingsray.serve_app import crud
from thingsray.serve_app.access import load
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import BadRequest, NotFound
from thingsray.serve_app.models import EntityIdIn, LongText, Name, ShortText, TbModel, Versioned
from thingsray.serve_app.permissions import Operation, Resource, require, tenant_scope
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.entities import PageQuery
from thingsray.storage.events import EventStore
from thingsray.storage.relations import delete_entity_relations
from thingsray.storage.rule_chains import RuleChainStore, create_chain, lock_roots, notify

router = APIRouter(tags=["rule-chain"])
ChainPage = Annotated[PageQuery, Depends(page_params(tables.RULE_CHAIN.sort_columns))]
ChainType = Literal["CORE", "EDGE"]
CHAIN_TYPES = ("CORE", "EDGE")


class RuleChainIn(Versioned):
    name: Name
    type: ChainType | None = None
    root: bool | None = None
    """Honoured when a chain is created (if the tenant has no root chain of that type yet);
    a chain becomes root later through POST /api/ruleChain/{id}/root."""
    debugMode: bool | None = None
    configuration: Any = None
    externalId: EntityIdIn | None = None


class DefaultRuleChainRequest(TbModel):
    name: Name


_scripts: Any = None


def script_service(tenant_id: uuid.UUID) -> Any:
    """This process's ScriptService (one per process: it owns the V8 thread), as the tenant's
    view, so its JS scripts compile and run in the tenant's own isolate. Made on first use:
    a replica that never checks a script never loads V8."""
    global _scripts
    if _scripts is None:
        from thingsray.rules.script.service import ScriptService

        _scripts = ScriptService()
    return _scripts.for_tenant(tenant_id)


async def _chain(services: Services, principal: Principal, chain_id: str | uuid.UUID,
                 operation: Operation = Operation.READ) -> dict[str, Any]:
    value = chain_id if isinstance(chain_id, uuid.UUID) else parse_uuid(chain_id)
    return await load(services, principal, tables.RULE_CHAIN, Resource.RULE_CHAIN, value, operation)


def bad_request(exc: RuleChainError, chain_name: str | None = None) -> BadRequest:
    return BadRequest(f"Rule chain '{chain_name}': {exc}" if chain_name else str(exc))


async def checked_metadata(services: Services, tenant_id: uuid.UUID, chain_id: uuid.UUID, meta: RuleChainMetadata,
                           keep: set[uuid.UUID], *, importing: frozenset[uuid.UUID] = frozenset()
                           ) -> RuleChainMetadata:
    """``meta`` with node ids (kept where they are this chain's) once every node accepted its
    configuration and every rule chain input node forwards to a chain of this tenant (or one
    being imported with it)."""
    meta = replace(meta.with_ids(keep), rule_chain_id=chain_id)
    await asyncio.to_thread(check_nodes, meta, tenant_id=tenant_id, chain_id=chain_id,
                            scripts=script_service(tenant_id))
    targets = meta.input_targets()
    wanted = {t for t in targets.values() if t not in importing}
    found = await RuleChainStore(services.db).existing(tenant_id, list(wanted)) if wanted else set()
    for index, target in targets.items():
        if target not in importing and target not in found:
            spec = meta.nodes[index]
            raise RuleChainError(f"'{spec.name}' node configuration is invalid (rule node {index} '{spec.name}', "
                                 f"{spec.type}): the rule chain [{target}] it forwards to is not found")
    return meta


# --- the chain ------------------------------------------------------------------------------------
@router.get("/api/ruleChain/tbelEnabled", summary="Whether TBEL scripts may be used (they may)")
async def is_tbel_enabled(principal: PrincipalDep) -> bool:
    require(principal, Resource.RULE_CHAIN, Operation.READ)
    return True


@router.get("/api/ruleChain/{ruleChainId}", summary="Get a rule chain (without its nodes)")
async def get_rule_chain(ruleChainId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await _chain(services, principal, ruleChainId)


@router.post("/api/ruleChain", summary="Create or update a rule chain's header; a new chain has no nodes")
async def save_rule_chain(body: RuleChainIn, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    tenant_id = tenant_scope(principal)
    fields = body.model_dump(exclude_unset=True)
    fields.pop("root", None)
    if fields.get("type") is None:
        fields.pop("type", None)
    extra: dict[str, Any] = {}
    async with services.db.transaction() as conn:
        if body.id is None:
            chain_type = body.type or "CORE"
            if body.root:
                await lock_roots(conn, tenant_id)
                if await conn.fetchval("SELECT 1 FROM rule_chain WHERE tenant_id = $1 AND type = $2 AND root",
                                       tenant_id, chain_type):
                    raise BadRequest("Another root rule chain is present in scope of current tenant!")
                extra["root"] = True
        else:
            existing = await _chain(services, principal, body.id.id, Operation.WRITE)
            if existing["root"] and fields.get("type", existing["type"]) != existing["type"]:
                raise BadRequest("The type of a root rule chain cannot be changed: make another chain root first")
        saved, created = await crud.save(services, principal, tables.RULE_CHAIN, Resource.RULE_CHAIN, fields,
                                         extra=extra, conn=conn)
        if not created:
            await notify(conn, tenant_id, body.id.id if body.id else uuid.UUID(saved["id"]["id"]), "UPDATED")
    return saved


@router.post("/api/ruleChain/device/default", summary="Create a rule chain from the default root chain's template")
async def save_default_rule_chain(body: DefaultRuleChainRequest, principal: PrincipalDep,
                                  services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.RULE_CHAIN, Operation.CREATE)
    tenant_id = tenant_scope(principal)
    template = root_rule_chain()
    async with services.db.transaction() as conn:
        chain_id = await create_chain(conn, tenant_id, {**template["ruleChain"], "name": body.name},
                                      parse_metadata(template["metadata"]))
    saved = await services.repo(tables.RULE_CHAIN).get(chain_id)
    assert saved is not None
    await services.audit.record(principal, ActionType.ADDED, entity_type="RULE_CHAIN", entity_id=chain_id,
                                entity_name=body.name, data={"entity": saved})
    return saved


@router.delete("/api/ruleChain/{ruleChainId}", summary="Delete a rule chain no root, profile or other chain needs")
async def delete_rule_chain(ruleChainId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    chain = await _chain(services, principal, ruleChainId, Operation.DELETE)
    chain_id, tenant_id = uuid.UUID(chain["id"]["id"]), tenant_scope(principal)
    if chain["root"]:
        raise BadRequest("Deletion of Root Tenant Rule Chain is prohibited!")
    for table, label in (("device_profile", "device"), ("asset_profile", "asset")):
        if await services.db.fetchval(f"SELECT 1 FROM {table} WHERE default_rule_chain_id = $1 LIMIT 1", chain_id):
            raise BadRequest(f"The rule chain referenced by the {label} profiles cannot be deleted!")
    callers = await RuleChainStore(services.db).callers(tenant_id, chain_id)
    if callers:
        names = ", ".join(sorted({f"'{c['chainName']}'" for c in callers}))
        raise BadRequest(f"The rule chain referenced by the rule chains {names} cannot be deleted! "
                         "Remove their rule chain nodes that forward to it first.")
    if not await RuleChainStore(services.db).delete(tenant_id, chain_id):
        raise NotFound(f"Rule chain with id [{chain_id}] is not found")
    await delete_entity_relations(services.db, "RULE_CHAIN", chain_id)
    await services.audit.record(principal, ActionType.DELETED, entity_type="RULE_CHAIN", entity_id=chain_id,
                                entity_name=chain["name"])


@router.post("/api/ruleChain/{ruleChainId}/root", summary="Make a rule chain its tenant's root chain")
async def set_root_rule_chain(ruleChainId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    chain = await _chain(services, principal, ruleChainId, Operation.WRITE)
    chain_id, tenant_id = uuid.UUID(chain["id"]["id"]), tenant_scope(principal)
    if chain["root"]:
        return chain
    previous = await RuleChainStore(services.db).set_root(tenant_id, chain_id)
    repo = services.repo(tables.RULE_CHAIN)
    if previous is not None:
        await services.audit.record(principal, ActionType.UPDATED, entity_type="RULE_CHAIN", entity_id=previous,
                                    data={"entity": await repo.get(previous)})
    saved = await repo.get(chain_id)
    if saved is None:
        raise NotFound(f"Rule chain with id [{chain_id}] is not found")
    await services.audit.record(principal, ActionType.UPDATED, entity_type="RULE_CHAIN", entity_id=chain_id,
                                entity_name=saved["name"], data={"entity": saved})
    return saved


@router.get("/api/ruleChains", summary="A page of the tenant's rule chains of one type (CORE by default)")
async def get_rule_chains(page: ChainPage, principal: PrincipalDep, services: ServicesDep,
                          type: Annotated[str | None, Query(max_length=16)] = None) -> dict[str, Any]:
    require(principal, Resource.RULE_CHAIN, Operation.READ)
    chain_type = type or "CORE"
    if chain_type not in CHAIN_TYPES:
        raise BadRequest(f"Invalid rule chain type '{type}': use one of {', '.join(CHAIN_TYPES)}")
    return await services.repo(tables.RULE_CHAIN).page(page, {"tenant_id": tenant_scope(principal),
                                                              "type": chain_type})


# --- metadata -------------------------------------------------------------------------------------
@router.get("/api/ruleChain/{ruleChainId}/metadata", summary="A rule chain's nodes and connections")
async def get_rule_chain_metadata(ruleChainId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    chain = await _chain(services, principal, ruleChainId)
    meta = await RuleChainStore(services.db).load(uuid.UUID(chain["id"]["id"]))
    if meta is None:
        raise NotFound(f"Rule chain with id [{ruleChainId}] is not found")
    return meta.to_json()


@router.post("/api/ruleChain/metadata", summary="Save a rule chain's nodes and connections (checked first)")
async def save_rule_chain_metadata(
        principal: PrincipalDep, services: ServicesDep,
        body: Annotated[dict[str, Any], Body(description="RuleChainMetaData")],
        updateRelated: bool = True) -> dict[str, Any]:
    """``updateRelated``: output nodes renamed here rename the relations of the rule chain nodes
    that forward to this chain, as ThingsBoard does."""
    try:
        parsed = parse_metadata(body)
    except RuleChainError as exc:
        raise bad_request(exc) from None
    if parsed.rule_chain_id is None:
        raise BadRequest("Incorrect rule chain id.")
    chain = await _chain(services, principal, parsed.rule_chain_id, Operation.WRITE)
    chain_id, tenant_id = parsed.rule_chain_id, tenant_scope(principal)
    store = RuleChainStore(services.db)
    before = await store.load(chain_id)
    if before is None:
        raise NotFound(f"Rule chain with id [{chain_id}] is not found")
    try:
        meta = await checked_metadata(services, tenant_id, chain_id, parsed, {n.id for n in before.nodes if n.id})
    except RuleChainError as exc:
        raise bad_request(exc) from None
    if await store.save(chain_id, meta, expected_version=parsed.version) is None:
        raise NotFound(f"Rule chain with id [{chain_id}] is not found")
    if updateRelated:
        await _rename_caller_relations(services, principal, tenant_id, chain_id, before, meta)
    saved = await store.load(chain_id)
    assert saved is not None
    result = saved.to_json()
    await services.audit.record(principal, ActionType.UPDATED, entity_type="RULE_CHAIN", entity_id=chain_id,
                                entity_name=chain["name"], data={"metadata": result})
    return result


async def _rename_caller_relations(services: Services, principal: Principal, tenant_id: uuid.UUID,
                                   chain_id: uuid.UUID, before: RuleChainMetadata, after: RuleChainMetadata) -> None:
    """An output node renamed from A to B: the callers' connections labelled A become B, unless
    A was renamed two ways or an output node is still called A (ThingsBoard's rule)."""
    old_names = {n.id: n.name for n in before.nodes if n.type == OUTPUT_NODE}
    renames: dict[str, str] = {}
    confused: set[str] = set()
    for spec in after.nodes:
        old = old_names.get(spec.id) if spec.type == OUTPUT_NODE else None
        if old is None or old == spec.name:
            continue
        if renames.get(old, spec.name) != spec.name:
            confused.add(old)
        renames[old] = spec.name
    for label in confused | set(after.output_labels()):
        renames.pop(label, None)
    if not renames:
        return
    store = RuleChainStore(services.db)
    for caller in await store.callers(tenant_id, chain_id):
        changed = await store.rename_relations(caller["nodeId"], renames)
        if changed is not None:
            await services.audit.record(principal, ActionType.UPDATED, entity_type="RULE_CHAIN", entity_id=changed,
                                        entity_name=caller["chainName"], data={"renamedRelations": renames})


@router.get("/api/ruleChain/{ruleChainId}/output/labels", summary="Names of the chain's output nodes")
async def get_rule_chain_output_labels(ruleChainId: str, principal: PrincipalDep,
                                       services: ServicesDep) -> list[str]:
    chain = await _chain(services, principal, ruleChainId)
    meta = await RuleChainStore(services.db).load(uuid.UUID(chain["id"]["id"]))
    return [] if meta is None else meta.output_labels()


@router.get("/api/ruleChain/{ruleChainId}/output/labels/usage",
            summary="The rule chain nodes forwarding to this chain, and the labels they route")
async def get_rule_chain_output_labels_usage(ruleChainId: str, principal: PrincipalDep,
                                             services: ServicesDep) -> list[dict[str, Any]]:
    chain = await _chain(services, principal, ruleChainId)
    store = RuleChainStore(services.db)
    usage = []
    for caller in await store.callers(tenant_scope(principal), uuid.UUID(chain["id"]["id"])):
        meta = await store.load(caller["chainId"])
        index = next((i for i, n in enumerate(meta.nodes) if n.id == caller["nodeId"]), None) if meta else None
        if meta is None or index is None or not meta.outputs(index):
            continue
        usage.append({"ruleChainId": {"entityType": "RULE_CHAIN", "id": str(caller["chainId"])},
                      "ruleNodeId": {"entityType": "RULE_NODE", "id": str(caller["nodeId"])},
                      "ruleChainName": caller["chainName"], "ruleNodeName": caller["nodeName"],
                      "labels": sorted({c.type for c in meta.outputs(index)})})
    return usage


@router.get("/api/ruleNode/{ruleNodeId}/debugIn", summary="The newest message a rule node received in debug mode")
async def get_latest_rule_node_debug_input(ruleNodeId: str, principal: PrincipalDep,
                                           services: ServicesDep) -> dict[str, Any] | None:
    node_id = parse_uuid(ruleNodeId)
    require(principal, Resource.RULE_CHAIN, Operation.READ)
    found = await RuleChainStore(services.db).node_chain(node_id)
    if found is None or found[1] != principal.tenant_id:
        raise NotFound(f"Rule node with id [{node_id}] is not found")
    await _chain(services, principal, found[0])
    return await EventStore(services.db).latest(found[1], node_id, "IN")


# --- script test --------------------------------------------------------------------------------------
ScriptType = Literal["update", "generate", "filter", "switch", "json", "string"]
TEST_TIMEOUT_S = 20


class TestScriptIn(TbModel):
    script: LongText
    scriptType: ShortText
    argNames: Annotated[list[ShortText], Field(max_length=10)] = ["msg", "metadata", "msgType"]
    msg: LongText = ""
    """The message's data as JSON text."""
    metadata: dict[str, Any] = {}
    msgType: ShortText = ""


@router.post("/api/ruleChain/testScript", summary="Run a script on a test message: {output, error}")
async def test_script(body: TestScriptIn, principal: PrincipalDep,
                      scriptLang: Annotated[Literal["JS", "TBEL", "MVEL"] | None, Query()] = None) -> dict[str, str]:
    """As ThingsBoard's script editor uses it: ``scriptType`` says what the script returns
    (update and generate: ``{msg, metadata, msgType}``; filter: a boolean; switch: relation
    names; json, string). The language defaults to JS, as in ThingsBoard."""
    require(principal, Resource.RULE_CHAIN, Operation.WRITE)
    tenant_id = tenant_scope(principal)
    metadata = {k: v if isinstance(v, str) or v is None else json.dumps(v) for k, v in body.metadata.items()}
    output, error, script = "", "", None
    try:
        if body.scriptType not in ("update", "generate", "filter", "switch", "json", "string"):
            raise ValueError(f"Unsupported script type: {body.scriptType}")
        try:
            data = json.loads(body.msg) if body.msg.strip() else {}
        except ValueError as exc:
            raise ValueError(f"msg is not JSON: {exc}") from None
        script = await asyncio.to_thread(script_service(tenant_id).compile, scriptLang or "JS", body.script,
                                         body.argNames)
        args = (data, metadata, body.msgType, *([None] * len(body.argNames)))[:len(body.argNames)]
        result = await asyncio.wait_for(script.invoke(*args), TEST_TIMEOUT_S)
        output = _script_output(body.scriptType, result, data, metadata, body.msgType)
    except (ScriptError, ScriptRuntimeError, ValueError, TypeError, TimeoutError) as exc:
        error = str(exc) or type(exc).__name__
    finally:
        if script is not None:
            script.close()
    return {"output": output, "error": error}


def _script_output(script_type: str, result: Any, data: Any, metadata: dict[str, Any], msg_type: str) -> str:
    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))

    got = compact(result)[:200]
    match script_type:
        case "update" | "generate":
            results = result if isinstance(result, list) else [result]
            if not results or not all(isinstance(r, dict) for r in results):
                raise ValueError(f"Wrong result type: the script must return {{msg, metadata, msgType}}, got {got}")
            messages = [{"msg": r.get("msg", data), "metadata": r.get("metadata", metadata),
                         "msgType": r.get("msgType", msg_type)} for r in results]
            return compact(messages[0] if len(messages) == 1 else messages)
        case "filter":
            if not isinstance(result, bool):
                raise ValueError(f"Wrong result type: the script must return true or false, got {got}")
            return "true" if result else "false"
        case "switch":
            relations = [result] if isinstance(result, str) else result
            if not isinstance(relations, list) or not all(isinstance(r, str) for r in relations):
                raise ValueError(f"Wrong result type: the script must return relation names, got {got}")
            return compact(relations)
        case "json":
            return compact(result)
        case _:
            return result if isinstance(result, str) else compact(result)
