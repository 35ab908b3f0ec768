"""``thingsray bench`` end to end: it starts a platform of its own, runs the scenarios and reports
every one with numbers, and nothing acknowledged is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

slow = pytest.mark.slow


@slow
def test_a_quick_bench_reports_every_scenario_with_numbers_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "THINGSRAY_"))}
    done = subprocess.run(
        [sys.executable, "-m", "thingsray", "bench", "--quick", "--scenarios", "ingest,actors,sessions",
         "--devices", "20", "--duration", "2", "--actors", "2000", "--sessions", "50", "--json", str(out)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(out.read_text())
    found = summary["scenarios"]
    assert set(found) == {"ingest", "actors", "sessions"}, found

    ingest = found["ingest"]
    assert ingest["acked"] > 0 and ingest["msg_per_s"] > 0 and ingest["p99_ms"] >= ingest["p50_ms"] > 0
    assert ingest["db_stored"] == ingest["acked"] and ingest["db_lost"] == 0 and ingest["unacked"] == 0
    assert ingest["rest_checked_devices"] > 0 and ingest["rest_missing"] == 0

    actors = found["actors"]
    assert actors["actors"] == 2000 and actors["failures"] == 0
    assert isinstance(actors["rss_growth_mib"], float) and actors["activations_per_s"] > 0

    sessions = found["sessions"]
    assert sessions["connected"] == sessions["acked"] == 50 and sessions["lost"] == 0
    assert isinstance(sessions["rss_growth_mib"], float)

    figures = {(r["scenario"], r["figure"].split(" (")[0]) for r in summary["rows"]}
    assert ("ingest", "msg/s") in figures and ("ingest", "lost") in figures
    assert all(r["met"] is not False for r in summary["rows"] if r["figure"].startswith("lost"))
    assert "scenario" in done.stdout and "met?" in done.stdout  # the table


def test_the_outside_generator_counts_refused_devices_and_what_it_acked_is_stored(
        platform: object, mqtt_port: int) -> None:
    """mosquitto_pub (Mosquitto's own client) exits 0 only once its last line is acknowledged; a
    device with a wrong token is reported failed, the others' values are all in the database."""
    import asyncio
    import time

    from thingsray.benchmarks import fleet, outside
    from thingsray.benchmarks.ingest import stored_counts

    if outside.find_mosquitto_pub() is None:
        pytest.skip("needs mosquitto_pub (apt-get install mosquitto-clients)")
    database_url = platform.database_url  # type: ignore[attr-defined]
    tokens = asyncio.run(fleet.bulk_devices(database_url, f"outside-test-{time.time_ns()}", 3))
    started_ms = time.time_ns() // 1_000_000
    result = outside.run(mqtt_port, [*tokens, "no-such-token"], 40, started_ms, timeout_s=120)
    assert set(result.failed) == {"no-such-token"}, result.failed
    assert result.acked == 3 * 40
    stored = asyncio.run(stored_counts(database_url, dict.fromkeys(tokens, 40), started_ms))
    assert stored["stored"] == 120 and stored["lost"] == 0, stored
