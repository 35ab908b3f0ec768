-- Entities, after ThingsBoard's schema-entities.sql. Ids are UUIDs, times are epoch milliseconds.

CREATE TABLE admin_settings (
    key          varchar(255) PRIMARY KEY,
    json_value   jsonb NOT NULL,
    created_time bigint NOT NULL
);

CREATE TABLE tenant (
    id              uuid PRIMARY KEY,
    created_time    bigint NOT NULL,
    title           varchar(255) NOT NULL,
    region          varchar(255),
    country         varchar(255),
    state           varchar(255),
    city            varchar(255),
    address         varchar,
    address2        varchar,
    zip             varchar(255),
    phone           varchar(255),
    email           varchar(255),
    additional_info jsonb,
    tenant_profile_id uuid,
    version         bigint NOT NULL DEFAULT 1
);

CREATE TABLE customer (
    id              uuid PRIMARY KEY,
    created_time    bigint NOT NULL,
    tenant_id       uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    title           varchar(255) NOT NULL,
    country         varchar(255),
    state           varchar(255),
    city            varchar(255),
    address         varchar,
    address2        varchar,
    zip             varchar(255),
    phone           varchar(255),
    email           varchar(255),
    additional_info jsonb,
    is_public       boolean NOT NULL DEFAULT false,
    external_id     uuid,
    version         bigint NOT NULL DEFAULT 1,
    CONSTRAINT customer_title_unq_key UNIQUE (tenant_id, title)
);

CREATE TABLE tb_user (
    id              uuid PRIMARY KEY,
    created_time    bigint NOT NULL,
    tenant_id       uuid REFERENCES tenant(id) ON DELETE CASCADE,
    customer_id     uuid REFERENCES customer(id) ON DELETE CASCADE,
    email           varchar(255) NOT NULL,
    authority       varchar(255) NOT NULL,
    first_name      varchar(255),
    last_name       varchar(255),
    phone           varchar(255),
    additional_info jsonb,
    version         bigint NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX tb_user_email_unq ON tb_user (lower(email));
CREATE INDEX tb_user_tenant_idx ON tb_user (tenant_id, customer_id);

CREATE TABLE user_credentials (
    id                 uuid PRIMARY KEY,
    created_time       bigint NOT NULL,
    user_id            uuid NOT NULL UNIQUE REFERENCES tb_user(id) ON DELETE CASCADE,
    enabled            boolean NOT NULL DEFAULT false,
    password           varchar(255),
    activate_token     varchar(255) UNIQUE,
    activate_token_exp bigint,
    reset_token        varchar(255) UNIQUE,
    failed_login_attempts integer NOT NULL DEFAULT 0,
    last_login_ts      bigint,
    -- tokens issued before this instant (ms) are refused: password change, disable
    tokens_valid_after bigint NOT NULL DEFAULT 0
);

-- logged-out sessions; an access or refresh token carrying the session id is refused
CREATE TABLE revoked_session (
    session_id  uuid PRIMARY KEY,
    expires_at  bigint NOT NULL
);

CREATE TABLE rule_chain (
    id                 uuid PRIMARY KEY,
    created_time       bigint NOT NULL,
    tenant_id          uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name               varchar(255) NOT NULL,
    type               varchar(255) NOT NULL DEFAULT 'CORE',
    first_rule_node_id uuid,
    root               boolean NOT NULL DEFAULT false,
    debug_mode         boolean NOT NULL DEFAULT false,
    configuration      jsonb,
    additional_info    jsonb,
    external_id        uuid,
    version            bigint NOT NULL DEFAULT 1
);

CREATE TABLE device_profile (
    id                    uuid PRIMARY KEY,
    created_time          bigint NOT NULL,
    tenant_id             uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name                  varchar(255) NOT NULL,
    description           varchar,
    type                  varchar(255) NOT NULL DEFAULT 'DEFAULT',
    transport_type        varchar(255) NOT NULL DEFAULT 'DEFAULT',
    provision_type        varchar(255) NOT NULL DEFAULT 'DISABLED',
    profile_data          jsonb,
    is_default            boolean NOT NULL DEFAULT false,
    image                 varchar,
    default_rule_chain_id uuid REFERENCES rule_chain(id) ON DELETE SET NULL,
    default_dashboard_id  uuid,
    default_queue_name    varchar(255),
    provision_device_key  varchar UNIQUE,
    firmware_id           uuid,
    software_id           uuid,
    external_id           uuid,
    version               bigint NOT NULL DEFAULT 1,
    CONSTRAINT device_profile_name_unq_key UNIQUE (tenant_id, name)
);
CREATE UNIQUE INDEX device_profile_one_default ON device_profile (tenant_id) WHERE is_default;

CREATE TABLE device (
    id                uuid PRIMARY KEY,
    created_time      bigint NOT NULL,
    tenant_id         uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    customer_id       uuid,
    device_profile_id uuid NOT NULL REFERENCES device_profile(id),
    name              varchar(255) NOT NULL,
    type              varchar(255),
    label             varchar(255),
    device_data       jsonb,
    additional_info   jsonb,
    firmware_id       uuid,
    software_id       uuid,
    external_id       uuid,
    version           bigint NOT NULL DEFAULT 1,
    CONSTRAINT device_name_unq_key UNIQUE (tenant_id, name)
);
CREATE INDEX device_tenant_customer_idx ON device (tenant_id, customer_id);
CREATE INDEX device_profile_idx ON device (device_profile_id);

CREATE TABLE device_credentials (
    id                uuid PRIMARY KEY,
    created_time      bigint NOT NULL,
    device_id         uuid NOT NULL UNIQUE REFERENCES device(id) ON DELETE CASCADE,
    credentials_type  varchar(255) NOT NULL,
    credentials_id    varchar NOT NULL,
    credentials_value varchar,
    version           bigint NOT NULL DEFAULT 1,
    CONSTRAINT device_credentials_id_unq_key UNIQUE (credentials_id)
);

CREATE TABLE asset_profile (
    id                    uuid PRIMARY KEY,
    created_time          bigint NOT NULL,
    tenant_id             uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name                  varchar(255) NOT NULL,
    description           varchar,
    image                 varchar,
    is_default            boolean NOT NULL DEFAULT false,
    default_rule_chain_id uuid REFERENCES rule_chain(id) ON DELETE SET NULL,
    default_dashboard_id  uuid,
    default_queue_name    varchar(255),
    external_id           uuid,
    version               bigint NOT NULL DEFAULT 1,
    CONSTRAINT asset_profile_name_unq_key UNIQUE (tenant_id, name)
);
CREATE UNIQUE INDEX asset_profile_one_default ON asset_profile (tenant_id) WHERE is_default;

CREATE TABLE asset (
    id               uuid PRIMARY KEY,
    created_time     bigint NOT NULL,
    tenant_id        uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    customer_id      uuid,
    asset_profile_id uuid NOT NULL REFERENCES asset_profile(id),
    name             varchar(255) NOT NULL,
    type             varchar(255),
    label            varchar(255),
    additional_info  jsonb,
    external_id      uuid,
    version          bigint NOT NULL DEFAULT 1,
    CONSTRAINT asset_name_unq_key UNIQUE (tenant_id, name)
);
CREATE INDEX asset_tenant_customer_idx ON asset (tenant_id, customer_id);

CREATE TABLE dashboard (
    id                 uuid PRIMARY KEY,
    created_time       bigint NOT NULL,
    tenant_id          uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    title              varchar(255) NOT NULL,
    configuration      jsonb,
    assigned_customers jsonb NOT NULL DEFAULT '[]',
    image              varchar,
    mobile_hide        boolean NOT NULL DEFAULT false,
    mobile_order       integer,
    external_id        uuid,
    version            bigint NOT NULL DEFAULT 1
);
CREATE INDEX dashboard_tenant_idx ON dashboard (tenant_id);

CREATE TABLE entity_view (
    id              uuid PRIMARY KEY,
    created_time    bigint NOT NULL,
    tenant_id       uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    customer_id     uuid,
    entity_id       uuid NOT NULL,
    entity_type     varchar(255) NOT NULL,
    name            varchar(255) NOT NULL,
    type            varchar(255),
    keys            jsonb,
    start_ts        bigint NOT NULL DEFAULT 0,
    end_ts          bigint NOT NULL DEFAULT 0,
    additional_info jsonb,
    external_id     uuid,
    version         bigint NOT NULL DEFAULT 1,
    CONSTRAINT entity_view_name_unq_key UNIQUE (tenant_id, name)
);

CREATE TABLE relation (
    from_id             uuid NOT NULL,
    from_type           varchar(255) NOT NULL,
    to_id               uuid NOT NULL,
    to_type             varchar(255) NOT NULL,
    relation_type_group varchar(255) NOT NULL,
    relation_type       varchar(255) NOT NULL,
    additional_info     jsonb,
    version             bigint NOT NULL DEFAULT 1,
    CONSTRAINT relation_pkey PRIMARY KEY (from_id, from_type, relation_type_group, relation_type, to_id, to_type)
);
CREATE INDEX relation_to_idx ON relation (to_id, to_type, relation_type_group);

CREATE TABLE alarm (
    id                   uuid PRIMARY KEY,
    created_time         bigint NOT NULL,
    tenant_id            uuid NOT NULL,
    customer_id          uuid,
    originator_id        uuid NOT NULL,
    originator_type      varchar(255) NOT NULL,
    type                 varchar(255) NOT NULL,
    severity             varchar(255) NOT NULL,
    acknowledged         boolean NOT NULL DEFAULT false,
    cleared              boolean NOT NULL DEFAULT false,
    assignee_id          uuid,
    start_ts             bigint NOT NULL,
    end_ts               bigint NOT NULL,
    ack_ts               bigint NOT NULL DEFAULT 0,
    clear_ts             bigint NOT NULL DEFAULT 0,
    assign_ts            bigint NOT NULL DEFAULT 0,
    details              jsonb,
    propagate            boolean NOT NULL DEFAULT false,
    propagate_to_owner   boolean NOT NULL DEFAULT false,
    propagate_to_tenant  boolean NOT NULL DEFAULT false,
    propagate_relation_types varchar
);
CREATE INDEX alarm_originator_idx ON alarm (originator_id, type, created_time DESC);
CREATE INDEX alarm_tenant_idx ON alarm (tenant_id, created_time DESC);

CREATE TABLE audit_log (
    id                     uuid NOT NULL,
    created_time           bigint NOT NULL,
    tenant_id              uuid,
    customer_id            uuid,
    entity_id              uuid,
    entity_type            varchar(255),
    entity_name            varchar(255),
    user_id                uuid,
    user_name              varchar(255),
    action_type            varchar(255) NOT NULL,
    action_data            jsonb,
    action_status          varchar(255) NOT NULL,
    action_failure_details varchar(1000000)
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, created_time DESC);
CREATE INDEX audit_log_entity_idx ON audit_log (entity_id, created_time DESC);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, created_time DESC);
