"""The WebSocket fan-out benchmark on the session's platform, small: it counts every value at every
subscriber in both shapes, and ``thingsray bench`` reports it as rows."""

from __future__ import annotations

from thingsray.benchmarks import ws_fanout
from thingsray.benchmarks.command import rows, table
from thingsray.platform import Platform


def test_every_subscriber_gets_every_value_in_both_shapes(platform: Platform, base_url: str, mqtt_port: int) -> None:
    assert platform.database_url is not None
    cases = [ws_fanout.Case("one", 3, rate=20, duration=1, procs=2), ws_fanout.Case("many", 3, rate=30, duration=1)]
    found = ws_fanout.run_all(base_url, mqtt_port, platform.database_url, cases, note=lambda _: None)
    assert [r.get("failed") for r in found] == [None, None]
    one, many = found
    assert (one["devices"], one["values_per_subscriber"], one["expected"]) == (1, 20, 60)
    assert (many["devices"], many["values_per_subscriber"], many["expected"]) == (3, 10, 30)
    for result in found:
        assert result["acked"] == result["published"]
        assert result["delivered"] == result["expected"] and result["missing"] == 0
        assert result["complete_subscribers"] == result["subscribers"]
        assert result["duplicates"] == result["closed_sockets"] == result["out_of_order"] == 0
        assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
        assert result["updates_per_s"] > 0 and len(result["loadavg_before"]) == 3

    printed = ws_fanout.table(found)
    assert "p99 ms" in printed and "60/60" in printed and "30/30" in printed
    reported = [r for r in rows({"ws": {"cases": found, "lost": 0}}) if r["scenario"] == "ws"]
    assert [r["met"] for r in reported if r["figure"].endswith("(of expected)")] == [True, True]
    assert "ws" in table(reported)
