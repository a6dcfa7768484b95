"""Runs over several dates: changes are the set differences, reruns reproduce, crashes do not
break committed runs, two writers cannot both commit, the shrink guard holds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.support.workspace import (
    EVENTS_HEADER,
    PEOPLE_HEADER,
    commit_in_lockstep,
    concurrently,
    land,
    person_row,
    with_definitions,
)
from transforms.errors import RunOrderError, SnapshotShrinkError
from transforms.ingest.step import ingest
from transforms.runs.steps import run
from transforms.storage import lake as lake_module
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

D1 = date(2026, 3, 30)
D2, D3 = D1 + timedelta(days=1), D1 + timedelta(days=2)


@pytest.fixture
def lake_settings(settings, tmp_path: Path):
    return with_definitions(
        settings,
        tmp_path / "definitions",
        {
            "buyers": "name: Buyers\ntype: data_driven\nwhere: event_count('purchase') >= 1\n",
            "pro": "name: Pro\ntype: data_driven\nwhere: plan = 'pro'\n",
        },
    )


def assert_only_files_of(settings, *attempts: str) -> None:
    """D2's folders hold exactly the files of `attempts`: one data file per table and one
    manifest per attempt (and the reports those that finished wrote)."""
    lake = Path(settings.lake)
    for folder in (
        "membership/run_date=2026-03-31",
        "changes/run_date=2026-03-31",
        "runs/run_date=2026-03-31",
    ):
        names = sorted(p.name for p in (lake / folder).iterdir())
        assert all(any(a in name for a in attempts) for name in names), folder
        written = [n for n in names if n.startswith(("part-", "manifest-"))]
        assert len(written) == len(attempts), folder


def land_day(settings, day: date, people: dict[str, str], purchases: list[str]) -> None:
    land(
        settings,
        "people",
        "p.csv",
        PEOPLE_HEADER + "".join(person_row(p, plan) for p, plan in people.items()),
        day,
    )
    rows = "".join(
        f"{day}-{i},{p},purchase,{day}T12:00:00Z,1,USD,\n" for i, p in enumerate(purchases)
    )
    land(settings, "events", "e.csv", EVENTS_HEADER + rows, day)


def committed(settings, day: date) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    root = Root(settings.lake)
    catalog = read_catalog(root)
    manifest = read_manifest(root, catalog, day)
    return read_table(root, manifest, "membership"), read_table(root, manifest, "changes"), manifest


def pairs(frame: pl.DataFrame) -> set[tuple[str, str]]:
    return set(frame.select("segment_id", "person_id").rows())


FILLER = {f"f{i}": "free" for i in range(8)}  # people in no segment, so c leaving is 10%


def three_days(settings) -> None:
    land_day(settings, D1, {"a": "pro", "b": "free", "c": "pro", **FILLER}, ["a", "c"])
    land_day(settings, D2, {"a": "free", "b": "pro", "c": "pro", **FILLER}, ["b"])
    land_day(settings, D3, {"a": "free", "b": "pro", **FILLER}, [])  # c leaves the snapshot


def test_changes_are_the_set_differences_over_several_dates(lake_settings):
    three_days(lake_settings)
    previous = None
    for day in (D1, D2, D3):
        run(lake_settings, day)
        membership, changes, manifest = committed(lake_settings, day)
        before = pairs(previous) if previous is not None else set()
        entered = pairs(changes.filter(pl.col("change") == "entered"))
        exited = pairs(changes.filter(pl.col("change") == "exited"))
        assert entered == pairs(membership) - before
        assert exited == before - pairs(membership)
        expected_previous = None if previous is None else (day - timedelta(days=1))
        assert set(changes["previous_run_date"].to_list()) <= {expected_previous}
        assert manifest.rows == {"membership": membership.height, "changes": changes.height}
        previous = membership


def test_first_run_member_since_and_reasons(lake_settings):
    three_days(lake_settings)
    run(lake_settings, D1)
    _, first, _ = committed(lake_settings, D1)
    assert set(first.select("segment_id", "person_id", "change", "reason").rows()) == {
        ("buyers", "a", "entered", "new_segment"),
        ("pro", "a", "entered", "new_segment"),
        ("buyers", "c", "entered", "new_segment"),
        ("pro", "c", "entered", "new_segment"),
    }
    run(lake_settings, D2)
    membership, changes, _ = committed(lake_settings, D2)
    assert dict(((s, p), d) for s, p, d in membership.rows()) == {
        ("buyers", "a"): D1,
        ("buyers", "b"): D2,
        ("buyers", "c"): D1,
        ("pro", "b"): D2,
        ("pro", "c"): D1,
    }
    assert set(changes.select("segment_id", "person_id", "change", "reason").rows()) == {
        ("buyers", "b", "entered", "condition"),
        ("pro", "b", "entered", "condition"),
        ("pro", "a", "exited", "condition"),
    }


def test_people_leaving_the_snapshot_exit_every_segment(lake_settings):
    land_day(lake_settings, D1, {"a": "pro", "b": "pro", "c": "pro", "d": "pro", "e": "pro"}, ["e"])
    land_day(lake_settings, D2, {"a": "pro", "b": "pro", "c": "pro", "d": "pro"}, [])
    run(lake_settings, D1)
    run(lake_settings, D2)
    _, changes, _ = committed(lake_settings, D2)
    assert set(changes.select("segment_id", "person_id", "change", "reason").rows()) == {
        ("pro", "e", "exited", "left_snapshot"),
        ("buyers", "e", "exited", "left_snapshot"),
    }


def test_a_changed_definition_is_the_reason(lake_settings):
    three_days(lake_settings)
    run(lake_settings, D1)
    Path(lake_settings.definitions, "pro.yaml").write_text(
        "name: Pro\ntype: data_driven\nwhere: plan IN ('pro', 'free')\n"
    )
    run(lake_settings, D2)
    _, changes, manifest = committed(lake_settings, D2)
    reasons = set(changes.filter(pl.col("segment_id") == "pro")["reason"])
    assert reasons == {"definition_changed"}
    assert manifest.definitions["pro"] != committed(lake_settings, D1)[2].definitions["pro"]


def test_a_rerun_reproduces_the_rows_and_keeps_the_replaced_files_for_a_while(lake_settings):
    three_days(lake_settings)
    run(lake_settings, D1)
    run(lake_settings, D2)
    first_membership, first_changes, first = committed(lake_settings, D2)
    run(lake_settings, D2)
    membership, changes, again = committed(lake_settings, D2)
    assert membership.equals(first_membership) and changes.equals(first_changes)
    assert again.attempt != first.attempt
    # a reader holding the first manifest can still read every file it lists
    root = Root(lake_settings.lake)
    replaced = f"runs/run_date=2026-03-31/manifest-{first.attempt}.json"
    assert root.exists(replaced) and all(
        root.exists(k) for keys in first.files.values() for k in keys
    )
    assert replaced in read_catalog(root).superseded
    # once keep_superseded_files_for has passed, the next commit removes them
    run(lake_settings.model_copy(update={"keep_superseded_files_for": timedelta(0)}), D3)
    assert_only_files_of(lake_settings, again.attempt)
    assert read_catalog(root).superseded == {}


def test_rerunning_a_date_with_later_runs_is_refused_or_rebuilds_in_order(lake_settings):
    three_days(lake_settings)
    for day in (D1, D2, D3):
        run(lake_settings, day)
    _, d3_changes, _ = committed(lake_settings, D3)
    with pytest.raises(RunOrderError, match="runs after 2026-03-30 are committed"):
        run(lake_settings, D1)
    run(lake_settings, D1, rebuild_later=True)
    _, rebuilt, _ = committed(lake_settings, D3)
    assert rebuilt.equals(d3_changes)


def test_the_shrink_guard(lake_settings):
    land_day(lake_settings, D1, {p: "free" for p in "abcdefghij"}, [])
    land_day(lake_settings, D2, {p: "free" for p in "abcdefg"}, [])  # 30% fewer
    run(lake_settings, D1)
    with pytest.raises(SnapshotShrinkError, match="30% fewer than the 10 of run 2026-03-30"):
        run(lake_settings, D2)
    assert read_catalog(Root(lake_settings.lake)).latest == D1
    report = run(lake_settings, D2, accept_shrink=True)
    assert report.people == 7


def test_an_empty_snapshot_fails_the_run(lake_settings):
    land(lake_settings, "people", "p.csv", PEOPLE_HEADER, D1)
    with pytest.raises(SnapshotShrinkError, match="is empty"):
        run(lake_settings, D1)


def test_two_runs_at_once_cannot_both_commit(lake_settings, monkeypatch):
    three_days(lake_settings)
    run(lake_settings, D1)
    ingest(lake_settings, D2)  # the race under test is the commit's
    commit_in_lockstep(monkeypatch)
    outcomes = concurrently(lambda: run(lake_settings, D2))
    assert sorted(type(o).__name__ for o in outcomes) == ["ConcurrentRunError", "RunReport"]
    names = sorted(
        p.name for p in (Path(lake_settings.lake) / "membership/run_date=2026-03-31").iterdir()
    )
    winner = next(o for o in outcomes if not isinstance(o, Exception))
    assert len(names) == 1 and names[0] in winner.manifest.replace("manifest", "part").replace(
        ".json", ".parquet"
    )


CRASH = textwrap.dedent("""
    import os, sys
    from datetime import date
    import transforms.storage.roots as storage
    from transforms.config import load_settings
    from transforms.runs.steps import run

    point = sys.argv[1]
    real = {name: getattr(storage.Root, name)
            for name in ("write_parquet", "put_if_absent", "put_if_match", "delete")}

    def dying(name):
        def call(self, *args, **kwargs):
            key = args[1] if name == "write_parquet" else args[0]
            if point == "after-data" and name == "put_if_absent" and "manifest-" in key:
                os._exit(9)
            if point == "mid-data" and name == "write_parquet" and "changes/" in key:
                raise RuntimeError("disk full")
            if point == "after-manifest" and name in ("put_if_match", "put_if_absent") \\
                    and key == "runs/latest.json":
                os._exit(9)
            result = real[name](self, *args, **kwargs)
            if point == "after-catalog" and name in ("put_if_match", "put_if_absent") \\
                    and key == "runs/latest.json":
                os._exit(9)
            return result
        return call

    for name in real:
        setattr(storage.Root, name, dying(name))
    settings = load_settings(None, landing=sys.argv[2], lake=sys.argv[3], contracts=sys.argv[4],
                             definitions=sys.argv[5])
    run(settings, date.fromisoformat(sys.argv[6]))
""")


@pytest.mark.parametrize("point", ["mid-data", "after-data", "after-manifest", "after-catalog"])
def test_a_crash_at_any_step_leaves_the_last_committed_run_intact(lake_settings, point, tmp_path):
    three_days(lake_settings)
    run(lake_settings, D1)
    before = committed(lake_settings, D1)
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    finished = subprocess.run(
        [
            sys.executable,
            str(script),
            point,
            lake_settings.landing,
            lake_settings.lake,
            lake_settings.contracts,
            lake_settings.definitions,
            D2.isoformat(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode != 0, finished.stderr
    assert finished.returncode == 9 or "disk full" in finished.stderr, finished.stderr
    catalog = read_catalog(Root(lake_settings.lake))
    after = committed(lake_settings, D1)
    assert after[0].equals(before[0]) and after[1].equals(before[1])
    assert catalog.latest == (D2 if point == "after-catalog" else D1)
    report = run(lake_settings, D2)  # the retry converges
    membership, changes, manifest = committed(lake_settings, D2)
    assert manifest.attempt in report.manifest
    # after-catalog: the crashed attempt committed, so the retry is a rerun that keeps the
    # files it replaced for a while (readers may be reading them)
    kept = [
        lake_module.attempt_of(key) for key in read_catalog(Root(lake_settings.lake)).superseded
    ]
    assert len(kept) == (1 if point == "after-catalog" else 0)
    assert_only_files_of(lake_settings, manifest.attempt, *kept)
    lake = Path(lake_settings.lake)
    assert json.loads((lake / "runs/latest.json").read_text())["latest"] == "2026-03-31"


def test_two_ingests_of_a_date_at_once_publish_one_consistent_manifest(lake_settings):
    three_days(lake_settings)
    outcomes = concurrently(lambda: ingest(lake_settings, D1), times=3)
    root = Root(lake_settings.lake)
    manifest = json.loads(root.read_bytes("ingest/ingest_date=2026-03-30/manifest.json"))
    files = {k for keys in manifest["outputs"].values() for k in keys}
    assert all(root.exists(k) for k in files)
    people = [k for k in (Path(lake_settings.lake) / "people/snapshot_date=2026-03-30").iterdir()]
    assert len(people) == 1
    assert any(type(o).__name__ == "IngestReport" for o in outcomes)


def test_files_lists_exactly_the_committed_files(lake_settings):
    from typer.testing import CliRunner

    from transforms.cli.app import app

    three_days(lake_settings)
    run(lake_settings, D1)
    run(lake_settings, D2)
    runner = CliRunner()
    latest = runner.invoke(app, ["files", "membership", "--lake", lake_settings.lake])
    assert latest.exit_code == 0, latest.output
    _, _, manifest = committed(lake_settings, D2)
    assert latest.stdout.split() == [
        f"{lake_settings.lake}/{k}" for k in manifest.files["membership"]
    ]
    first = runner.invoke(
        app, ["files", "changes", "--date", "2026-03-30", "--lake", lake_settings.lake]
    )
    assert first.exit_code == 0 and "changes/run_date=2026-03-30/part-" in first.stdout
    missing = runner.invoke(
        app, ["files", "changes", "--date", "2026-01-01", "--lake", lake_settings.lake]
    )
    assert missing.exit_code == 1 and "no committed run of 2026-01-01" in missing.stderr


def test_an_attempt_computes_with_the_definitions_it_began_with(lake_settings):
    """A definition deployed between two steps of one attempt (Airflow tasks can be hours
    apart) changes nothing the attempt computes or records; the next run picks it up."""
    from transforms.runs import steps as runs

    three_days(lake_settings)
    plan = runs.begin(lake_settings, D1)
    runs.ingest_step(lake_settings, plan)
    pro = Path(lake_settings.definitions, "pro.yaml")
    pinned_hash = plan.inputs["definitions"]["pro.yaml"]
    pro.write_text("name: Pro\ntype: data_driven\nwhere: plan = 'free'\n")
    for step in runs.STEPS[1:]:
        step(lake_settings, plan)
    membership, _, manifest = committed(lake_settings, D1)
    assert {p for s, p in pairs(membership) if s == "pro"} == {"a", "c"}
    assert manifest.inputs["definitions"]["pro.yaml"] == pinned_hash
    assert set(manifest.inputs["contracts"]) >= {"people.odcs.yaml", "events.odcs.yaml"}
    run(lake_settings, D2)
    membership, changes, manifest = committed(lake_settings, D2)
    assert {p for s, p in pairs(membership) if s == "pro"} == {"a"} | set(FILLER)
    assert manifest.definitions_changed.changed == ["pro"]
    assert {r for r in changes.filter(pl.col("segment_id") == "pro")["reason"]} == {
        "definition_changed"
    }


def test_a_definition_error_writes_nothing_and_a_failed_attempt_removes_its_files(
    lake_settings, monkeypatch
):
    three_days(lake_settings)
    broken = Path(lake_settings.definitions, "broken.yaml")
    broken.write_text("name: B\ntype: data_driven\nwhere: plann = 1\n")
    from transforms.errors import DefinitionErrors

    with pytest.raises(DefinitionErrors):
        run(lake_settings, D1)
    assert not Path(lake_settings.lake).exists() or not any(Path(lake_settings.lake).rglob("*"))
    broken.unlink()
    run(lake_settings, D1)
    import transforms.runs.steps as runs_module

    def fail(*args, **kwargs):
        raise RuntimeError("lost the lake")

    monkeypatch.setattr(runs_module, "commit", fail)
    with pytest.raises(RuntimeError):
        run(lake_settings, D2)
    lake = Path(lake_settings.lake)
    assert not (lake / "_staging/run_date=2026-03-31").exists() or not any(
        (lake / "_staging/run_date=2026-03-31").iterdir()
    )
    assert not (lake / "membership/run_date=2026-03-31").exists() or not any(
        (lake / "membership/run_date=2026-03-31").iterdir()
    )


def test_a_reader_following_the_manifest_during_reruns_never_fails(lake_settings):
    """What `segments files` prints stays readable while the date is rerun: the files of the
    run a rerun replaces are kept (`keep_superseded_files_for`)."""
    import threading

    from transforms.storage.catalog import committed_files

    three_days(lake_settings)
    run(lake_settings, D1)
    run(lake_settings, D2)
    root = Root(lake_settings.lake)
    done, reads, failures = threading.Event(), [0], []

    def reader() -> None:
        while not done.is_set():
            _, urls = committed_files(root, "membership", D2)
            try:
                rows = sum(pl.read_parquet(url).height for url in urls)
            except OSError as exc:  # a listed file vanished
                failures.append(exc)
                continue
            assert rows > 0
            reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):
            run(lake_settings, D2)
    finally:
        done.set()
        thread.join()
    assert failures == [] and reads[0] > 0


def test_a_late_events_file_is_read_by_the_next_run_of_its_date(lake_settings):
    three_days(lake_settings)
    run(lake_settings, D1)
    late = f"late-1,b,purchase,{D1}T23:00:00Z,1,USD,\n"
    land(lake_settings, "events", "late.csv", EVENTS_HEADER + late, D1)
    report = run(lake_settings, D1)
    assert "events/2026-03-30/late.csv: new since the ingest" in report.ingest_reason
    membership, changes, manifest = committed(lake_settings, D1)
    assert {p for s, p in pairs(membership) if s == "buyers"} == {"a", "b", "c"}
    assert manifest.ingest_reason == report.ingest_reason
    report = run(lake_settings, D1)  # nothing changed since: nothing read again
    assert report.ingested is None and report.ingest_reason is None
    report = run(lake_settings, D1, reingest=True)
    assert report.ingest_reason == "re-ingest asked for"
    assert {p for s, p in pairs(committed(lake_settings, D1)[0]) if s == "buyers"} == {
        "a",
        "b",
        "c",
    }


def test_a_corrected_people_export_is_read_instead_of_the_truncated_one(lake_settings):
    three_days(lake_settings)
    run(lake_settings, D1)
    full = Path(lake_settings.landing, "people", D2.isoformat(), "p.csv").read_bytes()
    land(lake_settings, "people", "p.csv", PEOPLE_HEADER + person_row("a"), D2)  # cut short
    with pytest.raises(SnapshotShrinkError) as refused:
        run(lake_settings, D2)
    assert "land the full export in landing/people/2026-03-31/" in refused.value.hint
    land(lake_settings, "people", "p.csv", full, D2)  # the corrected export
    report = run(lake_settings, D2)  # no --accept-shrink
    assert report.people == 11 and "people/2026-03-31/p.csv: changed" in report.ingest_reason
    assert not any(c.exited for c in report.segments.values() if c.exited > 1)


def test_a_file_landing_after_the_ingest_step_is_named_by_the_commit(lake_settings):
    from transforms.runs import steps as runs

    three_days(lake_settings)
    plan = runs.begin(lake_settings, D1)
    runs.ingest_step(lake_settings, plan)
    land(
        lake_settings,
        "events",
        "late.csv",
        EVENTS_HEADER + f"late-1,b,purchase,{D1}T01:00:00Z,1,USD,\n",
        D1,
    )
    for step in runs.STEPS[1:]:
        step(lake_settings, plan)
    _, _, manifest = committed(lake_settings, D1)
    assert manifest.landing_unread == ["events/2026-03-30/late.csv: new since the ingest"]
    report = run(lake_settings, D1)
    assert report.landing_unread == [] and "late.csv" in report.ingest_reason


@pytest.mark.parametrize(
    ("engine", "lake", "says"),
    [("nope", None, "unknown engine 'nope'"), ("spark", "s3://no-such-bucket/lake", "object")],
)
def test_an_engine_that_cannot_run_is_refused_before_anything_is_read_or_claimed(
    lake_settings, engine, lake, says
):
    """Not three Airflow tasks later, after ingest published and uploads were claimed."""
    from transforms.errors import ConfigError
    from transforms.runs.attempt import begin

    settings = lake_settings.model_copy(update={"lake": lake}) if lake else lake_settings
    inbox_upload = Path(lake_settings.inbox) / "vip_customers" / "list.csv"
    inbox_upload.parent.mkdir(parents=True)
    inbox_upload.write_text("person_id\np1\n")
    with pytest.raises(ConfigError, match=says):
        begin(settings, D1, engine=engine)
    assert not Path(lake_settings.lake).exists() or not any(Path(lake_settings.lake).iterdir())
    assert inbox_upload.exists()
