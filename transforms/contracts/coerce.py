"""Typing raw landing columns to their contract types, row by row, without losing a row.

Each column becomes its contract type; a value that is present but does not convert (`'abc'`
for an integer, `'2026-02-30'` for a date) becomes NULL in the typed column and the row is
flagged with the rule `<column>:type`, so the ingest step can quarantine it with the value that
failed. Empty or blank text is NULL, not a failure.

Timestamps in text are ISO-8601 (`T` or space between date and time, optional fraction) with
`Z` or an offset (`+02:00`, `-0530`), and become UTC; text without an offset is taken as UTC;
a bare date is its midnight UTC.
"""

from __future__ import annotations

import polars as pl

from transforms.contracts.odcs import POLARS_TYPES, Column, TableContract
from transforms.contracts.text import FALSE_TEXT, ISO_DATE, TRUE_TEXT

CAST_FAILURES = "_cast_failures"
UTC_TIMESTAMP = POLARS_TYPES["timestamp"]


def iso_timestamp(text: pl.Expr) -> pl.Expr:
    """Text in the forms of `transforms.contracts.text.ISO_TIMESTAMP` as a UTC timestamp; NULL
    when it does not convert."""
    normalised = (
        text.str.replace(rf"^({ISO_DATE})$", "${1}T00:00:00")
        .str.replace(rf"^({ISO_DATE}) ", "${1}T")
        .str.replace(r"[zZ]$", "+00:00")
    )
    with_offset = (
        pl.when(normalised.str.contains(r"[+-]\d{2}:?\d{2}$"))
        .then(normalised)
        .otherwise(normalised + "+00:00")
    )
    return with_offset.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%z", time_zone="UTC", time_unit="us", strict=False
    )


def _from_text(text: pl.Expr, logical_type: str) -> pl.Expr:
    if logical_type == "integer":
        return text.cast(pl.Int64, strict=False)
    if logical_type == "number":
        return text.cast(pl.Float64, strict=False)
    if logical_type == "boolean":
        lowered = text.str.to_lowercase()
        return (
            pl.when(lowered.is_in(TRUE_TEXT))
            .then(True)
            .when(lowered.is_in(FALSE_TEXT))
            .then(False)
            .otherwise(None)
        )
    if logical_type == "date":
        return text.str.to_date("%Y-%m-%d", strict=False)
    return iso_timestamp(text)


def _from_typed(value: pl.Expr, source: pl.DataType, logical_type: str) -> pl.Expr:
    if logical_type == "integer" and source.is_float():
        return pl.when(value == value.round()).then(value.cast(pl.Int64, strict=False))
    if logical_type == "timestamp" and isinstance(source, pl.Datetime):
        aware = value.dt.replace_time_zone("UTC") if source.time_zone is None else value
        return aware.dt.convert_time_zone("UTC").cast(UTC_TIMESTAMP)
    if logical_type == "date" and isinstance(source, pl.Datetime):
        return _from_typed(value, source, "timestamp").dt.date()
    if logical_type == "timestamp" and source == pl.Date:
        return value.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if logical_type == "boolean" and source.is_integer():
        return pl.when(value == 1).then(True).when(value == 0).then(False)
    return value.cast(POLARS_TYPES[logical_type], strict=False)


def _text_timestamp(frame: pl.DataFrame, text: pl.Expr) -> pl.Expr:
    """The common `...Z` form parses 5x faster on its own; other forms only when present."""
    zulu = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", strict=False)
    parsed = frame.select(
        zulu.dt.replace_time_zone("UTC").alias("value"), (text.str.len_bytes() > 0).alias("present")
    )
    value = pl.lit(parsed.get_column("value"))
    others = parsed.select(pl.col("present") & pl.col("value").is_null()).to_series().any()
    return pl.coalesce(value, iso_timestamp(text)) if others else value


def _typed(frame: pl.DataFrame, column: Column) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, present-but-unconvertible flag) for one column."""
    raw, source = pl.col(column.name), frame.schema[column.name]
    if column.logical_type == "string":
        value = raw if source == pl.String else raw.cast(pl.String)
        return value, pl.lit(False)
    if source == pl.String:
        text = raw.str.strip_chars()
        present = text.str.len_bytes() > 0
        parsed = (
            _text_timestamp(frame, text)
            if column.logical_type == "timestamp"
            else _from_text(text, column.logical_type)
        )
        value = pl.when(present).then(parsed)
    else:
        present = raw.is_not_null()
        value = _from_typed(raw, source, column.logical_type)
    value = value.cast(column.dtype)
    return value, (present & value.is_null()).fill_null(False)


def _fast_text(text: pl.Expr, logical_type: str) -> pl.Expr:
    """Text in the form most exports write, typed without stripping or trying other forms:
    NULL where it does not convert so (then `_typed` decides, for those rows only)."""
    if logical_type == "timestamp":
        return text.str.to_datetime(
            "%Y-%m-%dT%H:%M:%SZ", time_unit="us", time_zone="UTC", strict=False
        )
    if logical_type in ("integer", "number"):
        return text.cast(POLARS_TYPES[logical_type], strict=False)
    return _from_text(text, logical_type)


def _typed_text(frame: pl.DataFrame, column: Column) -> tuple[pl.Series, pl.Series | None]:
    """(typed values, unconvertible flags or None when every value converted) of a text column.

    Most values convert in the common form (`_fast_text`); only the others (NULL there, but not
    NULL as text) go through `_typed`, which strips them, treats blank text as NULL and tries
    every form. A value the common form converts, `_typed` converts to the same value."""
    name = column.name
    value = frame.select(_fast_text(pl.col(name), column.logical_type).cast(column.dtype))
    value = value.to_series().alias(name)
    rest = value.is_null() & frame.get_column(name).is_not_null()
    if not rest.any():
        return value, None
    positions = rest.arg_true()
    subset = frame.select(name).filter(rest)
    slow, failed = _typed(subset, column)
    converted = subset.select(slow.alias("value"), failed.alias("failed"))
    value = value.scatter(positions, converted.get_column("value"))
    flags = pl.Series(name, [False] * frame.height, pl.Boolean)
    return value, flags.scatter(positions, converted.get_column("failed"))


def coerce(frame: pl.DataFrame, contract: TableContract) -> pl.DataFrame:
    """The frame with contract-typed columns and a list column of `<column>:type` failures."""
    typed, failures = [], []
    for column in contract.columns:
        if column.logical_type != "string" and frame.schema[column.name] == pl.String:
            value, failed = _typed_text(frame, column)
            typed.append(pl.lit(value))
            if failed is not None:
                failures.append(pl.when(pl.lit(failed)).then(pl.lit(f"{column.name}:type")))
            continue
        value, failed = _typed(frame, column)
        typed.append(value.alias(column.name))
        if column.logical_type != "string":  # text never fails to be text
            failures.append(pl.when(failed).then(pl.lit(f"{column.name}:type")))
    listed = (
        pl.concat_list(failures).list.drop_nulls() if failures else pl.lit([], pl.List(pl.String))
    )
    return frame.with_columns(*typed, listed.alias(CAST_FAILURES))
