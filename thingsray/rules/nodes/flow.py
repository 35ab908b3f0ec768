"""Flow nodes: forwarding to another rule chain and returning from it.

The engine does the forwarding itself (it knows the chains); these classes check the
configuration when a chain is saved and tell the engine what to do.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.model import INPUT_NODE, OUTPUT_NODE
from thingsray.rules.node import NodeConfigError, NodeInit, Outputs, RuleNode, node, optional

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg

@node
class RuleChainInputNode(RuleNode):
    """Hands the message to the first node of ``target_chain_id`` (or, with
    ``forward_to_default``, of the originator's profile's default chain, falling back to the
    target). What the target chain's output nodes emit leaves this node under their names, so
    its relations are whatever those names are."""

    type = INPUT_NODE
    name = "rule chain"
    component = "FLOW"
    relations: ClassVar[tuple[str, ...]] = ()
    default_config: ClassVar[dict[str, Any]] = {"ruleChainId": None, "forwardMsgToDefaultRuleChain": False}
    flow: ClassVar[str] = "input"

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        raw = config.get("ruleChainId")
        if raw is None or raw == "":
            raise NodeConfigError("Rule chain must be set!")
        if isinstance(raw, dict):  # {"entityType": "RULE_CHAIN", "id": ...}, as some clients write ids
            raw = raw.get("id")
        try:
            self.target_chain_id = uuid.UUID(str(raw))
        except ValueError:
            raise NodeConfigError(f"Failed to parse rule chain id: {raw}") from None
        self.forward_to_default: bool = optional(config, "forwardMsgToDefaultRuleChain", bool, False)

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        raise RuntimeError("the engine forwards messages at a rule chain input node; it does not call process")


@node
class RuleChainOutputNode(RuleNode):
    """Ends the message's way in this chain: the calling chain's input node emits it under this
    node's name. A chain without a caller (the root chain) drops it."""

    type = OUTPUT_NODE
    name = "output"
    component = "FLOW"
    relations: ClassVar[tuple[str, ...]] = ()
    default_config: ClassVar[dict[str, Any]] = {}
    flow: ClassVar[str] = "output"

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        raise RuntimeError("the engine returns messages at a rule chain output node; it does not call process")
