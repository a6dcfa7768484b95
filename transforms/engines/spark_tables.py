"""The lake's tables as Spark's executors read and write them, and the diff they run.

With `--engine spark`, a run's members, its snapshot's person ids, the membership and the
changes never pass through the driver: the executors read the lake's Parquet files (local, or
s3:// through hadoop-aws as s3a://), write what they compute as Parquet parts into the
attempt's staging folder, and only counts come back (Spark `count`, and per-segment group-bys:
one row per segment). `diff_members` computes what `transforms.runs.diff.diff` computes, with
the same reasons (`transforms.engines.changes`), the same columns and types, each table
globally ordered by (segment_id, person_id) so that its parts read in part order are in the key
order the Polars diff of a later run expects (Spark compares strings by their UTF-8 bytes, as
Polars does). The runs step then moves the parts into the table partitions
(`transforms.storage.catalog.place_parts`).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from transforms.engines.changes import ReasonRule, reason_rules
from transforms.engines.registry import DiffCounts, FileColumn, StagedDiff
from transforms.errors import ConfigError, RecordError
from transforms.storage import lake
from transforms.storage.roots import Root

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

KEY = ["segment_id", "person_id"]
MEMBERSHIP = "segment_id string, person_id string, member_since date"
"""The columns of the membership table, as Spark types."""
CHANGES = (
    "segment_id string, person_id string, change string, previous_run_date date, reason string"
)
"""The columns of the changes table (`transforms.runs.diff.CHANGES_SCHEMA`), as Spark types."""


def s3a_url(url: str) -> str:
    """An s3:// address as hadoop-aws reads it: `s3://bucket/key` -> `s3a://bucket/key`."""
    scheme, _, rest = url.partition("://")
    return f"s3a://{rest}" if scheme == "s3" else url


def spark_path(root: Root, key: str) -> str:
    """The address by which Spark reads or writes `key` of `root`: a local path, or s3a://."""
    return root.local_path(key) if root.is_local else s3a_url(root.url_of(key))


def read_parquet(spark: SparkSession, root: Root, keys: list[str]) -> DataFrame:
    """The Parquet files (or folders of parts) `keys` of `root`, read by Spark; on an object
    store, a ConfigError when the cluster lacks hadoop-aws."""
    if root.is_local:
        return spark.read.parquet(*(spark_path(root, k) for k in keys))
    try:
        return spark.read.parquet(*(spark_path(root, k) for k in keys))
    except Exception as exc:  # py4j's or Spark Connect's, whose text names the class
        if "S3AFileSystem not found" not in str(exc):
            raise
        raise ConfigError(
            f"spark_s3a is set, and Spark cannot load hadoop-aws to read {root.url}"
            " (class org.apache.hadoop.fs.s3a.S3AFileSystem not found)",
            hint="put hadoop-aws of the cluster's Hadoop version and its AWS SDK bundle"
            " on the driver's and the executors' classpath (e.g. spark_conf:"
            " {spark.jars.packages: org.apache.hadoop:hadoop-aws:<version>}), or unset"
            " spark_s3a and use --engine polars or duckdb for this lake",
        ) from exc


def write_parts(frame: DataFrame, root: Root, folder: str) -> int:
    """`frame` written by the executors as zstd Parquet parts into `folder` of `root`
    (replacing what an earlier try wrote there); its rows, counted from the parts' footers."""
    path = spark_path(root, folder)
    frame.write.mode("overwrite").option("compression", "zstd").parquet(path)
    return frame.sparkSession.read.parquet(path).count()


def membership(spark: SparkSession, root: Root, keys: list[str]) -> DataFrame:
    """(segment_id, person_id, member_since) of a committed run's membership files `keys`
    (whatever engine wrote them); no rows for no files."""
    if not keys:
        return spark.createDataFrame([], MEMBERSHIP)
    return read_parquet(spark, root, keys).select(
        *KEY, _functions().col("member_since").cast("date")
    )


def diff_members(spark: SparkSession, root: Root, diff: StagedDiff) -> DiffCounts:
    """See `DistributedEngine.diff_members`: the previous membership and the staged members
    joined on the key, the rows on one side only explained; written by the executors."""
    f = _functions()
    context = diff.context
    previous = membership(spark, root, diff.previous).withColumn("in_previous", f.lit(True))
    current = read_parquet(spark, root, [diff.members]).select(*KEY)
    current = current.withColumn("in_current", f.lit(True))
    both = previous.join(current, KEY, "full_outer").select(
        *KEY,
        "member_since",
        f.coalesce("in_previous", f.lit(False)).alias("in_previous"),
        f.coalesce("in_current", f.lit(False)).alias("in_current"),
    )
    both = both.persist(_storage().MEMORY_AND_DISK)  # joined once for the two tables
    kept = both.where("in_current").select(
        *KEY, f.coalesce("member_since", f.lit(context.run_date)).alias("member_since")
    )
    snapshot = read_parquet(spark, root, [diff.snapshot]).select("person_id").distinct()
    actions = read_parquet(spark, root, [diff.manual_actions]).select(*KEY, "action")
    entered = f.col("in_current")
    changes = (
        both.where("in_current <> in_previous")
        .join(snapshot.withColumn("in_snapshot", f.lit(True)), "person_id", "left")
        .withColumn("in_snapshot", f.coalesce("in_snapshot", f.lit(False)))
        .join(actions, KEY, "left")
        .select(
            *KEY,
            f.when(entered, "entered").otherwise("exited").alias("change"),
            f.lit(context.previous_run_date).cast("date").alias("previous_run_date"),
            f.when(entered, _reason(reason_rules(context, "entered")))
            .otherwise(_reason(reason_rules(context, "exited")))
            .alias("reason"),
        )
    )
    try:
        for frame, folder, schema in (
            (kept, diff.membership, MEMBERSHIP),
            (changes, diff.changes, CHANGES),
        ):
            write_parts(_nullable(frame, schema).orderBy(*KEY), root, folder)
    finally:
        both.unpersist()
    written = {t: read_parquet(spark, root, [t]) for t in (diff.membership, diff.changes)}
    sizes = written[diff.membership].groupBy("segment_id").count().collect()
    moves = written[diff.changes].groupBy("segment_id", "change").count().collect()
    return DiffCounts(
        sizes={sid: n for sid, n in sizes},
        moves={(sid, change): n for sid, change, n in moves},
    )


SPARK_TYPES = {
    "string": "string",
    "date": "date",
    "timestamp": "timestamp",
    "integer": "bigint",
    "number": "double",
    "boolean": "boolean",
}
"""Contract logical types as Spark types."""
NEVER_USED = {
    "string": "",
    "date": "1970-01-01",
    "timestamp": "1970-01-01 00:00:00",
    "integer": 0,
    "number": 0.0,
    "boolean": False,
}
"""For each logical type, a value Spark can tell is not NULL (see `write_files`)."""


def write_files(
    spark: SparkSession,
    root: Root,
    keys: list[str],
    folder: str,
    columns: list[FileColumn],
    day: date,
    storage_options: dict,
) -> list[str]:
    """See `DistributedEngine.write_table_files`. A required column is written as a required
    Parquet column: Spark does so for an expression it knows is never NULL, here a coalesce
    with a value of its type, which is never used (a file with a NULL there is refused
    first)."""
    f = _functions()
    frame = read_parquet(spark, root, keys)
    required = [c.name for c in columns if c.required and c.name in frame.columns]
    if required:
        nulls = frame.where(" OR ".join(f"`{name}` IS NULL" for name in required))
        if nulls.limit(1).count():
            raise RecordError(
                f"the files {', '.join(keys)} hold NULL in {', '.join(required)}, which their"
                " readers are told is never NULL",
                hint="run the date again (`segments run --date D`) to rewrite them",
            )
    selected = []
    for column in columns:
        kind = SPARK_TYPES[column.logical_type]
        if column.name == "run_date":
            value = f.lit(day.isoformat()).cast("date")
        elif column.name in frame.columns:
            value = f.col(column.name).cast(kind)
        else:  # added to the contract after the run
            value = f.lit(None).cast(kind)
        if column.required:
            value = f.coalesce(value, f.lit(NEVER_USED[column.logical_type]).cast(kind))
        field_id = {"parquet.field.id": column.field_id}
        selected.append(value.alias(column.name, metadata=field_id))
    target = Root(folder, storage_options)
    path = target.local_path("") if target.is_local else s3a_url(folder)
    frame.select(*selected).write.option("compression", "zstd").parquet(path)
    written, other = [], []
    for info in target.list_files(""):
        if not lake.PART.fullmatch(info.name):
            other.append(info.key)  # Spark's _SUCCESS marker and checksums
        elif _rows_in(target, info.key):
            written.append(target.url_of(info.key))
        else:
            other.append(info.key)  # Spark writes a file of no rows for no rows
    target.delete(other)
    return written


def _rows_in(root: Root, key: str) -> int:
    """The rows of a Parquet file, from its footer."""
    with root.open(key) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _reason(rules: list[ReasonRule]) -> Column:
    """The reason the first of `rules` that holds gives, else "condition"."""
    f = _functions()
    chain = f
    for rule in rules:
        found = f.col(rule.column).isin(rule.values)
        chain = chain.when(found if rule.holds else ~found, rule.reason or f.col("action"))
    return chain.otherwise("condition")


def _nullable(frame: DataFrame, schema: str) -> DataFrame:
    """`frame`'s columns named in `schema` (Spark DDL), in its order, every one nullable as
    the Polars diff writes them: a union with no rows of that schema (Spark writes a column it
    knows has no NULL as a required Parquet column)."""
    empty = frame.sparkSession.createDataFrame([], schema)
    return frame.select(*empty.columns).unionByName(empty)


def _storage():
    """pyspark's StorageLevel, imported when a session is running."""
    from pyspark import StorageLevel

    return StorageLevel


def _functions():
    """pyspark.sql.functions, imported when a session is running."""
    from pyspark.sql import functions

    return functions
