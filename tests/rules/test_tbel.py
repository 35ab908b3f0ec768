"""The TBEL interpreter: scripts as ThingsBoard users write them (filter, switch, transform, log,
alarm details, generator), every helper function, errors at save time with their position,
run-time errors, and the limits that stop endless loops, recursion and unbounded allocation."""

from __future__ import annotations

import math
from typing import Any

import pytest

from thingsray.rules.script import ScriptError, ScriptRuntimeError
from thingsray.rules.script.tbel import compile

MSG = {"temperature": 25, "humidity": 40.5, "name": "T1", "data": {"values": [1, 2, 3], "unit": "C"}}
METADATA = {"deviceName": "Thermostat T1", "deviceType": "thermostat", "ts": "1700000000000"}


def run(source: str, msg: Any = None, metadata: Any = None, msg_type: str = "POST_TELEMETRY_REQUEST",
        **limits: Any) -> Any:
    args = [MSG if msg is None else msg, METADATA if metadata is None else metadata, msg_type]
    return compile(source).run(args, **limits)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same kinds all the way down (5.0 is not 5, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


# ---- the scripts ThingsBoard ships and documents


def test_default_log_script() -> None:
    script = ("return '\\nIncoming message:\\n' + JSON.stringify(msg) + "
              "'\\nIncoming metadata:\\n' + JSON.stringify(metadata);")
    out = run(script, {"temperature": 25, "ok": True, "v": 1.5, "n": None}, {"deviceName": "A"})
    assert out == ('\nIncoming message:\n{"temperature":25,"ok":true,"v":1.5,"n":null}'
                   '\nIncoming metadata:\n{"deviceName":"A"}')


@pytest.mark.parametrize(("temperature", "expected"), [(25, True), (20, False), (20.5, True), ("21", True)])
def test_filter(temperature: Any, expected: bool) -> None:
    assert run("return msg.temperature > 20;", {"temperature": temperature}) is expected


def test_transform() -> None:
    script = ("var newMsg = {}; newMsg.t = msg.temperature * 1.8 + 32; "
              "return {msg: newMsg, metadata: metadata, msgType: msgType};")
    out = run(script, {"temperature": 25})
    assert same(out, {"msg": {"t": 77.0}, "metadata": METADATA, "msgType": "POST_TELEMETRY_REQUEST"})


@pytest.mark.parametrize(("msg_type", "expected"), [("POST_TELEMETRY_REQUEST", ["Telemetry"]),
                                                     ("POST_ATTRIBUTES_REQUEST", ["Other"])])
def test_switch(msg_type: str, expected: list[str]) -> None:
    script = "if (msgType === 'POST_TELEMETRY_REQUEST') { return ['Telemetry']; } return ['Other'];"
    assert run(script, msg_type=msg_type) == expected


ALARM_DETAILS = """
var details = {temperature: msg.temperature, count: 1};
if (metadata.prevAlarmDetails != null) {
    var prev = JSON.parse(metadata.prevAlarmDetails);
    if (prev.count != null) {
        details.count = prev.count + 1;
    }
    metadata.remove('prevAlarmDetails');
}
return details;
"""


@pytest.mark.parametrize(("metadata", "expected"), [
    ({}, {"temperature": 30, "count": 1}),
    ({"prevAlarmDetails": '{"temperature":28,"count":4}'}, {"temperature": 30, "count": 5}),
])
def test_alarm_details(metadata: dict[str, str], expected: dict[str, Any]) -> None:
    assert run(ALARM_DETAILS, {"temperature": 30}, metadata) == expected


def test_alarm_details_with_truthy_metadata() -> None:
    script = """
    var details = {};
    if (metadata.prevAlarmDetails) {
        details = JSON.parse(metadata.prevAlarmDetails);
        metadata.remove('prevAlarmDetails');
    }
    return details;
    """
    assert run(script, {}, {}) == {}
    assert run(script, {}, {"prevAlarmDetails": '{"a":1}'}) == {"a": 1}


def test_generator_script_with_its_own_argument_names() -> None:
    script = """
    var msg = { temp: 42, humidity: 77 };
    var metadata = { data: 40 };
    var msgType = "POST_TELEMETRY_REQUEST";
    return { msg: msg, metadata: metadata, msgType: msgType };
    """
    program = compile(script, ("prevMsg", "prevMetadata", "prevMsgType"))
    assert program.run([{}, {}, "X"]) == {"msg": {"temp": 42, "humidity": 77}, "metadata": {"data": 40},
                                          "msgType": "POST_TELEMETRY_REQUEST"}


def test_payload_decoder() -> None:
    script = """
    var bytes = hexToBytes(msg.payload);
    var temperature = parseBytesToInt(bytes, 0, 2) / 100.0;
    var humidity = bytes[2];
    var battery = bytes[3] & 0xFF;
    return {temperature: temperature, humidity: humidity, battery: battery, raw: bytesToHex(bytes)};
    """
    out = run(script, {"payload": "0A2B37C8"})
    assert same(out, {"temperature": 26.03, "humidity": 55, "battery": 200, "raw": "0A2B37C8"})


def test_rename_keys_over_entries() -> None:
    script = """
    var out = {};
    foreach (entry : msg.entrySet()) {
        if (entry.getKey() != 'data') {
            out[entry.key.toUpperCase()] = entry.value;
        }
    }
    return out;
    """
    assert run(script) == {"TEMPERATURE": 25, "HUMIDITY": 40.5, "NAME": "T1"}


def test_transform_with_metadata_numbers() -> None:
    script = """
    var result = {};
    result.temperatureF = msg.temperature * 9 / 5 + 32;
    result.deviceName = metadata.deviceName;
    result.ts = parseLong(metadata.ts);
    metadata.converted = 'true';
    return {msg: result, metadata: metadata, msgType: msgType};
    """
    out = run(script)
    assert same(out["msg"], {"temperatureF": 77.0, "deviceName": "Thermostat T1", "ts": 1700000000000})
    assert out["metadata"]["converted"] == "true"


# ---- the value of the last statement (MVEL), without return


@pytest.mark.parametrize(("source", "expected"), [
    ("msg.temperature > 20", True),
    ("var a = 2; var b = 3; a + b;", 5),
    ("var x = 5;", 5),
    ("if (msg.temperature > 20) { 'hot' } else { 'cold' }", "hot"),
    ("if (msg.temperature > 30) 'hot'; else 'cold';", "cold"),
    ("var a = 1; a = a + 1", 2),
    ("", None),
    ("var a = 1; while (a < 3) { a++; }", None),
    ("function f(x) { x * 2 } f(21)", 42),
])
def test_value_of_last_statement(source: str, expected: Any) -> None:
    assert same(run(source), expected)


# ---- expressions


@pytest.mark.parametrize(("source", "expected"), [
    ("return 1 + 2 * 3;", 7),
    ("return (1 + 2) * 3;", 9),
    ("return 10 - 2 - 3;", 5),
    ("return 5 / 2;", 2.5),
    ("return 4 / 2;", 2.0),
    ("return 7 % 3;", 1),
    ("return -7 % 3;", -1),
    ("return 7.5 % 2;", 1.5),
    ("return 2 ** 10;", 1024),
    ("return 2 ** 3 ** 2;", 512),
    ("return 0xFF;", 255),
    ("return 0x1aL;", 26),
    ("return 1.5e3;", 1500.0),
    ("return .5 + 1;", 1.5),
    ("return 10L;", 10),
    ("return 2.5f;", 2.5),
    ("return 1 / 0;", math.inf),
    ("return -1 / 0;", -math.inf),
    ("return 0 / 0;", math.nan),
    ("return 3 - -2;", 5),
    ("return -msg.temperature;", -25),
    ("return +msg.humidity;", 40.5),
    ("return 1 << 4;", 16),
    ("return 0xF0 >> 4;", 15),
    ("return -1 >>> 28;", 15),
    ("return 1 << 31;", -2147483648),
    ("return 5 & 3;", 1),
    ("return 5 | 3;", 7),
    ("return 5 ^ 3;", 6),
    ("return ~5;", -6),
    ("return 1 # 2;", "12"),
    ("return 'a' + 1;", "a1"),
    ("return 'a' + 1.0;", "a1.0"),
    ("return 'v=' + 12345678.9;", "v=1.23456789E7"),
    ("return 'v=' + 0.0001;", "v=1.0E-4"),
    ("return 'v=' + 0.001;", "v=0.001"),
    ("return 1 + 2 + 'x';", "3x"),
    ("return 'x' + 1 + 2;", "x12"),
    ("return 'x' + null;", "xnull"),
    ("return 'x' + true;", "xtrue"),
    ("return 'list ' + [1, 'a', 2.0];", "list [1, a, 2.0]"),
    ("return '' + {a: 1, b: [true]};", "{a=1, b=[true]}"),
    ("return [1, 2] + 3;", [1, 2, 3]),
    ("return [1, 2] + [3];", [1, 2, 3]),
    ("return '5' * 2;", 10),
    ("return '10' - 1;", 9),
])
def test_arithmetic(source: str, expected: Any) -> None:
    assert same(run(source), expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("return '123' == 123;", True),
    ("return 1 == 1.0;", True),
    ("return 'a' == 'a';", True),
    ("return 'a' === 'a';", True),
    ("return 'a' != 'b';", True),
    ("return null == null;", True),
    ("return msg.missing == null;", True),
    ("return msg.missing != null;", False),
    ("return 0 == null;", False),
    ("return true == 'true';", True),
    ("return [1, 2] == [1, 2];", True),
    ("return {a: 1} == {a: 1};", True),
    ("return msg.missing > 5;", False),
    ("return msg.missing < 5;", False),
    ("return 'abc' < 'abd';", True),
    ("return '10' > 9;", True),
    ("return 2 >= 2.0;", True),
    ("return 1 <= 0;", False),
    ("return '' == empty;", True),
    ("return null == empty;", True),
    ("return [] == empty;", True),
    ("return 'x' == empty;", False),
    ("return true && false || true;", True),
    ("return !true;", False),
    ("return !msg.missing;", True),
    ("return msg.temperature > 20 && msg.humidity < 50;", True),
    ("return msg.temperature > 20 and msg.humidity > 50;", False),
    ("return msg.temperature > 20 ? 'hot' : 'cold';", "hot"),
    ("return msg.temperature > 30 ? 'hot' : msg.temperature > 20 ? 'warm' : 'cold';", "warm"),
    ("return [1, 2] contains 2;", True),
    ("return 'hello' contains 'ell';", True),
    ("return {a: 1} contains 'a';", True),
    ("return 'abc123' ~= '[a-z]+\\\\d+';", True),
    ("return 'abc' ~= '\\\\d+';", False),
])
def test_comparison_and_logic(source: str, expected: Any) -> None:
    assert same(run(source), expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("return (int) 5.7;", 5),
    ("return (int) -5.7;", -5),
    ("return (long) '42';", 42),
    ("return (double) 5;", 5.0),
    ("return (byte) 200;", -56),
    ("return (String) 5;", "5"),
    ("int x = 7.9; return x;", 7),
    ("double d = 3; return d;", 3.0),
    ("String s = 12; return s;", "12"),
    ("int n; return n;", 0),
    ("String s; return s;", None),
])
def test_casts_and_typed_declarations(source: str, expected: Any) -> None:
    assert same(run(source), expected)


def test_java_number_text() -> None:
    cases = {"1.0": "1.0", "100.0": "100.0", "1e7": "1.0E7", "1.5e-5": "1.5E-5", "123456.789": "123456.789",
             "-0.5": "-0.5", "1e21": "1.0E21"}
    for literal, text in cases.items():
        assert run(f"return '' + {literal};") == text


# ---- statements and variables


@pytest.mark.parametrize(("source", "expected"), [
    ("var a = 1, b = 2; return a + b;", 3),
    ("var a; return a;", None),
    ("x = 5; return x * 2;", 10),
    ("var a; var b = (a = 5) + 1; return [a, b];", [5, 6]),
    ("var i = 5; var j = i++; return [i, j];", [6, 5]),
    ("var i = 5; var j = ++i; return [i, j];", [6, 6]),
    ("var i = 5; i--; --i; return i;", 3),
    ("var s = 'a'; s += 'b'; s += 1; return s;", "ab1"),
    ("var n = 10; n -= 3; n *= 2; n /= 4; return n;", 3.5),
    ("var n = 10; n %= 4; return n;", 2),
    ("var m = {count: 1}; m.count++; m.count += 10; return m;", {"count": 12}),
    ("var m = {}; m['a.b'] = 1; return m;", {"a.b": 1}),
    ("var l = [1, 2]; l[0] += 5; l[1]++; return l;", [6, 3]),
    ("msg.temperature = null; return msg;", {"humidity": 40.5, "name": "T1", "data": {"values": [1, 2, 3],
                                                                                      "unit": "C"}}),
    ("return {a: null, b: 1};", {"b": 1}),
    ("return {'quoted key': 1, \"b\": 2, 3: 'three'};", {"quoted key": 1, "b": 2, 3: "three"}),
    ("return ['a': 1, 'b': 2];", {"a": 1, "b": 2}),
    ("return [];", []),
    ("return {};", {}),
    ("return {1, 2, 3};", [1, 2, 3]),
    ("return [1, [2, [3]], {a: [4]}];", [1, [2, [3]], {"a": [4]}]),
    ("return msg.data.values[1];", 2),
    ("return msg['data']['unit'];", "C"),
    ("return msg.data.values.length;", 3),
    ("return msg.name.length;", 2),
    ("var s = 'abc'; return s[1];", "b"),
    ("return msg?.missing?.deeper;", None),
    ("return msg.?missing.?deeper;", None),
    ("return msg?.data?.unit;", "C"),
    ("var a = new int[3]; a[1] = 5; return a;", [0, 5, 0]),
    ("var a = new double[2]; return a;", [0.0, 0.0]),
    ("var a = new String[2]; return a;", [None, None]),
    ("var a = new boolean[1]; return a;", [False]),
    ("var a = new String[]{'x', 'y'}; return a.length;", 2),
    ("int[] a = new int[]{3, 1, 2}; a.sort(); return a;", [1, 2, 3]),
    ("var l = new ArrayList(); l.add(1); return l;", [1]),
    ("var m = new HashMap(); m.put('k', 'v'); return m;", {"k": "v"}),
])
def test_variables_and_collections(source: str, expected: Any) -> None:
    assert same(run(source), expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("if (msg.temperature > 30) { return 'hot'; } else if (msg.temperature > 20) { return 'warm'; } "
     "else { return 'cold'; }", "warm"),
    ("if (false) return 1; else if (false) return 2; else return 3;", 3),
    ("var s = 0; for (var i = 0; i < 10; i++) { s += i; } return s;", 45),
    ("var s = 0; for (int i = 0, j = 10; i < j; i++, j--) { s += 1; } return s;", 5),
    ("var s = 0; for (var i = 0; i < 10; i++) { if (i % 2 == 0) continue; if (i > 7) break; s += i; } return s;",
     16),
    ("var s = 0; for (var i = 0; ; i++) { if (i == 3) break; s += i; } return s;", 3),
    ("var n = 0; for (var i = 0; i < 3; i++) { for (var j = 0; j < 3; j++) { if (j == 1) break; n++; } } return n;",
     3),
    ("var out = []; foreach (v : msg.data.values) { out.add(v * 10); } return out;", [10, 20, 30]),
    ("var out = []; for (v : msg.data.values) { out.add(v); } return out;", [1, 2, 3]),
    ("var out = []; for (var v : msg.data.values) { out.add(v); } return out;", [1, 2, 3]),
    ("var out = ''; for (String c : 'abc') { out = c + out; } return out;", "cba"),
    ("var keys = []; foreach (k : msg.keySet()) { keys.add(k); } return keys;",
     ["temperature", "humidity", "name", "data"]),
    ("var s = 0; foreach (e : {a: 1, b: 2}) { s += e.value; } return s;", 3),
    ("var s = ''; foreach (e : {a: 1, b: 2}.entrySet()) { s += e.getKey() + '=' + e.getValue() + ';'; } return s;",
     "a=1;b=2;"),
    ("var i = 0; while (i < 5) { i++; } return i;", 5),
    ("var i = 0; while (true) { if (++i >= 4) break; } return i;", 4),
    ("var i = 0; do { i++; } while (i < 3); return i;", 3),
    ("var i = 10; do { i++; } while (i < 3); return i;", 11),
    ("var i = 0; until (i == 4) { i++; } return i;", 4),
    ("var i = 0; do { i += 2; } until (i > 5); return i;", 6),
    ("var found = null; foreach (v : [5, 8, 13]) { if (v > 6) { found = v; break; } } return found;", 8),
    ("var l = [1, 2, 3]; foreach (v : l) { l.add(v); } return l.size();", 6),
    ("{ var a = 1; } return a;", 1),
    (";;; return 1;;", 1),
])
def test_control_flow(source: str, expected: Any) -> None:
    assert same(run(source), expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("function add(a, b) { return a + b; } return add(2, 3);", 5),
    ("def add(a, b) { return a + b; } return add(2, 3);", 5),
    ("return twice(4); function twice(x) { return x * 2; }", 8),
    ("function fact(n) { if (n <= 1) { return 1; } return n * fact(n - 1); } return fact(10);", 3628800),
    ("function isEven(n) { return n == 0 ? true : isOdd(n - 1); } "
     "function isOdd(n) { return n == 0 ? false : isEven(n - 1); } return isEven(10);", True),
    ("function hot() { return msg.temperature > 20; } return hot();", True),
    ("var total = 0; function add(x) { total = total + x; } add(2); add(3); return total;", 5),
    ("var x = 1; function f() { var x = 2; return x; } return [f(), x];", [2, 1]),
    ("function f(x) { x.count = 1; } var m = {}; f(m); return m;", {"count": 1}),
    ("function f() { return; } return f();", None),
    ("function f(l) { foreach (v : l) { if (v > 1) { return v; } } return -1; } return f([1, 2, 3]);", 2),
    ("function f(a) { var r = []; for (var i = 0; i < a; i++) { r.add(i); } return r; } return f(3);", [0, 1, 2]),
])
def test_functions(source: str, expected: Any) -> None:
    assert same(run(source), expected)


def test_comments_and_layout() -> None:
    script = """
    // a filter
    /* spanning
       lines */
    var limit = 20; // threshold
    return msg.temperature
        > limit;
    """
    assert run(script) is True


def test_string_escapes() -> None:
    assert run(r"""return 'it\'s' + "\t\"q\"\n" + '\u0041';""") == "it's\t\"q\"\nA"


# ---- methods


@pytest.mark.parametrize(("source", "expected"), [
    ("return 'Hello'.length();", 5),
    ("return 'Hello'.toUpperCase();", "HELLO"),
    ("return 'Hello'.toLowerCase();", "hello"),
    ("return 'Hello'.contains('ell');", True),
    ("return 'Hello'.startsWith('He');", True),
    ("return 'Hello'.endsWith('lo');", True),
    ("return 'Hello'.substring(1);", "ello"),
    ("return 'Hello'.substring(1, 3);", "el"),
    ("return 'Hello'.indexOf('l');", 2),
    ("return 'Hello'.indexOf('l', 3);", 3),
    ("return 'Hello'.lastIndexOf('l');", 3),
    ("return 'Hello'.indexOf('z');", -1),
    ("return '  Hi  '.trim();", "Hi"),
    ("return 'a-b-c'.replace('-', '+');", "a+b+c"),
    ("return 'a1b22c'.replaceAll('[0-9]+', '#');", "a#b#c"),
    ("return '2024-01-31'.replaceAll('(\\\\d+)-(\\\\d+)-(\\\\d+)', '$3.$2.$1');", "31.01.2024"),
    ("return 'a1b2'.replaceFirst('\\\\d', '_');", "a_b2"),
    ("return 'a,b,,c,,'.split(',');", ["a", "b", "", "c"]),
    ("return 'a, b ,c'.split('\\\\s*,\\\\s*');", ["a", "b", "c"]),
    ("return 'a.b.c'.split('\\\\.');", ["a", "b", "c"]),
    ("return 'a:b:c'.split(':', 2);", ["a", "b:c"]),
    ("return 'abc'.split('');", ["a", "b", "c"]),
    ("return 'abc123'.matches('[a-z]+\\\\d+');", True),
    ("return 'Hello'.charAt(1);", "e"),
    ("return 'A'.codePointAt(0);", 65),
    ("return ''.isEmpty();", True),
    ("return '  '.isBlank();", True),
    ("return 'a'.equals('a');", True),
    ("return 'A'.equalsIgnoreCase('a');", True),
    ("return 'a'.compareTo('b');", -1),
    ("return 'ab'.concat('cd');", "abcd"),
    ("return 'ab'.repeat(3);", "ababab"),
    ("return 'abc'.toCharArray();", ["a", "b", "c"]),
    ("return 'hi'.getBytes();", [104, 105]),
    ("return 'hello'.hashCode();", 99162322),
    ("return 'x'.toString();", "x"),
])
def test_string_methods(source: str, expected: Any) -> None:
    assert same(run(source), expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("var l = [1, 2, 3]; return l.size();", 3),
    ("var l = [1, 2, 3]; return l.length();", 3),
    ("var l = [1, 2, 3]; return l.get(1);", 2),
    ("var l = [1, 2]; l.add(3); l.add(0, 0); return l;", [0, 1, 2, 3]),
    ("var l = [1]; l.addAll([2, 3]); return l;", [1, 2, 3]),
    ("var l = [10, 20, 30]; var r = l.remove(0); return [r, l];", [10, [20, 30]]),
    ("var l = ['a', 'b']; var r = l.remove('a'); return [r, l];", [True, ["b"]]),
    ("var l = [1, 2]; return [l.contains(2), l.contains(5), l.contains('2')];", [True, False, False]),
    ("var l = [1, 2, 1]; return [l.indexOf(1), l.lastIndexOf(1), l.indexOf(9)];", [0, 2, -1]),
    ("return [].isEmpty();", True),
    ("var l = [1, 2]; l.clear(); return l;", []),
    ("var l = [3, 1, 2]; l.sort(); return l;", [1, 2, 3]),
    ("var l = [3, 1, 2]; l.sort(false); return l;", [3, 2, 1]),
    ("var l = ['b', 'a', 'c']; l.sort(); return l;", ["a", "b", "c"]),
    ("var l = ['10', 9, 100]; l.sort(); return l;", [9, "10", 100]),
    ("var l = [3, 1, 2]; var s = l.toSorted(); return [l, s];", [[3, 1, 2], [1, 2, 3]]),
    ("var l = [1, 2, 3]; l.reverse(); return l;", [3, 2, 1]),
    ("var l = [1, 2, 3]; return l.toReversed();", [3, 2, 1]),
    ("var l = [1, 2]; l.push(3); return [l.pop(), l];", [3, [1, 2]]),
    ("var l = [1, 2, 3]; return [l.shift(), l];", [1, [2, 3]]),
    ("var l = [3]; l.unshift(1, 2); return l;", [1, 2, 3]),
    ("return [].pop();", None),
    ("return [1, 2, 3, 4].slice(1, 3);", [2, 3]),
    ("return [1, 2, 3, 4].slice(-2);", [3, 4]),
    ("return [1, 2, 3].join();", "1,2,3"),
    ("return ['a', 'b'].join('-');", "a-b"),
    ("return [1, 2].concat([3]);", [1, 2, 3]),
    ("var l = [1, 2, 3, 4]; var r = l.splice(1, 2, 'a'); return [r, l];", [[2, 3], [1, "a", 4]]),
    ("return [1, 2, 3].toSpliced(0, 1);", [2, 3]),
    ("return [1, 2, 3].with(1, 9);", [1, 9, 3]),
    ("return new int[3].fill(7);", [7, 7, 7]),
    ("return [1, 2, 3, 4].subList(1, 3);", [2, 3]),
    ("var l = [1, 2]; l.set(0, 5); return l;", [5, 2]),
    ("return [1, 2].containsAll([2, 1]);", True),
    ("return [1, 'a'].toString();", "[1, a]"),
])
def test_list_methods(source: str, expected: Any) -> None:
    assert same(run(source), expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("var m = {a: 1}; return m.get('a');", 1),
    ("var m = {a: 1}; return m.get('b');", None),
    ("var m = {a: 1}; return m.getOrDefault('b', 7);", 7),
    ("var m = {a: 1}; var p = m.put('a', 2); m.put('b', 3); return [p, m];", [1, {"a": 2, "b": 3}]),
    ("var m = {a: 1}; m.put('a', null); return m;", {}),
    ("var m = {a: 1}; m.putIfAbsent('a', 9); m.putIfAbsent('b', 2); return m;", {"a": 1, "b": 2}),
    ("var m = {a: 1}; m.putAll({b: 2}); return m;", {"a": 1, "b": 2}),
    ("var m = {a: 1}; return [m.containsKey('a'), m.containsKey('z'), m.containsValue(1)];", [True, False, True]),
    ("return {a: 1, b: 2}.keySet();", ["a", "b"]),
    ("return {a: 1, b: 2}.keys();", ["a", "b"]),
    ("return {a: 1, b: 2}.values();", [1, 2]),
    ("return {a: 1}.entrySet();", [{"a": 1}]),
    ("var m = {a: 1, b: 2}; var r = m.remove('a'); return [r, m];", [1, {"b": 2}]),
    ("return [{a: 1}.size(), {}.isEmpty()];", [1, True]),
    ("var m = {a: 1}; m.clear(); return m;", {}),
    ("var m = {b: 1, a: 2}; m.sortByKey(); return m.keys();", ["a", "b"]),
    ("var m = {a: 3, b: 1, c: 2}; m.sortByValue(); return m.keys();", ["b", "c", "a"]),
    ("var m = {a: 3, b: 1}; m.sortByValue(false); return m.keys();", ["a", "b"]),
    ("return {b: 1, a: 2}.toSorted().keys();", ["a", "b"]),
    ("var m = {a: 'x', b: 'y'}; m.invert(); return m;", {"x": "a", "y": "b"}),
    ("var m = {a: 1, b: 2}; m.reverse(); return m.keys();", ["b", "a"]),
    ("return {a: 1, b: 2, c: 3}.slice(1);", {"b": 2, "c": 3}),
    ("var m = {a: 1}; var c = m.clone(); c.b = 2; return [m, c];", [{"a": 1}, {"a": 1, "b": 2}]),
    ("var m = {a: 1}; m.replace('a', 5); m.replace('z', 1); return m;", {"a": 5}),
    ("return {a: 1}.toString();", "{a=1}"),
])
def test_map_methods(source: str, expected: Any) -> None:
    assert same(run(source), expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("return (5.7).intValue();", 5),
    ("return msg.temperature.doubleValue();", 25.0),
    ("return msg.temperature.toString();", "25"),
    ("return msg.humidity.toString();", "40.5"),
    ("return (3).compareTo(5);", -1),
    ("return true.toString();", "true"),
    ("return new Date(0).toISOString();", "1970-01-01T00:00:00Z"),
    ("return new Date('2024-01-31T10:15:30.123Z').getTime();", 1706696130123),
    ("return new Date(1706696130123).toISOString();", "2024-01-31T10:15:30.123Z"),
    ("var d = new Date(2024, 2, 29, 13, 45); return [d.getFullYear(), d.getMonth(), d.getDate(), d.getHours(), "
     "d.getMinutes(), d.getDay()];", [2024, 2, 29, 13, 45, 4]),
    ("return new Date(2024, 1, 31, 'Europe/Kyiv').getTime();", 1706652000000),
    ("return new Date(0);", "1970-01-01T00:00:00Z"),
    ("return Date.now() > 1700000000000;", True),
    ("return new Date().getTime() > 1700000000000;", True),
])
def test_number_boolean_and_date_methods(source: str, expected: Any) -> None:
    assert same(run(source), expected)


# ---- helper functions


@pytest.mark.parametrize(("source", "expected"), [
    ("return JSON.stringify({a: 1.0, b: 'x\"y', c: [1, 2], d: true, e: {f: null}});",
     '{"a":1.0,"b":"x\\"y","c":[1,2],"d":true,"e":{}}'),
    ("return JSON.stringify(msg.missing);", "null"),
    ("return JSON.stringify('text');", '"text"'),
    ("return JSON.stringify(1e10);", "1.0E10"),
    ("return JSON.stringify([0.0001, 12345678.5, 'e+5', 2]);", '[1.0E-4,1.2345678500000000E7,"e+5",2]'
     .replace("1.2345678500000000E7", "1.23456785E7")),
    ("return JSON.stringify({u: 'Київ'});", '{"u":"Київ"}'),
    ("return JSON.parse('{\"a\":[1,2.5,null,true],\"b\":{\"c\":\"d\"}}');",
     {"a": [1, 2.5, None, True], "b": {"c": "d"}}),
    ("return JSON.parse('42');", 42),
    ("return JSON.parse('\"s\"');", "s"),
    ("return JSON.parse(JSON.stringify(msg)) == msg;", True),
    ("return parseInt('473');", 473),
    ("return parseInt('-0');", 0),
    ("return parseInt('+42');", 42),
    ("return parseInt('0xFF');", 255),
    ("return parseInt('FF');", 255),
    ("return parseInt('-FF');", -255),
    ("return parseInt('11', 2);", 3),
    ("return parseInt('11111111111111111111111111111111', 2);", -1),
    ("return parseInt('zz', 36);", 1295),
    ("return parseInt('');", None),
    ("return parseInt(null);", None),
    ("return parseLong('9223372036854775807');", 9223372036854775807),
    ("return parseFloat('4.2');", 4.2),
    ("return parseFloat('0x41200000', 16);", 10.0),
    ("return parseDouble('1.1');", 1.1),
    ("return parseDouble('0x400921FB54442D18');", math.pi),
    ("return toFixed(0.345, 1);", 0.3),
    ("return toFixed(0.345, 2);", 0.35),
    ("return toFixed(2, 2);", 2.0),
    ("return toInt(0.3);", 0),
    ("return toInt(0.5);", 1),
    ("return toInt(2.7);", 3),
    ("return isNaN(0 / 0);", True),
    ("return isNaN(1.5);", False),
    ("return Math.abs(-3);", 3),
    ("return Math.abs(-3.5);", 3.5),
    ("return Math.round(2.5);", 3),
    ("return Math.round(-2.5);", -2),
    ("return Math.floor(2.7);", 2.0),
    ("return Math.ceil(2.1);", 3.0),
    ("return Math.min(1, 2);", 1),
    ("return Math.max(1, 2.5);", 2.5),
    ("return Math.pow(2, 3);", 8.0),
    ("return Math.sqrt(16);", 4.0),
    ("return Math.sqrt(-1);", math.nan),
    ("return Math.log(Math.E);", 1.0),
    ("return Math.log10(1000);", 3.0),
    ("return Math.signum(-4.2);", -1.0),
    ("return Math.PI > 3.14 && Math.PI < 3.15;", True),
    ("var r = Math.random(); return r >= 0 && r < 1;", True),
    ("return Integer.parseInt('42');", 42),
    ("return Integer.parseInt('ff', 16);", 255),
    ("return Integer.toHexString(-1);", "ffffffff"),
    ("return Integer.toString(255, 2);", "11111111"),
    ("return Integer.MAX_VALUE;", 2147483647),
    ("return Long.parseLong('-9');", -9),
    ("return Double.parseDouble('1.5');", 1.5),
    ("return Float.parseFloat('2.5');", 2.5),
    ("return Double.isNaN(0 / 0);", True),
    ("return Boolean.parseBoolean('TRUE');", True),
    ("return String.valueOf(5.0);", "5.0"),
    ("return String.format('%.2f', 3.14159);", "3.14"),
    ("return String.format('%05d|%x|%X|%s|%-3s|', 42, 255, 255, 'a', 'b');", "00042|ff|FF|a|b  |"),
    ("return String.format('%s=%d%%', 'v', 5);", "v=5%"),
    ("return String.join('-', ['a', 'b']);", "a-b"),
    ("return stringToBytes('Hello');", [72, 101, 108, 108, 111]),
    ("return stringToBytes('ж');", [-48, -74]),
    ("return stringToBytes('é', 'ISO-8859-1');", [-23]),
    ("return bytesToString([72, 105]);", "Hi"),
    ("return bytesToString([-48, -74]);", "ж"),
    ("return bytesToString([0xE9], 'ISO-8859-1');", "é"),
    ("return decodeToString([72, 105]);", "Hi"),
    ("return decodeToJson(stringToBytes('{\"a\":1}'));", {"a": 1}),
    ("return decodeToJson('[1]');", [1]),
    ("return bytesToHex([0xBB, 0xAA]);", "BBAA"),
    ("return bytesToHex([-1, 1]);", "FF01"),
    ("return hexToBytes('0x01752B03FA');", [1, 117, 43, 3, -6]),
    ("return hexToBytes('BBAA');", [-69, -86]),
    ("return base64ToBytes('AQIDBAU=');", [1, 2, 3, 4, 5]),
    ("return bytesToBase64([1, 2, 3, 4, 5]);", "AQIDBAU="),
    ("return base64ToHex('AQID');", "010203"),
    ("return hexToBase64('010203');", "AQID"),
    ("return btoa('Hello, world');", "SGVsbG8sIHdvcmxk"),
    ("return atob('SGVsbG8sIHdvcmxk');", "Hello, world"),
    ("return parseHexToInt('BBAA');", 48042),
    ("return parseHexToInt('BBAA', false);", 43707),
    ("return parseLittleEndianHexToInt('BBAA');", 43707),
    ("return parseBigEndianHexToInt('BBAA');", 48042),
    ("return parseHexToInt('FFFFFF7F', false);", 2147483647),
    ("return parseHexToLong('0x7FFFFFFFFFFFFFFF');", 9223372036854775807),
    ("return parseHexToFloat('41200000');", 10.0),
    ("return parseLittleEndianHexToFloat('00002041');", 10.0),
    ("return parseHexToDouble('400921FB54442D18');", math.pi),
    ("return parseBytesToInt([0xBB, 0xAA], 0, 2);", 48042),
    ("return parseBytesToInt([0xBB, 0xAA], 0, 2, false);", 43707),
    ("return parseBytesToInt([0xFF, 0xFF, 0xFF, 0xFF]);", -1),
    ("return parseBytesToInt([0x00, 0x00, 0x01, 0x02, 0x03], 2);", 66051),
    ("return parseBytesToLong([0, 0, 0, 0, 0, 0, 1, 0]);", 256),
    ("return parseBytesToFloat([0x41, 0x20, 0x00, 0x00]);", 10.0),
    ("return parseBytesToFloat([0x00, 0x00, 0x20, 0x41], 0, 4, false);", 10.0),
    ("return parseBytesToDouble([0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18]);", math.pi),
    ("return parseBytesIntToFloat([0x00, 0x0A]);", 10.0),
    ("return parseBytesLongToDouble([0x01, 0x00]);", 256.0),
    ("return intToHex(41);", "29"),
    ("return intToHex(41, true, true);", "0x29"),
    ("return intToHex(2147483647, false);", "FFFFFF7F"),
    ("return intToHex(-1);", "FFFF"),
    ("return longToHex(4294967296);", "0100000000"),
    ("return intLongToRadixString(255, 16);", "FF"),
    ("return intLongToRadixString(5, 2);", "00000101"),
    ("return intLongToRadixString(8, 8);", "10"),
    ("return intLongToRadixString(35, 36);", "z"),
    ("return floatToHex(123456789.00);", "0x4CEB79A3"),
    ("return floatToHex(10.0, false);", "0x00002041"),
    ("return doubleToHex(1.0);", "0x3FF0000000000000"),
    ("return printUnsignedBytes([-1, 2]);", [255, 2]),
    ("return isBinary('1101');", 2),
    ("return isBinary('12');", -1),
    ("return isOctal('17');", 8),
    ("return isDecimal('-1.5');", 10),
    ("return isDecimal('a');", -1),
    ("return isHexadecimal('0xFF');", 16),
    ("return isHexadecimal('XYZ');", -1),
    ("return padStart('101', 8, '0');", "00000101"),
    ("return padEnd('ab', 4, '*');", "ab**"),
    ("return parseByteToBinaryArray(5);", [0, 0, 0, 0, 0, 1, 0, 1]),
    ("return parseByteToBinaryArray(5, 4, false);", [1, 0, 1, 0]),
    ("return parseBinaryArrayToInt([1, 0, 1]);", 5),
    ("return parseBinaryArrayToInt([1, 1, 1, 1, 1, 1, 1, 1]);", -1),
    ("return parseLongToBinaryArray(6, 4);", [0, 1, 1, 0]),
    ("return parseBytesToBinaryArray([0x01, 0x02]);", [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]),
    ("return [isMap({}), isMap([]), isList([]), isList('x'), isArray([])];", [True, False, True, False, False]),
    ("return bytesToExecutionArrayList([1, 255]);", [1, -1]),
    ("return toFlatMap({a: {b: 1, c: [2, {d: 3}]}, e: 'x'});", {"a.b": 1, "a.c.0": 2, "a.c.1.d": 3, "e": "x"}),
    ("return toFlatMap({a: {b: 1, c: [2, 3]}}, false);", {"b": 1, "c.0": 2, "c.1": 3}),
    ("return toFlatMap({a: {b: 1}, c: 2}, ['a']);", {"c": 2}),
    ("return toFlatMap({a: {b: 1}, c: {d: 2}}, ['d'], true);", {"a.b": 1}),
    ("return encodeURI('https://x.io/a path/?q=Київ 1&b=2#f');",
     "https://x.io/a%20path/?q=%D0%9A%D0%B8%D1%97%D0%B2%201&b=2#f"),
    ("return encodeURI(\"-_.!~*'();/?:@&=+$,#\");", "-_.!~*'();/?:@&=+$,#"),
    ("return decodeURI('https://x.io/a%20path/?q=%D0%9A%D0%B8%D1%97%D0%B2');", "https://x.io/a path/?q=Київ"),
])
def test_helper_functions(source: str, expected: Any) -> None:
    assert same(run(source), expected)


def test_to_flat_map_documented_example() -> None:
    source = """
    var json = {
        "key1": "value1",
        "key2": 12,
        "key3": {
            "key4": "value4",
            "key5": 34,
            "key6": [{"key7": "value7"}, {"key8": "value8"}, "just_string_value_in_array", 56],
            "key9": {"key10": ["value10_1", "value10_2", "value10_3"]}
        },
        "key_to_overwrite": "root_value",
        "key11": {"key_to_overwrite": "second_level_value"}
    };
    return [toFlatMap(json), toFlatMap(json, ['key4', 'key10'], false)];
    """
    with_paths, without = run(source)
    assert with_paths == {
        "key1": "value1", "key2": 12, "key3.key4": "value4", "key3.key5": 34, "key3.key6.0.key7": "value7",
        "key3.key6.1.key8": "value8", "key3.key6.2": "just_string_value_in_array", "key3.key6.3": 56,
        "key3.key9.key10.0": "value10_1", "key3.key9.key10.1": "value10_2", "key3.key9.key10.2": "value10_3",
        "key_to_overwrite": "root_value", "key11.key_to_overwrite": "second_level_value"}
    assert without == {"key1": "value1", "key2": 12, "key5": 34, "key7": "value7", "key8": "value8",
                       "key6.2": "just_string_value_in_array", "key6.3": 56,
                       "key_to_overwrite": "second_level_value"}


@pytest.mark.parametrize(("source", "message"), [
    ("raiseError('boom');", "boom"),
    ("raiseError('bad value', 5);", "bad value for value 5"),
    ("if (msg.temperature > 20) { raiseError('too hot: ' + msg.temperature); } return true;", "too hot: 25"),
])
def test_raise_error_keeps_the_scripts_message(source: str, message: str) -> None:
    with pytest.raises(ScriptRuntimeError) as info:
        run(source)
    assert str(info.value) == message


# ---- errors when the script is saved


@pytest.mark.parametrize(("source", "message"), [
    ("return msg.temperature >;", r"unexpected ';'; expected an expression \(at 1:25\)"),
    ("var x = ;", r"unexpected ';'; expected an expression \(at 1:9\)"),
    ("var a = 1;\nvar b = 2\nreturn a;", r"expected ';' after the statement, found 'return' \(at 3:1\)"),
    ("return 'abc;", r"unterminated string literal \(at 1:8\)"),
    ("/* never closed", r"unterminated comment \(at 1:1\)"),
    ("if (msg.a { return 1; }", r"expected '\)' after the condition, found '\{' \(at 1:11\)"),
    ("if (true) { return 1;", r"'\{' is never closed \(at 1:11\)"),
    ("return [1, 2;", r"expected ',' between list items, found ';' \(at 1:13\)"),
    ("return foo(1);", r"unknown function 'foo\(\)' \(at 1:8\)"),
    ("return mgs.temperature;", r"'mgs' is not defined \(at 1:8\)"),
    ("function f() { return y; } return f();", r"'y' is not defined \(at 1:23\)"),
    ("return msg.temperature.fooBar();", r"unknown method 'fooBar\(\)' \(at 1:24\)"),
    ("return Math.foo(1);", r"Math has no method 'foo\(\)'"),
    ("return Math.TAU;", r"Math has no field 'TAU'"),
    ("return JSON;", r"'JSON' is a class"),
    ("return parseInt();", r"parseInt\(\) takes 1 to 2 arguments, not 0 \(at 1:8\)"),
    ("function f(a) { return a; } return f(1, 2);", r"function f\(\) takes 1 argument, not 2"),
    ("function f() {} function f() {}", r"function 'f' is defined twice"),
    ("function parseInt(x) { return x; }", r"would hide the helper function"),
    ("switch (msgType) { case 'a': return 1; }", r"'switch' is not supported; use if / else if \(at 1:1\)"),
    ("let x = 1;", r"'let' is not supported; use 'var'"),
    ("const x = 1;", r"'const' is not supported; use 'var'"),
    ("throw 'x';", r"'throw' is not supported; use raiseError\(message\)"),
    ("try { x(); } catch (e) {}", r"'try' is not supported"),
    ("break;", r"'break' outside a loop \(at 1:1\)"),
    ("continue;", r"'continue' outside a loop"),
    ("else { return 1; }", r"'else' without a matching 'if'"),
    ("return new Foo();", r"'new Foo\(...\)' is not supported"),
    ("return new java.io.File('x');", r"'new java.io.File\(...\)' is not supported"),
    ("return msg instanceof Map;", r"the 'instanceof' operator is not supported"),
    ("return a or b;", r"the 'or' operator is not supported"),
    ("return 1 = 2;", r"cannot assign to this expression with '='"),
    ("return f() = 2; function f() {}", r"cannot assign to this expression"),
    ("msg?.a = 1;", r"cannot assign through a null-safe"),
    ("return 5abc;", r"invalid number '5a' \(at 1:8\)"),
    ("return 09;", r"invalid octal number '09'"),
    ("var var = 1;", r"'var' is a reserved word and cannot be used as a variable name"),
    ("return 'a' 'b';", r"expected ';' after the statement, found a string"),
    ("return @;", r"unexpected character '@' \(at 1:8\)"),
    ("return 'a\\q';", r"invalid escape sequence '\\q' in string"),
    ("return parseInt;", r"'parseInt' is a function; call it with \( \)"),
    ("var f = function(x) { return x; };", r"function expressions are not supported"),
    ("return (msg.temperature)(1);", r"only named functions can be called \(at 1:25\)"),
    ("do { } return 1;", r"expected 'while' or 'until' after the body of 'do'"),
    ("return " + "(" * 3000 + "1" + ")" * 3000 + ";", r"nested too deeply"),
])
def test_compile_errors_say_what_and_where(source: str, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        compile(source)


def test_compile_rejects_bad_argument_names() -> None:
    with pytest.raises(ScriptError, match="cannot be a script argument name"):
        compile("return 1;", ("msg", "not valid"))
    with pytest.raises(ScriptError, match="duplicate"):
        compile("return 1;", ("msg", "msg"))


# ---- errors while running


@pytest.mark.parametrize(("source", "message"), [
    ("if (false) { var y = 1; } return y;", r"'y' is not defined here yet \(at 1:34\)"),
    ("return msg.temperature.length();", r"Integer has no method 'length\(\)' \(at 1:24\)"),
    ("return msg.missing.value;", r"cannot read property 'value' of null \(at 1:20\)"),
    ("return msg.missing.toUpperCase();", r"cannot call toUpperCase\(\) on null \(at 1:20\)"),
    ("return msg.missing[0];", r"cannot read element \[0\] of null"),
    ("var l = [1]; return l[5];", r"Index 5 out of bounds for length 1 \(at 1:22\)"),
    ("var l = [1]; l[3] = 2;", r"Index 3 out of bounds for length 1"),
    ("return [1, 2].get(2);", r"get\(\): Index 2 out of bounds for length 2"),
    ("return {} - 1;", r"cannot apply '-' to Map '\{\}' and Integer '1' \(at 1:11\)"),
    ("return msg.missing * 2;", r"cannot apply '\*' to null"),
    ("return msg.missing + 1;", r"cannot apply '\+' to null and Integer"),
    ("return 5 % 0;", r"integer remainder by zero"),
    ("return [1] > 1;", r"cannot compare List"),
    ("return 'abc'.substring();", r"String.substring\(\) takes 1 to 2 arguments, not 0"),
    ("return 'abc'.substring(5);", r"substring\(\): begin 5, end 3, length 3"),
    ("return 'abc'.push(1);", r"String has no method 'push\(\)'"),
    ("return JSON.parse('{bad');", r"JSON.parse\(\): JSON.parse: invalid JSON"),
    ("return parseInt('xyz');", r'parseInt\(\): Value: "xyz" is not numeric or hexDecimal format! \(at 1:8\)'),
    ("return parseInt('FFF');", r"must be of even length"),
    ("return parseHexToInt('FFFFFFFF');", r"out of range for Integer"),
    ("return parseInt('12.5');", r'For input string: "12.5"'),
    ("return hexToBytes('ABC');", r"Hex string must be even-length."),
    ("return stringToBytes(5);", r"Invalid type parameter \[Integer\]. Expected 'String'"),
    ("return bytesToString([300]);", r"could not be correctly converted to a byte"),
    ("return parseBytesToInt([1, 2], 0, 5);", r"Offset: 0 and Length: 5 is out of bounds for array with length: 2!"),
    ("return parseBytesToInt([1, 2, 3, 4, 5], 0, 5);", r"Length: 5 is too large. Maximum 4 bytes is allowed!"),
    ("return base64ToBytes('***');", r"invalid base64"),
    ("return Integer.parseInt('x1');", r'For input string: "x1"'),
    ("foreach (x : 5) {}", r"foreach cannot go over Integer"),
    ("var m = 5; m.a = 1;", r"cannot set 'a' on Integer"),
    ("return (int) 'abc';", r"cannot convert String 'abc' to int"),
    ("return new Date('yesterday');", r"cannot parse 'yesterday' as a date"),
    ("return 'aaaa'.matches('(a+)+b');", r"nests repetition"),
    ("return 'x'.matches('(');", r"invalid regular expression"),
    ("var l = []; l.add(l); return JSON.stringify(l);", r"JSON.stringify: Circular reference"),
    ("return String.format('%d', 'x');", r"must be a whole number"),
])
def test_runtime_errors_say_what_and_where(source: str, message: str) -> None:
    program = compile(source)
    with pytest.raises(ScriptRuntimeError, match=message):
        program.run([MSG, METADATA, "POST_TELEMETRY_REQUEST"])


def test_wrong_number_of_arguments_to_run() -> None:
    with pytest.raises(ScriptRuntimeError, match=r"takes 3 arguments \(msg, metadata, msgType\), not 2"):
        compile("return 1;").run([{}, {}])


# ---- limits: every script can be stopped


@pytest.mark.parametrize("source", [
    "while (true) {}",
    "for (;;) {}",
    "do { } while (true);",
    "var i = 0; while (i >= 0) { i++; }",
    "function f() { for (var i = 0; i < 1000; i++) {} } while (true) { f(); }",
])
def test_endless_loops_stop_at_the_step_limit(source: str) -> None:
    with pytest.raises(ScriptRuntimeError, match="script ran past 100000 steps"):
        run(source)


def test_step_limit_is_the_callers() -> None:
    source = "var n = 0; for (var i = 0; i < 50; i++) { n++; } return n;"
    assert run(source, max_steps=100) == 50
    with pytest.raises(ScriptRuntimeError, match="script ran past 10 steps"):
        run(source, max_steps=10)


def test_time_limit_stops_a_loop_that_fits_the_step_limit() -> None:
    with pytest.raises(ScriptRuntimeError, match=r"script ran past its time limit of 0\.05 s"):
        run("while (true) { var s = 'x'.repeat(10).toUpperCase(); }", max_steps=10**12, timeout_s=0.05)


@pytest.mark.parametrize("source", [
    "function f(n) { return f(n + 1); } return f(0);",
    "function a(n) { return b(n); } function b(n) { return a(n); } return a(1);",
    "function f(n) { return 1 + f(n); } return f(0);",
])
def test_endless_recursion_is_stopped(source: str) -> None:
    with pytest.raises(ScriptRuntimeError, match="nested calls more than 100 deep"):
        run(source)


def test_deep_but_bounded_recursion_runs() -> None:
    assert run("function depth(n) { return n == 0 ? 0 : 1 + depth(n - 1); } return depth(60);") == 60


@pytest.mark.parametrize("source", [
    "var s = 'x'; while (true) { s = s + s; }",
    "var s = 'x'; while (true) { s += s; }",
    "var l = []; var s = 'abcdefghijklmnopqrstuvwxyz'.repeat(40); while (true) { l.add(s + l.size()); }",
    "var l = [1]; while (true) { l = l + l; }",
    "var l = [1]; while (true) { l.addAll(l); }",
    "var m = {}; var i = 0; while (true) { m.put('k' + i, 'v'.repeat(100)); i++; }",
    "return new int[1000000000];",
    "return 'x'.repeat(1000000000);",
    "return padStart('x', 1000000000, ' ');",
    "var s = 'ab'; while (true) { s = s.repeat(2) + s; }",
    "var a = 'x'.repeat(1000000); var l = []; while (true) { l.add(a + 'y'); }",
])
def test_unbounded_allocation_is_stopped(source: str) -> None:
    with pytest.raises(ScriptRuntimeError, match=r"memory limit|elements"):
        run(source, max_steps=10**9, timeout_s=30)


def test_memory_limit_is_the_callers() -> None:
    source = "var l = []; for (var i = 0; i < 2000; i++) { l.add('x'.repeat(100)); } return l.size();"
    assert run(source) == 2000
    with pytest.raises(ScriptRuntimeError, match="memory limit"):
        run(source, max_memory=100_000)


# ---- isolation and reuse


def test_a_script_changes_its_own_copy_of_the_arguments() -> None:
    msg = {"temperature": 25, "nested": {"list": [1]}}
    metadata = {"a": "1"}
    out = compile("msg.temperature = 30; msg.nested.list.add(2); metadata.b = '2'; "
                  "return {msg: msg, metadata: metadata};").run([msg, metadata, "X"])
    assert out == {"msg": {"temperature": 30, "nested": {"list": [1, 2]}}, "metadata": {"a": "1", "b": "2"}}
    assert msg == {"temperature": 25, "nested": {"list": [1]}}
    assert metadata == {"a": "1"}


def test_a_program_runs_again_with_fresh_variables() -> None:
    program = compile("var seen = []; seen.add(msg.v); count = (count == null ? 0 : 1); return seen;",
                      ("msg", "count"))
    assert program.run([{"v": 1}, None]) == [1]
    assert program.run([{"v": 2}, None]) == [2]


def test_results_are_plain_values() -> None:
    out = run("var m = {a: 1}; return {entries: m.entrySet(), date: new Date(86400000), list: [m.entrySet()[0]]};")
    assert out == {"entries": [{"a": 1}], "date": "1970-01-02T00:00:00Z", "list": [{"a": 1}]}


def test_time_limit_stops_heavy_operations_on_big_collections() -> None:
    with pytest.raises(ScriptRuntimeError, match=r"time limit"):
        run("var l = new int[100000]; while (true) { l.sort(); }", max_steps=10**9, timeout_s=0.2)


@pytest.mark.parametrize(("source", "message"), [
    ("return 'x'.repeat(20000).matches('.*a.*b');", r"may search at most 10000 characters, not 20000"),
    ("return 'x'.repeat(200000).replaceAll('x+y', '');", r"may search at most 100000 characters"),
    ("return ('a'.repeat(30) + 'b') ~= '(a|aa)+';", r"nests repetition"),
])
def test_regular_expressions_that_could_run_for_ever_are_refused(source: str, message: str) -> None:
    with pytest.raises(ScriptRuntimeError, match=message):
        run(source)


def test_long_text_with_a_simple_pattern_is_fine() -> None:
    assert run("return 'a,b'.repeat(50000).split(',').size();") == 50001
    assert run("return 'ab '.repeat(50000).replaceAll(' ', '').length();") == 100000


def test_a_result_that_contains_itself_is_refused() -> None:
    with pytest.raises(ScriptRuntimeError, match="contains itself"):
        run("var l = []; l.add(l); return l;")


def test_a_program_is_safe_to_run_from_many_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    program = compile("""
    function total(values) { var s = 0; foreach (v : values) { s += v; } return s; }
    var out = {};
    out.sum = total(msg.values);
    out.name = metadata.deviceName.toUpperCase();
    return out;
    """)

    def one(i: int) -> dict[str, Any]:
        result: dict[str, Any] = program.run([{"values": list(range(i))}, {"deviceName": f"d{i}"}, "T"])
        return result

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(200)))
    assert results == [{"sum": sum(range(i)), "name": f"D{i}"} for i in range(200)]


_TOKENS = ["msg", "metadata", "msgType", ".", "temperature", "[", "]", "(", ")", "{", "}", "0", "1", "2.5", "'a'",
           "+", "-", "*", "/", "%", "==", "<", "&&", "||", "!", "?", ":", ",", ";", "var", "x", "=", "+=", "++",
           "if", "else", "for", "foreach", "while", "return", "function", "f", "null", "true", "size()", "length",
           "keySet()", "add", "put", "toUpperCase()", "JSON.stringify", "parseInt", "new", "int", "Math.abs",
           "break", "continue", "do", "until", "empty", "?.", "'x'.repeat(9)", "l", "[1, 2]", "{a: 1}"]


def test_any_text_compiles_or_fails_cleanly_and_any_program_runs_or_fails_cleanly() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=16))
    def check(tokens: list[str]) -> None:
        source = " ".join(tokens)
        try:
            program = compile(source)
        except ScriptError:
            return
        try:
            program.run([MSG, METADATA, "T"], max_steps=500)
        except ScriptRuntimeError as e:
            assert "interpreter error" not in str(e)

    check()
