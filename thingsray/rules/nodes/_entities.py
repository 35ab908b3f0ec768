"""What enrichment and transformation nodes share: the entities a message leads to (its customer,
a related entity, one found by name), always within the message's tenant, and their fields as
ThingsBoard's ``EntityFieldsData`` shows them.

Every lookup here answers None for an entity of another tenant, exactly as for one that does not
exist: a node never reads, or learns of, another tenant's entity."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from thingsray.kv import JsonValue, Value
from thingsray.rules.msg import EntityId
from thingsray.rules.node import NodeConfigError
from thingsray.storage import NULL_UUID

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext

NORMAL_NAMES = {"DEVICE": "Device", "ASSET": "Asset", "ENTITY_VIEW": "Entity View", "USER": "User",
                "EDGE": "Edge", "CUSTOMER": "Customer", "TENANT": "Tenant", "DASHBOARD": "Dashboard",
                "ALARM": "Alarm", "RULE_CHAIN": "Rule chain"}
"""ThingsBoard's ``EntityType.getNormalName()``, used in its error texts."""

BY_NAME = {"DEVICE": ("device", "name"), "ASSET": ("asset", "name"), "ENTITY_VIEW": ("entity_view", "name"),
           "USER": ("tb_user", "email")}
"""Entity types a name pattern may name, and the column holding the name (a user's is its email)."""


def kv_text(value: Value) -> str:
    """A stored value as ThingsBoard's ``KvEntry.getValueAsString`` gives it."""
    if isinstance(value, JsonValue):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def kv_json(value: Value) -> Any:
    """A stored value as a JSON node of the message body (``JacksonUtil.addKvEntry``)."""
    if isinstance(value, JsonValue):
        return json.loads(value.text)
    return value


def ref_id(ref: Any) -> uuid.UUID | None:
    """The id in ``{"entityType", "id"}``; None for none or ThingsBoard's NULL_UUID."""
    if not isinstance(ref, dict) or ref.get("id") is None:
        return None
    found = uuid.UUID(str(ref["id"]))
    return None if found == NULL_UUID else found


async def tenant_entity(ctx: RuleContext, entity: EntityId) -> dict[str, Any] | None:
    """The entity as the REST API shows it, when it is this tenant's; alarms included."""
    if entity.entity_type == "ALARM":
        alarm = await ctx.alarms.get(entity.id)
        if alarm is None or ref_id(alarm.get("tenantId")) != ctx.tenant_id:
            return None
        return alarm
    return await ctx.get_entity(entity)


async def first_related(ctx: RuleContext, originator: EntityId, query: dict[str, Any]
                        ) -> tuple[EntityId, dict[str, Any]] | None:
    """The first entity a ``relationsQuery`` reaches from ``originator``, with its fields
    (ThingsBoard's EntitiesRelatedEntityIdAsyncLoader: the rest are ignored)."""
    for related in await ctx.find_related(originator, query):
        found = await tenant_entity(ctx, related)
        if found is not None:
            return related, found
    return None


def relations_query(config: dict[str, Any], key: str = "relationsQuery") -> dict[str, Any]:
    """A ThingsBoard ``RelationsQuery`` (direction, maxLevel, fetchLastLevelOnly, filters), checked."""
    query = config.get(key)
    if not isinstance(query, dict):
        raise NodeConfigError(f"'{key}' must be an object with direction, maxLevel and filters, got {query!r}")
    if query.get("direction") not in ("FROM", "TO"):
        raise NodeConfigError(f"'{key}.direction' must be FROM or TO, got {query.get('direction')!r}")
    level = query.get("maxLevel", 1)
    if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
        raise NodeConfigError(f"'{key}.maxLevel' must be an integer, got {level!r}")
    filters = query.get("filters") or []
    if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
        raise NodeConfigError(f"'{key}.filters' must be a list of {{relationType, entityTypes}}, got {filters!r}")
    for f in filters:
        types = f.get("entityTypes") or []
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise NodeConfigError(f"'{key}.filters[].entityTypes' must be a list of entity types, got {types!r}")
        if f.get("relationType") is not None and not isinstance(f.get("relationType"), str):
            raise NodeConfigError(f"'{key}.filters[].relationType' must be a string, got {f.get('relationType')!r}")
    return query


async def find_by_name(ctx: RuleContext, entity_type: str, name: str) -> EntityId | None:
    """The tenant's entity of ``entity_type`` called ``name`` (a user by its email)."""
    table, column = BY_NAME[entity_type]
    found = await ctx.db.fetchval(f"SELECT id FROM {table} WHERE tenant_id = $1 AND {column} = $2 LIMIT 1",
                                  ctx.tenant_id, name)
    return None if found is None else EntityId(entity_type, found)


def entity_fields(entity: dict[str, Any]) -> dict[str, Any]:
    """An entity's fields as ThingsBoard's EntityFieldsData holds them: ids as their UUID text."""
    return {k: str(v["id"]) if _is_ref(v) else v for k, v in entity.items()}


def field_value(fields: dict[str, Any], path: str, ignore_null_strings: bool) -> str | None:
    """``EntityFieldsData.getFieldValue``: a dotted path into the fields; JSON null is "null"
    (or nothing with ``ignore_null_strings``, which also drops empty text); objects and
    arrays are their JSON text."""
    node: Any = fields
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if node is None:
        return None if ignore_null_strings else "null"
    if isinstance(node, dict | list):
        return json.dumps(node, separators=(",", ":"), ensure_ascii=False)
    text = "true" if node is True else "false" if node is False else str(node)
    if ignore_null_strings and not text:
        return None
    return text


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"entityType", "id"}
