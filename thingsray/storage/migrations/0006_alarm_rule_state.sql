-- ThingsBoard's rule_node_state: what a rule node remembers about an entity across restarts (the
-- device profile node's alarm rule progress: repeat counts, when a DURATION condition started).
-- One row per (node, entity); a node's rows go with the node.
CREATE TABLE rule_node_state (
    id           uuid PRIMARY KEY,
    created_time bigint NOT NULL,
    rule_node_id uuid NOT NULL REFERENCES rule_node(id) ON DELETE CASCADE,
    entity_type  varchar(32) NOT NULL,
    entity_id    uuid NOT NULL,
    state_data   jsonb NOT NULL,
    CONSTRAINT rule_node_state_unq_key UNIQUE (rule_node_id, entity_id)
);
CREATE INDEX rule_node_state_entity_idx ON rule_node_state (entity_id);
