"""Who may do what: the one place authorization is decided.

``POLICY`` says which operations each authority may perform on each resource; ``check`` adds
ownership: a tenant admin acts only inside its tenant, a customer user only on what belongs or
is assigned to its customer, a system administrator only on tenants and their administrators.
Routers call ``check`` (or ``require``) and nothing else decides.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field

from thingsray.serve_app.errors import PermissionDenied
from thingsray.serve_app.security import Authority, Principal


class Resource(enum.StrEnum):
    ADMIN_SETTINGS = "ADMIN_SETTINGS"
    TENANT = "TENANT"
    CUSTOMER = "CUSTOMER"
    USER = "USER"
    DEVICE = "DEVICE"
    DEVICE_PROFILE = "DEVICE_PROFILE"
    ASSET = "ASSET"
    ASSET_PROFILE = "ASSET_PROFILE"
    DASHBOARD = "DASHBOARD"
    ENTITY_VIEW = "ENTITY_VIEW"
    RULE_CHAIN = "RULE_CHAIN"
    ALARM = "ALARM"
    AUDIT_LOG = "AUDIT_LOG"


class Operation(enum.StrEnum):
    READ = "READ"
    CREATE = "CREATE"
    WRITE = "WRITE"
    DELETE = "DELETE"
    ASSIGN_TO_CUSTOMER = "ASSIGN_TO_CUSTOMER"
    UNASSIGN_FROM_CUSTOMER = "UNASSIGN_FROM_CUSTOMER"
    READ_CREDENTIALS = "READ_CREDENTIALS"
    WRITE_CREDENTIALS = "WRITE_CREDENTIALS"
    READ_ATTRIBUTES = "READ_ATTRIBUTES"
    WRITE_ATTRIBUTES = "WRITE_ATTRIBUTES"
    READ_TELEMETRY = "READ_TELEMETRY"
    WRITE_TELEMETRY = "WRITE_TELEMETRY"
    RPC_CALL = "RPC_CALL"
    CLAIM_DEVICES = "CLAIM_DEVICES"
    IMPERSONATE = "IMPERSONATE"
    """Get a token of another user (``GET /api/user/{id}/token``)."""


ALL: frozenset[Operation] = frozenset(Operation)
READ_ONLY = frozenset({Operation.READ, Operation.READ_ATTRIBUTES, Operation.READ_TELEMETRY})

POLICY: dict[Authority, dict[Resource, frozenset[Operation]]] = {
    Authority.SYS_ADMIN: {
        Resource.ADMIN_SETTINGS: ALL,
        Resource.TENANT: ALL,
        Resource.USER: ALL,           # tenant administrators and itself; see _owns
        Resource.AUDIT_LOG: frozenset({Operation.READ}),
    },
    Authority.TENANT_ADMIN: {
        Resource.TENANT: READ_ONLY,   # its own tenant only
        Resource.CUSTOMER: ALL,
        Resource.USER: ALL,
        Resource.DEVICE: ALL,
        Resource.DEVICE_PROFILE: ALL,
        Resource.ASSET: ALL,
        Resource.ASSET_PROFILE: ALL,
        Resource.DASHBOARD: ALL,
        Resource.ENTITY_VIEW: ALL,
        Resource.RULE_CHAIN: ALL,
        Resource.ALARM: ALL,
        Resource.AUDIT_LOG: frozenset({Operation.READ}),
    },
    Authority.CUSTOMER_USER: {
        Resource.CUSTOMER: READ_ONLY,
        Resource.USER: frozenset({Operation.READ, Operation.WRITE}),   # itself only
        Resource.DEVICE: READ_ONLY | {Operation.RPC_CALL, Operation.WRITE_ATTRIBUTES,
                                      Operation.WRITE_TELEMETRY, Operation.CLAIM_DEVICES},
        Resource.DEVICE_PROFILE: frozenset({Operation.READ}),
        Resource.ASSET: READ_ONLY | {Operation.WRITE_ATTRIBUTES, Operation.WRITE_TELEMETRY},
        Resource.ASSET_PROFILE: frozenset({Operation.READ}),
        Resource.DASHBOARD: frozenset({Operation.READ}),
        Resource.ENTITY_VIEW: READ_ONLY,
        Resource.ALARM: frozenset({Operation.READ, Operation.WRITE}),
    },
}


TENANT_WIDE: frozenset[Resource] = frozenset({Resource.DEVICE_PROFILE, Resource.ASSET_PROFILE})
"""Resources that belong to no customer yet serve every customer of the tenant: a customer user
may use (within POLICY: read) those of its own tenant, as in ThingsBoard."""


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose an entity is. ``customer_ids`` holds the customers it belongs or is assigned to
    (several for a dashboard); ``subject_id`` is set for entities that are principals themselves
    (a user, a customer, a tenant) so that one may read itself."""

    tenant_id: uuid.UUID | None
    customer_ids: Collection[uuid.UUID] = field(default_factory=tuple)
    subject_id: uuid.UUID | None = None
    authority: Authority | None = None
    """For users: the authority of the user acted upon."""


def allowed(principal: Principal, resource: Resource, operation: Operation) -> bool:
    return operation in POLICY[principal.authority].get(resource, frozenset())


def require(principal: Principal, resource: Resource, operation: Operation) -> None:
    """The authority may perform ``operation`` on some ``resource`` at all."""
    if not allowed(principal, resource, operation):
        raise PermissionDenied()


def check(principal: Principal, resource: Resource, operation: Operation, owner: Owner) -> None:
    """The principal may perform ``operation`` on this entity."""
    require(principal, resource, operation)
    if not _owns(principal, resource, owner):
        raise PermissionDenied()


def _owns(principal: Principal, resource: Resource, owner: Owner) -> bool:
    match principal.authority:
        case Authority.SYS_ADMIN:
            if resource is Resource.USER:
                return owner.subject_id == principal.user_id or owner.authority in (
                    Authority.TENANT_ADMIN, Authority.SYS_ADMIN)
            return True
        case Authority.TENANT_ADMIN:
            if resource is Resource.TENANT:
                return owner.subject_id == principal.tenant_id
            if resource is Resource.USER and owner.authority is Authority.SYS_ADMIN:
                return False
            return owner.tenant_id is not None and owner.tenant_id == principal.tenant_id
        case Authority.CUSTOMER_USER:
            if owner.tenant_id != principal.tenant_id or principal.customer_id is None:
                return False
            if resource is Resource.USER:  # itself, and only as a customer user (no self-promotion)
                return owner.subject_id == principal.user_id and owner.authority in (
                    None, Authority.CUSTOMER_USER)
            if resource is Resource.CUSTOMER:
                return owner.subject_id == principal.customer_id
            if resource in TENANT_WIDE:
                return True
            return principal.customer_id in owner.customer_ids
    return False


def tenant_scope(principal: Principal) -> uuid.UUID:
    """The tenant a tenant admin or customer user acts in; a system administrator has none."""
    if principal.tenant_id is None:
        raise PermissionDenied()
    return principal.tenant_id


def customer_scope(principal: Principal, customer_id: uuid.UUID) -> None:
    """A customer user may only ask about its own customer."""
    if principal.is_customer_user and principal.customer_id != customer_id:
        raise PermissionDenied()
