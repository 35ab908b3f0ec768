"""Save and delete with authorization and the audit log, the same way for every entity."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from thingsray.serve_app.access import load, owner_of
from thingsray.serve_app.audit import ActionType
from thingsray.serve_app.errors import NotFound
from thingsray.serve_app.permissions import Operation, Owner, Resource, require, tenant_scope
from thingsray.serve_app.security import Principal
from thingsray.serve_app.services import Services
from thingsray.storage.entities import EntityTable
from thingsray.storage.relations import delete_entity_relations


def display_name(entity: Mapping[str, Any]) -> str | None:
    return entity.get("name") or entity.get("title") or entity.get("email")


def body_id(body: Mapping[str, Any]) -> uuid.UUID | None:
    value = body.get("id")
    if not value:
        return None
    return uuid.UUID(str(value["id"] if isinstance(value, Mapping) else value))


async def save(services: Services, principal: Principal, table: EntityTable, resource: Resource,
               body: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None,
               owner: Callable[[dict[str, Any]], Owner] = owner_of,
               conn: Any = None) -> tuple[dict[str, Any], bool]:
    """Create (no ``id`` in the body) or update; return the saved entity and whether it is new.

    ``body`` holds the fields the client sent (``model_dump(exclude_unset=True)``);
    ``extra`` holds columns the server sets (``tenant_id``, ``type``...)."""
    repo = services.repo(table)
    row = {**repo.to_row(body), **(extra or {})}
    entity_id = body_id(body)
    if entity_id is not None:
        await load(services, principal, table, resource, entity_id, Operation.WRITE, owner)
        saved = await repo.update(entity_id, row, expected_version=body.get("version"), conn=conn)
        if saved is None:
            raise NotFound(f"{table.entity_type} with id [{entity_id}] is not found")
        created = False
    else:
        require(principal, resource, Operation.CREATE)
        if "tenant_id" in table.by_column and "tenant_id" not in row:
            row["tenant_id"] = tenant_scope(principal)
        saved = await repo.insert(row, conn=conn)
        created = True
    await services.audit.record(principal, ActionType.ADDED if created else ActionType.UPDATED,
                                entity_type=table.entity_type, entity_id=saved["id"]["id"],
                                entity_name=display_name(saved), data={"entity": saved})
    return saved, created


async def delete(services: Services, principal: Principal, table: EntityTable, resource: Resource,
                 entity_id: uuid.UUID, *, owner: Callable[[dict[str, Any]], Owner] = owner_of
                 ) -> dict[str, Any]:
    entity = await load(services, principal, table, resource, entity_id, Operation.DELETE, owner)
    await services.repo(table).delete(entity_id)
    await delete_entity_relations(services.db, table.entity_type, entity_id)
    await services.audit.record(principal, ActionType.DELETED, entity_type=table.entity_type,
                                entity_id=entity_id, entity_name=display_name(entity))
    return entity
