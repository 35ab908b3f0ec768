"""/api/relation, /api/relations: typed, directed relations between two entities.

Both ends must exist and be the caller's to change (to read, for reads); a tenant administrator
may also relate its own tenant. Lists hold only relations whose both ends the caller may read.
Each change is written to the audit log of both ends, as ThingsBoard does.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from thingsray.serve_app.access import id_of, load
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.crud import display_name
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, parse_uuid
from thingsray.serve_app.errors import ApiError, BadRequest, NotFound
from thingsray.serve_app.models import Name, ShortText, TbModel
from thingsray.serve_app.permissions import Operation, Owner, Resource
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage import tables
from thingsray.storage.entities import EntityTable
from thingsray.storage.relations import RelationKey, RelationStore

router = APIRouter(tags=["entity-relation"])

ENDS: dict[str, tuple[EntityTable, Resource]] = {
    "TENANT": (tables.TENANT, Resource.TENANT), "CUSTOMER": (tables.CUSTOMER, Resource.CUSTOMER),
    "USER": (tables.USER, Resource.USER), "DEVICE": (tables.DEVICE, Resource.DEVICE),
    "ASSET": (tables.ASSET, Resource.ASSET), "DASHBOARD": (tables.DASHBOARD, Resource.DASHBOARD),
    "ENTITY_VIEW": (tables.ENTITY_VIEW, Resource.ENTITY_VIEW),
    "DEVICE_PROFILE": (tables.DEVICE_PROFILE, Resource.DEVICE_PROFILE),
    "ASSET_PROFILE": (tables.ASSET_PROFILE, Resource.ASSET_PROFILE),
    "RULE_CHAIN": (tables.RULE_CHAIN, Resource.RULE_CHAIN),
}
TYPE_GROUPS = {"COMMON", "DASHBOARD", "RULE_CHAIN", "RULE_NODE", "EDGE", "EDGE_AUTO_ASSIGN_RULE_CHAIN"}
TENANT_SHARED = {"DEVICE_PROFILE", "ASSET_PROFILE"}
"""Readable by every user of the tenant, customer users included."""

TypeGroup = Annotated[str | None, Query(max_length=255)]
RelationType = Annotated[str, Query(min_length=1, max_length=255)]
EntityTypeParam = Annotated[str, Query(min_length=1, max_length=64)]
IdParam = Annotated[str, Query(min_length=1, max_length=64)]


class RelationEnd(TbModel):
    entityType: ShortText
    id: uuid.UUID


class RelationIn(TbModel):
    from_: RelationEnd = Field(alias="from")
    to: RelationEnd
    type: Name
    typeGroup: ShortText | None = None
    additionalInfo: Any = None


class SearchParameters(TbModel):
    rootId: uuid.UUID
    rootType: ShortText
    direction: Literal["FROM", "TO"]
    relationTypeGroup: ShortText | None = None
    maxLevel: int = Field(default=1, ge=-1, le=1_000_000)
    fetchLastLevelOnly: bool = False


class RelationFilter(TbModel):
    relationType: ShortText | None = None
    entityTypes: Annotated[list[ShortText], Field(max_length=100)] | None = None
    negate: bool = False


class RelationsQuery(TbModel):
    parameters: SearchParameters
    filters: Annotated[list[RelationFilter], Field(max_length=100)] | None = None


def type_group(value: str | None) -> str:
    group = value or "COMMON"
    if group not in TYPE_GROUPS:
        raise BadRequest(f"Unsupported relation type group '{group}'; use one of {', '.join(sorted(TYPE_GROUPS))}")
    return group


async def authorize(services: Services, principal: Principal, entity_type: str, entity_id: uuid.UUID,
                    operation: Operation) -> dict[str, Any]:
    """The entity at one end of a relation, if the caller may perform ``operation`` on it."""
    end = ENDS.get(entity_type)
    if end is None:
        raise BadRequest(f"Unsupported entity type '{entity_type}'; use one of {', '.join(ENDS)}")
    table, resource = end
    if entity_type == "TENANT" and principal.is_tenant_admin and entity_id == principal.tenant_id:
        operation = Operation.READ  # a tenant administrator may relate its own tenant
    if entity_type in TENANT_SHARED and operation is Operation.READ:
        customers = (principal.customer_id,) if principal.customer_id else ()
        return await load(services, principal, table, resource, entity_id, operation,
                          lambda e: Owner(tenant_id=id_of(e.get("tenantId")), customer_ids=customers))
    return await load(services, principal, table, resource, entity_id, operation)


async def readable(services: Services, principal: Principal, relations: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """Only the relations whose both ends the caller may read (ThingsBoard's read filter)."""
    if not principal.is_customer_user:
        return relations
    verdicts: dict[tuple[str, str], bool] = {}
    kept = []
    for relation in relations:
        ok = True
        for end in (relation["from"], relation["to"]):
            key = (end["entityType"], end["id"])
            if key not in verdicts:
                try:
                    await authorize(services, principal, key[0], uuid.UUID(key[1]), Operation.READ)
                    verdicts[key] = True
                except ApiError:
                    verdicts[key] = False
            ok = ok and verdicts[key]
        if ok:
            kept.append(relation)
    return kept


async def with_names(services: Services, relations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """EntityRelationInfo: the relation plus ``fromName`` and ``toName``."""
    ends = {(r[side]["entityType"], uuid.UUID(r[side]["id"])) for r in relations for side in ("from", "to")}
    names = await RelationStore(services.db).names(ends)
    return [{**r, "fromName": names.get((r["from"]["entityType"], uuid.UUID(r["from"]["id"]))),
             "toName": names.get((r["to"]["entityType"], uuid.UUID(r["to"]["id"])))} for r in relations]


async def _audit_both(services: Services, principal: Principal, action: ActionType, relation: dict[str, Any],
                      ends: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for side, entity in zip(("from", "to"), ends, strict=True):
        await services.audit.record(principal, action, entity_type=relation[side]["entityType"],
                                    entity_id=relation[side]["id"], entity_name=display_name(entity),
                                    data={"relation": relation})


async def _save(services: Services, principal: Principal, body: RelationIn) -> dict[str, Any]:
    group = type_group(body.typeGroup)
    ends = (await authorize(services, principal, body.from_.entityType, body.from_.id, Operation.WRITE),
            await authorize(services, principal, body.to.entityType, body.to.id, Operation.WRITE))
    key = RelationKey(body.from_.id, body.from_.entityType, body.to.id, body.to.entityType, body.type, group)
    relation = await RelationStore(services.db).save(key, body.additionalInfo)
    await _audit_both(services, principal, ActionType.RELATION_ADD_OR_UPDATE, relation, ends)
    return relation


async def _delete(services: Services, principal: Principal, fromId: str, fromType: str, relationType: str,
                  relationTypeGroup: str | None, toId: str, toType: str) -> dict[str, Any]:
    key = RelationKey(parse_uuid(fromId), fromType, parse_uuid(toId), toType, relationType,
                      type_group(relationTypeGroup))
    ends = (await authorize(services, principal, key.from_type, key.from_id, Operation.WRITE),
            await authorize(services, principal, key.to_type, key.to_id, Operation.WRITE))
    relation = await RelationStore(services.db).delete(key)
    if relation is None:
        raise NotFound("Requested item wasn't found!")
    await _audit_both(services, principal, ActionType.RELATION_DELETED, relation, ends)
    return relation


@router.post("/api/relation", summary="Create or update a relation")
async def save_relation(body: RelationIn, principal: PrincipalDep, services: ServicesDep) -> None:
    await _save(services, principal, body)


@router.post("/api/v2/relation", summary="Create or update a relation; answer the saved relation")
async def save_relation_v2(body: RelationIn, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await _save(services, principal, body)


@router.delete("/api/relation", summary="Delete a relation")
async def delete_relation(principal: PrincipalDep, services: ServicesDep, fromId: IdParam, fromType: EntityTypeParam,
                          relationType: RelationType, toId: IdParam, toType: EntityTypeParam,
                          relationTypeGroup: TypeGroup = None) -> None:
    await _delete(services, principal, fromId, fromType, relationType, relationTypeGroup, toId, toType)


@router.delete("/api/v2/relation", summary="Delete a relation; answer the deleted relation")
async def delete_relation_v2(principal: PrincipalDep, services: ServicesDep, fromId: IdParam,
                             fromType: EntityTypeParam, relationType: RelationType, toId: IdParam,
                             toType: EntityTypeParam, relationTypeGroup: TypeGroup = None) -> dict[str, Any]:
    return await _delete(services, principal, fromId, fromType, relationType, relationTypeGroup, toId, toType)


@router.delete("/api/relations", summary="Delete every COMMON relation from or to an entity")
async def delete_relations(principal: PrincipalDep, services: ServicesDep, entityId: IdParam,
                           entityType: EntityTypeParam) -> None:
    entity_id = parse_uuid(entityId)
    entity = await authorize(services, principal, entityType, entity_id, Operation.WRITE)
    rows = await services.db.fetch(
        "DELETE FROM relation WHERE relation_type_group = 'COMMON' AND ((from_id = $1 AND from_type = $2)"
        " OR (to_id = $1 AND to_type = $2)) RETURNING from_type, from_id, to_type, to_id, relation_type",
        entity_id, entityType)
    await services.audit.record(principal, ActionType.RELATION_DELETED, entity_type=entityType, entity_id=entity_id,
                                entity_name=display_name(entity),
                                data={"deleted": len(rows), "relationTypeGroup": "COMMON"})


@router.get("/api/relation", summary="Get one relation")
async def get_relation(principal: PrincipalDep, services: ServicesDep, fromId: IdParam, fromType: EntityTypeParam,
                       relationType: RelationType, toId: IdParam, toType: EntityTypeParam,
                       relationTypeGroup: TypeGroup = None) -> dict[str, Any]:
    key = RelationKey(parse_uuid(fromId), fromType, parse_uuid(toId), toType, relationType,
                      type_group(relationTypeGroup))
    await authorize(services, principal, key.from_type, key.from_id, Operation.READ)
    await authorize(services, principal, key.to_type, key.to_id, Operation.READ)
    relation = await RelationStore(services.db).get(key)
    if relation is None:
        raise NotFound("Requested item wasn't found!")
    return relation


async def _find(services: Services, principal: Principal, fromId: str | None, fromType: str | None,
                toId: str | None, toType: str | None, relationType: str | None,
                relationTypeGroup: str | None) -> list[dict[str, Any]]:
    if fromId is not None and fromType is not None:
        direction, raw_id, entity_type = "FROM", fromId, fromType
    elif toId is not None and toType is not None:
        direction, raw_id, entity_type = "TO", toId, toType
    else:
        raise BadRequest("Give fromId and fromType, or toId and toType")
    entity_id = parse_uuid(raw_id)
    group = type_group(relationTypeGroup)
    await authorize(services, principal, entity_type, entity_id, Operation.READ)
    found = await RelationStore(services.db).find(direction, entity_id, entity_type, group, relationType)
    return await readable(services, principal, found)


OptId = Annotated[str | None, Query(max_length=64)]
OptType = Annotated[str | None, Query(max_length=64)]
OptRelationType = Annotated[str | None, Query(max_length=255)]


@router.get("/api/relations", summary="Relations from (fromId, fromType) or to (toId, toType) an entity")
async def find_relations(principal: PrincipalDep, services: ServicesDep, fromId: OptId = None,
                         fromType: OptType = None, toId: OptId = None, toType: OptType = None,
                         relationType: OptRelationType = None,
                         relationTypeGroup: TypeGroup = None) -> list[dict[str, Any]]:
    return await _find(services, principal, fromId, fromType, toId, toType, relationType, relationTypeGroup)


@router.get("/api/relations/info", summary="Relations from or to an entity, with both ends' names")
async def find_relation_infos(principal: PrincipalDep, services: ServicesDep, fromId: OptId = None,
                              fromType: OptType = None, toId: OptId = None, toType: OptType = None,
                              relationTypeGroup: TypeGroup = None) -> list[dict[str, Any]]:
    found = await _find(services, principal, fromId, fromType, toId, toType, None, relationTypeGroup)
    return await with_names(services, found)


@router.get("/api/relations/info/from/{fromType}/{fromId}", summary="Relations from an entity, with names")
async def find_relation_infos_from(fromType: str, fromId: str, principal: PrincipalDep, services: ServicesDep,
                                   relationTypeGroup: TypeGroup = None) -> list[dict[str, Any]]:
    found = await _find(services, principal, fromId, fromType, None, None, None, relationTypeGroup)
    return await with_names(services, found)


@router.get("/api/relations/info/to/{toType}/{toId}", summary="Relations to an entity, with names")
async def find_relation_infos_to(toType: str, toId: str, principal: PrincipalDep, services: ServicesDep,
                                 relationTypeGroup: TypeGroup = None) -> list[dict[str, Any]]:
    found = await _find(services, principal, None, None, toId, toType, None, relationTypeGroup)
    return await with_names(services, found)


@router.get("/api/relations/from/{fromType}/{fromId}", summary="Relations from an entity")
async def find_relations_from(fromType: str, fromId: str, principal: PrincipalDep, services: ServicesDep,
                              relationTypeGroup: TypeGroup = None) -> list[dict[str, Any]]:
    return await _find(services, principal, fromId, fromType, None, None, None, relationTypeGroup)


@router.get("/api/relations/from/{fromType}/{fromId}/{relationType}", summary="Relations of a type from an entity")
async def find_relations_from_by_type(fromType: str, fromId: str, relationType: str, principal: PrincipalDep,
                                      services: ServicesDep, relationTypeGroup: TypeGroup = None
                                      ) -> list[dict[str, Any]]:
    return await _find(services, principal, fromId, fromType, None, None, relationType, relationTypeGroup)


@router.get("/api/relations/to/{toType}/{toId}", summary="Relations to an entity")
async def find_relations_to(toType: str, toId: str, principal: PrincipalDep, services: ServicesDep,
                            relationTypeGroup: TypeGroup = None) -> list[dict[str, Any]]:
    return await _find(services, principal, None, None, toId, toType, None, relationTypeGroup)


@router.get("/api/relations/to/{toType}/{toId}/{relationType}", summary="Relations of a type to an entity")
async def find_relations_to_by_type(toType: str, toId: str, relationType: str, principal: PrincipalDep,
                                    services: ServicesDep, relationTypeGroup: TypeGroup = None
                                    ) -> list[dict[str, Any]]:
    return await _find(services, principal, None, None, toId, toType, relationType, relationTypeGroup)


def _matches(filters: list[RelationFilter], relation: dict[str, Any], direction: str) -> bool:
    if not filters:
        return True
    far = relation["to"] if direction == "FROM" else relation["from"]
    for f in filters:
        hit = (not f.relationType or f.relationType == relation["type"]) and (
            not f.entityTypes or far["entityType"] in f.entityTypes)
        if hit != f.negate:
            return True
    return False


async def _query(services: Services, principal: Principal, body: RelationsQuery) -> list[dict[str, Any]]:
    p = body.parameters
    await authorize(services, principal, p.rootType, p.rootId, Operation.READ)
    walked = await RelationStore(services.db).related(p.rootId, p.rootType, p.direction,
                                                       type_group(p.relationTypeGroup), p.maxLevel)
    walked.sort(key=lambda item: item[0])
    found = [relation for _, leaf, relation in walked
             if (leaf or not p.fetchLastLevelOnly) and _matches(body.filters or [], relation, p.direction)]
    return await readable(services, principal, found)


@router.post("/api/relations", summary="Relations reachable from a root entity (EntityRelationsQuery)")
async def find_relations_by_query(body: RelationsQuery, principal: PrincipalDep,
                                  services: ServicesDep) -> list[dict[str, Any]]:
    return await _query(services, principal, body)


@router.post("/api/relations/info", summary="Relations reachable from a root entity, with names")
async def find_relation_infos_by_query(body: RelationsQuery, principal: PrincipalDep,
                                       services: ServicesDep) -> list[dict[str, Any]]:
    return await with_names(services, await _query(services, principal, body))
