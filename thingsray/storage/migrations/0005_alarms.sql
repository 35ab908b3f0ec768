-- Alarms (the table is in 0001): one active alarm per (tenant, originator, type), the entities
-- an alarm shows on (ThingsBoard's entity_alarm), and the AlarmInfo view (originator name and
-- label, assignee, status) every read goes through.

-- an alarm table written before this migration may hold several active alarms of one kind:
-- keep the newest active, clear the others, so that the unique index below can be built
UPDATE alarm a SET cleared = true, clear_ts = a.end_ts
WHERE NOT a.cleared AND EXISTS (
    SELECT 1 FROM alarm n WHERE n.tenant_id = a.tenant_id AND n.originator_id = a.originator_id
      AND n.type = a.type AND NOT n.cleared
      AND (n.start_ts, n.id) > (a.start_ts, a.id));

CREATE UNIQUE INDEX alarm_one_active_idx ON alarm (tenant_id, originator_id, type) WHERE NOT cleared;
CREATE INDEX alarm_tenant_customer_idx ON alarm (tenant_id, customer_id, created_time DESC);
CREATE INDEX alarm_assignee_idx ON alarm (tenant_id, assignee_id) WHERE assignee_id IS NOT NULL;

-- which entities an alarm shows on: its originator always, and the entities it propagates to
CREATE TABLE entity_alarm (
    tenant_id    uuid NOT NULL,
    entity_type  varchar(32) NOT NULL,
    entity_id    uuid NOT NULL,
    created_time bigint NOT NULL,
    alarm_type   varchar(255) NOT NULL,
    customer_id  uuid,
    alarm_id     uuid NOT NULL REFERENCES alarm(id) ON DELETE CASCADE,
    CONSTRAINT entity_alarm_pkey PRIMARY KEY (entity_id, alarm_id)
);
CREATE INDEX entity_alarm_entity_idx ON entity_alarm (tenant_id, entity_type, entity_id, created_time DESC);
CREATE INDEX entity_alarm_alarm_idx ON entity_alarm (alarm_id);

CREATE VIEW alarm_info AS
SELECT a.*,
       CASE WHEN a.cleared THEN (CASE WHEN a.acknowledged THEN 'CLEARED_ACK' ELSE 'CLEARED_UNACK' END)
            ELSE (CASE WHEN a.acknowledged THEN 'ACTIVE_ACK' ELSE 'ACTIVE_UNACK' END) END AS status,
       -- 4 for CRITICAL down to 0 for INDETERMINATE: sorting DESC puts the most severe first
       CASE a.severity WHEN 'CRITICAL' THEN 4 WHEN 'MAJOR' THEN 3 WHEN 'MINOR' THEN 2
                       WHEN 'WARNING' THEN 1 ELSE 0 END AS severity_level,
       COALESCE(CASE a.originator_type
           WHEN 'TENANT' THEN (SELECT title FROM tenant WHERE id = a.originator_id)
           WHEN 'CUSTOMER' THEN (SELECT COALESCE(NULLIF(title, ''), email) FROM customer WHERE id = a.originator_id)
           WHEN 'USER' THEN (SELECT email FROM tb_user WHERE id = a.originator_id)
           WHEN 'DASHBOARD' THEN (SELECT title FROM dashboard WHERE id = a.originator_id)
           WHEN 'ASSET' THEN (SELECT name FROM asset WHERE id = a.originator_id)
           WHEN 'DEVICE' THEN (SELECT name FROM device WHERE id = a.originator_id)
           WHEN 'ENTITY_VIEW' THEN (SELECT name FROM entity_view WHERE id = a.originator_id)
           WHEN 'DEVICE_PROFILE' THEN (SELECT name FROM device_profile WHERE id = a.originator_id)
           WHEN 'ASSET_PROFILE' THEN (SELECT name FROM asset_profile WHERE id = a.originator_id)
           WHEN 'RULE_CHAIN' THEN (SELECT name FROM rule_chain WHERE id = a.originator_id) END,
           'Deleted') AS originator_name,
       COALESCE(CASE a.originator_type
           WHEN 'TENANT' THEN (SELECT title FROM tenant WHERE id = a.originator_id)
           WHEN 'CUSTOMER' THEN (SELECT COALESCE(NULLIF(title, ''), email) FROM customer WHERE id = a.originator_id)
           WHEN 'USER' THEN (SELECT email FROM tb_user WHERE id = a.originator_id)
           WHEN 'DASHBOARD' THEN (SELECT title FROM dashboard WHERE id = a.originator_id)
           WHEN 'ASSET' THEN (SELECT COALESCE(NULLIF(label, ''), name) FROM asset WHERE id = a.originator_id)
           WHEN 'DEVICE' THEN (SELECT COALESCE(NULLIF(label, ''), name) FROM device WHERE id = a.originator_id)
           WHEN 'ENTITY_VIEW' THEN (SELECT name FROM entity_view WHERE id = a.originator_id)
           WHEN 'DEVICE_PROFILE' THEN (SELECT name FROM device_profile WHERE id = a.originator_id)
           WHEN 'ASSET_PROFILE' THEN (SELECT name FROM asset_profile WHERE id = a.originator_id)
           WHEN 'RULE_CHAIN' THEN (SELECT name FROM rule_chain WHERE id = a.originator_id) END,
           'Deleted') AS originator_label,
       u.first_name AS assignee_first_name, u.last_name AS assignee_last_name, u.email AS assignee_email
FROM alarm a
LEFT JOIN tb_user u ON u.id = a.assignee_id;
