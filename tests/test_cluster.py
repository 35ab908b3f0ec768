"""thingsray on a three-node Ray cluster on this machine (thingsray/benchmarks/cluster.py, in a
process and a Ray of its own): devices on one node's listener served by shards on others, a node
killed under QoS 1 load, a node added while devices publish. Nothing acknowledged may be lost;
how fast service came back is reported (printed), not asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
slow = pytest.mark.slow


def scenario(name: str, tmp_path: Path) -> dict[str, Any]:
    server = os.environ.get("THINGSRAY_TEST_DATABASE_URL")
    if not server:
        pytest.skip("the cluster scenarios need a PostgreSQL server every node reaches: set "
                    "THINGSRAY_TEST_DATABASE_URL (the embedded database serves one machine only)")
    out = tmp_path / f"{name}.json"
    done = subprocess.run([sys.executable, "-m", "thingsray.benchmarks.cluster", "--scenario", name,
                           "--database-server", server, "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    print(f"\n{name}: {json.dumps(figures)}")
    return figures


@slow
def test_a_node_lost_under_qos1_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    figures = scenario("failover", tmp_path)
    assert figures["cross_node_devices"] > 0, "no device's listener and shard were on different nodes"
    assert figures["shards_on_lost_node"] >= 1 and figures["devices_on_lost_node"] >= 1
    assert figures["devices_served_by_lost_shards"] >= 1, "no device was served by a shard of the lost node"
    assert figures["shards_on_lost_node_after"] == 0, "the lost node's shards were not started elsewhere"
    assert figures["acked"] > 0 and figures["lost"] == 0
    assert figures["duplicated"] == 0
    assert figures["msg_per_s_after"] > 0, "ingest did not come back after the node was lost"


@slow
def test_a_node_that_joins_takes_partitions_while_devices_publish(tmp_path: Path) -> None:
    figures = scenario("join", tmp_path)
    assert figures["nodes_after"] == 3 and figures["shards_after"] == 3
    assert figures["epoch_after"] == figures["epoch_before"] + 1
    assert figures["partitions_on_new_shard"] == figures["partitions_moved"] > 0
    assert figures["acked"] > 0 and figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["live_watch_error"] is None
    assert figures["devices_moved"] > 0, "no device of the run was on a partition that moved"
    assert figures["moved_devices_with_live_updates_after"] == figures["devices_moved"], \
        "a WebSocket subscriber stopped hearing of a device whose partition moved"
