"""Date and time functions with .NET's formats and Windows time zone ids.

A timestamp is text. Read: ISO 8601 (``2018-03-15``, ``2018-03-15T13:00:00.1234567Z``,
``+02:00`` offsets, converted to UTC), ``M/d/yyyy [h:mm[:ss] [AM|PM]]`` and RFC 1123. One
with a zone (``Z`` or an offset) is UTC and writes its ``K`` as ``Z``; one without is
"unspecified" and writes no zone, as .NET's DateTime kinds do. Written: a .NET standard
format (``o`` is the default: ``yyyy-MM-ddTHH:mm:ss.fffffffK``) or a custom one
(``yyyy-MM-dd HH:mm``, ``dddd, MMMM d``, ``'literal'`` ...). Time zones are Windows ids
(``Pacific Standard Time``), mapped to IANA by windows_zones.json; IANA names work too.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .. import sandbox
from .functions import int_arg, text_arg
from .library import define
from .values import fn_error

UTC = dt.timezone.utc
EPOCH_TICKS = 621355968000000000  # ticks of 1970-01-01 (100 ns since 0001-01-01)
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
# locale: (month names, day names (Sunday first), AM, PM)
_NAMES = {
    "en": (_MONTHS, _DAYS, "AM", "PM"),
    "de": (["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
            "November", "Dezember"],
           ["Sonntag", "Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag"], "AM", "PM"),
    "fr": (["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
            "novembre", "décembre"],
           ["dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi"], "AM", "PM"),
    "es": (["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
            "noviembre", "diciembre"],
           ["domingo", "lunes", "martes", "miércoles", "jueves", "viernes", "sábado"], "a. m.", "p. m."),
    "nl": (["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
            "november", "december"],
           ["zondag", "maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag"], "a.m.", "p.m."),
}
# standard format -> custom pattern (en-us)
_STANDARD = {
    "d": "M/d/yyyy", "D": "dddd, MMMM d, yyyy", "f": "dddd, MMMM d, yyyy h:mm tt",
    "F": "dddd, MMMM d, yyyy h:mm:ss tt", "g": "M/d/yyyy h:mm tt", "G": "M/d/yyyy h:mm:ss tt",
    "m": "MMMM d", "M": "MMMM d", "o": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "O": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK", "r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'", "s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss", "t": "h:mm tt",
    "T": "h:mm:ss tt", "u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'", "U": "dddd, MMMM d, yyyy h:mm:ss tt",
    "y": "MMMM yyyy", "Y": "MMMM yyyy",
}
_STANDARD_DE = {"d": "dd.MM.yyyy", "D": "dddd, d. MMMM yyyy", "g": "dd.MM.yyyy HH:mm", "G": "dd.MM.yyyy HH:mm:ss",
                "t": "HH:mm", "T": "HH:mm:ss", "f": "dddd, d. MMMM yyyy HH:mm", "F": "dddd, d. MMMM yyyy HH:mm:ss",
                "m": "d. MMMM", "M": "d. MMMM", "y": "MMMM yyyy", "Y": "MMMM yyyy"}
_STANDARD_FR = {"d": "dd/MM/yyyy", "D": "dddd d MMMM yyyy", "g": "dd/MM/yyyy HH:mm", "G": "dd/MM/yyyy HH:mm:ss",
                "t": "HH:mm", "T": "HH:mm:ss", "f": "dddd d MMMM yyyy HH:mm", "F": "dddd d MMMM yyyy HH:mm:ss",
                "m": "d MMMM", "M": "d MMMM", "y": "MMMM yyyy", "Y": "MMMM yyyy"}
_STANDARD_GB = {"d": "dd/MM/yyyy", "D": "dd MMMM yyyy", "g": "dd/MM/yyyy HH:mm", "G": "dd/MM/yyyy HH:mm:ss",
                "t": "HH:mm", "T": "HH:mm:ss", "f": "dd MMMM yyyy HH:mm", "F": "dd MMMM yyyy HH:mm:ss",
                "m": "d MMMM", "M": "d MMMM"}
_LOCAL_STANDARD = {"de": _STANDARD_DE, "fr": _STANDARD_FR, "en-gb": _STANDARD_GB}


# -- time zones -----------------------------------------------------------------------------
@lru_cache(maxsize=1)
def windows_zones() -> dict[str, str]:
    """Windows time zone id -> IANA name (windows_zones.json), as written."""
    return json.loads((Path(__file__).with_name("windows_zones.json")).read_text(encoding="utf-8"))["zones"]


@lru_cache(maxsize=1)
def _by_lower() -> dict[str, str]:
    return {k.lower(): v for k, v in windows_zones().items()}


def zone(fn: str, name: Any, i: int) -> dt.tzinfo:
    """A Windows time zone id (or an IANA name) as a tzinfo; an error naming the argument otherwise."""
    text = text_arg(fn, i, name).strip()
    iana = _by_lower().get(text.lower())
    try:
        return ZoneInfo(iana or text) if (iana or ("/" in text or text in ("UTC", "GMT"))) else _no_zone(fn, text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return _no_zone(fn, text)


def _no_zone(fn: str, text: str) -> Any:
    from difflib import get_close_matches

    names = list(windows_zones())
    close = get_close_matches(text, names, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else " (use a Windows time zone id such as 'Pacific Standard Time')"
    raise fn_error(fn, f"was given the time zone '{text[:60]}', which is not valid{hint}.")


# -- reading --------------------------------------------------------------------------------
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,7})\d*)?)?)?"
                  r"\s*(Z|[-+]\d{2}(?::?\d{2})?)?$", re.I | re.A)
_US = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?\s*([AaPp][Mm])?)?"
                 r"\s*(Z)?$", re.A)
_RFC = re.compile(r"^(?:\w{3},\s*)?(\d{1,2})\s+(\w{3})\s+(\d{4})\s+(\d{2}):(\d{2})(?::(\d{2}))?\s*(GMT|UTC|Z)$",
                  re.I | re.A)


def parse(fn: str, value: Any, i: int = 0) -> dt.datetime:
    """A timestamp argument: an aware UTC datetime (it had a zone), or a naive one (unspecified)."""
    text = text_arg(fn, i, value).strip()
    try:
        if len(text) > 100:
            raise ValueError
        m = _ISO.match(text)
        if m:
            y, mo, d, h, mi, s, f, z = m.groups()
            out = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                              int((f or "0").ljust(7, "0")[:6]))
            return _zoned(out, z)
        m = _US.match(text)
        if m:
            mo, d, y, h, mi, s, f, ampm, z = m.groups()
            hour = int(h or 0)
            if ampm:
                if not 1 <= hour <= 12:
                    raise ValueError
                hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
            out = dt.datetime(int(y), int(mo), int(d), hour, int(mi or 0), int(s or 0),
                              int((f or "0").ljust(7, "0")[:6]))
            return _zoned(out, z)
        m = _RFC.match(text)
        if m:
            d, mon, y, h, mi, s, _ = m.groups()
            month = [x[:3].lower() for x in _MONTHS].index(mon.lower()) + 1
            return dt.datetime(int(y), month, int(d), int(h), int(mi), int(s or 0), tzinfo=UTC)
    except ValueError:
        pass
    raise fn_error(fn, f"expects its {('first', 'second', 'third')[i] if i < 3 else str(i + 1) + 'th'} parameter "
                       f"to be a timestamp such as '2018-03-15T13:00:00Z'; {text[:40]!r} is not one.")


def _zoned(value: dt.datetime, z: str | None) -> dt.datetime:
    if not z:
        return value
    if z.upper() == "Z":
        return value.replace(tzinfo=UTC)
    sign = 1 if z[0] == "+" else -1
    digits = z[1:].replace(":", "")
    offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    return (value.replace(tzinfo=dt.timezone(sign * offset))).astimezone(UTC)


# -- writing --------------------------------------------------------------------------------
_CUSTOM = re.compile(r"d{1,4}|f{1,7}|F{1,7}|g{1,2}|h{1,2}|H{1,2}|K|m{1,2}|M{1,4}|s{1,2}|t{1,2}|y{1,5}|z{1,3}|"
                     r"'[^']*'?|\"[^\"]*\"?|\\.|%.|:|/|.", re.S)


def _names(locale: str) -> tuple:
    return _NAMES.get(locale.split("-")[0], _NAMES["en"])


def format_timestamp(fn: str, value: dt.datetime, fmt: Any = None, locale: Any = None) -> str:
    f = "o" if fmt is None else text_arg(fn, 1, fmt)
    loc = (text_arg(fn, 2, locale) if locale is not None else "en-us").lower() or "en-us"
    if f == "":
        f = "o"
    if len(f) > 1_000:
        raise fn_error(fn, "was given a format longer than 1,000 characters.")
    if len(f) == 1:
        table = _LOCAL_STANDARD.get(loc) or _LOCAL_STANDARD.get(loc.split("-")[0]) or {}
        pattern = table.get(f) or _STANDARD.get(f)
        if pattern is None:
            raise fn_error(fn, f"was given the format '{f}', which is not a .NET date-time format "
                               f"(use one of {''.join(_STANDARD)}, or a custom format such as 'yyyy-MM-dd').")
        if f in "rRu" and value.tzinfo is not None:
            value = value.astimezone(UTC)
        if f == "U":
            value = value.astimezone(UTC) if value.tzinfo else value
        return _custom(value, pattern, "en-us" if f in "oOrRsu" else loc)
    return _custom(value, f, loc)


def _custom(v: dt.datetime, fmt: str, locale: str) -> str:
    months, days, am, pm = _names(locale)
    out = []
    sandbox.current().tick(len(fmt) // 16 + 1)
    ticks7 = f"{v.microsecond:06d}0"
    for tok in _CUSTOM.findall(fmt):
        c = tok[0]
        n = len(tok)
        if tok.startswith(("'", '"')):
            out.append(tok[1:-1] if len(tok) > 1 and tok[-1] == tok[0] else tok[1:])
        elif c == "\\":
            out.append(tok[1:])
        elif c == "%" and n == 2:
            out.append(_custom(v, tok[1], locale) if tok[1] not in "%" else "%")
        elif c == "d":
            out.append(str(v.day) if n == 1 else f"{v.day:02d}" if n == 2 else
                       days[(v.weekday() + 1) % 7][:3] if n == 3 else days[(v.weekday() + 1) % 7])
        elif c == "f":
            out.append(ticks7[:n])
        elif c == "F":
            out.append(ticks7[:n].rstrip("0"))
        elif c == "g":
            out.append("A.D.")
        elif c == "h":
            h = v.hour % 12 or 12
            out.append(str(h) if n == 1 else f"{h:02d}")
        elif c == "H":
            out.append(str(v.hour) if n == 1 else f"{v.hour:02d}")
        elif c == "K":
            out.append("Z" if v.tzinfo is not None and v.utcoffset() == dt.timedelta(0) else
                       _offset(v, 3) if v.tzinfo is not None else "")
        elif c == "m":
            out.append(str(v.minute) if n == 1 else f"{v.minute:02d}")
        elif c == "M":
            out.append(str(v.month) if n == 1 else f"{v.month:02d}" if n == 2 else
                       months[v.month - 1][:3] if n == 3 else months[v.month - 1])
        elif c == "s":
            out.append(str(v.second) if n == 1 else f"{v.second:02d}")
        elif c == "t":
            mark = am if v.hour < 12 else pm
            out.append(mark[:1] if n == 1 else mark)
        elif c == "y":
            out.append(str(v.year % 100) if n == 1 else f"{v.year % 100:02d}" if n == 2 else f"{v.year:0{n}d}")
        elif c == "z":
            out.append(_offset(v, n))
        else:
            out.append(tok)
    return "".join(out)


def _offset(v: dt.datetime, n: int) -> str:
    off = v.utcoffset() if v.tzinfo is not None else dt.datetime.now().astimezone().utcoffset()
    total = int(off.total_seconds() // 60) if off is not None else 0
    sign = "+" if total >= 0 else "-"
    h, m = divmod(abs(total), 60)
    return f"{sign}{h}" if n == 1 else f"{sign}{h:02d}" if n == 2 else f"{sign}{h:02d}:{m:02d}"


def _out(fn: str, value: dt.datetime, fmt: Any) -> str:
    return format_timestamp(fn, value, fmt)


def _shift(fn: str, value: dt.datetime, amount: int | float, unit: str) -> dt.datetime:
    u = unit.lower().rstrip("s") if isinstance(unit, str) else ""
    try:
        if u in ("month", "year"):
            months = int(amount) * (12 if u == "year" else 1)
            total = value.year * 12 + value.month - 1 + months
            year, month = divmod(total, 12)
            import calendar

            if not 1 <= year <= 9999:
                raise OverflowError
            day = min(value.day, calendar.monthrange(year, month + 1)[1])
            return value.replace(year=year, month=month + 1, day=day)
        seconds = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}.get(u)
        if seconds is None:
            raise fn_error(fn, f"was given the time unit '{unit}'; use Second, Minute, Hour, Day, Week, Month or "
                               f"Year.")
        return value + dt.timedelta(seconds=amount * seconds)
    except (OverflowError, ValueError):
        raise fn_error(fn, "produced a date outside years 1 to 9999.") from None


def _amount(fn: str, i: int, v: Any) -> int | float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    return int_arg(fn, i, v)


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


# == functions ===============================================================================
@define("utcNow(format?)", "the current UTC time (format: .NET, default 'o')", "date")
def utc_now(fmt: Any = None) -> str:
    return _out("utcNow", now(), fmt)


@define("formatDateTime(timestamp, format?, locale?)", "the timestamp in a .NET date-time format "
        "(default 'o'), in the locale (default en-us)", "date")
def format_date_time(ts: Any, fmt: Any = None, locale: Any = None) -> str:
    return format_timestamp("formatDateTime", parse("formatDateTime", ts), fmt, locale)


@define("parseDateTime(timestamp, locale?, format?)", "the timestamp read in a .NET format (or any known form), "
        "as ISO 8601", "date")
def parse_date_time(ts: Any, locale: Any = None, fmt: Any = None) -> str:
    if fmt is None or text_arg("parseDateTime", 2, fmt) == "":
        return format_timestamp("parseDateTime", parse("parseDateTime", ts))
    text = text_arg("parseDateTime", 0, ts)
    pattern = text_arg("parseDateTime", 2, fmt)
    if len(text) > 100 or len(pattern) > 100:  # the format becomes a regular expression: keep it small
        raise fn_error("parseDateTime", "reads a timestamp and a format of at most 100 characters each.")
    pattern = _STANDARD.get(pattern, pattern) if len(pattern) == 1 else pattern
    return format_timestamp("parseDateTime", _read(text, pattern, (text_arg("parseDateTime", 1, locale)
                                                                   if locale is not None else "en-us").lower()))


def _read(text: str, pattern: str, locale: str) -> dt.datetime:
    """``text`` read with a .NET custom format."""
    months, days, am, pm = _names(locale)
    parts: dict[str, Any] = {}
    rx = []
    for tok in _CUSTOM.findall(pattern):
        c, n = tok[0], len(tok)
        if tok.startswith(("'", '"')):
            rx.append(re.escape(tok[1:-1] if tok[-1] == tok[0] and n > 1 else tok[1:]))
        elif c == "\\":
            rx.append(re.escape(tok[1:]))
        elif c in "dMyHhmsfFtzK" and c + str(n) not in parts:
            key = f"{c}{n}"
            if c == "M" and n >= 3:
                names = [m[:3] for m in months] if n == 3 else months
                rx.append(f"(?P<{key}>{'|'.join(map(re.escape, names))})")
            elif c == "d" and n >= 3:
                names = [d[:3] for d in days] if n == 3 else days
                rx.append(f"(?:{'|'.join(map(re.escape, names))})")
                continue
            elif c == "t":
                rx.append(f"(?P<{key}>{re.escape(am)}|{re.escape(pm)}|[AaPp])")
            elif c in "zK":
                rx.append(f"(?P<{key}>Z|[-+]\\d{{1,2}}(?::?\\d{{2}})?)?")
            elif c in "fF":
                rx.append(f"(?P<{key}>\\d{{1,{n}}})")
            elif c == "y":
                rx.append(f"(?P<{key}>\\d{{{n if n > 2 else 2},{max(n, 4)}}})" if n != 1 else f"(?P<{key}>\\d{{1,4}})")
            else:
                rx.append(f"(?P<{key}>\\d{{{1 if n == 1 else 2},2}})")
            parts[key] = c
        else:
            rx.append(re.escape(tok))
    m = re.fullmatch("".join(rx), text.strip(), re.I | re.A)
    if m is None:
        raise fn_error("parseDateTime", f"could not read {text[:40]!r} with the format '{pattern}'.")
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    try:
        year = next((int(v) + (2000 if len(k) <= 2 + 1 and int(v) < 100 and k in ("y1", "y2") else 0)
                     for k, v in g.items() if k[0] == "y"), 1)
        month = 1
        for k, v in g.items():
            if k[0] == "M":
                month = int(v) if v.isdigit() else [x.lower()[:len(v)] for x in months].index(v.lower()) + 1
        day = next((int(v) for k, v in g.items() if k[0] == "d"), 1)
        hour = next((int(v) for k, v in g.items() if k[0] in "Hh"), 0)
        mark = next((v for k, v in g.items() if k[0] == "t"), None)
        if mark is not None and any(k[0] == "h" for k in g):
            hour = hour % 12 + (12 if mark.lower().startswith(pm[:1].lower()) else 0)
        minute = next((int(v) for k, v in g.items() if k[0] == "m"), 0)
        second = next((int(v) for k, v in g.items() if k[0] == "s"), 0)
        frac = next((v for k, v in g.items() if k[0] in "fF"), "0")
        out = dt.datetime(year, month, day, hour, minute, second, int(frac.ljust(6, "0")[:6]))
        z = next((v for k, v in g.items() if k[0] in "zK"), None)
        return _zoned(out, z) if z else out
    except (ValueError, StopIteration):
        raise fn_error("parseDateTime", f"could not read {text[:40]!r} with the format '{pattern}'.") from None


def _adder(name: str, unit: str):  # noqa: ANN202
    @define(f"{name}(timestamp, {unit.lower()}s, format?)", f"the timestamp plus {unit.lower()}s "
            f"(negative: minus)", "date")
    def add(ts: Any, amount: Any, fmt: Any = None) -> str:
        return _out(name, _shift(name, parse(name, ts), _amount(name, 1, amount), unit), fmt)
    return add


add_days = _adder("addDays", "Day")
add_hours = _adder("addHours", "Hour")
add_minutes = _adder("addMinutes", "Minute")
add_seconds = _adder("addSeconds", "Second")


@define("addToTime(timestamp, interval, timeUnit, format?)", "the timestamp plus interval timeUnits "
        "(Second, Minute, Hour, Day, Week, Month, Year)", "date")
def add_to_time(ts: Any, interval: Any, unit: Any, fmt: Any = None) -> str:
    return _out("addToTime", _shift("addToTime", parse("addToTime", ts), int_arg("addToTime", 1, interval),
                                    text_arg("addToTime", 2, unit)), fmt)


@define("subtractFromTime(timestamp, interval, timeUnit, format?)", "the timestamp minus interval timeUnits",
        "date")
def subtract_from_time(ts: Any, interval: Any, unit: Any, fmt: Any = None) -> str:
    return _out("subtractFromTime", _shift("subtractFromTime", parse("subtractFromTime", ts),
                                           -int_arg("subtractFromTime", 1, interval),
                                           text_arg("subtractFromTime", 2, unit)), fmt)


@define("getFutureTime(interval, timeUnit, format?)", "the current time plus interval timeUnits", "date")
def get_future_time(interval: Any, unit: Any, fmt: Any = None) -> str:
    return _out("getFutureTime", _shift("getFutureTime", now(), int_arg("getFutureTime", 0, interval),
                                        text_arg("getFutureTime", 1, unit)), fmt)


@define("getPastTime(interval, timeUnit, format?)", "the current time minus interval timeUnits", "date")
def get_past_time(interval: Any, unit: Any, fmt: Any = None) -> str:
    return _out("getPastTime", _shift("getPastTime", now(), -int_arg("getPastTime", 0, interval),
                                      text_arg("getPastTime", 1, unit)), fmt)


@define("startOfDay(timestamp, format?)", "the start of the timestamp's day", "date")
def start_of_day(ts: Any, fmt: Any = None) -> str:
    return _out("startOfDay", parse("startOfDay", ts).replace(hour=0, minute=0, second=0, microsecond=0), fmt)


@define("startOfHour(timestamp, format?)", "the start of the timestamp's hour", "date")
def start_of_hour(ts: Any, fmt: Any = None) -> str:
    return _out("startOfHour", parse("startOfHour", ts).replace(minute=0, second=0, microsecond=0), fmt)


@define("startOfMonth(timestamp, format?)", "the start of the timestamp's month", "date")
def start_of_month(ts: Any, fmt: Any = None) -> str:
    return _out("startOfMonth", parse("startOfMonth", ts).replace(day=1, hour=0, minute=0, second=0,
                                                                   microsecond=0), fmt)


@define("dayOfMonth(timestamp)", "the day of the month (1-31)", "date")
def day_of_month(ts: Any) -> int:
    return parse("dayOfMonth", ts).day


@define("dayOfWeek(timestamp)", "the day of the week (Sunday is 0)", "date")
def day_of_week(ts: Any) -> int:
    return (parse("dayOfWeek", ts).weekday() + 1) % 7


@define("dayOfYear(timestamp)", "the day of the year (1-366)", "date")
def day_of_year(ts: Any) -> int:
    return parse("dayOfYear", ts).timetuple().tm_yday


@define("ticks(timestamp)", "the number of 100-nanosecond ticks since 0001-01-01", "date")
def ticks(ts: Any) -> int:
    v = parse("ticks", ts)
    naive = v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v
    delta = naive - dt.datetime(1, 1, 1)
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


@define("dateDifference(startDate, endDate)", "the time from startDate to endDate, as d.hh:mm:ss", "date")
def date_difference(start: Any, end: Any) -> str:
    a, b = parse("dateDifference", start), parse("dateDifference", end, 1)
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None) if a.tzinfo else a, b.replace(tzinfo=None) if b.tzinfo else b
    delta = b - a
    sign = "-" if delta < dt.timedelta(0) else ""
    delta = abs(delta)
    hours, rem = divmod(delta.seconds, 3600)
    minutes, seconds = divmod(rem, 60)
    text = f"{sign}{delta.days}." if delta.days else sign
    text += f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if delta.microseconds:
        text += f".{delta.microseconds:06d}0"
    return text


@define("convertFromUtc(timestamp, destinationTimeZone, format?)", "the UTC timestamp in a time zone "
        "(a Windows id such as 'Pacific Standard Time')", "date")
def convert_from_utc(ts: Any, dest: Any, fmt: Any = None) -> str:
    v = parse("convertFromUtc", ts)
    v = v.replace(tzinfo=UTC) if v.tzinfo is None else v
    local = v.astimezone(zone("convertFromUtc", dest, 1)).replace(tzinfo=None)
    return _out("convertFromUtc", local, fmt)


@define("convertToUtc(timestamp, sourceTimeZone, format?)", "the timestamp of a time zone in UTC", "date")
def convert_to_utc(ts: Any, source: Any, fmt: Any = None) -> str:
    v = parse("convertToUtc", ts)
    tz = zone("convertToUtc", source, 1)
    v = v.replace(tzinfo=tz) if v.tzinfo is None else v
    return _out("convertToUtc", v.astimezone(UTC), fmt)


@define("convertTimeZone(timestamp, sourceTimeZone, destinationTimeZone, format?)", "the timestamp of one "
        "time zone in another", "date")
def convert_time_zone(ts: Any, source: Any, dest: Any, fmt: Any = None) -> str:
    v = parse("convertTimeZone", ts)
    src = zone("convertTimeZone", source, 1)
    dst = zone("convertTimeZone", dest, 2)
    v = v.replace(tzinfo=src) if v.tzinfo is None else v
    out = v.astimezone(dst)
    return _out("convertTimeZone", out if out.utcoffset() == dt.timedelta(0) and dst in (UTC,) else
                out.replace(tzinfo=None), fmt)
