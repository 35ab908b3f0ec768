"""thingsray on one, two and three Ray nodes on this machine: ingest by node count, a node lost
under QoS 1 load, a node joining under load; the code lives in ``thingsray.benchmarks.cluster``.

    /work/venv/bin/python bench/cluster_nodes.py --scenario ingest|failover|join \\
        [--database-server postgresql://postgres@127.0.0.1:5432/test] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without the package

from thingsray.benchmarks.cluster import main

if __name__ == "__main__":
    sys.exit(main())
