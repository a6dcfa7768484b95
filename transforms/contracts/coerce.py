"""Typing raw landing columns to their contract types, row by row, without losing a row.

Each column becomes its contract type; a value that is present but does not convert (`'abc'`
for an integer, `'2026-02-30'` for a date) becomes NULL in the typed column and the row is
flagged with the rule `<column>:type`, so the ingest step can quarantine it with the value that
failed. Empty or blank text is NULL, not a failure.

Timestamps in text are ISO-8601 (`T` or space between date and time, optional fraction) with
`Z` or an offset (`+02:00`, `-0530`), and become UTC; text without an offset is taken as UTC;
a bare date is its midnight UTC.

An `object` column (`transforms.contracts.odcs`) becomes a struct of its declared fields. From
text (CSV, JSON lines, a Parquet text column) each value must be a JSON object (empty text and
JSON `null` are NULL); anything else fails `<column>:type`. Each declared key must hold a JSON
value of the field's type or `null` (a whole number for integer, any number for number, true or
false for boolean, text for string, text in the forms above for date and timestamp), else the
row fails `<column>.<field>:type`. From a Parquet struct, each declared field converts as a
column of that type would. Keys not declared are dropped; each one holding a value is listed in
the row's `_undeclared_keys` (`<column>.<key>`) for the ingest report to count.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import polars as pl

from transforms.contracts.odcs import FIELD_NAME, POLARS_TYPES, Column, TableContract
from transforms.contracts.text import FALSE_TEXT, ISO_DATE, TRUE_TEXT

CAST_FAILURES = "_cast_failures"
UNDECLARED = "_undeclared_keys"
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


class _NotJson(ValueError):
    """JSON text with NaN or Infinity, which JSON does not have."""


def _no_constant(text: str) -> Any:
    raise _NotJson(text)


_DECODE = json.JSONDecoder(parse_constant=_no_constant).decode
INT64 = (-(2**63), 2**63)


def _json_value(value: Any, logical_type: str) -> tuple[Any, bool]:
    """(the value as the field's column holds it before typing, whether it is of the wrong
    type) of a JSON value other than null. Dates and timestamps stay text here: they are typed
    as text columns are."""
    kind = type(value)
    if logical_type == "string" or logical_type in ("date", "timestamp"):
        return (value, False) if kind is str else (None, True)
    if logical_type == "number":
        if kind is float:
            return (None, True) if math.isinf(value) else (value, False)
        if kind is not int:
            return None, True
        try:
            return float(value), False
        except OverflowError:  # too large for a double: as wrong as an infinite number
            return None, True
    if logical_type == "integer":
        if kind is float and value.is_integer():
            value, kind = int(value), int
        return (value, False) if kind is int and INT64[0] <= value < INT64[1] else (None, True)
    return (value, False) if kind is bool else (None, True)


def _text_fields(column: Column) -> dict[str, pl.DataType]:
    """The type of each field as `_parse_objects` fills it: dates and timestamps still text."""
    kinds = {"date": pl.String(), "timestamp": pl.String()}
    return {f.name: kinds.get(f.logical_type, f.dtype) for f in column.fields}


def _parse_objects(texts: list[str], column: Column) -> pl.DataFrame:
    """Each JSON text parsed: a frame of the declared fields (dates and timestamps as text) and
    `__present` (a JSON object), and per text the rules it broke and the undeclared keys holding
    a value, as `rule|rule` / `key|key` text (None when there are none)."""
    fields = [(f.name, f.logical_type) for f in column.fields]
    declared = {name for name, _ in fields}
    values: list[list[Any]] = [[None] * len(texts) for _ in fields]
    present = [False] * len(texts)
    failures: list[str | None] = [None] * len(texts)
    undeclared: list[str | None] = [None] * len(texts)
    not_object = f"{column.name}:type"
    for row, text in enumerate(texts):
        try:
            parsed = _DECODE(text)
        except (json.JSONDecodeError, _NotJson, RecursionError):
            failures[row] = None if not text.strip() else not_object  # blank text is NULL
            continue
        if parsed is None:
            continue
        if type(parsed) is not dict:
            failures[row] = not_object
            continue
        present[row] = True
        broken = []
        for index, (name, logical_type) in enumerate(fields):
            value = parsed.get(name)
            if value is None:
                continue
            value, wrong = _json_value(value, logical_type)
            if wrong:
                broken.append(f"{column.name}.{name}:type")
            else:
                values[index][row] = value
        if broken:
            failures[row] = "|".join(broken)
        if len(parsed) > len(declared) or not parsed.keys() <= declared:
            extra = [
                f"{column.name}.{key}"
                for key, value in parsed.items()
                if key not in declared and value is not None
            ]
            undeclared[row] = "|".join(extra) if extra else None
    types = _text_fields(column)
    frame = pl.DataFrame(
        [pl.Series(name, values[i], dtype=types[name]) for i, (name, _) in enumerate(fields)]
        + [
            pl.Series("__present", present, dtype=pl.Boolean),
            pl.Series("__failures", failures, dtype=pl.String),
            pl.Series("__undeclared", undeclared, dtype=pl.String),
        ]
    )
    return frame


JSON_SPACE = r"[ \t\n\r]*"
JSON_TEXT = r'"[^"\\\x00-\x1f]*"'
"""A JSON string without escapes: its text between the quotes is its value."""
JSON_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
JSON_INTEGER = r"-?(?:0|[1-9][0-9]*)"
JSON_SCALAR = rf"(?:{JSON_TEXT}|{JSON_NUMBER}|true|false|null)"
JSON_MEMBER = rf"{JSON_TEXT}{JSON_SPACE}:{JSON_SPACE}{JSON_SCALAR}"
FLAT_OBJECT = (
    rf"^{JSON_SPACE}\{{{JSON_SPACE}"
    rf"(?:{JSON_MEMBER}{JSON_SPACE}(?:,{JSON_SPACE}{JSON_MEMBER}{JSON_SPACE})*)?\}}{JSON_SPACE}$"
)
"""A JSON object of strings without escapes, numbers, booleans and nulls: in such a text, a
key is the only place a declared field's name (`FIELD_NAME`) can stand in quotes before a colon,
and each key's value is the JSON token after it."""


def _field_token(name: str) -> pl.Expr:
    """The JSON token of field `name` in a `FLAT_OBJECT` text (NULL when the key is absent)."""
    key = rf'"{name}"{JSON_SPACE}:{JSON_SPACE}({JSON_SCALAR})'
    return pl.col("__text").str.extract(key, 1)


def _fast_value(token: pl.Expr, logical_type: str) -> tuple[pl.Expr, pl.Expr]:
    """(the value as `_parse_objects` holds it, whether it surely is that value) of a field's
    JSON token other than null. Not sure: a value of the wrong type, an integer in
    floating-point form, a number a double cannot hold and `-0` (Python reads the integer 0)."""
    if logical_type in ("string", "date", "timestamp"):
        text = token.str.starts_with('"')
        return pl.when(text).then(token.str.strip_prefix('"').str.strip_suffix('"')), text
    if logical_type == "number":
        value = token.cast(pl.Float64, strict=False)
        number = token.str.contains(f"^{JSON_NUMBER}$") & (token != "-0") & value.is_finite()
        return pl.when(number).then(value), number
    if logical_type == "integer":
        value = token.cast(pl.Int64, strict=False)
        return value, token.str.contains(f"^{JSON_INTEGER}$") & value.is_not_null()
    value = pl.when(token == "true").then(True).when(token == "false").then(False)
    return value, value.is_not_null()


def _fast_objects(texts: pl.Series, column: Column) -> tuple[pl.Series, pl.DataFrame]:
    """(which of `texts` Polars reads as `_parse_objects` would, `_parse_objects`' frame of
    those texts).

    Read in Polars: `FLAT_OBJECT` texts whose every key is a declared field, at most once,
    holding null or a value `_fast_value` is sure of. Those are JSON objects that break no
    rule and hold no undeclared key; `_parse_objects` decides every other text."""
    if not all(re.fullmatch(FIELD_NAME, f.name) for f in column.fields):
        return pl.repeat(False, texts.len(), eager=True), _parse_objects([], column)
    text = pl.col("__text")
    tokens = (
        texts.alias("__text")
        .to_frame()
        .with_columns(
            text.str.contains(FLAT_OBJECT).alias("__flat"),
            text.str.count_matches(JSON_MEMBER).alias("__members"),
            *(_field_token(f.name).alias(f"__token {f.name}") for f in column.fields),
            *(
                text.str.count_matches(rf'"{f.name}"{JSON_SPACE}:').alias(f"__keys {f.name}")
                for f in column.fields
            ),
        )
    )
    values, sure = [], [pl.col("__flat")]
    types = _text_fields(column)
    for field in column.fields:
        token, keys = pl.col(f"__token {field.name}"), pl.col(f"__keys {field.name}")
        value, certain = _fast_value(token, field.logical_type)
        absent = token.is_null() | (token == "null")
        values.append(pl.when(~absent).then(value).cast(types[field.name]).alias(field.name))
        sure.append((absent | certain) & (keys <= 1))
    undeclared = pl.col("__members") - pl.sum_horizontal(pl.col("^__keys .*$"))
    sure.append(undeclared == 0)
    fast = tokens.select(pl.all_horizontal(sure).fill_null(False)).to_series()
    parsed = tokens.filter(fast).select(
        *values,
        pl.lit(True).alias("__present"),
        pl.lit(None, pl.String).alias("__failures"),
        pl.lit(None, pl.String).alias("__undeclared"),
    )
    return fast, parsed


def _parsed_texts(texts: pl.Series, column: Column) -> tuple[pl.DataFrame, pl.Series]:
    """(`_parse_objects`' frame of distinct `texts`, where each text's row is in it): those
    `_fast_objects` reads first, then those read in Python."""
    fast, parsed = _fast_objects(texts, column)
    parsed = pl.concat([parsed, _parse_objects(texts.filter(~fast).to_list(), column)])
    read_fast = fast.cum_sum() - 1
    read_in_python = fast.sum() + (~fast).cum_sum() - 1
    return parsed, read_fast.zip_with(fast, read_in_python).cast(pl.UInt32)


def _object_from_text(text: pl.Series, column: Column) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(struct of the declared fields, rules broken, undeclared keys) of JSON text. Each
    distinct text is read once: in Polars when `_fast_objects` can, else in Python."""
    coded = text.cast(pl.Categorical(pl.Categories.random()))  # own categories: codes 0, 1, ...
    distinct = coded.dtype.categories.to_series()
    parsed, where = _parsed_texts(distinct, column)
    parsed = pl.concat([parsed, parsed.clear(1).with_columns(__present=False)])  # NULL text
    empty = pl.lit([], pl.List(pl.String))
    failures = [pl.col("__failures").str.split("|").fill_null(empty)]
    typed = []
    for field in column.fields:
        if field.logical_type in ("date", "timestamp"):
            value, failed = _typed(parsed, field)
            typed.append(value.alias(field.name))
            failures.append(pl.when(failed).then(pl.lit(f"{column.name}.{field.name}:type")))
        else:
            typed.append(pl.col(field.name))
    result = parsed.select(
        pl.when(pl.col("__present")).then(pl.struct(typed)).cast(column.dtype).alias(column.name),
        pl.concat_list(failures).list.drop_nulls().alias("failures"),
        pl.col("__undeclared").str.split("|").fill_null(empty).alias("keys"),
    )
    # each row's position in `parsed` (NULL text's is the last); gathered from one chunk
    # (gathering 10M rows from the three concatenated above takes 10x longer)
    rows = where.gather(coded.to_physical()).fill_null(distinct.len())
    result = result.rechunk()[rows]
    return (
        result.get_column(column.name),
        result.get_column("failures"),
        result.get_column("keys"),
    )


def _object_from_struct(
    frame: pl.DataFrame, column: Column
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(struct of the declared fields, rules broken, undeclared keys) of a struct column: each
    declared field converted as a column of its type, the other fields dropped."""
    source = frame.get_column(column.name)
    fields = source.struct.unnest() if source.dtype.fields else pl.DataFrame(height=len(source))
    typed, failures = [], []
    for field in column.fields:
        if field.name not in fields.columns:
            typed.append(pl.lit(None, field.dtype).alias(field.name))
            continue
        if fields.schema[field.name].is_nested():  # a list or struct is never a field's type
            value = pl.lit(None, field.dtype)
            failed = pl.col(field.name).is_not_null()
        else:
            value, failed = _typed(fields, field)
        typed.append(value.alias(field.name))
        rule = f"{column.name}.{field.name}:type"
        failures.append(pl.when(failed & source.is_not_null()).then(pl.lit(rule)))
    declared = {f.name for f in column.fields}
    undeclared = [
        pl.when(pl.col(name).is_not_null() & source.is_not_null()).then(
            pl.lit(f"{column.name}.{name}")
        )
        for name in fields.columns
        if name not in declared
    ]
    empty = pl.lit([], pl.List(pl.String))
    result = fields.select(
        pl.when(pl.lit(source.is_not_null())).then(pl.struct(typed)).alias("value"),
        (pl.concat_list(failures).list.drop_nulls() if failures else empty).alias("failures"),
        (pl.concat_list(undeclared).list.drop_nulls() if undeclared else empty).alias("keys"),
    )
    return (
        result.get_column("value").cast(column.dtype).alias(column.name),
        result.get_column("failures"),
        result.get_column("keys"),
    )


def _object(frame: pl.DataFrame, column: Column) -> tuple[pl.Series, pl.Series, pl.Series]:
    source = frame.schema[column.name]
    if isinstance(source, pl.Struct):
        return _object_from_struct(frame, column)
    text = frame.get_column(column.name)
    return _object_from_text(text if source == pl.String else text.cast(pl.String), column)


Broken = pl.Series | tuple[str, pl.Series]
"""The rules one column broke per row: the lists of an object column's rules, or a rule and
whether each row broke it."""


def _broken(frame: pl.DataFrame, column: Column) -> tuple[pl.Series, Broken | None]:
    """(typed values, the rules they broke, None when no row broke one) of a column other than
    an object column."""
    if column.logical_type != "string" and frame.schema[column.name] == pl.String:
        value, failed = _typed_text(frame, column)
    else:
        value, failed = _typed(frame, column)
        typed = frame.select(value.alias(column.name), failed.alias("failed"))
        value, failed = typed.to_series(0), typed.to_series(1)
    if failed is None or column.logical_type == "string" or not failed.any():
        return value, None  # text never fails to be text
    return value, (f"{column.name}:type", failed)


def _rule_lists(parts: list[Broken], height: int) -> pl.Series:
    """Each row's list of the rules it broke, in the order of `parts` (one per column).

    The lists of object columns hold no NULL and are taken as they are; other columns' rules
    are added only to the rows that broke one (making lists of 10M rows and dropping their
    NULLs took seconds)."""
    lists = [part for part in parts if isinstance(part, pl.Series)]
    empty = pl.Series(CAST_FAILURES, [[]], pl.List(pl.String))
    if len(lists) > 1:
        base = pl.select(pl.concat_list([pl.lit(rules) for rules in lists])).to_series()
    else:
        base = lists[0] if lists else empty.gather(pl.repeat(0, height, eager=True))
    flags = [part[1] for part in parts if isinstance(part, tuple)]
    if not flags:
        return base.alias(CAST_FAILURES)
    positions = pl.select(pl.any_horizontal(flags)).to_series().arg_true()
    chosen = [
        pl.lit(part.gather(positions))
        if isinstance(part, pl.Series)
        else pl.when(pl.lit(part[1].gather(positions))).then(pl.lit(part[0]))
        for part in parts
    ]
    broken = pl.select(pl.concat_list(chosen).list.drop_nulls()).to_series()
    rows = pl.int_range(height, dtype=pl.UInt32, eager=True).scatter(
        positions, pl.int_range(height, height + positions.len(), dtype=pl.UInt32, eager=True)
    )  # the rows that broke a rule read their list after the others
    return pl.concat([base, broken]).rechunk().gather(rows).alias(CAST_FAILURES)


def coerce(frame: pl.DataFrame, contract: TableContract) -> pl.DataFrame:
    """The frame with contract-typed columns and a list column of `<column>:type` failures
    (and, for a contract with object columns, `_undeclared_keys`)."""
    typed, parts, undeclared = [], [], []
    for column in contract.columns:
        if column.logical_type == "object":
            value, rules, keys = _object(frame, column)
            parts.append(rules)
            undeclared.append(keys)
        else:
            value, broken = _broken(frame, column)
            if broken is not None:
                parts.append(broken)
        typed.append(value.alias(column.name))
    if len(undeclared) == 1:
        typed.append(undeclared[0].alias(UNDECLARED))
    elif undeclared:
        typed.append(pl.concat_list([pl.lit(keys) for keys in undeclared]).alias(UNDECLARED))
    return frame.with_columns(*typed, _rule_lists(parts, frame.height))
