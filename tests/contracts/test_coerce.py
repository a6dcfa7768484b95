"""Typing raw values to contract types: conversions, NULLs, time zones, failures flagged."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal, assert_series_equal

from transforms.contracts.coerce import CAST_FAILURES, coerce, iso_timestamp
from transforms.contracts.odcs import Column, TableContract
from transforms.contracts.text import ISO_TIMESTAMP


def typed(logical_type: str, values: list, dtype: pl.DataType = pl.String):
    contract = TableContract("t", "t.odcs.yaml", "", (Column("v", logical_type),))
    out = coerce(pl.DataFrame({"v": pl.Series(values, dtype=dtype)}), contract)
    return out["v"].to_list(), [bool(f) for f in out[CAST_FAILURES].to_list()]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T10:00:00Z", utc(2026, 1, 31, 10)),
        ("2026-01-31T10:00:00z", utc(2026, 1, 31, 10)),
        ("2026-01-31T12:00:00+02:00", utc(2026, 1, 31, 10)),
        ("2026-01-31T04:30:00-0530", utc(2026, 1, 31, 10)),
        ("2026-01-31 10:00:00+00:00", utc(2026, 1, 31, 10)),
        ("2026-01-31T10:00:00.250Z", utc(2026, 1, 31, 10, 0, 0, 250000)),
        ("2026-01-31T10:00:00", utc(2026, 1, 31, 10)),  # no offset: taken as UTC
        ("2026-01-31", utc(2026, 1, 31)),
        ("2026-01-01T01:00:00+02:00", utc(2025, 12, 31, 23)),  # offset crosses the date
    ],
)
def test_iso_timestamps_become_utc(text, expected):
    assert typed("timestamp", [text]) == ([expected], [False])


@pytest.mark.parametrize(
    ("logical_type", "text", "expected"),
    [
        ("integer", "42", 42),
        ("integer", " 42 ", 42),
        ("integer", "-7", -7),
        ("number", "1.5", 1.5),
        ("number", "1e3", 1000.0),
        ("boolean", "TRUE", True),
        ("boolean", "no", False),
        ("boolean", "1", True),
        ("date", "2026-02-28", date(2026, 2, 28)),
        ("string", "00123", "00123"),
    ],
)
def test_text_converts_to_contract_type(logical_type, text, expected):
    assert typed(logical_type, [text]) == ([expected], [False])


@pytest.mark.parametrize(
    ("logical_type", "text"),
    [
        ("integer", "forty"),
        ("integer", "1.5"),
        ("number", "1,5"),
        ("boolean", "maybe"),
        ("date", "2026-02-30"),
        ("date", "31/01/2026"),
        ("timestamp", "yesterday"),
        ("timestamp", "2026-13-01T00:00:00Z"),
    ],
)
def test_unconvertible_text_is_null_and_flagged(logical_type, text):
    assert typed(logical_type, [text]) == ([None], [True])


@pytest.mark.parametrize("logical_type", ["integer", "number", "boolean", "date", "timestamp"])
@pytest.mark.parametrize("blank", [None, "", "   "])
def test_missing_and_blank_values_are_null_not_failures(logical_type, blank):
    assert typed(logical_type, [blank]) == ([None], [False])


def test_typed_sources_are_converted_too():
    naive = [datetime(2026, 1, 31, 10)]
    assert typed("timestamp", naive, pl.Datetime("us")) == ([utc(2026, 1, 31, 10)], [False])
    berlin = pl.Series([datetime(2026, 1, 31, 11)]).dt.replace_time_zone("Europe/Berlin")
    contract = TableContract("t", "t", "", (Column("v", "timestamp"),))
    out = coerce(pl.DataFrame({"v": berlin}), contract)
    assert out["v"].to_list() == [utc(2026, 1, 31, 10)]
    assert typed("integer", [3.0, 3.5], pl.Float64) == ([3, None], [False, True])
    assert typed("string", [123], pl.Int64) == (["123"], [False])


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-31T10:00:00Z",
        "2026-01-31 10:00:00.123456+02:00",
        "2026-01-31T04:30:00-0530",
        "2026-01-31",
        "2026-01-31T10:00",
        "2026-01-31T10:00:00+02",
        "2026-1-31",
        "31/01/2026",
        "2026-01-31X10:00:00",
    ],
)
def test_the_iso_timestamp_form_is_what_coerce_reads(text):
    """`ISO_TIMESTAMP` (the check the generated SQL makes before a cast) accepts exactly the
    forms `iso_timestamp` converts, on well-formed dates."""
    converted = pl.select(iso_timestamp(pl.lit(text))).item() is not None
    assert bool(re.fullmatch(ISO_TIMESTAMP, text)) == converted


MIXED = {
    "integer": ["42", " 42 ", "-7", "1.5", "forty", "", "   ", None, "1e3", "+5", "0042"],
    "number": ["1.5", " 1.5", "1e3", "1,5", "inf", "NaN", "", None, "-0", ".5", "abc"],
    "boolean": ["true", " TRUE ", "no", "1", "maybe", "", None, "Y", "f"],
    "date": ["2026-02-28", " 2026-02-28 ", "2026-02-30", "31/01/2026", "", None, "2026-2-28"],
    "timestamp": [
        "2026-01-31T10:00:00Z",
        " 2026-01-31T10:00:00Z ",
        "2026-01-31T10:00:00.250Z",
        "2026-01-31T12:00:00+02:00",
        "2026-01-31 10:00:00",
        "2026-01-31",
        "2026-1-31T10:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-31T10:00:00z",
        "yesterday",
        "",
        "   ",
        None,
    ],
}


@pytest.mark.parametrize("logical_type", sorted(MIXED))
def test_the_common_form_shortcut_types_every_value_as_the_full_conversion(logical_type):
    """`coerce` types most values in their common form and only the rest the full way
    (stripping, blank text, every form); each value must come out as the full way alone
    types it, with the same failures."""
    from transforms.contracts.coerce import _typed

    column = Column("v", logical_type)
    values = MIXED[logical_type] * 3
    frame = pl.DataFrame({"v": pl.Series(values, dtype=pl.String)})
    value, failed = _typed(frame, column)
    expected = frame.select(value.alias("v"), failed.alias("f"))
    contract = TableContract("t", "t.odcs.yaml", "", (column,))
    out = coerce(frame, contract)
    assert_series_equal(out["v"], expected["v"])
    assert [bool(f) for f in out[CAST_FAILURES].to_list()] == expected["f"].to_list()


OBJECT = Column(
    "o",
    "object",
    fields=(
        Column("s", "string"),
        Column("n", "number"),
        Column("i", "integer"),
        Column("b", "boolean"),
        Column("d", "date"),
        Column("t", "timestamp"),
    ),
)
SPACE = st.sampled_from(["", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2028"])
NUMBER_TOKENS = st.sampled_from(
    ["-0", "-0.0", "0", "4.0", "4.5", "1e3", "1E+3", "1e-400", "1e400", "-1e400", "00", "1.",
     ".5", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
     "12345678901234567890123", "9007199254740993", "0.30000000000000004", "1" * 320,
     "NaN", "Infinity", "-Infinity", "+1"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["2026-01-31", "2026-02-30", "2026-01-31T10:00:00Z", " 2026-01-31 ", ""]),
)
VALUES = st.one_of(
    SCALARS.map(lambda value: json.dumps(value, ensure_ascii=False)),
    SCALARS.map(json.dumps),
    NUMBER_TOKENS,
    st.lists(SCALARS, max_size=2).map(json.dumps),
    st.dictionaries(st.sampled_from("sx"), SCALARS, max_size=2).map(json.dumps),
    st.sampled_from(['"a\\"b"', '"tab\\tbed"', '"\t"', "tru", "nul", '"\\u00e9"']),
)
TYPED = {
    "s": st.text(max_size=8),
    "n": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers()),
    "i": st.integers(min_value=-(2**64), max_value=2**64),
    "b": st.booleans(),
    "d": st.sampled_from(["2026-01-31", "2026-02-30", "2026-1-31"]),
    "t": st.sampled_from(["2026-01-31T10:00:00Z", "2026-01-31", "yesterday"]),
}
PLAIN = st.fixed_dictionaries({}, optional={k: st.none() | v for k, v in TYPED.items()})
KEYS = st.sampled_from(["s", "n", "i", "b", "d", "t", "x", "extra", "S", "s ", "\\u0073"])


@st.composite
def json_texts(draw) -> str | None:
    """Mostly JSON objects in any spacing: of declared fields holding their type, or of any
    keys (declared or not, repeated or escaped) holding any value; also other JSON, malformed
    text, blank text and NULL."""
    kind = draw(
        st.sampled_from(["object"] * 5 + ["plain"] * 3 + ["json", "text", "blank", "null", "cut"])
    )
    if kind == "plain":  # declared keys, each once, holding a value of the field's type
        space = draw(SPACE)
        separators = (f",{space}", f"{draw(SPACE)}:{space}")
        return json.dumps(draw(PLAIN), ensure_ascii=draw(st.booleans()), separators=separators)
    if kind == "json":
        return draw(SCALARS.map(json.dumps))
    if kind == "text":
        return draw(st.text(max_size=12))
    if kind == "blank":
        return draw(st.sampled_from(["", "  ", "\t\n", "\u00a0"]))
    if kind == "null":
        return None
    members = draw(st.lists(st.tuples(KEYS, SPACE, SPACE, VALUES), max_size=5))
    inner = f",{draw(SPACE)}".join(f'"{k}"{a}:{b}{v}' for k, a, b, v in members)
    text = f"{draw(SPACE)}{{{draw(SPACE)}{inner}{draw(SPACE)}}}{draw(SPACE)}"
    return text[: draw(st.integers(1, len(text)))] if kind == "cut" else text


@settings(max_examples=400, deadline=None)
@given(st.lists(json_texts(), max_size=12))
@example(
    [
        '{"n": -0, "i": 4.0}',
        '{"n": 1e400}',
        '{"n": ' + "9" * 400 + "}",
        '{"i": 9223372036854775808, "s": "a"}',
        '{"s": "a", "s": "b"}',
        '{"s": "a", "x": null}',
        '{"s": "a", "x": {"y": 1}}',
        '{"s": {"x": 1}, "b": 1}',
        '{"d": "2026-02-30", "t": "2026-01-31 10:00:00+02:00"}',
        None,
        " ",
    ]
)
def test_object_text_read_in_polars_is_read_as_python_reads_it(texts):
    """Every text `_fast_objects` reads in Polars, `_parse_objects` (Python) reads the same
    way, and `coerce` turns any mix of texts into what Python alone makes of them: the same
    values, rules broken and undeclared keys."""
    from transforms.contracts.coerce import _fast_objects, _parse_objects

    frame = pl.DataFrame({"o": pl.Series(texts, dtype=pl.String)})
    distinct = frame["o"].drop_nulls().unique()
    fast, parsed = _fast_objects(distinct, OBJECT)
    assert_frame_equal(parsed, _parse_objects(distinct.filter(fast).to_list(), OBJECT))

    contract = TableContract("t", "t.odcs.yaml", "", (OBJECT,))

    def in_python(texts: pl.Series, _column: Column) -> tuple[pl.Series, pl.DataFrame]:
        return pl.repeat(False, texts.len(), eager=True), parsed.clear()

    with patch("transforms.contracts.coerce._fast_objects", in_python):
        python = coerce(frame, contract)
    assert_frame_equal(coerce(frame, contract), python)


def test_the_fast_path_reads_plain_objects_itself():
    """The property test's premise: the usual export text is read in Polars."""
    from transforms.contracts.coerce import _fast_objects

    texts = pl.Series(
        [
            '{"s": "web", "n": 12.5, "i": -3, "b": true, "d": "2026-01-31", "t": null}',
            '{ "n" : 3 }',
            "{}",
        ]
    )
    fast, parsed = _fast_objects(texts, OBJECT)
    assert fast.all() and parsed.height == 3


def test_each_row_lists_the_rules_it_broke_in_column_order():
    columns = (Column("a", "integer"), OBJECT, Column("c", "date"), Column("z", "number"))
    frame = pl.DataFrame(
        {
            "a": ["1", "x", "y", None, "2"],
            "o": ['{"n": "x", "i": 1.5}', "{}", None, "[]", '{"x": 1}'],
            "c": ["bad", "2026-01-01", "bad", None, None],
            "z": pl.Series([1.0, 2.0, None, 3.0, None], dtype=pl.Float64),
        }
    )
    out = coerce(frame, TableContract("t", "t.odcs.yaml", "", columns))
    assert out[CAST_FAILURES].to_list() == [
        ["o.n:type", "o.i:type", "c:type"],
        ["a:type"],
        ["a:type", "c:type"],
        ["o:type"],
        [],
    ]
    assert out["_undeclared_keys"].to_list() == [[], [], [], [], ["o.x"]]
