"""Transformation nodes that change a message's originator, its keys, or turn it into an email."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.msg import EntityId
from thingsray.rules.node import NodeConfigError, NodeInit, Outputs, RuleNode, node, optional, str_list, success
from thingsray.rules.nodes._entities import BY_NAME, find_by_name, first_related, ref_id, relations_query, tenant_entity
from thingsray.rules.pattern import process_pattern

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg

PREFIX = "org.thingsboard.rule.engine.transform."
SOURCES = ("CUSTOMER", "TENANT", "RELATED", "ALARM_ORIGINATOR", "ENTITY")
NAMED_TYPES = ("DEVICE", "ASSET", "ENTITY_VIEW", "EDGE", "USER")
"""Entity types ThingsBoard lets 'Entity by name pattern' name (EntitiesByNameAndTypeLoader)."""
BY_PATTERN = "'Entity by name pattern'"


def msg_source(config: dict[str, Any], key: str) -> str:
    """DATA or METADATA in ``key``; older configurations said ``fromMetadata`` true or false."""
    value = config.get(key)
    if value is None and config.get("fromMetadata") is not None:
        old = config["fromMetadata"]
        if old in (True, "true"):
            return "METADATA"
        if old in (False, "false"):
            return "DATA"
        raise NodeConfigError(f"'fromMetadata' has unexpected value: {old!r}. Allowed values: true or false!")
    if value is None:
        name = key[0].upper() + key[1:]
        raise NodeConfigError(f"{name} can't be null! Allowed values: [DATA, METADATA]")
    if value not in ("DATA", "METADATA"):
        raise NodeConfigError(f"'{key}' must be DATA or METADATA, got {value!r}")
    return str(value)


@node
class ChangeOriginatorNode(RuleNode):
    """The message goes on from another originator: the originator's customer, the tenant, the
    first related entity, the alarm's originator, or the tenant's entity named by a pattern. No
    such entity (or one of another tenant) is a failure."""

    type = PREFIX + "TbChangeOriginatorNode"
    name = "change originator"
    component = "TRANSFORMATION"
    default_config: ClassVar[dict[str, Any]] = {
        "originatorSource": "CUSTOMER", "entityType": None, "entityNamePattern": None,
        "relationsQuery": {"direction": "FROM", "maxLevel": 1, "fetchLastLevelOnly": False,
                           "filters": [{"relationType": "Contains", "entityTypes": []}]}}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        source = config.get("originatorSource")
        if source is None:
            raise NodeConfigError("Originator source should be specified.")
        if source not in SOURCES:
            raise NodeConfigError(f"'originatorSource' must be one of {', '.join(SOURCES)}, got {source!r}")
        self.source = str(source)
        if source == "RELATED":
            if config.get("relationsQuery") is None:
                raise NodeConfigError("Relations query should be specified if 'Related entity' source is selected.")
            self.query = relations_query(config)
        if source == "ENTITY":
            entity_type = config.get("entityType")
            if entity_type is None:
                raise NodeConfigError(f"Entity type should be specified if {BY_PATTERN} source is selected.")
            if not config.get("entityNamePattern"):
                raise NodeConfigError(f"Name pattern should be specified if {BY_PATTERN} source is selected.")
            if entity_type not in NAMED_TYPES:
                raise NodeConfigError(f"Unexpected entity type {entity_type}")
            self.entity_type = str(entity_type)
            self.name_pattern = str(config["entityNamePattern"])

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        new = await self._new_originator(ctx, msg)
        if new is None:
            raise LookupError("Failed to find new originator!")
        return success(msg.copy(originator=new))

    async def _new_originator(self, ctx: RuleContext, msg: TbMsg) -> EntityId | None:
        original = msg.originator
        match self.source:
            case "TENANT":
                return EntityId("TENANT", ctx.tenant_id)
            case "CUSTOMER":
                if original.entity_type == "CUSTOMER":
                    return original
                found = await tenant_entity(ctx, original)
                customer = None if found is None else ref_id(found.get("customerId"))
                return None if customer is None else EntityId("CUSTOMER", customer)
            case "RELATED":
                related = await first_related(ctx, original, self.query)
                return None if related is None else related[0]
            case "ALARM_ORIGINATOR":
                if original.entity_type != "ALARM":
                    raise ValueError(f"Unexpected original EntityType {original.entity_type}")
                alarm = await tenant_entity(ctx, original)
                return None if alarm is None else EntityId.parse(alarm["originator"])
            case _:
                name = process_pattern(self.name_pattern, msg)
                found_id = await find_by_name(ctx, self.entity_type, name) if self.entity_type in BY_NAME else None
                if found_id is None:
                    raise LookupError(f"Failed to found {self.entity_type}  entity by name: '{name}'!")
                return found_id


@node
class RenameKeysNode(RuleNode):
    """Renames keys of the body (when it is a JSON object) or of the metadata; keys that are not
    there are ignored."""

    type = PREFIX + "TbRenameKeysNode"
    name = "rename keys"
    component = "TRANSFORMATION"
    default_config: ClassVar[dict[str, Any]] = {"renameIn": "DATA", "renameKeysMapping": {"temp": "temperature"}}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.rename_in = msg_source(config, "renameIn")
        mapping = config.get("renameKeysMapping")
        if mapping is not None and (not isinstance(mapping, dict)
                                    or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())):
            raise NodeConfigError(f"'renameKeysMapping' must map current key names to new ones, got {mapping!r}")
        if not mapping:
            raise NodeConfigError("At least one mapping entry should be specified!")
        self.mapping: dict[str, str] = mapping

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        source = msg.metadata if self.rename_in == "METADATA" else msg.data
        if not isinstance(source, dict) or not any(k in source for k in self.mapping):
            return success(msg)
        renamed = dict(source)
        for current, new in self.mapping.items():
            if current in renamed and current != new:
                renamed[new] = renamed.pop(current)
        if self.rename_in == "METADATA":
            return success(msg.copy(metadata=renamed))
        return success(msg.copy(data=renamed))


@node
class DeleteKeysNode(RuleNode):
    """Deletes the keys of the body (when it is a JSON object) or of the metadata that match one of
    ``keys`` entirely, each a name or a Java-style regular expression."""

    type = PREFIX + "TbDeleteKeysNode"
    name = "delete key-value pairs"
    component = "TRANSFORMATION"
    default_config: ClassVar[dict[str, Any]] = {"deleteFrom": "DATA", "keys": []}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.delete_from = msg_source(config, "deleteFrom")
        self.patterns = []
        for key in str_list(config, "keys"):
            try:
                self.patterns.append(re.compile(key))
            except re.error as exc:
                raise NodeConfigError(f"'keys': {key!r} is not a valid regular expression: {exc}") from None

    def _matches(self, key: str) -> bool:
        return any(p.fullmatch(key) for p in self.patterns)

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        source = msg.metadata if self.delete_from == "METADATA" else msg.data
        if not isinstance(source, dict):
            return success(msg)
        kept = {k: v for k, v in source.items() if not self._matches(k)}
        if len(kept) == len(source):
            return success(msg)
        if self.delete_from == "METADATA":
            return success(msg.copy(metadata=kept))
        return success(msg.copy(data=kept))


SEND_EMAIL = "SEND_EMAIL"
BODY_TYPES = ("false", "true", "dynamic")


@node
class MsgToEmailNode(RuleNode):
    """Turns the message into ThingsBoard's email (``SEND_EMAIL``, body ``{from, to, cc, bcc,
    subject, body, images, html}``) from templates that take ``${metadataKey}`` and
    ``$[dataKey]``; inline images come from the ``images`` metadata value (a JSON object)."""

    type = "org.thingsboard.rule.engine.mail.TbMsgToEmailNode"
    name = "to email"
    component = "TRANSFORMATION"
    default_config: ClassVar[dict[str, Any]] = {
        "fromTemplate": "info@testmail.org", "toTemplate": "${userEmail}", "ccTemplate": None, "bccTemplate": None,
        "subjectTemplate": "Device ${deviceType} temperature high",
        "bodyTemplate": "Device ${deviceName} has high temperature $[temperature]", "mailBodyType": "false",
        "isHtmlTemplate": None}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.templates = {part: optional(config, f"{part}Template", str, "")
                          for part in ("from", "to", "cc", "bcc", "subject", "body")}
        body_type = config.get("mailBodyType")
        if body_type is None:  # configurations older than mailBodyType said isHtml
            body_type = "true" if optional(config, "isHtml", bool, False) else "false"
        if isinstance(body_type, bool):
            body_type = "true" if body_type else "false"
        if body_type not in BODY_TYPES:
            raise NodeConfigError(f"'mailBodyType' must be one of {', '.join(BODY_TYPES)}, got {body_type!r}")
        self.body_type = body_type
        self.html_template = optional(config, "isHtmlTemplate", str, "")
        if body_type == "dynamic" and not self.html_template:
            raise NodeConfigError("'isHtmlTemplate' must be set when 'mailBodyType' is dynamic")

    def _fill(self, template: str, msg: TbMsg) -> str | None:
        return process_pattern(template, msg) if template else None

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        html = self._fill(self.html_template, msg) if self.body_type == "dynamic" else self.body_type
        images = None
        if msg.metadata.get("images"):
            images = json.loads(msg.metadata["images"])
            if not isinstance(images, dict):
                raise ValueError("metadata 'images' must be a JSON object of image name to data")
        email = {part: self._fill(template, msg) for part, template in self.templates.items()}
        email["images"] = images
        email["html"] = (html or "").lower() == "true"
        return success(msg.copy(type=SEND_EMAIL, data=email, metadata=dict(msg.metadata)))
