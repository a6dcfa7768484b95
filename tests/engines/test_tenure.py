"""days_in_segment: whole days since member_since of the previous committed run, the same on
every engine, on a rerun, and in `segments why`."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.support.workspace import (
    EVENTS_HEADER,
    PEOPLE_HEADER,
    land,
    person_row,
    with_definitions,
    workspace_settings,
)
from transforms.insights.why import explain
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

D1 = date(2026, 3, 20)
DAYS = [D1 + timedelta(days=i) for i in range(4)]
WHERE = {
    "buyers": "event_count('purchase') >= 1",
    "loyal": "days_in_segment('buyers') >= 2",
    "newcomers": "in_segment('buyers') AND days_in_segment('buyers') = 0",
    "no_tenure": "days_in_segment('buyers') IS NULL",
}
# a buys on the first day, b on the second, c on the third; d never
PURCHASES = {DAYS[0]: "a", DAYS[1]: "b", DAYS[2]: "c"}


def workspace(folder: Path):
    definitions = {
        sid: f"name: {sid}\ntype: data_driven\nwhere: {where}\n" for sid, where in WHERE.items()
    }
    settings = with_definitions(workspace_settings(folder), folder / "definitions", definitions)
    for day in DAYS:
        people = "".join(person_row(p) for p in "abcd")
        land(settings, "people", "p.csv", PEOPLE_HEADER + people, day)
        buyer = PURCHASES.get(day)
        rows = f"{day}-1,{buyer},purchase,{day}T12:00:00Z,5,USD,\n" if buyer else ""
        land(settings, "events", "e.csv", EVENTS_HEADER + rows, day)
    return settings


def members(settings, day: date) -> dict[str, set[str]]:
    root = Root(settings.lake)
    table = read_table(root, read_manifest(root, read_catalog(root), day), "membership")
    return {sid: set(table.filter(pl.col("segment_id") == sid)["person_id"]) for sid in WHERE}


EXPECTED = {
    DAYS[0]: {"buyers": {"a"}, "loyal": set(), "newcomers": {"a"}, "no_tenure": {"b", "c", "d"}},
    DAYS[1]: {"buyers": {"a", "b"}, "loyal": set(), "newcomers": {"b"}, "no_tenure": {"c", "d"}},
    DAYS[2]: {"buyers": {"a", "b", "c"}, "loyal": {"a"}, "newcomers": {"c"}, "no_tenure": {"d"}},
    DAYS[3]: {
        "buyers": {"a", "b", "c"},
        "loyal": {"a", "b"},
        "newcomers": set(),
        "no_tenure": {"d"},
    },
}


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_days_in_segment_counts_from_the_previous_runs_member_since(tmp_path, engine):
    settings = workspace(tmp_path)
    for day in DAYS:
        run(settings, day, engine=engine)
        assert members(settings, day) == EXPECTED[day], day
    run(settings, DAYS[3], engine=engine)  # a rerun reads the same previous run
    assert members(settings, DAYS[3]) == EXPECTED[DAYS[3]]


def test_a_gap_between_runs_counts_whole_days_and_why_shows_member_since(tmp_path):
    settings = workspace(tmp_path)
    run(settings, DAYS[0])
    run(settings, DAYS[3])  # the previous committed run is the first day's: a since DAYS[0]
    assert members(settings, DAYS[3])["loyal"] == {"a"}
    result = explain(settings, "a", "loyal", DAYS[3])
    assert result.member
    assert result.tree.saw == [
        {
            "kind": "days in segment",
            "name": "buyers",
            "value": 3,
            "member_since": DAYS[0].isoformat(),
        }
    ]
    d = explain(settings, "d", "no_tenure", DAYS[3])
    assert d.member and d.tree.saw[0]["value"] is None


@pytest.mark.spark
def test_days_in_segment_on_spark(spark, tmp_path):
    settings = workspace(tmp_path)
    for day in DAYS[:3]:
        run(settings, day, engine="spark")
        assert members(settings, day) == EXPECTED[day], day
