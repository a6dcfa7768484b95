"""Engines other than Polars: the SQL of `transforms.language.sql`, run where the data is.

DuckDB runs in process and reads the lake's Parquet files itself (local lakes); for an
object-store lake the files are read through the project's storage layer and handed over as
Arrow. Spark (in process as `local[N]`, on a cluster, or through Spark Connect) reads the
lake's Parquet files itself and runs the Spark SQL of the same tree; only the membership rows
and the snapshot's person ids come back to this process, as Arrow, for the diff. Spark reads
local lakes only (see `spark_members`). pyspark is imported when the spark engine is used.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING

import duckdb
import polars as pl
import pyarrow as pa

from transforms.config import Settings
from transforms.errors import ConfigError
from transforms.language.compiler import CompiledDefinitions
from transforms.language.sql import run_query
from transforms.storage import lake
from transforms.storage.roots import Root

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ENGINES = ("polars", "duckdb", "spark")
MEMBERS_SCHEMA = {"segment_id": pl.String, "person_id": pl.String}
# a session the spark engine starts in this process: quiet, on the loopback interface only
LOCAL_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "ERROR",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


def deduplicated_events(per_day: list[str]) -> str:
    """A relation of every event in `per_day` (one relation per ingest day, oldest first) once
    per event_id, the earliest ingest day winning. A row_number subquery, not QUALIFY, so that
    every engine reads it; its two helper columns are never selected by the run's query."""
    if len(per_day) == 1:
        return per_day[0]
    days = " UNION ALL ".join(
        f"SELECT *, {order} AS __ingest_order FROM {relation}"
        for order, relation in enumerate(per_day)
    )
    ranked = (
        "SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY __ingest_order)"
        f" AS __copy FROM ({days}) AS __days"
    )
    return f"(SELECT * FROM ({ranked}) AS __ranked WHERE __copy = 1)"


def _frames(members: pa.Table, snapshot: pa.Table) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(members, snapshot person ids) as the Polars frames the diff takes."""
    found = pl.from_arrow(members)
    members_frame = (
        found.cast(MEMBERS_SCHEMA) if found.height else pl.DataFrame(schema=MEMBERS_SCHEMA)
    )
    return members_frame, pl.from_arrow(snapshot)


# --- DuckDB --------------------------------------------------------------------------------


def _parquet(root: Root, keys: list[str]) -> str:
    paths = ", ".join("'" + root.local_path(k).replace("'", "''") + "'" for k in keys)
    return f"read_parquet([{paths}])"


def duckdb_members(
    root: Root, day: date, compiled: CompiledDefinitions, manual: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(members, snapshot person ids) of every segment for `day`, computed by DuckDB."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if root.is_local:
        people = _parquet(root, lake.people_files(root, day))
        events = deduplicated_events([_parquet(root, keys) for keys in lake.event_files(root, day)])
    else:
        con.register("__people", lake.scan_people(root, day).collect().to_arrow())
        con.register("__events", lake.scan_events(root, day).collect().to_arrow())
        people, events = "__people", "__events"
    if manual is not None:
        con.register("__manual", manual.to_arrow())
    sql = run_query(compiled, people, events, "__manual" if manual is not None else None)
    return _frames(
        con.sql(sql).to_arrow_table(), con.sql(f"SELECT person_id FROM {people}").to_arrow_table()
    )


# --- Spark ---------------------------------------------------------------------------------


def spark_session(settings: Settings) -> SparkSession:
    """The session the spark engine runs on: the active one if there is one (a notebook's, a
    test's), else one started from `settings` (spark_remote, or spark_master and spark_conf).
    Its SQL time zone is UTC, which the generated SQL's instants assume."""
    try:
        from pyspark.errors import PySparkException
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            "the spark engine needs pyspark, which is not installed",
            hint="install the spark extra (pip install 'segments[spark]') and Java 17",
        ) from exc
    builder = SparkSession.builder
    if settings.spark_remote:
        builder = builder.remote(settings.spark_remote)
    else:
        conf = {**LOCAL_SPARK_CONF, "spark.sql.session.timeZone": "UTC", **settings.spark_conf}
        builder = builder.master(settings.spark_master).appName("segments").config(map=conf)
    where = settings.spark_remote or settings.spark_master
    try:
        session = builder.getOrCreate()
    except (ImportError, PySparkException) as exc:
        raise ConfigError(
            f"cannot start Spark ({where}): {str(exc).splitlines()[0]}",
            hint="the spark engine needs Java 17 (JAVA_HOME or java on the PATH) for a local"
            " master, and the pyspark[connect] packages for spark_remote",
        ) from exc
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


@contextmanager
def _temp_views(spark: SparkSession) -> Iterator[list[str]]:
    """The names of the temp views of one evaluation, dropped afterwards."""
    views: list[str] = []
    try:
        yield views
    finally:
        for name in views:
            spark.catalog.dropTempView(name)


def _register(views: list[str], name: str, frame) -> str:
    """`frame` as a temp view named uniquely (several evaluations may share a session)."""
    view = f"{name}_{uuid.uuid4().hex[:8]}"
    frame.createOrReplaceTempView(view)
    views.append(view)
    return view


def spark_members(
    settings: Settings,
    root: Root,
    day: date,
    compiled: CompiledDefinitions,
    manual: pl.DataFrame | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(members, snapshot person ids) of every segment for `day`, computed by Spark (the
    session of `spark_session`) reading the lake's Parquet files itself."""
    if not root.is_local:
        raise ConfigError(
            f"the spark engine reads the lake's files itself, and {root.url} is an object store",
            hint="Spark reads s3:// through hadoop-aws (s3a://), which this version does not set"
            " up: use --engine polars or --engine duckdb for an object-store lake, or set `lake`"
            " to a path every Spark executor can read (a shared or mounted volume)",
        )

    spark = spark_session(settings)

    def read(keys: list[str]):
        return spark.read.parquet(*(root.local_path(k) for k in keys))

    with _temp_views(spark) as views:
        people = _register(views, "__people", read(lake.people_files(root, day)))
        events = deduplicated_events(
            [_register(views, "__events", read(keys)) for keys in lake.event_files(root, day)]
        )
        manual_view = None
        if manual is not None:
            rows = (
                manual.select("segment_id", "person_id")
                .to_arrow()
                .cast(pa.schema([("segment_id", pa.string()), ("person_id", pa.string())]))
            )
            manual_view = _register(views, "__manual", spark.createDataFrame(rows))
        sql = run_query(compiled, people, events, manual_view, dialect="spark")
        return _frames(
            spark.sql(sql).toArrow(), spark.sql(f"SELECT person_id FROM {people}").toArrow()
        )
