"""Real SNMP agents for tests: snmpsim's command responder on 127.0.0.1, an ephemeral UDP port, and
.snmprec data files the test writes (one per community; a V3 context name is the community too)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

START_WAIT_S = 60.0
"""A bound on waiting for the responder to index its data and bind (never a speed assertion)."""


def responder() -> str:
    """The snmpsim command responder, or a skip saying what to install."""
    try:
        import pysmi  # noqa: F401  (snmpsim 1.2 imports it without declaring it)
        import snmpsim  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"snmpsim is not installed ({exc}): pip install 'snmpsim>=1.2' pysmi")
    found = Path(sys.executable).parent / "snmpsim-command-responder"
    path = str(found) if found.exists() else shutil.which("snmpsim-command-responder")
    if not path:
        pytest.skip("snmpsim-command-responder is not on the PATH: pip install 'snmpsim>=1.2'")
    return path


class V3User:
    """An SNMPv3 USM user of the agent, with snmpsim's protocol names (SHA, AES256BLMT, ...)."""

    def __init__(self, name: str, auth_key: str, auth_proto: str, priv_key: str, priv_proto: str) -> None:
        self.name, self.auth_key, self.auth_proto = name, auth_key, auth_proto
        self.priv_key, self.priv_proto = priv_key, priv_proto


class SnmpSimAgent:
    """``records``: community -> .snmprec lines (``oid|tag|value``). Use as a context manager."""

    ENGINE_ID = "8000000001020304"

    def __init__(self, records: dict[str, str], users: tuple[V3User, ...] = ()) -> None:
        self.records = records
        self.users = users
        self.port = 0
        self._dir = Path(tempfile.mkdtemp(prefix="snmpsim-"))
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SnmpSimAgent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        data = self._dir / "data"
        data.mkdir()
        for community, lines in self.records.items():
            (data / f"{community}.snmprec").write_text(lines.strip() + "\n")
        args = [responder(), f"--cache-dir={self._dir / 'cache'}", f"--v3-engine-id={self.ENGINE_ID}",
                f"--data-dir={data}", "--agent-udpv4-endpoint=127.0.0.1:0"]
        for user in self.users or (V3User("simulator", "auctoritas", "MD5", "privatus", "DES"),):
            args += [f"--v3-user={user.name}", f"--v3-auth-key={user.auth_key}", f"--v3-auth-proto={user.auth_proto}",
                     f"--v3-priv-key={user.priv_key}", f"--v3-priv-proto={user.priv_proto}"]
        env = dict(os.environ)
        if os.geteuid() == 0:
            env["SNMPSIM_ALLOW_ROOT"] = "true"  # else it insists on dropping to another user
        with open(self._dir / "responder.log", "wb") as log:  # the child keeps its own descriptor
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.port = self._bound_port()

    def _bound_port(self) -> int:
        assert self._process is not None
        process = psutil.Process(self._process.pid)
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"snmpsim exited with {self._process.returncode}:\n{self.log()}")
            bound = [c.laddr.port for c in process.net_connections(kind="udp4") if c.laddr]
            if bound:
                return bound[0]
            time.sleep(0.05)
        raise RuntimeError(f"snmpsim did not bind within {START_WAIT_S} s:\n{self.log()}")

    def log(self) -> str:
        path = self._dir / "responder.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None
        shutil.rmtree(self._dir, ignore_errors=True)


class DeadAgent:
    """A UDP port on 127.0.0.1 where nothing ever answers: every request to it times out."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]

    def close(self) -> None:
        self._socket.close()


async def read_oid(agent: SnmpSimAgent, oid: str) -> str:
    """What the agent holds at ``oid`` now, as text (read with our own client, v2c)."""
    from thingsray.transports.snmp import SnmpClient, SnmpDeviceConfig
    from thingsray.transports.snmp.config import oid_tuple
    from thingsray.transports.snmp.values import snmp_text

    client = SnmpClient()
    try:
        remote = client.agent(SnmpDeviceConfig.from_json({"host": "127.0.0.1", "port": agent.port}), 2000, 1)
        return snmp_text((await remote.get([oid_tuple(oid)])).values[oid_tuple(oid)])
    finally:
        client.close()
