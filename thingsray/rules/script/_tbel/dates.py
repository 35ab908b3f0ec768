"""ThingsBoard's TBEL ``Date`` (TbDate): construction, the getters users call, ISO output. Months
are 1-12 and days of the week 1 (Monday) to 7, as TbDate has them; local time is UTC here."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from thingsray.rules.script._tbel.values import Runtime, TbDate, type_name
from thingsray.rules.script.errors import ScriptRuntimeError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _parse(s: str) -> int:
    text = s.strip()
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ScriptRuntimeError(f"cannot parse {s!r} as a date; use ISO 8601 such as "
                                 "2024-01-31T10:15:30Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def new_date(rt: Runtime, args: list[object]) -> TbDate:
    rt.exotic = True
    if not args:
        return TbDate(now_ms())
    first = args[0]
    if len(args) == 1:
        if type(first) in (int, float):
            return TbDate(int(first))  # type: ignore[call-overload]
        if type(first) is str:
            return TbDate(_parse(first))  # type: ignore[arg-type]
        raise ScriptRuntimeError(f"new Date({type_name(first)}) is not supported")
    if type(first) is str:
        raise ScriptRuntimeError("new Date(text, pattern, ...) with a pattern is not supported; use ISO 8601 text")
    parts = list(args)
    zone = UTC
    if type(parts[-1]) is str:
        try:
            zone = ZoneInfo(parts.pop())  # type: ignore[arg-type,assignment]
        except (KeyError, ValueError) as e:
            raise ScriptRuntimeError(f"unknown time zone {args[-1]!r}") from e
    if not 3 <= len(parts) <= 7 or any(type(p) is not int for p in parts):
        raise ScriptRuntimeError("new Date(year, month, day[, hours, minutes[, seconds[, millis]]][, zone]) "
                                 "takes whole numbers")
    y, mo, d, h, mi, sec, ms = (*parts, 0, 0, 0, 0)[:7]  # type: ignore[misc]
    try:
        dt = datetime(y, mo, d, h, mi, sec, ms * 1000, tzinfo=zone)  # type: ignore[arg-type]
    except ValueError as e:
        raise ScriptRuntimeError(f"invalid date: {e}") from None
    return TbDate((dt - _EPOCH) // timedelta(milliseconds=1))


def _dt(d: TbDate) -> datetime:
    return _EPOCH + timedelta(milliseconds=d.ms)


def iso(d: TbDate) -> str:
    """Java's Instant.toString: seconds always, milliseconds only when not zero."""
    dt = _dt(d)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return base + (f".{dt.microsecond // 1000:03d}Z" if dt.microsecond else "Z")


def _getter(fn):  # type: ignore[no-untyped-def]
    def method(rt: Runtime, d: TbDate) -> int:
        return fn(_dt(d))  # type: ignore[no-any-return]

    return method


_FIELDS = {
    "FullYear": lambda dt: dt.year,
    "Month": lambda dt: dt.month,
    "Date": lambda dt: dt.day,
    "Day": lambda dt: dt.isoweekday(),
    "Hours": lambda dt: dt.hour,
    "Minutes": lambda dt: dt.minute,
    "Seconds": lambda dt: dt.second,
    "Milliseconds": lambda dt: dt.microsecond // 1000,
}


def _time(rt: Runtime, d: TbDate) -> int:
    return d.ms


def _iso(rt: Runtime, d: TbDate) -> str:
    return iso(d)


def _seconds(rt: Runtime, d: TbDate) -> int:
    return d.ms // 1000


DATE_METHODS = {
    "getTime": _time,
    "valueOf": _time,
    "parseSecondMilli": _time,
    "parseSecond": _seconds,
    "toISOString": _iso,
    "toJSON": _iso,
    "toString": _iso,
    **{f"get{name}": _getter(fn) for name, fn in _FIELDS.items()},
    **{f"getUTC{name}": _getter(fn) for name, fn in _FIELDS.items()},
}
