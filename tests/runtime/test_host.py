"""The actor host on its own: activation, order, backpressure, supervision, passivation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from thingsray.runtime import Actor, ActorError, ActorHost, Address, HostStopped, UnknownActorKind


class Store:
    """Stands for the database: what actors persist survives their passivation and restarts."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {}
        self.activations: dict[str, int] = {}
        self.passivations: dict[str, int] = {}


class Recorder(Actor):
    def __init__(self, address: Address, store: Store) -> None:
        self.address = address
        self.store = store
        self.seen: list[Any] = []

    async def activate(self) -> None:
        self.store.activations[self.address.id] = self.store.activations.get(self.address.id, 0) + 1
        self.seen = list(self.store.values.get(self.address.id, []))
        if self.address.id.startswith("broken"):
            raise RuntimeError("cannot load state")

    async def receive(self, message: Any) -> Any:
        match message:
            case ("boom",):
                raise ValueError("bad message")
            case ("slow", value):
                await asyncio.sleep(0.01)
                self.seen.append(value)
            case ("get",):
                return list(self.seen)
            case value:
                self.seen.append(value)
        self.store.values[self.address.id] = list(self.seen)
        return len(self.seen)

    async def passivate(self) -> None:
        self.store.passivations[self.address.id] = self.store.passivations.get(self.address.id, 0) + 1


def make_host(store: Store, **options: Any) -> ActorHost:
    return ActorHost({"rec": lambda address, _env: Recorder(address, store)}, **options)


async def test_messages_to_one_actor_are_handled_in_order_and_actors_are_independent():
    store = Store()
    host = make_host(store)
    await asyncio.gather(*(host.tell(Address("rec", f"a{i % 10}"), ("slow", i)) for i in range(200)))
    for n in range(10):
        seen = await host.ask(Address("rec", f"a{n}"), ("get",))
        assert seen == [i for i in range(200) if i % 10 == n]
    assert host.active_count == 10
    await host.stop()


async def test_many_actors_activate_once_each():
    store = Store()
    host = make_host(store)
    results = await asyncio.gather(*(host.ask(Address("rec", str(i)), i) for i in range(5000)))
    assert results == [1] * 5000
    assert host.active_count == 5000
    assert set(store.activations.values()) == {1}
    await host.stop()


async def test_idle_actors_are_passivated_and_come_back_with_their_state():
    store = Store()
    host = make_host(store, idle_timeout_s=60)
    address = Address("rec", "p1")
    await host.ask(address, "x")
    assert await host.passivate_idle() == 0  # not idle yet
    import time

    assert await host.passivate_idle(now=time.monotonic() + 61) == 1
    assert host.active_count == 0 and store.passivations["p1"] == 1
    assert await host.ask(address, "y") == 2  # reactivated from the store
    assert store.activations["p1"] == 2
    await host.stop()


async def test_a_failing_message_fails_its_ask_restarts_the_actor_and_spares_the_rest():
    store = Store()
    host = make_host(store)
    address = Address("rec", "s1")
    await host.ask(address, "before")
    with pytest.raises(ActorError, match="s1 failed on tuple"):
        await host.ask(address, ("boom",))
    assert await host.ask(address, ("get",)) == ["before"]  # fresh instance, state reloaded
    assert store.activations["s1"] == 2 and host.restarts == 1
    assert await host.ask(Address("rec", "other"), "z") == 1
    await host.stop()


async def test_activation_failure_fails_queued_asks_instead_of_hanging():
    host = make_host(Store())
    address = Address("rec", "broken-1")
    outcomes = await asyncio.gather(*(host.ask(address, i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, ActorError) and "could not be activated" in str(o) for o in outcomes)
    assert not host.is_active(address)
    await host.stop()


async def test_a_full_mailbox_makes_senders_wait_and_loses_nothing():
    store = Store()
    host = make_host(store, mailbox_size=4)
    address = Address("rec", "bp")
    senders = [asyncio.create_task(host.tell(address, ("slow", i))) for i in range(20)]
    await asyncio.sleep(0)
    assert sum(s.done() for s in senders) <= 5  # the rest wait for room
    await asyncio.gather(*senders)
    assert await host.ask(address, ("get",)) == list(range(20))
    await host.stop()


async def test_unknown_kinds_and_a_stopped_host_answer_with_errors():
    host = make_host(Store())
    with pytest.raises(UnknownActorKind):
        await host.tell(Address("nope", "1"), "x")
    await host.ask(Address("rec", "1"), "x")
    await host.stop()
    with pytest.raises(HostStopped):
        await host.ask(Address("rec", "1"), "x")


async def test_a_deferred_answer_lets_the_actor_go_on():
    from thingsray.runtime import Deferred

    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    class Waiter(Actor):
        def __init__(self, address: Address, env: Any) -> None:
            self.count = 0

        async def receive(self, message: Any) -> Any:
            self.count += 1
            if message == "later":
                return Deferred(gate)
            return self.count

    host = ActorHost({"w": Waiter})
    address = Address("w", "1")
    later = await host.enqueue(address, "later", want_reply=True)
    assert later is not None
    assert await host.ask(address, "now") == 2  # not stuck behind the deferred answer
    assert not later.done()
    gate.set_result("done")
    assert await later == "done"
    await host.stop()
