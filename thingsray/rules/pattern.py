"""ThingsBoard's configuration templates (TbNodeUtils.processPattern): ``${key}`` takes a metadata
value, ``$[path.to.key]`` a value of the message body, ``${*}`` and ``$[*]`` the whole metadata or
body as JSON. A placeholder with nothing to take stays as written, as in ThingsBoard."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from thingsray.kv import JsonValue, to_json_value

if TYPE_CHECKING:
    from thingsray.rules.msg import TbMsg

DATA_PLACEHOLDER = re.compile(r"\$\[(.*?)]")
ALL_DATA = "$[*]"
ALL_METADATA = "${*}"


def json_text(value: Any) -> str:
    """Compact JSON, as Jackson writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def plain_data(value: Any) -> Any:
    """A message body with stored JSON values (``JsonValue``) parsed."""
    if isinstance(value, JsonValue):
        return to_json_value(value)
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    return value


def value_text(value: Any) -> str:
    """A JSON scalar as Jackson's ``asText`` gives it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def process_pattern(pattern: str, msg: TbMsg) -> str:
    """``pattern`` with the message's metadata and body values put in its placeholders."""
    result = process_metadata_pattern(pattern, msg.metadata)
    if "$[" not in result:
        return result
    data = plain_data(msg.data)
    result = result.replace(ALL_DATA, json_text(data))
    if not isinstance(data, dict):
        return result
    for path in set(DATA_PLACEHOLDER.findall(result)):
        node: Any = data
        for key in path.split("."):
            if not key or not isinstance(node, dict) or key not in node:
                node = _MISSING
                break
            node = node[key]
        if node is not _MISSING and not isinstance(node, dict | list):
            result = result.replace(f"$[{path}]", value_text(node))
    return result


def process_metadata_pattern(pattern: str, metadata: dict[str, str]) -> str:
    """Only the ``${key}`` placeholders (ThingsBoard's processPattern over metadata)."""
    if "${" not in pattern:
        return pattern
    result = pattern.replace(ALL_METADATA, json_text(metadata) if metadata else "{}")
    for key, value in metadata.items():
        placeholder = "${" + key + "}"
        if placeholder in result:
            result = result.replace(placeholder, value)
    return result


_MISSING = object()
