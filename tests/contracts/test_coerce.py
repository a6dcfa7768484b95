"""Typing raw values to contract types: conversions, NULLs, time zones, failures flagged."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import polars as pl
import pytest
from polars.testing import assert_series_equal

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
