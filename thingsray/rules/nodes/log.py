"""The log node: writes what its script makes of a message to the platform's log, at INFO."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.node import NodeInit, Outputs, RuleNode, node, success
from thingsray.rules.nodes._script import compile_script, script_args

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg

log = logging.getLogger("thingsray.rules.log")

DEFAULT_SCRIPT = ("return '\\nIncoming message:\\n' + JSON.stringify(msg) + '\\nIncoming metadata:\\n' "
                  "+ JSON.stringify(metadata);")


@node
class LogNode(RuleNode):
    type = "org.thingsboard.rule.engine.action.TbLogNode"
    name = "log"
    component = "ACTION"
    default_config: ClassVar[dict[str, Any]] = {"scriptLang": "TBEL", "jsScript": DEFAULT_SCRIPT,
                                                "tbelScript": DEFAULT_SCRIPT}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.script = compile_script(config, init, js_key="jsScript", tbel_key="tbelScript")

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if log.isEnabledFor(logging.INFO):  # the script only makes the text; nobody would read it
            text = await self.script.invoke(*script_args(msg))
            log.info("%s", text if isinstance(text, str) else repr(text))
        return success(msg)
