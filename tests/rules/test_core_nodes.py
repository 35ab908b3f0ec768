"""The core nodes, one at a time, with the engine's real services."""

from __future__ import annotations

import pytest

from tests.rules.conftest import EngineHarness
from thingsray.rules.node import NodeConfigError

P = "org.thingsboard.rule.engine."


async def test_message_type_switch_names_thingsboards_relations(engine: EngineHarness) -> None:
    switch = engine.build(P + "filter.TbMsgTypeSwitchNode")
    device = engine.device()
    for msg_type, relation in (("POST_TELEMETRY_REQUEST", "Post telemetry"),
                               ("POST_ATTRIBUTES_REQUEST", "Post attributes"),
                               ("TO_SERVER_RPC_REQUEST", "RPC Request from Device"),
                               ("RPC_CALL_FROM_SERVER_TO_DEVICE", "RPC Request to Device"),
                               ("CONNECT_EVENT", "Connect Event"), ("ALARM", "Other"), ("CUSTOM", "Other")):
        [(got, _)] = await engine.run(switch, engine.msg(device, {}, msg_type))
        assert got == relation, msg_type


async def test_save_time_series_stores_every_form_of_body(engine: EngineHarness) -> None:
    save = engine.build(P + "telemetry.TbMsgTimeseriesNode")
    device = engine.device()
    await engine.run(save, engine.msg(device, {"t": 1, "s": "12.5", "j": {"a": [1]}}, ts="1000"))
    await engine.run(save, engine.msg(device, [{"ts": 2000, "values": {"t": 2}}, {"ts": 3000, "values": {"t": 3}}]))
    rows = await engine.db.fetch(
        "SELECT d.key, t.ts, t.long_v, t.dbl_v, t.json_v::text AS j FROM ts_kv t JOIN key_dictionary d"
        " ON d.key_id = t.key WHERE t.entity_id = $1 ORDER BY t.ts, d.key", device.id)
    assert [(r["key"], r["ts"]) for r in rows] == [("j", 1000), ("s", 1000), ("t", 1000), ("t", 2000), ("t", 3000)]
    assert rows[1]["dbl_v"] == 12.5  # numeric text is typed, as ThingsBoard's converter does


async def test_save_time_series_refuses_other_message_types(engine: EngineHarness) -> None:
    save = engine.build(P + "telemetry.TbMsgTimeseriesNode")
    with pytest.raises(ValueError, match="Unsupported msg type"):
        await engine.run(save, engine.msg(engine.device(), {"t": 1}, "POST_ATTRIBUTES_REQUEST"))


async def test_save_attributes_only_on_change_and_in_its_scope(engine: EngineHarness) -> None:
    save = engine.build(P + "telemetry.TbMsgAttributesNode", {
        "scope": "SERVER_SCOPE", "updateAttributesOnlyOnValueChange": True})
    device = engine.device()
    await engine.run(save, engine.msg(device, {"mode": "eco", "level": 3}, "POST_ATTRIBUTES_REQUEST"))
    first = await engine.db.fetchval(
        "SELECT last_update_ts FROM attribute_kv a JOIN key_dictionary d ON d.key_id = a.attribute_key"
        " WHERE entity_id = $1 AND d.key = 'mode' AND attribute_type = 2", device.id)
    await engine.run(save, engine.msg(device, {"mode": "eco", "level": 4}, "POST_ATTRIBUTES_REQUEST"))
    rows = await engine.db.fetch(
        "SELECT d.key, a.long_v, a.str_v, a.last_update_ts FROM attribute_kv a JOIN key_dictionary d"
        " ON d.key_id = a.attribute_key WHERE entity_id = $1 AND attribute_type = 2 ORDER BY d.key", device.id)
    assert [(r["key"], r["long_v"], r["str_v"]) for r in rows] == [("level", 4, None), ("mode", None, "eco")]
    assert rows[1]["last_update_ts"] == first  # unchanged value, not written again


@pytest.mark.parametrize("lang,script", [("JS", "return msg.t > 20;"), ("TBEL", "return msg.t > 20;")])
async def test_script_filter_in_both_languages(engine: EngineHarness, lang: str, script: str) -> None:
    key = "jsScript" if lang == "JS" else "tbelScript"
    flt = engine.build(P + "filter.TbJsFilterNode", {"scriptLang": lang, key: script})
    device = engine.device()
    assert [r for r, _ in await engine.run(flt, engine.msg(device, {"t": 25}))] == ["True"]
    assert [r for r, _ in await engine.run(flt, engine.msg(device, {"t": 5}))] == ["False"]


async def test_a_filter_that_returns_no_boolean_fails(engine: EngineHarness) -> None:
    flt = engine.build(P + "filter.TbJsFilterNode", {"scriptLang": "TBEL", "tbelScript": "return 'yes';"})
    with pytest.raises(ValueError, match="Wrong result type"):
        await engine.run(flt, engine.msg(engine.device(), {}))


async def test_switch_and_transform_scripts(engine: EngineHarness) -> None:
    switch = engine.build(P + "filter.TbJsSwitchNode", {
        "scriptLang": "TBEL", "tbelScript": "if (msg.t > 20) { return ['hot', 'log']; } return 'cold';"})
    device = engine.device()
    assert [r for r, _ in await engine.run(switch, engine.msg(device, {"t": 30}))] == ["hot", "log"]
    assert [r for r, _ in await engine.run(switch, engine.msg(device, {"t": 3}))] == ["cold"]
    transform = engine.build(P + "transform.TbTransformMsgNode", {
        "scriptLang": "JS", "jsScript": "metadata.unit = 'F'; return {msg: {f: msg.c * 9 / 5 + 32}, "
                                        "metadata: metadata, msgType: 'CUSTOM'};"})
    [(relation, out)] = await engine.run(transform, engine.msg(device, {"c": 100}, ts="5"))
    assert relation == "Success" and out.data == {"f": 212} and out.type == "CUSTOM"
    assert out.metadata == {"ts": "5", "unit": "F"}


def test_bad_configurations_are_refused_with_the_key(engine: EngineHarness) -> None:
    with pytest.raises(NodeConfigError, match="tbelScript"):
        engine.build(P + "filter.TbJsFilterNode", {"scriptLang": "TBEL", "tbelScript": "return (;"})
    with pytest.raises(NodeConfigError, match="scope"):
        engine.build(P + "telemetry.TbMsgAttributesNode", {"scope": "NOWHERE"})
    with pytest.raises(NodeConfigError, match="messageTypes"):
        engine.build(P + "filter.TbMsgTypeFilterNode", {"messageTypes": "POST_TELEMETRY_REQUEST"})
