"""The rule engine: rule chain model, the node catalogue, script sandboxes (JS, TBEL)."""

from thingsray.rules.msg import EntityId, MsgType, TbMsg
from thingsray.rules.node import NODE_TYPES, NodeConfigError, NodeInit, RuleNode, node

__all__ = ["NODE_TYPES", "EntityId", "MsgType", "NodeConfigError", "NodeInit", "RuleNode", "TbMsg", "node"]
