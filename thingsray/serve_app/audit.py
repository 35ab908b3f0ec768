"""The audit log: every create, update, delete and login is recorded, with who did it."""

from __future__ import annotations

import enum
import logging
import uuid
from typing import Any

from thingsray.serve_app.security import Principal
from thingsray.storage.database import Database
from thingsray.storage.entities import new_id, now_ms

log = logging.getLogger(__name__)


class ActionType(enum.StrEnum):
    ADDED = "ADDED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    LOGIN = "LOGIN"
    LOGOUT = "LOGOUT"
    LOCKOUT = "LOCKOUT"
    ACTIVATED = "ACTIVATED"
    ASSIGNED_TO_CUSTOMER = "ASSIGNED_TO_CUSTOMER"
    UNASSIGNED_FROM_CUSTOMER = "UNASSIGNED_FROM_CUSTOMER"
    CREDENTIALS_UPDATED = "CREDENTIALS_UPDATED"
    CREDENTIALS_READ = "CREDENTIALS_READ"
    RELATION_ADD_OR_UPDATE = "RELATION_ADD_OR_UPDATE"
    RELATION_DELETED = "RELATION_DELETED"
    ATTRIBUTES_UPDATED = "ATTRIBUTES_UPDATED"
    ATTRIBUTES_DELETED = "ATTRIBUTES_DELETED"
    TIMESERIES_UPDATED = "TIMESERIES_UPDATED"
    TIMESERIES_DELETED = "TIMESERIES_DELETED"
    ALARM_ACK = "ALARM_ACK"
    ALARM_CLEAR = "ALARM_CLEAR"
    ALARM_DELETE = "ALARM_DELETE"
    ALARM_ASSIGNED = "ALARM_ASSIGNED"
    ALARM_UNASSIGNED = "ALARM_UNASSIGNED"


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, principal: Principal | None, action: ActionType, *,
                     entity_type: str | None = None, entity_id: uuid.UUID | str | None = None,
                     entity_name: str | None = None, data: dict[str, Any] | None = None,
                     failure: str | None = None, tenant_id: uuid.UUID | None = None,
                     customer_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None,
                     user_name: str | None = None) -> None:
        """Write one entry. ``tenant_id``/``customer_id``/``user_*`` default to the principal's."""
        if principal is not None:
            tenant_id = tenant_id or principal.tenant_id
            customer_id = customer_id or principal.customer_id
            user_id = user_id or principal.user_id
            user_name = user_name or principal.email
        try:
            await self.db.execute(
                "INSERT INTO audit_log (id, created_time, tenant_id, customer_id, entity_id, entity_type,"
                " entity_name, user_id, user_name, action_type, action_data, action_status,"
                " action_failure_details) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                new_id(), now_ms(), tenant_id, customer_id,
                None if entity_id is None else uuid.UUID(str(entity_id)), entity_type, entity_name,
                user_id, user_name, str(action), data or {}, "FAILURE" if failure else "SUCCESS", failure)
        except Exception:
            # the action itself succeeded; a lost audit row is logged loudly, not turned into a 500
            log.exception("could not write the audit log entry for %s %s %s", action, entity_type, entity_id)
