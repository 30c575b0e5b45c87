"""InfluxDB line protocol: one point per line, escaped so any text survives the trip.

``measurement,tag=value field=1.0,text="…" <ns>``. Names, tag keys and values and field keys
escape commas, spaces and equals signs with a backslash; string field values escape quotes and
backslashes and may span lines. Two things line protocol cannot carry are normalised, so the
stored value is predictable (:func:`stored_name`): a line break in a name or tag becomes a space
(a newline ends the point), and a backslash that InfluxDB would read as escaping the character
after it (a separator or a quote) or that ends the text becomes ``/``: InfluxDB 1.x treats any
backslash before a separator as an escape, even a doubled one, so such a backslash cannot be
written at all. (Butler writes the ``user`` tag ``DIR\\user`` as ``DIR/user`` for the same reason.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

FieldValue = float | bool | str

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A backslash InfluxDB would read as escaping what follows (a separator) or a dangling one.
_AMBIGUOUS_BACKSLASH = re.compile(r'\\(?=[,= "]|$)')


def stored_name(text: str) -> str:
    """What InfluxDB stores for ``text`` used as a measurement, tag or field key, or tag value."""
    return _AMBIGUOUS_BACKSLASH.sub("/", _LINE_BREAK.sub(" ", text))


def _escape_measurement(text: str) -> str:
    return stored_name(text).replace(",", r"\,").replace(" ", r"\ ")


def _escape_name(text: str) -> str:
    return stored_name(text).replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _escape_string_field(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _field_value(value: FieldValue) -> str:
    if isinstance(value, bool):  # before float: bool is an int
        return "true" if value else "false"
    if isinstance(value, str):
        return _escape_string_field(value)
    return repr(float(value))


def timestamp_ns(at: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond (no float rounding)."""
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def to_line(self) -> str:
        """The point as one line; empty tag values are left out (InfluxDB rejects them)."""
        fields = {
            key: value
            for key, value in self.fields.items()
            if key and not (isinstance(value, float) and not math.isfinite(value))
        }
        if not fields:
            raise ValueError(f"point {self.measurement!r} has no field")
        parts = [_escape_measurement(self.measurement)]
        for key in sorted(self.tags):  # InfluxDB's preferred order
            value = self.tags[key]
            if key and value:
                parts.append(f"{_escape_name(key)}={_escape_name(value)}")
        field_text = ",".join(
            f"{_escape_name(key)}={_field_value(value)}" for key, value in fields.items()
        )
        return f"{','.join(parts)} {field_text} {self.time_ns}"
