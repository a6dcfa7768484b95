"""Folding the event features from the previous run's state gives exactly what recomputing them
from every event gives: day after day, with late and future events, bucket edges, gaps between
runs and definition changes."""

from __future__ import annotations

import json
import random
import shutil
from datetime import date, datetime, time, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.support.workspace import (
    CONTRACTS,
    EVENTS_HEADER,
    PEOPLE_HEADER,
    land,
    person_row,
    with_definitions,
    workspace_settings,
)
from transforms.engines import person_order
from transforms.language.semantics import as_of_instant
from transforms.runs.materialize import EvaluationOptions, compile_definitions, evaluate
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.lake import STATE_TABLES
from transforms.storage.roots import Root

START = date(2026, 3, 20)
DAYS = [START + timedelta(days=i) for i in range(8)]
PEOPLE = [f"p{i:02d}" for i in range(30)]
DEFINITIONS = {
    "login_today": "event_count('login', within => '1 day') >= 1",
    "viewer": "event_count('view', within => '3 days') >= 2",
    "busy": "event_count('*') >= 12",
    "spender": "event_sum('purchase', amount, within => '4 days') > 3.5",
    "big_average": "event_avg('purchase', amount, within => '5 days') >= 2.25",
    "recent_viewer": "last_event_at('view', within => '2 days') >= as_of() - INTERVAL '1 day'",
    "old_timer": "first_event_at('*', within => '6 days') < as_of() - INTERVAL '4 days'",
    "big_buy": "event_max('purchase', amount, within => '3 days') >= 4",
    "small_buy": "event_min('purchase', amount) <= 0.5",
    "since_march": "event_count('purchase', since => DATE '2026-03-24') >= 2",
    "filtered": "event_count('purchase', within => '7 days', where => amount > 2) >= 1",
    "lately": "event_count('login', within => '36 hours') >= 1",
    "fresh_views": "event_count('view', where => days_since(timestamp) < 2) >= 1",
    "lapsed_login": "performed('login', ago => ('5 days', '2 days'))"
    " AND NOT performed('login', within => '2 days')",
    "earlier_spend": "event_sum('purchase', amount, ago => ('6 days', '1 day')) > 3",
    "earlier_view": "last_event_at('view', ago => ('4 days', '1 day')) < as_of() - INTERVAL 2 DAY",
    "earlier_min": "event_min('purchase', amount, ago => ('5 days', '2 days')) <= 1",
    "varied_views": "event_count_distinct('*', name, within => '3 days') >= 3",
    "many_amounts": "event_count_distinct('purchase', amount, ago => ('6 days', '1 day')) >= 3",
    "view_then_buy": "performed_in_order('view', 'purchase', gap => '1 day', within => '5 days')",
    "login_view_login": "performed_in_order('login', 'view', 'login', ago => ('8 days', '1 day'))",
    "daily_viewer": "performed_regularly('view', every => '1 day', periods => 4, at_least => 3)",
    "twice_weekly": "performed_regularly('*', every => '2 days', periods => 3, at_least => 2,"
    " times => 3, where => name <> 'other')",
    "half_day_ago": "event_count('view', ago => ('3 days', '12 hours')) >= 3",
}


def definitions(extra: dict[str, str] | None = None) -> dict[str, str]:
    return definitions_of({**DEFINITIONS, **(extra or {})})


def definitions_of(where: dict[str, str]) -> dict[str, str]:
    return {sid: f"name: {sid}\ntype: data_driven\nwhere: {text}\n" for sid, text in where.items()}


def event_moment(rng: random.Random, day: date) -> datetime:
    """When an event landed on `day` happened: from ten days before the day to two days after
    it (late and early arrivals), some exactly on midnight."""
    moment = datetime.combine(day, time()) + timedelta(days=1)
    if rng.random() < 0.15:
        return moment - timedelta(days=rng.randint(-1, 9))  # exactly on a bucket edge
    return moment - timedelta(seconds=rng.randint(-2 * 86400, 10 * 86400))


def amount_row(rng: random.Random, event_id: str, moment: datetime) -> str:
    """An events CSV row whose purchases mostly carry an amount exact in binary."""
    name = rng.choice(["login", "view", "view", "purchase", "other"])
    amount = rng.randint(0, 24) / 4 if name == "purchase" and rng.random() < 0.9 else ""
    person = rng.choice(PEOPLE)
    return f"{event_id},{person},{name},{moment:%Y-%m-%dT%H:%M:%S}Z,{amount},USD,\n"


def land_days(settings, seed: int, event_row=amount_row) -> None:
    """Each day's snapshot, and 120 events (`event_row`) at `event_moment`s around the day."""
    rng = random.Random(seed)
    for day in DAYS:
        people = [p for p in PEOPLE if rng.random() > 0.05]
        land(settings, "people", "p.csv", PEOPLE_HEADER + "".join(map(person_row, people)), day)
        rows = [event_row(rng, f"{day}-{i}", event_moment(rng, day)) for i in range(120)]
        land(settings, "events", "e.csv", EVENTS_HEADER + "".join(rows), day)


def workspace(folder: Path, seed: int, extra: dict[str, str] | None = None):
    settings = with_definitions(
        workspace_settings(folder), folder / "definitions", definitions(extra)
    )
    land_days(settings, seed)
    return settings


def committed(settings, day: date):
    """(manifest, membership and changes, feature totals) of run `day`: the latest runs only,
    earlier runs' totals are removed."""
    root = Root(settings.lake)
    manifest = read_manifest(root, read_catalog(root), day)
    tables = {t: read_table(root, manifest, t).sort(pl.all()) for t in ("membership", "changes")}
    totals = read_table(root, manifest, "feature_totals")
    return manifest, tables, totals.select(sorted(totals.columns)).sort("person_id")


def compiled_features(settings) -> dict:
    """The features of the workspace's definitions, by name."""
    return compile_definitions(settings, DAYS[-1]).features


def manifest_of(settings, day: date) -> dict:
    root = Root(settings.lake)
    return read_manifest(root, read_catalog(root), day)


def members(settings, day: date) -> pl.DataFrame:
    return read_table(Root(settings.lake), manifest_of(settings, day), "membership")


def assert_same_run(folded, full, day: date) -> dict:
    """Folded and full runs of `day` committed the same tables and totals; the folded manifest."""
    manifest, tables, totals = committed(folded, day)
    full_manifest, full_tables, full_totals = committed(full, day)
    assert full_manifest.features.startswith("recomputed")
    for table, frame in tables.items():
        assert frame.equals(full_tables[table]), (day, table)
    assert totals.equals(full_totals), day
    assert_in_person_order(folded, manifest)
    return manifest


def assert_in_person_order(settings, manifest: dict) -> None:
    """The totals a run writes are sorted by person, and so are the partials of a run that
    folds (a recompute writes its partials in the order its aggregate gives them: sorting them
    cost more than it saves a later fold): what makes folding and joining fast."""
    state, own = manifest.feature_state, f"feature_partials/run_date={manifest.run_date}/"
    partials = [row[2] for row in state.partials if row[2].startswith(own)]
    for key in state.totals + (partials if manifest.features == "folded" else []):
        assert pl.read_parquet(Path(settings.lake, key))["person_id"].is_sorted(), key


def run_folded_full_and_duckdb(folded, full, reference) -> None:
    """Runs every day in three workspaces landed alike: folded, `--full` and on the DuckDB
    engine; asserts each day that all three commit the same rows and that the folded run
    folded (after the first day)."""
    for index, day in enumerate(DAYS):
        run(folded, day)
        run(full, day, full=True)
        run(reference, day, engine="duckdb")
        manifest = assert_same_run(folded, full, day)
        assert manifest.features == ("recomputed (no previous run)" if index == 0 else "folded")
        _, tables, _ = committed(folded, day)
        root = Root(reference.lake)
        sql_run = read_manifest(root, read_catalog(root), day)
        for table, frame in tables.items():
            assert frame.equals(read_table(root, sql_run, table).sort(pl.all())), (day, table)


@pytest.mark.parametrize("seed", [1, 2])
def test_folded_runs_equal_full_recomputes_day_after_day(tmp_path, seed):
    """Folded, recomputed (`--full`) and the DuckDB engine's SQL, written apart from the Polars
    state (every feature from the events in one query), commit the same rows: windows, `ago`,
    sums, averages, extremes, last_event_at, sequences, performed_regularly, distinct counts."""
    folded, full = workspace(tmp_path / "folded", seed), workspace(tmp_path / "full", seed)
    run_folded_full_and_duckdb(folded, full, workspace(tmp_path / "duckdb", seed))
    root = Root(folded.lake)
    final = read_manifest(root, read_catalog(root), DAYS[-1])
    assert set(final.feature_state.events) == set(DAYS)
    for sid in DEFINITIONS:  # every kind of feature decided somebody's membership somewhere
        assert any(members(folded, d).filter(pl.col("segment_id") == sid).height for d in DAYS), sid


def test_gaps_between_runs_and_definition_changes(tmp_path):
    folded, full = workspace(tmp_path / "folded", 3), workspace(tmp_path / "full", 3)
    hows = {}
    for day in (DAYS[0], DAYS[1], DAYS[4], DAYS[5]):  # two dates ingested, never run
        if day == DAYS[4]:
            for settings in (folded, full):
                with_definitions(
                    settings,
                    Path(settings.definitions),
                    definitions({"weekly": "event_count('view', within => '7 days') >= 3"}),
                )
        run(folded, day)
        run(full, day, full=True)
        hows[day] = assert_same_run(folded, full, day).features
    assert hows[DAYS[1]] == "folded"
    assert hows[DAYS[4]] == "folded, and 1 new feature(s) computed from the events"
    assert hows[DAYS[5]] == "folded"


def test_features_added_later_fold_with_the_kept_ones_day_after_day(tmp_path):
    """Definitions that add features of every kind (windows, `ago`, float sums and averages,
    extremes, no window) to a folding workspace: the run that meets them folds the kept
    features and computes only the new ones from the events; that run and every later one
    (whose folds read both the kept partials and the new features' own) commit what recomputing
    every feature gives, and the SQL engine's rows."""
    first = {sid: DEFINITIONS[sid] for sid in ("login_today", "viewer", "busy", "since_march")}
    folded, full, reference = (
        with_definitions(
            workspace_settings(tmp_path / name),
            tmp_path / name / "definitions",
            definitions_of(first),
        )
        for name in ("folded", "full", "duckdb")
    )
    for settings in (folded, full, reference):
        land_days(settings, 8)
    hows = []
    for day in DAYS:
        if day == DAYS[3]:
            for settings in (folded, full, reference):
                with_definitions(settings, Path(settings.definitions), definitions())
        run(folded, day)
        run(full, day, full=True)
        run(reference, day, engine="duckdb")
        hows.append(assert_same_run(folded, full, day).features)
        _, tables, _ = committed(folded, day)
        root = Root(reference.lake)
        sql_run = read_manifest(root, read_catalog(root), day)
        for table, frame in tables.items():
            assert frame.equals(read_table(root, sql_run, table).sort(pl.all())), (day, table)
    new = sum(f.foldable for f in compiled_features(folded).values()) - 4
    assert hows == [
        "recomputed (no previous run)",
        "folded",
        "folded",
        f"folded, and {new} new feature(s) computed from the events",
        *["folded"] * 4,
    ]


def test_a_state_whose_every_feature_is_new_is_recomputed(tmp_path):
    folder = tmp_path / "definitions"
    folded = with_definitions(
        workspace_settings(tmp_path), folder, definitions_of({"a": DEFINITIONS["busy"]})
    )
    land_days(folded, 9)
    run(folded, DAYS[0])
    (folder / "a.yaml").unlink()
    with_definitions(folded, folder, definitions_of({"b": DEFINITIONS["viewer"]}))
    run(folded, DAYS[1])
    assert manifest_of(folded, DAYS[1]).features == (
        f"recomputed (every feature new since run {DAYS[0]})"
    )


def test_a_run_after_one_without_state_or_with_missing_files_recomputes(tmp_path):
    folded, full = workspace(tmp_path / "folded", 4), workspace(tmp_path / "full", 4)
    run(folded, DAYS[0], engine="duckdb")  # the SQL engines keep no state
    run(folded, DAYS[1])
    manifest = read_manifest(Root(folded.lake), read_catalog(Root(folded.lake)), DAYS[1])
    assert manifest.features == f"recomputed (run {DAYS[0]} kept no feature state)"
    Path(folded.lake, manifest.feature_state.partials[0][2]).unlink()
    run(folded, DAYS[2])
    for day in DAYS[:3]:
        run(full, day, full=True)
    assert assert_same_run(folded, full, DAYS[2]).features == (
        f"recomputed (files of run {DAYS[1]}'s feature state are missing)"
    )


def test_an_integer_sum_that_cancels_out_still_loses_the_day_that_leaves(tmp_path):
    """+5 then -5: the sum is 0 and the person has no row in the totals; when the +5 day leaves
    the window the sum is -5, as recomputing finds."""
    contracts = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, contracts)
    contract = contracts / "events.odcs.yaml"
    quantity = "      - name: quantity\n        logicalType: integer\n"
    contract.write_text(
        contract.read_text().replace(
            "      - name: properties\n", quantity + "      - name: properties\n"
        )
    )
    where = "event_sum('order', quantity, within => '2 days') < 0"
    settings = {}
    for name in ("folded", "full"):
        base = workspace_settings(tmp_path / name).model_copy(update={"contracts": str(contracts)})
        settings[name] = with_definitions(
            base,
            tmp_path / name / "definitions",
            {"returned": f"name: r\ntype: data_driven\nwhere: {where}\n"},
        )
        for day, items in zip(DAYS[:4], (5, -5, None, None), strict=True):
            land(settings[name], "people", "p.csv", PEOPLE_HEADER + person_row("p01"), day)
            rows = f"{day}-1,p01,order,{day}T12:00:00Z,,USD,,{items}\n" if items else ""
            land(
                settings[name],
                "events",
                "e.csv",
                EVENTS_HEADER.replace("\n", ",quantity\n") + rows,
                day,
            )
    for day in DAYS[:4]:
        run(settings["folded"], day)
        run(settings["full"], day, full=True)
        assert_same_run(settings["folded"], settings["full"], day)
    # -5 in the window of the 3rd day
    assert members(settings["folded"], DAYS[2])["person_id"].to_list() == ["p01"]


def test_state_of_an_earlier_format_is_recomputed(tmp_path):
    settings = workspace(tmp_path, 7)
    run(settings, DAYS[0])
    (manifest_path,) = Path(settings.lake, "runs", f"run_date={DAYS[0]}").glob("manifest-*.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["feature_state"]["format"] = 1
    manifest_path.write_text(json.dumps(manifest))
    run(settings, DAYS[1])
    assert (
        read_manifest(Root(settings.lake), read_catalog(Root(settings.lake)), DAYS[1]).features
        == f"recomputed (run {DAYS[0]}'s feature state has an earlier format)"
    )


def test_state_files_in_any_order_fold_to_the_same_features(tmp_path):
    """State written out of person order (by an earlier version) is sorted, not trusted."""
    folded, full = workspace(tmp_path / "folded", 6), workspace(tmp_path / "full", 6)
    run(folded, DAYS[0])
    state = read_manifest(Root(folded.lake), read_catalog(Root(folded.lake)), DAYS[0])
    for key in state.feature_state.totals + [state.feature_state.partials[0][2]]:
        path = Path(folded.lake, key)
        pl.read_parquet(path).sort("person_id", descending=True).write_parquet(path)
    run(folded, DAYS[1])
    for day in DAYS[:2]:
        run(full, day, full=True)
    assert assert_same_run(folded, full, DAYS[1]).features == "folded"


def test_buckets_are_the_days_of_every_window():
    """An event exactly on midnight belongs to the day that ends there, as the as-of instant of
    that day counts it and a window ending a day later does not."""
    from transforms.engines.feature_state import bucket

    moments = [
        as_of_instant(START),  # 00:00 of the 21st: the last instant of run date the 20th
        as_of_instant(START) + timedelta(microseconds=1),
    ]
    frame = pl.DataFrame({"timestamp": moments}, schema={"timestamp": pl.Datetime("us", "UTC")})
    assert frame.select(bucket()).to_series().to_list() == [START, START + timedelta(days=1)]


def test_a_recompute_aggregates_each_bucket_for_the_windows_that_hold_it():
    """Bands of buckets end where windows end: the newest band aggregates every feature, each
    older one those whose longest window still holds it; older events only for the features
    without a window, or not at all."""
    from types import SimpleNamespace

    from transforms.engines.feature_state import _NO_WINDOW, _bands

    day, week, month = (SimpleNamespace(name=n) for n in ("day", "week", "month"))
    always = SimpleNamespace(name="always")
    longest = {"day": 1, "week": 7, "month": 30, "always": _NO_WINDOW}

    bands, beyond = _bands(START, [day, week, month], longest)
    assert bands == [
        (None, [day, week, month]),
        (START - timedelta(days=1), [week, month]),
        (START - timedelta(days=7), [month]),
    ]
    assert beyond == START - timedelta(days=30)

    bands, beyond = _bands(START, [day, month, always], longest)
    assert bands == [
        (None, [day, month, always]),
        (START - timedelta(days=1), [month, always]),
        (START - timedelta(days=30), [always]),
    ]
    assert beyond is None


def test_partials_outside_every_window_are_forgotten(tmp_path):
    """With windows only, a run keeps track of the partials a later run can still count."""
    windowed = {sid: DEFINITIONS[sid] for sid in ("login_today", "viewer", "spender", "big_buy")}
    settings = {}
    for name in ("folded", "full"):
        settings[name] = with_definitions(
            workspace_settings(tmp_path / name),
            tmp_path / name / "definitions",
            {sid: f"name: {sid}\ntype: data_driven\nwhere: {w}\n" for sid, w in windowed.items()},
        )
        land_days(settings[name], 5)
    for day in DAYS:
        run(settings["folded"], day)
        run(settings["full"], day, full=True)
        manifest = assert_same_run(settings["folded"], settings["full"], day)
        buckets = {bucket for _, bucket, _ in manifest.feature_state.partials}
        assert min(buckets) > day - timedelta(days=4)  # the longest window is 4 days
        assert_partials_hold_their_windows(settings["folded"], day)
        assert_partials_hold_their_windows(settings["full"], day)
    assert manifest.features == "folded"


def assert_partials_hold_their_windows(settings, day: date) -> None:
    """Each partial run `day` lists holds the columns of the features whose window holds its
    bucket at `day` or later (what a later fold may read); one that run wrote holds no others
    (every feature has a window)."""
    from transforms.engines.membership import state_columns
    from transforms.runs.materialize import compile_definitions

    root = Root(settings.lake)
    manifest = read_manifest(root, read_catalog(root), day)
    features = [f for f in compile_definitions(settings, day).features.values() if f.foldable]
    for _, bucket, key in manifest.feature_state.partials:
        columns = set(pl.read_parquet_schema(Path(settings.lake, key))) - {"person_id"}
        inside = {
            column.name
            for f in features
            if bucket > day - timedelta(days=f.window_days)
            for column in state_columns(f, pl.lit(True))
        }
        assert inside <= columns, key
        if f"/run_date={day}/" in key:
            assert columns == inside, key


def state_files(settings) -> set[str]:
    return {
        str(path.relative_to(settings.lake))
        for table in STATE_TABLES
        for path in Path(settings.lake, table).rglob("*.parquet")
    }


def test_only_the_latest_runs_keep_their_state_and_runs_go_on_folding(tmp_path):
    windowed = {"login_today": DEFINITIONS["login_today"], "viewer": DEFINITIONS["viewer"]}
    folded, full = (
        with_definitions(
            workspace(tmp_path / name, 6), tmp_path / name / "windowed", definitions_of(windowed)
        )
        for name in ("folded", "full")
    )
    for day in DAYS[:5]:
        run(folded, day)
    root = Root(folded.lake)
    latest = [read_manifest(root, read_catalog(root), day) for day in DAYS[3:5]]
    listed = {
        key
        for manifest in latest
        for key in manifest.feature_state.totals
        + [row[2] for row in manifest.feature_state.partials]
    }
    written = {key for m in latest for table in STATE_TABLES for key in m.files[table]}
    # what the latest two runs fold from or wrote is there, and nothing else: the totals of
    # earlier runs and the partials that left every window are gone, with their folders
    assert state_files(folded) == listed | written
    assert any(f"run_date={DAYS[0]}" in key for key in listed)  # partials still in a window
    assert not Path(folded.lake, "feature_totals", f"run_date={DAYS[0]}").exists()

    run(folded, DAYS[4])  # a rerun of the latest date folds the state of the one before
    assert manifest_of(folded, DAYS[4]).features == "folded"
    run(folded, DAYS[1], rebuild_later=True)  # the state before it is gone: it recomputes,
    hows = [manifest_of(folded, day).features for day in DAYS[1:5]]  # the rest fold
    assert (
        hows
        == [f"recomputed (files of run {DAYS[0]}'s feature state are missing)"] + ["folded"] * 3
    )
    run(folded, DAYS[5])
    for day in DAYS[:6]:
        run(full, day, full=True)
    for day in DAYS[4:6]:  # the runs whose totals are kept
        assert_same_run(folded, full, day)
    for day in DAYS[:4]:
        assert members(folded, day).sort(pl.all()).equals(members(full, day).sort(pl.all())), day


def test_a_recompute_by_ranges_of_people_gives_what_one_pass_gives(tmp_path, monkeypatch):
    whole, by_ranges = workspace(tmp_path / "whole", 7), workspace(tmp_path / "ranges", 7)
    for day in DAYS[:3]:
        run(whole, day, full=True)
        with monkeypatch.context() as patched:
            patched.setattr(person_order, "PEOPLE_PER_RANGE", 7)
            assert len(person_order.person_ranges(pl.Series(PEOPLE))) == 5
            run(by_ranges, day, full=True)
        assert_same_run(by_ranges, whole, day)
        # the totals too: a file per range, never all ranges in memory at once
        assert len(manifest_of(by_ranges, day).feature_state.totals) > 1
        assert len(manifest_of(whole, day).feature_state.totals) == 1
    run(whole, DAYS[3], full=True)
    run(by_ranges, DAYS[3])  # folds the partials and the totals each range of people wrote
    assert assert_same_run(by_ranges, whole, DAYS[3]).features == "folded"


def test_an_evaluation_by_ranges_of_people_gives_what_one_pass_gives(tmp_path, monkeypatch):
    """Members computed one range of people at a time, from the events or from the kept
    feature state: the same rows in the same (key) order."""
    chain = {"chained": "in_segment('spender') AND NOT in_segment('login_today')"}
    settings = workspace(tmp_path, 8, chain)
    settings = with_definitions(
        settings, Path(settings.definitions), {"vip": "name: VIP\ntype: manual\n"}
    )
    run(settings, DAYS[2])
    manual = pl.DataFrame({"segment_id": ["vip"] * 3, "person_id": ["p03", "p17", "p29"]})
    one_pass = evaluate(
        settings, DAYS[2], options=EvaluationOptions(manual_members=manual, kept_features=False)
    )
    monkeypatch.setattr(person_order, "PEOPLE_PER_RANGE", 4)
    by_ranges = evaluate(
        settings, DAYS[2], options=EvaluationOptions(manual_members=manual, kept_features=False)
    )
    assert not by_ranges.kept_features
    assert by_ranges.members.equals(one_pass.members)
    assert by_ranges.snapshot.equals(one_pass.snapshot)
    assert set(one_pass.members["segment_id"]) >= {"chained", "vip", "spender"}
    # from the committed feature state (a run's evaluation, preview, plan): the same again
    kept = evaluate(settings, DAYS[2], options=EvaluationOptions(manual_members=manual))
    assert kept.kept_features
    assert kept.members.equals(one_pass.members)
    assert kept.snapshot.equals(one_pass.snapshot)


def from_events(settings, day: date, only: set[str] | None = None):
    return evaluate(settings, day, options=EvaluationOptions(only=only, kept_features=False))


def test_members_from_the_committed_feature_state_are_the_members_from_the_events(tmp_path):
    """`segments preview` and `plan` read the features of a committed run from the state it
    kept, only the columns a segment needs; what the state lacks (features recomputed every
    run: hours windows, days_since, sequences, distinct counts) comes from the events."""
    settings = workspace(tmp_path, 9)
    for day in DAYS[:4]:
        run(settings, day)
    for day in DAYS[2:4]:  # the latest two runs keep their state
        every = evaluate(settings, day)
        assert every.kept_features
        assert every.members.equals(from_events(settings, day).members), day
    for sid in DEFINITIONS:
        one = evaluate(settings, DAYS[3], options=EvaluationOptions(only={sid}))
        expected = from_events(settings, DAYS[3], {sid})
        assert one.members.equals(expected.members), sid
        assert one.snapshot.equals(expected.snapshot), sid
    only_recomputed = evaluate(settings, DAYS[3], options=EvaluationOptions(only={"lately"}))
    assert not only_recomputed.kept_features  # nothing to read from the state
    earliest = evaluate(settings, DAYS[0])  # only the latest two runs keep their state
    assert not earliest.kept_features
    assert earliest.members.equals(from_events(settings, DAYS[0]).members)


def test_a_new_feature_is_computed_from_the_events_beside_the_kept_ones(tmp_path):
    settings = workspace(tmp_path, 10)
    run(settings, DAYS[0])
    run(settings, DAYS[1])
    edited = definitions(
        {
            "weekly": "event_count('view', within => '7 days') >= 3 AND "
            "event_count('login', within => '1 day') >= 1"
        }
    )
    with_definitions(settings, Path(settings.definitions), edited)
    kept = evaluate(settings, DAYS[1], options=EvaluationOptions(only={"weekly"}))
    assert kept.kept_features  # the login count is kept, the 7-day view count is new
    assert kept.members.equals(from_events(settings, DAYS[1], {"weekly"}).members)
    assert kept.members.height


def test_feature_state_that_cannot_be_trusted_is_not_read(tmp_path):
    """Events of a date up to the run's ingested again since, or a totals file missing: every
    feature from the events."""
    from transforms.ingest.step import ingest

    settings = workspace(tmp_path, 11)
    run(settings, DAYS[0])
    run(settings, DAYS[1])
    expected = from_events(settings, DAYS[1]).members
    ingest(settings, DAYS[1])
    again = evaluate(settings, DAYS[1])
    assert not again.kept_features
    assert again.members.equals(expected)
    run(settings, DAYS[2])
    (totals,) = manifest_of(settings, DAYS[2]).feature_state.totals
    expected = from_events(settings, DAYS[2]).members
    Path(settings.lake, totals).unlink()
    missing = evaluate(settings, DAYS[2])
    assert not missing.kept_features
    assert missing.members.equals(expected)
