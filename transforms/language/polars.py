"""The Polars back end: a checked predicate as a Polars expression, and every event feature of a
run with the Polars tests that pick the events it counts.

It reads only what the check pass recorded on the nodes (`transforms.language.types`): each
node's type and constant value, the feature an event function reads and the segment an
`in_segment` reads. A person's row has the people columns, one column per feature and one
`__seg_<id>` column per segment of an earlier dependency level.
"""

from __future__ import annotations

import importlib
import operator
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import polars as pl
from sqlglot import exp

from transforms.contracts.coerce import iso_timestamp
from transforms.contracts.odcs import POLARS_TYPES
from transforms.contracts.text import FALSE_TEXT, ISO_DATE, TRUE_TEXT
from transforms.language.check import (
    ARITHMETIC,
    CASTS,
    LIKES,
    TEXT_FUNCTIONS,
    TEXT_TESTS,
    TRUNCATIONS,
)
from transforms.language.checked import CheckedDefinitions, CheckedSegment
from transforms.language.semantics import (
    DIALECT,
    DIFF_UNIT_SECONDS,
    HEX_DIGITS,
    INT32,
    NEVER_CONVERTS,
    NUMERIC,
    SEGMENT_PREFIX,
    SINCE_PREFIX,
    TEMPORAL,
    TRUNC_UNITS,
    EventAggregate,
    run_date,
)
from transforms.language.types import (
    Annotation,
    annotation,
    as_timestamp,
    bucket_arguments,
    feature_of,
    is_bucket,
    periods_of,
    segment_of,
    tenure_of,
    unify,
)

TIMESTAMP = POLARS_TYPES["timestamp"]


@dataclass(frozen=True)
class Typed:
    """A node as Polars: its expression and what the check pass found it to be."""

    expr: pl.Expr
    ann: Annotation

    @property
    def type(self) -> str:
        return self.ann.type

    @property
    def constant(self) -> bool:
        return self.ann.constant

    @property
    def value(self) -> Any:
        return self.ann.value


def _null_of(type_: str) -> pl.Expr:
    """A NULL of a result type (an untyped NULL breaks typed Polars operations)."""
    dtype = pl.Duration("us") if type_ == "interval" else POLARS_TYPES.get(type_, pl.Null())
    return pl.lit(None, dtype=dtype)


def _const(ann: Annotation) -> Typed:
    dtype = POLARS_TYPES.get(ann.type) if ann.type not in ("null", "interval") else None
    if ann.type == "interval":
        dtype = pl.Duration("us")
    return Typed(pl.lit(ann.value, dtype=dtype), ann)


def _to(typed: Typed, target: Annotation) -> Typed:
    """An operand as the type the type rules bring it to (a date or NULL next to a timestamp,
    quoted text next to a date or timestamp)."""
    if target == typed.ann:
        return typed
    if target.constant:
        return _const(target)
    if typed.type == "null":
        return Typed(_null_of(target.type), target)
    return Typed(typed.expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), target)


def _as_timestamp(typed: Typed) -> Typed:
    return _to(typed, as_timestamp(typed.ann))


def compile_node(node: exp.Expr, as_of: datetime) -> Typed:
    """A checked node as a Polars expression."""
    ann = annotation(node)
    if ann.constant:
        return _const(ann)
    return GENERATORS[type(node)](node, ann, as_of)


def condition(node: exp.Expr, as_of: datetime) -> pl.Expr:
    """A checked condition as a boolean Polars expression."""
    return compile_node(node, as_of).expr.cast(pl.Boolean)


Generator = Callable[[Any, Annotation, datetime], Typed]


def event_column(path: str) -> pl.Expr:
    """An event column by the name the check pass records (`column_path`): `amount`, or
    `properties.price`, a field of the struct column `properties`."""
    column, _, name = path.partition(".")
    return pl.col(column).struct.field(name) if name else pl.col(column)


def event_columns_read(path: str) -> str:
    """The column of the events frame `event_column(path)` reads."""
    return path.partition(".")[0]


def _column(node: exp.Column, ann: Annotation, as_of: datetime) -> Typed:
    if node.table:
        return Typed(pl.col(node.table).struct.field(node.name), ann)
    return Typed(pl.col(node.name), ann)


def _paren(node: exp.Paren, ann: Annotation, as_of: datetime) -> Typed:
    return compile_node(node.this, as_of)


HASHED_ONLY_WHERE: ContextVar[pl.Expr | None] = ContextVar("hashed_only_where", default=None)
"""While a side of AND / OR compiles: the rows its value can change the result of. `bucket()`
hashes only those (an md5 per person is the costliest test of the language); elsewhere it
is NULL, which the other side decides."""


@contextmanager
def _open_only_where(rows: pl.Expr) -> Iterator[None]:
    """Compile what runs inside for `rows` only, within the rows already open."""
    outer = HASHED_ONLY_WHERE.get()
    token = HASHED_ONLY_WHERE.set(rows if outer is None else outer & rows)
    try:
        yield
    finally:
        HASHED_ONLY_WHERE.reset(token)


def _sides(node: exp.Binary) -> tuple[exp.Expr, exp.Expr]:
    """AND / OR's operands, the one that calls bucket() last (when only one does): it is then
    compiled for the rows the other leaves open."""
    hashes = [any(is_bucket(n) for n in side.walk()) for side in (node.left, node.right)]
    return (node.right, node.left) if hashes == [True, False] else (node.left, node.right)


def _and(node: exp.And, ann: Annotation, as_of: datetime) -> Typed:
    first, second = _sides(node)
    decided = condition(first, as_of)
    with _open_only_where(decided.fill_null(True)):  # FALSE AND anything is FALSE
        rest = condition(second, as_of)
    return Typed(decided & rest, ann)


def _or(node: exp.Or, ann: Annotation, as_of: datetime) -> Typed:
    first, second = _sides(node)
    decided = condition(first, as_of)
    with _open_only_where(~decided.fill_null(False)):  # TRUE OR anything is TRUE
        rest = condition(second, as_of)
    return Typed(decided | rest, ann)


def _not(node: exp.Not, ann: Annotation, as_of: datetime) -> Typed:
    return Typed(~condition(node.this, as_of), ann)


COMPARE: dict[type[exp.Expr], Callable[[Any, Any], Any]] = {
    exp.EQ: operator.eq,
    exp.NEQ: operator.ne,
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
    exp.LT: operator.lt,
    exp.LTE: operator.le,
}


def _compare(op: type[exp.Expr], left: Typed, right: Typed, node: exp.Expr) -> pl.Expr:
    to_left, to_right = unify(left.ann, right.ann, node)
    left, right = _to(left, to_left), _to(right, to_right)
    if "null" in (left.type, right.type):
        return pl.lit(None, dtype=pl.Boolean)
    return COMPARE[op](left.expr, right.expr)


def _comparison(node: exp.Binary, ann: Annotation, as_of: datetime) -> Typed:
    left, right = compile_node(node.left, as_of), compile_node(node.right, as_of)
    return Typed(_compare(type(node), left, right, node), ann)


def _between(node: exp.Between, ann: Annotation, as_of: datetime) -> Typed:
    value = compile_node(node.this, as_of)
    low, high = compile_node(node.args["low"], as_of), compile_node(node.args["high"], as_of)
    return Typed(_compare(exp.GTE, value, low, node) & _compare(exp.LTE, value, high, node), ann)


def _in(node: exp.In, ann: Annotation, as_of: datetime) -> Typed:
    value = compile_node(node.this, as_of)
    items = [compile_node(item, as_of) for item in node.expressions]
    has_null = any(i.type == "null" for i in items)
    typed = [i for i in items if i.type != "null"]
    if value.type == "null" or not typed:
        return Typed(_null_of("boolean"), ann)
    pairs = []
    for item in typed:
        to_value, to_item = unify(value.ann, item.ann, node)
        pairs.append((_to(value, to_value), _to(item, to_item)))
    kinds = {value.type, *(item.type for item in typed)}
    widen = kinds <= set(NUMERIC) and "number" in kinds
    stamp = any(p.type == "timestamp" for pair in pairs for p in pair)

    def fit(side: Typed) -> Typed:
        side = _as_timestamp(side) if stamp else side
        if widen and side.constant:
            return _const(Annotation("number", float(side.value), constant=True))
        return Typed(side.expr.cast(pl.Float64), Annotation("number")) if widen else side

    probe = fit(value).expr
    fitted = [fit(right) for _, right in pairs]
    constants = [f.value for f in fitted if f.constant]
    result: pl.Expr | None = None
    if constants:
        result = (
            pl.when(probe.is_null()).then(_null_of("boolean")).otherwise(probe.is_in(constants))
        )
    for other in (f for f in fitted if not f.constant):
        match = probe == other.expr
        result = match if result is None else result | match
    if has_null:
        # x IN (..., NULL) is TRUE when x matches, else NULL: never FALSE
        result = pl.when(result.fill_null(False)).then(True)
    return Typed(result, ann)


def _is(node: exp.Is, ann: Annotation, as_of: datetime) -> Typed:
    return Typed(compile_node(node.this, as_of).expr.is_null(), ann)


def _like_regex(pattern: str) -> str:
    out = []
    for char in pattern:
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return "(?s)^" + "".join(out) + "$"


def _like(node: exp.Like | exp.ILike, ann: Annotation, as_of: datetime) -> Typed:
    value = compile_node(node.this, as_of)
    if value.type == "null":
        return Typed(_null_of("boolean"), ann)
    regex = _like_regex(node.expression.this)
    if isinstance(node, exp.ILike):
        regex = "(?i)" + regex
    matched = value.expr.str.contains(regex)
    return Typed(~matched if node.args.get("negate") else matched, ann)


OPERATORS: dict[type[exp.Expr], Callable[[Any, Any], Any]] = {
    exp.Add: operator.add,
    exp.Sub: operator.sub,
    exp.Mul: operator.mul,
}


def _arithmetic(node: exp.Binary, ann: Annotation, as_of: datetime) -> Typed:
    left, right = compile_node(node.left, as_of), compile_node(node.right, as_of)
    lt, rt = left.type, right.type
    if "null" in (lt, rt):
        return Typed(_null_of(ann.type), ann)
    if lt in NUMERIC and rt in NUMERIC:
        if isinstance(node, exp.Div):
            divisor = right.expr.cast(pl.Float64)
            return Typed(pl.when(divisor != 0).then(left.expr.cast(pl.Float64) / divisor), ann)
        return Typed(OPERATORS[type(node)](left.expr, right.expr), ann)
    if lt == rt == "date":  # date - date: whole days
        return Typed((left.expr - right.expr).dt.total_days(), ann)
    if lt == "interval":  # interval + date or timestamp
        return Typed(_as_timestamp(right).expr + left.expr, ann)
    if rt == "interval":  # date or timestamp +/- interval
        return Typed(OPERATORS[type(node)](_as_timestamp(left).expr, right.expr), ann)
    return Typed(_as_timestamp(left).expr - _as_timestamp(right).expr, ann)


def _neg(node: exp.Neg, ann: Annotation, as_of: datetime) -> Typed:
    value = compile_node(node.this, as_of)
    return value if value.type == "null" else Typed(-value.expr, ann)


def _text(typed: Typed) -> pl.Expr:
    return typed.expr if typed.type == "string" else typed.expr.cast(pl.String)


def _concat(node: exp.DPipe, ann: Annotation, as_of: datetime) -> Typed:
    parts = [compile_node(node.left, as_of), compile_node(node.right, as_of)]
    return Typed(pl.concat_str([_text(p) for p in parts], ignore_nulls=False), ann)


def _text_arg(node: exp.Expr, as_of: datetime) -> pl.Expr:
    value = compile_node(node, as_of)
    return _null_of("string") if value.type == "null" else value.expr


def _string_function(node: exp.Func, ann: Annotation, as_of: datetime) -> Typed:
    value = _text_arg(node.this, as_of)
    if isinstance(node, exp.Length):
        return Typed(value.str.len_chars().cast(pl.Int64), ann)
    if isinstance(node, exp.Trim):
        return Typed(value.str.strip_chars(" "), ann)
    if isinstance(node, exp.Lower):
        return Typed(value.str.to_lowercase(), ann)
    return Typed(value.str.to_uppercase(), ann)


def _string_test(node: exp.Func, ann: Annotation, as_of: datetime) -> Typed:
    value, needle = _text_arg(node.this, as_of), _text_arg(node.expression, as_of)
    if isinstance(node, exp.StartsWith):
        return Typed(value.str.starts_with(needle), ann)
    if isinstance(node, exp.EndsWith):
        return Typed(value.str.ends_with(needle), ann)
    return Typed(value.str.contains(needle, literal=True), ann)


def _number_arg(node: exp.Expr, as_of: datetime) -> Typed:
    value = compile_node(node, as_of)
    if value.type == "null":
        return Typed(_null_of("number"), Annotation("number"))
    return value


def _abs(node: exp.Abs, ann: Annotation, as_of: datetime) -> Typed:
    return Typed(_number_arg(node.this, as_of).expr.abs(), ann)


def _round(node: exp.Round, ann: Annotation, as_of: datetime) -> Typed:
    value = _number_arg(node.this, as_of)
    if value.type == "integer":
        return value
    digits = node.args.get("decimals")
    places = int(digits.this) if digits is not None else 0
    return Typed(value.expr.round(places, mode="half_away_from_zero"), ann)


def _common(
    values: list[Typed], ann: Annotation, build: Callable[[list[pl.Expr]], pl.Expr]
) -> Typed:
    """Values brought to the one type the check pass found for them."""
    types = {v.type for v in values} - {"null"}
    if not types:
        return Typed(pl.lit(None), ann)
    if types <= set(NUMERIC):
        return Typed(build([v.expr.cast(POLARS_TYPES[ann.type]) for v in values]), ann)
    if types <= set(TEMPORAL) and len(types) == 2:
        values = [_as_timestamp(v) for v in values]
    dtype = POLARS_TYPES.get(ann.type, pl.Duration("us"))
    return Typed(build([v.expr.cast(dtype) for v in values]), ann)


def _coalesce(node: exp.Coalesce, ann: Annotation, as_of: datetime) -> Typed:
    values = [compile_node(e, as_of) for e in (node.this, *node.expressions)]
    return _common(values, ann, lambda exprs: pl.coalesce(exprs))


def _case(node: exp.Case, ann: Annotation, as_of: datetime) -> Typed:
    subject = compile_node(node.this, as_of) if node.this else None
    conditions, values = [], []
    for branch in node.args.get("ifs") or []:
        if subject is not None:
            test = compile_node(branch.this, as_of)
            conditions.append(_compare(exp.EQ, subject, test, branch))
        else:
            conditions.append(condition(branch.this, as_of))
        values.append(compile_node(branch.args["true"], as_of))
    default = node.args.get("default")
    values.append(
        compile_node(default, as_of)
        if default is not None
        else Typed(pl.lit(None), Annotation("null"))
    )

    def build(exprs: list[pl.Expr]) -> pl.Expr:
        chain = pl.when(conditions[0]).then(exprs[0])
        for test, value in zip(conditions[1:], exprs[1:-1], strict=True):
            chain = chain.when(test).then(value)
        return chain.otherwise(exprs[-1])

    return _common(values, ann, build)


def _cast(node: exp.Cast, ann: Annotation, as_of: datetime) -> Typed:
    expr = _cast_expr(compile_node(node.this, as_of), ann.type)
    if node.to.this == exp.DataType.Type.INT:
        expr = pl.when(expr.is_between(*INT32)).then(expr)
    return Typed(expr, ann)


def _cast_expr(value: Typed, target: str) -> pl.Expr:
    """TRY_CAST: NULL when the value does not convert (the same on every engine)."""
    source, expr = value.type, value.expr
    if source == target:
        return expr
    if source == "null" or (source, target) in NEVER_CONVERTS:
        return _null_of(target)
    if target == "string":
        return expr.cast(pl.String)
    if source == "string":
        text = expr.str.strip_chars()
        if target == "integer":
            rounded = text.cast(pl.Float64, strict=False).round(0, mode="half_away_from_zero")
            return pl.coalesce(
                text.cast(pl.Int64, strict=False), rounded.cast(pl.Int64, strict=False)
            )
        if target == "boolean":
            lowered = expr.str.to_lowercase()
            return (
                pl.when(lowered.is_in(list(TRUE_TEXT)))
                .then(True)
                .when(lowered.is_in(list(FALSE_TEXT)))
                .then(False)
                .otherwise(None)
            )
        if target == "date":  # chrono alone would take 2026-3-1
            iso = text.str.contains(f"^{ISO_DATE}$")
            return pl.when(iso).then(text.str.to_date("%Y-%m-%d", strict=False))
        if target == "timestamp":
            return iso_timestamp(text)
        return text.cast(POLARS_TYPES[target], strict=False)
    if target == "integer" and source == "number":
        return expr.round(0, mode="half_to_even").cast(pl.Int64, strict=False)
    if target == "timestamp" and source == "date":
        return _as_timestamp(value).expr
    if target == "date" and source == "timestamp":
        return expr.dt.date()
    return expr.cast(POLARS_TYPES[target], strict=False)


def _date_trunc(
    node: exp.TimestampTrunc | exp.DateTrunc, ann: Annotation, as_of: datetime
) -> Typed:
    value = _as_timestamp(compile_node(node.this, as_of))
    return Typed(value.expr.dt.truncate(TRUNC_UNITS[node.unit.name.upper()]), ann)


def _date_diff(node: exp.DateDiff, ann: Annotation, as_of: datetime) -> Typed:
    unit = node.unit.name.upper() if node.unit else "DAY"
    start, end = compile_node(node.expression, as_of), compile_node(node.this, as_of)
    a, b = _as_timestamp(start).expr, _as_timestamp(end).expr
    if unit == "YEAR":
        return Typed((b.dt.year() - a.dt.year()).cast(pl.Int64), ann)
    if unit == "MONTH":
        months = (b.dt.year() * 12 + b.dt.month()) - (a.dt.year() * 12 + a.dt.month())
        return Typed(months.cast(pl.Int64), ann)
    step = TRUNC_UNITS[unit]
    elapsed = b.dt.truncate(step) - a.dt.truncate(step)
    return Typed((elapsed.dt.total_seconds() // DIFF_UNIT_SECONDS[unit]).cast(pl.Int64), ann)


_HASHING = threading.local()
"""A DuckDB connection per thread and process for `_buckets` (Polars may call it from several
threads at once; a connection costs about 15 ms to open)."""
_FIRST_DIGITS = " | ".join(  # the first HEX_DIGITS digits of the digest, from md5_number's
    f"(((x >> {8 * i}) & 255) << {8 * (HEX_DIGITS // 2 - 1 - i)})"  # little-endian bytes
    for i in range(HEX_DIGITS // 2)
)


def hashes_people(compiled: CompiledDefinitions) -> bool:
    """Whether a segment of `compiled` calls bucket(), which hashes people (`_buckets`)."""
    return any(
        is_bucket(call)
        for segment in compiled.segments.values()
        if segment.predicate is not None
        for call in segment.predicate.find_all(exp.Anonymous)
    )


def import_hashing_in_background(compiled: CompiledDefinitions) -> None:
    """When a segment hashes people, start importing DuckDB for `_buckets` in a background
    thread, so that the evaluation finds it imported or part way (a second import waits for
    the first): the import takes about 0.15 s, mostly while a run's features are folded, which
    leave the interpreter free."""
    if hashes_people(compiled) and "duckdb" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("duckdb",), daemon=True).start()


def _buckets(person_ids: pl.Series, n: int, salt: str) -> pl.Series:
    """bucket(n, salt) of each person (`semantics.bucket_of`), computed by DuckDB's md5 over the
    column, the digest the SQL engines compute (about 5x faster than one hashlib call per id;
    md5_number's integer instead of the hexadecimal text, twice faster again); NULL for a NULL
    id."""
    import duckdb

    if getattr(_HASHING, "pid", None) != os.getpid():  # never one a forked parent opened
        _HASHING.connection, _HASHING.pid = duckdb.connect(), os.getpid()
    connection = _HASHING.connection
    ids = person_ids.cast(pl.String).alias("person_id").to_frame().to_arrow()
    query = (
        f"SELECT (({_FIRST_DIGITS}) % $n)::BIGINT AS bucket FROM"
        f" (SELECT md5_number($salt || person_id) & {16**HEX_DIGITS - 1} AS x FROM ids)"
    )
    connection.register("ids", ids)
    try:
        found = connection.sql(query, params={"salt": f"{salt}:", "n": n}).to_arrow_table()
    finally:
        connection.unregister("ids")
    return pl.Series(person_ids.name, found.column("bucket"), dtype=pl.Int64)


def _function(node: exp.Anonymous, ann: Annotation, as_of: datetime) -> Typed:
    """days_since, in_segment, bucket and the event functions (as_of() and now() are
    constants)."""
    feature, segment = feature_of(node), segment_of(node)
    if feature is not None:
        column = pl.col(feature)
        return Typed(column >= 1 if node.name.lower() == "performed" else column, ann)
    if segment is not None:
        return Typed(pl.col(SEGMENT_PREFIX + segment), ann)
    if (tenure := tenure_of(node)) is not None:
        day = pl.lit(run_date(as_of), dtype=pl.Date)
        since = pl.col(SINCE_PREFIX + tenure).fill_null(day)
        return Typed(
            pl.when(pl.col(SEGMENT_PREFIX + tenure)).then((day - since).dt.total_days()), ann
        )
    if (periods := periods_of(node)) is not None:
        names, times, at_least = periods
        held = pl.sum_horizontal((pl.col(name) >= times).cast(pl.Int64) for name in names)
        return Typed(held >= at_least, ann)
    if is_bucket(node):
        n, salt = bucket_arguments(node)
        ids, open_rows = pl.col("person_id"), HASHED_ONLY_WHERE.get()
        if open_rows is not None:
            ids = pl.when(open_rows).then(ids)
        buckets = ids.map_batches(
            lambda ids: _buckets(ids, n, salt),
            return_dtype=pl.Int64,  # one call per column, not per morsel: a query costs 15 ms
        )
        return Typed(buckets, ann)
    value = _as_timestamp(compile_node(node.expressions[0], as_of))
    elapsed = pl.lit(as_of, dtype=TIMESTAMP) - value.expr
    return Typed((elapsed.dt.total_microseconds() // 86_400_000_000).cast(pl.Int64), ann)


GENERATORS: dict[type[exp.Expr], Generator] = {
    exp.Column: _column,
    exp.Paren: _paren,
    exp.And: _and,
    exp.Or: _or,
    exp.Not: _not,
    **dict.fromkeys(COMPARE, _comparison),
    exp.Between: _between,
    exp.In: _in,
    exp.Is: _is,
    **dict.fromkeys(LIKES, _like),
    **dict.fromkeys(ARITHMETIC, _arithmetic),
    exp.Neg: _neg,
    exp.DPipe: _concat,
    exp.Case: _case,
    exp.Coalesce: _coalesce,
    **dict.fromkeys(CASTS, _cast),
    **dict.fromkeys(TEXT_FUNCTIONS, _string_function),
    **dict.fromkeys(TEXT_TESTS, _string_test),
    exp.Abs: _abs,
    exp.Round: _round,
    **dict.fromkeys(TRUNCATIONS, _date_trunc),
    exp.DateDiff: _date_diff,
    exp.Anonymous: _function,
}
"""Polars for every allowed node class that is not a constant once checked (literals,
intervals, as_of() and the constants the check pass folds are `_const`)."""


# --- event features -----------------------------------------------------------------------


@dataclass(frozen=True)
class Feature(EventAggregate):
    """An event aggregate with the Polars tests that pick the events it counts."""

    tests: tuple[tuple[str, pl.Expr], ...] = field(default=(), compare=False, repr=False)
    """Which events count, as (canonical text, expression) of each test they must all pass:
    the name, each time bound, the filter. Features share tests by their text."""
    window_tests: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """The texts of the tests among `tests` that bound the window (`within`, `ago`)."""

    @property
    def event_tests(self) -> tuple[tuple[str, pl.Expr], ...]:
        """The tests that do not depend on the run date: all but the window's."""
        return tuple(t for t in self.tests if t[0] not in self.window_tests)

    @property
    def condition(self) -> pl.Expr:
        """Which events count: every test at once."""
        return pl.all_horizontal(expr for _, expr in self.tests) if self.tests else pl.lit(True)


TIME_TESTS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _time_test(op: str, bound: datetime) -> tuple[str, pl.Expr]:
    """An event test on the timestamp, with its canonical text."""
    compare = TIME_TESTS[op](pl.col("timestamp"), pl.lit(bound, dtype=TIMESTAMP))
    return f"timestamp {op} {bound.isoformat()}", compare


def feature(aggregate: EventAggregate, as_of: datetime) -> Feature:
    """An event aggregate with its Polars tests."""
    tests = (
        []
        if aggregate.event == "*" or aggregate.steps is not None  # a sequence names each step
        else [(f"name = {aggregate.event!r}", pl.col("name") == aggregate.event)]
    )
    window = []
    if aggregate.window_start is not None:
        window.append(_time_test(">", aggregate.window_start))
    if aggregate.window_end is not None:
        window.append(_time_test("<=", aggregate.window_end))
    tests += window
    if aggregate.since is not None:
        tests.append(_time_test(">=", aggregate.since))
    if aggregate.until is not None:
        tests.append(_time_test("<", aggregate.until))
    if aggregate.filter is not None:
        test = condition(aggregate.filter, as_of).fill_null(False)
        tests.append((aggregate.filter.sql(dialect=DIALECT), test))
    return Feature(
        **{f.name: getattr(aggregate, f.name) for f in fields(EventAggregate)},
        tests=tuple(tests),
        window_tests=tuple(text for text, _ in window),
    )


# --- whole definitions --------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledSegment(CheckedSegment):
    """A segment ready to evaluate over people joined with the event features."""

    expr: pl.Expr | None = None


@dataclass
class CompiledDefinitions(CheckedDefinitions):
    """Every segment of a run compiled to Polars, and the features they need."""

    segments: dict[str, CompiledSegment]
    features: dict[str, Feature]


def compile_to_polars(checked: CheckedDefinitions) -> CompiledDefinitions:
    """Checked definitions as Polars: each predicate an expression, each feature its tests."""
    as_of = checked.as_of
    segments = {
        sid: CompiledSegment(
            **{f.name: getattr(s, f.name) for f in fields(CheckedSegment)},
            expr=condition(s.predicate, as_of) if s.predicate is not None else None,
        )
        for sid, s in checked.segments.items()
    }
    features = {name: feature(f, as_of) for name, f in checked.features.items()}
    return CompiledDefinitions(as_of, segments, checked.order, features)
