"""`segments why`: each kind of condition explained with the values it saw, NULL logic, manual
segments by their uploads, people outside the snapshot."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.workspace import EVENTS_HEADER, PEOPLE_HEADER, land, with_definitions
from transforms.cli.app import app
from transforms.errors import SegmentsError
from transforms.insights.why import explain
from transforms.runs.steps import run

D1 = date(2026, 3, 30)
D2 = D1 + timedelta(days=1)
DEFINITIONS = {
    "buyers": "name: Buyers\ntype: data_driven\n"
    "where: event_count('purchase', within => '7 days') >= 2\n",
    "pro_buyers": "name: Pro buyers\ntype: data_driven\n"
    "where: plan = 'pro' AND in_segment('buyers')\n",
    "picky": "name: Picky\ntype: data_driven\nwhere: NOT (age > 40) OR lifetime_value > 100\n",
    "vip": "name: VIP\ntype: manual\n",
    "varied": "name: Varied\ntype: data_driven\n"
    "where: event_count_distinct('*', currency, where => amount > 5) >= 1\n",
    "holdout": "name: Holdout\ntype: data_driven\nwhere: bucket(10, 'spring') < 5\n",
    "again": "name: Again\ntype: data_driven\n"
    "where: performed_in_order('purchase', 'purchase', gap => '2 days')\n",
    "steady": "name: Steady\ntype: data_driven\n"
    "where: performed_regularly('purchase', every => '1 day', periods => 3, at_least => 2)\n",
    "lapsed": "name: Lapsed\ntype: data_driven\n"
    "where: performed('purchase', ago => ('40 days', '7 days'))\n",
}
PEOPLE = (
    PEOPLE_HEADER
    + "a,a@example.com,A,pro,US,30,5,true,2026-01-01T00:00:00Z,\n"
    + "b,b@example.com,B,pro,US,50,5,true,2026-01-01T00:00:00Z,\n"
    + "c,c@example.com,C,free,US,,5,true,2026-01-01T00:00:00Z,\n"
)
EVENTS = EVENTS_HEADER + (
    "e1,a,purchase,2026-03-29T10:00:00Z,10,USD,\n"
    "e2,a,purchase,2026-03-30T10:00:00Z,10,USD,\n"
    "e3,b,purchase,2026-03-30T10:00:00Z,10,USD,\n"
    "e4,b,purchase,2026-03-01T10:00:00Z,10,USD,\n"  # outside the 7 days
)


@pytest.fixture
def ws(settings, tmp_path: Path):
    ws = with_definitions(settings, tmp_path / "definitions", DEFINITIONS)
    for day in (D1, D2):
        land(ws, "people", "p.csv", PEOPLE, day)
    land(ws, "events", "e.csv", EVENTS, D1)
    vip = Path(ws.inbox) / "vip"
    vip.mkdir(parents=True)
    (vip / "list.csv").write_text("person_id\na\nb\n")
    run(ws, D1)
    (vip / "remove").mkdir()
    (vip / "remove/b.csv").write_text("email\nB@Example.com\n")
    run(ws, D2)
    return ws


def test_a_member_through_an_attribute_and_a_referenced_segment(ws):
    result = explain(ws, "a", "pro_buyers", D2)
    assert result.member and result.committed_member
    assert (result.tree.kind, result.tree.value) == ("and", True)
    plan, reference = result.tree.children
    assert (plan.sql, plan.value) == ("plan = 'pro'", True)
    assert plan.saw == [{"kind": "attribute", "name": "plan", "value": "pro"}]
    assert reference.value is True
    assert reference.saw == [{"kind": "segment", "name": "buyers", "value": True}]


def test_an_event_feature_shows_its_value_and_window(ws):
    result = explain(ws, "b", "buyers", D2)
    assert not result.member and result.tree.value is False
    (seen,) = result.tree.saw
    assert seen["kind"] == "event feature"
    assert seen["name"] == "count('purchase', within => '7 days')"
    assert seen["value"] == 1  # the purchase of 1 March is outside the window
    assert seen["window"] == "2026-03-25 00:00 .. 2026-04-01 00:00 UTC"


def test_a_relative_window_shows_both_bounds(ws):
    result = explain(ws, "b", "lapsed", D2)
    assert result.member
    (seen,) = result.tree.saw
    assert seen["name"] == "count('purchase', ago => ('40 days', '7 days'))"
    assert seen["value"] == 1  # 1 March; the purchase of 30 March is too recent
    assert seen["window"] == "2026-02-20 00:00 .. 2026-03-25 00:00 UTC"
    assert not explain(ws, "a", "lapsed", D2).member


def test_a_distinct_count_shows_its_value(ws):
    result = explain(ws, "a", "varied", D2)
    assert result.member
    (seen,) = result.tree.saw
    assert seen["name"] == "count_distinct('*', currency, where => amount > 5)"
    assert seen["value"] == 1  # two purchases, both in USD
    assert seen["window"] == "the first event .. 2026-04-01 00:00 UTC"


def test_a_bucket_shows_the_persons_bucket(ws):
    import hashlib

    for person in "abc":
        expected = int(hashlib.md5(f"spring:{person}".encode()).hexdigest()[:8], 16) % 10
        result = explain(ws, person, "holdout", D2)
        assert result.tree.saw == [
            {"kind": "bucket", "name": "bucket(10, 'spring')", "value": expected}
        ]
        assert result.member == (expected < 5)


def test_a_sequence_shows_whether_it_was_performed(ws):
    a, b = explain(ws, "a", "again", D2), explain(ws, "b", "again", D2)
    assert a.member and not b.member  # b's purchases are 29 days apart
    assert a.tree.saw[0]["name"] == "in_order('purchase', 'purchase', gap => '2 days')"
    assert (a.tree.saw[0]["value"], b.tree.saw[0]["value"]) == (True, False)
    assert a.tree.saw[0]["window"] == "the first event .. 2026-04-01 00:00 UTC"


def test_regularly_shows_each_periods_count(ws):
    result = explain(ws, "a", "steady", D2)  # purchases on 29 and 30 March
    assert result.member
    assert [(seen["value"], seen["window"]) for seen in result.tree.saw] == [
        (0, "2026-03-31 00:00 .. 2026-04-01 00:00 UTC"),
        (1, "2026-03-30 00:00 .. 2026-03-31 00:00 UTC"),
        (1, "2026-03-29 00:00 .. 2026-03-30 00:00 UTC"),
    ]
    assert result.tree.saw[1]["name"] == "count('purchase', ago => ('2 days', '1 day'))"
    assert not explain(ws, "b", "steady", D2).member


def test_null_is_not_true(ws):
    result = explain(ws, "c", "picky", D2)  # age unknown: NOT (NULL > 40) is NULL
    assert not result.member and result.tree.value is None
    negation, value = result.tree.children
    assert (negation.kind, negation.value) == ("not", None)
    assert negation.children[0].saw == [{"kind": "attribute", "name": "age", "value": None}]
    assert value.value is False


def test_a_manual_segment_is_explained_by_its_uploads(ws):
    result = explain(ws, "b", "vip", D2)
    assert result.kind == "manual" and not result.member
    assert result.uploads == [
        {"run_date": "2026-03-30", "file": "vip/list.csv", "line": 3, "action": "added"},
        {"run_date": "2026-03-31", "file": "vip/remove/b.csv", "line": 2, "action": "removed"},
    ]
    assert explain(ws, "a", "vip", D2).member


def test_someone_outside_the_snapshot_is_in_no_segment(ws):
    result = explain(ws, "zed", "buyers", D2)
    assert not result.in_snapshot and not result.member and result.tree is None


def test_an_unknown_segment_suggests_the_closest(ws):
    with pytest.raises(SegmentsError) as raised:
        explain(ws, "a", "buyer", D2)
    assert raised.value.hint == "did you mean 'buyers'?"


def test_the_command_prints_the_tree_and_json(ws):
    args = ["--lake", ws.lake, "--inbox", ws.inbox, "--definitions", ws.definitions]
    args += ["--contracts", ws.contracts]
    shown = CliRunner().invoke(app, ["why", "a", "pro_buyers", *args])
    assert shown.exit_code == 0, shown.output
    assert "a is a member of pro_buyers on 2026-03-31" in shown.output
    assert "segment buyers = TRUE" in shown.output
    as_json = CliRunner().invoke(app, ["why", "c", "picky", "--json", "--date", str(D2), *args])
    assert json.loads(as_json.output)["tree"]["value"] is None


def test_an_upload_naming_a_shared_email_did_not_add_the_person(settings, tmp_path: Path):
    ws = with_definitions(settings, tmp_path / "definitions", DEFINITIONS)
    shared = PEOPLE.replace("b@example.com", "a@example.com")  # a and b share an address
    land(ws, "people", "p.csv", shared, D1)
    land(ws, "events", "e.csv", EVENTS, D1)
    vip = Path(ws.inbox) / "vip"
    vip.mkdir(parents=True)
    (vip / "by-email.csv").write_text("email\nA@example.com\nc@example.com\n")
    run(ws, D1)
    a, c = explain(ws, "a", "vip", D1), explain(ws, "c", "vip", D1)
    assert not a.member and a.uploads == []  # the run applied that row to nobody
    assert c.member and c.uploads == [
        {"run_date": "2026-03-30", "file": "vip/by-email.csv", "line": 3, "action": "added"}
    ]


def test_a_replace_list_explains_who_it_kept_and_who_it_replaced(ws):
    D3 = D2 + timedelta(days=1)
    land(ws, "people", "p.csv", PEOPLE, D3)
    replace = Path(ws.inbox) / "vip" / "replace"
    replace.mkdir()
    (replace / "sync.csv").write_text("person_id\nc\n")
    run(ws, D3)
    a, c = explain(ws, "a", "vip", D3), explain(ws, "c", "vip", D3)
    assert not a.member and a.uploads[-1] == {
        "run_date": "2026-04-01",
        "file": "vip/replace/sync.csv",
        "action": "replaced",
    }
    assert c.member and c.uploads == [
        {"run_date": "2026-04-01", "file": "vip/replace/sync.csv", "line": 2, "action": "added"}
    ]


def test_a_feature_on_event_properties_shows_the_values_it_saw(settings, tmp_path: Path):
    where = (
        "event_sum('purchase', properties.price, within => '7 days',"
        " where => properties.source = 'app') >= 20"
    )
    ws = with_definitions(
        settings,
        tmp_path / "definitions",
        {"app_buyers": f"name: App buyers\ntype: data_driven\nwhere: {where}\n"},
    )
    land(ws, "people", "p.csv", PEOPLE, D1)
    rows = [
        ("e1", "2026-03-29T10:00:00Z", '{"source": "app", "price": 12.5}'),
        ("e2", "2026-03-30T10:00:00Z", '{"source": "web", "price": 30}'),
        ("e3", "2026-03-30T11:00:00Z", '{"price": 1}'),
        ("e4", "2026-03-01T10:00:00Z", '{"source": "store", "price": 99}'),  # outside 7 days
    ]
    text = "".join(
        f'{eid},a,purchase,{ts},1,USD,"{props.replace(chr(34), chr(34) * 2)}"\n'
        for eid, ts, props in rows
    )
    land(ws, "events", "e.csv", EVENTS_HEADER + text, D1)
    run(ws, D1)
    result = explain(ws, "a", "app_buyers", D1)
    assert not result.member
    (seen,) = result.tree.saw
    assert seen["value"] == 12.5  # only e1 came from the app
    assert seen["properties"] == {
        "properties.price": [1.0, 12.5, 30.0],
        "properties.source": ["app", "web", None],
    }
    args = ["--lake", ws.lake, "--inbox", ws.inbox, "--definitions", ws.definitions]
    args += ["--contracts", ws.contracts, "--date", str(D1)]
    printed = CliRunner().invoke(app, ["why", "a", "app_buyers", *args])
    assert printed.exit_code == 0, printed.output
    assert "properties.source seen: 'app', 'web', None" in printed.stdout
