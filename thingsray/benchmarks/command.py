"""``thingsray bench``: start a platform of its own (or use a running one), run the scenarios, print
every figure beside its baseline from the same run, and stop everything it started (also on Ctrl-C)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from thingsray.benchmarks import scenarios as sc

SCENARIOS = ("ceiling", "ingest", "latency", "outside", "actors", "sessions", "rest", "ws", "scale")
QUICK = {"devices": 20, "duration": 2.0, "actors": 2_000, "sessions": 50, "session_hold": 2.0,
         "rest_duration": 2, "rest_connections": 16, "rest_samples": 5,
         "outside_devices": 10, "outside_messages": 50, "matrix": "1x1,2x2", "ws_subscribers": "1,10"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated of {', '.join(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (20 devices, 2 s, 2,000 actors, "
                        "50 sessions) unless sizes are given")
    parser.add_argument("--devices", type=int, help="ingest devices (default 200)")
    parser.add_argument("--window", type=int, help="QoS 1 messages in flight per device (default 10)")
    parser.add_argument("--duration", type=float, help="seconds of publishing per run (default 10)")
    parser.add_argument("--workers", type=int, help="generator processes (default 2)")
    parser.add_argument("--actors", type=int, help="device actors to activate (default 1,000,000)")
    parser.add_argument("--sessions", type=int, help="concurrent MQTT sessions (default 10,000)")
    parser.add_argument("--shards", type=int, help="shard processes of the bench platform (default: Settings)")
    parser.add_argument("--mqtt-transports", type=int, help="MQTT transport processes (default: Settings)")
    parser.add_argument("--outside-devices", type=int, help="devices driven by mosquitto_pub (default 100)")
    parser.add_argument("--outside-messages", type=int, help="messages per mosquitto_pub device (default 1,000)")
    parser.add_argument("--matrix", help="shards x transports of the scale scenario (default 1x1,2x1,1x2,2x2)")
    parser.add_argument("--ws-subscribers", help="WebSocket subscriber counts of the ws scenario (default 1,100,1000)")
    parser.add_argument("--ws-rate", type=float, help="messages/s of the ws scenario's one device (default 20)")
    parser.add_argument("--ws-many-rate", type=float, help="messages/s of the ws scenario's N devices in all "
                        "(default 200)")
    parser.add_argument("--database-url", help="a PostgreSQL server where a throwaway database is created and "
                        "dropped (default: the embedded PostgreSQL in a temp dir); with --target-* the "
                        "running platform's own database")
    parser.add_argument("--target-mqtt", help="HOST:PORT of a running thingsray's MQTT (loopback); with --target-rest")
    parser.add_argument("--target-rest", help="base URL of the running thingsray's REST API")
    parser.add_argument("--json", type=Path, help="also write the JSON summary here")


def _plan(args: argparse.Namespace) -> sc.Plan:
    plan = sc.Plan(**(QUICK if args.quick else {}))
    for name in ("devices", "window", "duration", "workers", "actors", "sessions", "outside_devices",
                 "outside_messages", "matrix", "ws_subscribers", "ws_rate", "ws_many_rate"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    if args.quick and args.duration is not None:
        plan.session_hold = plan.rest_duration = max(1, int(args.duration))
    return plan


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f} s] {message}", flush=True)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: through the finally blocks


def run(args: argparse.Namespace) -> int:
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(chosen) - set(SCENARIOS):
        print(f"thingsray bench: unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if bool(args.target_mqtt) != bool(args.target_rest) or (args.target_mqtt and not args.database_url):
        print("thingsray bench: --target-mqtt and --target-rest go together, with --database-url of that "
              "platform's database", file=sys.stderr)
        return 2
    plan = _plan(args)
    say = Progress()
    signal.signal(signal.SIGTERM, _interrupt)
    results: dict[str, dict[str, Any]] = {}
    on_platform = [s for s in chosen if s != "scale"]
    try:
        if on_platform:
            with _platform(args, say) as target:
                _run_scenarios(on_platform, target, plan, say, results)
        if "scale" in chosen:  # platforms of its own, after the bench platform stopped
            _phase("scale", lambda: sc.scale(plan, args.database_url if not args.target_mqtt else None, say),
                   say, results)
    except KeyboardInterrupt:
        say("interrupted: stopping what was started")
        raise
    summary = {"command": "thingsray bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else []),
               "plan": plan.__dict__, "cpus": os.cpu_count(), "elapsed_s": round(time.monotonic() - say.started, 1),
               "scenarios": results, "rows": rows(results)}
    print(table(summary["rows"]))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, default=str))  # the rows are the table
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    lost = sum(int(r.get("db_lost", 0) or 0) + int(r.get("lost", 0) or 0) + int(r.get("failed_devices", 0) or 0)
               for r in results.values())
    return 1 if lost else 0


def _phase(name: str, fn: Any, say: Progress, results: dict[str, dict[str, Any]]) -> None:
    started = time.monotonic()
    say(f"{name}: running")
    try:
        results[name] = fn()
    except sc.Skipped as exc:
        results[name] = {"skipped": str(exc)}
        say(f"{name}: skipped ({exc})")
        return
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        results[name] = {"failed": f"{type(exc).__name__}: {exc}"}
        say(f"{name}: FAILED {type(exc).__name__}: {exc}")
        return
    say(f"{name}: done in {time.monotonic() - started:.1f} s")


def _run_scenarios(chosen: list[str], target: sc.Target, plan: sc.Plan, say: Progress,
                   results: dict[str, dict[str, Any]]) -> None:
    def phase(name: str, fn: Any, needed: bool = False) -> None:
        if name in chosen or needed:
            _phase(name, fn, say, results)

    phase("ingest", lambda: sc.ingest(target, plan), needed="latency" in chosen)  # latency runs at half its max
    half = (results.get("ingest", {}).get("msg_per_s") or 0) / 2 or None
    phase("ceiling", lambda: sc.ceiling(plan, half if "latency" in chosen else None))
    if half:
        phase("latency", lambda: sc.latency(target, plan, half))
    phase("outside", lambda: sc.outside_load(target, plan))
    phase("rest", lambda: sc.rest(target, plan))
    phase("sessions", lambda: sc.sessions(target, plan, say))
    phase("actors", lambda: sc.actors(target, plan, say))
    phase("ws", lambda: sc.ws(target, plan, say))


class _platform:
    """The bench platform (fresh database, private Ray on 127.0.0.1, free ports), or the target given."""

    def __init__(self, args: argparse.Namespace, say: Progress) -> None:
        self.args, self.say = args, say
        self.platform: Any = None
        self.tmp: str | None = None
        self.dropped: tuple[str, str] | None = None

    def __enter__(self) -> sc.Target:
        args = self.args
        if args.target_mqtt:
            host, _, port = args.target_mqtt.rpartition(":")
            if host not in ("127.0.0.1", "localhost"):
                raise SystemExit("thingsray bench: --target-mqtt must be on 127.0.0.1")
            return sc.Target(int(port), args.target_rest.rstrip("/"), args.database_url)
        from thingsray.benchmarks.fleet import create_database, free_port
        from thingsray.config import Settings
        from thingsray.platform import Platform, use_loopback_ray

        use_loopback_ray()
        self.tmp = tempfile.mkdtemp(prefix="thingsray-bench-")
        database_url = None
        try:
            if args.database_url:
                database_url, name = asyncio.run(create_database(args.database_url))
                self.dropped = (args.database_url, name)
                self.say(f"platform: throwaway database {name}")
            for attempt in (1, 2):  # a free port can be taken by another process before Serve binds it
                overrides: dict[str, Any] = {
                    "data_dir": self.tmp, "host": "127.0.0.1", "http_port": free_port(), "mqtt_port": free_port(),
                    "coap_port": free_port(), "database_url": database_url, "demo": True, "log_level": "WARNING",
                    "shards": args.shards, "mqtt_transports": args.mqtt_transports}
                settings = Settings.load(overrides, environ={})
                platform = Platform(settings, progress=lambda m: self.say(f"platform: {m}"))
                try:
                    platform.start()  # stops what it started when it fails
                except Exception as exc:
                    if attempt == 2 or "bind" not in str(exc).lower():
                        raise
                    self.say(f"platform: {exc}; once more on other ports")
                    continue
                self.platform = platform
                break
        except BaseException:
            self.__exit__()
            raise
        p = self.platform
        return sc.Target(p.mqtt_port, p.http_url, p.database_url, settings.shards, p.shard_handles,
                         p.transport_handles, settings)

    def __exit__(self, *_: object) -> None:
        if self.platform is not None:
            self.say("platform: stopping")
            self.platform.stop()
            self.platform = None
        if self.dropped is not None:
            from thingsray.benchmarks.fleet import drop_database

            asyncio.run(drop_database(*self.dropped))
            self.dropped = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


# --- the report ------------------------------------------------------------------------------
def _ratio(value: Any, baseline: Any) -> float | None:
    if isinstance(value, int | float) and isinstance(baseline, int | float) and baseline:
        return round(value / baseline, 3)
    return None


def rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """(scenario, figure, value, baseline, ratio, target, met) for every figure measured."""
    out: list[dict[str, Any]] = []

    def row(scenario: str, figure: str, value: Any, baseline: Any = None, target: str = "",
            met: bool | None = None, ratio: float | None = None) -> None:
        out.append({"scenario": scenario, "figure": figure, "value": value, "baseline": baseline,
                    "ratio": ratio if ratio is not None else _ratio(value, baseline), "target": target, "met": met})

    for name, r in results.items():
        if "skipped" in r or "failed" in r:
            row(name, "skipped" if "skipped" in r else "FAILED", r.get("skipped") or r.get("failed"))
    ceiling = results.get("ceiling", {})
    if (r := results.get("ingest", {})) and "msg_per_s" in r:
        base = ceiling.get("msg_per_s")
        ratio = _ratio(r["msg_per_s"], base)
        row("ingest", "msg/s (baseline: mosquitto)", r["msg_per_s"], base, ">= 20,000 and >= 0.5 x ceiling",
            r["msg_per_s"] >= 20_000 and (ratio is None or ratio >= 0.5))
        row("ingest", "data points/s", r["data_points_per_s"], ceiling.get("data_points_per_s"))
        row("ingest", "p50 ms", r["p50_ms"], ceiling.get("p50_ms"))
        row("ingest", "p99 ms", r["p99_ms"], ceiling.get("p99_ms"))
        row("ingest", "lost (of acked)", r.get("db_lost"), r.get("acked"), "0", r.get("db_lost") == 0)
        row("ingest", "REST-readable devices (of sampled)", r.get("rest_complete_devices"),
            r.get("rest_checked_devices"), "all", r.get("rest_complete_devices") == r.get("rest_checked_devices"))
    if (r := results.get("ceiling", {})) and "msg_per_s" in r:
        row("ceiling", "mosquitto msg/s", r["msg_per_s"])
        row("ceiling", "consumer received (of acked)", r.get("consumer_received"), r.get("acked"))
    if (r := results.get("latency", {})) and "p99_ms" in r:
        row("latency", f"p50 ms at {r['rate_target']:,} msg/s", r["p50_ms"], ceiling.get("half_p50_ms"))
        row("latency", "p99 ms at half rate", r["p99_ms"], ceiling.get("half_p99_ms"), "<= 50 ms", r["p99_ms"] <= 50)
        row("latency", "lost (of acked)", r.get("db_lost"), r.get("acked"), "0", r.get("db_lost") == 0)
    if (r := results.get("outside", {})) and "msg_per_s" in r:
        base = r.get("ceiling_msg_per_s")
        row("outside", "mosquitto_pub msg/s (baseline: mosquitto)", r["msg_per_s"], base, ">= 0.5 x ceiling",
            None if base is None else r["msg_per_s"] >= 0.5 * base)
        row("outside", "failed generator processes", r["failed_devices"], r["devices"], "0", r["failed_devices"] == 0)
        row("outside", "lost (of acked)", r.get("db_lost"), r.get("acked"), "0", r.get("db_lost") == 0)
        row("outside", "REST-readable devices (of all)", r.get("rest_complete_devices"),
            r.get("rest_checked_devices"), "all", r.get("rest_complete_devices") == r.get("rest_checked_devices"))
    if (r := results.get("scale", {})) and "shapes" in r:
        shapes = [k for k in r if k != "shapes"]
        first = next((r[k].get("msg_per_s") for k in shapes if isinstance(r[k], dict)), None)
        for shape in shapes:
            s, t = shape.split("x")
            row("scale", f"ingest msg/s, {s} shard(s) x {t} transport(s) (baseline: first shape)",
                r[shape].get("msg_per_s", r[shape].get("failed")), first)
    if (r := results.get("actors", {})) and "rss_growth_mib" in r:
        row("actors", f"shard RSS growth MiB, {r['actors']:,} actors (baseline: budget)", r["rss_growth_mib"],
            r["budget_mib"], "<= 2 GiB per 1,000,000", r["rss_growth_mib"] <= r["budget_mib"])
        row("actors", "bytes per actor", r["bytes_per_actor"], 2 * 1024**3 / 1_000_000)
        row("actors", "activations/s", r["activations_per_s"])
        row("actors", "failed activations", r["failures"], r["actors"], "0", r["failures"] == 0)
    if (r := results.get("sessions", {})) and "rss_growth_mib" in r:
        row("sessions", f"transport RSS growth MiB, {r['connected']:,} sessions (baseline: budget)",
            r["rss_growth_mib"], r["budget_mib"], "<= 1 GiB per 10,000", r["rss_growth_mib"] <= r["budget_mib"])
        row("sessions", "bytes per session", r["bytes_per_session"], 1024**3 / 10_000)
        row("sessions", "lost (sessions without an acked message)", r["lost"], r["sessions"], "0", r["lost"] == 0)
    for case in results.get("ws", {}).get("cases", ()):
        name = f"{case['shape']} device(s), {case['subscribers']:,} socket(s)"
        if "failed" in case:
            row("ws", f"{name}: FAILED", case["failed"])
            continue
        row("ws", f"{name}: p50 ms at {case['publish_rate']:,.0f} msg/s", case["p50_ms"])
        row("ws", f"{name}: p99 ms", case["p99_ms"])
        row("ws", f"{name}: updates/s delivered", case["updates_per_s"])
        row("ws", f"{name}: values delivered (of expected)", case["delivered"], case["expected"], "all",
            case["missing"] == 0 and case["closed_sockets"] == 0)
    if (r := results.get("rest", {})) and "serve_req_per_s" in r:
        ratio = _ratio(r["serve_req_per_s"], r["uvicorn_req_per_s"])
        row("rest", "latest telemetry req/s (baseline: uvicorn)", r["serve_req_per_s"], r["uvicorn_req_per_s"],
            ">= 0.5 x uvicorn", ratio is not None and ratio >= 0.5)
        row("rest", "p50 ms", r["serve_p50_ms"], r["uvicorn_p50_ms"])
        row("rest", "p99 ms", r["serve_p99_ms"], r["uvicorn_p99_ms"])
        row("rest", "errors", r["serve_errors"], r["uvicorn_errors"])
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value)
    return text if len(text) <= 70 else text[:67] + "..."


def table(found: list[dict[str, Any]]) -> str:
    head = ["scenario", "figure", "value", "baseline", "ratio", "target", "met?"]
    lines = [head] + [[_cell(r[k]) if k != "target" else r[k] or "" for k in
                       ("scenario", "figure", "value", "baseline", "ratio", "target", "met")] for r in found]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 or i >= 5 else c.rjust(w) for i, (c, w) in
                               enumerate(zip(line, widths, strict=True))) for line in lines)
