"""The Spark engine: the Spark SQL of `transforms.language.sql`, run where the data is.

Spark (in process as `local[N]`, on a cluster, or through Spark Connect) reads the lake's
Parquet files itself and runs the Spark SQL of the run's query. In a run the engine is
distributed (`DistributedEngine`): the executors ingest the landing files
(`transforms.engines.spark_ingest`), write the members and the snapshot's person ids
into the attempt's staging folder, then diff them against the previous run's membership files
and write the run's tables (`transforms.engines.spark_tables`); only counts come back to this
process. `segments preview` and `evaluate` collect the members (`SparkEngine.members`). Spark
reads a local lake (a folder every executor sees), or an s3:// lake through hadoop-aws
(`s3a://`) when the cluster provides it (`spark_s3a`; `SparkEngine.check`). pyspark is imported
when a session is started.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
from sqlglot import exp

from transforms.config import Settings
from transforms.engines import spark_ingest
from transforms.engines.registry import DiffCounts, FileColumn, Inputs, StagedDiff
from transforms.engines.relations import as_frames, deduplicated_events, person_ids
from transforms.engines.spark_tables import (
    diff_members,
    membership,
    read_parquet,
    write_files,
    write_parts,
)
from transforms.engines.tenure import previous_files, tenure_segments
from transforms.errors import ConfigError
from transforms.language.sql import run_query
from transforms.storage import lake
from transforms.storage.records import IngestReport, TableReport
from transforms.storage.roots import Root

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DIALECT = "spark"
# a session the spark engine starts: quiet, in UTC; with a local master, on the loopback
# interface only (a cluster's executors must reach the driver at an address of its own)
SESSION_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "ERROR",
    "spark.sql.session.timeZone": "UTC",
}
LOOPBACK_SPARK_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
S3A_FILESYSTEM = "org.apache.hadoop.fs.s3a.S3AFileSystem"


def s3a_conf(storage_options: dict[str, Any]) -> dict[str, str]:
    """The `spark.hadoop.fs.s3a.*` settings with which hadoop-aws reads what s3fs reads with
    the lake's `storage_options`: the endpoint (TLS or not from its scheme), the key, secret
    and session token, the region, and path-style addressing when the options ask for it
    (`config_kwargs: {s3: {addressing_style: path}}`) or name an endpoint (an S3-compatible
    server) without asking for `virtual`. Options left out leave hadoop-aws' defaults (its
    credential chain: the AWS_* variables, the instance's role)."""
    options = {**storage_options, **(storage_options.get("client_kwargs") or {})}
    addressing = ((options.get("config_kwargs") or {}).get("s3") or {}).get("addressing_style")
    endpoint = options.get("endpoint_url")
    conf = {"fs.s3a.impl": S3A_FILESYSTEM}
    if endpoint:
        conf["fs.s3a.endpoint"] = str(endpoint)
        scheme = str(endpoint).partition("://")[0].lower()
        if scheme in ("http", "https"):
            conf["fs.s3a.connection.ssl.enabled"] = str(scheme == "https").lower()
    if addressing == "path" or (endpoint and addressing != "virtual"):
        conf["fs.s3a.path.style.access"] = "true"
    elif addressing == "virtual":
        conf["fs.s3a.path.style.access"] = "false"
    for option, key in (
        ("key", "fs.s3a.access.key"),
        ("secret", "fs.s3a.secret.key"),
        ("token", "fs.s3a.session.token"),
        ("region_name", "fs.s3a.endpoint.region"),
    ):
        if options.get(option):
            conf[key] = str(options[option])
    if options.get("token"):
        conf["fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
        )
    return {f"spark.hadoop.{key}": value for key, value in conf.items()}


def _on_s3(root: Root) -> bool:
    return "s3" in root.fs.protocol or "s3a" in root.fs.protocol


def session_conf(settings: Settings) -> dict[str, str]:
    """The Spark settings of a session the engine starts on `settings.spark_master`: quiet, in
    UTC, on the loopback interface for a local master, hadoop-aws' for an s3:// lake when
    `spark_s3a` is set; `spark_conf` overrides any of them."""
    conf = dict(SESSION_SPARK_CONF)
    if settings.spark_master.startswith("local"):
        conf.update(LOOPBACK_SPARK_CONF)
    lake = Root(settings.lake, settings.storage_options)
    if settings.spark_s3a and _on_s3(lake):
        conf.update(s3a_conf(settings.storage_options))
    return {**conf, **settings.spark_conf}


def spark_session(settings: Settings) -> SparkSession:
    """The session the spark engine runs on: the active one if there is one (a notebook's, a
    test's), else one started from `settings` (spark_remote, or spark_master and
    `session_conf`). Its SQL time zone is UTC, which the generated SQL's instants assume."""
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
        builder = (
            builder.master(settings.spark_master)
            .appName("segments")
            .config(map=session_conf(settings))
        )
    where = settings.spark_remote or settings.spark_master
    # the Python the executors run the ingest tasks (this package) in: this process's, unless
    # spark_conf or the environment names another (`spark.pyspark.python`, PYSPARK_PYTHON)
    python = settings.spark_conf.get("spark.pyspark.python", sys.executable)
    os.environ.setdefault("PYSPARK_PYTHON", python)
    try:
        session = builder.getOrCreate()
    except (ImportError, PySparkException) as exc:
        raise ConfigError(
            f"cannot start Spark ({where}): {str(exc).splitlines()[0]}",
            hint="the spark engine needs Java 17 (JAVA_HOME or java on the PATH) for a local"
            " master, and the pyspark[connect] packages for spark_remote",
        ) from exc
    session.conf.set("spark.sql.session.timeZone", "UTC")
    # instants as the other engines write them (Spark's default is the legacy INT96)
    session.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
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


def _register(views: list[str], name: str, frame) -> exp.Table:
    """`frame` as a temp view named uniquely (several evaluations may share a session)."""
    view = f"{name}_{uuid.uuid4().hex[:8]}"
    frame.createOrReplaceTempView(view)
    views.append(view)
    return exp.to_table(view)


class SparkEngine:
    name = "spark"
    distributed = True
    folds_features = False

    def check(self, settings: Settings) -> None:
        """Spark reads the lake's files itself: the lake must be local, or on S3 with
        `spark_s3a` set (pyspark and, for a local master, Java 17 are checked as the session
        starts: `spark_session`)."""
        root = Root(settings.lake, settings.storage_options)
        if root.is_local:
            return
        if not _on_s3(root):
            raise ConfigError(
                f"the spark engine reads the lake's files itself, and {root.url} is an object"
                " store it cannot read (through hadoop-aws, `spark_s3a` reads s3:// lakes only)",
                hint="use --engine polars or --engine duckdb for this lake, or set `lake` to an"
                " s3:// URL or a path every Spark executor can read",
            )
        if not settings.spark_s3a:
            raise ConfigError(
                f"the spark engine reads the lake's files itself, and {root.url} is an object"
                " store",
                hint="if the Spark cluster provides hadoop-aws (with the AWS SDK jars of its"
                " Hadoop), set `spark_s3a: true` and Spark reads the lake as s3a://; else use"
                " --engine polars or --engine duckdb for an object-store lake, or set `lake` to"
                " a path every Spark executor can read (a shared or mounted volume)",
            )

    def members(self, inputs: Inputs) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Computed by Spark (the session of `spark_session`) reading the lake's Parquet files
        itself, and collected to this process (`segments preview`, `evaluate`)."""
        spark = spark_session(inputs.settings)
        with _temp_views(spark) as views:
            members, snapshot = _run(spark, inputs, views)
            return as_frames(members.toArrow(), snapshot.toArrow())

    def stage_members(self, inputs: Inputs, members: str, snapshot: str) -> tuple[int, int]:
        """Computed as `members` computes them, and written by the executors."""
        spark = spark_session(inputs.settings)
        with _temp_views(spark) as views:
            rows, people = _run(spark, inputs, views)
            people_count = write_parts(people, inputs.lake, snapshot)
            return people_count, write_parts(rows, inputs.lake, members)

    def stage_ingest(self, settings: Settings, day: date, folder: str) -> dict[str, TableReport]:
        """Run by the executors: `transforms.engines.spark_ingest.stage`."""
        return spark_ingest.stage(spark_session(settings), settings, day, folder)

    def publish_ingest(
        self, settings: Settings, day: date, folder: str, attempt: str
    ) -> IngestReport:
        """Run by the executors: `transforms.engines.spark_ingest.publish`."""
        return spark_ingest.publish(spark_session(settings), settings, day, folder, attempt)

    def write_table_files(
        self,
        settings: Settings,
        keys: list[str],
        folder: str,
        columns: list[FileColumn],
        day: date,
    ) -> list[str]:
        """Written by the executors: `transforms.engines.spark_tables.write_files`."""
        root = Root(settings.lake, settings.storage_options)
        spark = spark_session(settings)
        return write_files(spark, root, keys, folder, columns, day, settings.storage_options)

    def diff_members(self, settings: Settings, diff: StagedDiff) -> DiffCounts:
        """Run by the executors: `transforms.engines.spark_tables.diff_members`."""
        root = Root(settings.lake, settings.storage_options)
        return diff_members(spark_session(settings), root, diff)


def _run(spark: SparkSession, inputs: Inputs, views: list[str]) -> tuple[DataFrame, DataFrame]:
    """(the run's members, the snapshot's person ids) as Spark frames of the run's query over
    the lake's files, registered in `views`. The manual members come from this process; the
    previous run's member_since, which days_in_segment reads, Spark reads from its files."""
    root, day = inputs.lake, inputs.day
    people = _register(views, "__people", read_parquet(spark, root, lake.people_files(root, day)))
    events = deduplicated_events(
        [
            _register(views, "__events", read_parquet(spark, root, keys))
            for keys in lake.event_files(root, day)
        ]
    )
    manual = None
    if inputs.manual is not None:
        rows = (
            inputs.manual.select("segment_id", "person_id")
            .to_arrow()
            .cast(pa.schema([("segment_id", pa.string()), ("person_id", pa.string())]))
        )
        manual = _register(views, "__manual", spark.createDataFrame(rows))
    previous = None
    ids = tenure_segments(inputs.compiled)
    if ids:
        kept = membership(spark, root, previous_files(root, day))
        previous = _register(views, "__previous", kept.where(kept.segment_id.isin(ids)))
    sql = run_query(inputs.compiled, people, events, manual, DIALECT, previous)
    return spark.sql(sql), spark.sql(person_ids(people).sql(dialect=DIALECT))


ENGINE = SparkEngine()
