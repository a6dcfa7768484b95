"""The check pass: every node of a predicate checked against the language and annotated with
its type.

One table, `ALLOWED`, maps every sqlglot node class the language allows to the function that
checks it; a node whose class is not in the table is refused with its position. The table is
the language's allowlist and its security boundary: no statement, subquery, window, engine
function or file path can get through, because nothing checks it, and back ends only ever see
checked trees.

Checking a predicate types it against the data contracts (person attributes in the predicate,
event columns inside event functions), resolves every event-function call to one
`EventAggregate` (shared by every segment making the same call) and every `in_segment` call to
the segment it reads, and records all of it on the nodes (`transforms.language.types`). NULL
semantics are SQL's: comparisons with NULL are NULL, AND/OR/NOT are three-valued, and a person
is a member only when the predicate is TRUE.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from sqlglot import exp

from transforms.contracts.odcs import TableContract
from transforms.language.semantics import (
    AGGREGATES,
    BUCKETS,
    CAST_TYPES,
    DIALECT,
    DIFF_UNIT_SECONDS,
    FEATURE_PREFIX,
    INTERVAL_UNITS,
    KEYWORDS,
    NUMERIC,
    REGULARLY_KEYWORDS,
    REGULARLY_PERIODS,
    SEQUENCE_KEYWORDS,
    SEQUENCE_STEPS,
    TEMPORAL,
    TRUNC_UNITS,
    EventAggregate,
    interval_text,
)
from transforms.language.types import (
    ANNOTATION,
    FEATURE,
    PERIODS,
    SEGMENT,
    TENURE,
    Annotation,
    CheckError,
    as_condition,
    as_timestamp,
    common_type,
    constant,
    parse_time,
    several,
    shown,
    unify,
)


@dataclass
class Scope:
    """What names mean where a node is checked."""

    columns: dict[str, str]
    as_of: datetime
    events: TableContract | None = None  # set in person scope: event functions allowed
    segments: frozenset[str] = frozenset()
    features: dict[str, EventAggregate] = field(default_factory=dict)
    used_features: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    kind: str = "person attribute"
    objects: dict[str, dict[str, str]] = field(default_factory=dict)
    """Object columns (event properties): column -> field -> type, addressed `column.field`."""


Checker = Callable[[exp.Expr, Scope], Annotation]

# node classes the language treats alike (the back ends use the same groups)
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div)
LIKES = (exp.Like, exp.ILike)
CASTS = (exp.Cast, exp.TryCast)
TEXT_FUNCTIONS = (exp.Lower, exp.Upper, exp.Trim, exp.Length)
TEXT_TESTS = {exp.StartsWith: "starts_with", exp.EndsWith: "ends_with", exp.Contains: "contains"}
TRUNCATIONS = (exp.TimestampTrunc, exp.DateTrunc)


def check(node: exp.Expr, scope: Scope) -> Annotation:
    """Check a node and everything under it; record and return what it is."""
    checker = ALLOWED.get(type(node))
    if checker is None:
        message, hint = _refusal(node)
        raise CheckError(message, node, hint)
    result = checker(node, scope)
    node.meta[ANNOTATION] = result
    return result


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
            f"SQL aggregate {shown(node)} is not allowed in a segment predicate",
            "aggregate events with event_count/event_count_distinct/event_sum/event_min/"
            "event_max/event_avg",
        )
    if isinstance(node, exp.Func):
        written = shown(node)
        call = re.match(r"(\w+)\s*\(", written)
        if call is None:
            return f"{written} is not part of the segment language", (
                "see docs/segment_language.md for what a predicate may contain"
            )
        return f"function {call.group(1)}() is not part of the segment language", (
            _function_hint(call.group(1)) + "see docs/segment_language.md for the functions"
            " you can use"
        )
    return (
        f"{type(node).__name__} is not part of the segment language",
        "see docs/segment_language.md for what a predicate may contain",
    )


def _condition(node: exp.Expr, scope: Scope) -> Annotation:
    typed = check(node, scope)
    as_condition(typed, node)
    return typed


# --- names and literals -------------------------------------------------------------------


def _event_objects(events: TableContract) -> dict[str, dict[str, str]]:
    return {
        name: {f.name: f.logical_type for f in column.fields}
        for name, column in events.objects.items()
    }


def event_scope(scope: Scope) -> Scope:
    """Where an event function's column and `where =>` are checked: one event's columns, and
    the fields of its object columns."""
    assert scope.events is not None
    return Scope(
        columns={
            c.name: c.logical_type for c in scope.events.columns if c.logical_type != "object"
        },
        as_of=scope.as_of,
        kind="event column",
        objects=_event_objects(scope.events),
    )


def column_path(node: exp.Column) -> str:
    """The name a checked column reads: `plan`, or `properties.plan` for a field of an object
    column."""
    return f"{node.table}.{node.name}" if node.table else node.name


def _field(node: exp.Column, scope: Scope) -> Annotation:
    """`properties.plan`: a declared field of an object column of the events."""
    table, name = node.table, node.name
    if node.args.get("db") or node.args.get("catalog"):
        raise CheckError(
            f"{shown(node)} is not a field: objects nest one level deep",
            node,
            "write <column>.<field>, e.g. properties.plan",
        )
    fields = scope.objects.get(table)
    if fields is None:
        events = _event_objects(scope.events) if scope.events is not None else {}
        if table in events:
            raise CheckError(
                f"{shown(node)} is an event property: it is read inside an event function",
                node,
                f"write e.g. event_count('purchase', where => {table}.{name} = ...) >= 1",
            )
        if scope.objects:
            close = difflib.get_close_matches(table, list(scope.objects), n=1)
            hint = (
                f"did you mean '{close[0]}.{name}'?"
                if close
                else (
                    "fields of "
                    + ", ".join(sorted(scope.objects))
                    + " are written <column>.<field>"
                )
            )
            raise CheckError(f"unknown object column '{table}'", node, hint)
        raise CheckError(
            f"qualified name {shown(node)} is not allowed", node, f"write just {node.name}"
        )
    if name not in fields:
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = (
            f"did you mean '{table}.{close[0]}'?"
            if close
            else ("declared: " + ", ".join(f"{table}.{f}" for f in sorted(fields)))
        )
        raise CheckError(
            f"unknown field '{table}.{name}' of the event properties",
            node,
            hint + f" (fields are declared in the events contract under {table})",
        )
    return Annotation(fields[name])


def _column(node: exp.Column, scope: Scope) -> Annotation:
    if node.table:
        return _field(node, scope)
    name = node.name
    if name in scope.objects:
        example = next(iter(scope.objects[name]), "field")
        raise CheckError(
            f"{name} is an object: a predicate reads one of its fields",
            node,
            f"write {name}.{example}; declared: "
            + ", ".join(f"{name}.{f}" for f in scope.objects[name]),
        )
    if name not in scope.columns:
        close = difflib.get_close_matches(name, list(scope.columns), n=1)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else ("known: " + ", ".join(sorted(scope.columns)))
        )
        raise CheckError(f"unknown {scope.kind} '{name}'", node, hint)
    return Annotation(scope.columns[name])


def _literal(node: exp.Literal, scope: Scope) -> Annotation:
    if node.is_string:
        return constant(node.this, "string")
    text = node.this
    if re.fullmatch(r"\d+", text):
        if int(text) > 2**63 - 1:
            raise CheckError(f"{text} is too large for an integer", node, "use a DOUBLE: 1e20")
        return constant(int(text), "integer")
    return constant(float(text), "number")


def _boolean(node: exp.Boolean, scope: Scope) -> Annotation:
    return constant(bool(node.this), "boolean")


def _null(node: exp.Null, scope: Scope) -> Annotation:
    return constant(None, "null")


def _paren(node: exp.Paren, scope: Scope) -> Annotation:
    return check(node.this, scope)


def interval_value(node: exp.Expr) -> timedelta:
    """An interval constant: INTERVAL '30 days', INTERVAL 30 DAY, or the text '30 days'."""
    if isinstance(node, exp.Literal) and node.is_string:
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]+?)s?\s*", node.this)
        if not match:
            raise CheckError(f"'{node.this}' is not an interval", node, "write e.g. '30 days'")
        count, unit = int(match.group(1)), match.group(2).upper()
    elif isinstance(node, exp.Interval):
        amount = node.this
        unit = (node.unit.name if node.unit else "").upper().removesuffix("S")
        if not isinstance(amount, exp.Literal) or not re.fullmatch(r"\d+", str(amount.this)):
            raise CheckError("an interval needs a whole number", node, "write INTERVAL 30 DAY")
        count = int(amount.this)
    else:
        raise CheckError("expected an interval", node, "write '30 days' or INTERVAL 30 DAY")
    if unit not in INTERVAL_UNITS:
        raise CheckError(
            f"interval unit {unit or '(none)'} is not supported",
            node,
            "use seconds, minutes, hours, days or weeks (e.g. INTERVAL 30 DAY for a month)",
        )
    return count * INTERVAL_UNITS[unit]


def _interval(node: exp.Interval, scope: Scope) -> Annotation:
    return constant(interval_value(node), "interval")


def _as_of(node: exp.Expr, scope: Scope) -> Annotation:
    return constant(scope.as_of, "timestamp")


# --- logic and comparison -----------------------------------------------------------------


def _connective(node: exp.And | exp.Or, scope: Scope) -> Annotation:
    """Each side is checked on its own: a problem in one does not hide those of the other."""
    problems = []
    for side in (node.left, node.right):
        try:
            _condition(side, scope)
        except CheckError as exc:
            problems.append(exc)
    if problems:
        raise several(problems)
    return Annotation("boolean")


def _not(node: exp.Not, scope: Scope) -> Annotation:
    _condition(node.this, scope)
    return Annotation("boolean")


def _compare(
    left: Annotation,
    right: Annotation,
    node: exp.Expr,
    operands: tuple[exp.Expr, exp.Expr] | None = None,
) -> None:
    left, right = unify(left, right, node, operands=operands)
    if "null" not in (left.type, right.type) and "interval" in (left.type, right.type):
        raise CheckError("intervals cannot be compared", node)


def _comparison(node: exp.Binary, scope: Scope) -> Annotation:
    _compare(check(node.left, scope), check(node.right, scope), node)
    return Annotation("boolean")


def _between(node: exp.Between, scope: Scope) -> Annotation:
    if node.args.get("symmetric"):
        raise CheckError(
            "BETWEEN SYMMETRIC is not supported",
            node,
            "write (x BETWEEN a AND b OR x BETWEEN b AND a)",
        )
    value = check(node.this, scope)
    low, high = check(node.args["low"], scope), check(node.args["high"], scope)
    _compare(value, low, node, (node.this, node.args["low"]))
    _compare(value, high, node, (node.this, node.args["high"]))
    return Annotation("boolean")


def _in(node: exp.In, scope: Scope) -> Annotation:
    nested = node.args.get("query") or node.args.get("unnest") or node.args.get("field")
    if nested:
        message, hint = _refusal(exp.Subquery())
        raise CheckError(message, nested, hint)
    if not node.expressions:
        raise CheckError("IN needs at least one value", node)
    value = check(node.this, scope)
    items = [(item, check(item, scope)) for item in node.expressions]
    if value.type != "null":
        for item, typed in items:
            unify(value, typed, node, operands=(node.this, item))
    return Annotation("boolean")


def _is(node: exp.Is, scope: Scope) -> Annotation:
    if not isinstance(node.expression, exp.Null):
        raise CheckError("only IS NULL and IS NOT NULL are supported", node)
    check(node.this, scope)
    return Annotation("boolean")


def _like(node: exp.Like | exp.ILike, scope: Scope) -> Annotation:
    value = check(node.this, scope)
    pattern = node.expression
    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        raise CheckError("LIKE needs a quoted pattern", pattern, "write e.g. LIKE '%@gmail.com'")
    if value.type not in ("string", "null"):
        raise CheckError(f"LIKE needs text, not {value.type}", node.this)
    return Annotation("boolean")


# --- arithmetic and text ------------------------------------------------------------------

SYMBOLS = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}


def _arithmetic(node: exp.Binary, scope: Scope) -> Annotation:
    left, right = check(node.left, scope), check(node.right, scope)
    lt, rt = left.type, right.type
    symbol = SYMBOLS[type(node)]
    if "null" in (lt, rt):
        other = rt if lt == "null" else lt
        if other not in (*NUMERIC, *TEMPORAL, "interval", "null"):
            raise CheckError(
                f"cannot compute with {other} values",
                node,
                "arithmetic works on numbers, dates, timestamps and intervals",
            )
        result = "number" if symbol == "/" and other in NUMERIC else other
        if other in TEMPORAL and symbol in "+-":
            result = "timestamp"
        return Annotation(result)
    if lt in NUMERIC and rt in NUMERIC:
        if symbol == "/":
            return Annotation("number")
        return Annotation("integer" if lt == rt == "integer" else "number")
    if symbol in "+-" and lt in TEMPORAL and rt == "interval":
        return Annotation("timestamp")
    if symbol == "+" and lt == "interval" and rt in TEMPORAL:
        return Annotation("timestamp")
    if symbol == "-" and lt == rt == "date":
        return Annotation("integer")
    if symbol == "-" and lt in TEMPORAL and rt in TEMPORAL:
        return Annotation("interval")
    raise CheckError(
        f"cannot compute {shown(node.left)} ({lt}) {symbol} {shown(node.right)} ({rt})",
        node,
        "arithmetic works on numbers, and on dates/timestamps plus or minus an INTERVAL",
    )


def _neg(node: exp.Neg, scope: Scope) -> Annotation:
    value = check(node.this, scope)
    if value.type not in (*NUMERIC, "null"):
        raise CheckError(f"cannot negate {value.type}", node)
    if value.type == "null":
        return value
    if value.constant and value.value is not None:
        return constant(-value.value, value.type)
    return Annotation(value.type)


def _concat(node: exp.DPipe, scope: Scope) -> Annotation:
    parts = [check(node.left, scope), check(node.right, scope)]
    for part, side in zip(parts, (node.left, node.right), strict=True):
        if part.type in ("timestamp", "number", "interval"):
            raise CheckError(
                f"|| of a {part.type} is not supported: engines format it differently",
                side,
                "concatenate text, integers, booleans or dates",
            )
    return Annotation("string")


def _string_arg(node: exp.Expr, scope: Scope, function: str) -> None:
    value = check(node, scope)
    if value.type not in ("string", "null"):
        raise CheckError(f"{function}() needs text, not {value.type}", node)


def _string_function(node: exp.Func, scope: Scope) -> Annotation:
    _string_arg(node.this, scope, node.sql_name().lower())
    if isinstance(node, exp.Length):
        return Annotation("integer")
    if isinstance(node, exp.Trim) and (node.expression or node.args.get("position")):
        raise CheckError("trim() takes one argument", node)
    return Annotation("string")


def _string_test(node: exp.Func, scope: Scope) -> Annotation:
    name = TEXT_TESTS[type(node)]
    _string_arg(node.this, scope, name)
    _string_arg(node.expression, scope, name)
    return Annotation("boolean")


def _numeric_arg(node: exp.Expr, scope: Scope, function: str) -> Annotation:
    value = check(node, scope)
    if value.type not in (*NUMERIC, "null"):
        raise CheckError(f"{function}() needs a number, not {value.type}", node)
    return Annotation("number") if value.type == "null" else value


def _abs(node: exp.Abs, scope: Scope) -> Annotation:
    return Annotation(_numeric_arg(node.this, scope, "abs").type)


def _round(node: exp.Round, scope: Scope) -> Annotation:
    value = _numeric_arg(node.this, scope, "round")
    digits = node.args.get("decimals")
    if digits is not None:
        if not (isinstance(digits, exp.Literal) and re.fullmatch(r"\d+", str(digits.this))):
            raise CheckError("round() takes a whole number of decimals", digits)
        if int(digits.this) > 15:
            raise CheckError("round() keeps at most 15 decimals", digits)
    return value if value.type == "integer" else Annotation("number")


def _coalesce(node: exp.Coalesce, scope: Scope) -> Annotation:
    values = [check(node.this, scope)] + [check(e, scope) for e in node.expressions]
    return common_type(values, node)


def _case(node: exp.Case, scope: Scope) -> Annotation:
    subject = check(node.this, scope) if node.this else None
    values = []
    for branch in node.args.get("ifs") or []:
        test = check(branch.this, scope)
        if subject is not None:
            _compare(subject, test, branch, (node.this, branch.this))
        else:
            as_condition(test, branch.this)
        values.append(check(branch.args["true"], scope))
    default = node.args.get("default")
    values.append(check(default, scope) if default is not None else Annotation("null"))
    return common_type(values, node)


def _cast(node: exp.Cast, scope: Scope) -> Annotation:
    target = CAST_TYPES.get(node.to.this)
    if target is None:
        raise CheckError(
            f"CAST to {shown(node.to)} is not supported",
            node.to,
            "cast to VARCHAR, BIGINT, INTEGER, DOUBLE, BOOLEAN, DATE or TIMESTAMP",
        )
    value = check(node.this, scope)
    if value.constant and value.type == "string" and target in TEMPORAL:
        # DATE '...', TIMESTAMP '...' (and CAST of a constant): a typo is refused, not NULL
        parsed = parse_time(value.value, target, node)
        return Annotation(target, parsed, constant=True, source=value.type)
    if target == "string" and value.type in ("timestamp", "number"):
        raise CheckError(
            f"CAST of a {value.type} to text is not supported: engines format it differently",
            node,
            "compare the value itself (or date_trunc / round it) instead of its text",
        )
    return Annotation(target, source=value.type)


def _date_trunc(node: exp.TimestampTrunc | exp.DateTrunc, scope: Scope) -> Annotation:
    unit = node.unit.name.upper() if node.unit else ""
    if unit not in TRUNC_UNITS:
        raise CheckError(
            f"date_trunc unit '{unit.lower()}' is not supported",
            node,
            "use " + ", ".join(u.lower() for u in TRUNC_UNITS),
        )
    value = check(node.this, scope)
    if value.type not in (*TEMPORAL, "null"):
        raise CheckError(f"date_trunc() needs a date or timestamp, not {value.type}", node.this)
    return Annotation("timestamp")


def _date_diff(node: exp.DateDiff, scope: Scope) -> Annotation:
    unit = node.unit.name.upper() if node.unit else "DAY"
    start, end = check(node.expression, scope), check(node.this, scope)
    for part, arg in ((start, node.expression), (end, node.this)):
        if part.type not in (*TEMPORAL, "null"):
            raise CheckError(f"date_diff() needs dates or timestamps, not {part.type}", arg)
    if unit not in ("YEAR", "MONTH", *DIFF_UNIT_SECONDS):
        raise CheckError(
            f"date_diff unit '{unit.lower()}' is not supported",
            node,
            "use year, month, day, hour, minute or second",
        )
    return Annotation("integer")


# --- the language's own functions ---------------------------------------------------------


def _arguments(node: exp.Anonymous, low: int, high: int) -> list[exp.Expr]:
    args = [a for a in node.expressions if not isinstance(a, exp.Kwarg)]
    if any(isinstance(a, exp.Kwarg) for a in node.expressions) and node.name.lower() not in (
        *AGGREGATES,
        "performed_regularly",
    ):
        raise CheckError(f"{node.name}() takes no named arguments", node)
    if not low <= len(args) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise CheckError(f"{node.name}() takes {expected} argument(s), got {len(args)}", node)
    return args


def _now(node: exp.Anonymous, scope: Scope) -> Annotation:
    _arguments(node, 0, 0)
    return _as_of(node, scope)


def _days_since(node: exp.Anonymous, scope: Scope) -> Annotation:
    (arg,) = _arguments(node, 1, 1)
    value = check(arg, scope)
    if value.type not in (*TEMPORAL, "null"):
        raise CheckError(f"days_since() needs a date or timestamp, not {value.type}", arg)
    return Annotation("integer")


def _bucket(node: exp.Anonymous, scope: Scope) -> Annotation:
    """bucket(n[, 'salt']): a stable split of the people into n buckets."""
    args = _arguments(node, 1, 2)
    if scope.events is None:
        raise CheckError(
            "bucket() cannot be used inside an event filter",
            node,
            "split people, not events: bucket(100) < 10 next to the event function",
        )
    low, high = BUCKETS
    size = check(args[0], scope)
    if not (size.constant and size.type == "integer" and low <= size.value <= high):
        raise CheckError(
            f"bucket() takes a whole number of buckets from {low} to {high:,}, not"
            f" {shown(args[0])}",
            args[0],
            "write bucket(100) < 10 for a stable 10% of the people",
        )
    if len(args) == 2 and not (isinstance(args[1], exp.Literal) and args[1].is_string):
        raise CheckError(
            "bucket() takes a quoted salt second",
            args[1],
            "write bucket(100, 'holdout_2026') (a new salt reshuffles the people)",
        )
    return Annotation("integer")


def _days_in_segment(node: exp.Anonymous, scope: Scope) -> Annotation:
    """days_in_segment('id'): whole days a member of `id` has been one (reads `id` like
    in_segment, and the member_since of the previous committed run)."""
    _in_segment(node, scope)
    node.meta[TENURE] = node.meta.pop(SEGMENT)
    return Annotation("integer")


def _in_segment(node: exp.Anonymous, scope: Scope) -> Annotation:
    function = node.name.lower()
    (arg,) = _arguments(node, 1, 1)
    if not (isinstance(arg, exp.Literal) and arg.is_string):
        raise CheckError(f"{function}() takes a quoted segment id", arg, f"write {function}('vip')")
    if scope.events is None:
        raise CheckError(f"{function}() cannot be used inside an event filter", node)
    segment = arg.this
    if segment not in scope.segments:
        close = difflib.get_close_matches(segment, list(scope.segments), n=1)
        raise CheckError(
            f"unknown segment '{segment}'",
            arg,
            f"did you mean '{close[0]}'?" if close else "segment ids are definition file names",
        )
    scope.references.append(segment)
    node.meta[SEGMENT] = segment
    return Annotation("boolean")


def _options(
    node: exp.Anonymous, function: str, keywords: tuple[str, ...] = KEYWORDS
) -> dict[str, exp.Expr]:
    options: dict[str, exp.Expr] = {}
    for kwarg in (a for a in node.expressions if isinstance(a, exp.Kwarg)):
        key = kwarg.this.name.lower()
        if key not in keywords:
            close = difflib.get_close_matches(key, list(keywords), n=1)
            raise CheckError(
                f"unknown option '{key}' of {function}()",
                kwarg,
                (f"did you mean {close[0]} =>? " if close else "")
                + "options are "
                + ", ".join(f"{k} =>" for k in keywords),
            )
        if key in options:
            raise CheckError(f"option '{key}' given twice", kwarg)
        options[key] = kwarg.expression
    return options


def _time_bound(node: exp.Expr, key: str, scope: Scope) -> datetime:
    """The instant of a since/until option: a DATE or TIMESTAMP literal, or ISO text."""
    bound = check(node, scope)
    if not bound.constant or bound.type not in (*TEMPORAL, "string"):
        raise CheckError(
            f"{key} => needs a DATE or TIMESTAMP literal",
            node,
            f"write {key} => DATE '2026-01-01'",
        )
    value = bound.value if bound.type != "string" else parse_time(bound.value, "timestamp", node)
    return as_timestamp(constant(value, "date" if type(value) is date else "timestamp")).value


def _ago(node: exp.Expr) -> tuple[timedelta, timedelta]:
    """The two bounds of `ago => ('90 days', '30 days')`: the longer one first."""
    bounds = node.expressions if isinstance(node, exp.Tuple) else []
    if len(bounds) != 2:
        raise CheckError(
            "ago => needs two intervals in parentheses",
            node,
            "write ago => ('90 days', '30 days'): events between 90 and 30 days before as_of()",
        )
    start, end = (interval_value(bound) for bound in bounds)
    if start <= end:
        swapped = f"write ago => ('{interval_text(end)}', '{interval_text(start)}')"
        raise CheckError(
            f"ago => ('{interval_text(start)}', '{interval_text(end)}') is empty: the first"
            " bound must be longer than the second",
            node,
            swapped if start < end else "make the first bound longer than the second",
        )
    return start, end


def _register(scope: Scope, feature: EventAggregate) -> str:
    """The name of the feature (one per distinct call across all segments), added to the
    run's features if new and to the segment's."""
    key = "|".join(
        str(part)
        for part in (
            feature.aggregate,
            feature.event,
            feature.column,
            feature.within,
            feature.since,
            feature.until,
            feature.filter.sql(dialect=DIALECT) if feature.filter is not None else None,
        )
    )
    if feature.ago is not None:  # features without it keep the names earlier runs gave them
        key += f"|ago={feature.ago[0]},{feature.ago[1]}"
    if feature.steps is not None:
        key += f"|steps={feature.steps!r}|gap={feature.gap}"
    name = FEATURE_PREFIX + hashlib.sha1(key.encode()).hexdigest()[:10]
    if name not in scope.features:
        scope.features[name] = replace(feature, name=name)
    scope.used_features.append(name)
    return name


def _whole_number(node: exp.Expr, key: str, low: int, high: int, scope: Scope) -> int:
    value = check(node, scope)
    if not (value.constant and value.type == "integer" and low <= value.value <= high):
        raise CheckError(
            f"{key} => takes a whole number from {low} to {high}, not {shown(node)}",
            node,
            "write performed_regularly('login', every => '7 days', periods => 4, at_least => 3)",
        )
    return value.value


def _regularly(node: exp.Anonymous, scope: Scope) -> Annotation:
    """performed_regularly(name, every =>, periods =>, at_least =>[, times =>][, where =>]):
    one event count per period, each a feature of its own (they fold like any count)."""
    function = node.name.lower()
    if scope.events is None:
        raise CheckError(f"{function}() cannot be used inside an event filter", node)
    (name_node,) = _arguments(node, 1, 1)
    if not (isinstance(name_node, exp.Literal) and name_node.is_string):
        raise CheckError(
            f"{function}() needs the event name in quotes first",
            name_node,
            f"write {function}('login', every => '7 days', periods => 4, at_least => 3)",
        )
    options = _options(node, function, REGULARLY_KEYWORDS)
    missing = [key for key in ("every", "periods", "at_least") if key not in options]
    if missing:
        raise CheckError(
            f"{function}() needs {', '.join(f'{key} =>' for key in missing)}",
            node,
            f"write {function}('login', every => '7 days', periods => 4, at_least => 3)",
        )
    every = interval_value(options["every"])
    if every <= timedelta(0):
        raise CheckError("every => needs a positive interval", options["every"])
    periods = _whole_number(options["periods"], "periods", *REGULARLY_PERIODS, scope)
    at_least = _whole_number(options["at_least"], "at_least", 1, periods, scope)
    times = (
        _whole_number(options["times"], "times", 1, 2**31 - 1, scope) if "times" in options else 1
    )
    filter_node = options.get("where")
    if filter_node is not None:
        _condition(filter_node, event_scope(scope))
    names = []
    for k in range(periods):
        ago = None if k == 0 else ((k + 1) * every, k * every)
        names.append(
            _register(
                scope,
                EventAggregate(
                    name="",
                    aggregate="count",
                    event=name_node.this,
                    column=None,
                    within=every if k == 0 else None,
                    since=None,
                    until=None,
                    filter=filter_node,
                    type="integer",
                    window_start=scope.as_of - (k + 1) * every,
                    ago=ago,
                    window_end=scope.as_of - ago[1] if ago is not None else None,
                ),
            )
        )
    node.meta[PERIODS] = (tuple(names), times, at_least)
    return Annotation("boolean")


def _event_function(node: exp.Anonymous, scope: Scope) -> Annotation:
    function = node.name.lower()
    if scope.events is None:
        raise CheckError(
            f"{function}() cannot be used inside an event filter",
            node,
            "event filters (where => ...) see one event's columns only",
        )
    aggregate, needs_column = AGGREGATES[function]
    sequence = aggregate == "in_order"
    if sequence:
        low, high = SEQUENCE_STEPS
        positional = [a for a in node.expressions if not isinstance(a, exp.Kwarg)]
        if not low <= len(positional) <= high:
            raise CheckError(
                f"{function}() takes {low} to {high} steps, got {len(positional)}",
                node,
                f"write {function}('signed_up', 'purchase', within => '30 days'); a single step"
                " is performed('signed_up', ...)",
            )
        for step in positional:
            if not (isinstance(step, exp.Literal) and step.is_string):
                raise CheckError(
                    f"{function}() takes event names in quotes",
                    step,
                    f"write {function}('signed_up', 'purchase')",
                )
    else:
        positional = _arguments(node, 2 if needs_column else 1, 2 if needs_column else 1)
    name_node = positional[0]
    if not (isinstance(name_node, exp.Literal) and name_node.is_string):
        raise CheckError(
            f"{function}() needs the event name in quotes first",
            name_node,
            f"write {function}('purchase', ...) or '*' for any event",
        )
    events = event_scope(scope)
    column, column_type, result = (
        None,
        None,
        {"count": "integer", "first": "timestamp", "last": "timestamp"}.get(aggregate),
    )
    if needs_column:
        column_node = positional[1]
        if not isinstance(column_node, exp.Column):
            raise CheckError(f"{function}() takes an event column second", column_node)
        typed = check(column_node, events)
        column = column_path(column_node)
        if typed.type not in NUMERIC and aggregate != "count_distinct":
            raise CheckError(
                f"{function}() needs a numeric event column; {column} is {typed.type}",
                column_node,
                "event_count_distinct() counts the values of a column of any type",
            )
        column_type = typed.type
        result = "number" if aggregate == "avg" or typed.type == "number" else "integer"
        if aggregate == "count_distinct":
            result = "integer"
    options = _options(node, function, SEQUENCE_KEYWORDS if sequence else KEYWORDS)
    gap = interval_value(options["gap"]) if "gap" in options else None
    if gap is not None and gap <= timedelta(0):
        raise CheckError("gap => needs a positive interval", options["gap"])
    steps = tuple(step.this for step in positional) if sequence else None
    if sequence:
        result = "boolean"
    within = interval_value(options["within"]) if "within" in options else None
    if within is not None and within <= timedelta(0):
        raise CheckError("within => needs a positive interval", options["within"])
    ago = _ago(options["ago"]) if "ago" in options else None
    if ago is not None and within is not None:
        raise CheckError(
            "ago => cannot be combined with within =>",
            options["ago"].parent,
            f"within => '{interval_text(within)}' is ago => ('{interval_text(within)}',"
            " '0 days'): keep one of them",
        )
    bounds = {
        key: _time_bound(options[key], key, events) for key in ("since", "until") if key in options
    }
    lookback = ago[0] if ago is not None else within
    window_start = scope.as_of - lookback if lookback is not None else None
    filter_node = options.get("where")
    if filter_node is not None:
        _condition(filter_node, events)
    name = _register(
        scope,
        EventAggregate(
            name="",
            aggregate=aggregate,
            event=name_node.this,
            column=column,
            within=within,
            since=bounds.get("since"),
            until=bounds.get("until"),
            filter=filter_node,
            type=result,
            column_type=column_type,
            window_start=window_start,
            ago=ago,
            window_end=scope.as_of - ago[1] if ago is not None else None,
            steps=steps,
            gap=gap,
        ),
    )
    node.meta[FEATURE] = name
    return Annotation("boolean" if function == "performed" else result)


FUNCTIONS: dict[str, Checker] = {
    "as_of": _now,
    "now": _now,
    "days_since": _days_since,
    "in_segment": _in_segment,
    "days_in_segment": _days_in_segment,
    "performed_regularly": _regularly,
    "bucket": _bucket,
    **dict.fromkeys(AGGREGATES, _event_function),
}
"""The language's own functions (sqlglot reads them as anonymous calls)."""


def _function_hint(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), FUNCTION_NAMES, n=1)
    return f"did you mean {close[0]}()? " if close else ""


def _function(node: exp.Anonymous, scope: Scope) -> Annotation:
    checker = FUNCTIONS.get(node.name.lower())
    if checker is None:
        raise CheckError(
            f"function {node.name}() is not part of the segment language",
            node,
            _function_hint(node.name) + "see docs/segment_language.md",
        )
    return checker(node, scope)


ALLOWED: dict[type[exp.Expr], Checker] = {
    exp.Column: _column,
    exp.Literal: _literal,
    exp.Boolean: _boolean,
    exp.Null: _null,
    exp.Paren: _paren,
    exp.Interval: _interval,
    exp.And: _connective,
    exp.Or: _connective,
    exp.Not: _not,
    **dict.fromkeys(COMPARISONS, _comparison),
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
    exp.CurrentTimestamp: _as_of,
    exp.CurrentDate: _as_of,
    exp.Anonymous: _function,
}
"""Every node class the language allows, and its check: the allowlist."""

NOT_CALLS = (exp.Anonymous, exp.And, exp.Or, exp.Case)
"""Allowed node classes sqlglot counts as functions that are not written as calls."""
FUNCTION_NAMES = (
    *FUNCTIONS,
    *sorted(
        {
            name.lower()
            for cls in ALLOWED
            if issubclass(cls, exp.Func) and cls not in NOT_CALLS
            for name in cls.sql_names()
        }
    ),
)
"""Every function name a predicate may call: what a misspelt call is matched against."""
