-- Rule chains: their nodes and connections, one root chain per tenant and type, and the rule
-- engine's debug events.

-- Connections are kept on the chain as [{"from": node id, "to": node id, "type": relation}]
-- rather than as relation rows (ThingsBoard's way): a chain's metadata is then two reads and one
-- transaction to replace, and the engine's links never show up among the entity relations users
-- query and edit. They name nodes by id, so node order may change without rewriting them.
ALTER TABLE rule_chain ADD COLUMN connections jsonb NOT NULL DEFAULT '[]';
-- the sticky notes of ThingsBoard 4's rule chain editor, kept as sent
ALTER TABLE rule_chain ADD COLUMN notes jsonb;
CREATE UNIQUE INDEX rule_chain_one_root ON rule_chain (tenant_id, type) WHERE root;
CREATE INDEX rule_chain_tenant_idx ON rule_chain (tenant_id, type, created_time DESC);

CREATE TABLE rule_node (
    id                    uuid PRIMARY KEY,
    created_time          bigint NOT NULL,
    rule_chain_id         uuid NOT NULL REFERENCES rule_chain(id) ON DELETE CASCADE,
    position              integer NOT NULL,      -- the node's index in the chain's metadata
    type                  varchar(255) NOT NULL,
    name                  varchar(255) NOT NULL,
    debug_mode            boolean NOT NULL DEFAULT false,
    debug_failures        boolean NOT NULL DEFAULT false,
    singleton_mode        boolean NOT NULL DEFAULT false,
    queue_name            varchar(255),
    configuration_version integer NOT NULL DEFAULT 0,
    configuration         jsonb,
    additional_info       jsonb,
    external_id           uuid
);
CREATE INDEX rule_node_chain_idx ON rule_node (rule_chain_id, position);
-- rule chain input nodes by their target: which chains forward to a chain
CREATE INDEX rule_node_input_target_idx ON rule_node ((configuration ->> 'ruleChainId'))
    WHERE type = 'org.thingsboard.rule.engine.flow.TbRuleChainInputNode';

-- Debug events (ThingsBoard's rule_node_debug_event and rule_chain_debug_event in one table).
-- entity_id is the rule node (DEBUG_RULE_NODE) or rule chain (DEBUG_RULE_CHAIN); body is the
-- EventInfo body: {"type": IN|OUT, "entityId", "entityType", "msgId", "msgType", "dataType",
-- "relationType", "data", "metadata", "error", "server"} for nodes, {"message", "error", "server"}
-- for chains. Bounded by EventStore.prune (an age and a count per entity).
CREATE TABLE event (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    entity_id   uuid NOT NULL,
    event_type  varchar(32) NOT NULL,
    ts          bigint NOT NULL,
    body        jsonb NOT NULL
);
CREATE INDEX event_entity_idx ON event (tenant_id, entity_id, event_type, ts DESC);
CREATE INDEX event_ts_idx ON event (ts);
