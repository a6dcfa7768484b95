"""Engines other than Polars: the SQL of `transforms.sql`, run where the data is.

DuckDB runs in process and reads the lake's Parquet files itself (local lakes); for an
object-store lake the files are read through the project's storage layer and handed over as
Arrow. Spark is not wired yet.
"""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from transforms import lake
from transforms.compiler import Workspace
from transforms.sql import run_query
from transforms.storage import Root

ENGINES = ("polars", "duckdb")


def _parquet(root: Root, keys: list[str]) -> str:
    paths = ", ".join("'" + root.local_path(k).replace("'", "''") + "'" for k in keys)
    return f"read_parquet([{paths}])"


def duckdb_members(
    root: Root, day: date, workspace: Workspace, manual: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(members, snapshot person ids) of every segment for `day`, computed by DuckDB."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    per_day = lake.event_files(root, day)
    if root.is_local:
        people = _parquet(root, lake.people_files(root, day))
        days = [
            f"SELECT *, {order} AS __ingest_order FROM {_parquet(root, keys)}"
            for order, keys in enumerate(per_day)
        ]
        events = (
            f"(SELECT * EXCLUDE (__ingest_order) FROM ({' UNION ALL '.join(days)})"
            " QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY __ingest_order) = 1)"
            if len(per_day) > 1
            else _parquet(root, per_day[0])
        )
    else:
        con.register("__people", lake.scan_people(root, day).collect().to_arrow())
        con.register("__events", lake.scan_events(root, day).collect().to_arrow())
        people, events = "__people", "__events"
    if manual is not None:
        con.register("__manual", manual.to_arrow())
    sql = run_query(workspace, people, events, "__manual" if manual is not None else None)
    members = pl.from_arrow(con.sql(sql).to_arrow_table())
    snapshot = pl.from_arrow(con.sql(f"SELECT person_id FROM {people}").to_arrow_table())
    schema = {"segment_id": pl.String, "person_id": pl.String}
    return members.cast(schema) if members.height else pl.DataFrame(schema=schema), snapshot
