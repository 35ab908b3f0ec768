"""Loading an entity for a caller: found, then authorized, in that order, in one call.

A caller who may not see an entity learns nothing more than a caller asking for an id that
does not exist when the entity belongs to another tenant: both get 404 for reads by id, as
ThingsBoard answers a tenant admin asking for another tenant's device.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from thingsray.serve_app.errors import NotFound, PermissionDenied
from thingsray.serve_app.permissions import Operation, Owner, Resource, check
from thingsray.serve_app.security import Authority, Principal
from thingsray.serve_app.services import Services
from thingsray.storage.entities import NULL_UUID, EntityTable


def id_of(value: Any) -> uuid.UUID | None:
    if not value:
        return None
    raw = uuid.UUID(value["id"]) if isinstance(value, dict) else uuid.UUID(str(value))
    return None if raw == NULL_UUID else raw


def owner_of(entity: dict[str, Any]) -> Owner:
    """The owner of an entity from its ThingsBoard JSON (tenantId, customerId, assignedCustomers)."""
    entity_type = (entity.get("id") or {}).get("entityType")
    subject = id_of(entity.get("id"))
    tenant = id_of(entity.get("tenantId"))
    customers: list[uuid.UUID] = []
    customer = id_of(entity.get("customerId"))
    if customer is not None:
        customers.append(customer)
    for assigned in entity.get("assignedCustomers") or ():
        assigned_id = id_of(assigned.get("customerId"))
        if assigned_id is not None:
            customers.append(assigned_id)
    if entity_type == "TENANT":
        tenant = subject
    if entity_type == "CUSTOMER" and subject is not None:
        customers.append(subject)
    authority = Authority(entity["authority"]) if entity_type == "USER" and entity.get("authority") else None
    return Owner(tenant_id=tenant, customer_ids=tuple(customers), subject_id=subject, authority=authority)


async def load(services: Services, principal: Principal, table: EntityTable, resource: Resource,
               entity_id: uuid.UUID, operation: Operation = Operation.READ,
               owner: Callable[[dict[str, Any]], Owner] = owner_of) -> dict[str, Any]:
    """The entity as JSON, if it exists and the principal may perform ``operation`` on it."""
    entity = await services.repo(table).get(entity_id)
    if entity is None:
        raise NotFound(f"{_label(table)} with id [{entity_id}] is not found")
    try:
        check(principal, resource, operation, owner(entity))
    except PermissionDenied:
        if not _same_tenant(principal, entity):
            raise NotFound(f"{_label(table)} with id [{entity_id}] is not found") from None
        raise
    return entity


def _same_tenant(principal: Principal, entity: dict[str, Any]) -> bool:
    if principal.is_sys_admin:
        return True
    return owner_of(entity).tenant_id == principal.tenant_id


def _label(table: EntityTable) -> str:
    return table.entity_type.replace("_", " ").capitalize()
