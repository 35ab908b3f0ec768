"""CoAP and HTTP device API ingest against baseline servers; the code lives in ``thingsray.benchmarks.device_api``.

    /work/venv/bin/python bench/device_api_ingest.py [--protocol coap,http] [--devices 100] [--window 4]
        [--duration 15] [--workers 2] [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without the package

from thingsray.benchmarks.device_api import main

if __name__ == "__main__":
    sys.exit(main())
