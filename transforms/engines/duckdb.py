"""The DuckDB engine: the SQL of `transforms.language.sql`, run in process.

DuckDB reads the lake's Parquet files itself on a local lake; for an object-store lake the
files are read through the project's storage layer and handed over as Arrow.
"""

from __future__ import annotations

import duckdb
import polars as pl
from sqlglot import exp

from transforms.config import Settings
from transforms.engines.registry import Inputs
from transforms.engines.relations import as_frames, deduplicated_events, person_ids
from transforms.engines.tenure import previous_members
from transforms.language.sql import run_query
from transforms.storage import lake
from transforms.storage.roots import Root

DIALECT = "duckdb"
UTC = exp.Set(
    expressions=[
        exp.SetItem(this=exp.EQ(this=exp.column("TimeZone"), expression=exp.Literal.string("UTC")))
    ]
)
"""The session's time zone, which the generated SQL's instants assume."""


def read_parquet(root: Root, keys: list[str]) -> exp.Expr:
    """A relation of the Parquet files `keys` of the local lake `root`."""
    paths = [exp.Literal.string(root.local_path(key)) for key in keys]
    return exp.ReadParquet(expressions=[exp.Array(expressions=paths)])


class DuckDBEngine:
    name = "duckdb"
    distributed = False
    folds_features = False

    def check(self, settings: Settings) -> None:
        """DuckDB reads any lake: nothing to check."""

    def members(self, inputs: Inputs) -> tuple[pl.DataFrame, pl.DataFrame]:
        con = duckdb.connect()
        con.execute(UTC.sql(dialect=DIALECT))
        root, day = inputs.lake, inputs.day
        people: exp.Expr
        if root.is_local:
            people = read_parquet(root, lake.people_files(root, day))
            events = deduplicated_events(
                [read_parquet(root, keys) for keys in lake.event_files(root, day)]
            )
        else:
            con.register("__people", lake.scan_people(root, day).collect().to_arrow())
            con.register("__events", lake.scan_events(root, day).collect().to_arrow())
            people, events = exp.to_table("__people"), exp.to_table("__events")
        manual = None
        if inputs.manual is not None:
            con.register("__manual", inputs.manual.to_arrow())
            manual = exp.to_table("__manual")
        previous = None
        kept = previous_members(root, day, inputs.compiled)
        if kept is not None:
            con.register("__previous", kept.to_arrow())
            previous = exp.to_table("__previous")
        sql = run_query(inputs.compiled, people, events, manual, DIALECT, previous)
        return as_frames(
            con.sql(sql).to_arrow_table(),
            con.sql(person_ids(people).sql(dialect=DIALECT)).to_arrow_table(),
        )


ENGINE = DuckDBEngine()
