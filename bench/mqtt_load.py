"""The MQTT load generator; the code lives in ``thingsray.benchmarks.load`` (``thingsray bench`` uses it).

    /work/venv/bin/python bench/mqtt_load.py --port 1884 [--devices 100 | --tokens FILE]
        [--workers 2] [--window 1] [--duration 10] [--rate MSG_PER_S] [--acked-json FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without the package

from thingsray.benchmarks.load import *  # noqa: F403 - the names the old module had
from thingsray.benchmarks.load import main

if __name__ == "__main__":
    sys.exit(main())
