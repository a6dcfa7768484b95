"""The `segments` command: exit codes, readable errors, JSON output, the demo."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from datetime import date
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from tests.support.workspace import CONTRACTS, DAY, PEOPLE_HEADER, REPO, land
from transforms.cli.app import app

runner = CliRunner()


def roots(settings) -> list[str]:
    return ["--landing", settings.landing, "--lake", settings.lake, "--contracts", str(CONTRACTS)]


def test_ingest_prints_counts_as_json(settings):
    land(
        settings,
        "people",
        "people.csv",
        PEOPLE_HEADER + "p1,a@b.c,A,free,US,30,1,true,2026-01-01T00:00:00Z,\n"
        "p2,a@b.c,A,gold,US,30,1,true,2026-01-01T00:00:00Z,\n",
    )
    result = runner.invoke(app, ["ingest", "--date", DAY.isoformat(), "--json", *roots(settings)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tables"]["people"]["quarantined"] == 1
    assert report["tables"]["people"]["broken_rules"] == {"plan:validValues": 1}


def test_ingest_table_output_names_the_broken_rule(settings):
    land(
        settings,
        "people",
        "people.csv",
        PEOPLE_HEADER + "p2,a@b.c,A,gold,US,30,1,true,2026-01-01T00:00:00Z,\n",
    )
    result = runner.invoke(app, ["ingest", "--date", DAY.isoformat(), *roots(settings)])
    assert result.exit_code == 0, result.output
    assert "plan:validValues" in result.stdout


def test_a_missing_snapshot_exits_non_zero_with_the_fix(settings):
    Path(settings.landing).mkdir(parents=True)
    result = runner.invoke(app, ["ingest", "--date", DAY.isoformat(), *roots(settings)])
    assert result.exit_code == 1
    assert "no people snapshot for 2026-03-30" in result.stderr
    assert "fix:" in result.stderr


def test_a_bad_date_is_refused(settings):
    result = runner.invoke(app, ["ingest", "--date", "30/03/2026", *roots(settings)])
    assert result.exit_code == 2
    assert "YYYY-MM-DD" in result.output


def test_contracts_check_lists_every_problem(tmp_path):
    (tmp_path / "a.odcs.yaml").write_text("kind: [")
    (tmp_path / "b.odcs.yaml").write_text("apiVersion: v3.1.0\n")
    result = runner.invoke(app, ["contracts", "check", "--contracts", str(tmp_path)])
    assert result.exit_code == 1
    assert "a.odcs.yaml" in result.stderr and "b.odcs.yaml" in result.stderr


def test_contracts_check_passes_on_the_repo_contracts():
    result = runner.invoke(app, ["contracts", "check", "--contracts", str(CONTRACTS)])
    assert result.exit_code == 0, result.output
    assert "5 contract(s) valid" in result.stdout


def test_demo_writes_a_workspace_and_ingests_both_days(settings):
    result = runner.invoke(
        app,
        ["demo", "--landing", settings.landing, "--lake", settings.lake, "--inbox", settings.inbox],
    )
    assert result.exit_code == 0, result.output
    assert "Ingest 2026-03-30" in result.stdout and "Ingest 2026-03-31" in result.stdout
    assert "plan:validValues" in result.stdout  # the demo's broken rows are shown
    # clicked emails carry a campaign the events contract does not declare: dropped, counted
    assert re.search(
        r"keys not in the events contract were dropped: properties\.campaign \(\d", result.output
    )
    assert "app_buyers" in result.stdout  # the demo's segment on event properties
    assert "Published to Iceberg" in result.stdout
    # the README's recipe reads the demo's runs as Iceberg tables
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (recipe,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "load_catalog" in b]
    assert 'Path("workspace/lake")' in recipe
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(recipe.replace('Path("workspace/lake")', f"Path({settings.lake!r})"), {})
    assert "shape: (" in shown.getvalue() and "run_date" in shown.getvalue()
    walk_through_the_readme_inbox_section(settings, readme)


def walk_through_the_readme_inbox_section(settings, readme: str) -> None:
    """The README's marketer walk-through on the demo: an Excel upload, a replace-list, the
    dry run, then the run of the demo's third day does what the dry run said."""
    from transforms.storage.catalog import read_catalog, read_manifest, read_table
    from transforms.storage.roots import Root

    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "manual check" in b]
    commands = [shlex.split(line)[1:] for line in block.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [
        ["manual", "add"], ["manual", "replace"], ["manual", "check"], ["run", "--date"]
    ]  # fmt: skip
    flags = {
        "manual": ["--lake", settings.lake, "--inbox", settings.inbox],
        "run": [*roots(settings), "--inbox", settings.inbox, "--no-publish"],
    }
    outputs = []
    for command in commands:
        argv = [str(REPO / a) if a.startswith("docs/") else a for a in command]
        result = runner.invoke(app, [*argv, *flags[command[0]]])
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout)
    check, ran = outputs[2], outputs[3]
    assert "Inbox dry run for the run of 2026-04-01" in check
    for line in (
        "add 3 of 4 rows, 1 unknown",
        "unknown: jane.doe@gmail.com",
        "replace 5 of 5 rows",
    ):
        assert line in check and line in ran and line in readme
    assert "beta_testers: 75 -> 5 members" in check and "beta_testers: 75 -> 5 members" in readme
    root = Root(settings.lake)
    manifest = read_manifest(root, read_catalog(root), date(2026, 4, 1))
    changes = read_table(root, manifest, "changes").filter(pl.col("segment_id") == "beta_testers")
    assert changes.group_by("change", "reason").len().sort("change").rows() == [
        ("entered", "added", 4),
        ("exited", "replaced", 74),
    ]


def test_demo_refuses_roots_it_did_not_write(settings):
    Path(settings.lake).mkdir(parents=True)
    (Path(settings.lake) / "precious.parquet").write_bytes(b"data")
    result = runner.invoke(
        app,
        ["demo", "--landing", settings.landing, "--lake", settings.lake, "--inbox", settings.inbox],
    )
    assert result.exit_code == 1
    assert "is not empty and was not written by the demo" in result.stderr
    assert (Path(settings.lake) / "precious.parquet").exists()


def test_rebuild_later_reports_every_rebuilt_run_and_warns_first(settings):
    from tests.support.workspace import person_row

    days = [DAY, DAY.fromordinal(DAY.toordinal() + 1), DAY.fromordinal(DAY.toordinal() + 2)]
    for day in days:
        land(settings, "people", "p.csv", PEOPLE_HEADER + person_row("p1"), day)
    flags = [*roots(settings), "--inbox", settings.inbox, "--no-publish"]
    for day in days:
        assert runner.invoke(app, ["run", "--date", day.isoformat(), *flags]).exit_code == 0
    result = runner.invoke(app, ["run", "--date", DAY.isoformat(), "--rebuild-later", *flags])
    assert result.exit_code == 0, result.output
    assert f"--rebuild-later reruns {DAY} and the 2 later committed run(s)" in result.stderr
    assert "definitions and landing files as they are now" in result.stderr
    assert "Rebuilt 3 runs" in result.stdout
    reports = re.findall(r"^report: (\S+)$", result.stdout, re.MULTILINE)
    assert len(reports) == 3 and all(Path(r.removeprefix("file://")).exists() for r in reports)
    assert [f"run_date={d}" in r for d, r in zip(days, reports, strict=True)] == [True] * 3
    as_json = runner.invoke(
        app, ["run", "--date", days[1].isoformat(), "--rebuild-later", "--json", *flags]
    )
    data = json.loads(as_json.stdout)
    assert data["rebuilt"][0]["date"] == days[2].isoformat() and data["rebuilt"][0]["html"]
