"""The SQL back end: the checked trees of a run as one SQL query.

`run_query(definitions, people, events, manual)` writes one query that computes every event
feature in one pass (conditional aggregates, `FILTER (WHERE ...)`), joins them to the people
snapshot, evaluates the segments level by level (`in_segment` reads earlier levels) and returns
(segment_id, person_id) of every member. It needs only what the check pass returns
(`transforms.language.checked`): the Polars back end does not have to run first. Only checked
trees reach this module, so a predicate contributes nothing the allowlist did not allow; it is
combined with the rest of the query as a tree, never pasted as text. Every identifier is
quoted, in every dialect: the names are the contracts' lower-case ones (docs/segment_language.md,
"The SQL's input tables").

The project defines what each construct means and writes it out where engines differ:
`as_of()` is a literal instant; `x / y` is `x / NULLIF(y, 0)`; CAST follows the TRY_CAST rules
of docs/segment_language.md; window bounds are literal instants computed here, not date
arithmetic left to the transpiler. Tested on DuckDB (with `SET TimeZone = 'UTC'`); other
dialects get `transforms.language.dialects`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlglot import exp

from transforms.contracts.odcs import Column
from transforms.contracts.text import FALSE_TEXT, ISO_DATE, ISO_TIMESTAMP, TRUE_TEXT
from transforms.errors import SegmentsError
from transforms.language.checked import CheckedDefinitions
from transforms.language.dialects import HEX_NUMBER, ROUNDS_HALF_TO_EVEN, for_dialect, rewrite
from transforms.language.semantics import (
    DIALECT,
    HEX_DIGITS,
    INT32,
    NEVER_CONVERTS,
    SEGMENT_PREFIX,
    SINCE_PREFIX,
    EventAggregate,
    earliest_needed,
    run_date,
)
from transforms.language.types import (
    annotation,
    bucket_arguments,
    feature_of,
    periods_of,
    segment_of,
    tenure_of,
    tenures,
)

SQL_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "object": "STRUCT",
}
"""The SQL type of each logical type (an object column is a STRUCT of its declared fields:
`column_type`)."""


def column_type(column: Column) -> str:
    """A contract column's type as DuckDB writes it: `BIGINT`, or for an object column
    `STRUCT("source" VARCHAR, "price" DOUBLE, ...)`."""
    if column.logical_type != "object":
        return SQL_TYPES[column.logical_type]
    fields = ", ".join(f'"{f.name}" {SQL_TYPES[f.logical_type]}' for f in column.fields)
    return f"STRUCT({fields})"


# the text forms CAST turns into dates and timestamps (docs/segment_language.md)
ISO_TEXT = {"date": ISO_DATE, "timestamp": ISO_TIMESTAMP}


def instant(value: datetime) -> exp.Expr:
    """A UTC instant as a typed literal."""
    text = value.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00"
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMPTZ"))


def _ident(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _event_column(path: str) -> exp.Column:
    """An event column by the name the check pass records: `"amount"`, or for a field of an
    object column `"properties"."price"`, which reads the field of the struct column in every
    dialect of `STRUCT_FIELD_DIALECTS`."""
    column, _, name = path.partition(".")
    return exp.column(name, table=column, quoted=True) if name else _ident(column)


STRUCT_FIELD_DIALECTS = ("duckdb", "spark", "databricks", "bigquery", "trino", "presto", "athena")
"""Dialects where `column.field` reads a field of a struct (ROW) column: the only ones the SQL
of a predicate on event properties is written for. Others (Snowflake's OBJECT, Postgres'
composite types, ...) spell a field of an object otherwise and are refused."""


def reads_properties(compiled: CheckedDefinitions) -> list[str]:
    """The features that read a field of an object column of the events, by description."""
    found = []
    for feature in compiled.features.values():
        columns = [] if feature.filter is None else list(feature.filter.find_all(exp.Column))
        if (feature.column and "." in feature.column) or any(c.table for c in columns):
            found.append(feature.describe())
    return found


def _try_cast(node: exp.Expr, type_: str) -> exp.Expr:
    # safe: written TRY_CAST in every dialect (sqlglot writes a plain CAST for Spark otherwise)
    return exp.TryCast(this=node, to=exp.DataType.build(SQL_TYPES[type_]), safe=True)


def _trimmed(node: exp.Expr) -> exp.Expr:
    return exp.Trim(this=node)


def _cast(node: exp.Cast, inner: exp.Expr) -> exp.Expr:
    checked = annotation(node)
    source, target = checked.source, checked.type
    if source == target:
        return inner
    if source == "null" or (source, target) in NEVER_CONVERTS:
        return exp.cast(exp.null(), exp.DataType.build(SQL_TYPES[target]))
    if source == "string" and isinstance(inner, exp.Literal) and target in ("date", "timestamp"):
        value = inner.this if target == "date" else _timestamp_text(inner.this)
        return exp.cast(exp.Literal.string(value), exp.DataType.build(SQL_TYPES[target]))
    if source == "string":
        text = _trimmed(inner)
        if target == "integer":
            rounded = exp.Round(this=_try_cast(text, "number"))
            result: exp.Expr = exp.Coalesce(
                this=_try_cast(text, "integer"), expressions=[_try_cast(rounded, "integer")]
            )
        elif target == "boolean":
            lowered = exp.Lower(this=inner)
            result = exp.Case(
                ifs=[
                    exp.If(this=lowered.isin(*TRUE_TEXT), true=exp.true()),
                    exp.If(this=lowered.isin(*FALSE_TEXT), true=exp.false()),
                ]
            )
        elif target in ("date", "timestamp"):  # engines' own parsers take more forms
            iso = exp.RegexpFullMatch(this=text, expression=exp.Literal.string(ISO_TEXT[target]))
            result = exp.Case(ifs=[exp.If(this=iso, true=_try_cast(text.copy(), target))])
        else:
            result = _try_cast(text, target)
    elif target == "timestamp" and source == "date":
        result = exp.cast(inner, exp.DataType.build("TIMESTAMPTZ"))
    elif target == "integer" and source == "number":
        result = _try_cast(inner, target)
        result.meta[ROUNDS_HALF_TO_EVEN] = True  # DuckDB's cast does; Spark's truncates
    else:
        result = _try_cast(inner, target)
    if node.to.this == exp.DataType.Type.INT:
        low, high = (exp.Literal.number(b) for b in INT32)
        result = exp.Case(
            ifs=[exp.If(this=exp.Between(this=result, low=low, high=high), true=result.copy())]
        )
    return result


def _timestamp_text(text: str) -> str:
    text = text.strip().replace("T", " ", 1).replace("Z", "+00")
    return text if ("+" in text[10:] or text.count("-") > 2) else text + "+00"


def _seconds_between(later: exp.Expr, earlier: exp.Expr) -> exp.Expr:
    """Seconds from `earlier` to `later` (two instants), as DuckDB writes it."""
    return exp.Anonymous(
        this="epoch", expressions=[exp.paren(exp.Sub(this=later, expression=earlier))]
    )


def _replace(node: exp.Expr, as_of: datetime) -> exp.Expr:
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        feature, segment = feature_of(node), segment_of(node)
        if feature is not None:
            column = _ident(feature)
            return (
                exp.GTE(this=column, expression=exp.Literal.number(1))
                if (name == "performed")
                else column
            )
        if segment is not None:
            return _ident(SEGMENT_PREFIX + segment)
        if (tenure := tenure_of(node)) is not None:
            day = exp.cast(exp.Literal.string(run_date(as_of).isoformat()), "DATE")
            since = exp.Coalesce(this=_ident(SINCE_PREFIX + tenure), expressions=[day.copy()])
            days = exp.DateDiff(this=day.copy(), expression=since, unit=exp.var("DAY"))
            return exp.Case(ifs=[exp.If(this=_ident(SEGMENT_PREFIX + tenure), true=days)])
        if (periods := periods_of(node)) is not None:
            names, times, at_least = periods
            held = [
                exp.Case(
                    ifs=[
                        exp.If(
                            this=exp.GTE(this=_ident(n), expression=exp.Literal.number(times)),
                            true=exp.Literal.number(1),
                        )
                    ],
                    default=exp.Literal.number(0),
                )
                for n in names
            ]
            total = held[0]
            for term in held[1:]:
                total = exp.Add(this=total, expression=term)
            return exp.GTE(this=exp.paren(total), expression=exp.Literal.number(at_least))
        if name == "bucket":
            return _bucket(*bucket_arguments(node))
        if name in ("as_of", "now"):
            return instant(as_of)
        if name == "days_since":
            seconds = _seconds_between(
                instant(as_of), exp.cast(node.expressions[0], exp.DataType.build("TIMESTAMPTZ"))
            )
            days = exp.Floor(this=exp.Div(this=seconds, expression=exp.Literal.number(86400)))
            return exp.cast(days, exp.DataType.build("BIGINT"))
    if isinstance(node, (exp.CurrentTimestamp, exp.CurrentDate)):
        return instant(as_of)
    if isinstance(node, exp.Literal) and not node.is_string and not node.this.isdigit():
        # 0.5 is a DOUBLE in the language; some engines read it as DECIMAL, which rounds and
        # casts differently
        return exp.cast(node, exp.DataType.build("DOUBLE"))
    if isinstance(node, (exp.TimestampTrunc, exp.DateTrunc, exp.DateDiff)):
        for key in ("this", "expression"):  # an untyped NULL has no overload to bind to
            if isinstance(node.args.get(key), exp.Null):
                node.set(key, exp.cast(exp.null(), exp.DataType.build("TIMESTAMPTZ")))
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return _cast(node, node.this)
    if isinstance(node, exp.Div):
        left = exp.cast(node.this, exp.DataType.build("DOUBLE"))
        right = exp.cast(node.expression, exp.DataType.build("DOUBLE"))
        return exp.Div(
            this=left, expression=exp.Nullif(this=right, expression=exp.Literal.number(0))
        )
    return node


def _bucket(n: int, salt: str) -> exp.Expr:
    """bucket(n, salt): the first 8 hexadecimal digits of md5(salt || ':' || person_id) as an
    integer (DuckDB reads '0x...' text as a number; `dialects` writes it for the others),
    modulo n."""
    key = exp.DPipe(this=exp.Literal.string(f"{salt}:"), expression=_ident("person_id"))
    digits = exp.Substring(
        this=exp.MD5(this=key), start=exp.Literal.number(1), length=exp.Literal.number(HEX_DIGITS)
    )
    number = exp.TryCast(
        this=exp.DPipe(this=exp.Literal.string("0x"), expression=digits),
        to=exp.DataType.build("BIGINT"),
        safe=True,
    )
    number.meta[HEX_NUMBER] = True
    return exp.paren(exp.Mod(this=number, expression=exp.Literal.number(n)))


def predicate(tree: exp.Expr, as_of: datetime) -> exp.Expr:
    """A checked predicate tree as SQL, against people columns, feature columns and the
    `__seg_<id>` columns of earlier segments."""
    return rewrite(tree.copy(), lambda node: _replace(node, as_of))


def _condition(feature: EventAggregate, as_of: datetime) -> exp.Expr:
    timestamp = _ident("timestamp")
    parts: list[exp.Expr] = []
    if feature.event != "*" and feature.steps is None:  # a sequence names each step
        parts.append(exp.EQ(this=_ident("name"), expression=exp.Literal.string(feature.event)))
    if feature.window_start is not None:
        parts.append(exp.GT(this=timestamp.copy(), expression=instant(feature.window_start)))
    if feature.window_end is not None:
        parts.append(exp.LTE(this=timestamp.copy(), expression=instant(feature.window_end)))
    if feature.since is not None:
        parts.append(exp.GTE(this=timestamp.copy(), expression=instant(feature.since)))
    if feature.until is not None:
        parts.append(exp.LT(this=timestamp.copy(), expression=instant(feature.until)))
    if feature.filter is not None:
        parts.append(exp.paren(predicate(feature.filter, as_of)))
    return exp.and_(*parts) if parts else exp.true()


def _aggregate(feature: EventAggregate, as_of: datetime) -> exp.Expr:
    if feature.aggregate == "count":
        value: exp.Expr = exp.Count(this=exp.Star())
    elif feature.aggregate == "count_distinct":
        value = exp.Count(this=exp.Distinct(expressions=[_event_column(feature.column)]))
    elif feature.aggregate in ("first", "last"):
        kind = exp.Min if feature.aggregate == "first" else exp.Max
        value = kind(this=_ident("timestamp"))
    else:
        kinds = {"sum": exp.Sum, "min": exp.Min, "max": exp.Max, "avg": exp.Avg}
        value = kinds[feature.aggregate](this=_event_column(feature.column))
    return exp.Filter(this=value, expression=exp.Where(this=_condition(feature, as_of)))


# the latest event of the previous step at or before each row, earlier steps' rows sorting
# after a candidate at the same instant (which they do not precede)
LATEST_REACHED = exp.maybe_parse(
    'MAX(CASE WHEN "__step" = 1 THEN "timestamp" END) OVER (PARTITION BY "person_id"'
    ' ORDER BY "timestamp", "__step" ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)',
    dialect=DIALECT,
)


def _sequence(
    feature: EventAggregate, events: str, visible: exp.Expr, as_of: datetime, prefix: str
) -> list[tuple[str, exp.Query]]:
    """performed_in_order as CTEs, one per step: (person_id, timestamp) of the events of the
    step that an event of the step before precedes, strictly and at most `gap` earlier. The
    last one's people perform the sequence."""

    def of_step(step: str) -> exp.Select:
        named = exp.EQ(this=_ident("name"), expression=exp.Literal.string(step))
        test = exp.and_(
            visible.copy(), _condition(feature, as_of), *([named] if step != "*" else [])
        )
        return exp.select("person_id", "timestamp").from_(exp.maybe_parse(events)).where(test)

    ctes = [(f"{prefix}_0", of_step(feature.steps[0]))]
    for index, step in enumerate(feature.steps[1:], start=1):
        tagged = exp.union(
            of_step(step).select(exp.alias_(exp.Literal.number(0), "__step")),
            exp.select("person_id", "timestamp", exp.alias_(exp.Literal.number(1), "__step")).from_(
                ctes[-1][0]
            ),
            distinct=False,
        )
        ranked = exp.select(
            "person_id", "timestamp", "__step", exp.alias_(LATEST_REACHED.copy(), "__latest")
        ).from_(tagged.subquery("__both"))
        follows = [
            exp.EQ(this=exp.column("__step"), expression=exp.Literal.number(0)),
            exp.column("__latest").is_(exp.null()).not_(),
        ]
        if feature.gap is not None:
            seconds = exp.Interval(
                this=exp.Literal.string(str(int(feature.gap.total_seconds()))),
                unit=exp.var("SECOND"),
            )
            earliest = exp.Sub(this=_ident("timestamp"), expression=seconds)
            follows.append(exp.GTE(this=exp.column("__latest"), expression=earliest))
        step_query = (
            exp.select("person_id", "timestamp")
            .from_(ranked.subquery("__ranked"))
            .where(exp.and_(*follows))
        )
        ctes.append((f"{prefix}_{index}", step_query))
    return ctes


def _no_member_rows(last: str) -> exp.Select:
    return (
        exp.select(exp.alias_(exp.cast(exp.null(), "VARCHAR"), "segment_id"), "person_id")
        .from_(last)
        .where(exp.false())
    )


def _member_rows_union(last: str, columns: dict[str, str]) -> exp.Query:
    """(segment_id, person_id) rows: one SELECT per segment, UNION ALL (DuckDB computes the
    shared CTEs once)."""
    selects = [
        exp.select(exp.alias_(exp.Literal.string(sid), "segment_id"), "person_id")
        .from_(last)
        .where(_ident(column))
        for sid, column in columns.items()
    ]
    body: exp.Query = selects[0] if selects else _no_member_rows(last)
    for select in selects[1:]:
        body = exp.union(body, select, distinct=False)
    return body


def _member_rows_exploded(last: str, columns: dict[str, str]) -> exp.Query:
    """(segment_id, person_id) rows in one pass over the last level: Spark inlines a CTE into
    every branch of a UNION, which would recompute the event features once per segment."""
    if not columns:
        return _no_member_rows(last)
    ids = exp.Array(
        expressions=[
            exp.If(this=_ident(column), true=exp.Literal.string(sid), false=exp.null())
            for sid, column in columns.items()
        ]
    )
    exploded = exp.select(exp.alias_(exp.Explode(this=ids), "segment_id"), "person_id").from_(last)
    return (
        exp.select("segment_id", "person_id")
        .from_(exploded.subquery("__members"))
        .where(exp.column("segment_id").is_(exp.null()).not_())
    )


MEMBER_ROWS: dict[str, Callable[[str, dict[str, str]], exp.Query]] = {
    "spark": _member_rows_exploded
}


def run_query(
    compiled: CheckedDefinitions,
    people: str,
    events: str,
    manual: str | None = None,
    dialect: str = DIALECT,
    previous: str | None = "previous_members",
) -> str:
    """The whole run's membership query. `people`, `events`, `manual` and `previous` name
    relations (a table, a view or a file-reading expression) the engine can read; `previous`
    (segment_id, person_id, member_since) is the membership of the previous committed run, read
    only for days_in_segment (None: there is none). `compiled` needs only the check pass
    (`transforms.language.checked.check_segments`); compiled definitions serve too."""
    as_of = compiled.as_of
    properties = reads_properties(compiled)
    if properties and dialect not in STRUCT_FIELD_DIALECTS:
        raise SegmentsError(
            f"{properties[0]} reads an event property, a field of a struct column, which the"
            f" SQL is not written for in {dialect}",
            hint="compile for one of " + ", ".join(STRUCT_FIELD_DIALECTS) + " (or leave out the"
            " segments that read event properties)",
        )
    features = list(compiled.features.values())
    visible = [exp.LTE(this=_ident("timestamp"), expression=instant(as_of))]
    names = sorted({name for f in features for name in f.event_names})
    if features and "*" not in names:
        visible.append(_ident("name").isin(*names))
    earliest = earliest_needed(features, as_of)
    if earliest is not None:
        visible.append(exp.GTE(this=_ident("timestamp"), expression=instant(earliest)))
    aggregates = [f for f in features if f.steps is None]
    query = (
        exp.select(
            "person_id",
            *(exp.alias_(_aggregate(f, as_of), f.name, quoted=True) for f in aggregates),
        )
        .from_(exp.maybe_parse(events))
        .where(exp.and_(*visible))
        .group_by("person_id")
    )
    ctes: list[tuple[str, exp.Query]] = [("__features", query)]
    columns: list[exp.Expr] = [exp.column(exp.Star(), table="p")]
    for f in aggregates:
        value: exp.Expr = exp.column(f.name, table="f", quoted=True)
        if f.default is not None:
            value = exp.Coalesce(this=value, expressions=[exp.Literal.number(f.default)])
        columns.append(exp.alias_(value, f.name, quoted=True))
    people_features = (
        exp.select()
        .from_(exp.alias_(exp.maybe_parse(people), "p"))
        .join(
            exp.alias_(exp.to_table("__features"), "f"),
            on="p.person_id = f.person_id",
            join_type="left",
        )
    )
    for number, f in enumerate(f for f in features if f.steps is not None):
        steps = _sequence(f, events, exp.and_(*visible), as_of, f"__sequence_{number}")
        ctes += steps
        alias = f"s{number}"
        found = exp.select("person_id").distinct().from_(steps[-1][0]).subquery(alias)
        people_features = people_features.join(
            found, on=f"p.person_id = {alias}.person_id", join_type="left"
        )
        reached = exp.column("person_id", table=alias).is_(exp.null()).not_()
        columns.append(exp.alias_(reached, f.name, quoted=True))
    for number, sid in enumerate(tenures([s.predicate for s in compiled.segments.values()])):
        since: exp.Expr = exp.cast(exp.null(), "DATE")
        if previous is not None:
            alias = f"t{number}"
            kept = (
                exp.select("person_id", "member_since")
                .from_(exp.maybe_parse(previous))
                .where(exp.EQ(this=exp.column("segment_id"), expression=exp.Literal.string(sid)))
            )
            people_features = people_features.join(
                kept.subquery(alias), on=f"p.person_id = {alias}.person_id", join_type="left"
            )
            since = exp.column("member_since", table=alias)
        columns.append(exp.alias_(since, SINCE_PREFIX + sid, quoted=True))
    people_features = people_features.select(*columns)
    ctes.append(("__level_0", people_features))
    for number, level in enumerate(compiled.order, start=1):
        outputs: list[exp.Expr] = [exp.Star()]
        for sid in level:
            segment = compiled.segments[sid]
            if segment.manual:
                member = (
                    exp.column("person_id").isin(
                        query=exp.select("person_id")
                        .from_(exp.maybe_parse(manual))
                        .where(
                            exp.EQ(
                                this=exp.column("segment_id"), expression=exp.Literal.string(sid)
                            )
                        )
                    )
                    if manual
                    else exp.false()
                )
            else:
                member = exp.Coalesce(
                    this=exp.paren(predicate(segment.predicate, as_of)), expressions=[exp.false()]
                )
            outputs.append(exp.alias_(member, segment.column, quoted=True))
        ctes.append((f"__level_{number}", exp.select(*outputs).from_(f"__level_{number - 1}")))
    last = f"__level_{len(compiled.order)}"
    columns = {sid: compiled.segments[sid].column for sid in sorted(compiled.segments)}
    body = MEMBER_ROWS.get(dialect, _member_rows_union)(last, columns)
    for name, cte in ctes:
        body = body.with_(name, as_=cte)
    # every name quoted: a dialect that folds unquoted names (Snowflake: to upper case) sees
    # the same lower-case names as the others
    return for_dialect(body, dialect).sql(dialect=dialect, pretty=True, identify=True)
