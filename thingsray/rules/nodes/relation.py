"""Check relation presence: True when the originator has a relation of a type, to a given entity or
to any."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.msg import EntityId
from thingsray.rules.node import FALSE, TRUE, NodeConfigError, NodeInit, Outputs, RuleNode, node, one_of, optional
from thingsray.rules.nodes._entities import tenant_entity

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg


@node
class CheckRelationNode(RuleNode):
    """``direction`` FROM: a relation from the originator (to the configured entity, with
    ``checkForSingleEntity``, else to any entity); TO: a relation to the originator. This is
    ThingsBoard's meaning since the node's configuration version 1; version 0 configurations
    meant the opposite, and ThingsBoard flips them when it upgrades them.

    The configured entity must be the tenant's: a message meeting a node configured with another
    tenant's entity goes to Failure, and nothing about that entity is read."""

    type = "org.thingsboard.rule.engine.filter.TbCheckRelationNode"
    name = "check relation presence"
    component = "FILTER"
    relations: ClassVar[tuple[str, ...]] = (TRUE, FALSE)
    default_config: ClassVar[dict[str, Any]] = {"checkForSingleEntity": True, "direction": "FROM",
                                                "entityType": None, "entityId": None, "relationType": "Contains"}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.direction = one_of(config, "direction", ("FROM", "TO"), "FROM")
        self.relation_type = optional(config, "relationType", str, "Contains")
        self.single = optional(config, "checkForSingleEntity", bool, False)
        self.entity: EntityId | None = None
        self._owned = False
        if self.single:
            entity_type, entity_id = config.get("entityType"), config.get("entityId")
            if not entity_type or not entity_id:
                raise NodeConfigError("Entity should be specified!")
            try:
                self.entity = EntityId(str(entity_type), uuid.UUID(str(entity_id)))
            except ValueError:
                raise NodeConfigError(f"'entityId' must be a UUID, got {entity_id!r}") from None

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if self.entity is None:
            found = await self._any_relation(ctx, msg.originator)
        else:
            if not self._owned:
                if await tenant_entity(ctx, self.entity) is None:
                    raise ValueError(f"Entity with id: '{self.entity.id}' specified in the configuration "
                                     "doesn't belong to the current tenant.")
                self._owned = True
            if self.direction == "FROM":
                found = await ctx.relation_exists(msg.originator, self.entity, self.relation_type)
            else:
                found = await ctx.relation_exists(self.entity, msg.originator, self.relation_type)
        return [(TRUE if found else FALSE, msg)]

    async def _any_relation(self, ctx: RuleContext, originator: EntityId) -> bool:
        side = "from" if self.direction == "FROM" else "to"
        return bool(await ctx.db.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM relation WHERE {side}_id = $1 AND {side}_type = $2"
            " AND relation_type = $3 AND relation_type_group = 'COMMON')",
            originator.id, originator.entity_type, self.relation_type))
