"""The materialize step: the members of every segment for run date D.

`evaluate(settings, D)` computes membership without writing anything (used by `preview`);
`materialize(settings, D)` writes it to `lake/membership/run_date=D/`; `run(settings, D)`
ingests D first when it has not been ingested yet.

The events a run sees (STORAGE.md): every event ingested by runs <= D, once per `event_id`,
with `timestamp <= as_of(D)`. The people are D's snapshot; events of people not in it do not
count.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import polars as pl

from transforms import lake
from transforms.compiler import Workspace, as_of_instant, compile_segments
from transforms.config import Settings
from transforms.contracts import load_contract
from transforms.definitions import load_segments
from transforms.errors import DefinitionErrors
from transforms.membership import event_features, segment_members
from transforms.storage import Root

log = logging.getLogger("segments.materialize")


def compile_workspace(settings: Settings, day: date) -> Workspace:
    """Every definition compiled for run date `day`; DefinitionErrors lists every problem."""
    segments, problems = load_segments(settings.definitions)
    people = load_contract(settings.contracts, "people")
    events = load_contract(settings.contracts, "events")
    workspace, compile_problems = compile_segments(segments, people, events, as_of_instant(day))
    problems += compile_problems
    if problems:
        raise DefinitionErrors(problems)
    return workspace


@dataclass
class Evaluation:
    workspace: Workspace
    members: pl.DataFrame
    people: int
    seconds: dict[str, float] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        counts = dict(self.members.group_by("segment_id").len().iter_rows())
        return {sid: counts.get(sid, 0) for sid in sorted(self.workspace.segments)}


def evaluate(settings: Settings, day: date, only: set[str] | None = None) -> Evaluation:
    """Members of every segment (or of `only` and what they depend on) for `day`, unwritten."""
    started = time.perf_counter()
    workspace = compile_workspace(settings, day)
    if only is not None:
        workspace = _restrict(workspace, only)
    lake_root = Root(settings.lake, settings.storage_options)
    people = lake.scan_people(lake_root, day)
    events = lake.scan_events(lake_root, day)
    compiled = time.perf_counter()
    features = event_features(events, workspace)
    members_plan = segment_members(people, features, workspace)
    members, people_count = pl.collect_all([members_plan, people.select(pl.len())])
    done = time.perf_counter()
    return Evaluation(
        workspace,
        members,
        int(people_count.item()),
        {"compile": round(compiled - started, 3), "evaluate": round(done - compiled, 3)},
    )


def _restrict(workspace: Workspace, only: set[str]) -> Workspace:
    needed, stack = set(), list(only)
    while stack:
        sid = stack.pop()
        if sid not in needed:
            needed.add(sid)
            stack.extend(workspace.segments[sid].references)
    segments = {sid: s for sid, s in workspace.segments.items() if sid in needed}
    features = {f for s in segments.values() for f in s.features}
    return Workspace(
        workspace.as_of,
        segments,
        [
            [sid for sid in level if sid in needed]
            for level in workspace.order
            if any(sid in needed for sid in level)
        ],
        {name: f for name, f in workspace.features.items() if name in features},
    )


@dataclass
class MaterializeReport:
    date: str
    people: int
    sizes: dict[str, int]
    outputs: list[str]
    seconds: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def materialize(settings: Settings, day: date) -> MaterializeReport:
    """Write the membership of run date `day` to `lake/membership/run_date=D/`."""
    evaluation = evaluate(settings, day)
    started = time.perf_counter()
    lake_root = Root(settings.lake, settings.storage_options)
    folder = lake.partition("membership", day)
    key = f"{folder}/part-{uuid.uuid4().hex[:12]}.parquet"
    table = evaluation.members.with_columns(pl.lit(day).alias("member_since"))
    lake_root.write_parquet(table, key)
    lake_root.delete([f.key for f in lake_root.list_files(folder) if f.key != key])
    seconds = {**evaluation.seconds, "write": round(time.perf_counter() - started, 3)}
    report = MaterializeReport(
        day.isoformat(), evaluation.people, evaluation.sizes(), [key], seconds
    )
    log.info(
        "materialize %s: %d segments, %d memberships",
        day,
        len(report.sizes),
        evaluation.members.height,
    )
    return report


def run(settings: Settings, day: date) -> tuple[Any, MaterializeReport]:
    """Ingest `day` if it has not been ingested, then materialize it.

    Returns (the ingest report, or None when the day was already ingested; the materialize
    report)."""
    from transforms.ingest import ingest

    ingested = None
    if lake.read_ingest_manifest(Root(settings.lake, settings.storage_options), day) is None:
        ingested = ingest(settings, day)
    return ingested, materialize(settings, day)
