"""Script transformation: a script returns the new message (or several)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.node import NodeInit, Outputs, RuleNode, node
from thingsray.rules.nodes._script import compile_script, script_args, unbind

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg

DEFAULT_SCRIPT = "return {msg: msg, metadata: metadata, msgType: msgType};"


@node
class TransformMsgNode(RuleNode):
    type = "org.thingsboard.rule.engine.transform.TbTransformMsgNode"
    name = "script"
    component = "TRANSFORMATION"
    default_config: ClassVar[dict[str, Any]] = {"scriptLang": "TBEL", "jsScript": DEFAULT_SCRIPT,
                                                "tbelScript": DEFAULT_SCRIPT}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.script = compile_script(config, init)

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        result = await self.script.invoke(*script_args(msg))
        if isinstance(result, list):
            if not result:
                return []  # an empty array drops the message, as in ThingsBoard
            return [("Success", unbind(item, msg)) for item in result]
        return [("Success", unbind(result, msg))]
