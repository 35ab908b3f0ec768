"""What rule nodes remember about entities across restarts (ThingsBoard's ``rule_node_state``):
one JSON document per (rule node, entity)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from thingsray.storage.database import Database
from thingsray.storage.entities import now_ms

PAGE = 1024


class RuleNodeStateStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, node_id: uuid.UUID, entity_id: uuid.UUID) -> Any:
        """The node's state of the entity, or None."""
        return await self.db.fetchval(
            "SELECT state_data FROM rule_node_state WHERE rule_node_id = $1 AND entity_id = $2", node_id, entity_id)

    async def save(self, node_id: uuid.UUID, entity_type: str, entity_id: uuid.UUID, state: Any) -> None:
        await self.db.execute(
            "INSERT INTO rule_node_state (id, created_time, rule_node_id, entity_type, entity_id, state_data)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT ON CONSTRAINT rule_node_state_unq_key"
            " DO UPDATE SET state_data = EXCLUDED.state_data",
            uuid.uuid4(), now_ms(), node_id, entity_type, entity_id, state)

    async def delete(self, node_id: uuid.UUID, entity_id: uuid.UUID) -> None:
        await self.db.execute("DELETE FROM rule_node_state WHERE rule_node_id = $1 AND entity_id = $2",
                              node_id, entity_id)

    async def clear(self, node_id: uuid.UUID) -> None:
        """Forget everything the node remembered."""
        await self.db.execute("DELETE FROM rule_node_state WHERE rule_node_id = $1", node_id)

    async def all(self, node_id: uuid.UUID) -> AsyncIterator[tuple[str, uuid.UUID, Any]]:
        """``(entity_type, entity_id, state)`` of every entity the node remembers, a page at a time."""
        after = uuid.UUID(int=0)
        while True:
            rows = await self.db.fetch(
                "SELECT entity_type, entity_id, state_data FROM rule_node_state WHERE rule_node_id = $1"
                " AND entity_id > $2 ORDER BY entity_id LIMIT $3", node_id, after, PAGE)
            for row in rows:
                yield row["entity_type"], row["entity_id"], row["state_data"]
            if len(rows) < PAGE:
                return
            after = rows[-1]["entity_id"]
