"""TbUtils's numbers: text in any radix (parseInt, parseHexToInt...), numbers from bytes
(parseBytesToInt...), rounding (toFixed, toInt) and numbers as hex text (intToHex...)."""

from __future__ import annotations

import math
import re
import struct
from decimal import ROUND_HALF_UP, Decimal

from thingsray.rules.script._tbel.convert import (
    FUNCTIONS,
    Fn,
    NumberFormatError,
    flag,
    helper,
    real,
    text,
    to_bytes,
    whole,
)
from thingsray.rules.script._tbel.values import Runtime, to_str
from thingsray.rules.script.errors import ScriptRuntimeError

# ---- number text, as TbUtils reads it

_BINARY = re.compile(r"[01]+")
_OCTAL = re.compile(r"[0-7]+")
_DECIMAL = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?")
_HEX = re.compile(r"-?(0[xX])?[0-9a-fA-F]+")


def _radix_check(pattern: re.Pattern[str], radix: int) -> Fn:
    def check(s: object) -> int:
        return radix if type(s) is str and pattern.fullmatch(s) else -1  # type: ignore[arg-type]

    return check


is_binary = _radix_check(_BINARY, 2)
is_octal = _radix_check(_OCTAL, 8)
is_decimal = _radix_check(_DECIMAL, 10)
is_hex = _radix_check(_HEX, 16)
for _name, _check in (("isBinary", is_binary), ("isOctal", is_octal), ("isDecimal", is_decimal),
                      ("isHexadecimal", is_hex)):
    FUNCTIONS[_name] = (lambda rt, s, _c=_check: _c(s), 1, 1)


def reverse_hex(value: str) -> str:
    if value.startswith("-"):
        raise ScriptRuntimeError("The hexadecimal string must be without a negative sign.")
    pref = value.startswith("0x")
    digits = value[2:] if pref else value
    if len(digits) % 2:
        raise ScriptRuntimeError("The hexadecimal string must be even-length.")
    out = "".join(digits[i:i + 2] for i in range(len(digits) - 2, -1, -2))
    return "0x" + out if pref else out


def prepare(value: str, big_endian: bool) -> str | None:
    if not value.strip():
        return None
    value = value.strip().replace("0x", "").replace("0X", "").replace(",", ".")
    return value if big_endian else reverse_hex(value)


def radix_of(valuep: str, radix: int, value: str) -> int:
    if radix == 0:
        found = 10 if is_decimal(valuep) > 0 else is_hex(valuep)
        if found < 0:
            raise NumberFormatError(f'Value: "{value}" is not numeric or hexDecimal format!')
    elif 25 <= radix <= 36:
        return radix
    else:
        check = {2: is_binary, 8: is_octal, 10: is_decimal, 16: is_hex}.get(radix)
        if check is None:
            raise ScriptRuntimeError(f"Invalid radix: [{radix}]")
        found = check(valuep)
    if found > 0:
        if value.startswith("0x"):
            found = 16
        if found == 16 and len(value[1:] if value.startswith("-") else value) % 2:
            raise NumberFormatError(f'The hexadecimal value: "{value}" must be of even length, or if the '
                                    "decimal value must be a number!")
        return found
    if radix > 0:
        raise NumberFormatError(f'Failed radix [{radix}] for value: "{value}", must be [{found}] !')
    raise NumberFormatError(f'Invalid "{value}". It is not numeric or hexadecimal format!')


def _ranged(v: int, bits: int, s: str) -> int:
    if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        kind = "Integer" if bits == 32 else "Long"
        raise NumberFormatError(f'Value "{s}" is out of range for {kind}')
    return v


def parse_int(value: object, radix: int = 0, big_endian: bool = True, bits: int = 32) -> int | None:
    if value is None:
        return None
    s = text(value)
    valuep = prepare(s, big_endian)
    if valuep is None:
        return None
    r = radix_of(valuep, radix, s)
    if r == 2:
        if len(valuep) > bits:
            raise NumberFormatError(f'Value "{valuep}" has more than {bits} bits')
        v = int(valuep, 2)
        return v - (1 << bits) if len(valuep) == bits and valuep[0] == "1" else v
    try:
        return _ranged(int(valuep, r), bits, valuep)
    except ValueError:
        raise NumberFormatError(f'For input string: "{valuep}"' + (f" under radix {r}" if r != 10 else "")) from None


@helper("parseInt")
def parse_int_(rt: Runtime, value: object, radix: int = 0) -> int | None:
    return parse_int(value, whole(radix, "radix"))


@helper("parseLong")
def parse_long(rt: Runtime, value: object, radix: int = 0) -> int | None:
    return parse_int(value, whole(radix, "radix"), bits=64)


def _float32(bits: int) -> float:
    return float(struct.unpack(">f", struct.pack(">I", bits & 0xFFFFFFFF))[0])


def _float64(bits: int) -> float:
    return float(struct.unpack(">d", struct.pack(">Q", bits & 0xFFFFFFFFFFFFFFFF))[0])


def _java_float(s: str) -> float:
    t = s.strip().rstrip("fFdD")
    try:
        return float(t)
    except ValueError:
        raise NumberFormatError(f'For input string: "{s}"') from None


@helper("parseFloat")
def parse_float(rt: Runtime, value: object, radix: int = 0) -> float | None:
    if value is None:
        return None
    s = text(value)
    valuep = prepare(s, True)
    if valuep is None:
        return None
    if radix_of(valuep, whole(radix, "radix"), s) == 16:
        return _float32(int(valuep, 16))
    return _java_float(s)


@helper("parseHexIntLongToFloat")
def parse_hex_int_long_to_float(rt: Runtime, value: object, big_endian: bool) -> float | None:
    s = text(value)
    valuep = prepare(s, flag(big_endian, "bigEndian"))
    if valuep is None:
        return None
    radix_of(valuep, 16, s)
    bits = int(valuep, 16) & 0xFFFFFFFF
    return float(bits - (1 << 32) if bits >> 31 else bits)


def parse_double(value: object, radix: int, big_endian: bool = True) -> float | None:
    s = text(value)
    valuep = prepare(s, big_endian)
    if valuep is None:
        return None
    if radix_of(valuep, radix, s) == 10:
        return _java_float(valuep)
    bits = int(valuep, 16)
    if bits >> 64:
        raise NumberFormatError(f'Value "{valuep}" is longer than 64 bits')
    return _float64(bits)


@helper("parseDouble")
def parse_double_(rt: Runtime, value: object) -> float | None:
    if value is None:
        return None
    s = text(value)
    radix = 10 if is_decimal(s) > 0 else is_hex(s)
    if radix < 0:
        raise NumberFormatError(f'Value: "{s}" is not numeric or hexDecimal format!')
    return parse_double(s, radix)


def _hex_int(bits: int, big_endian: bool | None) -> Fn:
    def parse(rt: Runtime, value: object, big_endian_: bool = True) -> int | None:
        order = flag(big_endian_, "bigEndian") if big_endian is None else big_endian
        return parse_int(value, 16, order, bits)

    return parse


def _hex_float(double: bool, big_endian: bool | None) -> Fn:
    def parse(rt: Runtime, value: object, big_endian_: bool = True) -> float | None:
        order = flag(big_endian_, "bigEndian") if big_endian is None else big_endian
        if double:
            return parse_double(value, 16, order)
        s = text(value)
        valuep = prepare(s, order)
        if valuep is None:
            return None
        radix_of(valuep, 16, s)
        return _float32(int(valuep, 16))

    return parse


for _kind, _bits in (("Int", 32), ("Long", 64)):
    FUNCTIONS[f"parseHexTo{_kind}"] = (_hex_int(_bits, None), 1, 2)
    FUNCTIONS[f"parseBigEndianHexTo{_kind}"] = (_hex_int(_bits, True), 1, 1)
    FUNCTIONS[f"parseLittleEndianHexTo{_kind}"] = (_hex_int(_bits, False), 1, 1)
for _kind, _double in (("Float", False), ("Double", True)):
    FUNCTIONS[f"parseHexTo{_kind}"] = (_hex_float(_double, None), 1, 2)
    FUNCTIONS[f"parseBigEndianHexTo{_kind}"] = (_hex_float(_double, True), 1, 1)
    FUNCTIONS[f"parseLittleEndianHexTo{_kind}"] = (_hex_float(_double, False), 1, 1)


# ---- numbers from bytes


def _window(data: bytes, offset: int, length: int | None, most: int) -> bytes:
    if length is None:
        length = len(data) if len(data) < offset else min(len(data) - offset, most)
    if offset > len(data):
        raise ScriptRuntimeError(f"Offset: {offset} is out of bounds for array with length: {len(data)}!")
    if offset + length > len(data):
        raise ScriptRuntimeError(f"Offset: {offset} and Length: {length} is out of bounds for array with length: "
                                 f"{len(data)}!")
    if length > most:
        raise ScriptRuntimeError(f"Length: {length} is too large. Maximum {most} bytes is allowed!")
    if offset < 0 or length < 0:
        raise ScriptRuntimeError("offset and length must not be negative")
    return data[offset:offset + length]


def _bytes_args(data: object, offset: object, length: object, big_endian: object, most: int) -> tuple[bytes, bool]:
    raw = to_bytes(data)
    size = None if length is None else whole(length, "length")
    return _window(raw, whole(offset, "offset"), size, most), flag(big_endian, "bigEndian")


def _bytes_to_int(bits: int) -> Fn:
    def parse(rt: Runtime, data: object, offset: int = 0, length: int | None = None, big_endian: bool = True) -> int:
        chunk, big = _bytes_args(data, offset, length, big_endian, bits // 8)
        v = int.from_bytes(chunk, "big" if big else "little")
        return v - (1 << bits) if len(chunk) == bits // 8 and v >> (bits - 1) else v

    return parse


def _bytes_to_real(size: int) -> Fn:
    def parse(rt: Runtime, data: object, offset: int = 0, length: int | None = None,
              big_endian: bool = True) -> float:
        chunk, big = _bytes_args(data, offset, length, big_endian, size)
        buf = bytes(size - len(chunk)) + chunk if big else chunk + bytes(size - len(chunk))
        v = float(struct.unpack((">" if big else "<") + ("f" if size == 4 else "d"), buf)[0])
        if v != v:
            raise NumberFormatError(f"byte[] 0x{to_bytes(data).hex().upper()} is a Not-a-Number (NaN) value")
        return v

    return parse


def _bytes_unsigned_to_real(size: int) -> Fn:
    def parse(rt: Runtime, data: object, offset: int = 0, length: int | None = None,
              big_endian: bool = True) -> float:
        chunk, big = _bytes_args(data, offset, length, big_endian, size)
        return float(int.from_bytes(chunk, "big" if big else "little"))

    return parse


for _name, _fn in (("parseBytesToInt", _bytes_to_int(32)), ("parseBytesToLong", _bytes_to_int(64)),
                   ("parseBytesToFloat", _bytes_to_real(4)), ("parseBytesToDouble", _bytes_to_real(8)),
                   ("parseBytesIntToFloat", _bytes_unsigned_to_real(4)),
                   ("parseBytesLongToDouble", _bytes_unsigned_to_real(8))):
    FUNCTIONS[_name] = (_fn, 1, 4)


# ---- rounding


def _decimal(v: object) -> Decimal:
    x = real(v)
    if math.isnan(x) or math.isinf(x):
        raise NumberFormatError(f"cannot round {to_str(x)}")
    return Decimal(repr(x))


@helper("toFixed")
def to_fixed(rt: Runtime, value: object, precision: int) -> float:
    return float(_decimal(value).quantize(Decimal(1).scaleb(-whole(precision, "precision")), ROUND_HALF_UP))


@helper("toInt")
def to_int(rt: Runtime, value: object) -> int:
    return int(_decimal(value).quantize(Decimal(1), ROUND_HALF_UP))


@helper("isNaN")
def is_nan(rt: Runtime, value: object) -> bool:
    return math.isnan(real(value))


# ---- hex text from numbers


def _strip_hex(hexs: str, number: int, most: int) -> str:
    s = hexs.lstrip("0") or "0"
    s = "0" + s if len(s) % 2 else s
    if number >= 0:
        return s
    s = s.lstrip("F") or "F"
    s = "F" + s if len(s) % 2 else s
    if len(s) > most:
        return s[-most:]
    return s if len(s) == most else "FF" + s


def number_hex(number: int, big_endian: bool, pref: bool, length: int, most: int) -> str:
    hexs = format(number & 0xFFFFFFFFFFFFFFFF, "X")
    most = len(hexs) if most < 0 else most
    s = _strip_hex(hexs, number, most)
    s = s if big_endian else reverse_hex(s)
    length = len(s) if length == -1 else length
    if not 0 <= length <= len(s):
        raise ScriptRuntimeError(f"length {length} is out of range for hex {s!r}")
    result = s[len(s) - length:]
    return "0x" + result if pref else result


def _to_hex(most: int) -> Fn:
    def convert(rt: Runtime, value: object, big_endian: bool = True, pref: bool = False, length: int = -1) -> str:
        return number_hex(whole(value), flag(big_endian, "bigEndian"), flag(pref, "pref"), whole(length, "len"),
                          most)

    return convert


FUNCTIONS["intToHex"] = (_to_hex(8), 1, 4)
FUNCTIONS["longToHex"] = (_to_hex(16), 1, 4)


@helper("intLongToRadixString", "intLongToString")
def int_long_to_radix_string(rt: Runtime, number: object, radix: int = 10, big_endian: bool = True,
                             pref: bool = False) -> str:
    v, r = whole(number), whole(radix, "radix")
    if 25 <= r <= 36 or r == 10:
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"
        out, m = "", abs(v)
        while True:
            m, d = divmod(m, r)
            out = digits[d] + out
            if not m:
                break
        return ("-" if v < 0 else "") + out
    if r == 2:
        b = format(v & 0xFFFFFFFFFFFFFFFF, "b")
        width = next((w for w in (8, 16, 32, 64) if len(b) < w), 0)
        return b.rjust(width, "0") if width else b
    if r == 8:
        return format(v & 0xFFFFFFFFFFFFFFFF, "o")
    if r == 16:
        return number_hex(v, flag(big_endian, "bigEndian"), flag(pref, "pref"), -1, -1)
    raise ScriptRuntimeError(f"Invalid radix: [{r}]")


@helper("floatToHex")
def float_to_hex(rt: Runtime, value: object, big_endian: bool = True) -> str:
    bits = struct.unpack(">I", struct.pack(">f", real(value)))[0]
    result = f"0x{bits:08X}"
    return result if flag(big_endian, "bigEndian") else reverse_hex(result)


@helper("doubleToHex")
def double_to_hex(rt: Runtime, value: object, big_endian: bool = True) -> str:
    bits = struct.unpack(">Q", struct.pack(">d", real(value)))[0]
    result = f"0x{bits:016X}"
    return result if flag(big_endian, "bigEndian") else reverse_hex(result)
