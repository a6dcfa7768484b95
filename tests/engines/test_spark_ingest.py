"""The ingest step on Spark's executors (`transforms.engines.spark_ingest`) against the Polars
ingest, on the same landing files: the same tables, quarantine and counts, over two dates with
every kind of refused row, re-sent events, several files per table and object columns. Spark in
local mode (the `spark` session of the test session)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.ingest.test_ingest import BAD_PEOPLE
from tests.support.workspace import (
    DAY,
    EVENTS_HEADER,
    PEOPLE_HEADER,
    land,
    person_row,
    workspace_settings,
)
from transforms.config import Settings
from transforms.engines import spark_ingest
from transforms.errors import InputFileError, MissingInputError
from transforms.ingest.step import ingest
from transforms.storage import lake
from transforms.storage.records import IngestReport
from transforms.storage.roots import Root

DAY2 = DAY + timedelta(days=1)
EVENTS_DAY1 = (
    'e1,p7,purchase,2026-03-30T09:00:00Z,25.0,USD,"{""source"": ""web"", ""campaign"": ""x""}"\n'
    "e2,p7,page_viewed,2026-03-30T23:59:59-01:00,,,\n"
    "e3,p8,purchase,not-a-time,5,USD,\n"  # timestamp:type
    "e4,p8,purchase,2026-03-30T10:00:00Z,-3,usd,\n"  # amount:range, currency:validValues
    ",p8,login,2026-03-30T10:00:00Z,,,\n"  # event_id:required
    'e5,p8,login,2026-03-30T11:00:00Z,,,"[1, 2]"\n'  # properties:type
)
EVENTS_DAY1_LATE = (  # a second file: e1 again (re-sent), and a new one
    "e1,p7,purchase,2026-03-30T09:00:00Z,25.0,USD,\n"
    'e6,p9,signup,2026-03-30T12:00:00Z,,,"{""plan"": ""pro""}"\n'
)
EVENTS_DAY1_JSONL = '{"event_id": "e7", "person_id": "p7", "name": "login", "timestamp": "2026-03-30T13:00:00Z", "properties": {"source": "app", "price": 3.5}}\n'  # noqa: E501
EVENTS_DAY2 = (
    "e2,p7,page_viewed,2026-03-31T00:59:59Z,,,\n"  # ingested on day 1: re-sent
    "e8,p7,purchase,2026-03-31T09:00:00Z,12.5,EUR,\n"
    "e8,p7,purchase,2026-03-31T09:00:00Z,12.5,EUR,\n"  # re-sent within the day
)


def _land_two_days(settings: Settings) -> None:
    people = BAD_PEOPLE + person_row("p8") + person_row("p7")  # p7 twice: person_id:unique
    land(settings, "people", "a.csv", PEOPLE_HEADER + people)
    land(settings, "people", "b.csv.gz", PEOPLE_HEADER + person_row("p9", "pro"))
    land(settings, "events", "a.csv", EVENTS_HEADER + EVENTS_DAY1)
    land(settings, "events", "b.csv", EVENTS_HEADER + EVENTS_DAY1_LATE)
    land(settings, "events", "c.jsonl", EVENTS_DAY1_JSONL)
    day2_people = person_row("p7") + person_row("p8", "trial") + "p10,bad,A,free,US,30,1,true,,\n"
    land(settings, "people", "people.csv", PEOPLE_HEADER + day2_people, DAY2)
    land(settings, "events", "events.csv", EVENTS_HEADER + EVENTS_DAY2, DAY2)


def spark_ingest_day(spark, settings: Settings, day: date) -> IngestReport:
    """What `transforms.ingest.step.ingest` does, on the executors."""
    root = Root(settings.lake)
    attempt = lake.new_attempt()
    folder = lake.staging("ingest", day, attempt)
    try:
        spark_ingest.stage(spark, settings, day, folder)
        return spark_ingest.publish(spark, settings, day, folder, attempt)
    finally:
        root.delete_folder(folder)


def _outputs(settings: Settings, report: IngestReport) -> dict[str, pl.DataFrame]:
    """Every table output of an ingest, read in the order its manifest lists its files."""
    root = Root(settings.lake)
    return {
        name: pl.concat([root.read_parquet([key]) for key in keys])
        for name, keys in report.outputs.items()
        if not name.startswith(("validation/", "fingerprints/"))
    }


def _counts(report: IngestReport) -> dict[str, dict]:
    """What a report says of each table, but for timings, the attempts of each lake and what
    only the Polars ingest does (skip the people rows that passed before)."""
    skipped = {"seconds", "validation_seconds", "rows_validated", "validated_against"}
    return {
        table: {k: v for k, v in vars(r).items() if k not in skipped}
        | {"checked_attempts": sorted(r.checked_attempts or {})}
        for table, r in report.tables.items()
    }


def test_spark_ingest_writes_what_the_polars_ingest_writes(spark, tmp_path: Path) -> None:
    on_polars = workspace_settings(tmp_path)
    on_spark = on_polars.model_copy(update={"lake": str(tmp_path / "spark-lake")})
    _land_two_days(on_polars)
    for day in (DAY, DAY2):
        expected, found = ingest(on_polars, day), spark_ingest_day(spark, on_spark, day)
        assert _counts(found) == _counts(expected)
        tables, written = _outputs(on_polars, expected), _outputs(on_spark, found)
        assert tables.keys() == written.keys()
        for name, table in tables.items():
            assert_frame_equal(written[name], table, check_row_order=True)
        assert "fingerprints/people" not in found.outputs  # every row is validated
    people = found.tables["people"]  # day 2: p10 (bad email, no created_at) is refused
    assert (people.rows_read, people.rows_written, people.quarantined) == (3, 2, 1)
    assert people.rows_validated == 3
    assert found.tables["events"].duplicates_dropped == 2


def test_day_one_refuses_every_kind_of_row(spark, settings: Settings) -> None:
    _land_two_days(settings)
    report = spark_ingest_day(spark, settings, DAY)
    people, events = report.tables["people"], report.tables["events"]
    assert people.broken_rules["person_id:unique"] == 2
    assert people.broken_rules["age:type"] == 1
    assert events.broken_rules == {
        "timestamp:type": 1,
        "amount:range": 1,
        "currency:validValues": 1,
        "event_id:required": 1,
        "properties:type": 1,
    }
    assert events.duplicates_dropped == 1
    assert events.undeclared_keys == {"properties.campaign": 1}
    assert not people.validation_success
    kept = Root(settings.lake).read_parquet(report.outputs["people"])
    assert kept["person_id"].to_list() == sorted(kept["person_id"].to_list())
    documents = Root(settings.lake).read_bytes(report.outputs["validation/events"][0])
    assert json.loads(documents)[0]["results"]  # Great Expectations' own result document


def test_a_file_that_cannot_be_read_is_named_and_nothing_is_published(spark, settings) -> None:
    land(settings, "people", "people.csv", PEOPLE_HEADER + person_row("p1"))
    land(settings, "events", "events.csv", "event_id,person_id\ne1,p1\n")  # no name, timestamp
    with pytest.raises(InputFileError, match="missing required column") as raised:
        spark_ingest_day(spark, settings, DAY)
    assert raised.value.file.endswith("events/2026-03-30/events.csv")
    assert lake.read_ingest_manifest(Root(settings.lake), DAY) is None


def test_no_events_file_gives_an_empty_events_table(spark, settings) -> None:
    land(settings, "people", "people.csv", PEOPLE_HEADER + person_row("p1"))
    report = spark_ingest_day(spark, settings, DAY)
    events = Root(settings.lake).read_parquet(report.outputs["events"])
    assert events.height == 0
    assert report.tables["people"].rows_written == 1


def test_no_people_snapshot_is_refused(spark, settings) -> None:
    land(settings, "events", "events.csv", EVENTS_HEADER + EVENTS_DAY1)
    with pytest.raises(MissingInputError, match="no people snapshot"):
        spark_ingest_day(spark, settings, DAY)


def test_segments_ingest_runs_on_the_executors_with_engine_spark(spark, settings) -> None:
    from typer.testing import CliRunner

    from tests.cli.test_app import roots
    from transforms.cli.app import app

    land(settings, "people", "people.csv", PEOPLE_HEADER + BAD_PEOPLE)
    command = ["ingest", "--date", DAY.isoformat(), "--engine", "spark", "--json"]
    result = CliRunner().invoke(app, [*command, *roots(settings)])
    assert result.exit_code == 0, result.output
    report = IngestReport.model_validate(json.loads(result.stdout))
    assert report.tables["people"].quarantined == 6
    parts = report.outputs["people"]  # the executors' parts, moved into the partition
    assert parts == [lake.data_part("people", DAY, report.attempt, i) for i in range(len(parts))]
