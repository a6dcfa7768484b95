"""Runs on the spark engine, whose executors stage the members, diff them and write the run's
tables (`transforms.engines.spark_tables`), commit what the polars engine commits, date after
date: manual uploads of every kind, a definition changed, a segment deleted and one added,
people leaving the snapshot, days_in_segment, person ids beyond ASCII. Engines can take turns
between dates. The committed tables are several parts named by the attempt, in key order; a
killed attempt's parts are cleaned up; no rows come back to the driver.

Spark runs in local mode (the session's `spark` fixture), its small shuffles left in several
partitions here (`several_parts`), so that the tables are written in several parts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from pyiceberg.expressions import EqualTo

from tests.support.workspace import EVENTS_HEADER, PEOPLE_HEADER, land, workspace_settings
from transforms.cli.demo import FIRST_DAY, SECOND_DAY, write_demo_workspace
from transforms.config import Settings
from transforms.runs.attempt import begin
from transforms.runs.iceberg import open_catalog, open_tables, publish_runs
from transforms.runs.steps import STEPS, commit_step, run
from transforms.storage import lake
from transforms.storage.catalog import committed_files, read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

pytestmark = pytest.mark.spark
DAYS = [date(2026, 4, 1) + timedelta(days=i) for i in range(4)]
PEOPLE = [f"p{i:02d}" for i in range(30)] + ["é-ana", "Zoë", "ß", "😀", "ａ", "Ω", "zz", "Z"]
"""Ids whose UTF-8 bytes sort apart from their code points' order in some engines (é, ß, ａ)."""
DEFINITIONS = {
    "vip": "name: VIP\ntype: manual\n",
    "blocked": "name: Blocked\ntype: manual\n",
    "pro": "name: Pro\ntype: data_driven\nwhere: plan = 'pro'\n",
    "buyer": "name: Buyer\ntype: data_driven\n"
    "where: event_count('purchase', within => '3 days') >= 1\n",
    "big_spender": "name: Big spender\ntype: data_driven\n"
    "where: event_sum('purchase', amount) > 20\n",
    "loyal_pro": "name: Loyal pro\ntype: data_driven\nwhere: days_in_segment('pro') >= 1\n",
    "free": "name: Free\ntype: data_driven\nwhere: plan = 'free' AND NOT in_segment('blocked')\n",
}
CHANGED = {  # from DAYS[2]: a changed definition, a deleted segment, a new one
    "big_spender": "name: Big spender\ntype: data_driven\n"
    "where: event_sum('purchase', amount) > 10\n",
    "free": None,
    "vip_buyer": "name: VIP buyer\ntype: data_driven\n"
    "where: in_segment('vip') AND in_segment('buyer')\n",
}
UPLOADS = {
    DAYS[0]: {
        "vip/first.csv": "person_id\np01\np02\np03\né-ana\nnobody\n",
        "blocked/list.csv": "person_id\np04\np05\nß\n",
    },
    DAYS[1]: {"vip/more.csv": "person_id\np04\n😀\n", "vip/remove/out.csv": "person_id\np02\n"},
    DAYS[2]: {"blocked/clear": "", "vip/replace/sync.csv": "person_id\np03\np05\nZoë\n😀\n"},
    DAYS[3]: {"blocked/again.csv": "person_id\np06\n", "vip/remove/z.csv": "person_id\nZoë\n"},
}


def definitions(day: date) -> dict[str, str]:
    if day < DAYS[2]:
        return DEFINITIONS
    changed = {**DEFINITIONS, **CHANGED}
    return {sid: text for sid, text in changed.items() if text is not None}


def workspace(folder: Path) -> Settings:
    """The landing files of every day (plans change, people leave and come back); the same
    files on every call."""
    settings = workspace_settings(folder).model_copy(update={"definitions": str(folder / "defs")})
    rng = random.Random(20260401)
    for day in DAYS:
        people = [p for p in PEOPLE if rng.random() > 0.15]
        rows = "".join(
            f"{p},x{PEOPLE.index(p)}@example.com,A,{rng.choice(['free', 'pro'])},US,30,1,true,"
            "2026-01-01T00:00:00Z,\n"
            for p in people
        )
        land(settings, "people", "p.csv", PEOPLE_HEADER + rows, day)
        events = "".join(
            f"{day}-{i},{rng.choice(PEOPLE)},{rng.choice(['login', 'purchase'])},"
            f"{day}T{rng.randint(0, 23):02d}:00:00Z,{rng.randint(1, 9)},USD,\n"
            for i in range(120)
        )
        land(settings, "events", "e.csv", EVENTS_HEADER + events, day)
    return settings


def run_day(settings: Settings, day: date, engine: str) -> None:
    """Deploy `day`'s definitions, drop its uploads, run it on `engine`."""
    folder = Path(settings.definitions)
    folder.mkdir(exist_ok=True)
    for path in folder.glob("*.yaml"):
        path.unlink()
    for sid, text in definitions(day).items():
        (folder / f"{sid}.yaml").write_text(text)
    for key, text in UPLOADS[day].items():
        Root(settings.inbox).write_bytes(key, text.encode())
    run(settings, day, engine=engine)


def committed(settings: Settings, day: date) -> dict[str, object]:
    """The committed membership and changes of `day` as read from its manifest's files in
    order, and the manifest's counts."""
    root = Root(settings.lake)
    manifest = read_manifest(root, read_catalog(root), day)
    tables = {t: read_table(root, manifest, t) for t in ("membership", "changes")}
    return {**tables, "counts": (manifest.people, manifest.rows, manifest.segments)}


def days_on(folder: Path, engines: list[str]) -> tuple[Settings, list[dict[str, object]]]:
    settings = workspace(folder)
    for day, engine in zip(DAYS, engines, strict=True):
        run_day(settings, day, engine)
    return settings, [committed(settings, day) for day in DAYS]


def assert_same(ours: list[dict[str, object]], theirs: list[dict[str, object]]) -> None:
    for day, (polars_day, spark_day) in enumerate(zip(ours, theirs, strict=True)):
        for name, expected in polars_day.items():
            if isinstance(expected, pl.DataFrame):
                assert expected.height > 0, (day, name)
                assert expected.equals(spark_day[name]), (day, name)  # rows, and their order
            else:
                assert expected == spark_day[name], (day, name)


@pytest.fixture(scope="module", autouse=True)
def several_parts(spark) -> Iterator[None]:
    """Spark's adaptive execution merges small shuffle partitions into one: not here."""
    setting = "spark.sql.adaptive.coalescePartitions.enabled"
    before = spark.conf.get(setting)
    spark.conf.set(setting, "false")
    yield
    spark.conf.set(setting, before)


@pytest.fixture(scope="module")
def polars_days(tmp_path_factory) -> list[dict[str, object]]:
    return days_on(tmp_path_factory.mktemp("polars-days"), ["polars"] * len(DAYS))[1]


@pytest.fixture(scope="module")
def spark_days(tmp_path_factory) -> tuple[Settings, list[dict[str, object]]]:
    return days_on(tmp_path_factory.mktemp("spark-days"), ["spark"] * len(DAYS))


def test_the_scenario_covers_every_reason_and_days_in_segment(polars_days):
    changes = pl.concat([day["changes"] for day in polars_days])
    reasons = set(changes["reason"])
    assert reasons >= {"new_segment", "segment_deleted", "definition_changed", "left_snapshot"}
    assert reasons >= {"added", "removed", "cleared", "replaced", "condition"}
    memberships = pl.concat([day["membership"] for day in polars_days])
    assert memberships.filter(segment_id="loyal_pro").height > 0
    assert {"é-ana", "ß", "😀", "Zoë"} <= set(memberships["person_id"])


def test_spark_commits_what_polars_commits_day_after_day(polars_days, spark_days):
    settings, theirs = spark_days
    root = Root(settings.lake)
    assert {read_manifest(root, read_catalog(root), d).engine for d in DAYS} == {"spark"}
    assert_same(polars_days, theirs)


def test_engines_can_take_turns_between_dates(polars_days, tmp_path):
    _, theirs = days_on(tmp_path, ["polars", "spark", "polars", "spark"])
    assert_same(polars_days, theirs)


def parquet_columns(root: Root, keys: list[str]) -> set[tuple]:
    """(name, physical type, logical type, optional) of the Parquet columns of the files."""
    return {
        (c.name, c.physical_type, str(c.logical_type), c.max_definition_level)
        for key in keys
        for c in pq.ParquetFile(root.local_path(key)).schema
    }


def test_a_spark_run_commits_its_tables_as_parts_named_by_its_attempt(spark_days, tmp_path):
    settings, _ = spark_days
    root = Root(settings.lake)
    catalog = read_catalog(root)
    manifest = read_manifest(root, catalog, DAYS[-1])
    for table in ("membership", "changes"):
        files = manifest.files[table]
        assert len(files) > 1
        assert files == [
            lake.data_part(table, DAYS[-1], manifest.attempt, i) for i in range(len(files))
        ]
        listed = {info.key for info in root.list_files(lake.partition(table, DAYS[-1]))}
        assert listed == set(files)  # nothing else: no markers, no checksums
        assert committed_files(root, table)[1] == [root.url_of(key) for key in files]
    published = publish_runs(settings, [DAYS[-1]])
    assert published.runs[DAYS[-1].isoformat()]["membership"] == manifest.rows["membership"]
    polars_settings = workspace(tmp_path)
    run_day(polars_settings, DAYS[0], "polars")
    polars_root = Root(polars_settings.lake)
    polars_manifest = read_manifest(polars_root, read_catalog(polars_root), DAYS[0])
    for table in ("membership", "changes"):
        assert parquet_columns(root, manifest.files[table]) == parquet_columns(
            polars_root, polars_manifest.files[table]
        )


def test_a_spark_attempt_killed_after_its_moves_is_cleaned_up_and_a_rerun_commits_the_same(
    polars_days, tmp_path
):
    settings = workspace(tmp_path)
    run_day(settings, DAYS[0], "spark")
    for key, text in UPLOADS[DAYS[1]].items():
        Root(settings.inbox).write_bytes(key, text.encode())
    killed = begin(settings, DAYS[1], engine="spark")
    for step in STEPS:
        if step is not commit_step:
            step(settings, killed)  # then the process dies: no commit, no discard
    root = Root(settings.lake)

    def left_by_the_run(attempt: str) -> list[str]:
        """Its files in the run's tables and staging (its ingest published what it read)."""
        found = root.list_files("", recursive=True)
        run_files = ("membership/", "changes/", "runs/", "_staging/run_date=")
        return [i.key for i in found if attempt in i.key and i.key.startswith(run_files)]

    assert any(key.startswith("membership/") for key in left_by_the_run(killed.attempt))
    run(settings, DAYS[1], engine="spark")
    assert left_by_the_run(killed.attempt) == []
    first = committed(settings, DAYS[1])
    run(settings, DAYS[1], engine="spark")
    again = committed(settings, DAYS[1])
    assert_same(polars_days[1:2], [first])
    assert_same([first], [again])
    manifest = read_manifest(root, read_catalog(root), DAYS[1])
    for keys in manifest.files.values():
        assert all(re.search(rf"/part-{manifest.attempt}-\d{{5}}\.parquet$", k) for k in keys)


LIMIT = 50
"""The most rows a collect may bring to the driver in a run: the per-segment counts."""


def test_a_spark_run_brings_no_rows_to_the_driver(spark, tmp_path, monkeypatch):
    from pyspark.sql.classic.dataframe import DataFrame

    largest = []

    def limited(method: str, size):
        real = getattr(DataFrame, method)

        def call(self, *args, **kwargs):
            result = real(self, *args, **kwargs)
            largest.append(size(result))
            assert size(result) <= LIMIT, f"{method} brought {size(result)} rows to the driver"
            return result

        monkeypatch.setattr(DataFrame, method, call)

    limited("collect", len)
    limited("toPandas", len)
    limited("toArrow", lambda table: table.num_rows)
    settings = workspace_settings(tmp_path)
    files = write_demo_workspace(Root(settings.landing), Root(settings.inbox), 2_000)
    run(settings, FIRST_DAY, engine="spark")
    for key, data in files.later_uploads.items():
        Root(settings.inbox).write_bytes(key, data)
    run(settings, SECOND_DAY, engine="spark")
    assert largest and max(largest) <= LIMIT
    root = Root(settings.lake)
    manifest = read_manifest(root, read_catalog(root), SECOND_DAY)
    assert manifest.rows["membership"] > 10 * LIMIT and manifest.people > 10 * LIMIT


def test_the_executors_write_the_iceberg_tables_of_a_spark_run(spark_days):
    """A Spark run's Iceberg data files are written by the executors (several, nothing else
    left in their folder), and the tables hold the lake's rows of every run."""
    settings, _ = spark_days
    publish_runs(settings)
    root, tables = Root(settings.lake), open_tables(settings, open_catalog(settings))
    catalog = read_catalog(root)
    for day in DAYS:
        manifest = read_manifest(root, catalog, day)
        for name in ("membership", "changes"):
            which = EqualTo("run_date", day.isoformat())
            scan = tables[name].scan(row_filter=which)
            published = pl.from_arrow(scan.to_arrow()).drop("run_date")
            expected = read_table(root, manifest, name)
            assert_frame_equal(published, expected, check_row_order=False, check_dtypes=False)
            files = [task.file.file_path for task in scan.plan_files()]
            assert len(files) > 1  # parts, not one file from this process
    current = pl.from_arrow(tables["membership_current"].scan().to_arrow()).drop("run_date")
    latest = read_table(root, read_manifest(root, catalog, DAYS[-1]), "membership")
    assert_frame_equal(current, latest, check_row_order=False, check_dtypes=False)
    warehouse = Path(settings.lake) / "iceberg"
    strays = [p for p in warehouse.rglob("*") if p.is_file() and "/data/" in str(p)]
    assert all(p.name.startswith("part-") and p.suffix == ".parquet" for p in strays)
