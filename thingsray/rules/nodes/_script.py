"""What script nodes share: compiling the configured script once, and handing messages to it."""

from __future__ import annotations

from typing import Any

from thingsray.kv import JsonValue, to_json_value
from thingsray.rules.msg import TbMsg
from thingsray.rules.node import NodeConfigError, NodeInit
from thingsray.rules.script import Script, ScriptError

SCRIPT_ARGS = ("msg", "metadata", "msgType")


def compile_script(config: dict[str, Any], init: NodeInit, *, js_key: str = "jsScript",
                   tbel_key: str = "tbelScript", arg_names: tuple[str, ...] = SCRIPT_ARGS) -> Script:
    """The node's script in its ``scriptLang`` (JS when absent, as in exports that predate TBEL)."""
    lang = config.get("scriptLang") or "JS"
    if lang not in ("JS", "TBEL", "MVEL"):
        raise NodeConfigError(f"'scriptLang' must be JS or TBEL, got {lang!r}")
    key = js_key if lang == "JS" else tbel_key
    source = config.get(key)
    if not isinstance(source, str) or not source.strip():
        raise NodeConfigError(f"'{key}' must hold the {lang} script")
    try:
        return init.scripts.compile(lang, source, arg_names)
    except ScriptError as exc:
        raise NodeConfigError(f"{key}: {exc}") from None


def plain(value: Any) -> Any:
    """A message body as scripts see it: stored JSON values parsed, everything else as is."""
    if isinstance(value, JsonValue):
        return to_json_value(value)
    if isinstance(value, dict):
        if any(isinstance(v, JsonValue | dict | list) for v in value.values()):
            return {k: plain(v) for k, v in value.items()}
        return value
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def script_args(msg: TbMsg) -> tuple[Any, dict[str, str], str]:
    return plain(msg.data), dict(msg.metadata), msg.type


def metadata_of(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object, got {type(value).__name__}")
    return {str(k): v if isinstance(v, str) else _text(v) for k, v in value.items() if v is not None}


def _text(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def unbind(result: Any, msg: TbMsg) -> TbMsg:
    """A transform script's ``{msg, metadata, msgType}``: each part absent keeps the original's."""
    if not isinstance(result, dict):
        raise ValueError(f"Wrong result type: {type(result).__name__}; a transform script returns "
                         "{msg: ..., metadata: ..., msgType: ...}")
    data = result["msg"] if "msg" in result else msg.data
    metadata = metadata_of(result["metadata"], "metadata") if "metadata" in result else dict(msg.metadata)
    msg_type = result.get("msgType") or msg.type
    if not isinstance(msg_type, str):
        raise ValueError(f"msgType must be a string, got {msg_type!r}")
    return msg.copy(data=data, metadata=metadata, type=msg_type)
