-- Persistent server-side RPC (ThingsBoard's rpc table): stored QUEUED by the REST API, then moved
-- on (SENT, DELIVERED, SUCCESSFUL, TIMEOUT, EXPIRED, FAILED) as the device takes and answers it.
CREATE TABLE rpc (
    id              uuid PRIMARY KEY,
    created_time    bigint NOT NULL,
    tenant_id       uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    device_id       uuid NOT NULL REFERENCES device(id) ON DELETE CASCADE,
    expiration_time bigint NOT NULL,
    request         jsonb NOT NULL,
    response        jsonb,
    status          varchar(32) NOT NULL,
    additional_info jsonb
);
CREATE INDEX idx_rpc_device ON rpc (device_id, created_time DESC);
CREATE INDEX idx_rpc_status_expiration ON rpc (status, expiration_time);
