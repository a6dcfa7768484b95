"""Runs over the lake: which events a run sees, membership files, and the author commands."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.support.workspace import (
    CONTRACTS,
    EVENTS_HEADER,
    PEOPLE_HEADER,
    lake_files,
    land,
    person_row,
    with_definitions,
)
from transforms.cli.app import app
from transforms.engines.registry import load_engine
from transforms.errors import DefinitionErrors, MissingInputError
from transforms.runs.materialize import EvaluationOptions, evaluate
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

D1, D2 = date(2026, 3, 30), date(2026, 3, 31)


def people(*ids: str) -> str:
    return PEOPLE_HEADER + "".join(person_row(p, "pro") for p in ids)


@pytest.fixture
def workspace(settings, tmp_path: Path):
    return with_definitions(
        settings,
        tmp_path / "definitions",
        {
            "buyers": "name: Buyers\ntype: data_driven\nwhere: event_count('purchase') >= 1\n",
            "two_purchases": "name: Two\ntype: data_driven\nwhere: event_count('purchase') = 2\n",
            "vip": "name: VIP\ntype: manual\n",
        },
    )


def members(evaluation, segment: str) -> set[str]:
    return set(evaluation.members.filter(pl.col("segment_id") == segment)["person_id"])


def test_a_run_sees_every_event_ingested_so_far_once(workspace):
    land(workspace, "people", "p.csv", people("a", "b", "c"), D1)
    land(
        workspace,
        "events",
        "e.csv",
        EVENTS_HEADER
        + "e1,a,purchase,2026-03-30T10:00:00Z,,,\n"
        + "e2,b,purchase,2026-03-31T10:00:00Z,,,\n",
        D1,
    )  # after as_of(D1): not yet
    land(workspace, "people", "p.csv", people("a", "b", "c"), D2)
    land(
        workspace,
        "events",
        "e.csv",
        EVENTS_HEADER
        + "e1,a,purchase,2026-03-30T10:00:00Z,,,\n"  # re-sent a day later: counted once
        + "e3,c,purchase,2026-03-29T10:00:00Z,,,\n",
        D2,
    )  # late: counts from D2 on
    run(workspace, D1)
    first = evaluate(workspace, D1)
    assert members(first, "buyers") == {"a"}
    run(workspace, D2)
    second = evaluate(workspace, D2)
    assert members(second, "buyers") == {"a", "b", "c"}
    assert members(second, "two_purchases") == set()  # e1 is one event, not two


def test_people_not_in_the_snapshot_are_not_members(workspace):
    land(workspace, "people", "p.csv", people("a"), D1)
    land(
        workspace, "events", "e.csv", EVENTS_HEADER + "e1,z,purchase,2026-03-30T10:00:00Z,,,\n", D1
    )
    run(workspace, D1)
    assert members(evaluate(workspace, D1), "buyers") == set()


def test_a_run_writes_one_membership_file_and_reruns_replace_it(workspace):
    land(workspace, "people", "p.csv", people("a", "b"), D1)
    land(
        workspace, "events", "e.csv", EVENTS_HEADER + "e1,a,purchase,2026-03-30T10:00:00Z,,,\n", D1
    )
    report = run(workspace, D1)
    assert {sid: c.size for sid, c in report.segments.items()} == {
        "buyers": 1,
        "two_purchases": 0,
        "vip": 0,
    }
    run(workspace, D1)  # again: replaces, does not add
    root = Root(workspace.lake)
    manifest = read_manifest(root, read_catalog(root), D1)
    assert len(manifest.files["membership"]) == 1
    table = read_table(root, manifest, "membership")
    assert table.rows() == [("buyers", "a", D1)]
    assert table.columns == ["segment_id", "person_id", "member_since"]
    # the replaced file stays readable for keep_superseded_files_for, then goes
    run(workspace.model_copy(update={"keep_superseded_files_for": timedelta(0)}), D1)
    assert len([k for k in lake_files(workspace) if k.startswith("membership/")]) == 2
    run(workspace.model_copy(update={"keep_superseded_files_for": timedelta(0)}), D1)
    assert len([k for k in lake_files(workspace) if k.startswith("membership/")]) == 2


def test_every_engine_gives_the_same_members_and_only_a_folding_one_takes_features(workspace):
    land(workspace, "people", "p.csv", people("a", "b", "c"), D1)
    land(
        workspace,
        "events",
        "e.csv",
        EVENTS_HEADER
        + "e1,a,purchase,2026-03-30T10:00:00Z,,,\n"
        + "e2,a,purchase,2026-03-30T11:00:00Z,,,\n"
        + "e3,b,purchase,2026-03-30T12:00:00Z,,,\n",
        D1,
    )
    run(workspace, D1)
    manual = pl.DataFrame({"segment_id": ["vip"], "person_id": ["c"]})
    options = EvaluationOptions(only={"two_purchases", "vip"}, manual_members=manual)
    polars = evaluate(workspace, D1, options=options)
    assert polars.sizes() == {"two_purchases": 1, "vip": 1}
    duckdb = evaluate(workspace, D1, load_engine("duckdb"), options)
    assert duckdb.members.sort("segment_id", "person_id").equals(polars.members)
    assert duckdb.snapshot.equals(polars.snapshot)
    features = pl.LazyFrame(schema={"person_id": pl.String})
    with pytest.raises(ValueError, match="the duckdb engine computes the event features itself"):
        evaluate(workspace, D1, "duckdb", EvaluationOptions(features=features))


def test_preview_before_ingest_says_what_to_run(workspace):
    with pytest.raises(MissingInputError, match="segments ingest --date 2026-03-30"):
        evaluate(workspace, D1)


def test_bad_definitions_stop_the_run_listing_every_problem(workspace):
    Path(workspace.definitions, "bad.yaml").write_text("name: B\ntype: data_driven\nwhere: x\n")
    Path(workspace.definitions, "worse.yaml").write_text("name: W\ntype: manual\nwhere: TRUE\n")
    land(workspace, "people", "p.csv", people("a"), D1)
    with pytest.raises(DefinitionErrors) as raised:
        run(workspace, D1)
    assert len(raised.value.problems) == 2


runner = CliRunner()


def flags(settings) -> list[str]:
    return [
        "--lake",
        settings.lake,
        "--definitions",
        settings.definitions,
        "--contracts",
        str(CONTRACTS),
    ]


def test_cli_run_preview_compile_and_validate(workspace):
    land(workspace, "people", "p.csv", people("a", "b"), D1)
    land(
        workspace, "events", "e.csv", EVENTS_HEADER + "e1,a,purchase,2026-03-30T10:00:00Z,,,\n", D1
    )
    result = runner.invoke(
        app, ["run", "--date", "2026-03-30", "--landing", workspace.landing, *flags(workspace)]
    )
    assert result.exit_code == 0, result.output
    assert "buyers" in result.stdout and "Run 2026-03-30 (first run)" in result.stdout

    result = runner.invoke(app, ["preview", "buyers", "--date", "2026-03-30", *flags(workspace)])
    assert result.exit_code == 0, result.output
    assert "buyers on 2026-03-30: 1 of 2 people" in result.stdout
    assert "  a" in result.stdout

    result = runner.invoke(app, ["compile", "two_purchases", *flags(workspace)[2:]])
    assert result.exit_code == 0, result.output
    assert "count('purchase')" in result.stdout

    result = runner.invoke(app, ["validate", *flags(workspace)[2:]])
    assert result.exit_code == 0, result.output
    assert "3 segment definition(s): 0 problem(s)" in result.stdout


def test_cli_validate_lists_every_problem_and_fails(workspace):
    Path(workspace.definitions, "bad.yaml").write_text(
        "name: B\ntype: data_driven\nwhere: plann = 'pro'\n"
    )
    Path(workspace.definitions, "Bad Name.yaml").write_text("name: B\ntype: manual\n")
    result = runner.invoke(app, ["validate", *flags(workspace)[2:]])
    assert result.exit_code == 1
    assert "did you mean 'plan'?" in result.stderr
    assert "'Bad Name' is not a valid segment id" in result.stderr


def test_cli_preview_of_an_unknown_segment(workspace):
    land(workspace, "people", "p.csv", people("a"), D1)
    runner.invoke(
        app,
        [
            "ingest",
            "--date",
            "2026-03-30",
            "--landing",
            workspace.landing,
            "--lake",
            workspace.lake,
            "--contracts",
            str(CONTRACTS),
        ],
    )
    result = runner.invoke(app, ["preview", "nope", "--date", "2026-03-30", *flags(workspace)])
    assert result.exit_code == 1
    assert "unknown segment 'nope'" in result.stderr
