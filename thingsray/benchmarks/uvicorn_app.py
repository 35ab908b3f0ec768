"""The REST app on plain uvicorn, the rest scenario's baseline: ``python -m thingsray.benchmarks.uvicorn_app PORT URL``.

Serves 127.0.0.1:PORT against the database URL until SIGTERM."""

from __future__ import annotations

import sys
import tempfile


def main(port: int, database_url: str) -> None:
    import uvicorn

    from thingsray.config import Settings
    from thingsray.serve_app.app import create_app

    settings = Settings(host="127.0.0.1", http_port=port, database_url=database_url, demo=True,
                        data_dir=tempfile.gettempdir())
    uvicorn.run(create_app(settings, database_url), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
