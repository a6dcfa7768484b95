"""Segment predicates: sqlglot trees checked against the language, compiled to Polars.

One table, `_HANDLERS`, maps every sqlglot node class the language allows to the function that
compiles it; a node whose class is not in the table is refused with its position. The table is
the language's allowlist and its security boundary: no statement, subquery, window, engine
function or file path can get through, because nothing compiles it.

Compiling a predicate type-checks it against the data contracts (person attributes in the
predicate, event columns inside event functions), turns every distinct event-function call into
one `Feature` (computed for all segments in one pass over the events, `transforms.features`) and
records the segments it references with `in_segment`, so segments are evaluated in dependency
order. NULL semantics are SQL's: comparisons with NULL are NULL, AND/OR/NOT are three-valued,
and a person is a member only when the predicate is TRUE.
"""

from __future__ import annotations

import difflib
import hashlib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import polars as pl
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from transforms.contracts.coerce import iso_timestamp
from transforms.contracts.odcs import POLARS_TYPES, TableContract
from transforms.errors import DefinitionError
from transforms.language.definitions import Segment

DIALECT = "duckdb"
NUMERIC = ("integer", "number")
TEMPORAL = ("date", "timestamp")
TIMESTAMP = POLARS_TYPES["timestamp"]
FEATURE_PREFIX, SEGMENT_PREFIX = "__f_", "__seg_"
INTERVAL_UNITS = {
    "SECOND": timedelta(seconds=1),
    "MINUTE": timedelta(minutes=1),
    "HOUR": timedelta(hours=1),
    "DAY": timedelta(days=1),
    "WEEK": timedelta(weeks=1),
}
TRUNC_UNITS = {
    "SECOND": "1s",
    "MINUTE": "1m",
    "HOUR": "1h",
    "DAY": "1d",
    "WEEK": "1w",
    "MONTH": "1mo",
    "QUARTER": "1q",
    "YEAR": "1y",
}
CAST_TYPES = {
    exp.DataType.Type.TEXT: "string",
    exp.DataType.Type.VARCHAR: "string",
    exp.DataType.Type.INT: "integer",
    exp.DataType.Type.BIGINT: "integer",
    exp.DataType.Type.DOUBLE: "number",
    exp.DataType.Type.BOOLEAN: "boolean",
    exp.DataType.Type.DATE: "date",
    exp.DataType.Type.TIMESTAMP: "timestamp",
    exp.DataType.Type.TIMESTAMPNTZ: "timestamp",
    exp.DataType.Type.TIMESTAMPTZ: "timestamp",
}
INT32 = (-(2**31), 2**31 - 1)
# casts that never convert a value (TRY_CAST gives NULL on every engine)
NEVER_CONVERTS = {
    ("date", "boolean"),
    ("timestamp", "boolean"),
    ("date", "integer"),
    ("timestamp", "integer"),
    ("date", "number"),
    ("timestamp", "number"),
    ("boolean", "date"),
    ("boolean", "timestamp"),
    ("integer", "date"),
    ("integer", "timestamp"),
    ("number", "date"),
    ("number", "timestamp"),
}


class CompileError(Exception):
    """A predicate problem at a node; becomes a DefinitionError with the file position."""

    def __init__(self, message: str, node: exp.Expr | None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.node, self.hint = message, node, hint


@dataclass(frozen=True)
class Typed:
    """A compiled node: its Polars expression, its type, and its value when it is a constant."""

    expr: pl.Expr
    type: str
    value: Any = None
    constant: bool = False


def _null_of(type_: str) -> pl.Expr:
    """A NULL of a result type (an untyped NULL breaks typed Polars operations)."""
    dtype = pl.Duration("us") if type_ == "interval" else POLARS_TYPES.get(type_, pl.Null())
    return pl.lit(None, dtype=dtype)


def _const(value: Any, type_: str) -> Typed:
    dtype = POLARS_TYPES.get(type_) if type_ not in ("null", "interval") else None
    if type_ == "interval":
        dtype = pl.Duration("us")
    return Typed(pl.lit(value, dtype=dtype), type_, value, constant=True)


@dataclass(frozen=True)
class Feature:
    """One event aggregate per person, shared by every segment that uses the same call."""

    name: str
    aggregate: str  # count | sum | min | max | avg | first | last
    event: str  # an event name, or '*' for any
    column: str | None
    within: timedelta | None
    since: datetime | None
    until: datetime | None
    filter: exp.Expr | None
    type: str
    tests: tuple[tuple[str, pl.Expr], ...] = field(compare=False, repr=False)
    """Which events count, as (canonical text, expression) of each test they must all pass:
    the name, each time bound, the filter. Features share tests by their text."""
    window_test: str | None = field(default=None, compare=False, repr=False)
    """The text of the test among `tests` that bounds the window (`within`), if any."""
    column_type: str | None = field(default=None, compare=False, repr=False)
    """The type of the aggregated event column (integer or number), if any."""

    @property
    def event_tests(self) -> tuple[tuple[str, pl.Expr], ...]:
        """The tests that do not depend on the run date: all but the window's."""
        return tuple(t for t in self.tests if t[0] != self.window_test)

    @property
    def window_days(self) -> int | None:
        """The window in whole days, or None without a window (or one of hours or minutes)."""
        if self.within is None or self.within % timedelta(days=1):
            return None
        return self.within.days

    @property
    def foldable(self) -> bool:
        """Whether per-day partial aggregates give this feature exactly: no window or one of
        whole days, and a filter that does not read the as-of instant."""
        whole_days = self.within is None or self.window_days is not None
        return whole_days and (self.filter is None or not reads_as_of(self.filter))

    @property
    def condition(self) -> pl.Expr:
        """Which events count: every test at once."""
        return pl.all_horizontal(expr for _, expr in self.tests) if self.tests else pl.lit(True)

    @property
    def default(self) -> int | None:
        """Value for a person without matching events: 0 for counts and sums, else NULL."""
        return 0 if self.aggregate in ("count", "sum") else None

    def describe(self) -> str:
        args = [repr(self.event)] + ([self.column] if self.column else [])
        if self.within:
            args.append(f"within => '{_interval_text(self.within)}'")
        if self.since:
            args.append(f"since => TIMESTAMP '{self.since:%Y-%m-%d %H:%M:%S}'")
        if self.until:
            args.append(f"until => TIMESTAMP '{self.until:%Y-%m-%d %H:%M:%S}'")
        if self.filter is not None:
            args.append(f"where => {self.filter.sql(dialect=DIALECT)}")
        return f"{self.aggregate}({', '.join(args)})"


AS_OF_FUNCTIONS = ("as_of", "now", "days_since")


def reads_as_of(node: exp.Expr) -> bool:
    """Whether an expression's value depends on the run's as-of instant."""
    return any(
        isinstance(n, (exp.CurrentTimestamp, exp.CurrentDate))
        or (isinstance(n, exp.Anonymous) and n.name.lower() in AS_OF_FUNCTIONS)
        for n in node.walk()
    )


def _interval_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class CompiledSegment:
    """A segment ready to evaluate over people joined with the event features."""

    id: str
    manual: bool
    predicate: exp.Expr | None
    expr: pl.Expr | None
    features: tuple[str, ...]
    references: tuple[str, ...]

    @property
    def column(self) -> str:
        return SEGMENT_PREFIX + self.id

    def canonical(self) -> str:
        return self.predicate.sql(dialect=DIALECT, pretty=True) if self.predicate else ""


@dataclass
class CompiledDefinitions:
    """Every segment compiled for one run: dependency order, and the features they need."""

    as_of: datetime
    segments: dict[str, CompiledSegment]
    order: list[list[str]]
    """Segments in dependency levels: each level only references earlier ones."""
    features: dict[str, Feature]


@dataclass
class _Scope:
    """What names mean where a node is compiled."""

    columns: dict[str, str]
    as_of: datetime
    events: TableContract | None = None  # set in person scope: event functions allowed
    segments: frozenset[str] = frozenset()
    features: dict[str, Feature] = field(default_factory=dict)
    used_features: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    kind: str = "person attribute"


Handler = Callable[[exp.Expr, _Scope], Typed]


def _compile(node: exp.Expr, scope: _Scope) -> Typed:
    handler = _HANDLERS.get(type(node))
    if handler is None:
        message, hint = _refusal(node)
        raise CompileError(message, node, hint)
    return handler(node, scope)


def _refusal(node: exp.Expr) -> tuple[str, str]:
    if isinstance(node, (exp.Select, exp.Subquery, exp.Exists, exp.Query)):
        return "subqueries are not allowed in a segment predicate", (
            "use in_segment('id') to refer to another segment, or an event function"
        )
    if isinstance(node, exp.Window):
        return "window functions are not allowed in a segment predicate", (
            "use an event function such as event_count(name, within => '30 days')"
        )
    if isinstance(node, exp.AggFunc):
        return (
            f"SQL aggregate {node.sql(dialect=DIALECT)} is not allowed in a segment predicate",
            "aggregate events with event_count/event_sum/event_min/event_max/event_avg",
        )
    if isinstance(node, exp.Func):
        return (
            f"function {node.sql_name().lower()}() is not part of the segment language",
            "see docs/segment_language.md for the functions you can use",
        )
    return (
        f"{type(node).__name__} is not part of the segment language",
        "see docs/segment_language.md for what a predicate may contain",
    )


# --- names and literals -------------------------------------------------------------------


def _column(node: exp.Column, scope: _Scope) -> Typed:
    if node.table:
        raise CompileError(
            f"qualified name {node.sql()} is not allowed", node, f"write just {node.name}"
        )
    name = node.name
    if name not in scope.columns:
        close = difflib.get_close_matches(name, list(scope.columns), n=1)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else ("known: " + ", ".join(sorted(scope.columns)))
        )
        raise CompileError(f"unknown {scope.kind} '{name}'", node, hint)
    return Typed(pl.col(name), scope.columns[name])


def _literal(node: exp.Literal, scope: _Scope) -> Typed:
    if node.is_string:
        return _const(node.this, "string")
    text = node.this
    if re.fullmatch(r"\d+", text):
        if int(text) > 2**63 - 1:
            raise CompileError(f"{text} is too large for an integer", node, "use a DOUBLE: 1e20")
        return _const(int(text), "integer")
    return _const(float(text), "number")


def _boolean(node: exp.Boolean, scope: _Scope) -> Typed:
    return _const(bool(node.this), "boolean")


def _null(node: exp.Null, scope: _Scope) -> Typed:
    return Typed(pl.lit(None), "null", None, constant=True)


def _paren(node: exp.Paren, scope: _Scope) -> Typed:
    return _compile(node.this, scope)


ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
ISO_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?"
)


def _parse_time(text: str, type_: str, node: exp.Expr) -> date | datetime:
    pattern = ISO_DATE if type_ == "date" else ISO_TIMESTAMP
    if not pattern.fullmatch(text.strip()):
        raise CompileError(
            f"'{text}' is not a valid {type_}",
            node,
            "write dates as 'YYYY-MM-DD' and timestamps as 'YYYY-MM-DD HH:MM:SS' (UTC)",
        )
    try:
        if type_ == "date":
            return date.fromisoformat(text.strip())
        value = datetime.fromisoformat(text.strip().replace(" ", "T", 1).replace("Z", "+00:00"))
    except ValueError:
        raise CompileError(f"'{text}' is not a valid {type_}", node) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _interval_value(node: exp.Expr) -> timedelta:
    """An interval constant: INTERVAL '30 days', INTERVAL 30 DAY, or the text '30 days'."""
    if isinstance(node, exp.Literal) and node.is_string:
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]+?)s?\s*", node.this)
        if not match:
            raise CompileError(f"'{node.this}' is not an interval", node, "write e.g. '30 days'")
        count, unit = int(match.group(1)), match.group(2).upper()
    elif isinstance(node, exp.Interval):
        amount = node.this
        unit = (node.unit.name if node.unit else "").upper().removesuffix("S")
        if not isinstance(amount, exp.Literal) or not re.fullmatch(r"\d+", str(amount.this)):
            raise CompileError("an interval needs a whole number", node, "write INTERVAL 30 DAY")
        count = int(amount.this)
    else:
        raise CompileError("expected an interval", node, "write '30 days' or INTERVAL 30 DAY")
    if unit not in INTERVAL_UNITS:
        raise CompileError(
            f"interval unit {unit or '(none)'} is not supported",
            node,
            "use seconds, minutes, hours, days or weeks (e.g. INTERVAL 30 DAY for a month)",
        )
    return count * INTERVAL_UNITS[unit]


def _interval(node: exp.Interval, scope: _Scope) -> Typed:
    return _const(_interval_value(node), "interval")


def _as_of(node: exp.Expr, scope: _Scope) -> Typed:
    return _const(scope.as_of, "timestamp")


# --- types --------------------------------------------------------------------------------


def _as_timestamp(typed: Typed) -> Typed:
    if typed.type == "null":
        return Typed(_null_of("timestamp"), "timestamp")
    if typed.type != "date":
        return typed
    if typed.constant:
        return _const(datetime.combine(typed.value, time(), UTC), "timestamp")
    return Typed(typed.expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), "timestamp")


def _unify(left: Typed, right: Typed, node: exp.Expr, verb: str = "compare") -> tuple[Typed, Typed]:
    """Bring two operands to a common type the way SQL engines do, or refuse."""
    lt, rt = left.type, right.type
    if lt == rt or "null" in (lt, rt) or (lt in NUMERIC and rt in NUMERIC):
        return left, right
    if lt in TEMPORAL and rt in TEMPORAL:
        return _as_timestamp(left), _as_timestamp(right)
    for a, b, swap in ((left, right, False), (right, left, True)):
        if a.type == "string" and a.constant and b.type in TEMPORAL:
            parsed = _const(_parse_time(a.value, b.type, node), b.type)
            return (b, parsed) if swap else (parsed, b)
    raise CompileError(
        f"cannot {verb} {_shown(node.left if hasattr(node, 'left') else node)} ({lt})"
        f" with {_shown(node.right if hasattr(node, 'right') else node)} ({rt})",
        node,
        "CAST one side to the other's type",
    )


def _shown(node: Any) -> str:
    return node.sql(dialect=DIALECT) if isinstance(node, exp.Expr) else str(node)


def _boolean_operand(typed: Typed, node: exp.Expr) -> pl.Expr:
    if typed.type not in ("boolean", "null"):
        raise CompileError(
            f"{node.sql(dialect=DIALECT)} is {typed.type}, not a condition",
            node,
            "compare it with something (e.g. = 'value', > 0, IS NOT NULL)",
        )
    return typed.expr.cast(pl.Boolean)


# --- logic and comparison -----------------------------------------------------------------


def _and(node: exp.And, scope: _Scope) -> Typed:
    left, right = _compile(node.left, scope), _compile(node.right, scope)
    return Typed(_boolean_operand(left, node.left) & _boolean_operand(right, node.right), "boolean")


def _or(node: exp.Or, scope: _Scope) -> Typed:
    left, right = _compile(node.left, scope), _compile(node.right, scope)
    return Typed(_boolean_operand(left, node.left) | _boolean_operand(right, node.right), "boolean")


def _not(node: exp.Not, scope: _Scope) -> Typed:
    return Typed(~_boolean_operand(_compile(node.this, scope), node.this), "boolean")


_COMPARE: dict[type[exp.Expr], Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
}


def _compare(op: type[exp.Expr], left: Typed, right: Typed, node: exp.Expr) -> pl.Expr:
    left, right = _unify(left, right, node)
    if "null" in (left.type, right.type):
        return pl.lit(None, dtype=pl.Boolean)
    if left.type == "interval" or right.type == "interval":
        raise CompileError("intervals cannot be compared", node)
    return _COMPARE[op](left.expr, right.expr)


def _comparison(node: exp.Binary, scope: _Scope) -> Typed:
    left, right = _compile(node.left, scope), _compile(node.right, scope)
    return Typed(_compare(type(node), left, right, node), "boolean")


def _between(node: exp.Between, scope: _Scope) -> Typed:
    if node.args.get("symmetric"):
        raise CompileError(
            "BETWEEN SYMMETRIC is not supported",
            node,
            "write (x BETWEEN a AND b OR x BETWEEN b AND a)",
        )
    value = _compile(node.this, scope)
    low, high = _compile(node.args["low"], scope), _compile(node.args["high"], scope)
    return Typed(
        _compare(exp.GTE, value, low, node) & _compare(exp.LTE, value, high, node), "boolean"
    )


def _in(node: exp.In, scope: _Scope) -> Typed:
    nested = node.args.get("query") or node.args.get("unnest") or node.args.get("field")
    if nested:
        message, hint = _refusal(exp.Subquery())
        raise CompileError(message, nested, hint)
    if not node.expressions:
        raise CompileError("IN needs at least one value", node)
    value = _compile(node.this, scope)
    items = [_compile(item, scope) for item in node.expressions]
    has_null = any(i.type == "null" for i in items)
    typed = [i for i in items if i.type != "null"]
    if value.type == "null" or not typed:
        return Typed(_null_of("boolean"), "boolean")
    pairs = [_unify(value, item, node) for item in typed]
    kinds = {value.type, *(item.type for item in typed)}
    widen = kinds <= set(NUMERIC) and "number" in kinds
    stamp = any(p.type == "timestamp" for pair in pairs for p in pair)

    def fit(side: Typed) -> Typed:
        side = _as_timestamp(side) if stamp else side
        if widen and side.constant:
            return _const(float(side.value), "number")
        return Typed(side.expr.cast(pl.Float64), "number") if widen else side

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
    return Typed(result, "boolean")


def _is(node: exp.Is, scope: _Scope) -> Typed:
    if not isinstance(node.expression, exp.Null):
        raise CompileError("only IS NULL and IS NOT NULL are supported", node)
    return Typed(_compile(node.this, scope).expr.is_null(), "boolean")


def _like_regex(pattern: str) -> str:
    out = []
    for char in pattern:
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return "(?s)^" + "".join(out) + "$"


def _like(node: exp.Like | exp.ILike, scope: _Scope) -> Typed:
    value = _compile(node.this, scope)
    pattern = node.expression
    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        raise CompileError("LIKE needs a quoted pattern", pattern, "write e.g. LIKE '%@gmail.com'")
    if value.type not in ("string", "null"):
        raise CompileError(f"LIKE needs text, not {value.type}", node.this)
    if value.type == "null":
        return Typed(_null_of("boolean"), "boolean")
    regex = _like_regex(pattern.this)
    if isinstance(node, exp.ILike):
        regex = "(?i)" + regex
    matched = value.expr.str.contains(regex)
    return Typed(~matched if node.args.get("negate") else matched, "boolean")


# --- arithmetic and text ------------------------------------------------------------------


def _arithmetic(node: exp.Binary, scope: _Scope) -> Typed:
    left, right = _compile(node.left, scope), _compile(node.right, scope)
    lt, rt = left.type, right.type
    symbol = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}[type(node)]
    if "null" in (lt, rt):
        other = rt if lt == "null" else lt
        if other not in (*NUMERIC, *TEMPORAL, "interval", "null"):
            raise CompileError(
                f"cannot compute with {other} values",
                node,
                "arithmetic works on numbers, dates, timestamps and intervals",
            )
        result = "number" if symbol == "/" and other in NUMERIC else other
        if other in TEMPORAL and symbol in "+-":
            result = "timestamp"
        return Typed(_null_of(result), result)
    if lt in NUMERIC and rt in NUMERIC:
        if isinstance(node, exp.Div):
            divisor = right.expr.cast(pl.Float64)
            quotient = pl.when(divisor != 0).then(left.expr.cast(pl.Float64) / divisor)
            return Typed(quotient, "number")
        result = {
            "+": left.expr + right.expr,
            "-": left.expr - right.expr,
            "*": left.expr * right.expr,
        }[symbol]
        return Typed(result, "integer" if lt == rt == "integer" else "number")
    if symbol in "+-" and lt in TEMPORAL and rt == "interval":
        base = _as_timestamp(left).expr
        return Typed(base + right.expr if symbol == "+" else base - right.expr, "timestamp")
    if symbol == "+" and lt == "interval" and rt in TEMPORAL:
        return Typed(_as_timestamp(right).expr + left.expr, "timestamp")
    if symbol == "-" and lt == rt == "date":
        return Typed((left.expr - right.expr).dt.total_days(), "integer")
    if symbol == "-" and lt in TEMPORAL and rt in TEMPORAL:
        return Typed(_as_timestamp(left).expr - _as_timestamp(right).expr, "interval")
    raise CompileError(
        f"cannot compute {_shown(node.left)} ({lt}) {symbol} {_shown(node.right)} ({rt})",
        node,
        "arithmetic works on numbers, and on dates/timestamps plus or minus an INTERVAL",
    )


def _neg(node: exp.Neg, scope: _Scope) -> Typed:
    value = _compile(node.this, scope)
    if value.type not in (*NUMERIC, "null"):
        raise CompileError(f"cannot negate {value.type}", node)
    if value.type == "null":
        return value
    if value.constant and value.value is not None:
        return _const(-value.value, value.type)
    return Typed(-value.expr, value.type)


def _text(typed: Typed) -> pl.Expr:
    return typed.expr if typed.type == "string" else typed.expr.cast(pl.String)


def _concat(node: exp.DPipe, scope: _Scope) -> Typed:
    parts = [_compile(node.left, scope), _compile(node.right, scope)]
    for part, side in zip(parts, (node.left, node.right), strict=True):
        if part.type in ("timestamp", "number", "interval"):
            raise CompileError(
                f"|| of a {part.type} is not supported: engines format it differently",
                side,
                "concatenate text, integers, booleans or dates",
            )
    return Typed(pl.concat_str([_text(p) for p in parts], ignore_nulls=False), "string")


def _string_arg(node: exp.Expr, scope: _Scope, function: str) -> Typed:
    value = _compile(node, scope)
    if value.type not in ("string", "null"):
        raise CompileError(f"{function}() needs text, not {value.type}", node)
    return Typed(_null_of("string"), "string") if value.type == "null" else value


def _string_function(node: exp.Func, scope: _Scope) -> Typed:
    name = node.sql_name().lower()
    value = _string_arg(node.this, scope, name)
    if isinstance(node, exp.Length):
        return Typed(value.expr.str.len_chars().cast(pl.Int64), "integer")
    if isinstance(node, exp.Trim):
        if node.expression or node.args.get("position"):
            raise CompileError("trim() takes one argument", node)
        return Typed(value.expr.str.strip_chars(" "), "string")
    changed = (
        value.expr.str.to_lowercase()
        if isinstance(node, exp.Lower)
        else (value.expr.str.to_uppercase())
    )
    return Typed(changed, "string")


def _string_test(node: exp.Func, scope: _Scope) -> Typed:
    name = {exp.StartsWith: "starts_with", exp.EndsWith: "ends_with", exp.Contains: "contains"}[
        type(node)
    ]
    value = _string_arg(node.this, scope, name)
    needle = _string_arg(node.expression, scope, name)
    if isinstance(node, exp.StartsWith):
        result = value.expr.str.starts_with(needle.expr)
    elif isinstance(node, exp.EndsWith):
        result = value.expr.str.ends_with(needle.expr)
    else:
        result = value.expr.str.contains(needle.expr, literal=True)
    return Typed(result, "boolean")


def _numeric_arg(node: exp.Expr, scope: _Scope, function: str) -> Typed:
    value = _compile(node, scope)
    if value.type not in (*NUMERIC, "null"):
        raise CompileError(f"{function}() needs a number, not {value.type}", node)
    return Typed(_null_of("number"), "number") if value.type == "null" else value


def _abs(node: exp.Abs, scope: _Scope) -> Typed:
    value = _numeric_arg(node.this, scope, "abs")
    return Typed(value.expr.abs(), value.type)


def _round(node: exp.Round, scope: _Scope) -> Typed:
    value = _numeric_arg(node.this, scope, "round")
    digits = node.args.get("decimals")
    places = 0
    if digits is not None:
        if not (isinstance(digits, exp.Literal) and re.fullmatch(r"\d+", str(digits.this))):
            raise CompileError("round() takes a whole number of decimals", digits)
        places = int(digits.this)
        if places > 15:
            raise CompileError("round() keeps at most 15 decimals", digits)
    if value.type == "integer":
        return value
    return Typed(value.expr.round(places, mode="half_away_from_zero"), "number")


def _coalesce(node: exp.Coalesce, scope: _Scope) -> Typed:
    values = [_compile(node.this, scope)] + [_compile(e, scope) for e in node.expressions]
    return _common(values, node, lambda exprs: pl.coalesce(exprs))


def _common(
    values: list[Typed], node: exp.Expr, build: Callable[[list[pl.Expr]], pl.Expr]
) -> Typed:
    """Values of one result type (numbers widen, dates become timestamps next to timestamps)."""
    types = {v.type for v in values} - {"null"}
    if not types:
        return Typed(pl.lit(None), "null")
    if types <= set(NUMERIC):
        target = "number" if "number" in types else "integer"
        exprs = [v.expr.cast(POLARS_TYPES[target]) for v in values]
        return Typed(build(exprs), target)
    if types <= set(TEMPORAL) and len(types) == 2:
        values = [_as_timestamp(v) for v in values]
        types = {"timestamp"}
    if len(types) != 1:
        raise CompileError(
            f"values of different types ({', '.join(sorted(types))}) cannot be combined",
            node,
            "CAST them to one type",
        )
    (target,) = types
    dtype = POLARS_TYPES.get(target, pl.Duration("us"))
    return Typed(build([v.expr.cast(dtype) for v in values]), target)


def _case(node: exp.Case, scope: _Scope) -> Typed:
    subject = _compile(node.this, scope) if node.this else None
    conditions, values = [], []
    for branch in node.args.get("ifs") or []:
        test = _compile(branch.this, scope)
        if subject is not None:
            conditions.append(_compare(exp.EQ, subject, test, branch))
        else:
            conditions.append(_boolean_operand(test, branch.this))
        values.append(_compile(branch.args["true"], scope))
    default = node.args.get("default")
    values.append(_compile(default, scope) if default is not None else Typed(pl.lit(None), "null"))

    def build(exprs: list[pl.Expr]) -> pl.Expr:
        chain = pl.when(conditions[0]).then(exprs[0])
        for condition, value in zip(conditions[1:], exprs[1:-1], strict=True):
            chain = chain.when(condition).then(value)
        return chain.otherwise(exprs[-1])

    return _common(values, node, build)


def _cast(node: exp.Cast, scope: _Scope) -> Typed:
    target = CAST_TYPES.get(node.to.this)
    if target is None:
        raise CompileError(
            f"CAST to {node.to.sql(dialect=DIALECT)} is not supported",
            node.to,
            "cast to VARCHAR, BIGINT, INTEGER, DOUBLE, BOOLEAN, DATE or TIMESTAMP",
        )
    value = _compile(node.this, scope)
    node.meta["cast"] = (value.type, target)  # for the SQL back end
    if value.constant and value.type == "string" and target in TEMPORAL:
        # DATE '...', TIMESTAMP '...' (and CAST of a constant): a typo is refused, not NULL
        return _const(_parse_time(value.value, target, node), target)
    if target == "string" and value.type in ("timestamp", "number"):
        raise CompileError(
            f"CAST of a {value.type} to text is not supported: engines format it differently",
            node,
            "compare the value itself (or date_trunc / round it) instead of its text",
        )
    expr = _cast_expr(value, target)
    if node.to.this == exp.DataType.Type.INT:
        expr = pl.when(expr.is_between(*INT32)).then(expr)
    return Typed(expr, target)


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
                pl.when(lowered.is_in(["true", "t", "1", "yes", "y"]))
                .then(True)
                .when(lowered.is_in(["false", "f", "0", "no", "n"]))
                .then(False)
                .otherwise(None)
            )
        if target == "date":  # chrono alone would take 2026-3-1
            iso = text.str.contains(r"^\d{4}-\d{2}-\d{2}$")
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


def _date_trunc(node: exp.TimestampTrunc | exp.DateTrunc, scope: _Scope) -> Typed:
    unit = node.unit.name.upper() if node.unit else ""
    if unit not in TRUNC_UNITS:
        raise CompileError(
            f"date_trunc unit '{unit.lower()}' is not supported",
            node,
            "use " + ", ".join(u.lower() for u in TRUNC_UNITS),
        )
    value = _compile(node.this, scope)
    if value.type not in (*TEMPORAL, "null"):
        raise CompileError(f"date_trunc() needs a date or timestamp, not {value.type}", node.this)
    return Typed(_as_timestamp(value).expr.dt.truncate(TRUNC_UNITS[unit]), "timestamp")


def _date_diff(node: exp.DateDiff, scope: _Scope) -> Typed:
    unit = node.unit.name.upper() if node.unit else "DAY"
    start, end = _compile(node.expression, scope), _compile(node.this, scope)
    for part, arg in ((start, node.expression), (end, node.this)):
        if part.type not in (*TEMPORAL, "null"):
            raise CompileError(f"date_diff() needs dates or timestamps, not {part.type}", arg)
    a, b = _as_timestamp(start).expr, _as_timestamp(end).expr
    if unit == "YEAR":
        return Typed((b.dt.year() - a.dt.year()).cast(pl.Int64), "integer")
    if unit == "MONTH":
        months = (b.dt.year() * 12 + b.dt.month()) - (a.dt.year() * 12 + a.dt.month())
        return Typed(months.cast(pl.Int64), "integer")
    step = {"DAY": "1d", "HOUR": "1h", "MINUTE": "1m", "SECOND": "1s"}.get(unit)
    if step is None:
        raise CompileError(
            f"date_diff unit '{unit.lower()}' is not supported",
            node,
            "use year, month, day, hour, minute or second",
        )
    elapsed = b.dt.truncate(step) - a.dt.truncate(step)
    size = {"DAY": 86400, "HOUR": 3600, "MINUTE": 60, "SECOND": 1}[unit]
    return Typed((elapsed.dt.total_seconds() // size).cast(pl.Int64), "integer")


# --- the language's own functions ---------------------------------------------------------


def _days_since(node: exp.Anonymous, scope: _Scope) -> Typed:
    (arg,) = _arguments(node, 1, 1)
    value = _compile(arg, scope)
    if value.type not in (*TEMPORAL, "null"):
        raise CompileError(f"days_since() needs a date or timestamp, not {value.type}", arg)
    elapsed = pl.lit(scope.as_of, dtype=TIMESTAMP) - _as_timestamp(value).expr
    return Typed((elapsed.dt.total_microseconds() // 86_400_000_000).cast(pl.Int64), "integer")


def _in_segment(node: exp.Anonymous, scope: _Scope) -> Typed:
    (arg,) = _arguments(node, 1, 1)
    if not (isinstance(arg, exp.Literal) and arg.is_string):
        raise CompileError("in_segment() takes a quoted segment id", arg, "write in_segment('vip')")
    if scope.events is None:
        raise CompileError("in_segment() cannot be used inside an event filter", node)
    segment = arg.this
    if segment not in scope.segments:
        close = difflib.get_close_matches(segment, list(scope.segments), n=1)
        raise CompileError(
            f"unknown segment '{segment}'",
            arg,
            f"did you mean '{close[0]}'?" if close else "segment ids are definition file names",
        )
    scope.references.append(segment)
    node.meta["segment"] = segment
    return Typed(pl.col(SEGMENT_PREFIX + segment), "boolean")


AGGREGATES = {
    "event_count": ("count", False),
    "performed": ("count", False),
    "first_event_at": ("first", False),
    "last_event_at": ("last", False),
    "event_sum": ("sum", True),
    "event_min": ("min", True),
    "event_max": ("max", True),
    "event_avg": ("avg", True),
}
KEYWORDS = ("within", "since", "until", "where")


def _arguments(node: exp.Anonymous, low: int, high: int) -> list[exp.Expr]:
    args = [a for a in node.expressions if not isinstance(a, exp.Kwarg)]
    if any(isinstance(a, exp.Kwarg) for a in node.expressions) and node.name.lower() not in (
        AGGREGATES
    ):
        raise CompileError(f"{node.name}() takes no named arguments", node)
    if not low <= len(args) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise CompileError(f"{node.name}() takes {expected} argument(s), got {len(args)}", node)
    return args


TIME_TESTS = {">": operator.gt, ">=": operator.ge, "<": operator.lt}


def _name_test(name: str) -> tuple[str, pl.Expr]:
    return f"name = {name!r}", pl.col("name") == name


def _time_test(op: str, bound: datetime) -> tuple[str, pl.Expr]:
    """An event test on the timestamp, with its canonical text."""
    compare = TIME_TESTS[op](pl.col("timestamp"), pl.lit(bound, dtype=TIMESTAMP))
    return f"timestamp {op} {bound.isoformat()}", compare


def _event_function(node: exp.Anonymous, scope: _Scope) -> Typed:
    function = node.name.lower()
    if scope.events is None:
        raise CompileError(
            f"{function}() cannot be used inside an event filter",
            node,
            "event filters (where => ...) see one event's columns only",
        )
    aggregate, needs_column = AGGREGATES[function]
    positional = _arguments(node, 2 if needs_column else 1, 2 if needs_column else 1)
    name_node = positional[0]
    if not (isinstance(name_node, exp.Literal) and name_node.is_string):
        raise CompileError(
            f"{function}() needs the event name in quotes first",
            name_node,
            f"write {function}('purchase', ...) or '*' for any event",
        )
    event_columns = {c.name: c.logical_type for c in scope.events.columns}
    event_scope = _Scope(columns=event_columns, as_of=scope.as_of, kind="event column")
    column, column_type, result = (
        None,
        None,
        {"count": "integer", "first": "timestamp", "last": "timestamp"}.get(aggregate),
    )
    if needs_column:
        column_node = positional[1]
        if not isinstance(column_node, exp.Column):
            raise CompileError(f"{function}() takes an event column second", column_node)
        typed = _column(column_node, event_scope)
        if typed.type not in NUMERIC:
            raise CompileError(
                f"{function}() needs a numeric event column; {column_node.name} is {typed.type}",
                column_node,
            )
        column, column_type = column_node.name, typed.type
        result = "number" if aggregate == "avg" or typed.type == "number" else "integer"
    options: dict[str, exp.Expr] = {}
    for kwarg in (a for a in node.expressions if isinstance(a, exp.Kwarg)):
        key = kwarg.this.name.lower()
        if key not in KEYWORDS:
            raise CompileError(
                f"unknown option '{key}' of {function}()",
                kwarg,
                "options are " + ", ".join(f"{k} =>" for k in KEYWORDS),
            )
        if key in options:
            raise CompileError(f"option '{key}' given twice", kwarg)
        options[key] = kwarg.expression
    within = _interval_value(options["within"]) if "within" in options else None
    if within is not None and within <= timedelta(0):
        raise CompileError("within => needs a positive interval", options["within"])
    bounds = {}
    for key in ("since", "until"):
        if key in options:
            bound = _compile(options[key], event_scope)
            if not bound.constant or bound.type not in (*TEMPORAL, "string"):
                raise CompileError(
                    f"{key} => needs a DATE or TIMESTAMP literal",
                    options[key],
                    f"write {key} => DATE '2026-01-01'",
                )
            value = (
                bound.value
                if bound.type != "string"
                else _parse_time(bound.value, "timestamp", options[key])
            )
            bounds[key] = _as_timestamp(
                _const(value, "date" if type(value) is date else "timestamp")
            ).value
    filter_node = options.get("where")
    tests = [] if name_node.this == "*" else [_name_test(name_node.this)]
    window = _time_test(">", scope.as_of - within) if within is not None else None
    if window is not None:
        tests.append(window)
    if "since" in bounds:
        tests.append(_time_test(">=", bounds["since"]))
    if "until" in bounds:
        tests.append(_time_test("<", bounds["until"]))
    if filter_node is not None:
        test = _compile(filter_node, event_scope)
        tests.append(
            (filter_node.sql(dialect=DIALECT), _boolean_operand(test, filter_node).fill_null(False))
        )
    key = "|".join(
        str(part)
        for part in (
            aggregate,
            name_node.this,
            column,
            within,
            bounds.get("since"),
            bounds.get("until"),
            filter_node.sql(dialect=DIALECT) if filter_node is not None else None,
        )
    )
    name = FEATURE_PREFIX + hashlib.sha1(key.encode()).hexdigest()[:10]
    if name not in scope.features:
        scope.features[name] = Feature(
            name=name,
            aggregate=aggregate,
            event=name_node.this,
            column=column,
            within=within,
            since=bounds.get("since"),
            until=bounds.get("until"),
            filter=filter_node,
            type=result,
            tests=tuple(tests),
            window_test=window[0] if window is not None else None,
            column_type=column_type,
        )
    scope.used_features.append(name)
    node.meta["feature"] = name  # for the SQL back end (transforms.language.sql)
    feature = pl.col(name)
    if function == "performed":
        return Typed(feature >= 1, "boolean")
    return Typed(feature, result)


_FUNCTIONS: dict[str, Handler] = {
    "as_of": lambda node, scope: (_arguments(node, 0, 0), _as_of(node, scope))[1],
    "now": lambda node, scope: (_arguments(node, 0, 0), _as_of(node, scope))[1],
    "days_since": _days_since,
    "in_segment": _in_segment,
    **dict.fromkeys(AGGREGATES, _event_function),
}


def _function(node: exp.Anonymous, scope: _Scope) -> Typed:
    handler = _FUNCTIONS.get(node.name.lower())
    if handler is None:
        close = difflib.get_close_matches(node.name.lower(), list(_FUNCTIONS), n=1)
        raise CompileError(
            f"function {node.name}() is not part of the segment language",
            node,
            f"did you mean {close[0]}()?" if close else "see docs/segment_language.md",
        )
    return handler(node, scope)


_HANDLERS: dict[type[exp.Expr], Handler] = {
    exp.Column: _column,
    exp.Literal: _literal,
    exp.Boolean: _boolean,
    exp.Null: _null,
    exp.Paren: _paren,
    exp.Interval: _interval,
    exp.And: _and,
    exp.Or: _or,
    exp.Not: _not,
    **dict.fromkeys((exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE), _comparison),
    exp.Between: _between,
    exp.In: _in,
    exp.Is: _is,
    exp.Like: _like,
    exp.ILike: _like,
    **dict.fromkeys((exp.Add, exp.Sub, exp.Mul, exp.Div), _arithmetic),
    exp.Neg: _neg,
    exp.DPipe: _concat,
    exp.Case: _case,
    exp.Coalesce: _coalesce,
    exp.Cast: _cast,
    exp.TryCast: _cast,
    **dict.fromkeys((exp.Lower, exp.Upper, exp.Trim, exp.Length), _string_function),
    **dict.fromkeys((exp.StartsWith, exp.EndsWith, exp.Contains), _string_test),
    exp.Abs: _abs,
    exp.Round: _round,
    exp.TimestampTrunc: _date_trunc,
    exp.DateTrunc: _date_trunc,
    exp.DateDiff: _date_diff,
    exp.CurrentTimestamp: _as_of,
    exp.CurrentDate: _as_of,
    exp.Anonymous: _function,
}


# --- whole definitions --------------------------------------------------------------------


def _offset(node: exp.Expr | None) -> int | None:
    if node is None:
        return None
    starts = [n.meta["start"] for n in node.walk() if "start" in n.meta]
    return min(starts) if starts else None


def _error(
    segment: Segment, message: str, offset: int | None, text: str | None, hint: str | None
) -> DefinitionError:
    line, column = segment.position(offset) if offset is not None else (segment.where_line, None)
    return DefinitionError(
        message, file=segment.file, line=line, column=column, text=text, hint=hint
    )


def parse_predicate(segment: Segment) -> exp.Expr:
    """The `where` text as one sqlglot expression, or a DefinitionError saying where it breaks."""
    text = segment.spec.where or ""
    try:
        statements = [s for s in sqlglot.parse(text, dialect=DIALECT) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        offset = None
        if first.get("line"):
            lines = text.split("\n")
            offset = sum(len(x) + 1 for x in lines[: first["line"] - 1]) + max(first["col"] - 1, 0)
        raise _error(
            segment,
            f"cannot parse the predicate: {first.get('description', exc)}",
            offset,
            first.get("highlight"),
            "check quotes and parentheses",
        ) from None
    except TokenError as exc:
        raise _error(
            segment,
            f"cannot read the predicate: {exc}",
            None,
            None,
            "check that every quote is closed",
        ) from None
    if len(statements) != 1:
        raise _error(
            segment,
            "a predicate is one expression, not several statements",
            None,
            None,
            "remove the ';' and everything after it",
        )
    return statements[0]


def _compile_segment(
    segment: Segment,
    people: TableContract,
    events: TableContract,
    as_of: datetime,
    segment_ids: frozenset[str],
    features: dict[str, Feature],
) -> CompiledSegment:
    if segment.is_manual:
        return CompiledSegment(segment.id, True, None, None, (), ())
    tree = parse_predicate(segment)
    scope = _Scope(
        columns={c.name: c.logical_type for c in people.columns},
        as_of=as_of,
        events=events,
        segments=segment_ids,
        features=features,
    )
    try:
        try:
            typed = _compile(tree, scope)
            expr = _boolean_operand(typed, tree)
        except (OverflowError, ValueError, TypeError) as exc:
            raise CompileError(
                f"cannot compile this predicate: {exc}",
                tree,
                "a value is out of range or of the wrong type",
            ) from exc
    except CompileError as exc:
        raise _error(
            segment,
            exc.message,
            _offset(exc.node),
            exc.node.sql(dialect=DIALECT) if exc.node is not None else None,
            exc.hint,
        ) from None
    return CompiledSegment(
        segment.id,
        False,
        tree,
        expr,
        tuple(dict.fromkeys(scope.used_features)),
        tuple(dict.fromkeys(scope.references)),
    )


def _levels(
    compiled: dict[str, CompiledSegment], segments: dict[str, Segment]
) -> tuple[list[list[str]], list[DefinitionError]]:
    """Dependency levels, and an error per cycle naming every segment on it."""
    # references to segments that failed to compile are already reported problems
    remaining = {sid: set(c.references) & set(compiled) for sid, c in compiled.items()}
    levels: list[list[str]] = []
    done: set[str] = set()
    while remaining:
        ready = sorted(sid for sid, refs in remaining.items() if refs <= done)
        if not ready:
            break
        levels.append(ready)
        done.update(ready)
        for sid in ready:
            del remaining[sid]
    problems = []
    reported: set[str] = set()
    for start in sorted(remaining):
        if start in reported:
            continue
        path, node = [start], start
        while True:
            node = sorted(r for r in remaining[node] if r in remaining)[0]
            if node in path:
                cycle = path[path.index(node) :] + [node]
                break
            path.append(node)
        if set(cycle) <= reported:
            continue
        reported.update(cycle)
        first = segments[cycle[0]]
        problems.append(
            DefinitionError(
                "cycle: " + " -> ".join(cycle),
                file=first.file,
                line=first.where_line,
                hint="a segment cannot depend on itself through in_segment(); break the cycle",
            )
        )
    return levels, problems


def compile_segments(
    segments: dict[str, Segment], people: TableContract, events: TableContract, as_of: datetime
) -> tuple[CompiledDefinitions, list[DefinitionError]]:
    """Compile every segment for the run whose as-of instant is `as_of`; collect all problems."""
    features: dict[str, Feature] = {}
    compiled: dict[str, CompiledSegment] = {}
    problems: list[DefinitionError] = []
    ids = frozenset(segments)
    for sid in sorted(segments):
        try:
            compiled[sid] = _compile_segment(segments[sid], people, events, as_of, ids, features)
        except DefinitionError as exc:
            problems.append(exc)
    levels, cycles = _levels(compiled, segments)
    problems.extend(cycles)
    used = {f for c in compiled.values() for f in c.features}
    return CompiledDefinitions(
        as_of, compiled, levels, {n: f for n, f in features.items() if n in used}
    ), (problems)


def condition_expression(
    node: exp.Expr, compiled: CompiledDefinitions, people: TableContract, events: TableContract
) -> pl.Expr:
    """A condition inside a compiled predicate (any boolean subtree) as a Polars expression
    over the columns `transforms.engines.membership.segment_columns` builds: what `segments why`
    evaluates node by node. Event functions resolve to the compiled definitions' features by
    name."""
    scope = _Scope(
        columns={c.name: c.logical_type for c in people.columns},
        as_of=compiled.as_of,
        events=events,
        segments=frozenset(compiled.segments),
        features=dict(compiled.features),
    )
    return _boolean_operand(_compile(node, scope), node)


def as_of_instant(day: date) -> datetime:
    """The as-of instant of run date D: the end of D, 00:00 UTC of D+1."""
    return datetime.combine(day + timedelta(days=1), time(), UTC)
