"""MQTT ingest against the Mosquitto ceiling; the code lives in ``thingsray.benchmarks.ingest``.

``thingsray bench`` runs these scenarios (and more) on a platform of its own; this keeps the
command lines against a running thingsray working:

    /work/venv/bin/python bench/mqtt_ingest.py --scenarios ceiling --devices 1000 --window 10
    /work/venv/bin/python bench/mqtt_ingest.py --scenarios ceiling,thingsray --port 1884 \\
        --rest http://127.0.0.1:8081 --devices 100 --database-url postgresql://postgres@127.0.0.1:5432/x
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without the package

from thingsray.benchmarks.ingest import *  # noqa: F403 - the names the old module had
from thingsray.benchmarks.ingest import main

if __name__ == "__main__":
    sys.exit(main())
