"""PostgreSQL storage: the embedded server, pools, migrations, entity repositories."""

from thingsray.storage.database import Database, connect
from thingsray.storage.embedded import EmbeddedPostgres
from thingsray.storage.entities import NULL_UUID, EntityRepository, EntityTable, PageQuery
from thingsray.storage.migrations import ensure_ts_partitions, migrate

__all__ = ["NULL_UUID", "Database", "EmbeddedPostgres", "EntityRepository", "EntityTable", "PageQuery",
           "connect", "ensure_ts_partitions", "migrate"]
