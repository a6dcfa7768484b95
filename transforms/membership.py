"""Who is in each segment: event features in one pass, then every predicate, in order.

Pure functions of LazyFrames (no I/O): `event_features` aggregates the run's events into one
row per person with a column per feature (conditional aggregation, a single group-by);
`segment_members` joins them to the people snapshot, evaluates the segments level by level
(a segment only sees segments of earlier levels through `in_segment`) and returns
(segment_id, person_id) for every predicate that is TRUE.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from transforms.compiler import TIMESTAMP, Feature, Workspace

TEST_PREFIX = "__test_"
"""Columns of per-event tests, shared by the features that use them."""


AGGREGATE_OF = {
    "count": "sum",
    "first": "min",
    "last": "max",
    "sum": "sum",
    "min": "min",
    "max": "max",
    "avg": "mean",
}
"""The plain aggregate of each feature's masked input column."""


def _masked_input(feature: Feature, mask: pl.Expr) -> pl.Expr:
    """Per event, what the feature aggregates: whether it counts, or the timestamp or column
    value of an event that counts (NULL for the others, which every aggregate skips)."""
    if feature.aggregate == "count":
        return mask
    value = (
        pl.col("timestamp") if feature.aggregate in ("first", "last") else pl.col(feature.column)
    )
    return pl.when(mask).then(value)


def _aggregate(feature: Feature) -> pl.Expr:
    column = getattr(pl.col(feature.name), AGGREGATE_OF[feature.aggregate])()
    return column.cast(pl.Int64) if feature.aggregate == "count" else column


def earliest_needed(features: list[Feature], as_of: datetime) -> datetime | None:
    """The oldest event timestamp any feature can count, or None if some feature needs all."""
    starts = []
    for feature in features:
        bounds = [
            b
            for b in (feature.since, as_of - feature.within if feature.within else None)
            if b is not None
        ]
        if not bounds:
            return None
        starts.append(max(bounds))
    return min(starts) if starts else None


def event_features(events: pl.LazyFrame, workspace: Workspace) -> pl.LazyFrame:
    """One row per person who has events, one column per feature of the workspace."""
    features = list(workspace.features.values())
    if not features:
        return pl.LazyFrame(schema={"person_id": pl.String})
    visible = pl.col("timestamp") <= pl.lit(workspace.as_of, dtype=TIMESTAMP)
    names = {f.event for f in features}
    if "*" not in names:
        visible = visible & pl.col("name").is_in(sorted(names))
    earliest = earliest_needed(features, workspace.as_of)
    if earliest is not None:
        visible = visible & (pl.col("timestamp") >= pl.lit(earliest, dtype=TIMESTAMP))
    tests = {text: test for f in features for text, test in f.tests}
    test_columns = {text: f"{TEST_PREFIX}{i}" for i, text in enumerate(tests)}
    values = sorted({f.column for f in features if f.column} | {"timestamp"})
    return (
        events.filter(visible)
        .select("person_id", *values, *(test.alias(test_columns[t]) for t, test in tests.items()))
        .select(
            "person_id",
            *(_masked_input(f, _mask(f, test_columns)).alias(f.name) for f in features),
        )
        .group_by("person_id")
        .agg(_aggregate(f) for f in features)
    )


def _mask(feature: Feature, test_columns: dict[str, str]) -> pl.Expr:
    """Whether an event counts for `feature`: its tests, each computed once per event."""
    if not feature.tests:
        return pl.lit(True)
    return pl.all_horizontal(test_columns[text] for text, _ in feature.tests)


def segment_columns(
    people: pl.LazyFrame,
    features: pl.LazyFrame,
    workspace: Workspace,
    manual_members: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """People joined with their event features (defaults filled) and one boolean column per
    segment (`__seg_<id>`), computed level by level."""
    frame = people.join(features, on="person_id", how="left")
    frame = frame.with_columns(
        pl.col(f.name).fill_null(f.default)
        for f in workspace.features.values()
        if f.default is not None
    )
    for level in workspace.order:
        columns = []
        for sid in level:
            segment = workspace.segments[sid]
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


def segment_members(
    people: pl.LazyFrame,
    features: pl.LazyFrame,
    workspace: Workspace,
    manual_members: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """(segment_id, person_id) of every member of every segment, in segment order.

    `manual_members` holds (segment_id, person_id) of manual segments; people not in the
    snapshot are never members.
    """
    frame = segment_columns(people, features, workspace, manual_members)
    ordered = [sid for level in workspace.order for sid in level]
    if not ordered:
        return pl.LazyFrame(schema={"segment_id": pl.String, "person_id": pl.String})
    return pl.concat(
        [
            frame.filter(pl.col(workspace.segments[sid].column)).select(
                pl.lit(sid, dtype=pl.String).alias("segment_id"), "person_id"
            )
            for sid in sorted(ordered)
        ],
        how="vertical",
    )
