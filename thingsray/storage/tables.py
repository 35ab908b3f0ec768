"""Each entity table and the JSON shape ThingsBoard gives it."""

from __future__ import annotations

from thingsray.storage.entities import STANDARD_SORT, EntityTable, Field, Kind

ID = Kind.ID
JSON = Kind.JSON
BOOL = Kind.BOOL
INT = Kind.INT


def _common(entity_type: str) -> tuple[Field, ...]:
    return (Field("id", "id", ID, ref=entity_type, writable=False),
            Field("createdTime", "created_time", INT, writable=False))


def _tenant_owned() -> tuple[Field, ...]:
    return (Field("tenantId", "tenant_id", ID, ref="TENANT", writable=False),)


def _customer_owned() -> tuple[Field, ...]:
    return (Field("customerId", "customer_id", ID, ref="CUSTOMER", null_id=True, writable=False),)


_CONTACT = tuple(Field(n, c) for n, c in (
    ("country", "country"), ("state", "state"), ("city", "city"), ("address", "address"),
    ("address2", "address2"), ("zip", "zip"), ("phone", "phone"), ("email", "email")))

TENANT = EntityTable(
    entity_type="TENANT", table="tenant",
    fields=(*_common("TENANT"), Field("title", "title"), Field("name", "title", writable=False),
            Field("region", "region"), *_CONTACT, Field("additionalInfo", "additional_info", JSON),
            Field("tenantProfileId", "tenant_profile_id", ID, ref="TENANT_PROFILE", writable=False),
            Field("version", "version", INT)),
    search_column="title",
    sort_columns={**STANDARD_SORT, "title": "title", "email": "email", "country": "country",
                  "state": "state", "city": "city", "region": "region"},
    duplicate_message="Tenant with such title already exists!",
)

CUSTOMER = EntityTable(
    entity_type="CUSTOMER", table="customer",
    fields=(*_common("CUSTOMER"), *_tenant_owned(), Field("title", "title"),
            Field("name", "title", writable=False), *_CONTACT,
            Field("additionalInfo", "additional_info", JSON),
            Field("externalId", "external_id", ID, ref="CUSTOMER"), Field("version", "version", INT)),
    search_column="title",
    sort_columns={**STANDARD_SORT, "title": "title", "email": "email", "country": "country",
                  "city": "city"},
    duplicate_message="Customer with such title already exists!",
)

USER = EntityTable(
    entity_type="USER", table="tb_user",
    fields=(*_common("USER"), *_tenant_owned(), *_customer_owned(), Field("email", "email"),
            Field("name", "email", writable=False), Field("authority", "authority"),
            Field("firstName", "first_name"), Field("lastName", "last_name"), Field("phone", "phone"),
            Field("additionalInfo", "additional_info", JSON), Field("version", "version", INT)),
    search_column="email",
    sort_columns={**STANDARD_SORT, "email": "email", "firstName": "first_name", "lastName": "last_name"},
    duplicate_message="User with email already present in database!",
)

RULE_CHAIN = EntityTable(
    entity_type="RULE_CHAIN", table="rule_chain",
    fields=(*_common("RULE_CHAIN"), *_tenant_owned(), Field("name", "name"), Field("type", "type"),
            Field("firstRuleNodeId", "first_rule_node_id", ID, ref="RULE_NODE", writable=False),
            Field("root", "root", BOOL, writable=False), Field("debugMode", "debug_mode", BOOL),
            Field("configuration", "configuration", JSON), Field("additionalInfo", "additional_info", JSON),
            Field("externalId", "external_id", ID, ref="RULE_CHAIN"), Field("version", "version", INT)),
    search_column="name",
    sort_columns={**STANDARD_SORT, "name": "name", "root": "root"},
    duplicate_message="Rule chain with such name already exists!",
)

DEVICE_PROFILE = EntityTable(
    entity_type="DEVICE_PROFILE", table="device_profile",
    fields=(*_common("DEVICE_PROFILE"), *_tenant_owned(), Field("name", "name"),
            Field("description", "description"), Field("image", "image"), Field("type", "type"),
            Field("transportType", "transport_type"), Field("provisionType", "provision_type"),
            Field("default", "is_default", BOOL, writable=False),
            Field("defaultRuleChainId", "default_rule_chain_id", ID, ref="RULE_CHAIN"),
            Field("defaultDashboardId", "default_dashboard_id", ID, ref="DASHBOARD"),
            Field("defaultQueueName", "default_queue_name"),
            Field("provisionDeviceKey", "provision_device_key"),
            Field("firmwareId", "firmware_id", ID, ref="OTA_PACKAGE"),
            Field("softwareId", "software_id", ID, ref="OTA_PACKAGE"),
            Field("profileData", "profile_data", JSON),
            Field("externalId", "external_id", ID, ref="DEVICE_PROFILE"), Field("version", "version", INT)),
    search_column="name",
    sort_columns={**STANDARD_SORT, "name": "name", "type": "type", "transportType": "transport_type",
                  "description": "description", "isDefault": "is_default", "default": "is_default"},
    duplicate_message="Device profile with such name already exists!",
)

DEVICE = EntityTable(
    entity_type="DEVICE", table="device",
    fields=(*_common("DEVICE"), *_tenant_owned(), *_customer_owned(), Field("name", "name"),
            Field("type", "type", writable=False), Field("label", "label"),
            Field("deviceProfileId", "device_profile_id", ID, ref="DEVICE_PROFILE"),
            Field("deviceData", "device_data", JSON),
            Field("firmwareId", "firmware_id", ID, ref="OTA_PACKAGE"),
            Field("softwareId", "software_id", ID, ref="OTA_PACKAGE"),
            Field("additionalInfo", "additional_info", JSON),
            Field("externalId", "external_id", ID, ref="DEVICE"), Field("version", "version", INT)),
    search_column="name",
    sort_columns={**STANDARD_SORT, "name": "name", "type": "type", "label": "label",
                  "deviceProfileName": "type"},
    duplicate_message="Device with such name already exists!",
)

ASSET_PROFILE = EntityTable(
    entity_type="ASSET_PROFILE", table="asset_profile",
    fields=(*_common("ASSET_PROFILE"), *_tenant_owned(), Field("name", "name"),
            Field("description", "description"), Field("image", "image"),
            Field("default", "is_default", BOOL, writable=False),
            Field("defaultRuleChainId", "default_rule_chain_id", ID, ref="RULE_CHAIN"),
            Field("defaultDashboardId", "default_dashboard_id", ID, ref="DASHBOARD"),
            Field("defaultQueueName", "default_queue_name"),
            Field("externalId", "external_id", ID, ref="ASSET_PROFILE"), Field("version", "version", INT)),
    search_column="name",
    sort_columns={**STANDARD_SORT, "name": "name", "description": "description"},
    duplicate_message="Asset profile with such name already exists!",
)

ASSET = EntityTable(
    entity_type="ASSET", table="asset",
    fields=(*_common("ASSET"), *_tenant_owned(), *_customer_owned(), Field("name", "name"),
            Field("type", "type", writable=False), Field("label", "label"),
            Field("assetProfileId", "asset_profile_id", ID, ref="ASSET_PROFILE"),
            Field("additionalInfo", "additional_info", JSON),
            Field("externalId", "external_id", ID, ref="ASSET"), Field("version", "version", INT)),
    search_column="name",
    sort_columns={**STANDARD_SORT, "name": "name", "type": "type", "label": "label"},
    duplicate_message="Asset with such name already exists!",
)

DASHBOARD = EntityTable(
    entity_type="DASHBOARD", table="dashboard",
    fields=(*_common("DASHBOARD"), *_tenant_owned(), Field("title", "title"),
            Field("name", "title", writable=False), Field("image", "image"),
            Field("mobileHide", "mobile_hide", BOOL), Field("mobileOrder", "mobile_order", INT),
            Field("assignedCustomers", "assigned_customers", JSON, writable=False),
            Field("configuration", "configuration", JSON),
            Field("externalId", "external_id", ID, ref="DASHBOARD"), Field("version", "version", INT)),
    search_column="title",
    sort_columns={**STANDARD_SORT, "title": "title"},
)

ENTITY_VIEW = EntityTable(
    entity_type="ENTITY_VIEW", table="entity_view",
    fields=(*_common("ENTITY_VIEW"), *_tenant_owned(), *_customer_owned(), Field("name", "name"),
            Field("entityId", "entity_id", Kind.TYPED_ID, type_column="entity_type"),
            Field("type", "type"), Field("keys", "keys", JSON),
            Field("startTimeMs", "start_ts", INT), Field("endTimeMs", "end_ts", INT),
            Field("additionalInfo", "additional_info", JSON),
            Field("externalId", "external_id", ID, ref="ENTITY_VIEW"), Field("version", "version", INT)),
    search_column="name",
    sort_columns={**STANDARD_SORT, "name": "name", "type": "type"},
    duplicate_message="Entity view with such name already exists!",
)
