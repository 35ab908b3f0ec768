"""Enrichment nodes: add what is stored about the originator, its customer, its tenant or a related
entity to the message's metadata or body (``fetchTo``), as ThingsBoard's metadata nodes do.

Values go to the metadata as text (ThingsBoard's ``getValueAsString``) and to the body as JSON
values; a body that is not a JSON object cannot take them ("Message body is not an object!").
Every entity other than the originator is read only when it is the message tenant's."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.kv import JsonValue, Value
from thingsray.rules.msg import EntityId, TbMsg
from thingsray.rules.node import (
    FAILURE,
    NodeConfigError,
    NodeInit,
    Outputs,
    RuleNode,
    node,
    optional,
    str_list,
    success,
)
from thingsray.rules.nodes._entities import (
    NORMAL_NAMES,
    entity_fields,
    field_value,
    first_related,
    kv_json,
    kv_text,
    ref_id,
    relations_query,
    tenant_entity,
)
from thingsray.rules.pattern import process_pattern
from thingsray.storage.timeseries import Aggregation, HistoryQuery, TimeseriesRepository

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext

PREFIX = "org.thingsboard.rule.engine.metadata."
FETCH_TO = ("DATA", "METADATA")
LATEST_TS = "LATEST_TS"
SERVER_SCOPE = "SERVER_SCOPE"


def fetch_to(config: dict[str, Any], legacy: str | None = None, if_true: str = "DATA", if_false: str = "METADATA",
             *, absent: str | None = None) -> str:
    """``fetchTo``; configurations from before it had a boolean ``legacy`` key instead (ThingsBoard's
    version 0 upgrade), or nothing, which means ``absent`` when that is given."""
    value = config.get("fetchTo")
    if value is None and legacy is not None and config.get(legacy) is not None:
        old = config[legacy]
        if old in (True, "true"):
            return if_true
        if old in (False, "false"):
            return if_false
        raise NodeConfigError(f"'{legacy}' has unexpected value: {old!r}. Allowed values: true or false!")
    if value is None:
        if absent is not None:
            return absent
        raise NodeConfigError("FetchTo option can't be null! Allowed values: [DATA, METADATA]")
    if value not in FETCH_TO:
        raise NodeConfigError(f"'fetchTo' must be DATA or METADATA, got {value!r}")
    return str(value)


def failure(msg: TbMsg, error: BaseException) -> Outputs:
    """Failure with a message of the node's own making (ThingsBoard's ``tellFailure(outMsg, e)``)."""
    return [(FAILURE, msg.with_metadata(error=f"{type(error).__name__}: {error}"))]


def mapping(config: dict[str, Any], key: str = "dataMapping", legacy: str | None = None) -> dict[str, str]:
    raw = config.get(key)
    if raw is None and legacy is not None:
        raw = config.get(legacy)
    if raw is not None and (not isinstance(raw, dict)
                            or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items())):
        raise NodeConfigError(f"'{key}' must map source keys to target keys (strings), got {raw!r}")
    if not raw:
        raise NodeConfigError("At least one mapping entry should be specified!")
    return dict(raw)


class Enrichment(RuleNode):
    """Puts ``(key, value)`` pairs where ``fetchTo`` says."""

    component = "ENRICHMENT"
    fetch_to: str

    def check_body(self, msg: TbMsg) -> None:
        """Refuse a body that cannot take values, before reading anything (as ThingsBoard)."""
        if self.fetch_to == "DATA" and not isinstance(msg.data, dict):
            raise ValueError("Message body is not an object!")

    def put(self, msg: TbMsg, entries: list[tuple[str, Value]]) -> TbMsg:
        if self.fetch_to == "DATA":
            return msg.copy(data={**msg.data, **{key: kv_json(value) for key, value in entries}})
        return msg.copy(metadata={**msg.metadata, **{key: kv_text(value) for key, value in entries}})


# --- originator attributes ----------------------------------------------------------------------
@node
class GetAttributesNode(Enrichment):
    """Client (``cs_``), shared (``shared_``) and server (``ss_``) attributes and latest time series
    (no prefix) of the originator. With ``tellFailureIfAbsent`` a key that has no value sends the
    message, enriched with what was found, to Failure naming the missing keys."""

    type = PREFIX + "TbGetAttributesNode"
    name = "originator attributes"
    default_config: ClassVar[dict[str, Any]] = {
        "tellFailureIfAbsent": True, "fetchTo": "METADATA", "clientAttributeNames": [],
        "sharedAttributeNames": [], "serverAttributeNames": [], "latestTsKeyNames": [],
        "getLatestValueWithTs": False}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.scopes = (("CLIENT_SCOPE", "cs_", str_list(config, "clientAttributeNames")),
                       ("SHARED_SCOPE", "shared_", str_list(config, "sharedAttributeNames")),
                       ("SERVER_SCOPE", "ss_", str_list(config, "serverAttributeNames")))
        self.latest_keys = str_list(config, "latestTsKeyNames")
        self.tell_failure = optional(config, "tellFailureIfAbsent", bool, True)
        self.with_ts = optional(config, "getLatestValueWithTs", bool, False)
        self.fetch_to = fetch_to(config, "fetchToData", absent="METADATA")

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        self.check_body(msg)
        entity = msg.originator
        reads = [self._attributes(ctx, entity, scope, prefix, _keys(names, msg))
                 for scope, prefix, names in self.scopes]
        reads.append(self._latest(ctx, entity, _keys(self.latest_keys, msg)))
        entries: list[tuple[str, Value]] = []
        missing: list[tuple[str, list[str]]] = []
        for found, scope, absent in await asyncio.gather(*reads):
            entries.extend(found)
            if absent and self.tell_failure:
                missing.append((scope, absent))
        out = self.put(msg, entries)
        if missing:
            lines = "".join(f"\t[{scope}]:[{', '.join(keys)}]\n" for scope, keys in missing)
            return failure(out, RuntimeError("The following attribute/telemetry keys is not present in the DB: \n"
                                             + lines))
        return success(out)

    async def _attributes(self, ctx: RuleContext, entity: EntityId, scope: str, prefix: str, keys: list[str]
                          ) -> tuple[list[tuple[str, Value]], str, list[str]]:
        if not keys:
            return [], scope, []
        found = await ctx.get_attributes(entity, scope, keys)
        return [(prefix + k, found[k]) for k in keys if k in found], scope, [k for k in keys if k not in found]

    async def _latest(self, ctx: RuleContext, entity: EntityId, keys: list[str]
                      ) -> tuple[list[tuple[str, Value]], str, list[str]]:
        if not keys:
            return [], LATEST_TS, []
        found = await ctx.get_latest(entity, keys)
        entries: list[tuple[str, Value]] = []
        for key in keys:
            if key in found:
                ts, value = found[key]
                entries.append((key, JsonValue.of({"ts": ts, "value": kv_json(value)}) if self.with_ts else value))
        return entries, LATEST_TS, [k for k in keys if k not in found]


def _keys(patterns: list[str], msg: TbMsg) -> list[str]:
    return list(dict.fromkeys(process_pattern(p, msg) for p in patterns))


# --- originator telemetry -----------------------------------------------------------------------
TIME_UNITS = {"NANOSECONDS": (1, 1_000_000), "MICROSECONDS": (1, 1000), "MILLISECONDS": (1, 1),
              "SECONDS": (1000, 1), "MINUTES": (60_000, 1), "HOURS": (3_600_000, 1), "DAYS": (86_400_000, 1)}
"""Java's TimeUnit names as (multiplier, divisor) to milliseconds."""
FETCH_MODES = ("FIRST", "LAST", "ALL")
MAX_FETCH_SIZE = 1000


@node
class GetTelemetryNode(Enrichment):
    """Time series of the originator over an interval ending before now (or given by the
    message): the FIRST or LAST value of each key, or ALL of them (up to ``limit``, or aggregated
    over the whole interval) as a JSON array of ``{"ts", "value"}``. Always into the metadata."""

    type = PREFIX + "TbGetTelemetryNode"
    name = "originator telemetry"
    default_config: ClassVar[dict[str, Any]] = {
        "latestTsKeyNames": [], "fetchMode": "FIRST", "startIntervalTimeUnit": "MINUTES", "startInterval": 2,
        "endIntervalTimeUnit": "MINUTES", "endInterval": 1, "useMetadataIntervalPatterns": False,
        "startIntervalPattern": "", "endIntervalPattern": "", "orderBy": "ASC", "aggregation": "NONE",
        "limit": MAX_FETCH_SIZE}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.fetch_to = "METADATA"
        self.keys = str_list(config, "latestTsKeyNames")
        self.mode = config.get("fetchMode")
        if self.mode not in FETCH_MODES:
            raise NodeConfigError(f"'fetchMode' must be one of FIRST, LAST, ALL, got {self.mode!r}")
        order = config.get("orderBy") or "ASC"
        if order not in ("ASC", "DESC"):
            raise NodeConfigError(f"'orderBy' must be ASC or DESC, got {order!r}")
        aggregation = config.get("aggregation") or "NONE"
        if aggregation not in Aggregation.__members__:
            raise NodeConfigError(f"'aggregation' must be one of {', '.join(Aggregation.__members__)}, "
                                  f"got {aggregation!r}")
        limit = optional(config, "limit", int, 0)
        if limit < 0:
            raise NodeConfigError(f"'limit' must not be negative, got {limit}")
        if self.mode == "ALL":
            self.limit = limit or MAX_FETCH_SIZE
            self.descending = order == "DESC"
            self.aggregation = Aggregation(aggregation)
        else:
            self.limit = 1
            self.descending = self.mode == "LAST"
            self.aggregation = Aggregation.NONE
        self.use_patterns = optional(config, "useMetadataIntervalPatterns", bool, False)
        if self.use_patterns:
            self.start_pattern = optional(config, "startIntervalPattern", str, "")
            self.end_pattern = optional(config, "endIntervalPattern", str, "")
        else:
            self.start_ms = _interval_ms(config, "startInterval", "startIntervalTimeUnit")
            self.end_ms = _interval_ms(config, "endInterval", "endIntervalTimeUnit")

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if not self.keys:
            raise ValueError("Telemetry is not selected!")
        if self.use_patterns:
            start, end = _pattern_ts(msg, self.start_pattern), _pattern_ts(msg, self.end_pattern)
        else:
            now = int(time.time() * 1000)
            start, end = now - self.start_ms, now - self.end_ms
        keys = _keys(self.keys, msg)
        interval = 0
        if self.aggregation is not Aggregation.NONE:
            interval = end - start
            if interval < 1:
                raise ValueError(f"The fetch interval must end after it starts: start {start}, end {end}")
        points = await TimeseriesRepository(ctx.db).history(msg.originator.id, HistoryQuery(
            tuple(keys), start, end, interval=interval, limit=self.limit, agg=self.aggregation,
            descending=self.descending))
        found: dict[str, Any] = {}
        for point in points:
            if point.value is None:
                continue
            if self.mode == "ALL":
                found.setdefault(point.key, []).append({"ts": point.ts, "value": kv_json(point.value)})
            else:
                found.setdefault(point.key, kv_text(point.value))
        metadata = dict(msg.metadata)
        for key in keys:
            if key in found:
                value = found[key]
                metadata[key] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        return success(msg.copy(metadata=metadata))


def _interval_ms(config: dict[str, Any], key: str, unit_key: str) -> int:
    amount = optional(config, key, int, 0)
    unit = config.get(unit_key) or "MINUTES"
    if unit not in TIME_UNITS:
        raise NodeConfigError(f"'{unit_key}' must be one of {', '.join(TIME_UNITS)}, got {unit!r}")
    multiplier, divisor = TIME_UNITS[unit]
    return int(amount * multiplier / divisor)


def _pattern_ts(msg: TbMsg, pattern: str) -> int:
    value = process_pattern(pattern, msg)
    shown = "".join(c for c in pattern if c not in "$[{}]")
    if value == pattern:
        raise ValueError(f"Message value: '{shown}' is undefined")
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"Message value: '{shown}' has invalid format") from None


# --- related entity data, customer attributes ---------------------------------------------------
DATA_TO_FETCH = ("ATTRIBUTES", "LATEST_TELEMETRY", "FIELDS")


class EntityData(Enrichment):
    """Server attributes, latest time series or fields (``dataToFetch``) of one entity the message
    leads to, each under the target key ``dataMapping`` gives its source key (both may hold
    patterns; a field's source is taken as written)."""

    fields_allowed: ClassVar[bool] = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        legacy = config.get("fetchTo") is None and ("attrMapping" in config or "telemetry" in config)
        self.mapping = mapping(config, legacy="attrMapping")
        what = config.get("dataToFetch")
        if what is None and config.get("telemetry") is not None:
            what = "LATEST_TELEMETRY" if config["telemetry"] in (True, "true") else "ATTRIBUTES"
        if what is None and self.fields_allowed:
            raise NodeConfigError("DataToFetch property cannot be null! Supported values are: "
                                  "[ATTRIBUTES, LATEST_TELEMETRY, FIELDS]")
        if what not in DATA_TO_FETCH or (what == "FIELDS" and not self.fields_allowed):
            if self.fields_allowed:
                raise NodeConfigError(f"'dataToFetch' must be one of {', '.join(DATA_TO_FETCH)}, got {what!r}")
            shown = "null" if what is None else what
            raise NodeConfigError(f"DataToFetch property has invalid value: {shown}. "
                                  "Only ATTRIBUTES and LATEST_TELEMETRY values supported!")
        self.data_to_fetch = str(what)
        self.fetch_to = "METADATA" if legacy else fetch_to(config)

    async def find(self, ctx: RuleContext, msg: TbMsg) -> tuple[EntityId, dict[str, Any] | None]:
        """The entity to read (and its fields when they were read to find it); raises when none."""
        raise NotImplementedError

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        self.check_body(msg)
        entity, fields = await self.find(ctx, msg)
        entries: list[tuple[str, Value]] = []
        if self.data_to_fetch == "FIELDS":
            if fields is None:
                fields = await tenant_entity(ctx, entity)
                if fields is None:
                    raise LookupError("Entity not found!")
            flat = entity_fields(fields)
            for source, target in self.mapping.items():
                value = field_value(flat, source, True)
                if value is not None:
                    entries.append((process_pattern(target, msg), value))
            return success(self.put(msg, entries))
        targets = {process_pattern(s, msg): process_pattern(t, msg) for s, t in self.mapping.items()}
        if self.data_to_fetch == "ATTRIBUTES":
            attributes = await ctx.get_attributes(entity, SERVER_SCOPE, list(targets))
            entries = [(targets[k], attributes[k]) for k in targets if k in attributes]
        else:
            latest = await ctx.get_latest(entity, list(targets))
            entries = [(targets[k], latest[k][1]) for k in targets if k in latest]
        return success(self.put(msg, entries))


@node
class GetRelatedAttributeNode(EntityData):
    """From the first entity the relations query reaches from the originator."""

    type = PREFIX + "TbGetRelatedAttributeNode"
    name = "related entity data"
    default_config: ClassVar[dict[str, Any]] = {
        "relationsQuery": {"direction": "FROM", "maxLevel": 1, "fetchLastLevelOnly": False,
                           "filters": [{"relationType": "Contains", "entityTypes": []}]},
        "dataToFetch": "ATTRIBUTES", "dataMapping": {"serialNumber": "sn"}, "fetchTo": "METADATA"}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.query = relations_query(config)

    async def find(self, ctx: RuleContext, msg: TbMsg) -> tuple[EntityId, dict[str, Any] | None]:
        found = await first_related(ctx, msg.originator, self.query)
        if found is None:
            raise LookupError("Failed to find related entity to message originator using relation query "
                              "specified in the configuration!")
        return found


@node
class GetCustomerAttributeNode(EntityData):
    """From the originator's customer (the originator itself when it is a customer)."""

    type = PREFIX + "TbGetCustomerAttributeNode"
    name = "customer attributes"
    fields_allowed = False
    default_config: ClassVar[dict[str, Any]] = {"dataToFetch": "ATTRIBUTES",
                                                "dataMapping": {"alarmThreshold": "threshold"}, "fetchTo": "METADATA"}

    async def find(self, ctx: RuleContext, msg: TbMsg) -> tuple[EntityId, dict[str, Any] | None]:
        if msg.originator.entity_type == "CUSTOMER":
            return msg.originator, None
        originator = await tenant_entity(ctx, msg.originator)
        if originator is None:
            raise LookupError("Originator not found")
        customer = ref_id(originator.get("customerId"))
        if customer is None:
            raise ValueError("Originator is not assigned to any customer")
        return EntityId("CUSTOMER", customer), None


# --- customer and tenant details ----------------------------------------------------------------
DETAILS = {"ID": "id", "TITLE": "title", "COUNTRY": "country", "CITY": "city", "STATE": "state", "ZIP": "zip",
           "ADDRESS": "address", "ADDRESS2": "address2", "PHONE": "phone", "EMAIL": "email",
           "ADDITIONAL_INFO": "additionalInfo"}
"""ThingsBoard's ContactBasedEntityDetails and the name each takes in the message (after the prefix)."""


class EntityDetails(Enrichment):
    """Contact details (``detailsList``) of a customer or tenant, each as ``<prefix><detail>``;
    details the entity does not have are left out."""

    prefix: ClassVar[str]

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        details = config.get("detailsList")
        if details is not None and (not isinstance(details, list) or any(d not in DETAILS for d in details)):
            raise NodeConfigError(f"'detailsList' must be a list of {', '.join(DETAILS)}, got {details!r}")
        if not details:
            raise NodeConfigError("At least one entity detail should be selected!")
        self.details: list[str] = list(dict.fromkeys(details))
        self.fetch_to = fetch_to(config, "addToMetadata", if_true="METADATA", if_false="DATA")

    def entries(self, entity: dict[str, Any]) -> list[tuple[str, Value]]:
        out: list[tuple[str, Value]] = []
        for detail in self.details:
            value: Any
            if detail == "ID":
                value = ref_id(entity.get("id"))
            elif detail == "TITLE":
                value = entity.get("title", entity.get("name"))
            elif detail == "ADDITIONAL_INFO":
                info = entity.get("additionalInfo")
                value = info.get("description") if isinstance(info, dict) else None
                if isinstance(value, dict | list):
                    value = json.dumps(value, separators=(",", ":"))
            else:
                value = entity.get(DETAILS[detail])
            if value is not None:
                out.append((self.prefix + DETAILS[detail], kv_text(value) if isinstance(value, bool) else str(value)))
        return out


CUSTOMER_OWNED = ("DEVICE", "ASSET", "ENTITY_VIEW", "USER", "EDGE")


@node
class GetCustomerDetailsNode(EntityDetails):
    """Details of the originator's customer; an originator or customer that no longer exists
    leaves the message as it was, an originator of no customer is a failure."""

    type = PREFIX + "TbGetCustomerDetailsNode"
    name = "customer details"
    prefix = "customer_"
    default_config: ClassVar[dict[str, Any]] = {"detailsList": [], "fetchTo": "DATA"}

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        self.check_body(msg)
        kind = msg.originator.entity_type
        if kind not in CUSTOMER_OWNED:
            raise LookupError(f"Entity with entityType '{kind}' is not supported.")
        originator = await tenant_entity(ctx, msg.originator)
        if originator is None:
            return success(msg)
        customer_id = ref_id(originator.get("customerId"))
        if customer_id is None:
            label = NORMAL_NAMES.get(kind, kind)
            name = originator.get("name")
            if name is not None:
                raise RuntimeError(f"{label} with name '{name}' is not assigned to Customer!")
            raise RuntimeError(f"{label} with id '{msg.originator.id}' is not assigned to Customer!")
        customer = await ctx.get_entity(EntityId("CUSTOMER", customer_id))
        if customer is None:
            return success(msg)
        return success(self.put(msg, self.entries(customer)))


@node
class GetTenantDetailsNode(EntityDetails):
    """Details of the message's tenant."""

    type = PREFIX + "TbGetTenantDetailsNode"
    name = "tenant details"
    prefix = "tenant_"
    default_config: ClassVar[dict[str, Any]] = {"detailsList": [], "fetchTo": "DATA"}

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        self.check_body(msg)
        tenant = await ctx.get_entity(EntityId("TENANT", ctx.tenant_id))
        if tenant is None:
            return success(msg)
        return success(self.put(msg, self.entries(tenant)))


# --- originator fields --------------------------------------------------------------------------
FIELDS_OF = ("TENANT", "CUSTOMER", "USER", "ASSET", "DEVICE", "ALARM", "RULE_CHAIN", "ENTITY_VIEW", "EDGE")
"""Originator types ThingsBoard's EntitiesFieldsAsyncLoader knows."""


@node
class GetOriginatorFieldsNode(Enrichment):
    """Fields of the originator (name, type, label, createdTime, ... a dotted path reaches into
    objects such as additionalInfo) under the target keys of ``dataMapping``. A field the
    originator does not have is left out; with ``ignoreNullStrings`` so is an empty one."""

    type = PREFIX + "TbGetOriginatorFieldsNode"
    name = "originator fields"
    default_config: ClassVar[dict[str, Any]] = {"dataMapping": {"name": "originatorName", "type": "originatorType"},
                                                "ignoreNullStrings": False, "fetchTo": "METADATA"}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        legacy = config.get("fetchTo") is None and "fieldsMapping" in config
        self.mapping = mapping(config, legacy="fieldsMapping")
        self.ignore_null = optional(config, "ignoreNullStrings", bool, False)
        self.fetch_to = "METADATA" if legacy else fetch_to(config)

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        self.check_body(msg)
        if msg.originator.entity_type not in FIELDS_OF:
            raise ValueError(f"Unexpected originator EntityType: {msg.originator.entity_type}")
        found = await tenant_entity(ctx, msg.originator)
        if found is None:
            raise LookupError("Entity not found!")
        fields = entity_fields(found)
        entries: list[tuple[str, Value]] = []
        for source, target in self.mapping.items():
            value = field_value(fields, source, self.ignore_null)
            if value is not None:
                entries.append((process_pattern(target, msg), value))
        return success(self.put(msg, entries))
