"""The embedded PostgreSQL of the no-setup default: a real server from the ``pgserver`` package,
its data in ``<data_dir>/postgres``, reached over a Unix socket only (it opens no TCP port)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

DATABASE_NAME = "thingsray"


class EmbeddedPostgres:
    """Starts (or adopts) the server for ``pgdata``; ``stop()`` stops what ``start()`` started."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server = None

    def start(self) -> str:
        """Start the server, create the ``thingsray`` database if needed; return its URL."""
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime directory at import; without XDG_RUNTIME_DIR
            # (containers, CI, services) that warns, and tests turn warnings into errors
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pgserver  # imported here: it is only needed by the embedded default

        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        exists = self._server.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            self._server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        uri = self._server.get_uri()
        # pgserver answers postgresql://postgres:@/postgres?host=<socket dir>
        socket_dir = uri.split("host=", 1)[1]
        return f"postgresql://postgres@/{DATABASE_NAME}?host={quote(socket_dir, safe='/')}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
