"""TBEL's helper functions (ThingsBoard's TbUtils): numbers from text, hex and bytes, base64, URI
encoding, flattening, raiseError. Each takes the run's ``Runtime`` first; their checks and messages
follow TbUtils so scripts fail the way they fail in ThingsBoard.

Bytes are lists of signed ints (-128..127), as Java's ``List<Byte>`` shows them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote, unquote

from thingsray.rules.script._tbel.convert import (
    FUNCTIONS,
    NumberFormatError,
    charset,
    flag,
    helper,
    items,
    signed,
    text,
    to_bytes,
    whole,
)
from thingsray.rules.script._tbel.numeric import is_hex, prepare
from thingsray.rules.script._tbel.values import Runtime, ScriptThrown, to_str, type_name
from thingsray.rules.script.errors import ScriptRuntimeError

__all__ = ["FUNCTIONS"]


# ---- bytes, hex, base64, text


@helper("hexToBytes", "hexToBytesArray")
def hex_to_bytes(rt: Runtime, value: object) -> list[int]:
    s = text(value)
    hexs = prepare(s, True)
    if hexs is None:
        raise ScriptRuntimeError("Hex string must be not empty!")
    if len(hexs) % 2:
        raise ScriptRuntimeError("Hex string must be even-length.")
    if is_hex(s) != 16:
        raise NumberFormatError(f'Value: "{s}" is not numeric or hexDecimal format!')
    return signed(bytes.fromhex(hexs), rt)


@helper("bytesToHex")
def bytes_to_hex(rt: Runtime, data: object) -> str:
    return rt.string(to_bytes(data).hex().upper())


@helper("printUnsignedBytes")
def print_unsigned_bytes(rt: Runtime, data: object) -> list[int]:
    return rt.collection(list(to_bytes(data)))  # type: ignore[no-any-return]


def _b64decode(value: object) -> bytes:
    try:
        return base64.b64decode(text(value), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ScriptRuntimeError(f"invalid base64: {e}") from None


@helper("base64ToHex")
def base64_to_hex(rt: Runtime, value: object) -> str:
    return rt.string(_b64decode(value).hex().upper())


@helper("hexToBase64")
def hex_to_base64(rt: Runtime, value: object) -> str:
    return rt.string(base64.b64encode(to_bytes(hex_to_bytes(rt, value))).decode())


@helper("base64ToBytes", "base64ToBytesList")
def base64_to_bytes(rt: Runtime, value: object) -> list[int]:
    return signed(_b64decode(value), rt)


@helper("bytesToBase64")
def bytes_to_base64(rt: Runtime, data: object) -> str:
    return rt.string(base64.b64encode(to_bytes(data)).decode())


@helper("btoa")
def btoa(rt: Runtime, value: object) -> str:
    return rt.string(base64.b64encode(text(value).encode()).decode())


@helper("atob")
def atob(rt: Runtime, value: object) -> str:
    return rt.string(_b64decode(value).decode("utf-8", errors="replace"))


@helper("bytesToString", "decodeToString")
def bytes_to_string(rt: Runtime, data: object, charset_name: object = "UTF-8") -> str:
    return rt.string(to_bytes(data).decode(charset(charset_name), errors="replace"))


@helper("stringToBytes")
def string_to_bytes(rt: Runtime, value: object, charset_name: object = "UTF-8") -> list[int]:
    if type(value) is not str:
        raise ScriptRuntimeError(f"Invalid type parameter [{type_name(value)}]. Expected 'String'")
    try:
        return signed(value.encode(charset(charset_name)), rt)  # type: ignore[attr-defined]
    except UnicodeEncodeError as e:
        raise ScriptRuntimeError(f"cannot encode the text as {to_str(charset_name)}: {e.reason}") from None


@helper("bytesToExecutionArrayList")
def bytes_to_list(rt: Runtime, data: object) -> list[int]:
    return signed(to_bytes(data), rt)


@helper("decodeToJson")
def decode_to_json(rt: Runtime, data: object) -> object:
    from thingsray.rules.script._tbel.statics import json_parse

    return json_parse(rt, data if type(data) is str else bytes_to_string(rt, data))


@helper("padStart")
def pad_start(rt: Runtime, value: object, length: object, pad: object) -> str:
    return _pad(rt, value, length, pad, True)


@helper("padEnd")
def pad_end(rt: Runtime, value: object, length: object, pad: object) -> str:
    return _pad(rt, value, length, pad, False)


def _pad(rt: Runtime, value: object, length: object, pad: object, start: bool) -> str:
    s, n, p = text(value), whole(length, "targetLength"), text(pad, "padString")
    if len(p) != 1:
        raise ScriptRuntimeError(f"the pad must be one character, not {p!r}")
    if n > rt.max_memory:
        raise ScriptRuntimeError(f"cannot pad to {n} characters, past the memory limit")
    return s.rjust(n, p) if start else s.ljust(n, p)


# ---- bits


@helper("parseByteToBinaryArray")
def byte_to_bits(rt: Runtime, value: object, length: int = 8, big_endian: bool = True) -> list[int]:
    v, n = whole(value), whole(length, "binLength")
    if not 0 <= n <= 64:
        raise ScriptRuntimeError(f"binLength must be from 0 to 64, not {n}")
    bits = [(v >> i) & 1 for i in range(n)]
    return bits[::-1] if flag(big_endian, "bigEndian") else bits


@helper("parseLongToBinaryArray")
def long_to_bits(rt: Runtime, value: object, length: int = 64) -> list[int]:
    v, n = whole(value), min(whole(length, "binLength"), 64)
    return [(v >> i) & 1 for i in range(max(n, 0))][::-1]


@helper("parseBytesToBinaryArray")
def bytes_to_bits(rt: Runtime, data: object, length: object = None) -> list[int]:
    raw = to_bytes(data)
    n = len(raw) * 8 if length is None else whole(length, "binLength")
    v = int.from_bytes(raw[:8], "big") if raw else 0
    return long_to_bits(rt, v, n)


@helper("parseBinaryArrayToInt")
def bits_to_int(rt: Runtime, data: object, offset: int = 0, length: object = None) -> int:
    bits = [int(b) & 1 for b in items(data)]
    start = whole(offset, "offset")
    count = len(bits) if length is None else whole(length, "length")
    end = min(count + start, len(bits))
    result = 0
    for b in bits[start:end]:
        result = (result << 1) | b
    if len(bits) == 8 and start == 0 and bits[0] == 1:
        result -= 1 << (end - start)
    return result


# ---- maps, URIs, errors, types


@helper("toFlatMap")
def to_flat_map(rt: Runtime, json: object, exclude: object = None, path_in_key: object = None) -> dict[str, Any]:
    if type(json) is not dict:
        raise ScriptRuntimeError(f"toFlatMap needs a map, not {type_name(json)}")
    if type(exclude) is bool and path_in_key is None:
        exclude, path_in_key = None, exclude
    excluded = set() if exclude is None else {to_str(x) for x in items(exclude, "excludeList")}
    in_key = True if path_in_key is None else flag(path_in_key, "pathInKey")
    out: dict[str, Any] = {}

    def walk(value: object, path: str) -> None:
        if type(value) is list:
            for i, x in enumerate(value):  # type: ignore[arg-type]
                walk(x, f"{path}.{i}")
        elif type(value) is dict:
            for k, x in value.items():  # type: ignore[attr-defined]
                if to_str(k) in excluded:
                    continue
                walk(x, f"{path}.{to_str(k)}" if path else to_str(k))
        elif in_key:
            out[path] = value
        else:
            key = path[path.rfind(".") + 1:]
            if key.isdigit():
                key = path[path.rfind(".", 0, path.rfind(".")) + 1:]
            out[key] = value

    walk(json, "")
    return rt.collection(out)  # type: ignore[no-any-return]


_URI_SAFE = "-_.*!'()~;,/?:@&=+$#"


@helper("encodeURI")
def encode_uri(rt: Runtime, value: object) -> str:
    return rt.string(quote(text(value), safe=_URI_SAFE))


@helper("decodeURI")
def decode_uri(rt: Runtime, value: object) -> str:
    return unquote(text(value), errors="strict")


@helper("raiseError")
def raise_error(rt: Runtime, message: object, value: object = None) -> None:
    msg = to_str(message)
    raise ScriptThrown(msg if value is None else f"{msg} for value {to_str(value)}")


@helper("isMap")
def is_map(rt: Runtime, value: object) -> bool:
    return type(value) is dict


@helper("isList")
def is_list(rt: Runtime, value: object) -> bool:
    return type(value) is list


@helper("isArray")
def is_array(rt: Runtime, value: object) -> bool:
    return False
