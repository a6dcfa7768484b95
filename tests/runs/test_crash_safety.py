"""A run killed with SIGKILL at any moment, then retried, commits exactly what one uninterrupted
run commits: the same membership and changes rows, the same manifest (files, uploads applied and
refused, per-segment counts) and the same inbox, for every date.

Each attempt is a real `segments run` in its own process (`crash_harness.py`), killed before
its N-th write to storage; N is drawn with a seeded `random.Random` among the writes an
uninterrupted run of that date makes. The reference is one uninterrupted run per date in a
fresh copy of the same workspace. Every date is ingested by the test before its run (an
ingesting run spends most of its time starting Great Expectations), except in
`test_killed_while_the_run_ingests`, which kills the run's own ingest.

`test_killed_at_each_step_boundary` is not drawn at random: it kills the run of D2 once before
each step boundary and each call of interest (the plan, each step's first staged file, the
first and last claims, the refusal, the data files, the manifest, the catalog swap, the first
clean-up after it), found by matching the reference run's call log, then retries it.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from pprint import pformat
from typing import Any

import pytest
import yaml

from tests.support.workspace import CONTRACTS, EVENTS_HEADER, PEOPLE_HEADER, Bucket, person_row
from transforms.config import Settings, load_settings
from transforms.ingest.step import ingest
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

HARNESS = Path(__file__).parents[1] / "support" / "crash_harness.py"
D1 = date(2026, 3, 30)
D2, D3 = D1 + timedelta(days=1), D1 + timedelta(days=2)
DAYS = (D1, D2, D3)

ATTEMPT = r"\d{8}T\d{12}-[0-9a-f]{6}"
CLAIM = re.compile(rf"_processed/(\d{{4}}-\d{{2}}-\d{{2}})/({ATTEMPT})/(\d{{4}})/(.+)$")

DEFINITIONS = {
    "vip": "name: VIP\ntype: manual\n",
    "suppressed": "name: Suppressed\ntype: manual\n",
    "reachable_buyers": "name: Reachable buyers\ntype: data_driven\n"
    "where: performed('purchase') AND NOT in_segment('suppressed')\n",
    "vip_pro": "name: VIP pro\ntype: data_driven\nwhere: in_segment('vip') AND plan = 'pro'\n",
}


def people(day: date) -> dict[str, str]:
    """Twenty people, every fourth on `pro`; p05 moves to pro on D2, p19 leaves on D3."""
    plans = {f"p{i:02d}": "pro" if i % 4 == 0 else "free" for i in range(20)}
    if day >= D2:
        plans["p05"] = "pro"
    if day >= D3:
        del plans["p19"]
    return plans


PURCHASES = {D1: ["p00", "p03", "p05", "p08"], D2: ["p07", "p03"], D3: ["p11", "p12"]}

# Uploads dropped into the inbox before each date's run, oldest first. Within a date they are
# in key order except vip/again.csv, which sorts before vip/clear but is dropped after it: only
# the (last-modified, key) order makes the clear come first.
UPLOADS: dict[date, list[tuple[str, str]]] = {
    D1: [
        ("reachable_buyers/x.csv", "person_id\np01\n"),  # data-driven: refused
        ("suppressed/list.csv", "email\nP03@Example.com\np08@example.com\nnobody@example.com\n"),
        ("vip/first.csv", "person_id\np01\np02\np03\np04\np08\n"),
    ],
    D2: [
        ("suppressed/remove/out.csv", "person_id\np08\n"),
        ("vip/broken.csv", "person_id,action\np04,promote\n"),  # refused once claimed
        ("vip/clear", ""),
        ("vip/again.csv", "person_id\np02\np09\np04\n"),
    ],
    D3: [("suppressed/late.csv", "person_id\np11\n")],
}


# --- workspaces ---------------------------------------------------------------------------------
@dataclass
class Workspace:
    """Landing, lake and inbox named by `config` (a segments.yaml); on S3 when `bucket` is set."""

    config: Path
    settings: Settings
    bucket: Bucket | None = None
    prefix: str = ""
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.config.parent

    def put(self, key: str, data: bytes, stamp: float) -> None:
        """One object under landing/ or inbox/; on local folders with mtime `stamp`."""
        if self.bucket is not None:
            self.bucket.put(f"{self.prefix}/{key}", data)
            return
        path = self.folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (stamp, stamp))

    def drop_uploads(self, day: date) -> None:
        """The uploads of `day`, in order: local mtimes one minute apart; on S3, where the
        server sets the time, a pause before any upload whose key sorts before an earlier one."""
        base = 1_800_000_000 + DAYS.index(day) * 86_400
        for index, (key, content) in enumerate(UPLOADS[day]):
            earlier = [k for k, _ in UPLOADS[day][:index]]
            if self.bucket is not None and any(key < k for k in earlier):
                time.sleep(1.1)
            self.put(f"inbox/{key}", content.encode(), base + 60 * index)


def write_workspace(
    folder: Path, s3: Any = None, bucket: Bucket | None = None, prefix: str = ""
) -> Workspace:
    """Definitions and segments.yaml under `folder`; landing files of every date, in `folder`
    or, with `s3`, under `s3://<bucket>/<prefix>/`. The inbox starts empty."""
    folder.mkdir(parents=True)
    for segment_id, text in DEFINITIONS.items():
        (folder / "definitions" / f"{segment_id}.yaml").parent.mkdir(exist_ok=True)
        (folder / "definitions" / f"{segment_id}.yaml").write_text(text)
    config: dict[str, Any] = {"definitions": "definitions", "contracts": str(CONTRACTS)}
    if s3 is None:
        config |= {"landing": "landing", "lake": "lake", "inbox": "inbox"}
    else:
        config |= {
            name: f"s3://{s3.bucket}/{prefix}/{name}" for name in ("landing", "lake", "inbox")
        }
        config["storage_options"] = s3.storage_options
        config["catalog"] = {  # `segments run` publishes there after each commit
            "type": "sql",
            "uri": f"sqlite:///{folder / 'catalog.db'}",
            "warehouse": f"s3://{s3.bucket}/{prefix}/iceberg",
        }
    (folder / "segments.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace(
        folder / "segments.yaml", load_settings(folder / "segments.yaml"), bucket, prefix
    )
    for day in DAYS:
        snapshot = "".join(person_row(p, plan) for p, plan in people(day).items())
        events = "".join(
            f"{day}-{i},{p},purchase,{day}T12:00:00Z,10,USD,\n"
            for i, p in enumerate(PURCHASES[day])
        )
        ws.put(f"landing/people/{day}/p.csv", (PEOPLE_HEADER + snapshot).encode(), 0)
        ws.put(f"landing/events/{day}/e.csv", (EVENTS_HEADER + events).encode(), 0)
    return ws


# --- attempts -------------------------------------------------------------------------------------
@dataclass
class Attempt:
    day: date
    kill_at: int
    returncode: int
    calls: list[str]
    """The mutating calls it made (for a killed attempt, the last is the one it died before)."""
    stderr: str

    def __str__(self) -> str:
        if self.returncode == -9:
            outcome = f"killed before {self.calls[-1]}" if self.calls else "killed"
        elif self.returncode == 0:
            outcome = f"finished after {len(self.calls)} calls"
        else:
            outcome = f"FAILED (exit {self.returncode}): {self.stderr.strip()[-600:]}"
        return f"{self.day} kill-at {self.kill_at}: {outcome}"


ENV = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTS_")} | {"COLUMNS": "150"}


def attempt(ws: Workspace, day: date, kill_at: int) -> Attempt:
    """One `segments run --date day` of `ws`, killed before its `kill_at`-th write (0: never)."""
    tag = f"{day}-{len(ws.attempts):02d}"
    count_file, log_file = ws.folder / f"count-{tag}", ws.folder / f"calls-{tag}.log"
    finished = subprocess.run(
        [sys.executable, str(HARNESS), "--kill-at", str(kill_at), "--count-file", str(count_file)]
        + ["--log-file", str(log_file), "--"]
        + ["run", "--date", day.isoformat(), "--config", str(ws.config)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ws.folder,
        timeout=600,
    )
    calls = log_file.read_text().splitlines() if log_file.exists() else []
    done = Attempt(day, kill_at, finished.returncode, calls, finished.stderr)
    ws.attempts.append(done)
    if finished.returncode == 0:
        assert int(count_file.read_text()) == len(calls)
    return done


def play(
    ws: Workspace,
    kills: dict[date, list[int]],
    days=DAYS,
    ingested_by_run=(),
    before_runs: Callable[[date], None] | None = None,
) -> None:
    """Every date in order: drop its uploads, ingest it (unless the run is to), call
    `before_runs(day)`, run it killed at each of `kills[day]` in turn, then once to the end,
    which must succeed."""
    for day in days:
        ws.drop_uploads(day)
        if day not in ingested_by_run:
            ingest(ws.settings, day)
        if before_runs is not None:
            before_runs(day)
        for kill_at in kills.get(day, []):
            # killed, or finished when its kill point lies past its writes; never an error
            assert attempt(ws, day, kill_at).returncode in (-9, 0), history(ws)
        final = attempt(ws, day, 0)
        assert final.returncode == 0, history(ws)


def history(ws: Workspace) -> str:
    return "attempts:\n" + "".join(f"  {a}\n" for a in ws.attempts)


def copy_of(ws: Workspace, folder: Path) -> Workspace:
    """A copy of local workspace `ws` in `folder`, modified times kept (the inbox's order and
    the landing fingerprints depend on them), without its attempts' count and call files, and
    without its Iceberg catalog (it names the original's paths: the copy's first run publishes
    every run to a catalog of its own)."""
    ignored = shutil.ignore_patterns("count-*", "calls-*", "catalog.db", "iceberg")
    shutil.copytree(ws.folder, folder, ignore=ignored)
    config = folder / ws.config.name
    return Workspace(config, load_settings(config))


# --- what a lake has committed, comparable across attempts ---------------------------------------
def normalized(value: Any) -> Any:
    """`value` with attempt names replaced by <attempt>, and claims by (date, original path)."""
    if isinstance(value, str):
        claim = CLAIM.fullmatch(value)
        if claim:
            return (claim.group(1), claim.group(4))
        return re.sub(ATTEMPT, "<attempt>", value)
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def sorted_rows(frame) -> tuple[tuple[str, ...], list[tuple]]:
    rows = sorted(frame.rows(), key=lambda row: tuple("" if v is None else str(v) for v in row))
    return tuple(frame.columns), rows


def committed_state(ws: Workspace) -> dict[str, Any]:
    """Per committed run: its rows and the manifest fields a retry must reproduce; and the
    inbox: claims in claim order as (date, original path), the rest by key, with contents."""
    lake = Root(ws.settings.lake, ws.settings.storage_options)
    catalog = read_catalog(lake)
    state: dict[str, Any] = {"committed runs": sorted(catalog.runs)}
    for day in catalog.dates:
        manifest = read_manifest(lake, catalog, day)
        for table in ("membership", "changes"):
            state[f"{day} {table} rows"] = sorted_rows(read_table(lake, manifest, table))
        record = manifest.model_dump(mode="json")
        for key in ("previous_run_date", "people", "rows", "segments", "features", "files"):
            state[f"{day} manifest {key}"] = normalized(record[key])
        manual = normalized(record["manual"])
        state[f"{day} manifest manual.files"] = manual["files"]
        state[f"{day} manifest manual.applied"] = [
            (r["file"], r["action"], f"rows {r['rows']}", f"applied {r['applied']}")
            + (f"unknown {r['unknown']}", f"ambiguous {r['ambiguous_emails']}")
            for r in manual["applied"]
        ]
        state[f"{day} manifest manual.rejected"] = [
            (r["file"], r["moved_to"], *r["problems"]) for r in manual["rejected"]
        ]
    inbox = Root(ws.settings.inbox, ws.settings.storage_options)
    claims, others = [], []
    for info in inbox.list_files("", recursive=True):
        content = inbox.read_bytes(info.key, raw=True).decode(errors="replace")
        claim = CLAIM.fullmatch(info.key)
        if claim:  # sorted by (date, number, attempt): the order they were applied in
            claims.append(((claim.group(1), claim.group(3), claim.group(2)), info.key, content))
        else:
            others.append((normalized(info.key), content))
    state["inbox _processed (in claim order)"] = [
        (normalized(key), content) for _, key, content in sorted(claims)
    ]
    state["inbox other files"] = others
    return state


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """What differs, readably: rows only on one side, or both values."""
    found = []
    for key in sorted(set(expected) | set(actual)):
        want, got = expected.get(key, "<absent>"), actual.get(key, "<absent>")
        if want == got:
            continue
        if key.endswith(" rows") and isinstance(want, tuple) and isinstance(got, tuple):
            missing = list((Counter(want[1]) - Counter(got[1])).elements())
            extra = list((Counter(got[1]) - Counter(want[1])).elements())
            found.append(
                f"{key} {want[0]}:"
                + "".join(f"\n    only in the reference: {row}" for row in missing[:20])
                + "".join(f"\n    only after the kills:  {row}" for row in extra[:20])
            )
        elif isinstance(want, list) and isinstance(got, list):
            found.append(
                f"{key}:\n    reference:"
                + "".join(f"\n      {item}" for item in want)
                + "\n    after kills:"
                + "".join(f"\n      {item}" for item in got)
            )
        else:
            found.append(
                f"{key}:\n    reference:   {pformat(want, width=100)[:1500]}"
                f"\n    after kills: {pformat(got, width=100)[:1500]}"
            )
    return found


def assert_same_commits(reference: dict[str, Any], ws: Workspace, label: str) -> None:
    found = differences(reference, committed_state(ws))
    assert not found, (
        f"{label}: {len(found)} difference(s) from the uninterrupted runs\n{history(ws)}"
        + "\n".join(found)
    )


# --- the reference: one uninterrupted run per date ----------------------------------------------
@dataclass
class Reference:
    state: dict[str, Any]
    counts: dict[date, int]
    """Mutating calls of an uninterrupted run per date: its kill points are 1..count."""
    calls: dict[date, list[str]]
    states_by_day: dict[date, dict[str, Any]]
    before: dict[date, Workspace]
    """Copies of the workspace as each date's run found it (uploads dropped, date ingested)."""


def reference_of(ws: Workspace, copies: Path) -> Reference:
    states, before = {}, {}

    def keep(day: date) -> None:
        before[day] = copy_of(ws, copies / day.isoformat())

    for day in DAYS:
        play(ws, {}, days=(day,), before_runs=keep)
        states[day] = committed_state(ws)
    finals = {a.day: a for a in ws.attempts}
    return Reference(
        states[DAYS[-1]],
        {d: len(a.calls) for d, a in finals.items()},
        {d: a.calls for d, a in finals.items()},
        states,
        before,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("crash")
    return reference_of(write_workspace(base / "reference"), base / "before")


def seeded_kills(seed: int, kills_per_day: tuple[int, ...], counts: dict[date, int]):
    rng = random.Random(seed)
    return {
        day: [rng.randint(1, counts[day]) for _ in range(n)]
        for day, n in zip(DAYS, kills_per_day, strict=True)
    }


# --- kill points found in a call log --------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One line of a call log: "number method root keys", the root as "lake" or "inbox"."""

    number: int
    method: str
    root: str
    keys: str

    @classmethod
    def parse(cls, line: str) -> Call:
        number, method, root, *keys = line.split(" ", 3)
        return cls(int(number), method, root.rstrip("/").rsplit("/", 1)[-1], "".join(keys))

    def shown(self) -> str:
        """The call with attempt names replaced, comparable across workspaces and attempts."""
        return f"{self.method} {self.root} {re.sub(ATTEMPT, '<attempt>', self.keys)}"


def calls_matching(calls: list[Call], methods: str, root: str, keys: str) -> list[Call]:
    """The calls of one of `methods` (space-separated) on `root` whose keys match regex `keys`."""
    return [
        c
        for c in calls
        if c.method in methods.split() and c.root == root and re.search(keys, c.keys)
    ]


def first(methods: str, root: str, keys: str) -> Callable[[list[Call]], Call | None]:
    return lambda calls: next(iter(calls_matching(calls, methods, root, keys)), None)


def last(methods: str, root: str, keys: str) -> Callable[[list[Call]], Call | None]:
    return lambda calls: (calls_matching(calls, methods, root, keys) or [None])[-1]


def staged(name: str) -> Callable[[list[Call]], Call | None]:
    """The first write of `name` in the attempt's staging folder."""
    return first("write_bytes", "lake", rf"^_staging/run_date=[^/]+/{ATTEMPT}/{re.escape(name)}$")


def first_clean_up(calls: list[Call]) -> Call | None:
    """The first delete after the catalog swap (the commit point)."""
    swap = first("put_if_match put_if_absent", "lake", r"^runs/latest\.json\b")(calls)
    return next(
        (c for c in calls if swap and c.number > swap.number and c.method.startswith("delete")),
        None,
    )


# The run of D2 is killed before each of these in turn. The staged ingest_step.json and
# validate_step.json are written only by a run that ingests, and D2 is ingested before its run
# (an ingesting attempt costs ~20 s more; test_killed_while_the_run_ingests kills inside one).
STEP_BOUNDARIES: dict[str, Callable[[list[Call]], Call | None]] = {
    "plan.json": staged("plan.json"),
    "the first claim": first("move", "inbox", r" _processed/"),
    "the last claim": last("move", "inbox", r" _processed/"),
    "the refusal's .error.txt": first("write_bytes", "inbox", r"^_rejected/.*\.error\.txt$"),
    "the move to _rejected": first("move", "inbox", r" _rejected/"),
    "manual_members.parquet": staged("manual_members.parquet"),
    "manual_step.json": staged("manual_step.json"),
    "members.parquet": staged("members.parquet"),
    "materialize_step.json": staged("materialize_step.json"),
    "the membership data file": first("write_bytes", "lake", r"^membership/.*/part-.*\.parquet$"),
    "the changes data file": first("write_bytes", "lake", r"^changes/.*/part-.*\.parquet$"),
    "diff_step.json": staged("diff_step.json"),
    "the manifest": first("put_if_absent", "lake", r"^runs/run_date=[^/]+/manifest-"),
    "the catalog swap": first("put_if_match put_if_absent", "lake", r"^runs/latest\.json\b"),
    "the first clean-up": first_clean_up,
}


# --- the tests ---------------------------------------------------------------------------------
def test_the_reference_applies_every_upload(reference: Reference):
    """The scenario does what it is meant to: the clear comes before the add dropped after it,
    both refusals are reported, the suppressed buyers are not reachable."""
    state = reference.state
    members = {(s, p) for s, p, *_ in state[f"{D2} membership rows"][1]}
    assert {p for s, p in members if s == "vip"} == {"p02", "p04", "p09"}
    assert {p for s, p in members if s == "suppressed"} == {"p03"}
    assert ("reachable_buyers", "p03") not in members
    assert state[f"{D2} manifest manual.files"] == [
        ("2026-03-31", "suppressed/remove/out.csv"),
        ("2026-03-31", "vip/clear"),
        ("2026-03-31", "vip/again.csv"),
    ]
    assert [r[0] for r in state[f"{D1} manifest manual.rejected"]] == ["reachable_buyers/x.csv"]
    assert [r[0] for r in state[f"{D2} manifest manual.rejected"]] == ["vip/broken.csv"]


def test_killed_right_after_claiming_the_first_upload(reference: Reference, tmp_path: Path):
    """The run of D1 dies just after it moved its first upload under _processed/ (the claim),
    before anything else; the retry must still apply it, in D1."""
    claim = next(
        number
        for number, call in enumerate(reference.calls[D1], start=1)
        if " move " in call and " _processed/" in call
    )
    ws = write_workspace(tmp_path / "ws")
    play(ws, {D1: [claim + 1]})
    assert_same_commits(reference.state, ws, f"killed at call {claim + 1} of {D1} (the claim)")


@pytest.mark.parametrize("seed, kills_per_day", [(11, (2, 1, 1)), (26, (1, 3, 2))])
def test_killed_at_random_points_then_retried(
    reference: Reference, tmp_path: Path, seed: int, kills_per_day: tuple[int, ...]
):
    """`kills_per_day[i]` attempts of date i killed in a row, then one that finishes."""
    kills = seeded_kills(seed, kills_per_day, reference.counts)
    ws = write_workspace(tmp_path / "ws")
    play(ws, kills)
    assert_same_commits(reference.state, ws, f"seed {seed}, kill points {_shown(kills)}")


def test_killed_while_the_run_ingests(reference: Reference, tmp_path: Path):
    """D1 is ingested by the run itself: its ingest's writes come right after the plan, so a
    kill a few writes past the plan lands in the ingest (staging, data files or manifest)."""
    plan = next(n for n, call in enumerate(reference.calls[D1], start=1) if "/plan.json" in call)
    kills = {D1: [plan + random.Random(7).randint(1, 14)]}
    ws = write_workspace(tmp_path / "ws")
    play(ws, kills, days=(D1,), ingested_by_run=(D1,))
    assert_same_commits(
        reference.states_by_day[D1], ws, f"run ingesting {D1}, kill points {_shown(kills)}"
    )


@pytest.mark.s3
def test_killed_at_random_points_on_s3(
    reference: Reference, s3, bucket: Bucket, prefix: str, tmp_path: Path
):
    """Lake and inbox on the S3 server; the rows, manifests and inbox must still be those of
    the uninterrupted local runs (keys are compared relative to the roots), and the kill points
    are drawn among the local runs' writes."""
    seed = 16
    kills = seeded_kills(seed, (2, 1, 1), reference.counts)
    ws = write_workspace(tmp_path / "ws", s3, bucket, prefix)
    play(ws, kills)
    assert_same_commits(reference.state, ws, f"S3, seed {seed}, kill points {_shown(kills)}")


@pytest.mark.parametrize("point", list(STEP_BOUNDARIES))
def test_killed_at_each_step_boundary(reference: Reference, tmp_path: Path, point: str):
    """The run of D2 (a previous run, a remove, a refused upload, a clear then an add) killed
    once just before `point`, from the state its reference run started from; then one attempt
    to the end, which must commit what the reference run of D2 committed."""
    calls = [Call.parse(line) for line in reference.calls[D2]]
    found = STEP_BOUNDARIES[point](calls)
    assert found is not None, f"no call for {point} in the reference run of {D2}:\n" + "\n".join(
        reference.calls[D2]
    )
    ws = copy_of(reference.before[D2], tmp_path / "ws")
    label = f"{D2} killed at call {found.number}, before {point} ({found.shown()})"
    killed = attempt(ws, D2, found.number)
    assert killed.returncode == -9, f"{label}: not killed\n{history(ws)}"
    assert Call.parse(killed.calls[-1]).shown() == found.shown(), (
        f"{label}: the attempt died before another call than the reference's\n{history(ws)}"
    )
    assert attempt(ws, D2, 0).returncode == 0, f"{label}: the retry failed\n{history(ws)}"
    assert_same_commits(reference.states_by_day[D2], ws, label)


def _shown(kills: dict[date, list[int]]) -> str:
    return ", ".join(f"{day}: {points}" for day, points in kills.items())
