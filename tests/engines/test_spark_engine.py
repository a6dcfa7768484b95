"""The Spark engine against Polars and DuckDB: the same members, case by case.

Spark runs in local mode, one session for the test run (the `spark` fixture). Queries cost
Spark a fixed overhead each, so every language case becomes one segment of ONE workspace and
all of them run as one query; the test then compares segment by segment.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from tests.engines.test_sql_engines import committed
from tests.language.test_language import CASES, segment
from tests.support.language_fixture import AS_OF, DAY, EVENTS, PEOPLE, write_fixture
from tests.support.workspace import CONTRACTS, REPO, workspace_settings
from transforms.cli.app import app
from transforms.cli.demo import FIRST_DAY, SECOND_DAY, write_demo_workspace
from transforms.config import load_settings
from transforms.contracts.odcs import load_contract
from transforms.engines.membership import event_features, segment_members
from transforms.errors import ConfigError
from transforms.language.compiler import compile_segments
from transforms.language.polars import CompiledDefinitions
from transforms.language.sql import run_query
from transforms.runs.materialize import compile_definitions, evaluate
from transforms.runs.steps import run
from transforms.storage.roots import Root

pytestmark = pytest.mark.spark
MANUAL = pl.DataFrame(
    {"segment_id": ["do_not_contact", "do_not_contact"], "person_id": ["p01", "stranger"]}
)


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory) -> tuple[Path, Path]:
    return write_fixture(tmp_path_factory.mktemp("spark-language"))


def by_segment(rows: pl.DataFrame) -> dict[str, set[str]]:
    return {
        sid: set(group["person_id"])
        for (sid,), group in rows.group_by("segment_id")
        if sid is not None
    }


def polars_result(files, workspace: CompiledDefinitions, manual: pl.DataFrame | None) -> dict:
    people, events = files
    features = event_features(pl.scan_parquet(events), workspace)
    lazy_manual = manual.lazy() if manual is not None else None
    members = segment_members(pl.scan_parquet(people), features, workspace, lazy_manual)
    return by_segment(members.collect())


def duckdb_result(files, workspace: CompiledDefinitions) -> dict:
    people, events = files
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    query = run_query(workspace, f"read_parquet('{people}')", f"read_parquet('{events}')")
    return by_segment(con.sql(query).pl())


def spark_result(spark, files, sql: str, manual: pl.DataFrame | None = None) -> dict:
    """Run `sql`, which reads `people`, `events` and `manual_members`, on Spark."""
    people, events = files
    spark.read.parquet(str(people)).createOrReplaceTempView("people")
    spark.read.parquet(str(events)).createOrReplaceTempView("events")
    if manual is not None:
        spark.createDataFrame(manual.to_pandas()).createOrReplaceTempView("manual_members")
    return by_segment(pl.from_arrow(spark.sql(sql).toArrow()))


def disagreements(expected: dict, actual: dict, ids: list[str], names: dict) -> dict:
    return {
        names[sid]: (sorted(expected.get(sid, ())), sorted(actual.get(sid, ())))
        for sid in ids
        if expected.get(sid, set()) != actual.get(sid, set())
    }


def test_every_language_case_gives_the_same_members_on_spark(spark, fixture_files):
    contracts = load_contract(CONTRACTS, "people"), load_contract(CONTRACTS, "events")
    names = {f"case_{i:03d}": predicate for i, (predicate, _) in enumerate(CASES)}
    segments = {sid: segment(sid, predicate) for sid, predicate in names.items()}
    workspace, problems = compile_segments(segments, *contracts, AS_OF)
    assert problems == []
    ours = polars_result(fixture_files, workspace, None)
    theirs = spark_result(
        spark, fixture_files, run_query(workspace, "people", "events", None, "spark")
    )
    assert disagreements(ours, theirs, list(names), names) == {}
    assert disagreements(ours, duckdb_result(fixture_files, workspace), list(names), names) == {}
    assert sum(map(len, theirs.values())) > 200  # the cases do select people


# found while building the spark engine: each engine's own parser took text the language
# refuses (`2026`, `2026-3-1`, `2026-03-01T10:00`, a zone name), so Polars, DuckDB and Spark
# disagreed on CAST of text to DATE or TIMESTAMP
CAST_TEXTS = [
    "2026-03-01",
    " 2026-03-01 ",
    "2026-03-01 10:00:00",
    "2026-03-01T10:00:00Z",
    "2026-03-01T10:00:00.123+02:00",
    "2026-03-01 10:00:00+0200",
    "2026",
    "2026-03",
    "2026-3-1",
    "2026-03-01T10:00",
    "2026-03-01T10:00:00 UTC",
    "2026-02-30",
    "2026-03-01T25:00:00",
    "x",
    "",
]
CAST_CASES = [
    "CAST(first_name AS DATE) IS NOT NULL",
    "CAST(first_name AS TIMESTAMP) IS NOT NULL",
    "CAST(first_name AS TIMESTAMP) = TIMESTAMP '2026-03-01 08:00:00'",
    "CAST(first_name AS TIMESTAMP) = TIMESTAMP '2026-03-01 10:00:00'",
    "CAST(first_name AS DATE) = DATE '2026-03-01'",
]


def test_text_casts_take_the_same_forms_on_every_engine(spark, tmp_path):
    people = pl.concat([PEOPLE.head(1)] * len(CAST_TEXTS)).with_columns(
        person_id=pl.Series([f"t{i:02d}" for i in range(len(CAST_TEXTS))]),
        first_name=pl.Series(CAST_TEXTS),
    )
    files = tmp_path / "people.parquet", tmp_path / "events.parquet"
    people.write_parquet(files[0])
    EVENTS.write_parquet(files[1])
    contracts = load_contract(CONTRACTS, "people"), load_contract(CONTRACTS, "events")
    names = {f"cast_{i}": predicate for i, predicate in enumerate(CAST_CASES)}
    workspace, problems = compile_segments(
        {sid: segment(sid, predicate) for sid, predicate in names.items()}, *contracts, AS_OF
    )
    assert problems == []
    ours = polars_result(files, workspace, None)
    spark_sql = run_query(workspace, "people", "events", None, "spark")
    assert disagreements(ours, spark_result(spark, files, spark_sql), list(names), names) == {}
    assert disagreements(ours, duckdb_result(files, workspace), list(names), names) == {}
    assert ours["cast_0"] == {"t00", "t01"}
    assert ours["cast_2"] == {"t05"}  # t04 is 08:00:00.123


def test_the_example_definitions_as_compile_prints_them_run_on_spark(spark, fixture_files):
    """`segments compile --all --dialect spark` prints the query the engine runs; run as
    printed, it gives Polars' members of every example definition, manual ones included."""
    flags = ["--definitions", str(REPO / "segment_definitions"), "--contracts", str(CONTRACTS)]
    printed = CliRunner().invoke(
        app, ["compile", "--all", "--dialect", "spark", "--date", DAY.isoformat(), *flags]
    )
    assert printed.exit_code == 0, printed.output
    settings = load_settings(
        None, definitions=str(REPO / "segment_definitions"), contracts=str(CONTRACTS)
    )
    workspace = compile_definitions(settings, DAY)
    assert printed.stdout.strip() == run_query(
        workspace, "people", "events", "manual_members", "spark"
    )
    ours = polars_result(fixture_files, workspace, MANUAL)
    theirs = spark_result(spark, fixture_files, printed.stdout, MANUAL)
    ids = sorted(workspace.segments)
    assert disagreements(ours, theirs, ids, {sid: sid for sid in ids}) == {}
    assert len(theirs) >= 10 and theirs["do_not_contact"] == {"p01"}


def two_demo_runs(folder: Path, engine: str, first_run) -> list[pl.DataFrame]:
    """The demo workspace's two days run on `engine`; their membership and changes tables."""
    settings = workspace_settings(folder)
    files = write_demo_workspace(Root(settings.landing), Root(settings.inbox), 2_000)
    first_run(settings, engine)
    for key, data in files.later_uploads.items():
        Root(settings.inbox).write_bytes(key, data)
    run(settings, SECOND_DAY, engine=engine)
    return [
        committed(settings, day, table)
        for day in (FIRST_DAY, SECOND_DAY)
        for table in ("membership", "changes")
    ]


def test_runs_on_spark_commit_the_same_tables_as_on_polars(spark, tmp_path, monkeypatch):
    """Two days (the second re-sends events: deduplicated across ingest days), manual uploads,
    a definition per example; the first spark run goes through `segments run --engine spark`."""

    def through_the_cli(settings, engine: str) -> None:
        monkeypatch.setenv("SEGMENTS_INBOX", settings.inbox)
        flags = ["--landing", settings.landing, "--lake", settings.lake]
        flags += ["--definitions", settings.definitions, "--contracts", settings.contracts]
        result = CliRunner().invoke(
            app, ["run", "--date", FIRST_DAY.isoformat(), "--engine", engine, *flags]
        )
        assert result.exit_code == 0, result.output

    ours = two_demo_runs(tmp_path / "polars", "polars", lambda s, e: run(s, FIRST_DAY, engine=e))
    theirs = two_demo_runs(tmp_path / "spark", "spark", through_the_cli)
    for polars_table, spark_table in zip(ours, theirs, strict=True):
        assert polars_table.height > 0
        assert polars_table.equals(spark_table)


def test_spark_leaves_no_temp_views_behind(spark, tmp_path):
    settings = workspace_settings(tmp_path)
    write_demo_workspace(Root(settings.landing), Root(settings.inbox), 200)
    run(settings, FIRST_DAY, engine="spark")
    assert [t.name for t in spark.catalog.listTables() if t.name.startswith("__")] == []


def test_spark_refuses_an_object_store_lake_and_says_what_to_configure(tmp_path):
    settings = workspace_settings(tmp_path).model_copy(
        update={"lake": f"s3://bucket-{uuid.uuid4().hex[:6]}/lake"}
    )
    with pytest.raises(ConfigError) as refused:
        evaluate(settings, date(2026, 3, 30), engine="spark")
    message = str(refused.value)
    assert "object store" in message and "hadoop-aws" in message
    assert "--engine polars or --engine duckdb" in message


def test_event_properties_of_every_field_type_give_the_same_members_on_spark(
    spark, tmp_path_factory
):
    """The fields of the properties struct (integer, boolean, date, timestamp, text, number),
    NULL objects and NULL fields: Spark reads them as Polars and DuckDB do."""
    from tests.language import test_property_types as typed

    files = typed.write_files(tmp_path_factory.mktemp("spark-property-types"))
    contracts = load_contract(CONTRACTS, "people"), typed.EVENTS_CONTRACT
    names = {f"case_{i:03d}": predicate for i, (predicate, _) in enumerate(typed.CASES)}
    segments = {sid: segment(sid, predicate) for sid, predicate in names.items()}
    workspace, problems = compile_segments(segments, *contracts, AS_OF)
    assert problems == []
    ours = polars_result(files, workspace, None)
    theirs = spark_result(spark, files, run_query(workspace, "people", "events", None, "spark"))
    assert disagreements(ours, theirs, list(names), names) == {}
    assert all(ours.get(sid) for sid in names)  # every case selects somebody
