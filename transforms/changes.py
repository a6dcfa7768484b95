"""Enter/exit records: a pure function of two membership frames and what explains them.

`diff` is exactly the set difference of the previous and the current membership, both ways,
with the most specific reason first (STORAGE.md): `new_segment` / `segment_deleted`,
`definition_changed`, `left_snapshot`, `added` / `removed` / `cleared` (manual uploads),
`condition`. It also carries `member_since` over for people who stay. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from transforms.person_order import contains

KEY = ["segment_id", "person_id"]
CHANGES_SCHEMA = {
    "segment_id": pl.String,
    "person_id": pl.String,
    "change": pl.String,
    "previous_run_date": pl.Date,
    "reason": pl.String,
}


@dataclass(frozen=True)
class DiffContext:
    """What a run knows besides the two memberships."""

    run_date: date
    previous_run_date: date | None
    previous_definitions: dict[str, str]
    """Segment id -> definition hash, as recorded by the previous committed run."""
    current_definitions: dict[str, str]
    snapshot: pl.DataFrame
    """person_id of everyone in the run's people snapshot."""
    manual_actions: pl.DataFrame
    """(segment_id, person_id, action): the last manual action of the run per person and
    segment, action one of added, removed, cleared."""


def _reason(context: DiffContext, change: str) -> pl.Expr:
    previous = context.previous_definitions
    current = context.current_definitions
    changed = sorted(s for s in current if s in previous and previous[s] != current[s])
    segment = pl.col("segment_id")
    action = pl.col("action")
    if change == "entered":
        return (
            pl.when(~segment.is_in(sorted(previous)))
            .then(pl.lit("new_segment"))
            .when(segment.is_in(changed))
            .then(pl.lit("definition_changed"))
            .when(action == "added")
            .then(pl.lit("added"))
            .otherwise(pl.lit("condition"))
        )
    return (
        pl.when(~segment.is_in(sorted(current)))
        .then(pl.lit("segment_deleted"))
        .when(segment.is_in(changed))
        .then(pl.lit("definition_changed"))
        .when(~pl.col("in_snapshot"))
        .then(pl.lit("left_snapshot"))
        .when(action.is_in(["removed", "cleared"]))
        .then(action)
        .otherwise(pl.lit("condition"))
    )


def in_key_order(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` sorted by (segment_id, person_id), sorting only if it is not already (runs list
    members in that order, and the committed membership is stored in it)."""
    segment, person = pl.col("segment_id"), pl.col("person_id")
    same_segment = segment == segment.shift()
    ascending = (segment > segment.shift()) | (same_segment & (person > person.shift()))
    if frame.height < 2 or frame.select(ascending.slice(1).all()).item():
        return frame
    return frame.sort(KEY)


def diff(
    previous: pl.DataFrame | None, current: pl.DataFrame, context: DiffContext
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(changes, current membership with member_since) of a run against the previous one.

    `previous` has (segment_id, person_id, member_since), or is None on the first run;
    `current` has (segment_id, person_id). Both in key order, merged in one linear pass: a key
    that appears twice is in both.
    """
    if previous is None:
        previous = pl.DataFrame(schema={**dict.fromkeys(KEY, pl.String), "member_since": pl.Date})
    merged = _merged(in_key_order(previous.select(*KEY, "member_since")), in_key_order(current))
    del previous, current  # a caller that passes them without keeping them frees them here
    membership = merged.filter(pl.col("in_current")).select(
        *KEY,
        pl.when(pl.col("in_previous"))
        .then(pl.col("member_since"))
        .otherwise(pl.lit(context.run_date))
        .alias("member_since"),
    )
    changed = merged.filter(pl.col("in_previous") != pl.col("in_current"))  # in key order
    in_snapshot = contains(context.snapshot["person_id"], changed["person_id"])
    actions = context.manual_actions.select(*KEY, "action")
    entered = pl.col("in_current")
    changes = (
        changed.with_columns(in_snapshot=in_snapshot)
        .join(actions, on=KEY, how="left", maintain_order="left")
        .with_columns(
            change=pl.when(entered).then(pl.lit("entered")).otherwise(pl.lit("exited")),
            previous_run_date=pl.lit(context.previous_run_date, dtype=pl.Date),
            reason=pl.when(entered)
            .then(_reason(context, "entered"))
            .otherwise(_reason(context, "exited")),
        )
        .select(list(CHANGES_SCHEMA))
    )
    return changes, membership


def _merged(previous: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """Every key of either membership once, in key order, with `in_previous`, `in_current`
    and the previous `member_since`: per segment, the two lists of people merged."""
    previous_of, current_of = _by_segment(previous), _by_segment(current)
    person = pl.col("person_id")
    twice = ((person == person.shift(-1)) | (person == person.shift())).fill_null(False)
    parts = []
    for segment in sorted(previous_of.keys() | current_of.keys()):
        sides = [
            previous_of.get(segment, previous.clear()).lazy().with_columns(side=pl.lit(1, pl.Int8)),
            current_of.get(segment, current.clear())
            .lazy()
            .select(*KEY, pl.lit(None, pl.Date).alias("member_since"), side=pl.lit(2, pl.Int8)),
        ]
        parts.append(
            sides[0]
            .merge_sorted(sides[1], key="person_id")
            .with_columns(twice=twice)
            # a key in both: keep its previous row (it carries member_since)
            .filter(~pl.col("twice") | (pl.col("side") == 1))
            .select(
                *KEY,
                "member_since",
                in_previous=(pl.col("side") == 1),
                in_current=(pl.col("side") == 2) | pl.col("twice"),
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={**previous.schema, "in_previous": pl.Boolean, "in_current": pl.Boolean}
        )
    return pl.concat(pl.collect_all(parts))


def _by_segment(members: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Each segment's rows of a membership in key order: slices, not copies."""
    runs = members["segment_id"].rle().struct.unnest()
    starts = runs["len"].cum_sum() - runs["len"]
    return {
        segment: members.slice(start, length)
        for segment, start, length in zip(runs["value"], starts, runs["len"], strict=True)
    }
