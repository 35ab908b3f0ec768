"""``thingsray up`` as an operator runs it: a real process with the embedded PostgreSQL and a
private Ray, its output, its sockets, SIGTERM, a restart on the same data directory.

One ``up`` serves most tests (a start costs about 15 s here); tests run in file order and the
SIGTERM test stops it. Every wait is bounded, and teardown kills whatever the process left.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from tests.conftest import TENANT_ADMIN, free_port, unique
from thingsray.cli import banner
from thingsray.config import Settings

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 120.0
DEMO_CUSTOMERS = ("Customer A", "Customer B", "Customer C")

slow = pytest.mark.slow


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of the test session's THINGSRAY_* or RAY_* settings
    (so the embedded database is used and ``up`` must keep Ray on loopback by itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THINGSRAY_", "RAY_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class UpProcess:
    """One ``python -m thingsray up`` with its output in a file."""

    def __init__(self, data_dir: Path, log: Path, args: list[str], env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.log = log
        self.seen: dict[int, psutil.Process] = {}
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "thingsray", "up", "--data-dir", str(data_dir), *args],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, url: str) -> None:
        """Until /api/health answers and ``up`` printed its banner, or the process died."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(f"thingsray up exited with {self.popen.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{url}/api/health", timeout=5).status_code == 200 and "ready;" in self.output():
                    self.processes()  # remember them while they run, for the leftover check
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        pytest.fail(f"thingsray up did not become ready within {READY_TIMEOUT_S:.0f} s:\n{self.output()}")

    def processes(self) -> list[psutil.Process]:
        """The ``up`` process, its descendants (Ray's GCS, raylet, workers) and the embedded
        PostgreSQL it started (a daemon, so found by its data directory)."""
        found: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(self.popen.pid)
            found[root.pid] = root
            found.update((p.pid, p) for p in root.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
        marker = str(self.data_dir)
        for process in psutil.process_iter(["cmdline"]):
            if marker in " ".join(process.info["cmdline"] or ()):
                found[process.pid] = process
                try:
                    found.update((p.pid, p) for p in process.children(recursive=True))
                except psutil.NoSuchProcess:
                    pass
        self.seen.update(found)
        return [p for p in found.values() if alive(p)]

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.processes()
            self.popen.send_signal(signum)
        return self.popen.wait(timeout=STOP_TIMEOUT_S)

    def leftovers(self, wait_s: float = 0.0) -> list[psutil.Process]:
        """What is still running of all it ever started, after waiting up to ``wait_s`` for them."""
        deadline = time.monotonic() + wait_s
        while True:
            self.processes()
            running = [p for p in self.seen.values() if alive(p)]
            if not running or time.monotonic() >= deadline:
                return running
            time.sleep(0.5)

    def kill(self) -> None:
        """Teardown: nothing this process started survives the test, whatever happened."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=30)
        for process in self.leftovers():
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass


def listening_sockets(processes: list[psutil.Process]) -> list[tuple[str, str, int]]:
    """(process name, ip, port) of every TCP listener and unconnected UDP socket."""
    sockets = []
    for process in processes:
        try:
            for conn in process.net_connections(kind="inet"):
                listening = conn.status == psutil.CONN_LISTEN or (conn.type == socket.SOCK_DGRAM and not conn.raddr)
                if listening and conn.laddr:
                    sockets.append((process.name(), conn.laddr.ip, conn.laddr.port))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return sockets


class FirstUp:
    def __init__(self, up: UpProcess, url: str, ignored_env_port: int, mqtt_port: int) -> None:
        self.up = up
        self.url = url
        self.ignored_env_port = ignored_env_port
        self.mqtt_port = mqtt_port
        self.returncode: int | None = None
        self.leftovers: list[psutil.Process] = []

    def stop_once(self) -> int:
        if self.returncode is None:
            self.returncode = self.up.stop(signal.SIGTERM)
            self.leftovers = self.up.leftovers(wait_s=30.0)
        return self.returncode


@pytest.fixture(scope="module")
def first_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstUp]:
    """``up --demo`` on a fresh data directory, with a stray RAY_ADDRESS and a THINGSRAY_HTTP_PORT
    that the --http-port flag overrides."""
    data_dir = tmp_path_factory.mktemp("up")
    http_port, env_port, mqtt_port = free_port(), free_port(), free_port()
    env = child_env(RAY_ADDRESS="127.0.0.1:1", THINGSRAY_HTTP_PORT=str(env_port))
    up = UpProcess(data_dir, data_dir.parent / f"{data_dir.name}-first.log",
                   ["--host", "127.0.0.1", "--http-port", str(http_port), "--mqtt-port", str(mqtt_port),
                    "--coap-port", str(free_port()), "--demo"], env)
    try:
        url = f"http://127.0.0.1:{http_port}"
        up.wait_ready(url)
        yield FirstUp(up, url, env_port, mqtt_port)
    finally:
        up.kill()


@pytest.fixture(scope="module")
def customer_of_first_run(first_up: FirstUp) -> dict:
    token = httpx.post(f"{first_up.url}/api/auth/login",
                       json={"username": TENANT_ADMIN[0], "password": TENANT_ADMIN[1]}).json()["token"]
    created = httpx.post(f"{first_up.url}/api/customer", json={"title": unique("Kept customer")},
                         headers={"X-Authorization": f"Bearer {token}"})
    assert created.status_code == 200, created.text
    return created.json()


@slow
def test_up_reports_progress_and_urls_and_answers_a_demo_login(first_up: FirstUp):
    output = first_up.up.output()
    from thingsray.storage.migrations import available

    applied = f"migrations: {len(available())} applied"  # a fresh data dir gets every migration
    for stage in ("database: starting the embedded PostgreSQL", applied, "demo data: loaded",
                  "ray: starting a private Ray on 127.0.0.1", "actors: starting", "mqtt: listening on 127.0.0.1:",
                  "serve: ready", "ready; Ctrl-C stops"):
        assert stage in output
    assert f"{first_up.url}/api " in output
    assert f"{first_up.url}/api/health" in output
    assert "WARNING: demo passwords" not in output  # loopback only
    login = httpx.post(f"{first_up.url}/api/auth/login",
                       json={"username": TENANT_ADMIN[0], "password": TENANT_ADMIN[1]})
    assert login.status_code == 200, login.text
    me = httpx.get(f"{first_up.url}/api/auth/user", headers={"X-Authorization": f"Bearer {login.json()['token']}"})
    assert me.json()["email"] == TENANT_ADMIN[0]


@slow
def test_nothing_up_started_listens_beyond_loopback(first_up: FirstUp):
    processes = first_up.up.processes()
    names = {p.name() for p in processes}
    assert {"gcs_server", "raylet", "postgres"} <= names, names  # Ray and the database were found
    sockets = listening_sockets(processes)
    assert ("127.0.0.1", int(first_up.url.rsplit(":", 1)[1])) in {(ip, port) for _, ip, port in sockets}
    exposed = [s for s in sockets if not is_loopback(s[1])]
    assert not exposed, f"listening beyond loopback: {exposed}"


@slow
def test_a_log_node_of_the_root_chain_writes_to_the_shard_log(first_up: FirstUp):
    """The default root chain logs device RPC requests ("Log RPC from Device", a TBEL script)
    into the shard logs whose place ``up`` prints."""
    import json as _json

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set("A1_TEST_TOKEN")
    client.connect("127.0.0.1", first_up.mqtt_port)
    client.loop_start()
    try:
        marker = unique("log-node-marker")
        info = client.publish("v1/devices/me/rpc/request/1", _json.dumps({"method": marker, "params": {}}), qos=1)
        info.wait_for_publish(30)
        logs = re.search(r"logs +(\S+)", first_up.up.output())
        assert logs, first_up.up.output()

        def shard_logs() -> str:
            return "".join(p.read_text(errors="replace") for p in Path(logs.group(1)).glob("shard-*.log"))

        deadline = time.monotonic() + 60
        while marker not in shard_logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "Incoming message:" in shard_logs() and marker in shard_logs()
    finally:
        client.loop_stop()
        client.disconnect()


@slow
def test_the_http_port_flag_beats_the_environment(first_up: FirstUp):
    ports = {port for _, _, port in listening_sockets(first_up.up.processes())}
    assert int(first_up.url.rsplit(":", 1)[1]) in ports
    assert first_up.ignored_env_port not in ports


@slow
def test_a_stray_ray_address_is_ignored_by_a_single_machine_up(first_up: FirstUp):
    # RAY_ADDRESS=127.0.0.1:1 is in up's environment: ray.init would have tried to join it
    assert "ray: starting a private Ray on 127.0.0.1" in first_up.up.output()
    root = psutil.Process(first_up.up.popen.pid)
    assert "gcs_server" in {p.name() for p in root.children(recursive=True)}


@slow
def test_sigterm_stops_up_cleanly_and_leaves_no_process(first_up: FirstUp, customer_of_first_run: dict):
    assert first_up.stop_once() == 0, first_up.up.output()
    output = first_up.up.output()
    assert "stopping (SIGTERM)" in output and re.search(r"\] stopped\n", output)
    assert not first_up.leftovers, [(p.pid, p.name()) for p in first_up.leftovers]


@slow
def test_a_second_up_on_the_same_data_dir_keeps_the_data_and_the_demo_once(first_up: FirstUp,
                                                                            customer_of_first_run: dict):
    assert first_up.stop_once() == 0
    http_port = free_port()
    up = UpProcess(first_up.up.data_dir, first_up.up.data_dir.parent / f"{first_up.up.data_dir.name}-second.log",
                   ["--host", "127.0.0.1", "--http-port", str(http_port), "--mqtt-port", str(free_port()),
                    "--coap-port", str(free_port()), "--demo"], child_env())
    try:
        url = f"http://127.0.0.1:{http_port}"
        up.wait_ready(url)
        assert "migrations: up to date" in up.output()
        assert "demo data: already present" in up.output()
        token = httpx.post(f"{url}/api/auth/login",
                           json={"username": TENANT_ADMIN[0], "password": TENANT_ADMIN[1]}).json()["token"]
        with httpx.Client(base_url=url, headers={"X-Authorization": f"Bearer {token}"}, timeout=30) as client:
            kept = client.get(f"/api/customer/{customer_of_first_run['id']['id']}")
            assert kept.status_code == 200, kept.text
            assert kept.json()["title"] == customer_of_first_run["title"]
            titles = [c["title"] for c in client.get("/api/customers", params={"pageSize": 1000, "page": 0})
                      .json()["data"]]
        assert sorted(t for t in titles if t in DEMO_CUSTOMERS) == list(DEMO_CUSTOMERS)
        counts = asyncio.run(_demo_counts(first_up.up.data_dir / "postgres"))
        assert counts == {"tenants": 1, "tenant_admins": 1, "a1_devices": 1}
        assert up.stop(signal.SIGTERM) == 0, up.output()
    finally:
        up.kill()


async def _demo_counts(socket_dir: Path) -> dict[str, int]:
    conn = await asyncpg.connect(host=str(socket_dir), user="postgres", database="thingsray")
    try:
        return {
            "tenants": await conn.fetchval("SELECT count(*) FROM tenant WHERE title = 'Tenant'"),
            "tenant_admins": await conn.fetchval("SELECT count(*) FROM tb_user WHERE email = $1", TENANT_ADMIN[0]),
            "a1_devices": await conn.fetchval("SELECT count(*) FROM device WHERE name = 'Test Device A1'"),
        }
    finally:
        await conn.close()


def test_address_without_a_database_url_stops_before_starting_anything(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "thingsray", "up", "--data-dir", str(tmp_path / "data"), "--address", "127.0.0.1:1",
         "--host", "127.0.0.1", "--http-port", str(free_port())],
        cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "THINGSRAY_DATABASE_URL" in result.stderr
    assert "ray:" not in result.stdout and "database:" not in result.stdout
    assert not (tmp_path / "data").exists()


def test_a_port_in_use_stops_up_before_starting_anything(tmp_path: Path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "thingsray", "up", "--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1",
             "--http-port", str(free_port()), "--mqtt-port", str(taken)],
            cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {taken} (--mqtt-port" in result.stdout + result.stderr
    assert "ray:" not in result.stdout and "database:" not in result.stdout
    assert not (tmp_path / "data").exists()


def test_demo_on_every_interface_prints_the_password_warning():
    exposed = banner(Settings(host="0.0.0.0", demo=True), "http://127.0.0.1:8080")
    assert any(line.startswith("WARNING: demo passwords are active") and "0.0.0.0" in line for line in exposed)
    assert any("tenant@thingsboard.org / tenant" in line for line in exposed)
    loopback = banner(Settings(host="127.0.0.1", demo=True), "http://127.0.0.1:8080")
    assert not any("WARNING" in line for line in loopback)
    no_demo = banner(Settings(host="0.0.0.0", demo=False), "http://127.0.0.1:8080")
    assert not any("demo" in line for line in no_demo)
    assert any("change the sysadmin password" in line for line in no_demo)


def test_python_dash_m_thingsray_is_the_thingsray_command():
    result = subprocess.run([sys.executable, "-m", "thingsray", "up", "--help"], cwd=REPO, env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--http-port" in result.stdout and "--data-dir" in result.stdout
