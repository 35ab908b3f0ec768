"""WebSocket fan-out latency and completeness; the code lives in ``thingsray.benchmarks.ws_fanout``.

    /work/venv/bin/python bench/ws_fanout.py [--subscribers 1,100,1000] [--shapes one,many]
        [--rate 20] [--duration 10] [--procs 2] [--database-url postgresql://postgres@127.0.0.1:5432/x]
    /work/venv/bin/python bench/ws_fanout.py --target-mqtt 127.0.0.1:1883 --target-rest http://127.0.0.1:8080 \\
        --database-url postgresql://postgres@127.0.0.1:5432/thingsray
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without the package

from thingsray.benchmarks.ws_fanout import main

if __name__ == "__main__":
    sys.exit(main())
