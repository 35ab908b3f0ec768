-- Attributes and time series, after ThingsBoard's schema-entities.sql and schema-ts-psql.sql:
-- keys are interned in key_dictionary; one typed value column of five is set per row.

CREATE TABLE key_dictionary (
    key    varchar(255) NOT NULL,
    key_id serial,
    CONSTRAINT key_dictionary_id_pkey PRIMARY KEY (key)
);
CREATE UNIQUE INDEX key_dictionary_key_id ON key_dictionary (key_id);

-- attribute_type: 1 CLIENT_SCOPE, 2 SERVER_SCOPE, 3 SHARED_SCOPE
CREATE TABLE attribute_kv (
    entity_id      uuid NOT NULL,
    attribute_type integer NOT NULL,
    attribute_key  integer NOT NULL,
    bool_v         boolean,
    str_v          varchar(10000000),
    long_v         bigint,
    dbl_v          double precision,
    json_v         json,
    last_update_ts bigint NOT NULL,
    version        bigint NOT NULL DEFAULT 1,
    CONSTRAINT attribute_kv_pkey PRIMARY KEY (entity_id, attribute_type, attribute_key)
);

-- Partitioned by month of ts; ts_kv_default catches what falls outside every partition so that
-- one stray timestamp never fails a whole batch. Partitions are created ahead at start-up.
CREATE TABLE ts_kv (
    entity_id uuid NOT NULL,
    key       integer NOT NULL,
    ts        bigint NOT NULL,
    bool_v    boolean,
    str_v     varchar(10000000),
    long_v    bigint,
    dbl_v     double precision,
    json_v    json,
    CONSTRAINT ts_kv_pkey PRIMARY KEY (entity_id, key, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE ts_kv_default PARTITION OF ts_kv DEFAULT;

CREATE TABLE ts_kv_latest (
    entity_id uuid NOT NULL,
    key       integer NOT NULL,
    ts        bigint NOT NULL,
    bool_v    boolean,
    str_v     varchar(10000000),
    long_v    bigint,
    dbl_v     double precision,
    json_v    json,
    version   bigint NOT NULL DEFAULT 1,
    CONSTRAINT ts_kv_latest_pkey PRIMARY KEY (entity_id, key)
);
