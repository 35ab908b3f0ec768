"""An outside load generator: Mosquitto's own ``mosquitto_pub`` (C, libmosquitto), one process per
device, each publishing the lines of a file at QoS 1 (``-l``). It is not the project's code, so
its figures cannot flatter our client; it exits 0 only after the broker acknowledged its last
message, so "every process exited 0" means "every line was acknowledged".

Each device's lines carry ThingsBoard's smart-meter payload with its own ``ts`` and
``pulseCounter`` 1..n, so the database and the REST API can be checked value by value afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TOPIC = "v1/devices/me/telemetry"


def find_mosquitto_pub() -> str | None:
    return shutil.which("mosquitto_pub")


@dataclass
class OutsideResult:
    devices: int
    messages_per_device: int
    elapsed_s: float
    failed: dict[str, str] = field(default_factory=dict)
    """token -> what the failing process printed."""

    @property
    def sent(self) -> int:
        return self.devices * self.messages_per_device

    @property
    def acked(self) -> int:
        return (self.devices - len(self.failed)) * self.messages_per_device

    def summary(self) -> dict[str, object]:
        return {"generator": "mosquitto_pub -l -q 1 (one process per device)", "devices": self.devices,
                "messages_per_device": self.messages_per_device, "acked": self.acked,
                "elapsed_s": round(self.elapsed_s, 2),
                "msg_per_s": round(self.acked / self.elapsed_s, 1) if self.elapsed_s else 0.0,
                "data_points_per_s": round(3 * self.acked / self.elapsed_s, 1) if self.elapsed_s else 0.0,
                "failed_devices": len(self.failed), "failures": dict(list(self.failed.items())[:3])}


def payload_lines(count: int, first_ts: int) -> str:
    """``count`` smart-meter messages, one a line, ts ``first_ts + i`` and pulseCounter ``i`` (1..count)."""
    return "".join(f'{{"ts":{first_ts + i},"values":{{"pulseCounter":{i},"leakage":false,'
                   f'"batteryLevel":{50 + i % 50}}}}}\n' for i in range(1, count + 1))


def run(port: int, tokens: list[str], messages_per_device: int, first_ts: int, *,
        binary: str | None = None, timeout_s: float = 600.0) -> OutsideResult:
    """Start one ``mosquitto_pub`` per token at once and wait for all of them; the clock runs from
    the first start to the last exit."""
    binary = binary or find_mosquitto_pub()
    if binary is None:
        raise RuntimeError("no mosquitto_pub binary (apt-get install mosquitto-clients)")
    lines = payload_lines(messages_per_device, first_ts)
    with tempfile.TemporaryDirectory(prefix="bench-outside-") as tmp:
        source = Path(tmp) / "lines"
        source.write_text(lines)
        procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        started = time.monotonic()
        try:
            for token in tokens:
                with source.open("rb") as stdin:
                    procs.append((token, subprocess.Popen(
                        [binary, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", TOPIC, "-u", token,
                         "-i", f"outside-{token}", "-l"],
                        stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
            failed: dict[str, str] = {}
            deadline = started + timeout_s
            for token, proc in procs:
                try:
                    _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                    failed[token] = f"still running after {timeout_s:.0f} s"
                    continue
                if proc.returncode != 0:
                    failed[token] = f"exit {proc.returncode}: {err.decode(errors='replace').strip()[:200]}"
            elapsed = time.monotonic() - started
        finally:
            for _, proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return OutsideResult(len(tokens), messages_per_device, elapsed, failed)
