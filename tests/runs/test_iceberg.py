"""Committed runs published as Iceberg tables (`transforms.runs.iceberg`), read back the way a
consumer reads them: a pyiceberg SQL catalog opened on its own, scans filtered to one run
date or pinned to the snapshot tagged `run-D`, and Polars' `scan_iceberg`.

Every read must equal the committed Parquet tables of the run catalog (`runs/latest.json`),
which stays the source of truth: after a rerun, after a crash between commit and publish,
after a publish killed with SIGKILL, on a local lake and on the S3 server. Publishing run D
adds exactly one snapshot to `membership` and one to `changes` and moves tag `run-D` to
them; publishing what is already published adds nothing.

Most tests start from a copy of one small workspace (`committed_runs`): four dates run with
the step function, which commits without publishing; D3 changes nothing, so its `changes`
partition is empty.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import yaml
from pyiceberg.catalog import Catalog as IcebergCatalog
from pyiceberg.catalog import load_catalog
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Table
from typer.testing import CliRunner

from tests.support.workspace import (
    CONTRACTS,
    EVENTS_HEADER,
    PEOPLE_HEADER,
    Bucket,
    person_row,
    workspace_settings,
)
from transforms.cli.app import app
from transforms.cli.demo import FIRST_DAY, SECOND_DAY, write_demo_workspace
from transforms.config import Settings, load_settings
from transforms.contracts.odcs import OUTPUT_CONTRACTS
from transforms.errors import ConfigError, MissingInputError
from transforms.runs.iceberg import publish_runs
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

runner = CliRunner()
D1 = date(2026, 3, 30)
D2, D3, D4, D5 = (D1 + timedelta(days=n) for n in range(1, 5))
COMMITTED = (D1, D2, D3, D4)
"""The dates `committed_runs` runs; D5 has landing files for a later run."""
PER_RUN = ("membership", "changes")

DEFINITIONS = {
    "vip": "name: VIP\ntype: manual\n",
    "buyers": "name: Buyers\ntype: data_driven\nwhere: performed('purchase')\n",
    "pro": "name: Pro\ntype: data_driven\nwhere: plan = 'pro'\n",
}
PEOPLE = "abcdefgh"
PRO = {D1: "a", D2: "ab", D3: "ab", D4: "abc", D5: "abc"}
PURCHASES = {D1: "a", D2: "b", D3: "", D4: "c", D5: "d"}
UPLOADS = {D1: ("vip/first.csv", "person_id\na\nb\n"), D2: ("vip/remove/out.csv", "person_id\na\n")}
"""Dropped into the inbox just before the date's run."""

ENV = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTS_")}


@pytest.fixture(autouse=True)
def pyiceberg_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polars plans Iceberg scans with pyiceberg (no warning about a missing plugin)."""
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")


# --- workspaces ---------------------------------------------------------------------------------
def people_csv(pro: str) -> str:
    return PEOPLE_HEADER + "".join(person_row(p, "pro" if p in pro else "free") for p in PEOPLE)


def events_csv(day: date) -> str:
    rows = "".join(
        f"{day}-{i},{p},purchase,{day}T10:00:00Z,,,\n" for i, p in enumerate(PURCHASES[day])
    )
    return EVENTS_HEADER + rows


def put(settings: Settings, root: str, key: str, text: str) -> None:
    path = Path(getattr(settings, root)) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_workspace(folder: Path) -> Path:
    """A workspace under `folder` (its segments.yaml, relative roots): definitions and the
    landing files of D1..D5. Returns the config file."""
    for segment_id, text in DEFINITIONS.items():
        (folder / "definitions").mkdir(parents=True, exist_ok=True)
        (folder / "definitions" / f"{segment_id}.yaml").write_text(text)
    config = folder / "segments.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "landing": "landing",
                "lake": "lake",
                "inbox": "inbox",
                "definitions": "definitions",
                "contracts": str(CONTRACTS),
            }
        )
    )
    settings = load_settings(config)
    for day in PRO:
        put(settings, "landing", f"people/{day}/p.csv", people_csv(PRO[day]))
        put(settings, "landing", f"events/{day}/e.csv", events_csv(day))
    return config


def run_date(settings: Settings, day: date) -> None:
    """Drop the uploads of `day`, then run it with the step function (commits, no publish)."""
    if day in UPLOADS:
        put(settings, "inbox", *UPLOADS[day])
    run(settings, day)


def rerun_latest(settings: Settings, everyone_pro: bool = True) -> None:
    """Rerun D4 with its people snapshot replaced: everyone on pro (its membership and changes
    gain rows), or back to the original one."""
    put(settings, "landing", f"people/{D4}/p.csv", people_csv(PEOPLE if everyone_pro else PRO[D4]))
    run(settings, D4)


@pytest.fixture(scope="module")
def committed_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a workspace whose D1..D4 are committed and none published."""
    folder = tmp_path_factory.mktemp("iceberg") / "ws"
    settings = load_settings(write_workspace(folder))
    for day in COMMITTED:
        run_date(settings, day)
    return folder


@dataclass
class Workspace:
    config: Path
    settings: Settings

    @property
    def lake(self) -> Path:
        return Path(self.settings.lake)


@pytest.fixture
def ws(committed_runs: Path, tmp_path: Path) -> Workspace:
    """A copy of `committed_runs` (modified times kept: the landing fingerprints use them)."""
    folder = tmp_path / "ws"
    shutil.copytree(committed_runs, folder)
    config = folder / "segments.yaml"
    return Workspace(config, load_settings(config))


# --- what committed, and what a consumer reads ----------------------------------------------------
def consumer_catalog(lake: Path | str) -> IcebergCatalog:
    """The catalog as a consumer opens it, knowing only where the lake is."""
    return load_catalog(
        "segments",
        type="sql",
        uri=f"sqlite:///{lake}/catalog.db",
        warehouse=f"file://{lake}/iceberg",
    )


def committed(settings: Settings) -> dict[date, dict[str, pl.DataFrame]]:
    """Every committed run's membership and changes, read through the run catalog."""
    lake = Root(settings.lake, settings.storage_options)
    catalog = read_catalog(lake)
    return {
        day: {t: read_table(lake, read_manifest(lake, catalog, day), t) for t in PER_RUN}
        for day in catalog.dates
    }


def manifest_keys(settings: Settings) -> dict[date, tuple[str, str]]:
    """Each committed run's manifest key and attempt, as the run catalog names them now."""
    lake = Root(settings.lake, settings.storage_options)
    catalog = read_catalog(lake)
    return {
        day: (catalog.runs[day.isoformat()], read_manifest(lake, catalog, day).attempt)
        for day in catalog.dates
    }


def row_order(row: tuple) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in row)


def rows(frame: pl.DataFrame | pa.Table, columns: list[str]) -> list[tuple]:
    """The rows of `frame` as tuples of `columns`, sorted (None first)."""
    if isinstance(frame, pa.Table):
        frame = pl.from_arrow(frame)
    return sorted(frame.select(columns).rows(), key=row_order)


def expected(frame: pl.DataFrame, day: date, columns: list[str]) -> list[tuple]:
    """A committed table's rows as its Iceberg table holds them: with run_date = D."""
    assert set(columns) == set(frame.columns) | {"run_date"}
    return rows(frame.with_columns(run_date=pl.lit(day, dtype=pl.Date)), columns)


def tag_snapshot(table: Table, day: date) -> int:
    ref = table.metadata.refs.get(f"run-{day}")
    assert ref is not None, (
        f"{table.name()}: no tag run-{day} (tags: {sorted(table.metadata.refs)})"
    )
    assert ref.snapshot_ref_type == "tag"
    return ref.snapshot_id


def assert_published(
    settings: Settings,
    iceberg: IcebergCatalog | None = None,
    with_polars: bool = True,
    polars_options: dict[str, str] | None = None,
) -> None:
    """Every committed run's membership and changes, read through pyiceberg (filtered to D, and
    at the snapshot tagged run-D) and Polars (with `polars_options` as its storage options),
    equal its committed tables; no other run_date is in the tables; `membership_current`
    holds the latest run's membership."""
    iceberg = iceberg or consumer_catalog(settings.lake)
    runs = committed(settings)
    assert runs, "nothing committed"
    for name in PER_RUN:
        table = iceberg.load_table(f"segments.{name}")
        columns = table.schema().column_names
        everything = []
        for day, tables in runs.items():
            want = expected(tables[name], day, columns)
            everything += want
            where = EqualTo("run_date", day.isoformat())
            tagged = tag_snapshot(table, day)
            reads = {
                "a filtered scan": table.scan(row_filter=where).to_arrow(),
                f"a scan of run-{day}": table.scan(row_filter=where, snapshot_id=tagged).to_arrow(),
            }
            if with_polars:
                reads["pl.scan_iceberg"] = (
                    pl.scan_iceberg(table, storage_options=polars_options)
                    .filter(pl.col("run_date") == day)
                    .collect()
                )
                reads[f"pl.scan_iceberg at run-{day}"] = (
                    pl.scan_iceberg(table, snapshot_id=tagged, storage_options=polars_options)
                    .filter(pl.col("run_date") == day)
                    .collect()
                )
            for how, got in reads.items():
                assert rows(got, columns) == want, f"{name} of {day} read by {how}"
        whole = table.scan().to_arrow()
        assert rows(whole, columns) == sorted(everything, key=row_order), (
            f"{name}: the table holds other rows than the committed runs"
        )
        lake_types = runs[max(runs)][name].schema
        got_types = pl.from_arrow(whole).schema
        assert {c: got_types[c] for c in lake_types} == dict(lake_types), name
    latest = max(runs)
    current = iceberg.load_table("segments.membership_current")
    columns = current.schema().column_names
    want = expected(runs[latest]["membership"], latest, columns)
    assert rows(current.scan().to_arrow(), columns) == want, "membership_current"
    if with_polars:
        assert (
            rows(pl.scan_iceberg(current, storage_options=polars_options).collect(), columns)
            == want
        ), "membership_current"


def snapshot_counts(lake: Path) -> dict[str, int]:
    iceberg = consumer_catalog(lake)
    return {
        name: len(iceberg.load_table(f"segments.{name}").snapshots())
        for name in ("membership", "changes", "membership_current")
    }


def membership_of(iceberg: IcebergCatalog, day: date, snapshot_id: int | None = None) -> list:
    table = iceberg.load_table("segments.membership")
    found = table.scan(row_filter=EqualTo("run_date", day.isoformat()), snapshot_id=snapshot_id)
    return rows(found.to_arrow(), table.schema().column_names)


# --- the tests ------------------------------------------------------------------------------------
def test_the_demo_runs_read_back_equal_to_the_committed_tables(tmp_path: Path):
    """The demo's two days (people joining and leaving, late and re-sent events, uploads and a
    refused one), published: every read path returns the committed rows of each run."""
    settings = workspace_settings(tmp_path)
    files = write_demo_workspace(Root(settings.landing), Root(settings.inbox), 1_000)
    run(settings, FIRST_DAY)
    for key, data in files.later_uploads.items():
        Root(settings.inbox).write_bytes(key, data)
    run(settings, SECOND_DAY)
    published = publish_runs(settings)
    assert sorted(published.runs) == [FIRST_DAY.isoformat(), SECOND_DAY.isoformat()]
    runs = committed(settings)
    assert all(tables[t].height > 0 for tables in runs.values() for t in PER_RUN)
    assert published.runs[SECOND_DAY.isoformat()] == {
        "membership": runs[SECOND_DAY]["membership"].height,
        "changes": runs[SECOND_DAY]["changes"].height,
        "membership_current": runs[SECOND_DAY]["membership"].height,
    }
    assert_published(settings)


def test_every_run_of_a_multi_date_workspace_reads_back_after_a_rerun(ws: Workspace):
    """Four dates (a manual and two data-driven segments, a date without changes), published;
    then the latest rerun with another people snapshot, published: every run still reads back
    equal to what committed, the rerun's new rows included."""
    publish_runs(ws.settings)
    assert_published(ws.settings)
    before = committed(ws.settings)[D4]
    rerun_latest(ws.settings)
    after = committed(ws.settings)[D4]
    assert after["membership"].height > before["membership"].height
    assert after["changes"].height > before["changes"].height
    assert committed(ws.settings)[D3]["changes"].is_empty()
    publish_runs(ws.settings)
    assert_published(ws.settings)


def test_one_snapshot_per_table_per_run_and_a_rerun_moves_its_tag(ws: Workspace):
    """Publishing four runs adds four snapshots to membership and changes and one to
    membership_current; each tag's snapshot names its run date, attempt and manifest. A rerun
    of D4 adds exactly one more to each and moves run-D4 to it; the other tags stay. Publishing
    again adds nothing: no snapshot, no file in the warehouse."""
    first = publish_runs(ws.settings)
    assert sorted(first.runs) == [d.isoformat() for d in COMMITTED]
    assert snapshot_counts(ws.lake) == {"membership": 4, "changes": 4, "membership_current": 1}
    iceberg = consumer_catalog(ws.lake)
    tags = {
        n: {d: tag_snapshot(iceberg.load_table(f"segments.{n}"), d) for d in COMMITTED}
        for n in PER_RUN
    }

    def assert_summaries() -> None:
        keys = manifest_keys(ws.settings)
        for name in PER_RUN:
            table = consumer_catalog(ws.lake).load_table(f"segments.{name}")
            for day in COMMITTED:
                snapshot = table.snapshot_by_id(tag_snapshot(table, day))
                assert snapshot is not None and snapshot.summary is not None
                summary = snapshot.summary
                assert summary["segments.run-date"] == day.isoformat()
                assert summary["segments.manifest"] == keys[day][0]
                assert summary["segments.attempt"] == keys[day][1]
                assert keys[day][1] in keys[day][0]
            assert {r for r in table.metadata.refs if r != "main"} == {
                f"run-{d}" for d in COMMITTED
            }
        current = consumer_catalog(ws.lake).load_table("segments.membership_current")
        summary = current.current_snapshot().summary
        assert summary["segments.run-date"] == D4.isoformat()
        assert summary["segments.manifest"] == keys[D4][0]

    assert_summaries()
    rerun_latest(ws.settings)
    again = publish_runs(ws.settings)
    assert set(again.runs) == {D4.isoformat()}
    assert set(again.runs[D4.isoformat()]) == {"membership", "changes", "membership_current"}
    assert again.up_to_date == 3
    assert snapshot_counts(ws.lake) == {"membership": 5, "changes": 5, "membership_current": 2}
    iceberg = consumer_catalog(ws.lake)
    for name in PER_RUN:
        table = iceberg.load_table(f"segments.{name}")
        moved = tag_snapshot(table, D4)
        assert moved != tags[name][D4]
        assert moved == table.current_snapshot().snapshot_id
        assert {d: tag_snapshot(table, d) for d in (D1, D2, D3)} == {
            d: tags[name][d] for d in (D1, D2, D3)
        }
    assert_summaries()
    assert_published(ws.settings)

    files = sorted((ws.lake / "iceberg").rglob("*"))
    for _ in range(2):
        nothing = publish_runs(ws.settings)
        assert nothing.runs == {} and nothing.up_to_date == 4
        assert snapshot_counts(ws.lake) == {"membership": 5, "changes": 5, "membership_current": 2}
        assert sorted((ws.lake / "iceberg").rglob("*")) == files  # not even a metadata file


def test_a_rerun_without_changes_empties_its_partition(ws: Workspace):
    """D4 rerun with a corrected export that undoes its changes (D3's plans, no purchase): its
    `changes` partition, which had rows, is replaced by none in one snapshot, and reads back
    empty; publishing again is still a no-op."""
    publish_runs(ws.settings)
    put(ws.settings, "landing", f"people/{D4}/p.csv", people_csv(PRO[D3]))
    put(ws.settings, "landing", f"events/{D4}/e.csv", EVENTS_HEADER)
    run(ws.settings, D4)
    assert committed(ws.settings)[D4]["changes"].is_empty()
    republished = publish_runs(ws.settings)
    assert republished.runs == {
        D4.isoformat(): {"membership": 5, "changes": 0, "membership_current": 5}
    }
    assert snapshot_counts(ws.lake) == {"membership": 5, "changes": 5, "membership_current": 2}
    assert_published(ws.settings)
    assert publish_runs(ws.settings).runs == {}


def test_superseded_snapshots_expire_and_tagged_ones_stay(ws: Workspace):
    """With keep_superseded_files_for at zero, the publish of a rerun expires the snapshots no
    tag or head names (D4's replaced one, membership_current's previous one); the tagged
    snapshots stay, and reading at every tag still returns its run."""
    publish_runs(ws.settings)
    rerun_latest(ws.settings)
    impatient = ws.settings.model_copy(update={"keep_superseded_files_for": timedelta(0)})
    publish_runs(impatient)
    assert snapshot_counts(ws.lake) == {"membership": 4, "changes": 4, "membership_current": 1}
    iceberg = consumer_catalog(ws.lake)
    for name in PER_RUN:
        table = iceberg.load_table(f"segments.{name}")
        assert {s.snapshot_id for s in table.snapshots()} == {
            tag_snapshot(table, day) for day in COMMITTED
        }
    assert_published(ws.settings)
    # the files only the expired snapshots reached are deleted; every file left is reachable
    for name in (*PER_RUN, "membership_current"):
        table = iceberg.load_table(f"segments.{name}")
        reachable = {
            entry.data_file.file_path.removeprefix("file://")
            for snapshot in table.snapshots()
            for manifest in snapshot.manifests(table.io)
            for entry in manifest.fetch_manifest_entry(table.io)
        }
        on_disk = {
            str(p) for p in (ws.lake / "iceberg/segments" / name / "data").rglob("*.parquet")
        }
        assert on_disk == reachable, name


def test_a_column_the_contract_adds_is_published_as_null_for_the_runs_without_it(
    ws: Workspace, tmp_path: Path
):
    """A contract that gains a column (here a required one) adds it to the table as optional;
    runs whose files lack it publish it as NULL, and reading still equals the committed rows."""
    publish_runs(ws.settings)
    contracts = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, contracts)
    membership = contracts / "membership.odcs.yaml"  # a folder's own copy wins over the package's
    shutil.copy(OUTPUT_CONTRACTS / membership.name, membership)
    membership.write_text(
        membership.read_text().replace(
            "      - name: run_date\n",
            "      - name: weight\n        logicalType: number\n        required: true\n"
            "      - name: run_date\n",
        )
    )
    edited = ws.settings.model_copy(update={"contracts": str(contracts)})
    rerun_latest(edited)
    publish_runs(edited)
    table = consumer_catalog(ws.lake).load_table("segments.membership")
    assert table.schema().find_field("weight").required is False
    rows = pl.from_arrow(table.scan(row_filter=EqualTo("run_date", D4.isoformat())).to_arrow())
    assert rows.height == committed(edited)[D4]["membership"].height
    assert rows["weight"].null_count() == rows.height


def test_a_run_whose_files_are_gone_does_not_stop_the_others(ws: Workspace):
    """A committed run whose lake files were removed cannot be published: the error names its
    date and says how to repair it, and every other run and membership_current is published."""
    for path in (ws.lake / f"membership/run_date={D1}").glob("*.parquet"):
        path.unlink()
    with pytest.raises(MissingInputError, match=str(D1)) as raised:
        publish_runs(ws.settings)
    assert "segments run --date" in (raised.value.hint or "")
    iceberg = consumer_catalog(ws.lake)
    table = iceberg.load_table("segments.membership")
    assert table.snapshot_by_name(f"run-{D1}") is None
    assert all(table.snapshot_by_name(f"run-{day}") for day in (D2, D3, D4))
    assert iceberg.load_table("segments.membership_current").scan().to_arrow().num_rows > 0


def test_a_lake_copied_with_its_catalog_is_refused(ws: Workspace, tmp_path: Path):
    """The embedded catalog keeps absolute paths: publishing from a copy of the lake would write
    into the original's warehouse, so it is refused with what to do."""
    publish_runs(ws.settings)
    copy = tmp_path / "copy"
    shutil.copytree(ws.lake, copy)
    with pytest.raises(ConfigError, match="copied or moved"):
        publish_runs(ws.settings.model_copy(update={"lake": str(copy)}))


def test_a_reader_sees_a_republished_run_whole_or_not_at_all(ws: Workspace):
    """A consumer reads D4's membership in a loop (loading the table each time; filtered to D4,
    and at tag run-D4) while D4 is rerun and republished three times, alternating between two
    people snapshots: every read is exactly the old rows or exactly the new ones, never a mix,
    a doubled row or an error."""
    publish_runs(ws.settings)
    table = consumer_catalog(ws.lake).load_table("segments.membership")
    old = membership_of(consumer_catalog(ws.lake), D4)
    rerun_latest(ws.settings, everyone_pro=True)  # committed, not published yet
    new = expected(committed(ws.settings)[D4]["membership"], D4, table.schema().column_names)
    assert len(new) > len(old) and set(old) < set(new)
    versions = {"old": old, "new": new}
    seen: list[str] = []
    problems: list[str] = []
    stop = threading.Event()

    def read_until_stopped() -> None:
        iceberg = consumer_catalog(ws.lake)  # its own catalog and database connection
        while not stop.is_set():
            try:
                table = iceberg.load_table("segments.membership")
                reads = {
                    "filtered": membership_of(iceberg, D4),
                    "at run-D4": membership_of(iceberg, D4, tag_snapshot(table, D4)),
                }
            except Exception:
                problems.append(traceback.format_exc())
                continue
            for how, got in reads.items():
                named = [name for name, want in versions.items() if got == want]
                if named:
                    seen.append(named[0])
                else:
                    doubled = [r for r, n in Counter(got).items() if n > 1]
                    problems.append(f"{how}: {len(got)} rows, doubled {doubled[:5]}: {got[:20]}")

    def wait_for(which: str, since: int) -> None:
        deadline = time.monotonic() + 30
        while seen[since:].count(which) < 4 and time.monotonic() < deadline and not problems:
            time.sleep(0.005)

    reader = threading.Thread(target=read_until_stopped)
    reader.start()
    try:
        wait_for("old", 0)
        for rerun_to, published in ((None, "new"), (False, "old"), (True, "new")):
            if rerun_to is not None:
                rerun_latest(ws.settings, everyone_pro=rerun_to)
            since = len(seen)
            publish_runs(ws.settings)
            wait_for(published, since)
    finally:
        stop.set()
        reader.join()
    assert not problems, f"{len(problems)} bad read(s); the first:\n" + "\n".join(problems[:3])
    switches = sum(1 for a, b in zip(seen, seen[1:], strict=False) if a != b)
    assert seen[-1] == "new" and switches >= 3, Counter(seen)
    assert_published(ws.settings, with_polars=False)


def test_a_rerun_committed_without_publishing_is_repaired_by_publish(ws: Workspace):
    """Publish, then rerun D4 with the step function (it commits and does not publish): the
    tables still hold the old D4 and tag run-D4 names the replaced manifest. `publish_runs`
    replaces D4 only, and every run reads back equal to what committed."""
    publish_runs(ws.settings)
    old = membership_of(consumer_catalog(ws.lake), D4)
    rerun_latest(ws.settings)
    iceberg = consumer_catalog(ws.lake)
    assert membership_of(iceberg, D4) == old  # stale
    table = iceberg.load_table("segments.membership")
    snapshot = table.snapshot_by_id(tag_snapshot(table, D4))
    assert snapshot.summary["segments.manifest"] != manifest_keys(ws.settings)[D4][0]
    repaired = publish_runs(ws.settings)
    assert set(repaired.runs) == {D4.isoformat()} and repaired.up_to_date == 3
    assert membership_of(consumer_catalog(ws.lake), D4) != old
    assert_published(ws.settings)


def test_the_next_segments_run_publishes_what_was_left_behind(ws: Workspace):
    """D1..D4 were committed by the step function and never published, but D1 and D2, then D4
    was rerun without publishing: `segments run --date D5` publishes D3, the rerun D4 and D5,
    and every run reads back equal to what committed."""
    publish_runs(ws.settings, [D1, D2])
    rerun_latest(ws.settings)
    result = runner.invoke(
        app, ["run", "--date", D5.isoformat(), "--json", "--config", str(ws.config)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["iceberg"]["runs"]) == [d.isoformat() for d in (D3, D4, D5)]
    assert report["iceberg"]["up_to_date"] == 2
    assert sorted(committed(ws.settings)) == [D1, D2, D3, D4, D5]
    assert_published(ws.settings)
    assert snapshot_counts(ws.lake) == {"membership": 5, "changes": 5, "membership_current": 2}


def segments_command() -> str:
    found = shutil.which("segments", path=str(Path(sys.executable).parent))
    assert found, "the `segments` entry point is not installed next to the interpreter"
    return found


def files_in(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))


def publish_killed(ws: Workspace, after_files: int, then_seconds: float = 0.0) -> int:
    """`segments publish --all` in its own process, SIGKILLed `then_seconds` after the warehouse
    gained `after_files` files since it started; its exit code (-9 when killed, 0 when it
    finished first). The process takes seconds to start, so the kill is timed from its
    writes."""
    warehouse = ws.lake / "iceberg"
    before = files_in(warehouse)
    with open(ws.config.parent / "publish.err", "ab") as stderr:
        process = subprocess.Popen(
            [segments_command(), "publish", "--all", "--config", str(ws.config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=ENV,
            cwd=ws.config.parent,
        )
        started, reached = time.monotonic(), None
        while process.poll() is None:
            if reached is None and files_in(warehouse) - before >= after_files:
                reached = time.monotonic()
            if reached is not None and time.monotonic() - reached >= then_seconds:
                process.send_signal(signal.SIGKILL)
                break
            if time.monotonic() - started > 120:
                process.kill()
                pytest.fail("segments publish did not finish in 120 s")
            time.sleep(0.001)
        return process.wait()


def assert_one_snapshot_per_run(iceberg: IcebergCatalog, settings: Settings) -> None:
    """Each table holds exactly one snapshot published from each committed run's manifest, and
    its tags are exactly run-D of the committed runs, each on the snapshot of D's manifest."""
    keys = manifest_keys(settings)
    for name in PER_RUN:
        table = iceberg.load_table(f"segments.{name}")
        published = Counter(s.summary["segments.manifest"] for s in table.snapshots())
        assert all(published[key] == 1 for key, _ in keys.values()), (name, published)
        assert {r for r in table.metadata.refs if r != "main"} == {f"run-{d}" for d in keys}
        for day, (key, _) in keys.items():
            snapshot = table.snapshot_by_id(tag_snapshot(table, day))
            assert snapshot.summary["segments.manifest"] == key


def test_publish_killed_at_random_points_then_retried(ws: Workspace, tmp_path: Path):
    """`segments publish --all` SIGKILLed at random points (once the warehouse gained a random
    number of the files an uninterrupted publish writes, or a random time after its first),
    then published to the end: the tables equal the committed ones, and each table has one
    snapshot per run and one tag. Then the same for a rerun of D4 committed without
    publishing."""
    reference = tmp_path / "reference"
    shutil.copytree(ws.config.parent, reference)
    started = time.monotonic()
    publish_runs(load_settings(reference / "segments.yaml"))
    seconds = time.monotonic() - started
    written = files_in(reference / "lake" / "iceberg")
    rng = random.Random(20260330)
    outcomes = [
        publish_killed(ws, after_files=rng.randint(1, written // 2)),
        publish_killed(ws, after_files=1, then_seconds=rng.uniform(0, seconds / 2)),
    ]
    assert outcomes.count(-9) >= 1, f"exit codes {outcomes}: no publish was killed"
    publish_runs(ws.settings)
    assert_published(ws.settings, with_polars=False)
    assert_one_snapshot_per_run(consumer_catalog(ws.lake), ws.settings)

    rerun_latest(ws.settings)
    assert publish_killed(ws, after_files=rng.randint(1, 6)) in (-9, 0)
    result = runner.invoke(app, ["publish", "--all", "--json", "--config", str(ws.config)])
    assert result.exit_code == 0, result.output
    assert_published(ws.settings, with_polars=False)
    assert_one_snapshot_per_run(consumer_catalog(ws.lake), ws.settings)
    errors = (ws.config.parent / "publish.err").read_text()
    assert "Traceback" not in errors, errors[-3000:]


def test_publish_on_the_command_line(ws: Workspace):
    """`segments publish --date D` publishes that run (and `membership_current`); a date without
    a committed run fails naming it; `segments publish` publishes every stale run (`--all` says
    the same); `--json` prints the result; again, nothing."""
    config = ["--config", str(ws.config)]
    latest = runner.invoke(app, ["publish", "--date", D4.isoformat(), "--json", *config])
    assert latest.exit_code == 0, latest.output
    assert sorted(json.loads(latest.stdout)["runs"]) == [D4.isoformat()]

    missing = runner.invoke(app, ["publish", "--date", "2026-01-01", *config])
    assert missing.exit_code == 1
    assert "error:" in missing.stderr and "2026-01-01" in missing.stderr
    assert "Traceback" not in missing.output

    every = runner.invoke(app, ["publish", "--json", *config])
    assert every.exit_code == 0, every.output
    result = json.loads(every.stdout)
    assert sorted(result["runs"]) == [d.isoformat() for d in (D1, D2, D3)]
    assert result["up_to_date"] == 1
    assert result["catalog"] == f"sqlite:///{ws.lake}/catalog.db"
    assert_published(ws.settings)

    again = runner.invoke(app, ["publish", "--all", "--json", *config])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["runs"] == {}
    assert json.loads(again.stdout)["up_to_date"] == 4

    shown = runner.invoke(app, ["publish", "--date", D2.isoformat(), *config])
    assert shown.exit_code == 0, shown.output
    assert "up to date" in shown.stdout


# --- on the S3 server ---------------------------------------------------------------------------
def s3_workspace(s3: Any, bucket: Bucket, prefix: str, folder: Path) -> Path:
    """A config file in `folder` naming landing, lake and inbox under `prefix/` of the test
    bucket (no catalog), with the landing files of D1 and D2 in the bucket."""
    for segment_id, text in DEFINITIONS.items():
        (folder / "definitions").mkdir(parents=True, exist_ok=True)
        (folder / "definitions" / f"{segment_id}.yaml").write_text(text)
    for day in (D1, D2):
        bucket.put(f"{prefix}/landing/people/{day}/p.csv", people_csv(PRO[day]).encode())
        bucket.put(f"{prefix}/landing/events/{day}/e.csv", events_csv(day).encode())
    config = folder / "segments.yaml"
    roots = {name: f"s3://{s3.bucket}/{prefix}/{name}" for name in ("landing", "lake", "inbox")}
    config.write_text(
        yaml.safe_dump(
            roots
            | {
                "definitions": "definitions",
                "contracts": str(CONTRACTS),
                "storage_options": s3.storage_options,
            }
        )
    )
    return config


@pytest.mark.s3
def test_an_object_store_lake_without_a_catalog_is_refused_before_running(
    s3, bucket: Bucket, prefix: str, tmp_path: Path
):
    """`segments run` would publish, and an S3 lake has no default catalog: it fails with an
    error naming the catalog and a fix naming `catalog:` and `--no-publish`, before committing
    (or writing) anything; with `--no-publish` the run commits."""
    config = s3_workspace(s3, bucket, prefix, tmp_path)
    bucket.put(f"{prefix}/inbox/vip/first.csv", b"person_id\na\n")
    refused = runner.invoke(app, ["run", "--date", D1.isoformat(), "--config", str(config)])
    assert refused.exit_code == 1, refused.output
    assert "error:" in refused.stderr and "catalog" in refused.stderr.split("fix:")[0]
    fix = refused.stderr.split("fix:", 1)[1]
    assert "catalog:" in fix and "--no-publish" in fix
    assert "Traceback" not in refused.output
    assert bucket.keys(f"{prefix}/lake") == set()
    assert bucket.keys(f"{prefix}/inbox") == {"vip/first.csv"}

    ran = runner.invoke(
        app, ["run", "--date", D1.isoformat(), "--no-publish", "--config", str(config)]
    )
    assert ran.exit_code == 0, ran.output
    assert "runs/latest.json" in bucket.keys(f"{prefix}/lake")
    assert not any(k.startswith("iceberg/") for k in bucket.keys(prefix))


@pytest.mark.s3
def test_runs_on_s3_publish_to_a_warehouse_in_the_bucket(
    s3, bucket: Bucket, prefix: str, tmp_path: Path
):
    """Lake on S3, a SQL catalog in a local SQLite file, its warehouse in the bucket; two dates
    and a rerun of the second: the tables read back through pyiceberg and Polars equal the
    committed ones, and every data file any snapshot names is an object in the bucket."""
    config = s3_workspace(s3, bucket, prefix, tmp_path)
    properties = {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path}/catalog.db",
        "warehouse": f"s3://{s3.bucket}/{prefix}/iceberg",
    }
    settings = load_settings(config, catalog=properties)
    assert bucket.put(f"{prefix}/inbox/vip/first.csv", b"person_id\na\nb\n") == 200
    run(settings, D1)
    run(settings, D2)
    first = publish_runs(settings)
    assert sorted(first.runs) == [D1.isoformat(), D2.isoformat()]
    old = committed(settings)[D2]["membership"]
    bucket.put(f"{prefix}/landing/people/{D2}/p.csv", people_csv(PEOPLE).encode())
    run(settings, D2)
    assert committed(settings)[D2]["membership"].height > old.height
    again = publish_runs(settings)
    assert set(again.runs) == {D2.isoformat()}

    consumer = load_catalog(
        "segments",
        **properties,
        **{
            "s3.endpoint": s3.endpoint_url,
            "s3.access-key-id": s3.key,
            "s3.secret-access-key": s3.secret,
        },
    )
    polars_options = {
        "aws_endpoint_url": s3.endpoint_url,
        "aws_access_key_id": s3.key,
        "aws_secret_access_key": s3.secret,
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }
    assert_published(settings, consumer, polars_options=polars_options)
    assert_one_snapshot_per_run(consumer, settings)
    keys = bucket.keys(f"{prefix}/iceberg")
    for name in ("membership", "changes", "membership_current"):
        table = consumer.load_table(f"segments.{name}")
        assert table.metadata_location.startswith(f"s3://{s3.bucket}/{prefix}/iceberg/")
        assert table.metadata_location.removeprefix(f"s3://{s3.bucket}/{prefix}/iceberg/") in keys
        snapshots = [s.snapshot_id for s in table.snapshots()]
        for snapshot_id in snapshots:
            for task in table.scan(snapshot_id=snapshot_id).plan_files():
                path = task.file.file_path
                assert path.startswith(f"s3://{s3.bucket}/{prefix}/iceberg/segments/{name}/")
                assert path.removeprefix(f"s3://{s3.bucket}/{prefix}/iceberg/") in keys
