"""The ingest step on real files: formats, NULLs, time zones, quarantine, duplicates, failures."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal, assert_series_equal

from tests.support.workspace import (
    DAY,
    EVENTS_HEADER,
    EXPECTED_PEOPLE,
    PEOPLE_HEADER,
    lake_files,
    lake_table,
    land,
    parquet_bytes,
    person_row,
    s3_settings,
)
from transforms.errors import InputFileError, MissingInputError
from transforms.ingest.step import _first_occurrences, ingest, landing_changes, publish, stage
from transforms.storage import lake
from transforms.storage.lake import read_ingest_manifest, scan_events
from transforms.storage.records import IngestReport
from transforms.storage.roots import Root

PEOPLE_ROWS = (
    "00123,ada@example.com,Ada,pro,US,36,120.5,true,2026-01-31T10:00:00Z,\n"
    "00124,,Bo,trial,DE,,,,2026-01-31T12:00:00+02:00,2026-04-10\n"
)
EVENTS_ROWS = (
    'e1,00123,purchase,2026-03-30T09:00:00Z,25.0,USD,"{""source"": ""web""}"\n'
    "e2,00124,page_viewed,2026-03-30T23:59:59-01:00,,,\n"
)


def land_basic(settings, people_name="people.csv", events=True):
    land(settings, "people", people_name, PEOPLE_HEADER + PEOPLE_ROWS)
    if events:
        land(settings, "events", "events.csv", EVENTS_HEADER + EVENTS_ROWS)


def test_csv_snapshot_is_typed_with_nulls_and_utc(settings):
    land_basic(settings)
    report = ingest(settings, DAY)
    people = lake_table(settings, "people/snapshot_date=2026-03-30")
    assert_frame_equal(people, EXPECTED_PEOPLE)
    events = lake_table(settings, "events/ingest_date=2026-03-30")
    assert events["timestamp"].to_list() == [
        datetime(2026, 3, 30, 9, tzinfo=UTC),
        datetime(2026, 3, 31, 0, 59, 59, tzinfo=UTC),
    ]
    assert events["amount"].to_list() == [25.0, None]
    assert report.tables["people"].rows_written == 2
    assert report.tables["people"].quarantined == 0


def _as_jsonl() -> str:
    frame = EXPECTED_PEOPLE.with_columns(
        pl.col("created_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("trial_ends_on").cast(pl.String),
    )
    return frame.write_ndjson()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("people.csv.gz", PEOPLE_HEADER + PEOPLE_ROWS),
        ("people.jsonl", _as_jsonl()),
        ("people.ndjson.gz", _as_jsonl()),
        ("people.parquet", parquet_bytes(EXPECTED_PEOPLE)),
        (
            "people.parquet",
            parquet_bytes(  # naive timestamps, text dates, int-ish floats
                EXPECTED_PEOPLE.with_columns(
                    pl.col("created_at").dt.replace_time_zone(None),
                    pl.col("trial_ends_on").cast(pl.String),
                    pl.col("age").cast(pl.Float64),
                )
            ),
        ),
    ],
    ids=["csv.gz", "jsonl", "ndjson.gz", "parquet", "parquet-loose-types"],
)
def test_every_input_format_gives_the_same_rows(settings, name, content):
    land(settings, "people", name, content)
    ingest(settings, DAY)
    assert_frame_equal(lake_table(settings, "people/snapshot_date=2026-03-30"), EXPECTED_PEOPLE)


def test_several_files_of_a_day_are_read_together(settings):
    header, first, second = (PEOPLE_HEADER + PEOPLE_ROWS).splitlines(keepends=True)
    land(settings, "people", "part-1.csv", header + first)
    land(settings, "people", "part-2.csv.gz", header + second)
    report = ingest(settings, DAY)
    assert report.tables["people"].rows_written == 2
    assert len(report.tables["people"].files) == 2


BAD_PEOPLE = (
    "p1,ok@example.com,A,platinum,US,30,1,true,2026-01-01T00:00:00Z,\n"  # plan not allowed
    "p2,ok@example.com,B,free,US,forty,1,true,2026-01-01T00:00:00Z,\n"  # age not an integer
    "p3,ok@example.com,C,free,US,7,1,true,2026-01-01T00:00:00Z,\n"  # age below 13
    "p4,not-an-email,D,free,us,30,-5,true,2026-01-01T00:00:00Z,\n"  # 3 rules at once
    ",ok@example.com,E,free,US,30,1,true,2026-01-01T00:00:00Z,\n"  # no person_id
    "p6,ok@example.com,F,free,US,30,1,true,,\n"  # created_at is required
    "p7,ok@example.com,G,free,US,30,1,true,2026-01-01T00:00:00Z,\n"  # a good row
)


def test_rows_breaking_rules_are_quarantined_with_rule_and_reason(settings):
    land(settings, "people", "people.csv", PEOPLE_HEADER + BAD_PEOPLE)
    report = ingest(settings, DAY)
    kept = lake_table(settings, "people/snapshot_date=2026-03-30")
    assert kept["person_id"].to_list() == ["p7"]
    quarantine = lake_table(settings, "quarantine/people/snapshot_date=2026-03-30")
    by_row = {row["_source_row"]: row for row in quarantine.iter_rows(named=True)}
    assert {row: by_row[row]["_rules"] for row in by_row} == {
        1: "plan:validValues",
        2: "age:type",
        3: "age:range",
        4: "email:pattern, country:pattern, lifetime_value:range",
        5: "person_id:required",
        6: "created_at:required",
    }
    assert by_row[2]["age"] == "forty"  # the raw text is kept
    assert "age 'forty' is not a valid integer" in by_row[2]["_reason"]
    assert "plan 'platinum' is not one of free, trial, pro, enterprise" in by_row[1]["_reason"]
    assert "age 7 is outside the allowed range (>= 13 and <= 120)" in by_row[3]["_reason"]
    assert by_row[1]["_source_file"].endswith("people/2026-03-30/people.csv")
    people = report.tables["people"]
    assert (people.rows_read, people.rows_written, people.quarantined) == (7, 1, 6)
    assert people.broken_rules["age:type"] == 1
    assert not people.validation_success


def test_duplicate_person_ids_are_a_violation_all_copies_quarantined(settings):
    rows = (
        "p1,a@example.com,A,free,US,30,1,true,2026-01-01T00:00:00Z,\n"
        "p1,b@example.com,B,pro,US,30,1,true,2026-01-01T00:00:00Z,\n"
        "p2,c@example.com,C,pro,US,30,1,true,2026-01-01T00:00:00Z,\n"
    )
    land(settings, "people", "people.csv", PEOPLE_HEADER + rows)
    report = ingest(
        settings,
        DAY,
    )
    assert lake_table(settings, "people/snapshot_date=2026-03-30")["person_id"].to_list() == ["p2"]
    quarantine = lake_table(settings, "quarantine/people/snapshot_date=2026-03-30")
    assert quarantine["_rules"].to_list() == ["person_id:unique"] * 2
    assert report.tables["people"].broken_rules == {"person_id:unique": 2}


def test_duplicate_person_ids_across_validation_batches_are_found(settings):
    rows = "".join(
        f"p{i},a@example.com,A,free,US,30,1,true,2026-01-01T00:00:00Z,\n" for i in range(50)
    )
    land(settings, "people", "people.csv", PEOPLE_HEADER + rows + rows.splitlines()[7] + "\n")
    report = ingest(settings.model_copy(update={"validation_batch_rows": 5}), DAY)
    assert report.tables["people"].broken_rules == {"person_id:unique": 2}
    assert report.tables["people"].rows_written == 49


def test_resent_events_are_dropped_and_counted(settings):
    land(settings, "people", "people.csv", PEOPLE_HEADER + PEOPLE_ROWS)
    first = EVENTS_HEADER + EVENTS_ROWS
    land(settings, "events", "a.csv", first)
    land(settings, "events", "b.csv", EVENTS_HEADER + EVENTS_ROWS.splitlines()[0] + "\n")
    report = ingest(settings, DAY)
    events = lake_table(settings, "events/ingest_date=2026-03-30")
    assert sorted(events["event_id"].to_list()) == ["e1", "e2"]
    assert report.tables["events"].duplicates_dropped == 1
    assert report.tables["events"].quarantined == 0


def _ingest_day(settings, day, rows):
    land(settings, "people", "people.csv", PEOPLE_HEADER + PEOPLE_ROWS, day)
    land(settings, "events", "events.csv", EVENTS_HEADER + rows, day)
    return ingest(settings, day)


def _event_ids_seen(settings, day):
    return sorted(scan_events(Root(settings.lake), day).collect()["event_id"].to_list())


def test_events_ingested_on_an_earlier_date_are_dropped_as_resent(settings):
    day2 = DAY + timedelta(days=1)
    _ingest_day(settings, DAY, EVENTS_ROWS)
    resent = EVENTS_ROWS.splitlines()[1].replace("-01:00", "Z") + "\n"
    report = _ingest_day(settings, day2, resent + "e3,00123,login,2026-03-31T08:00:00Z,,,\n")
    events = report.tables["events"]
    assert (events.rows_written, events.duplicates_dropped) == (1, 1)
    assert events.checked_against == [DAY.isoformat()]
    assert lake_table(settings, "events/ingest_date=2026-03-31")["event_id"].to_list() == ["e3"]
    assert _event_ids_seen(settings, day2) == ["e1", "e2", "e3"]


def test_a_date_ingested_after_a_later_one_still_counts_each_event_once(settings):
    day2 = DAY + timedelta(days=1)
    _ingest_day(settings, day2, EVENTS_ROWS.splitlines()[0] + "\n")
    report = _ingest_day(settings, DAY, EVENTS_ROWS)
    assert report.tables["events"].checked_against == []
    assert _event_ids_seen(settings, day2) == ["e1", "e2"]


def test_events_of_people_not_in_the_snapshot_are_kept(settings):
    land(settings, "people", "people.csv", PEOPLE_HEADER + PEOPLE_ROWS)
    land(settings, "events", "e.csv", EVENTS_HEADER + "e9,stranger,login,2026-03-30T01:00:00Z,,,\n")
    ingest(settings, DAY)
    events = lake_table(settings, "events/ingest_date=2026-03-30")
    assert events["person_id"].to_list() == ["stranger"]


def test_a_day_without_events_writes_an_empty_partition(settings):
    land_basic(settings, events=False)
    report = ingest(settings, DAY)
    events = lake_table(settings, "events/ingest_date=2026-03-30")
    assert events.height == 0
    assert events.columns[:4] == ["event_id", "person_id", "name", "timestamp"]
    assert report.tables["events"].files == []


def test_extra_columns_are_ignored_and_missing_optional_ones_reported(settings):
    land(
        settings,
        "people",
        "people.csv",
        "person_id,plan,created_at,favourite_colour\np1,free,2026-01-01T00:00:00Z,blue\n",
    )
    report = ingest(settings, DAY)
    people = report.tables["people"]
    ((file, ignored),) = people.ignored_columns.items()
    assert ignored == ["favourite_colour"]
    assert "email" in people.missing_columns[file]
    assert lake_table(settings, "people/snapshot_date=2026-03-30")["email"].to_list() == [None]


def test_validation_json_and_manifest_are_kept(settings):
    land_basic(settings)
    report = ingest(settings, DAY)
    manifest = read_ingest_manifest(Root(settings.lake, settings.storage_options), DAY)
    assert manifest.attempt == report.attempt
    assert manifest.tables["people"].rows_written == 2
    (key,) = manifest.outputs["validation/people"]
    results = json.loads(lake_files(settings)[key])
    assert results[0]["success"] is True
    assert {"results", "statistics", "suite_name"} <= set(results[0])
    types = {r["expectation_config"]["type"] for r in results[0]["results"]}
    assert "expect_column_values_to_be_in_set" in types


def test_reingest_replaces_the_previous_attempt(settings):
    land_basic(settings)
    ingest(settings, DAY)
    first = lake_table(settings, "people/snapshot_date=2026-03-30")
    ingest(settings, DAY)
    files = [k for k in lake_files(settings) if k.startswith("people/")]
    assert len(files) == 1
    assert_frame_equal(lake_table(settings, "people/snapshot_date=2026-03-30"), first)
    assert len([k for k in lake_files(settings) if k.endswith(".validation.json")]) == 2


def test_an_ingest_removes_what_a_killed_ingest_of_its_date_staged(settings):
    land_basic(settings)
    # a run's ingest step staged the date, then the run was killed before its validate step
    stage(settings, DAY, lake.staging("ingest", DAY, lake.new_attempt()))
    assert any(k.startswith("_staging/ingest_date=2026-03-30/") for k in lake_files(settings))
    ingest(settings, DAY)
    assert not [k for k in lake_files(settings) if k.startswith("_staging/")]


def test_an_ingest_in_one_process_publishes_what_stage_and_publish_do_without_staging(
    settings, monkeypatch
):
    land_basic(settings)
    land(settings, "events", "bad.csv", EVENTS_HEADER + "e9,00123,login,not a time,,,\n")
    written = []
    write = Root.write_parquet

    def recorded(self, frame, key, *args, **kwargs):
        written.append(key)
        return write(self, frame, key, *args, **kwargs)

    monkeypatch.setattr(Root, "write_parquet", recorded)
    folders = ("people/snapshot_date=", "events/ingest_date=", "quarantine/events/ingest_date=")
    in_memory = ingest(settings, DAY)
    assert not [key for key in written if key.startswith("_staging/")]
    first = [lake_table(settings, f"{folder}2026-03-30") for folder in folders]
    assert first[2]["_source_file"].to_list() == [
        str(Path(settings.landing) / "events" / DAY.isoformat() / "bad.csv")
    ]

    folder = lake.staging("ingest", DAY, lake.new_attempt())
    stage(settings, DAY, folder)
    assert any(key.startswith("_staging/") for key in written)
    staged = publish(settings, DAY, folder, lake.new_attempt())
    for folder, frame in zip(folders, first, strict=True):
        assert_frame_equal(lake_table(settings, f"{folder}2026-03-30"), frame)
    for table in ("people", "events"):
        for count in ("rows_read", "rows_written", "quarantined", "rows_validated"):
            assert getattr(in_memory.tables[table], count) == getattr(staged.tables[table], count)


# --- fingerprints of the landing files: late and corrected files are noticed -----------------


def _recorded(path):
    """The fingerprint ingest should record for the local landing file at `path`."""
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
    return {"size": stat.st_size, "modified": modified, "etag": None}


def _fingerprints(report):
    return [f.model_dump() for f in report.fingerprints]


def test_the_manifest_records_a_fingerprint_of_each_landing_file_read(settings):
    people = land(settings, "people", "people.csv", PEOPLE_HEADER + PEOPLE_ROWS)
    first = land(settings, "events", "a.csv", EVENTS_HEADER + EVENTS_ROWS)
    line = '{"event_id": "e3", "person_id": "00123", "name": "login", "timestamp": "2026-03-30"}'
    second = land(settings, "events", "b.jsonl.gz", line + "\n")
    land(settings, "events", ".b.jsonl.gz.tmp", "an upload in progress, not read")
    report = ingest(settings, DAY)
    manifest = read_ingest_manifest(Root(settings.lake), DAY)
    tables = manifest.tables
    assert _fingerprints(tables["people"]) == [
        {"key": "people/2026-03-30/people.csv", **_recorded(people)}
    ]
    assert _fingerprints(tables["events"]) == [
        {"key": "events/2026-03-30/a.csv", **_recorded(first)},
        {"key": "events/2026-03-30/b.jsonl.gz", **_recorded(second)},
    ]
    assert manifest == report


def test_an_untouched_landing_has_no_changes(settings):
    land_basic(settings)
    assert landing_changes(settings, DAY) == []  # not ingested: nothing to compare with
    ingest(settings, DAY)
    assert landing_changes(settings, DAY) == []


def test_landing_changes_name_new_replaced_and_removed_files(settings):
    land_basic(settings)
    land(
        settings, "events", "early.csv", EVENTS_HEADER + "e7,00123,login,2026-03-30T01:00:00Z,,,\n"
    )
    ingest(settings, DAY)
    people = Path(settings.landing) / "people/2026-03-30/people.csv"
    before = people.stat().st_size
    more = "".join(person_row(f"p{i:04}") for i in range(60))
    land(settings, "people", "people.csv", PEOPLE_HEADER + PEOPLE_ROWS + more)
    land(settings, "events", "late.csv", EVENTS_HEADER + "e8,00124,login,2026-03-30T22:00:00Z,,,\n")
    (Path(settings.landing) / "events/2026-03-30/early.csv").unlink()
    assert landing_changes(settings, DAY) == [
        f"people/2026-03-30/people.csv: changed (size {before:,} -> {people.stat().st_size:,})",
        "events/2026-03-30/early.csv: removed since the ingest",
        "events/2026-03-30/late.csv: new since the ingest",
    ]
    assert people.stat().st_size >= 1000  # the size is shown with thousands separators
    ingest(settings, DAY)
    assert landing_changes(settings, DAY) == []


def test_a_file_rewritten_with_the_same_size_is_changed_by_its_modified_time(settings):
    land_basic(settings)
    ingest(settings, DAY)
    events = Path(settings.landing) / "events/2026-03-30/events.csv"
    recorded = _recorded(events)["modified"]
    events.write_text(EVENTS_HEADER + EVENTS_ROWS.replace("e2,", "e9,"))
    stat = events.stat()
    os.utime(events, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000))  # a microsecond later
    now = _recorded(events)["modified"]
    assert landing_changes(settings, DAY) == [
        f"events/2026-03-30/events.csv: changed (modified {recorded} -> {now})"
    ]


def test_a_new_file_of_an_unknown_format_is_a_change_that_ingest_refuses(settings):
    land_basic(settings)
    ingest(settings, DAY)
    land(settings, "events", "export.xlsx", "whatever")
    assert landing_changes(settings, DAY) == [
        "events/2026-03-30/export.xlsx: new since the ingest (of an unknown format: ingest"
        " refuses it)"
    ]
    with pytest.raises(InputFileError, match="unknown file format"):
        ingest(settings, DAY)


def test_a_manifest_written_before_fingerprints_reads_and_reports_no_changes(settings):
    land_basic(settings)
    ingest(settings, DAY)
    path = Path(settings.lake) / lake.ingest_manifest(DAY)
    manifest = json.loads(path.read_bytes())
    for table in manifest["tables"].values():
        del table["fingerprints"], table["checked_attempts"]
    path.write_text(json.dumps(manifest))
    report = IngestReport.model_validate(manifest)
    assert report.tables["people"].fingerprints is None
    assert report.tables["events"].rows_written == 2
    land(settings, "events", "late.csv", EVENTS_HEADER + "e8,00124,login,2026-03-30T22:00:00Z,,,\n")
    assert landing_changes(settings, DAY) == []  # what that ingest read is unknown


def test_reingest_after_a_late_file_counts_new_events_and_drops_resent_ones(settings):
    day0 = DAY - timedelta(days=1)
    _ingest_day(settings, day0, "e0,00123,login,2026-03-29T08:00:00Z,,,\n")
    _ingest_day(settings, DAY, EVENTS_ROWS)
    late = (
        "e0,00123,login,2026-03-29T08:00:00Z,,,\n"  # ingested on the day before
        + EVENTS_ROWS.splitlines()[1]  # ingested on the day
        + "\ne3,00124,login,2026-03-30T23:00:00Z,,,\n"
    )
    land(settings, "events", "late.csv", EVENTS_HEADER + late)
    assert landing_changes(settings, DAY) == ["events/2026-03-30/late.csv: new since the ingest"]
    events = ingest(settings, DAY).tables["events"]
    assert (events.rows_read, events.rows_written, events.duplicates_dropped) == (5, 3, 2)
    assert events.checked_against == [day0.isoformat()]
    assert [f.key for f in events.fingerprints] == [
        "events/2026-03-30/events.csv",
        "events/2026-03-30/late.csv",
    ]
    attempt = read_ingest_manifest(Root(settings.lake), DAY).attempt
    kept = [k for k in lake_files(settings) if k.startswith(lake.partition("events", DAY))]
    assert kept == [f"{lake.partition('events', DAY)}/part-{attempt}.parquet"]
    assert _event_ids_seen(settings, DAY) == ["e0", "e1", "e2", "e3"]
    assert landing_changes(settings, DAY) == []


def test_a_date_ingested_again_after_the_next_one_still_counts_each_event_once(settings):
    day2 = DAY + timedelta(days=1)
    root = Root(settings.lake)
    _ingest_day(settings, DAY, EVENTS_ROWS)
    _ingest_day(settings, day2, "e3,00123,login,2026-03-31T08:00:00Z,,,\n")
    assert lake.checked_against_earlier(root, [DAY, day2])
    land(settings, "events", "late.csv", EVENTS_HEADER + "e3,00123,login,2026-03-31T08:00:00Z,,,\n")
    ingest(settings, DAY)  # day2 checked against the events DAY held before
    assert lake_table(settings, "events/ingest_date=2026-03-30")["event_id"].sort().to_list() == [
        "e1",
        "e2",
        "e3",
    ]
    assert not lake.checked_against_earlier(root, [DAY, day2])
    assert _event_ids_seen(settings, DAY) == ["e1", "e2", "e3"]
    assert _event_ids_seen(settings, day2) == ["e1", "e2", "e3"]
    # a manifest of day2 written before the attempts checked were recorded: the order tells
    path = Path(settings.lake) / lake.ingest_manifest(day2)
    manifest = json.loads(path.read_bytes())
    del manifest["tables"]["events"]["checked_attempts"]
    path.write_text(json.dumps(manifest))
    assert not lake.checked_against_earlier(root, [DAY, day2])
    assert _event_ids_seen(settings, day2) == ["e1", "e2", "e3"]


def test_a_date_ingested_again_while_the_next_one_was_staged_still_counts_each_event_once(
    settings,
):
    day2 = DAY + timedelta(days=1)
    root = Root(settings.lake)
    _ingest_day(settings, DAY, EVENTS_ROWS)
    land(settings, "people", "people.csv", PEOPLE_HEADER + PEOPLE_ROWS, day2)
    land(
        settings,
        "events",
        "events.csv",
        EVENTS_HEADER + "e3,00123,login,2026-03-31T08:00:00Z,,,\n",
        day2,
    )
    folder = lake.staging("ingest", day2, lake.new_attempt())
    stage(settings, day2, folder)  # checks against the events DAY holds now
    land(settings, "events", "late.csv", EVENTS_HEADER + "e3,00123,login,2026-03-31T08:00:00Z,,,\n")
    ingest(settings, DAY)
    publish(settings, day2, folder, lake.new_attempt())  # an attempt named after DAY's
    assert not lake.checked_against_earlier(root, [DAY, day2])
    assert _event_ids_seen(settings, day2) == ["e1", "e2", "e3"]


@pytest.mark.s3
def test_on_s3_fingerprints_carry_the_etag_which_tells_content_changes(s3, bucket, prefix):
    settings = s3_settings(s3, prefix)
    people = f"{prefix}/landing/people/{DAY}/people.csv"
    events = f"{prefix}/landing/events/{DAY}/events.csv"
    assert bucket.put(people, (PEOPLE_HEADER + PEOPLE_ROWS).encode()) == 200
    assert bucket.put(events, (EVENTS_HEADER + EVENTS_ROWS).encode()) == 200
    ingest(settings, DAY)
    lake_root = Root(settings.lake, settings.storage_options)
    (recorded,) = read_ingest_manifest(lake_root, DAY).tables["events"].fingerprints
    assert recorded.key == f"events/{DAY}/events.csv"
    assert recorded.etag == bucket.etag(events)
    assert recorded.modified.endswith("+00:00")
    assert bucket.put(events, (EVENTS_HEADER + EVENTS_ROWS).encode()) == 200  # the same bytes
    assert landing_changes(settings, DAY) == []
    assert bucket.put(events, (EVENTS_HEADER + EVENTS_ROWS.replace("e2,", "e9,")).encode()) == 200
    assert landing_changes(settings, DAY) == [
        f"events/{DAY}/events.csv: changed (ETag {recorded.etag} -> {bucket.etag(events)})"
    ]


# --- inputs that fail the step: message names the file, the line where known, the fix ---------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "people.csv",
            PEOPLE_HEADER + PEOPLE_ROWS + "p9,x@y.z,Z,free,US,1,2,true,2026-01-01,,x\n",
            r"people\.csv, line 4: line has 11 fields where the header has 10",
        ),
        (
            "people.csv",
            (PEOPLE_HEADER + PEOPLE_ROWS).encode() + b"p9,caf\xe9,Z\n",
            r"people\.csv, line 4: line is not UTF-8 text",
        ),
        ("people.csv", "", r"people\.csv: the file is empty"),
        (
            "people.jsonl",
            '{"person_id": "1", "plan": "free", "created_at": "2026-01-01"}\n{oops\n',
            r"people\.jsonl, line 2: line is not a JSON object",
        ),
        (
            "people.parquet",
            b"PAR1 this is not parquet",
            r"people\.parquet: not a readable Parquet file",
        ),
        ("people.csv.gz", b"not gzip at all", r"people\.csv\.gz: cannot be decompressed"),
        (
            "people.csv",
            "person_id,email\np1,a@b.c\n",
            r"people\.csv: missing required column\(s\) plan, created_at",
        ),
        ("people.xlsx", "whatever", r"people\.xlsx: unknown file format"),
    ],
    ids=[
        "ragged",
        "not-utf8",
        "empty",
        "bad-jsonl",
        "bad-parquet",
        "bad-gzip",
        "missing-column",
        "unknown-format",
    ],
)
def test_unusable_files_fail_with_file_line_and_fix(settings, name, content, expected):
    if name.endswith(".gz"):  # land() would compress it: write the broken bytes as they are
        path = land(settings, "people", name.removesuffix(".gz"), content)
        path.rename(path.with_name(name))
    else:
        land(settings, "people", name, content)
    with pytest.raises(InputFileError, match=expected) as raised:
        ingest(settings, DAY)
    assert raised.value.hint
    assert lake_files(settings) == {}


def test_missing_people_snapshot_fails_and_says_what_to_land(settings):
    land(settings, "events", "events.csv", EVENTS_HEADER + EVENTS_ROWS)
    with pytest.raises(MissingInputError, match="no people snapshot for 2026-03-30") as raised:
        ingest(settings, DAY)
    assert "land the full people snapshot" in raised.value.hint
    assert lake_files(settings) == {}


def test_a_failure_in_events_leaves_the_lake_as_it_was(settings):
    land_basic(settings)
    ingest(settings, DAY)
    before = lake_files(settings)
    land(settings, "events", "more.csv", "event_id,person_id\ne5,00123\n")
    with pytest.raises(InputFileError, match="missing required column"):
        ingest(settings, DAY)
    assert lake_files(settings) == before


def test_a_landing_root_that_does_not_exist_is_named(settings):
    with pytest.raises(MissingInputError, match="the landing root .* does not exist"):
        ingest(settings, DAY)


def test_a_large_csv_file_read_from_its_path_gives_the_same_rows_and_errors(settings):
    from transforms.ingest.landing import LOCAL_READ_BYTES

    rows = "".join(person_row(f"p{i:06}") for i in range(LOCAL_READ_BYTES // 50))
    bad = "p9,not-an-email,Z,free,US,forty,1,true,2026-01-01T00:00:00Z,\n"
    path = land(settings, "people", "people.csv", PEOPLE_HEADER + rows + bad)
    assert path.stat().st_size >= LOCAL_READ_BYTES
    report = ingest(settings, DAY).tables["people"]
    assert report.rows_written == LOCAL_READ_BYTES // 50
    quarantine = lake_table(settings, "quarantine/people/snapshot_date=2026-03-30")
    assert quarantine.select("person_id", "email", "age", "_rules").rows() == [
        ("p9", "not-an-email", "forty", "age:type")
    ]
    land(settings, "people", "people.csv", PEOPLE_HEADER + rows + "p9,x@y.z,Z,free,US,1,2,t,,,x\n")
    line = LOCAL_READ_BYTES // 50 + 2
    with pytest.raises(InputFileError, match=rf"line {line}: line has 11 fields"):
        ingest(settings, DAY)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["e1", "e2", "", "E1"]), st.text(max_size=3))))
def test_the_first_of_each_event_id_is_found_as_polars_finds_it(ids):
    """Re-sent events are found by the ids' hashes, comparing the ids only where hashes
    repeat: the same rows as `is_first_distinct`."""
    values = pl.Series("event_id", ids, dtype=pl.String)
    assert_series_equal(_first_occurrences(values), values.is_first_distinct(), check_names=False)
