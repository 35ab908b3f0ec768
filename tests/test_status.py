"""``thingsray status`` on the running test platform: nodes, the partition table, shards with
their partitions and actors, transports with their ports and sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from thingsray.platform import Platform
from thingsray.status import collect, render

REPO = Path(__file__).resolve().parent.parent


def test_status_reads_the_platform_from_its_ray(platform: Platform) -> None:
    status = collect()
    assert [n.alive for n in status.nodes] == [True]
    assert status.epoch is not None and status.partitions == 64
    assert [s.name for s in status.shards] == [f"thingsray-shard-{i}" for i in range(platform.settings.shards)]
    assert sum(s.stats["partitions"] for s in status.shards) == 64
    assert all(s.node_id == status.nodes[0].node_id and s.error is None for s in status.shards)
    by_name = {t.name: t for t in status.transports}
    assert by_name["thingsray-mqtt-0"].stats["port"] == platform.mqtt_port
    assert by_name["thingsray-coap-0"].stats["port"] == platform.coap_port
    text = render(status)
    assert "partition table: epoch" in text and "thingsray-mqtt-0" in text


def test_the_status_command_finds_a_single_machine_platform(platform: Platform) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THINGSRAY_", "RAY_ADDRESS"))}
    done = subprocess.run([sys.executable, "-m", "thingsray", "status", "--data-dir", platform.settings.data_dir,
                           "--json"], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert len(answer["shards"]) == platform.settings.shards
    assert {t["name"] for t in answer["transports"]} >= {"thingsray-mqtt-0", "thingsray-coap-0"}


def test_status_without_a_running_platform_says_how_to_start_one(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "thingsray", "status", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2 and "thingsray up" in done.stderr
