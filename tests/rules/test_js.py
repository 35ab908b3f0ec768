"""The script service with real V8 (mini-racer) and the TBEL interpreter: the shapes rule nodes
rely on, errors that say what and where, limits that stop runaway scripts without stopping the
others, and ThingsBoard's blacklisting rule."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from thingsray.rules.msg import EntityId, MsgType, TbMsg
from thingsray.rules.script import Script, ScriptBlacklisted, ScriptError, ScriptRuntimeError, ScriptService

TELEMETRY = MsgType.POST_TELEMETRY_REQUEST
META = {"deviceName": "Thermostat A", "deviceType": "thermostat", "ts": "1700000000000"}


@pytest.fixture(scope="module")
def scripts() -> Iterator[ScriptService]:
    service = ScriptService()
    yield service
    service.close()


@pytest.fixture()
def strict() -> Iterator[ScriptService]:
    """Short limits, so runaway scripts are stopped quickly."""
    service = ScriptService(timeout_ms=250, blacklist_duration_s=60)
    yield service
    service.close()


async def test_filter_script_answers_a_boolean(scripts: ScriptService) -> None:
    script = scripts.compile("JS", "return msg.temperature > 20 && metadata.deviceType === 'thermostat';")
    assert await script.invoke({"temperature": 25.5}, META, TELEMETRY) is True
    assert await script.invoke({"temperature": 12}, META, TELEMETRY) is False


async def test_switch_script_answers_relation_names(scripts: ScriptService) -> None:
    script = scripts.compile("JS", """
        if (msgType === 'POST_TELEMETRY_REQUEST') {
            return msg.temperature > 30 ? ['High', 'Telemetry'] : ['Telemetry'];
        }
        return ['Other'];
    """)
    assert await script.invoke({"temperature": 35}, META, TELEMETRY) == ["High", "Telemetry"]
    assert await script.invoke({"temperature": 5}, META, TELEMETRY) == ["Telemetry"]
    assert await script.invoke({}, META, MsgType.POST_ATTRIBUTES_REQUEST) == ["Other"]


async def test_transform_script_on_a_rule_engine_message(scripts: ScriptService) -> None:
    script = scripts.compile("JS", """
        var newMsg = {temperatureF: msg.temperature * 9 / 5 + 32};
        metadata.converted = 'true';
        return {msg: newMsg, metadata: metadata, msgType: 'POST_TELEMETRY_REQUEST_F'};
    """)
    device = EntityId("DEVICE", uuid.uuid4())
    message = TbMsg(TELEMETRY, device, {"temperature": 100}, dict(META))
    out = await script.invoke(*message.script_args())
    assert out == {"msg": {"temperatureF": 212}, "metadata": {**META, "converted": "true"},
                   "msgType": "POST_TELEMETRY_REQUEST_F"}
    assert message.metadata == META  # the script changed its own copy


async def test_values_cross_as_json_both_ways(scripts: ScriptService) -> None:
    value = {
        "text": "Grüße, 日本語, emoji 😀, quote \" backslash \\ newline \n line sep \u2028 nul \u0000",
        "ints": [0, -1, 2**53, 123456789],
        "floats": [1.5, -0.25, 1e-7, 6.02e23],
        "flags": [True, False, None],
        "nested": {"a": {"b": {"c": [[], {}, [1, {"d": "é"}]]}}},
        "__proto__": {"own": "key"},
    }
    script = scripts.compile("JS", "return {msg: msg, metadata: metadata, msgType: msgType,"
                                   " keys: Object.keys(msg), proto: Object.getPrototypeOf(msg) === Object.prototype};")
    out = await script.invoke(value, {"k": "väl"}, "ÜNICODE_TYPE")
    assert out == {"msg": value, "metadata": {"k": "väl"}, "msgType": "ÜNICODE_TYPE",
                   "keys": list(value), "proto": True}


async def test_undefined_result_is_none_and_custom_argument_names(scripts: ScriptService) -> None:
    nothing = scripts.compile("JS", "var unused = msg;")
    assert await nothing.invoke({"a": 1}, {}, TELEMETRY) is None
    generator = scripts.compile("JS", "return {msg: {count: prevMsg.count + 1}, metadata: prevMetadata, "
                                      "msgType: prevMsgType};", ["prevMsg", "prevMetadata", "prevMsgType"])
    assert await generator.invoke({"count": 41}, {}, "GEN") == {"msg": {"count": 42}, "metadata": {}, "msgType": "GEN"}


async def test_syntax_error_at_compile_says_what_and_where(scripts: ScriptService) -> None:
    with pytest.raises(ScriptError) as error:
        scripts.compile("JS", "var a = 1;\nvar b = {;\nreturn a;")
    assert str(error.value) == "SyntaxError: Unexpected token ';' at line 2, column 10"
    with pytest.raises(ScriptError, match=r"SyntaxError.*at the end of the script"):
        scripts.compile("JS", "if (msg.a) {\n  return 1;\n")


async def test_a_body_cannot_close_its_function_and_run_at_top_level(scripts: ScriptService) -> None:
    with pytest.raises(ScriptError, match="SyntaxError: Unexpected token 'while' at line 1"):
        scripts.compile("JS", "return 1; } while (true) {} {")


async def test_thingsboard_validator_refuses_async_code(scripts: ScriptService) -> None:
    for body, reason in [("", "Script body is empty"),
                         ("var p = async function () {};", "Script must not contain 'async' keyword."),
                         ("return Promise.resolve(1);", "Script must not use 'Promise'."),
                         ("setTimeout(function () {}, 10); return 1;", "Script must not use 'setTimeout' method.")]:
        with pytest.raises(ScriptError) as error:
            scripts.compile("JS", body)
        assert str(error.value) == reason
    allowed = scripts.compile("JS", "// a Promise in a comment\nreturn 'no async or await here: Promise';")
    assert await allowed.invoke({}, {}, TELEMETRY) == "no async or await here: Promise"


async def test_script_that_throws_fails_its_call_with_the_reason_and_line(scripts: ScriptService) -> None:
    thrower = scripts.compile("JS", "var limit = 10;\nif (msg.t > limit) { throw new Error('too hot: ' + msg.t); }\n"
                                    "return msg.missing.field;")
    with pytest.raises(ScriptRuntimeError) as error:
        await thrower.invoke({"t": 11}, {}, TELEMETRY)
    assert str(error.value) == "Error: too hot: 11 (line 2)"
    with pytest.raises(ScriptRuntimeError, match=r"TypeError: Cannot read properties of undefined .*\(line 3\)"):
        await thrower.invoke({"t": 1}, {}, TELEMETRY)
    circular = scripts.compile("JS", "var a = {}; a.self = a; return a;")
    with pytest.raises(ScriptRuntimeError, match="cannot be turned into JSON"):
        await circular.invoke({}, {}, TELEMETRY)


async def test_infinite_loop_is_stopped_and_the_next_script_runs(strict: ScriptService) -> None:
    spinner = strict.compile("JS", "while (true) {}")
    filter_ = strict.compile("JS", "return msg.temperature > 20;")
    with pytest.raises(ScriptRuntimeError, match="time limit of 250 ms"):
        await spinner.invoke({}, {}, TELEMETRY)
    assert await filter_.invoke({"temperature": 30}, {}, TELEMETRY) is True


async def test_memory_bomb_is_stopped_and_the_next_script_runs() -> None:
    service = ScriptService(js_max_memory=64 * 1024 * 1024, timeout_ms=20_000)
    try:
        bomb = service.compile("JS", "var hoard = []; while (true) { hoard.push(new Array(100000).fill(msg.x)); }")
        other = service.compile("JS", "return msg.x * 2;")
        with pytest.raises(ScriptRuntimeError, match="memory limit of 64 MiB"):
            await bomb.invoke({"x": 1}, {}, TELEMETRY)
        assert await other.invoke({"x": 21}, {}, TELEMETRY) == 42
    finally:
        service.close()


async def test_a_promise_job_that_loops_does_not_stall_the_sandbox(strict: ScriptService) -> None:
    sneaky = strict.compile("JS", "var P = globalThis['Prom' + 'ise'];\n"
                                  "P.resolve().then(function () { while (true) {} });\nreturn 'returned';")
    victim = strict.compile("JS", "return msg.n + 1;")
    assert await sneaky.invoke({}, {}, TELEMETRY) == "returned"
    assert await victim.invoke({"n": 1}, {}, TELEMETRY) == 2
    assert await victim.invoke({"n": 2}, {}, TELEMETRY) == 3


async def test_a_running_script_blocks_neither_the_event_loop_nor_other_tenants() -> None:
    service = ScriptService(timeout_ms=1000)
    try:
        tenant_a, tenant_b = service.for_tenant(uuid.uuid4()), service.for_tenant(uuid.uuid4())
        spinner = tenant_a.compile("JS", "while (true) {}")
        quick = tenant_b.compile("JS", "return msg.n;")
        spinning = asyncio.create_task(spinner.invoke({}, {}, TELEMETRY))
        await asyncio.sleep(0.05)
        assert await quick.invoke({"n": 7}, {}, TELEMETRY) == 7
        assert not spinning.done()
        with pytest.raises(ScriptRuntimeError, match="time limit"):
            await spinning
    finally:
        service.close()


async def test_tenants_do_not_share_globals_or_prototypes(scripts: ScriptService) -> None:
    tenant_a, tenant_b = scripts.for_tenant(uuid.uuid4()), scripts.for_tenant(uuid.uuid4())
    writer = tenant_a.compile("JS", "leaked = msg.secret; Object.prototype.polluted = 'yes'; return typeof leaked;")
    reader = tenant_b.compile("JS", "return [typeof leaked, ({}).polluted === undefined];")
    assert await writer.invoke({"secret": "tenant A's"}, {}, TELEMETRY) == "string"
    assert await reader.invoke({}, {}, TELEMETRY) == ["undefined", True]


async def test_many_concurrent_invokes_each_get_their_own_answer(scripts: ScriptService) -> None:
    tenant_a, tenant_b = scripts.for_tenant(uuid.uuid4()), scripts.for_tenant(uuid.uuid4())
    double = tenant_a.compile("JS", "if (msg.i % 7 === 0) { throw new Error('seven ' + msg.i); } return msg.i * 2;")
    label = tenant_a.compile("JS", "return metadata.name + ':' + msg.i;")
    square = tenant_b.compile("JS", "return msg.i * msg.i;")
    calls = []
    for i in range(300):
        calls += [double.invoke({"i": i}, {}, TELEMETRY), label.invoke({"i": i}, {"name": f"d{i}"}, TELEMETRY),
                  square.invoke({"i": i}, {}, TELEMETRY)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i in range(300):
        doubled, labelled, squared = results[3 * i: 3 * i + 3]
        if i % 7 == 0:
            assert isinstance(doubled, ScriptRuntimeError) and str(doubled) == f"Error: seven {i} (line 1)"
        else:
            assert doubled == 2 * i
        assert labelled == f"d{i}:{i}"
        assert squared == i * i


async def test_blacklisted_after_three_limit_errors_until_recompiled(strict: ScriptService) -> None:
    source = "while (true) {}"
    spinner = strict.compile("JS", source)
    for _ in range(3):
        with pytest.raises(ScriptRuntimeError, match="time limit") as error:
            await spinner.invoke({}, {}, TELEMETRY)
        assert not isinstance(error.value, ScriptBlacklisted)
    with pytest.raises(ScriptBlacklisted) as blocked:
        await spinner.invoke({}, {}, TELEMETRY)
    assert str(blocked.value) == f"Script invocation is blocked due to maximum error count 3, scriptId {spinner.id}!"
    assert spinner.blacklisted
    recompiled = strict.compile("JS", source)
    with pytest.raises(ScriptRuntimeError, match="time limit") as again:
        await recompiled.invoke({}, {}, TELEMETRY)
    assert not isinstance(again.value, ScriptBlacklisted)


async def test_blacklist_ends_when_its_time_passes() -> None:
    service = ScriptService(timeout_ms=100, blacklist_duration_s=0.3)
    try:
        spinner = service.compile("JS", "while (true) {}")
        for _ in range(3):
            with pytest.raises(ScriptRuntimeError):
                await spinner.invoke({}, {}, TELEMETRY)
        with pytest.raises(ScriptBlacklisted):
            await spinner.invoke({}, {}, TELEMETRY)
        await asyncio.sleep(0.4)
        assert not spinner.blacklisted
        with pytest.raises(ScriptRuntimeError, match="time limit") as error:
            await spinner.invoke({}, {}, TELEMETRY)
        assert not isinstance(error.value, ScriptBlacklisted)
    finally:
        service.close()


async def test_throws_never_blacklist_and_successes_do_not_reset_the_count(strict: ScriptService) -> None:
    thrower = strict.compile("JS", "throw new Error('bad input');")
    for _ in range(5):
        with pytest.raises(ScriptRuntimeError, match="bad input") as error:
            await thrower.invoke({}, {}, TELEMETRY)
        assert not isinstance(error.value, ScriptBlacklisted)
    sometimes = strict.compile("JS", "if (msg.spin) { while (true) {} } return 'ok';")
    for spin in (True, False, True, False):
        if spin:
            with pytest.raises(ScriptRuntimeError, match="time limit"):
                await sometimes.invoke({"spin": True}, {}, TELEMETRY)
        else:
            assert await sometimes.invoke({"spin": False}, {}, TELEMETRY) == "ok"
    with pytest.raises(ScriptRuntimeError, match="time limit"):
        await sometimes.invoke({"spin": True}, {}, TELEMETRY)
    with pytest.raises(ScriptBlacklisted):
        await sometimes.invoke({"spin": False}, {}, TELEMETRY)


async def test_size_limits_count_as_errors() -> None:
    service = ScriptService(max_total_args_size=200, max_result_size=100, max_script_body_size=60)
    try:
        with pytest.raises(ScriptError, match="exceeds maximum allowed size of 60 symbols"):
            service.compile("JS", "return 1;" + " " * 60)
        echo = service.compile("JS", "return msg;")
        with pytest.raises(ScriptRuntimeError, match="total args size of 200"):
            await echo.invoke({"big": "x" * 300}, {}, TELEMETRY)
        with pytest.raises(ScriptRuntimeError, match="result exceeds maximum allowed size of 100"):
            await echo.invoke({"big": "x" * 150}, {}, TELEMETRY)
        with pytest.raises(ScriptRuntimeError):
            await echo.invoke({"big": "x" * 300}, {}, TELEMETRY)
        with pytest.raises(ScriptBlacklisted):
            await echo.invoke({"small": 1}, {}, TELEMETRY)
    finally:
        service.close()


async def test_closed_scripts_leave_the_others_running(scripts: ScriptService) -> None:
    tenant = scripts.for_tenant(uuid.uuid4())
    kept = tenant.compile("JS", "return msg.v;")
    for n in range(20):
        dropped = tenant.compile("JS", f"return {n};")
        assert await dropped.invoke({}, {}, TELEMETRY) == n
        dropped.close()
    assert await kept.invoke({"v": "still here"}, {}, TELEMETRY) == "still here"


def test_unknown_language_is_refused(scripts: ScriptService) -> None:
    for lang in ("PYTHON", "js", "", None):
        with pytest.raises(ScriptError, match="unknown script language"):
            scripts.compile(lang, "return 1;")  # type: ignore[arg-type]


async def test_tbel_and_its_mvel_alias(scripts: ScriptService) -> None:
    for lang in ("TBEL", "MVEL"):
        script = scripts.compile(lang, "var t = msg.temperature; return {msg: {t: t * 2}, metadata: metadata, "
                                       "msgType: msgType};")
        assert isinstance(script, Script)
        assert await script.invoke({"temperature": 21}, {"a": "b"}, TELEMETRY) == {
            "msg": {"t": 42}, "metadata": {"a": "b"}, "msgType": TELEMETRY}
    with pytest.raises(ScriptError):
        scripts.compile("TBEL", "return msg.temperature >;")


async def test_tbel_limits_count_and_throws_do_not(strict: ScriptService) -> None:
    thrower = strict.compile("TBEL", "raiseError('bad input');")
    for _ in range(4):
        with pytest.raises(ScriptRuntimeError, match="bad input") as error:
            await thrower.invoke({}, {}, TELEMETRY)
        assert not isinstance(error.value, ScriptBlacklisted)
    spinner = strict.compile("TBEL", "var i = 0; while (true) { i = i + 1; }")
    for _ in range(3):
        with pytest.raises(ScriptRuntimeError) as error:
            await spinner.invoke({}, {}, TELEMETRY)
        assert not isinstance(error.value, ScriptBlacklisted)
    with pytest.raises(ScriptBlacklisted):
        await spinner.invoke({}, {}, TELEMETRY)
