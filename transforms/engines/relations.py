"""What the SQL engines (DuckDB, Spark) read and hand back, as sqlglot trees and Polars frames.

Both run the run's query of `transforms.language.sql` over relations they name their own way
(files, registered tables, temp views); the events of several ingest days become one relation
here, each event once, and the rows they compute come back as the frames the diff takes.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
from sqlglot import exp

MEMBERS_SCHEMA = {"segment_id": pl.String, "person_id": pl.String}


def deduplicated_events(per_day: list[exp.Expr]) -> exp.Expr:
    """A relation of every event in `per_day` (one relation per ingest day, oldest first) once
    per event_id, the earliest ingest day winning. A row_number subquery, not QUALIFY, so that
    every engine reads it; its two helper columns are never selected by the run's query."""
    if len(per_day) == 1:
        return per_day[0]
    days = exp.union(
        *(
            exp.select(exp.Star(), exp.alias_(exp.Literal.number(order), "__ingest_order")).from_(
                relation
            )
            for order, relation in enumerate(per_day)
        ),
        distinct=False,
    )
    first_copy = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column("event_id")],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("__ingest_order"))]),
    )
    ranked = exp.select(exp.Star(), exp.alias_(first_copy, "__copy")).from_(days.subquery("__days"))
    return (
        exp.select(exp.Star())
        .from_(ranked.subquery("__ranked"))
        .where(exp.EQ(this=exp.column("__copy"), expression=exp.Literal.number(1)))
        .subquery()
    )


def person_ids(people: exp.Expr) -> exp.Select:
    """The query of the person_id column of the people snapshot `people`."""
    return exp.select("person_id").from_(people)


def as_frames(members: pa.Table, snapshot: pa.Table) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(members, snapshot person ids) as the Polars frames the diff takes."""
    found = pl.from_arrow(members)
    members_frame = (
        found.cast(MEMBERS_SCHEMA) if found.height else pl.DataFrame(schema=MEMBERS_SCHEMA)
    )
    return members_frame, pl.from_arrow(snapshot)
