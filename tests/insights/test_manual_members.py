"""`segments preview`, `segments plan` and `segments why` see the manual members of the run they
compare with: those of the committed run of D, else of the latest committed run before D (what
the next run starts from); uploads waiting in the inbox are not applied."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.support.workspace import PEOPLE_HEADER, land, person_row, with_definitions
from transforms.cli.app import app
from transforms.ingest.step import ingest
from transforms.insights.plan import plan
from transforms.insights.why import explain
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

D1 = date(2026, 3, 30)
D2, D3 = D1 + timedelta(days=1), D1 + timedelta(days=2)
DEFINITIONS = {
    "suppressed": "name: Suppressed\ntype: manual\n",
    "contactable": "name: Contactable\ntype: data_driven\nwhere: NOT in_segment('suppressed')\n",
}
PLANS = {"a": "pro", "b": "pro", "c": "pro", "d": "pro", "e": "free", "f": "free", "g": "free"}


def drop(ws, name: str, text: str) -> None:
    """An upload in the inbox, as `segments manual` names it."""
    path = Path(ws.inbox) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def ws(settings, tmp_path: Path):
    """Run D1 suppresses f and g; run D2 takes f out again; D3 is ingested, not run, and an
    upload suppressing a waits in the inbox."""
    ws = with_definitions(settings, tmp_path / "definitions", DEFINITIONS)
    people = PEOPLE_HEADER + "".join(person_row(p, plan) for p, plan in PLANS.items())
    for day in (D1, D2, D3):
        land(ws, "people", "p.csv", people, day)
    drop(ws, "suppressed/list.csv", "person_id\nf\ng\n")
    run(ws, D1)
    drop(ws, "suppressed/remove/f.csv", "person_id\nf\n")
    run(ws, D2)
    drop(ws, "suppressed/later.csv", "person_id\na\n")
    ingest(ws, D3)
    return ws


def committed(ws, day: date, segment: str) -> list[str]:
    lake = Root(ws.lake)
    membership = read_table(lake, read_manifest(lake, read_catalog(lake), day), "membership")
    return sorted(membership.filter(pl.col("segment_id") == segment)["person_id"])


def preview(ws, day: date) -> list[str]:
    """The lines `segments preview contactable --date day` prints."""
    args = ["--lake", ws.lake, "--definitions", ws.definitions, "--contracts", ws.contracts]
    shown = CliRunner().invoke(
        app, ["preview", "contactable", "--date", day.isoformat(), "--sample", "9", *args]
    )
    assert shown.exit_code == 0, shown.output
    return shown.stdout.splitlines()


def test_preview_of_a_committed_run_agrees_with_its_membership(ws):
    assert committed(ws, D1, "contactable") == ["a", "b", "c", "d", "e"]
    assert preview(ws, D1) == [
        "contactable on 2026-03-30: 5 of 7 people",
        *(f"  {p}" for p in committed(ws, D1, "contactable")),
    ]
    assert committed(ws, D2, "contactable") == ["a", "b", "c", "d", "e", "f"]
    assert preview(ws, D2)[0] == "contactable on 2026-03-31: 6 of 7 people"


def test_preview_of_a_date_not_run_starts_from_the_latest_committed_run(ws):
    shown = preview(ws, D3)  # the upload suppressing a waits for the run of D3
    assert shown[0] == "contactable on 2026-04-01: 6 of 7 people"
    assert [line.strip() for line in shown[1:]] == committed(ws, D2, "contactable")
    assert (Path(ws.inbox) / "suppressed/later.csv").exists()


def test_plan_evaluates_with_the_manual_members_of_the_run_it_compares_with(ws):
    edited = "name: Contactable\ntype: data_driven\nwhere: NOT in_segment('suppressed')"
    Path(ws.definitions, "contactable.yaml").write_text(edited + " AND plan = 'free'\n")
    for day, before, after in ((D1, 5, 1), (D2, 6, 2)):
        (shown,) = plan(ws, day).segments
        assert (shown.segment_id, shown.status) == ("contactable", "changed")
        assert (shown.before, shown.after, shown.entering) == (before, after, 0)
        assert shown.sample_exiting == ["a", "b", "c", "d"]


def test_why_sees_the_manual_members_of_the_run_it_explains(ws):
    for day, member in ((D1, False), (D2, True), (D3, True)):
        result = explain(ws, "f", "contactable", day)
        assert result.member is member, day
        (negation,) = [result.tree]
        assert negation.children[0].saw == [
            {"kind": "segment", "name": "suppressed", "value": not member}
        ]
    assert explain(ws, "g", "contactable", D3).member is False
    assert explain(ws, "a", "contactable", D3).member is True  # its upload is not applied yet
