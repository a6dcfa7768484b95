"""The Spark engine: the Spark SQL of `transforms.language.sql`, run where the data is.

Spark (in process as `local[N]`, on a cluster, or through Spark Connect) reads the lake's
Parquet files itself and runs the Spark SQL of the run's query; only the membership rows and
the snapshot's person ids come back to this process, as Arrow, for the diff. Spark reads local
lakes only (`SparkEngine.check`). pyspark is imported when a session is started.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
from sqlglot import exp

from transforms.config import Settings
from transforms.engines.registry import Inputs
from transforms.engines.relations import as_frames, deduplicated_events, person_ids
from transforms.engines.tenure import previous_members
from transforms.errors import ConfigError
from transforms.language.sql import run_query
from transforms.storage import lake
from transforms.storage.roots import Root

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DIALECT = "spark"
# a session the spark engine starts in this process: quiet, on the loopback interface only
LOCAL_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "ERROR",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


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


def _register(views: list[str], name: str, frame) -> exp.Table:
    """`frame` as a temp view named uniquely (several evaluations may share a session)."""
    view = f"{name}_{uuid.uuid4().hex[:8]}"
    frame.createOrReplaceTempView(view)
    views.append(view)
    return exp.to_table(view)


class SparkEngine:
    name = "spark"
    folds_features = False

    def check(self, settings: Settings) -> None:
        """Spark reads the lake's files itself: the lake must be local (pyspark and, for a
        local master, Java 17 are checked as the session starts: `spark_session`)."""
        root = Root(settings.lake, settings.storage_options)
        if not root.is_local:
            raise ConfigError(
                f"the spark engine reads the lake's files itself, and {root.url} is an object"
                " store",
                hint="Spark reads s3:// through hadoop-aws (s3a://), which this version does not"
                " set up: use --engine polars or --engine duckdb for an object-store lake, or set"
                " `lake` to a path every Spark executor can read (a shared or mounted volume)",
            )

    def members(self, inputs: Inputs) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Computed by Spark (the session of `spark_session`) reading the lake's Parquet files
        itself."""
        spark = spark_session(inputs.settings)
        root, day = inputs.lake, inputs.day

        def read(keys: list[str]):
            return spark.read.parquet(*(root.local_path(k) for k in keys))

        with _temp_views(spark) as views:
            people = _register(views, "__people", read(lake.people_files(root, day)))
            events = deduplicated_events(
                [_register(views, "__events", read(keys)) for keys in lake.event_files(root, day)]
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
            kept = previous_members(root, day, inputs.compiled)
            if kept is not None:
                rows = kept.to_arrow().cast(
                    pa.schema(
                        [
                            ("segment_id", pa.string()),
                            ("person_id", pa.string()),
                            ("member_since", pa.date32()),
                        ]
                    )
                )
                previous = _register(views, "__previous", spark.createDataFrame(rows))
            sql = run_query(inputs.compiled, people, events, manual, DIALECT, previous)
            return as_frames(
                spark.sql(sql).toArrow(),
                spark.sql(person_ids(people).sql(dialect=DIALECT)).toArrow(),
            )


ENGINE = SparkEngine()
