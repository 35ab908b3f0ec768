-- The cluster's partition table (partition -> shard) and its epoch: one row. Every change is a
-- compare-and-set on the epoch, so two coordinators can never both install a table for one epoch,
-- and a restarted shard or coordinator finds the table in force.
CREATE TABLE partition_map (
    id           integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    epoch        bigint NOT NULL,
    owners       integer[] NOT NULL,
    updated_time bigint NOT NULL
);
