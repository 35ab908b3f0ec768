"""What an idle actor keeps in memory, and the timer wheel that replaced a loop timer per actor.

bench/actor_memory.py measures the figures; these tests hold the properties the figures rest on.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import uuid
from typing import Any

import asyncpg
import pytest

from tests.test_mqtt_device_api import ask
from thingsray.actors.messages import GetDeviceState, PostTelemetry, SaveAttributes
from thingsray.runtime import Actor, ActorError, ActorHost, Address
from thingsray.transports.payloads import TelemetryGroup

WAIT = 15.0  # a bound on waiting for what should happen soon; never a speed assertion


class Bare(Actor):
    __slots__ = ()

    async def receive(self, message: Any) -> Any:
        return None


class Recorder(Actor):
    """Writes what it receives into ``inbox`` (per address id) and counts its activations."""

    def __init__(self, address: Address, inbox: dict[str, list[Any]]) -> None:
        self.address = address
        self.inbox = inbox

    async def activate(self) -> None:
        self.inbox.setdefault(f"activations:{self.address.id}", []).append(1)

    async def receive(self, message: Any) -> Any:
        self.inbox.setdefault(self.address.id, []).append(message)


async def eventually(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {WAIT} s")
        await asyncio.sleep(0.01)


async def activate(host: ActorHost, kind: str, ids: range) -> None:
    """One message to each (no gather: its future would keep every child alive past the await)."""
    replies = [await host.enqueue(Address(kind, str(i)), "hello", want_reply=True) for i in ids]
    for reply in replies:
        await reply  # type: ignore[misc]


async def test_an_idle_actor_holds_no_mailbox_task_or_event_and_costs_well_under_a_kilobyte():
    host = ActorHost({"bare": lambda address, env: Bare()})
    await activate(host, "bare", range(1000))  # the dict and the loop are warm
    gc.collect()
    started = not tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await activate(host, "bare", range(1000, 11_000))
        gc.collect()
        per_actor = (tracemalloc.get_traced_memory()[0] - before) / 10_000
    finally:
        if started:
            tracemalloc.stop()
    cells = host._cells.values()
    assert len(cells) == 11_000
    assert all(c.mailbox is None and c.worker is None and c.room is None for c in cells)
    # the cell, its address, the host's dict slot and the actor: about 350 bytes on CPython 3.11
    assert per_actor < 1024, f"an idle bare actor costs {per_actor:.0f} bytes"
    await host.stop()


def recording_host(inbox: dict[str, list[Any]]) -> ActorHost:
    return ActorHost({"rec": lambda address, env: Recorder(address, inbox)}, timer_resolution_s=0.01)


async def test_a_timer_tells_its_actor_once_and_a_new_timer_replaces_the_pending_one():
    inbox: dict[str, list[Any]] = {}
    host = recording_host(inbox)
    a, b = Address("rec", "a"), Address("rec", "b")
    await asyncio.gather(host.ask(a, "hello"), host.ask(b, "hello"))
    host.set_timer(a, "first", 0.05)
    host.set_timer(a, "second", 0.05)
    host.set_timer(b, "later", 0.3)
    await eventually(lambda: inbox["b"] == ["hello", "later"], "b's timer")
    assert inbox["a"] == ["hello", "second"]  # due earlier, told once, the replaced message never
    assert host.is_active(a) and len(inbox["activations:a"]) == 1
    await host.stop()


async def test_a_cancelled_timer_never_fires():
    inbox: dict[str, list[Any]] = {}
    host = recording_host(inbox)
    cancelled, witness = Address("rec", "c"), Address("rec", "w")
    await asyncio.gather(host.ask(cancelled, "hello"), host.ask(witness, "hello"))
    host.set_timer(cancelled, "never", 0.02)
    host.cancel_timer(cancelled)
    host.set_timer(witness, "done", 0.2)  # due after the cancelled one: once it fires, the other would have
    await eventually(lambda: inbox["w"] == ["hello", "done"], "the witness's timer")
    assert inbox["c"] == ["hello"]
    await host.stop()


async def test_passivation_drops_the_timer_instead_of_waking_the_actor_up():
    inbox: dict[str, list[Any]] = {}
    host = recording_host(inbox)
    passivated, witness = Address("rec", "p"), Address("rec", "w")
    await host.ask(passivated, "hello")
    host.set_timer(passivated, "never", 0.02)
    assert await host.passivate_idle(now=time.monotonic() + host.idle_timeout_s + 1) == 1
    await host.ask(witness, "hello")
    host.set_timer(witness, "done", 0.2)
    await eventually(lambda: inbox["w"] == ["hello", "done"], "the witness's timer")
    assert inbox["p"] == ["hello"] and len(inbox["activations:p"]) == 1
    assert not host.is_active(passivated)
    await host.stop()


async def test_only_an_actor_in_memory_sets_a_timer():
    host = recording_host({})
    with pytest.raises(ActorError, match="not in memory"):
        host.set_timer(Address("rec", "nobody"), "x", 1.0)
    await host.stop()


def test_a_device_goes_inactive_after_its_inactivity_timeout(platform, tenant):
    """The device actor's inactivity check runs on its shard's timer wheel (spec section 6)."""
    created = tenant.post("/api/device", json={"name": f"inactive-{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 200, created.text
    device_id = created.json()["id"]["id"]
    now = int(time.time() * 1000)
    ask(platform, device_id, SaveAttributes("SERVER_SCOPE", {"inactivityTimeout": 1000}, now))
    ask(platform, device_id, PostTelemetry(uuid.uuid4(), now, (TelemetryGroup(None, {"t": 1}),)))
    assert ask(platform, device_id, GetDeviceState())["active"] is True
    deadline = time.monotonic() + WAIT
    while ask(platform, device_id, GetDeviceState())["active"]:
        assert time.monotonic() < deadline, f"the device stayed active for {WAIT} s"
        time.sleep(0.2)
    state = ask(platform, device_id, GetDeviceState())
    assert state["inactivityAlarmTime"] >= now + 1000
    server = server_attributes(platform, device_id)
    assert server["active"] == "false" and int(server["inactivityAlarmTime"]) == state["inactivityAlarmTime"]


def server_attributes(platform: Any, device_id: str) -> dict[str, str]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(platform.database_url)
        try:
            return await conn.fetch(
                "SELECT d.key, coalesce(a.bool_v::text, a.str_v, a.long_v::text, a.dbl_v::text) AS v"
                " FROM attribute_kv a JOIN key_dictionary d ON d.key_id = a.attribute_key"
                " WHERE a.entity_id = $1 AND a.attribute_type = 2", uuid.UUID(device_id))
        finally:
            await conn.close()
    return {r["key"]: r["v"] for r in asyncio.run(run())}
