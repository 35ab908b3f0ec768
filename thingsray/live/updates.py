"""The update a shard publishes after a commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

TIMESERIES = "TIMESERIES"
ATTRIBUTES = "ATTRIBUTES"
ALARM = "ALARM"
"""An alarm shown on the entity changed: ``values`` is ``{"alarm": [(ts, AlarmInfo JSON)]}``; a deleted
alarm comes as ``deleted`` = (its id,) and no values."""


@dataclass(frozen=True, slots=True)
class LiveUpdate:
    """``values``: key -> [(ts, value)] oldest first, values as JSON (numbers, strings, booleans,
    parsed JSON objects). ``scope`` is the attribute scope (CLIENT_SCOPE, SERVER_SCOPE,
    SHARED_SCOPE) of an ATTRIBUTES update, None for TIMESERIES. ``deleted``: attribute keys
    removed (their ``values`` are absent)."""

    entity_id: uuid.UUID
    kind: str
    scope: str | None
    values: dict[str, list[tuple[int, Any]]]
    deleted: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return _update, (self.entity_id.int, self.kind, self.scope, self.values, self.deleted)


def _update(entity: int, kind: str, scope: str | None, values: dict[str, list[tuple[int, Any]]],
            deleted: tuple[str, ...]) -> LiveUpdate:
    return LiveUpdate(uuid.UUID(int=entity), kind, scope, values, deleted)
