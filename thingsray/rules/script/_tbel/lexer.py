"""TBEL source to tokens. A token keeps its offset so every error can say ``line:column``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from thingsray.rules.script.errors import ScriptError

NUM, STR, ID, OP, EOF = "num", "str", "id", "op", "eof"

_OPERATORS = sorted(
    """>>>= <<= >>= === !== >>> ** ++ -- += -= *= /= %= &= |= ^= == != <= >= && || << >> ~= ?. .?
    = + - * / % < > ! ~ & | ^ ? : , ; . ( ) [ ] { } #""".split(),
    key=len,
    reverse=True,
)
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n\f\v\u00a0\ufeff]+)
  | (?P<comment>//[^\n]*|/\*(?:.|\n)*?\*/)
  | (?P<open_comment>/\*)
  | (?P<hex>0[xX][0-9a-fA-F]+[lL]?)
  | (?P<num>(?:\d+\.\d+|\d+\.(?![\w.])|\.\d+|\d+)(?:[eE][+-]?\d+)?[lLdDfFBI]?)
  | (?P<str>"(?:[^"\\]|\\.|\\\n)*"|'(?:[^'\\]|\\.|\\\n)*')
  | (?P<id>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>"""
    + "|".join(re.escape(op) for op in _OPERATORS)
    + r""")
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0", "\\": "\\", "'": "'", '"': '"'}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.|\n)")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    value: object
    pos: int
    text: str


def location(source: str, pos: int) -> str:
    """``line:column`` (both from 1) of an offset into the source."""
    line = source.count("\n", 0, pos) + 1
    column = pos - (source.rfind("\n", 0, pos) + 1) + 1
    return f"{line}:{column}"


def syntax_error(source: str, pos: int, message: str) -> ScriptError:
    return ScriptError(f"{message} (at {location(source, pos)})")


def _unescape(source: str, pos: int, body: str) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] == "u" and len(e) == 5:
            return chr(int(e[1:], 16))
        if e == "\n":
            return ""
        if e in _ESCAPES:
            return _ESCAPES[e]
        raise syntax_error(source, pos + m.start(), f"invalid escape sequence '\\{e}' in string")

    return _ESCAPE.sub(one, body) if "\\" in body else body


def _number(source: str, pos: int, text: str, is_hex: bool) -> int | float:
    if is_hex:
        return int(text.rstrip("lL"), 16)
    suffix = text[-1] if text[-1] in "lLdDfFBI" else ""
    digits = text[:-1] if suffix else text
    if suffix in ("d", "D", "f", "F") or any(c in digits for c in ".eE"):
        if suffix in ("l", "L", "I"):
            raise syntax_error(source, pos, f"invalid number '{text}'")
        return float(digits)
    if len(digits) > 1 and digits[0] == "0":
        if any(c in "89" for c in digits):
            raise syntax_error(source, pos, f"invalid octal number '{text}'")
        return int(digits, 8)
    return int(digits)


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos, end = 0, len(source)
    match = _TOKEN.match
    while pos < end:
        m = match(source, pos)
        if m is None:
            ch = source[pos]
            if ch in "'\"":
                raise syntax_error(source, pos, "unterminated string literal")
            if source.startswith("/*", pos):
                raise syntax_error(source, pos, "unterminated comment")
            raise syntax_error(source, pos, f"unexpected character {ch!r}")
        kind = m.lastgroup
        text = m.group()
        if kind == "open_comment":
            raise syntax_error(source, pos, "unterminated comment")
        if kind == "hex" or kind == "num":
            nxt = m.end()
            if nxt < end and (source[nxt].isalnum() or source[nxt] == "_"):
                raise syntax_error(source, pos, f"invalid number '{text}{source[nxt]}'")
            tokens.append(Token(NUM, _number(source, pos, text, kind == "hex"), pos, text))
        elif kind == "str":
            tokens.append(Token(STR, _unescape(source, pos + 1, text[1:-1]), pos, text))
        elif kind == "id":
            tokens.append(Token(ID, text, pos, text))
        elif kind == "op":
            if text == "?." and m.end() < end and source[m.end()].isdigit():
                text = "?"
            tokens.append(Token(OP, text, pos, text))
            pos += len(text)
            continue
        pos = m.end()
    tokens.append(Token(EOF, None, end, "end of script"))
    return tokens
