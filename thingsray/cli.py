"""The ``thingsray`` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from thingsray import __version__
from thingsray.config import FLAGS, ConfigError, Settings

DEMO_ACCOUNTS = (("sysadmin@thingsboard.org", "sysadmin"), ("tenant@thingsboard.org", "tenant"),
                 ("customer@thingsboard.org", "customer"))


def _add_platform_flags(parser: argparse.ArgumentParser) -> None:
    """Flags default to None so that the environment (THINGSRAY_*) and then the default apply."""
    parser.add_argument("--data-dir", help="where the embedded database and state live "
                        "(THINGSRAY_DATA_DIR; default: the per-user data directory)")
    parser.add_argument("--host", help="bind address of every public listener (THINGSRAY_HOST; default 0.0.0.0)")
    parser.add_argument("--http-port", type=int, help="REST and WebSocket port (THINGSRAY_HTTP_PORT; default 8080)")
    parser.add_argument("--mqtt-port", type=int, help="MQTT port (THINGSRAY_MQTT_PORT; default 1883)")
    parser.add_argument("--coap-port", type=int, help="CoAP port (THINGSRAY_COAP_PORT; default 5683)")
    parser.add_argument("--mqtt-tls-port", type=int, help="MQTT over TLS port, used with a certificate "
                        "(THINGSRAY_MQTT_TLS_PORT; default 8883)")
    parser.add_argument("--mqtt-tls-cert", help="PEM certificate (chain) that turns MQTT over TLS on "
                        "(THINGSRAY_MQTT_TLS_CERT; needs the key; THINGSRAY_MQTT_TLS_CA adds client certificates)")
    parser.add_argument("--mqtt-tls-key", help="PEM private key of the MQTT TLS certificate (THINGSRAY_MQTT_TLS_KEY; "
                        "an encrypted key takes THINGSRAY_MQTT_TLS_KEY_PASSWORD)")
    parser.add_argument("--demo", action=argparse.BooleanOptionalAction, default=None,
                        help="create ThingsBoard's demo tenant, customers, users and devices (THINGSRAY_DEMO)")
    parser.add_argument("--address", help="join this running Ray cluster (THINGSRAY_ADDRESS); without it a "
                        "private Ray starts on 127.0.0.1 and any RAY_ADDRESS is ignored")
    parser.add_argument("--database-url", help="PostgreSQL URL (THINGSRAY_DATABASE_URL; default: embedded)")
    parser.add_argument("--redis-url", help="Redis URL for shared caches and revocations (THINGSRAY_REDIS_URL)")
    parser.add_argument("--serve-replicas", type=int, help="REST replicas (THINGSRAY_SERVE_REPLICAS; default 1)")
    parser.add_argument("--bridge-config", help="JSON file of bridges that subscribe to external MQTT brokers and "
                        "map their messages to devices (THINGSRAY_BRIDGE_CONFIG; README: Bridging an external "
                        "MQTT broker)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thingsray", description=__doc__)
    parser.add_argument("--version", action="version", version=f"thingsray {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run the platform in the foreground until Ctrl-C or SIGTERM")
    _add_platform_flags(up)
    status = commands.add_parser("status", help="show the running platform: nodes, the partition table, shards "
                                 "(partitions, active actors) and transports (sessions)")
    status.add_argument("--data-dir", help="the data directory of a single-machine `up` (THINGSRAY_DATA_DIR)")
    status.add_argument("--address", help="a Ray cluster running thingsray, e.g. auto on its head (THINGSRAY_ADDRESS)")
    status.add_argument("--json", action="store_true", help="print JSON")
    bench = commands.add_parser("bench", help="run the performance scenarios on a platform of its own and print "
                                "every figure beside its baseline")
    from thingsray.benchmarks.command import add_arguments

    add_arguments(bench)
    return parser


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    return Settings.load({name: getattr(args, name, None) for name in FLAGS}, environ=environ)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def banner(settings: Settings, http_url: str, mqtt_port: int | None = None,
           mqtt_tls_port: int | None = None, coap_port: int | None = None) -> list[str]:
    """What ``up`` prints once the platform answers: URLs, demo accounts, exposure warnings."""
    lines = [f"REST API      {http_url}/api   (Swagger UI {http_url}/swagger-ui)",
             f"health        {http_url}/api/health"]
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    if mqtt_port is not None:
        lines.append(f"MQTT          mqtt://{host}:{mqtt_port}   (devices: v1/devices/me/telemetry)")
    if mqtt_tls_port is not None:
        lines.append(f"MQTT over TLS mqtts://{host}:{mqtt_tls_port}")
    if coap_port is not None:
        lines.append(f"CoAP          coap://{host}:{coap_port}   (devices: /api/v1/{{token}}/telemetry)")
    lines.append(f"logs          {Path(settings.data_dir).expanduser() / 'logs'}   (rule chains' Log nodes, shards)")
    if settings.demo:
        lines.append("demo accounts " + ", ".join(f"{user} / {password}" for user, password in DEMO_ACCOUNTS))
        if not settings.loopback_only:
            lines.append(f"WARNING: demo passwords are active and the platform listens on {settings.host}: "
                         "anyone who reaches this machine can log in; change them or bind --host 127.0.0.1")
    elif not settings.loopback_only:
        lines.append(f"listening on {settings.host}: change the sysadmin password (sysadmin) before exposing it")
    return lines


def cmd_up(settings: Settings) -> int:
    from thingsray.platform import Platform

    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        # only note it: a handler that takes a lock (Event.set) deadlocks when the signal lands while
        # the main thread holds that lock (in Event.wait), and `up` would never stop
        received.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    platform = Platform(settings, progress=_say)
    _say(f"thingsray {__version__} starting (data in {settings.data_path})")
    try:
        platform.start()
    except ConfigError as exc:
        _say(f"error: {exc}")
        return 2
    try:
        for line in banner(settings, platform.http_url or "", platform.mqtt_port, platform.mqtt_tls_port,
                           platform.coap_port):
            _say(line)
        _say("ready; Ctrl-C stops")
        while not received:
            platform.supervise()
            for _ in range(10):
                if received:
                    break
                time.sleep(0.1)
        _say(f"stopping ({signal.Signals(received[0]).name})")
    finally:
        platform.stop()
        _say("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from thingsray.benchmarks.command import run

        return run(args)
    try:
        if args.command == "status":  # reads a platform: the settings of starting one do not apply
            address = args.address
            args.address = None
            settings = settings_from(args).replace(address=address)
        else:
            settings = settings_from(args)
    except ConfigError as exc:
        print(f"thingsray: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("thingsray").setLevel(settings.log_level.upper())
    if args.command == "status":
        from thingsray.status import run as status

        try:
            return status(settings, as_json=args.json)
        except ConfigError as exc:
            print(f"thingsray: {exc}", file=sys.stderr)
            return 2
    if args.command == "up":
        if not settings.address:
            from thingsray.platform import use_loopback_ray

            use_loopback_ray()
        return cmd_up(settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
