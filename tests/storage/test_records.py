"""The run records read what earlier versions of segments wrote: the fixtures are files a real
run wrote before the records carried a `format_version` (a run of the demo's two days, at 200
people; these files are of the second day)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from transforms.errors import RecordError
from transforms.storage.records import (
    Attempt,
    CatalogFile,
    FeatureState,
    IngestReport,
    RunManifest,
    TableReport,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


ADDED_SINCE = {
    "format_version",
    "errors_file",
    "rows_validated",
    "validated_against",
    "suite_hash",
    "undeclared_keys",
}
"""Keys the records gained after the fixtures were written (an older file reads them as
their defaults)."""


def unversioned(value: object) -> object:
    """A JSON value without the keys added since the fixtures, at any depth."""
    if isinstance(value, dict):
        return {k: unversioned(v) for k, v in value.items() if k not in ADDED_SINCE}
    if isinstance(value, list):
        return [unversioned(v) for v in value]
    return value


def test_a_manifest_of_before_the_models_loads():
    manifest = RunManifest.from_bytes(fixture("run_manifest.json"), "run_manifest.json")
    assert manifest.format_version == 1
    assert (manifest.run_date, manifest.previous_run_date) == ("2026-03-31", "2026-03-30")
    assert manifest.attempt == "20261201T014932320369-b82b8b"
    assert manifest.people == 220 and manifest.rows == {"membership": 589, "changes": 294}
    assert manifest.segments["adult_members"].size == 142
    assert manifest.features == "folded" and manifest.ingested_by_run
    assert manifest.definitions_changed.new == []
    assert manifest.inputs["contracts"]["people.odcs.yaml"] == "7b3516b48bda4fbd"
    (refused,) = manifest.manual.rejected
    assert refused.moved_to == "_rejected/2026-03-31/vip_customers__broken-export.csv"
    assert [a.applied for a in manifest.manual.applied] == [5, 0]
    assert manifest.manual.applied[0].unknown == ["not-a-customer@example.net"]
    assert len(manifest.files["feature_partials"]) == 2
    state = manifest.feature_state
    assert state.format == 2 and state.partials[0][:2] == (date(2026, 3, 30), date(2025, 12, 31))
    assert state == FeatureState.from_bytes(fixture("feature_state.json"), "feature_state.json")


def test_the_records_written_now_keep_every_key_of_before():
    for name, model in [
        ("run_manifest.json", RunManifest),
        ("ingest_manifest.json", IngestReport),
        ("people.report.json", TableReport),
        ("feature_state.json", FeatureState),
        ("attempt_plan.json", Attempt),
        ("catalog.json", CatalogFile),
    ]:
        before = json.loads(fixture(name))
        written = json.loads(model.from_bytes(fixture(name), name).to_bytes())
        assert written["format_version"] == 1
        assert unversioned(written) == before, name


def test_an_ingest_manifest_and_its_staged_report_of_before_load():
    report = IngestReport.from_bytes(fixture("ingest_manifest.json"), "ingest_manifest.json")
    events = report.tables["events"]
    assert (events.rows_read, events.rows_written, events.duplicates_dropped) == (156, 131, 25)
    assert events.checked_attempts == {"2026-03-30": "20261201T014920052324-fe4fc8"}
    assert events.fingerprints[0].key == "events/2026-03-31/events.jsonl"
    assert events.fingerprints[0].etag is None
    assert report.outputs["people"] == [
        "people/snapshot_date=2026-03-31/part-20261201T014932320369-b82b8b.parquet"
    ]
    staged = TableReport.from_bytes(fixture("people.report.json"), "people.report.json")
    assert staged.rows_read == 220 and staged.seconds == {"read": 0.011}


def test_a_staged_attempt_and_the_catalog_of_before_load():
    attempt = Attempt.from_bytes(fixture("attempt_plan.json"), "attempt_plan.json")
    assert attempt.day == date(2026, 3, 31) and attempt.engine == "polars"
    assert attempt.catalog.previous(attempt.day) == date(2026, 3, 30)
    assert attempt.inputs["definitions"]["vip_customers.yaml"] == "48ef1e42d63a689a"
    catalog = CatalogFile.from_bytes(fixture("catalog.json"), "catalog.json").catalog("v1")
    assert catalog.latest == date(2026, 3, 31) and catalog.superseded == {}


def test_a_record_of_a_newer_format_is_refused():
    data = json.loads(fixture("run_manifest.json")) | {"format_version": 2}
    with pytest.raises(ValidationError, match="newer version of segments"):
        RunManifest.model_validate(data)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (json.loads(fixture("run_manifest.json")) | {"format_version": 2}, "upgrade segments"),
        ({"run_date": "2026-03-30"}, "field required"),
        ("{not json", "invalid json"),
    ],
)
def test_a_record_that_cannot_be_read_is_a_clear_error(data, says):
    raw = data.encode() if isinstance(data, str) else json.dumps(data).encode()
    with pytest.raises(RecordError, match=f"(?i){says}") as caught:
        RunManifest.from_bytes(raw, "runs/run_date=2026-03-30/manifest-x.json")
    assert "runs/run_date=2026-03-30/manifest-x.json" in caught.value.message
    assert caught.value.hint


def test_every_command_prints_an_unreadable_catalog_as_an_error_not_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from transforms.cli.app import app

    (tmp_path / "lake" / "runs").mkdir(parents=True)
    (tmp_path / "lake" / "runs" / "latest.json").write_text("{truncated")
    result = CliRunner().invoke(app, ["files", "membership", "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 1, result.output
    assert "runs/latest.json" in result.stderr and "Traceback" not in result.output
