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


def diff(
    previous: pl.DataFrame | None, current: pl.DataFrame, context: DiffContext
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(changes, current membership with member_since) of a run against the previous one.

    `previous` has (segment_id, person_id, member_since), or is None on the first run;
    `current` has (segment_id, person_id).
    """
    current = current.select(KEY)
    if previous is None:
        previous = pl.DataFrame(schema={**dict.fromkeys(KEY, pl.String), "member_since": pl.Date})
    actions = context.manual_actions.select(*KEY, "action")
    snapshot = context.snapshot.select("person_id").unique().with_columns(in_snapshot=True)
    entered = (
        current.join(previous.select(KEY), on=KEY, how="anti")
        .join(actions, on=KEY, how="left")
        .with_columns(change=pl.lit("entered"), reason=_reason(context, "entered"))
    )
    exited = (
        previous.select(KEY)
        .join(current, on=KEY, how="anti")
        .join(actions, on=KEY, how="left")
        .join(snapshot, on="person_id", how="left")
        .with_columns(pl.col("in_snapshot").fill_null(False))
        .with_columns(change=pl.lit("exited"), reason=_reason(context, "exited"))
    )
    changes = (
        pl.concat(
            [entered.select(*KEY, "change", "reason"), exited.select(*KEY, "change", "reason")]
        )
        .with_columns(previous_run_date=pl.lit(context.previous_run_date, dtype=pl.Date))
        .select(list(CHANGES_SCHEMA))
        .sort(KEY)
    )
    membership = (
        current.join(previous, on=KEY, how="left")
        .with_columns(pl.col("member_since").fill_null(context.run_date))
        .sort(KEY)
    )
    return changes, membership
