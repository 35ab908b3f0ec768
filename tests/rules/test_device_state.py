"""Device State: a chain tells a device's actor it connected, was active, disconnected or went
inactive; the actor's state (what GET device state and the server attributes show) follows."""

from __future__ import annotations

from typing import Any

import pytest

from tests.rules import entities
from tests.rules.conftest import EngineHarness
from thingsray.actors.messages import GetDeviceState
from thingsray.rules.node import NodeConfigError
from thingsray.runtime import Address

STATE = "org.thingsboard.rule.engine.action.TbDeviceStateNode"


async def device_state(engine: EngineHarness, device: Any) -> dict[str, Any]:
    """Asked through the same router as the node's event, so the event is handled first."""
    state: dict[str, Any] = await engine.services.send(Address("device", str(device.id)), GetDeviceState())
    return state


async def test_connect_activity_disconnect_and_inactivity(engine: EngineHarness) -> None:
    device = engine.device()
    for event, ts in (("CONNECT_EVENT", 1000), ("ACTIVITY_EVENT", 2000), ("DISCONNECT_EVENT", 3000)):
        node = engine.build(STATE, {"event": event})
        [(relation, _)] = await engine.run(node, engine.msg(device, {}, ts=str(ts)))
        assert relation == "Success"
    state = await device_state(engine, device)
    assert state["lastConnectTime"] == 1000 and state["lastDisconnectTime"] == 3000
    assert state["active"] is True and state["lastActivityTime"] == 2000
    [(relation, _)] = await engine.run(engine.build(STATE, {"event": "INACTIVITY_EVENT"}),
                                       engine.msg(device, {}, ts="4000"))
    state = await device_state(engine, device)
    assert relation == "Success" and state["active"] is False and state["inactivityAlarmTime"] == 4000


async def test_events_of_one_device_are_rate_limited(engine: EngineHarness) -> None:
    node = engine.build(STATE, {"event": "ACTIVITY_EVENT"})
    device, other = engine.device(), engine.device()
    assert [r for r, _ in await engine.run(node, engine.msg(device, {}))] == ["Success"]
    assert [r for r, _ in await engine.run(node, engine.msg(device, {}))] == ["Rate limited"]  # 1 a second
    assert [r for r, _ in await engine.run(node, engine.msg(other, {}))] == ["Success"]  # each device its own


async def test_only_devices_and_known_events(engine: EngineHarness) -> None:
    node = engine.build(STATE)  # ThingsBoard's default: ACTIVITY_EVENT
    assert node.event == "ACTIVITY_EVENT"
    with pytest.raises(ValueError, match=r"Unsupported originator entity type: \[ASSET\]"):
        await engine.run(node, engine.msg(entities.asset(engine.client), {}))
    with pytest.raises(NodeConfigError, match="Unsupported event: POST_TELEMETRY_REQUEST"):
        engine.build(STATE, {"event": "POST_TELEMETRY_REQUEST"})
    with pytest.raises(NodeConfigError, match="Event cannot be null!"):
        engine.build(STATE, {"event": None})
