"""`segments validate` and `segments compile`: every problem in one pass, in the user's own
words, the SQL's as-of instant, and the JSON forms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.workspace import (
    CONTRACTS,
    DAY,
    EVENTS_HEADER,
    PEOPLE_HEADER,
    REPO,
    land,
    person_row,
)
from transforms.cli.app import app
from transforms.runs.steps import run

runner = CliRunner()
DEFINITIONS = REPO / "segment_definitions"

SEVERAL_PROBLEMS = """\
name: Several problems
type: data_driven
descripton: Trials who came back.
where: |
  plann = 'trial'
  AND age = 'old'
  AND lenght(email) > 3
  AND event_count('purchase', within => '1 month') > 0
"""
BAD_TYPE = "name: Bad type\ntype: data-driven\nwhere: countri = 'US'\n"


def validate(tmp_path: Path, *args: str) -> object:
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "several.yaml").write_text(SEVERAL_PROBLEMS)
    (definitions / "bad_type.yaml").write_text(BAD_TYPE)
    contracts = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, contracts)
    (contracts / "broken.odcs.yaml").write_text("kind: [")
    return runner.invoke(
        app,
        ["validate", "--definitions", str(definitions), "--contracts", str(contracts), *args],
    )


def test_validate_prints_every_problem_of_every_file_at_once(tmp_path):
    result = validate(tmp_path)
    assert result.exit_code == 1
    for expected in (
        "broken.odcs.yaml",
        "unknown key `descripton`",
        "unknown person attribute 'plann'",
        "cannot compare age (integer) with 'old' (string)",
        "function lenght() is not part of the segment language",
        "interval unit MONTH is not supported",
        "bad_type.yaml",
        "`type`",
        "unknown person attribute 'countri'",
    ):
        assert expected in result.stderr, expected
    assert "8 problem(s)" in result.stdout


def test_validate_suggests_what_was_meant(tmp_path):
    result = validate(tmp_path)
    for expected in (
        "did you mean `description`?",
        "did you mean 'plan'?",
        "did you mean length()?",
        "did you mean 'data_driven'?",
        "did you mean 'country'?",
    ):
        assert expected in result.stderr, expected


def test_validate_json_lists_the_problems(tmp_path):
    result = validate(tmp_path, "--json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)
    assert len(problems) == 8
    plann = next(p for p in problems if "'plann'" in p["message"])
    assert plann == {
        "file": str(tmp_path / "definitions" / "several.yaml"),
        "line": 5,
        "column": 3,
        "text": "plann",
        "message": "unknown person attribute 'plann'",
        "hint": "did you mean 'plan'?",
    }
    assert any(p["file"].endswith("broken.odcs.yaml") for p in problems)


def test_validate_json_is_an_empty_list_when_all_is_valid():
    result = runner.invoke(
        app,
        ["validate", "--definitions", str(DEFINITIONS), "--contracts", str(CONTRACTS), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_validate_quotes_the_predicate_as_written(tmp_path):
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "json.yaml").write_text(
        "name: J\ntype: data_driven\nwhere: properties ->> 'plan' = 'pro'\n"
    )
    result = runner.invoke(
        app, ["validate", "--definitions", str(definitions), "--contracts", str(CONTRACTS)]
    )
    assert result.exit_code == 1
    assert "properties ->> 'plan'" in result.stderr
    assert "json_extract" not in result.stderr.lower()


def compile_(*args: str, lake: Path) -> object:
    return runner.invoke(
        app,
        [
            "compile", *args, "--definitions", str(DEFINITIONS), "--contracts", str(CONTRACTS),
            "--lake", str(lake),
        ],
    )  # fmt: skip


def test_compile_sql_without_a_date_or_a_committed_run_is_refused(tmp_path):
    result = compile_("engaged_trials", "--dialect", "snowflake", lake=tmp_path / "lake")
    assert result.exit_code == 1
    assert "error:" in result.stderr and "--date" in result.stderr
    assert "2000-01-02" not in result.stdout


def test_compile_sql_defaults_to_the_latest_committed_run(settings):
    land(settings, "people", "p.csv", PEOPLE_HEADER + person_row("a"))
    land(settings, "events", "e.csv", EVENTS_HEADER + f"e1,a,purchase,{DAY}T10:00:00Z,1,USD,\n")
    run(settings, DAY)
    # bigquery: snowflake has no struct fields, which app_buyers reads (test_sql_engines.py)
    result = compile_("--all", "--dialect", "bigquery", lake=Path(settings.lake))
    assert result.exit_code == 0, result.output
    assert f"note: using the as-of instant of the latest committed run, {DAY}" in result.stderr
    assert "2026-03-31 00:00:00" in result.stdout
    assert "2000-01-02" not in result.stdout


def test_compile_sql_with_a_date_uses_it_without_a_note(tmp_path):
    result = compile_(
        "engaged_trials", "--dialect", "duckdb", "--date", "2026-03-30", lake=tmp_path / "lake"
    )
    assert result.exit_code == 0, result.output
    assert "2026-03-31 00:00:00" in result.stdout
    assert "note:" not in result.stderr


def test_compile_without_a_dialect_needs_no_date(tmp_path):
    result = compile_("engaged_trials", lake=tmp_path / "lake")
    assert result.exit_code == 0, result.output
    assert "plan = 'trial'" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("segment", ["engaged_trials", "beta_testers"])
def test_compile_json_prints_the_same_facts(tmp_path, segment):
    result = compile_(segment, "--json", lake=tmp_path / "lake")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["segment"] == segment
    if segment == "beta_testers":
        assert shown["manual"] is True and shown["features"] == []
        return
    assert shown["manual"] is False
    assert "plan = 'trial'" in shown["predicate"]
    assert shown["references"] == ["do_not_contact"]
    (feature,) = shown["features"]
    assert feature["feature"] == "count('page_viewed', within => '7 days')"
    assert feature["type"] == "integer" and feature["column"].startswith("__f")
