"""`segments plan` (what edited definitions would do, writing nothing) and `segments history`."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.support.workspace import (
    EVENTS_HEADER,
    PEOPLE_HEADER,
    lake_files,
    land,
    person_row,
    with_definitions,
)
from transforms.cli.app import app
from transforms.insights.history import segment_history
from transforms.insights.plan import plan
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

D1 = date(2026, 3, 30)
D2, D3 = D1 + timedelta(days=1), D1 + timedelta(days=2)
BUYERS = "name: Buyers\ntype: data_driven\nwhere: event_count('purchase') >= {n}\n"
DEFINITIONS = {
    "buyers": BUYERS.format(n=2),
    "pro_buyers": "name: Pro buyers\ntype: data_driven\n"
    "where: plan = 'pro' AND in_segment('buyers')\n",
    "pro": "name: Pro\ntype: data_driven\nwhere: plan = 'pro'\n",
    "free": "name: Free\ntype: data_driven\nwhere: plan = 'free'\n",
}
PURCHASES = {"a": 3, "b": 1, "c": 1}


@pytest.fixture
def ws(settings, tmp_path: Path):
    ws = with_definitions(settings, tmp_path / "definitions", DEFINITIONS)
    people = PEOPLE_HEADER + person_row("a", "pro") + person_row("b", "pro") + person_row("c")
    events = EVENTS_HEADER + "".join(
        f"{p}{i},{p},purchase,2026-03-30T10:00:00Z,1,USD,\n"
        for p, n in PURCHASES.items()
        for i in range(n)
    )
    for day in (D1, D2, D3):
        land(ws, "people", "p.csv", people, day)
    land(ws, "events", "e.csv", events, D1)
    run(ws, D1)
    run(ws, D2)
    return ws


def edit(ws) -> None:
    folder = Path(ws.definitions)
    (folder / "buyers.yaml").write_text(BUYERS.format(n=1))
    (folder / "free.yaml").unlink()
    (folder / "everyone.yaml").write_text("name: All\ntype: data_driven\nwhere: TRUE\n")


def test_plan_shows_new_changed_deleted_and_affected_segments_and_writes_nothing(ws):
    edit(ws)
    before = lake_files(ws)
    result = plan(ws)
    assert lake_files(ws) == before
    assert result.run_date == "2026-03-31"
    shown = {
        (p.segment_id, p.status): (p.before, p.after, p.entering, p.exiting)
        for p in result.segments
    }
    assert shown == {
        ("everyone", "new"): (0, 3, 3, 0),
        ("buyers", "changed"): (1, 3, 2, 0),
        ("free", "deleted"): (1, 0, 0, 1),
        ("pro_buyers", "affected"): (1, 2, 1, 0),
    }
    changed = next(p for p in result.segments if p.segment_id == "buyers")
    assert changed.sample_entering == ["b", "c"]


def test_plan_without_edits_is_empty_and_fail_on_change_exits_non_zero(ws):
    args = ["--lake", ws.lake, "--definitions", ws.definitions, "--contracts", ws.contracts]
    quiet = CliRunner().invoke(app, ["plan", "--fail-on-change", *args])
    assert quiet.exit_code == 0 and "no definition differs" in quiet.output
    edit(ws)
    loud = CliRunner().invoke(app, ["plan", "--fail-on-change", *args])
    assert loud.exit_code == 1 and "would enter: b, c" in loud.output
    as_json = CliRunner().invoke(app, ["plan", "--json", "--date", str(D1), *args])
    assert {s["segment_id"] for s in json.loads(as_json.output)["segments"]} == {
        "everyone", "buyers", "free", "pro_buyers"
    }  # fmt: skip


def test_the_run_that_applies_edits_records_them_and_history_shows_them(ws):
    edit(ws)
    run(ws, D3)
    lake = Root(ws.lake)
    catalog = read_catalog(lake)
    manifest = read_manifest(lake, catalog, D3)
    assert manifest.definitions_changed.model_dump() == {
        "new": ["everyone"],
        "changed": ["buyers"],
        "deleted": ["free"],
    }
    changes = read_table(lake, manifest, "changes").filter(pl.col("segment_id") == "buyers")
    assert changes.select("person_id", "reason").sort("person_id").rows() == [
        ("b", "definition_changed"),
        ("c", "definition_changed"),
    ]
    history = segment_history(lake, "buyers")
    assert [(h.run_date, h.size, h.entered, h.exited) for h in history] == [
        ("2026-03-30", 1, 1, 0),
        ("2026-03-31", 1, 0, 0),
        ("2026-04-01", 3, 2, 0),
    ]
    assert history[0].definition == history[1].definition != history[2].definition
    deleted = segment_history(lake, "free")[-1]  # the run that deleted it records the exits
    assert (deleted.run_date, deleted.size, deleted.exited, deleted.definition) == (
        "2026-04-01", 0, 1, None
    )  # fmt: skip
    shown = CliRunner().invoke(app, ["history", "buyers", "--lake", ws.lake])
    assert shown.exit_code == 0 and "changed" in shown.output
    unknown = CliRunner().invoke(app, ["history", "nobody", "--lake", ws.lake])
    assert unknown.exit_code == 1
