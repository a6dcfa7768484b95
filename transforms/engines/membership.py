"""Who is in each segment: event features in one pass, then every predicate, in order.

Pure functions of LazyFrames (no I/O): `event_features` aggregates the run's events into one
row per person with a column per feature (conditional aggregation, a single group-by);
`segment_members` joins them to the people snapshot, evaluates the segments level by level
(a segment only sees segments of earlier levels through `in_segment`) and returns
(segment_id, person_id) for every predicate that is TRUE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from transforms.language.polars import (
    TIMESTAMP,
    CompiledDefinitions,
    Feature,
    event_column,
    event_columns_read,
)
from transforms.language.semantics import SINCE_PREFIX, earliest_needed
from transforms.language.types import tenures

SEQUENCE_TAG, SEQUENCE_LATEST = "__step", "__latest"
"""Helper columns of `sequence`."""
TEST_PREFIX = "__test_"
"""Columns of per-event tests, shared by the features that use them."""
COUNT_SUFFIX, SUM_SUFFIX = "__n", "__sum"
"""State columns of avg() and float sums besides the feature's own: how many values, their sum."""
COUNTS = pl.Int32
"""Type of the counts in the state (half the memory of Int64; nobody has 2^31 events). The
count features themselves are Int64, as in the SQL engines."""


@dataclass(frozen=True)
class StateColumn:
    """One per-person aggregate a feature is made of (`membership.finish` makes the feature).

    `fold` says how runs combine partial values of it (`transforms.engines.feature_state`):
    "add" adds and subtracts them (integers, exact), "max"/"min" keep the extreme, "refold"
    recomputes it from the partials of people whose events changed (float sums, which drift if
    subtracted)."""

    name: str
    value: pl.Expr
    """Per event: what the column aggregates (NULL for events that do not count)."""
    aggregate: str  # sum | min | max | n_unique (distinct non-NULL values)
    fold: str  # add | max | min | refold | none (never folded: recomputed every run)

    def aggregated(self) -> pl.Expr:
        """The per-group aggregate of the column."""
        column = pl.col(self.name)
        if self.aggregate == "n_unique":
            return column.drop_nulls().n_unique().alias(self.name)
        return getattr(column, self.aggregate)()


def state_columns(feature: Feature, mask: pl.Expr) -> list[StateColumn]:
    """The aggregates a feature is computed from, given which events count (`mask`)."""
    name, aggregate = feature.name, feature.aggregate
    if aggregate == "in_order":  # not an aggregate: `sequences` finds them
        return []
    if aggregate == "count":
        return [StateColumn(name, mask.cast(COUNTS), "sum", "add")]
    if aggregate == "count_distinct":
        return [
            StateColumn(name, pl.when(mask).then(event_column(feature.column)), "n_unique", "none")
        ]
    if aggregate in ("first", "last", "min", "max"):
        value = (
            pl.col("timestamp") if aggregate in ("first", "last") else event_column(feature.column)
        )
        extreme = "min" if aggregate in ("first", "min") else "max"
        return [StateColumn(name, pl.when(mask).then(value), extreme, extreme)]
    value = pl.when(mask).then(event_column(feature.column))
    counted = StateColumn(f"{name}{COUNT_SUFFIX}", value.is_not_null().cast(COUNTS), "sum", "add")
    if aggregate == "sum":
        if feature.column_type == "integer":
            return [StateColumn(name, value.cast(pl.Int64), "sum", "add")]
        return [StateColumn(name, value.cast(pl.Float64), "sum", "refold"), counted]
    exact = feature.column_type == "integer"
    total = value.cast(pl.Int64 if exact else pl.Float64)
    return [StateColumn(f"{name}{SUM_SUFFIX}", total, "sum", "add" if exact else "refold"), counted]


def aggregate_state(
    events: pl.LazyFrame,
    features: list[Feature],
    by: list[str],
    tests: dict[str, tuple[tuple[str, pl.Expr], ...]],
) -> pl.LazyFrame:
    """One row per group of `by`, a column per state column of `features`; `tests` gives each
    feature's tests (by feature name). Each test is computed once per event and shared."""
    tested, test_columns = tested_events(events, features, by, tests)
    return aggregate_tested(tested, test_columns, features, by, tests)


def tested_events(
    events: pl.LazyFrame,
    features: list[Feature],
    by: list[str],
    tests: dict[str, tuple[tuple[str, pl.Expr], ...]],
) -> tuple[pl.LazyFrame, dict[str, str]]:
    """(the columns of `events` that `aggregate_tested` reads for `features` (or some of them):
    `by`, the values, and a boolean column per test of any of them, computed once per event;
    the name of each test's column, by its text)."""
    shared = {text: test for f in features for text, test in tests[f.name]}
    test_columns = {text: f"{TEST_PREFIX}{i}" for i, text in enumerate(shared)}
    values = sorted({event_columns_read(f.column) for f in features if f.column} | {"timestamp"})
    tested = events.select(
        *by, *values, *(t.alias(test_columns[text]) for text, t in shared.items())
    )
    return tested, test_columns


def aggregate_tested(
    tested: pl.LazyFrame,
    test_columns: dict[str, str],
    features: list[Feature],
    by: list[str],
    tests: dict[str, tuple[tuple[str, pl.Expr], ...]],
) -> pl.LazyFrame:
    """`aggregate_state` of events `tested_events` prepared for these features or more."""
    columns = [
        column for f in features for column in state_columns(f, _mask(tests[f.name], test_columns))
    ]
    return (
        tested.select(*by, *(c.value.alias(c.name) for c in columns))
        .group_by(by)
        .agg(c.aggregated() for c in columns)
    )


def finish(state: pl.LazyFrame, features: list[Feature]) -> pl.LazyFrame:
    """The features from their state columns: one row per person, a column per feature."""

    def feature(f: Feature) -> pl.Expr:
        if f.aggregate in ("count", "count_distinct"):
            return pl.col(f.name).cast(pl.Int64)
        if f.aggregate != "avg":
            return pl.col(f.name)
        count = pl.col(f"{f.name}{COUNT_SUFFIX}")
        return pl.when(count > 0).then(pl.col(f"{f.name}{SUM_SUFFIX}") / count).alias(f.name)

    return state.select("person_id", *(feature(f) for f in features if f.steps is None))


def counted_names(features: list[Feature]) -> pl.Expr:
    """Whether an event has a name some feature counts."""
    names = {name for f in features for name in f.event_names}
    return pl.lit(True) if "*" in names else pl.col("name").is_in(sorted(names))


def visible_events(events: pl.LazyFrame, features: list[Feature], as_of: datetime) -> pl.LazyFrame:
    """The events a run with these features reads: up to the as-of instant, of the names
    they count, no older than the longest window needs."""
    visible = (pl.col("timestamp") <= pl.lit(as_of, dtype=TIMESTAMP)) & counted_names(features)
    earliest = earliest_needed(features, as_of)
    if earliest is not None:
        visible = visible & (pl.col("timestamp") >= pl.lit(earliest, dtype=TIMESTAMP))
    return events.filter(visible)


def event_features(
    events: pl.LazyFrame, compiled: CompiledDefinitions, features: list[Feature] | None = None
) -> pl.LazyFrame:
    """One row per person who has events, one column per feature of the compiled definitions (or of
    `features`), recomputed from the events: the aggregates in one pass over the events any of
    them reads; each distinct count and each sequence over only the events of its own names and
    window (a 30-day distinct count does not group the 90 days another feature reads)."""
    features = list(compiled.features.values()) if features is None else features
    if not features:
        return pl.LazyFrame(schema={"person_id": pl.String})
    aggregates = [f for f in features if f.aggregate not in ("count_distinct", "in_order")]
    found = None
    if aggregates:
        visible = visible_events(events, aggregates, compiled.as_of)
        found = finish(
            aggregate_state(
                visible, aggregates, ["person_id"], {f.name: f.tests for f in aggregates}
            ),
            aggregates,
        )
    for feature in features:
        if feature not in aggregates:
            own = visible_events(events, [feature], compiled.as_of)
            of_one = (
                sequence(own, feature)
                if feature.steps is not None
                else distinct_count(own, feature)
            )
            found = (
                of_one
                if found is None
                else found.join(of_one, on="person_id", how="full", coalesce=True)
            )
    return found


DISTINCT_AS_BITS = 64
"""A distinct count of at most this many distinct numbers is one bit per value, ORed per
person: one group-by of the events by person instead of two."""
TEXT_AS_BITS = 255
"""A distinct count of at most this many distinct texts (event names, currencies) is counted
in one pass over the events: each text is numbered as it is first seen (a Categorical of its
own, 8 bits: numbering one more fails), its number is a bit of one of four 64-bit words, ORed
per person and word. At 1M people, 10M events, a 30-day count of event names and a 90-day
count of currencies took 0.72-0.75 s and 0.46 s of CPU, now 0.64-0.67 s and 0.31-0.33 s
(medians of 5, two sets): the pass that read the distinct values first is gone."""
_BIT_OF_NUMBER = (
    pl.Series(list(range(TEXT_AS_BITS)), dtype=pl.UInt8),
    pl.Series([1 << (n % 64) for n in range(TEXT_AS_BITS)], dtype=pl.UInt64),
)


def distinct_count(events: pl.LazyFrame, feature: Feature) -> pl.LazyFrame:
    """(person_id, how many distinct non-NULL values of `feature.column` their counted events
    hold) for the people with at least one such value. Texts: up to `TEXT_AS_BITS` of them,
    as bits in one pass (`_texts_as_bits`). Numbers: the distinct values are read first; up to
    `DISTINCT_AS_BITS` of them, each person's values are ORed as bits and the bits counted.
    Beyond, the distinct (person, value) pairs are counted per person, which groups far less
    than a distinct count per group."""
    value = event_column(feature.column).alias("__value")
    pairs = events.filter(feature.condition).select("person_id", value).drop_nulls("__value")
    if feature.column_type == "string":
        counted = _texts_as_bits(pairs, feature.name)
        if counted is not None:
            return counted.lazy()
    else:
        values = pairs.select(pl.col("__value").unique()).collect()
        if values.height <= DISTINCT_AS_BITS:
            bits = pl.Series([1 << i for i in range(values.height)], dtype=pl.UInt64)
            bit = pl.col("__value").replace_strict(values["__value"], bits).alias("__bit")
            return (
                pairs.select("person_id", bit)
                .group_by("person_id")
                .agg(
                    pl.col("__bit")
                    .bitwise_or()
                    .bitwise_count_ones()
                    .cast(pl.Int64)
                    .alias(feature.name)
                )
            )
    return pairs.unique().group_by("person_id").agg(pl.len().cast(pl.Int64).alias(feature.name))


def _texts_as_bits(pairs: pl.LazyFrame, name: str) -> pl.DataFrame | None:
    """(person_id, `name`: how many distinct texts `__value` the person's rows of `pairs`
    hold), or None when they hold more than `TEXT_AS_BITS` distinct texts (numbering them
    fails at the first beyond, early in the pass)."""
    numbered = pl.Categories.random(physical=pl.UInt8)
    number = pl.col("__value").cast(pl.Categorical(numbered)).to_physical()
    bits = pairs.select(
        "person_id",
        (number // 64).alias("__word"),
        number.replace_strict(*_BIT_OF_NUMBER).alias("__bits"),
    )
    try:
        return (
            bits.group_by("person_id", "__word")
            .agg(pl.col("__bits").bitwise_or().bitwise_count_ones())
            .group_by("person_id")
            .agg(pl.col("__bits").sum().cast(pl.Int64).alias(name))
            .collect(engine="streaming")
        )
    except pl.exceptions.ComputeError as error:
        if "more categories than the maximum" not in str(error):
            raise
        return None


def sequence(events: pl.LazyFrame, feature: Feature) -> pl.LazyFrame:
    """(person_id, TRUE) of the people with events of `feature.steps` in order: step by step,
    the events of the step that some event of the step before precedes, strictly and at most
    `feature.gap` earlier (`performed_in_order`, docs/segment_language.md)."""
    counted = events.filter(feature.condition).select("person_id", "timestamp", "name")

    def of_step(step: str) -> pl.LazyFrame:
        named = counted if step == "*" else counted.filter(pl.col("name") == step)
        return named.select("person_id", "timestamp")

    reached = of_step(feature.steps[0])
    for step in feature.steps[1:]:
        candidates = of_step(step)
        # at equal timestamps a candidate sorts first: an event reached at the same instant
        # does not precede it
        both = pl.concat(
            [
                candidates.with_columns(pl.lit(0, dtype=pl.Int8).alias(SEQUENCE_TAG)),
                reached.with_columns(pl.lit(1, dtype=pl.Int8).alias(SEQUENCE_TAG)),
            ]
        ).sort("person_id", "timestamp", SEQUENCE_TAG)
        latest = (
            pl.when(pl.col(SEQUENCE_TAG) == 1)
            .then(pl.col("timestamp"))
            .forward_fill()
            .over("person_id")
        )
        follows = pl.col(SEQUENCE_LATEST).is_not_null()
        if feature.gap is not None:
            follows &= pl.col("timestamp") - pl.col(SEQUENCE_LATEST) <= feature.gap
        reached = (
            both.with_columns(latest.alias(SEQUENCE_LATEST))
            .filter((pl.col(SEQUENCE_TAG) == 0) & follows)
            .select("person_id", "timestamp")
        )
    return reached.select("person_id").unique().with_columns(pl.lit(True).alias(feature.name))


def _mask(tests: tuple[tuple[str, pl.Expr], ...], test_columns: dict[str, str]) -> pl.Expr:
    """Whether an event counts for a feature: its tests, each computed once per event."""
    if not tests:
        return pl.lit(True)
    return pl.all_horizontal(pl.col(test_columns[text]) for text, _ in tests)


EventFeatures = pl.LazyFrame | list[pl.LazyFrame]
"""The event features of people: one frame, or several that each hold some of the feature
columns (none in two), each one row per person. People are joined to each in turn
(`with_features`): a frame in person order merges with the snapshot, which a full join of
the frames first would lose (at 10M people, 1.7 s of a 13.7 s evaluation)."""


def feature_frames(features: EventFeatures) -> list[pl.LazyFrame]:
    """The frames `features` consists of."""
    return features if isinstance(features, list) else [features]


def with_features(people: pl.LazyFrame, features: EventFeatures) -> pl.LazyFrame:
    """`people` with their event features: NULL where a frame has no row for them."""
    for frame in feature_frames(features):
        people = people.join(frame, on="person_id", how="left")
    return people


def segment_columns(
    people: pl.LazyFrame,
    features: EventFeatures,
    compiled: CompiledDefinitions,
    manual_members: pl.LazyFrame | None = None,
    previous: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """People joined with their event features (defaults filled) and one boolean column per
    segment (`__seg_<id>`), computed level by level. `previous` holds (segment_id, person_id,
    member_since) of the previous committed run for days_in_segment
    (`transforms.engines.tenure`); None: there is none."""
    frame = with_features(people, features)
    for sid in tenures([segment.predicate for segment in compiled.segments.values()]):
        since = SINCE_PREFIX + sid
        if previous is None:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Date).alias(since))
            continue
        kept = previous.filter(pl.col("segment_id") == sid).select(
            "person_id", pl.col("member_since").alias(since)
        )
        frame = frame.join(kept, on="person_id", how="left")
    frame = frame.with_columns(
        pl.col(f.name).fill_null(f.default)
        for f in compiled.features.values()
        if f.default is not None
    )
    for level in compiled.order:
        columns = []
        for sid in level:
            segment = compiled.segments[sid]
            if segment.manual:
                ids = (
                    manual_members.filter(pl.col("segment_id") == sid).select("person_id")
                    if manual_members is not None
                    else pl.LazyFrame(schema={"person_id": pl.String})
                )
                frame = frame.join(
                    ids.with_columns(pl.lit(True).alias(segment.column)),
                    on="person_id",
                    how="left",
                ).with_columns(pl.col(segment.column).fill_null(False))
            else:
                columns.append(segment.expr.fill_null(False).alias(segment.column))
        if columns:
            frame = frame.with_columns(columns)
    return frame


ROW, ORDER = "__row", "__order"


def segment_members(
    people: pl.LazyFrame,
    features: EventFeatures,
    compiled: CompiledDefinitions,
    manual_members: pl.LazyFrame | None = None,
    first_row: int = 0,
    previous: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """(segment_id, person_id, `__order`) of every member of every segment; `in_order` sorts
    them by segment, then in the snapshot's order (the key order, as ingest writes snapshots
    in person order).

    `manual_members` holds (segment_id, person_id) of manual segments; people not in the
    snapshot are never members. `__order` is one integer sort key (segment number, snapshot
    row), so the joins need not keep any order; `people` start at row `first_row` of the
    snapshot (a range of it). `previous` is the previous committed run's members, for
    days_in_segment (`segment_columns`).
    """
    people = people.with_row_index(ROW, offset=first_row)
    frame = segment_columns(people, features, compiled, manual_members, previous)
    ordered = sorted(sid for level in compiled.order for sid in level)
    if not ordered:
        return pl.LazyFrame(
            schema={"segment_id": pl.String, "person_id": pl.String, ORDER: pl.UInt64}
        )
    position = pl.col(ROW).cast(pl.UInt64)
    return pl.concat(
        [
            frame.filter(pl.col(compiled.segments[sid].column)).select(
                pl.lit(sid, dtype=pl.String).alias("segment_id"),
                "person_id",
                (pl.lit(index << 32, dtype=pl.UInt64) + position).alias(ORDER),
            )
            for index, sid in enumerate(ordered)
        ],
        how="vertical",
    )


def in_order(members: pl.DataFrame) -> pl.DataFrame:
    """`segment_members`' rows in key order: sorted only if the engine did not keep the
    order (joins of people and features in person order usually do; checking is cheap)."""
    if not members[ORDER].is_sorted():
        members = members.sort(ORDER)
    return members.drop(ORDER)
