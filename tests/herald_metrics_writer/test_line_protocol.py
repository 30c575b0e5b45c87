"""Line protocol escaping: whatever is written reads back from a real InfluxDB 1.x."""

from __future__ import annotations

import itertools

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald_metrics_writer.line_protocol import Point, stored_name
from herald_testkit.influxdb import InfluxDB
from herald_testkit.influxdb_v3 import parse_points

# Text rich in what line protocol must escape, plus some of everything else.
_TRICKY = st.sampled_from([" ", ",", "=", '"', "\\", "\n", "\r\n", "'", "é", "Σ", "\t"])
_TEXT = st.lists(
    st.one_of(_TRICKY, st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))),
    min_size=1,
    max_size=12,
).map("".join)

_databases = itertools.count()


def test_normalisation_only_touches_line_breaks_and_dangling_backslashes() -> None:
    assert stored_name('a b,c=d"e') == 'a b,c=d"e'
    assert stored_name("LAB\\goran") == "LAB\\goran"
    assert stored_name("two\nlines\r\nhere") == "two lines here"
    assert stored_name("ends\\") == "ends/"
    assert stored_name("x\\,y") == "x/,y"


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(measurement=_TEXT, tag_key=_TEXT, tag_value=_TEXT, field_key=_TEXT, message=_TEXT)
def test_what_is_written_reads_back_equal(
    influxdb: InfluxDB,
    measurement: str,
    tag_key: str,
    tag_value: str,
    field_key: str,
    message: str,
) -> None:
    # A fresh database per example: each example's names are all its database holds.
    database = f"prop_{next(_databases)}"
    influxdb.query(f'CREATE DATABASE "{database}"')
    point = Point(
        measurement=f"m{measurement}",
        tags={f"t{tag_key}": f"v{tag_value}"},
        fields={f"f{field_key}": message, "number": 1.5, "flag": True},
        time_ns=1_700_000_000_123_456_789,
    )
    line = point.to_line()
    # The v3 stand-in's parser agrees with InfluxDB on what the line says.
    [parsed] = parse_points(line)
    assert parsed.fields[f"f{stored_name(field_key)}"] == message

    response = httpx.post(f"{influxdb.url}/write", params={"db": database}, content=line)
    assert response.status_code == 204, response.text
    [series] = influxdb.query("SELECT * FROM /.*/", database)
    assert series["name"] == f"m{stored_name(measurement)}"
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    assert row == {
        "time": 1_700_000_000_123_456_789,
        f"t{stored_name(tag_key)}": f"v{stored_name(tag_value)}",
        f"f{stored_name(field_key)}": message,
        "number": 1.5,
        "flag": True,
    }
