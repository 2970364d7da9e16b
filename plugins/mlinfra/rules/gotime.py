"""Go's ``time.Time`` as templates see it (``toTime``'s result): its ``String()`` and methods.

t = go_time_struct(datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
t.go_string()                                   # '2026-12-01 09:30:00 +0000 UTC'
t.methods["Format"].fn("Jan _2 15:04")          # 'Dec  1 09:30'
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any

from mlinfra.rules.gotemplate_exec import GoFunc, GoStruct

_MONTHS = list(calendar.month_name)
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class _Named(int):
    """``time.Month`` / ``time.Weekday``: an int that prints as its name."""

    go_type = "time.Month"
    names: tuple[str, ...] = ()

    def go_string(self, *, top: bool = True) -> str:
        return self.names[int(self)]


class GoMonth(_Named):
    go_type = "time.Month"
    names = tuple(_MONTHS)


class GoWeekday(_Named):
    go_type = "time.Weekday"
    names = ("Sunday", *_DAYS[:6])


def _frac(t: datetime, digits: int, trim: bool) -> str:
    ns = f"{t.microsecond * 1000:09d}"[:digits]
    if trim:
        ns = ns.rstrip("0")
        return "." + ns if ns else ""
    return "." + ns


def go_time_string(t: datetime) -> str:
    """``time.Time.String()`` in UTC: ``2006-01-02 15:04:05.999999999 +0000 UTC``."""
    return t.strftime("%Y-%m-%d %H:%M:%S") + _frac(t, 9, True) + " +0000 UTC"


# Go's reference-time chunks, longest first where one is a prefix of another.
_CHUNKS: list[tuple[str, Any]] = [
    ("January", lambda t: _MONTHS[t.month]),
    ("Jan", lambda t: _MONTHS[t.month][:3]),
    ("Monday", lambda t: _DAYS[t.weekday()]),
    ("Mon", lambda t: _DAYS[t.weekday()][:3]),
    ("MST", lambda t: "UTC"),
    ("2006", lambda t: f"{t.year:04d}"),
    ("002", lambda t: f"{t.timetuple().tm_yday:03d}"),
    ("01", lambda t: f"{t.month:02d}"),
    ("02", lambda t: f"{t.day:02d}"),
    ("03", lambda t: f"{(t.hour % 12) or 12:02d}"),
    ("04", lambda t: f"{t.minute:02d}"),
    ("05", lambda t: f"{t.second:02d}"),
    ("06", lambda t: f"{t.year % 100:02d}"),
    ("15", lambda t: f"{t.hour:02d}"),
    ("_2", lambda t: f"{t.day:2d}"),
    ("1", lambda t: str(t.month)),
    ("2", lambda t: str(t.day)),
    ("3", lambda t: str((t.hour % 12) or 12)),
    ("4", lambda t: str(t.minute)),
    ("5", lambda t: str(t.second)),
    ("PM", lambda t: "PM" if t.hour >= 12 else "AM"),
    ("pm", lambda t: "pm" if t.hour >= 12 else "am"),
    ("-07:00:00", lambda t: "+00:00:00"),
    ("-070000", lambda t: "+000000"),
    ("-07:00", lambda t: "+00:00"),
    ("-0700", lambda t: "+0000"),
    ("-07", lambda t: "+00"),
    ("Z07:00:00", lambda t: "Z"),
    ("Z070000", lambda t: "Z"),
    ("Z07:00", lambda t: "Z"),
    ("Z0700", lambda t: "Z"),
    ("Z07", lambda t: "Z"),
]


def go_time_format(t: datetime, layout: str) -> str:
    """``time.Time.Format(layout)`` for a UTC time (Go's reference time ``Mon Jan 2 15:04:05 MST 2006``)."""
    out, i = [], 0
    while i < len(layout):
        if layout[i] in ".," and i + 1 < len(layout) and layout[i + 1] in "09":
            j = i + 1
            while j < len(layout) and layout[j] == layout[i + 1]:
                j += 1
            if not (j < len(layout) and layout[j].isdigit()):
                digits = j - i - 1
                body = _frac(t, digits, layout[i + 1] == "9")
                out.append(layout[i] + body[1:] if body else "")
                i = j
                continue
        for chunk, render in _CHUNKS:
            if layout.startswith(chunk, i) and not (chunk == "Jan" and layout.startswith("January", i)):
                out.append(render(t))
                i += len(chunk)
                break
        else:
            out.append(layout[i])
            i += 1
    return "".join(out)


def go_time_struct(t: datetime) -> GoStruct:
    """A ``*time.Time`` value for templates (``toTime``'s result)."""
    t = t.astimezone(UTC)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = (t - epoch) // timedelta(microseconds=1)
    methods = {
        "Unix": GoFunc(lambda: micros // 1_000_000),
        "UnixMilli": GoFunc(lambda: micros // 1000),
        "UnixNano": GoFunc(lambda: micros * 1000),
        "Format": GoFunc(lambda layout: go_time_format(t, layout), ("string",)),
        "String": GoFunc(lambda: go_time_string(t)),
        "UTC": GoFunc(lambda: go_time_struct(t)),
        "Year": GoFunc(lambda: t.year),
        "Month": GoFunc(lambda: GoMonth(t.month)),
        "Day": GoFunc(lambda: t.day),
        "YearDay": GoFunc(lambda: t.timetuple().tm_yday),
        "Weekday": GoFunc(lambda: GoWeekday((t.weekday() + 1) % 7)),
        "Hour": GoFunc(lambda: t.hour),
        "Minute": GoFunc(lambda: t.minute),
        "Second": GoFunc(lambda: t.second),
        "Nanosecond": GoFunc(lambda: t.microsecond * 1000),
    }
    return GoStruct("*time.Time", {}, methods, text=lambda: go_time_string(t))
