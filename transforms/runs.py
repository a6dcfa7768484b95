"""A run of date D, end to end: ingest -> manual uploads -> materialize -> diff -> commit.

`run(settings, D)` is what `segments run --date D`, the Airflow DAG and the tests call. It
reads the catalog of committed runs first (`transforms.commit`), so everything it computes is
relative to one consistent state of the lake:

- the previous run is the latest committed run with a date before D; the first run has none;
- a run date with later committed runs is refused, unless `rebuild_later` is set, which then
  reruns every later date in order so their changes stay consistent;
- the guard rail: a people snapshot that is empty, or smaller than the previous run's by more
  than `max_snapshot_shrink`, fails the run instead of emitting mass exits (`accept_shrink`
  overrides it for this run);
- re-running D reproduces D's rows exactly.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import polars as pl

from transforms import lake
from transforms.changes import KEY, DiffContext, diff
from transforms.commit import (
    Catalog,
    commit,
    read_catalog,
    read_manifest,
    read_table,
)
from transforms.config import Settings
from transforms.definitions import Segment, load_segments
from transforms.errors import RunOrderError, SnapshotShrinkError
from transforms.inbox import MEMBERS, ManualResult, apply_uploads, collect_uploads
from transforms.materialize import compile_workspace, evaluate
from transforms.storage import Root

log = logging.getLogger("segments.run")


@dataclass
class SegmentCounts:
    size: int
    entered: int
    exited: int


@dataclass
class RunReport:
    """What a committed run did; the same figures are in its manifest."""

    date: str
    previous_run_date: str | None
    people: int
    segments: dict[str, SegmentCounts]
    manifest: str
    ingested: Any = None
    """The ingest report when this run ingested its date, else None."""
    manual: dict[str, Any] = field(default_factory=dict)
    """The uploads applied and refused (as in the manifest)."""
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ingested"] = self.ingested.to_json() if self.ingested is not None else None
        return data


def definition_hashes(segments: dict[str, Segment]) -> dict[str, str]:
    return {sid: segment.content_hash() for sid, segment in sorted(segments.items())}


def _check_snapshot(
    people: int, previous: dict[str, Any] | None, settings: Settings, accept_shrink: bool, day: date
) -> None:
    if accept_shrink:
        return
    if people == 0:
        raise SnapshotShrinkError(
            f"the people snapshot of {day} is empty: every member would exit every segment",
            hint="land the full snapshot, or pass --accept-shrink if everybody really left",
        )
    if previous is None:
        return
    before = previous["people"]
    if people < before * (1 - settings.max_snapshot_shrink):
        raise SnapshotShrinkError(
            f"the people snapshot of {day} has {people:,} people, {1 - people / before:.0%}"
            f" fewer than the {before:,} of run {previous['run_date']} (the limit is"
            f" {settings.max_snapshot_shrink:.0%})",
            hint="check the export is complete; pass --accept-shrink to accept it for this run,"
            " or raise max_snapshot_shrink",
        )


def _apply_manual(
    settings: Settings,
    segments: dict[str, Segment],
    root: Root,
    catalog: Catalog,
    attempt: str,
    day: date,
    previous_members: pl.DataFrame | None,
) -> ManualResult:
    """The manual segments' members after this run's uploads (exactly once, in order)."""
    manual_ids = sorted(sid for sid, s in segments.items() if s.is_manual)
    before = (
        previous_members.filter(pl.col("segment_id").is_in(manual_ids)).select(KEY)
        if previous_members is not None
        else pl.DataFrame(schema=MEMBERS)
    )
    committed = read_manifest(root, catalog, day)
    inbox = Root(settings.inbox, settings.storage_options)
    uploads, rejected = collect_uploads(
        inbox,
        day,
        segments,
        functools.cache(lambda run_date: _applied_files(root, catalog, run_date)),
        committed["manual"]["files"] if committed else None,
        attempt,
        catalog.committed_by,
    )
    people = lake.scan_people(root, day).select("person_id", "email").collect()
    result = apply_uploads(inbox, uploads, before, people, day)
    result.rejected = rejected + result.rejected
    for report in result.applied:
        log.info(
            "manual %s %s: %d rows, %d applied, %d unknown, %d ambiguous emails",
            report.action,
            report.file,
            report.rows,
            report.applied,
            report.unknown_count,
            report.ambiguous_count,
        )
    for refused in result.rejected:
        log.warning("manual upload %s refused: %s", refused["file"], "; ".join(refused["problems"]))
    return result


def _applied_files(root: Root, catalog: Catalog, run_date: str) -> set[str] | None:
    manifest = read_manifest(root, catalog, date.fromisoformat(run_date))
    return set(manifest["manual"]["files"]) if manifest else None


def _counts(
    membership: pl.DataFrame, changes: pl.DataFrame, ids: list[str]
) -> dict[str, SegmentCounts]:
    sizes = dict(membership.group_by("segment_id").len().iter_rows())
    moves = dict(
        ((sid, change), n)
        for sid, change, n in changes.group_by("segment_id", "change").len().iter_rows()
    )
    return {
        sid: SegmentCounts(
            sizes.get(sid, 0), moves.get((sid, "entered"), 0), moves.get((sid, "exited"), 0)
        )
        for sid in sorted(set(ids) | {s for s, _ in moves})
    }


def run(
    settings: Settings,
    day: date,
    *,
    accept_shrink: bool = False,
    rebuild_later: bool = False,
    engine: str = "polars",
) -> RunReport:
    """Run date `day` and commit it; see the module docstring."""
    later = read_catalog(Root(settings.lake, settings.storage_options)).later(day)
    if later and not rebuild_later:
        shown = ", ".join(d.isoformat() for d in later)
        raise RunOrderError(
            f"runs after {day} are committed ({shown}): rerunning {day} alone would leave their"
            " enter/exit records inconsistent",
            hint=f"rerun {day} and every later date in order with --rebuild-later",
        )
    report = _run_one(settings, day, accept_shrink, engine, set(later))
    for index, later_day in enumerate(later):
        _run_one(settings, later_day, accept_shrink, engine, set(later[index + 1 :]))
    return report


def _run_one(
    settings: Settings, day: date, accept_shrink: bool, engine: str, allowed_later: set[date]
) -> RunReport:
    from transforms.ingest import ingest

    started = time.perf_counter()
    root = Root(settings.lake, settings.storage_options)
    catalog = read_catalog(root)
    attempt = lake.new_attempt()
    newer = sorted(set(catalog.later(day)) - allowed_later)
    if newer:  # committed since run() looked: this date would no longer be the latest
        raise RunOrderError(
            f"run {', '.join(d.isoformat() for d in newer)} committed while run {day} started",
            hint=f"rerun {day} with --rebuild-later to redo the later dates in order",
        )
    workspace = compile_workspace(settings, day)  # bad definitions stop the run before anything
    ingested = None
    if lake.read_ingest_manifest(root, day) is None:
        ingested = ingest(settings, day)
    previous_day = catalog.previous(day)
    previous = read_manifest(root, catalog, previous_day) if previous_day else None
    previous_members = read_table(root, previous, "membership") if previous else None
    segments, _ = load_segments(settings.definitions)
    hashes = definition_hashes(segments)
    manual = _apply_manual(settings, segments, root, catalog, attempt, day, previous_members)
    evaluation = evaluate(
        settings, day, manual_members=manual.members, engine=engine, workspace=workspace
    )
    _check_snapshot(evaluation.people, previous, settings, accept_shrink, day)
    context = DiffContext(
        run_date=day,
        previous_run_date=previous_day,
        previous_definitions=previous["definitions"] if previous else {},
        current_definitions=hashes,
        snapshot=evaluation.snapshot,
        manual_actions=manual.actions,
    )
    changes, membership = diff(previous_members, evaluation.members, context)
    counts = _counts(membership, changes, list(evaluation.workspace.segments))
    manifest = commit(
        root,
        day,
        catalog,
        attempt,
        {"membership": membership, "changes": changes},
        {
            "previous_run_date": previous_day.isoformat() if previous_day else None,
            "definitions": hashes,
            "definitions_hash": hashlib.sha256(
                "".join(f"{k}={v}\n" for k, v in hashes.items()).encode()
            ).hexdigest()[:16],
            "people": evaluation.people,
            "engine": engine,
            "rows": {"membership": membership.height, "changes": changes.height},
            "segments": {sid: asdict(c) for sid, c in counts.items()},
            "ingest": lake.ingest_manifest(day),
            "manual": manual.to_json(),
            "seconds": {**evaluation.seconds, "total": round(time.perf_counter() - started, 3)},
        },
    )
    report = RunReport(
        date=day.isoformat(),
        previous_run_date=manifest["previous_run_date"],
        people=evaluation.people,
        segments=counts,
        manifest=f"runs/run_date={day.isoformat()}/manifest-{manifest['attempt']}.json",
        ingested=ingested,
        manual=manifest["manual"],
        seconds=manifest["seconds"],
    )
    log.info("run %s committed: %d memberships, %d changes", day, membership.height, changes.height)
    return report
