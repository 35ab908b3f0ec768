"""The CoAP and HTTP device API ingest benchmark, small: on the session's platform each protocol runs
beside its baseline, reports its figures, and everything acknowledged is in PostgreSQL and readable
over REST; ``bench/device_api_ingest.py`` does the same on a platform of its own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from thingsray.benchmarks import device_api
from thingsray.platform import Platform

ROOT = Path(__file__).resolve().parents[1]


def _endpoints(platform: Platform, base_url: str, coap_port: int) -> device_api.Endpoints:
    assert platform.database_url is not None
    return device_api.Endpoints(base_url, coap_port, platform.database_url)


def test_both_protocols_report_rate_latency_baseline_and_lose_nothing(platform: Platform, base_url: str,
                                                                      coap_port: int) -> None:
    target = _endpoints(platform, base_url, coap_port)
    found = [device_api.run_protocol(target, device_api.Case(protocol, devices=3, window=2, duration=2, workers=1,
                                                             samples=3), note=lambda _: None)
             for protocol in device_api.PROTOCOLS]
    for result, success in zip(found, ("2.01 Created", "200"), strict=True):
        assert (result["devices"], result["window"]) == (3, 2)
        assert result["msg_per_s"] > 0 and result["baseline_msg_per_s"] > 0
        assert result["ratio"] == round(result["msg_per_s"] / result["baseline_msg_per_s"], 3)
        assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
        assert 0 < result["baseline_p50_ms"] <= result["baseline_p99_ms"]
        assert result["errors"] == result["warmup_errors"] == result["baseline_errors"] == 0, result["error_samples"]
        assert result["answers"] == {success: result["sent"]} and result["acked"] == result["sent"]
        assert result["db_acked"] == result["acked"] == result["db_stored"] and result["lost"] == 0
        assert result["rest_latest_ok"] == result["rest_checked_devices"] == 3
        assert len(result["client_cpu"]) == 1 and len(result["loadavg_before"]) == 3
        assert "udp_drops" in result and "baseline_udp_drops" in result
        assert not device_api.failed(result)
    printed = device_api.table(found)
    assert printed.splitlines()[0].startswith("protocol") and "baseline msg/s" in printed
    assert [line.split()[0] for line in printed.splitlines()[1:3]] == ["coap", "http"]
    assert found[0]["cpu_cores"] and "coap platform run, cores used: " in printed
    json.dumps(found)  # the summary is JSON as it stands


def test_the_checker_counts_an_acknowledged_value_that_is_not_stored(platform: Platform, base_url: str) -> None:
    assert platform.database_url is not None
    prefix = f"chk-{os.urandom(3).hex()}"
    ids = asyncio.run(device_api.create_devices(base_url, prefix, 1))
    (token,) = ids
    since_ms = time.time_ns() // 1_000_000
    for n in (1, 2):
        answer = httpx.post(f"{base_url}/api/v1/{token}/telemetry",
                            json={"ts": since_ms + n, "values": {"pulseCounter": n}})
        assert answer.status_code == 200
    checked = asyncio.run(device_api.stored(platform.database_url, ids, {token: [1, 2, 3]}, since_ms))
    assert (checked["db_acked"], checked["db_stored"], checked["lost"]) == (3, 2, 1)
    assert checked["lost_samples"] == {token: [3]}
    latest = device_api.rest_latest(base_url, ids, {token: [1, 2, 3]}, samples=1)
    assert (latest["rest_checked_devices"], latest["rest_latest_ok"]) == (1, 0)


@pytest.mark.slow
def test_the_command_starts_its_own_platform_and_prints_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "THINGSRAY_"))}
    args = ["--devices", "2", "--window", "2", "--duration", "1", "--workers", "1", "--samples", "2",
            "--json", str(out)]
    if server := os.environ.get("THINGSRAY_TEST_DATABASE_URL"):
        args += ["--database-url", server]
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "device_api_ingest.py"), *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert [r["protocol"] for r in summary["results"]] == ["coap", "http"]
    assert all(r["lost"] == 0 and r["msg_per_s"] > 0 and r["baseline_msg_per_s"] > 0 for r in summary["results"])
    assert "baseline msg/s" in done.stdout and json.loads(done.stdout.splitlines()[-1]) == summary
