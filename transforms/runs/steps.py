"""A run of date D: ingest -> validate -> manual uploads -> materialize -> diff -> commit.

`run(settings, D)` is what `segments run --date D` and the tests call; the Airflow DAG calls the
same steps one task each. `begin` reads the catalog of committed runs
(`transforms.storage.catalog`) and names the attempt, so everything the run computes is relative
to one consistent state of the lake; each step is a function of (settings, plan) that hands its
results to the next through the attempt's staging folder (`lake.staging`) and returns counts
only. A step can be retried: it rewrites its own staged files.

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
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from transforms.config import Settings
from transforms.contracts.odcs import CONTRACT_SUFFIX
from transforms.engines.feature_state import KEPT_RUNS, remove_unneeded_state, run_features
from transforms.engines.registry import DEFAULT_ENGINE, load_engine
from transforms.errors import MissingInputError, RunOrderError, SnapshotShrinkError
from transforms.ingest.step import IngestReport, landing_changes
from transforms.insights.report import write_report
from transforms.language.definitions import (
    SUFFIXES,
    definition_changes,
    definition_hashes,
    load_segments,
)
from transforms.manual.inbox import MEMBERS, apply_uploads, collect_uploads, refusals
from transforms.runs.diff import KEY, DiffContext, diff, segment_slices
from transforms.runs.materialize import EvaluationOptions, compile_definitions, evaluate
from transforms.storage import lake
from transforms.storage.catalog import (
    Catalog,
    attempt_files,
    commit,
    manifest_path,
    read_catalog,
    read_manifest,
    read_table,
    scan_table,
    write_tables,
)
from transforms.storage.roots import Root

log = logging.getLogger("segments.run")
INPUTS = "inputs"


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
    html: str | None = None
    """URL of the run's HTML report."""
    features: str = "recomputed"
    """How the event features were computed: "folded" from the previous run's state, or why
    they were recomputed from the events."""
    ingest_reason: str | None = None
    """Why this run read D's landing files (not ingested yet, changed since, asked for)."""
    landing_unread: list[str] = field(default_factory=list)
    """Landing files of D that changed after this run read them: the next run of D reads them."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ingested"] = self.ingested.to_json() if self.ingested is not None else None
        return data


def _check_snapshot(
    people: int, previous: dict[str, Any] | None, settings: Settings, plan: Attempt
) -> None:
    day = plan.day
    if plan.accept_shrink:
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
            hint=f"check the export is complete. If it was cut short, land the full export in"
            f" landing/people/{day}/ and run again: a run reads the landing files of its date"
            " again when they changed. If these people really left, pass --accept-shrink for"
            " this run, or raise max_snapshot_shrink",
        )


def _applied_files(root: Root, catalog: Catalog, run_date: str) -> set[str] | None:
    manifest = read_manifest(root, catalog, date.fromisoformat(run_date))
    return set(manifest["manual"]["files"]) if manifest else None


def _counts(
    membership: pl.DataFrame, changes: pl.DataFrame, ids: list[str]
) -> dict[str, SegmentCounts]:
    sizes = {sid: length for sid, (_, length) in segment_slices(membership["segment_id"]).items()}
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


@dataclass(frozen=True)
class Attempt:
    """One attempt at a run: what `begin` saw, which every later step works from."""

    day: date
    attempt: str
    catalog: Catalog
    accept_shrink: bool = False
    engine: str = DEFAULT_ENGINE
    full: bool = False
    """Recompute the event features from the events instead of folding the previous run's
    state (`transforms.engines.feature_state`)."""
    reingest: bool = False
    """Read the landing files of D again even if they did not change since D was ingested."""
    inputs: dict[str, dict[str, str]] | None = None
    """Hashes of the definition and contract files `begin` pinned, per folder and file name;
    None for an attempt begun before inputs were pinned (it reads the configured folders)."""

    @property
    def folder(self) -> str:
        return lake.staging("run", self.day, self.attempt)

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "attempt": self.attempt,
            "catalog": asdict(self.catalog),
            "accept_shrink": self.accept_shrink,
            "engine": self.engine,
            "full": self.full,
            "reingest": self.reingest,
            "inputs": self.inputs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            date.fromisoformat(data["day"]),
            data["attempt"],
            Catalog(**data["catalog"]),
            data["accept_shrink"],
            data["engine"],
            data.get("full", False),
            data.get("reingest", False),
            data.get("inputs"),
        )


def _stage_json(root: Root, plan: Attempt, name: str, data: dict[str, Any]) -> None:
    root.write_bytes(f"{plan.folder}/{name}.json", json.dumps(data, indent=1).encode())


def _staged_json(root: Root, plan: Attempt, name: str) -> dict[str, Any]:
    return json.loads(root.read_bytes(f"{plan.folder}/{name}.json"))


def _staged_frame(root: Root, plan: Attempt, name: str) -> pl.DataFrame:
    return root.read_parquet([f"{plan.folder}/{name}.parquet"])


def _previous(root: Root, plan: Attempt) -> tuple[date | None, dict[str, Any] | None]:
    previous_day = plan.catalog.previous(plan.day)
    return previous_day, read_manifest(root, plan.catalog, previous_day) if previous_day else None


PINNED = {"definitions": SUFFIXES, "contracts": (CONTRACT_SUFFIX,)}
"""The input folders an attempt pins when it begins, and the files of each it copies."""


def _pin_inputs(root: Root, settings: Settings, folder: str) -> dict[str, dict[str, str]]:
    """Copy the definition and contract files into the attempt's staging `folder`; their
    hashes per folder and file name."""
    hashes: dict[str, dict[str, str]] = {}
    for name, suffixes in PINNED.items():
        source = Path(getattr(settings, name))
        hashes[name] = {}
        for path in sorted(source.iterdir()):
            if path.is_file() and path.name.endswith(suffixes):
                data = path.read_bytes()
                root.write_bytes(f"{folder}/{INPUTS}/{name}/{path.name}", data)
                hashes[name][path.name] = hashlib.sha256(data).hexdigest()[:16]
    return hashes


def pinned(settings: Settings, plan: Attempt) -> Settings:
    """`settings` reading the definitions and contracts `begin` pinned for the attempt, so that
    a definition deployed between two of its steps changes nothing it computes or records."""
    if plan.inputs is None:
        return settings
    root = Root(settings.lake, settings.storage_options)
    staged = f"{plan.folder}/{INPUTS}"
    local = Path(root.local_path(staged)) if root.is_local else _local_copy(plan)
    if not local.is_dir():  # the loaders read local folders: copy them out of the object store
        partial = local.with_name(f"{local.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        for name, files in plan.inputs.items():
            (partial / name).mkdir(parents=True)
            for file in files:
                (partial / name / file).write_bytes(root.read_bytes(f"{staged}/{name}/{file}"))
        try:
            partial.rename(local)
        except OSError:  # another process of the attempt copied them first
            shutil.rmtree(partial, ignore_errors=True)
    return settings.model_copy(update={name: str(local / name) for name in PINNED})


def _local_copy(plan: Attempt) -> Path:
    """Where a process keeps the pinned inputs of an attempt on an object-store lake."""
    return Path(tempfile.gettempdir(), "segments-inputs", f"{plan.day}-{plan.attempt}")


def begin(
    settings: Settings,
    day: date,
    *,
    accept_shrink: bool = False,
    engine: str = DEFAULT_ENGINE,
    full: bool = False,
    reingest: bool = False,
    allowed_later: tuple[date, ...] = (),
) -> Attempt:
    """Start an attempt at run `day`: check the definitions compile, read the catalog, refuse
    if later runs are committed (other than `allowed_later`, which the caller reruns next), pin
    the definitions and contracts, save the plan. Nothing is written before the checks pass."""
    compile_definitions(settings, day)
    root = Root(settings.lake, settings.storage_options)
    catalog = read_catalog(root)
    later = [d for d in catalog.later(day) if d not in allowed_later]
    if later:
        shown = ", ".join(d.isoformat() for d in later)
        raise RunOrderError(
            f"runs after {day} are committed ({shown}): rerunning {day} alone would leave their"
            " enter/exit records inconsistent",
            hint=f"rerun {day} and every later date in order with --rebuild-later",
        )
    attempt = lake.new_attempt()
    inputs = _pin_inputs(root, settings, lake.staging("run", day, attempt))
    plan = Attempt(day, attempt, catalog, accept_shrink, engine, full, reingest, inputs)
    _stage_json(root, plan, "plan", plan.to_json())
    return plan


def load_attempt(settings: Settings, day: date, attempt: str) -> Attempt:
    """The plan `begin` saved for attempt `attempt` of run `day`."""
    root = Root(settings.lake, settings.storage_options)
    key = f"{lake.staging('run', day, attempt)}/plan.json"
    if not root.exists(key):
        raise MissingInputError(
            f"attempt {attempt} of run {day} has no plan at {root.url_of(key)}: it committed"
            " (its staging folder is removed then) or never started",
            hint="start the run again from its first step",
        )
    return Attempt.from_json(json.loads(root.read_bytes(key)))


def discard(settings: Settings, plan: Attempt) -> None:
    """Remove what a failed attempt wrote to the lake: its staging folder and its files in the
    run's partitions. Its inbox claims stay: the next attempt takes them over. An attempt that
    committed (and failed after) keeps everything."""
    root = Root(settings.lake, settings.storage_options)
    if read_catalog(root).runs.get(plan.day.isoformat()) == manifest_path(plan.day, plan.attempt):
        return
    root.delete(attempt_files(root, plan.day, plan.attempt))
    root.delete_folder(plan.folder)
    shutil.rmtree(_local_copy(plan), ignore_errors=True)


def ingest_step(settings: Settings, plan: Attempt) -> dict[str, Any]:
    """Read and type the landing files of D when D has not been ingested yet, when they changed
    since it was (a late events file, a corrected export), or with `reingest`."""
    from transforms.ingest.step import stage

    settings = pinned(settings, plan)
    root = Root(settings.lake, settings.storage_options)
    why = _why_ingest(settings, plan)
    if why is None:
        log.info("run %s: already ingested, and its landing files did not change", plan.day)
        return {"ingested": False}
    log.info("run %s: ingesting: %s", plan.day, why)
    started = time.perf_counter()
    reports = stage(settings, plan.day, f"{plan.folder}/ingest")
    _stage_json(root, plan, "ingest_step", {"seconds": _since(started), "why": why})
    return {"ingested": True, "why": why, "rows_read": {t: r.rows_read for t, r in reports.items()}}


def _why_ingest(settings: Settings, plan: Attempt) -> str | None:
    """Why the run reads D's landing files, or None when D's ingest is current."""
    if lake.read_ingest_manifest(Root(settings.lake, settings.storage_options), plan.day) is None:
        return "not ingested yet"
    if plan.reingest:
        return "re-ingest asked for"
    changed = landing_changes(settings, plan.day)
    if changed:
        return "landing files changed since the ingest: " + "; ".join(changed)
    return None


def validate_step(settings: Settings, plan: Attempt) -> dict[str, Any]:
    """Validate what `ingest_step` read against the data contracts and publish it (refused rows
    to quarantine)."""
    from transforms.ingest.step import publish

    settings = pinned(settings, plan)
    started = time.perf_counter()
    root = Root(settings.lake, settings.storage_options)
    staged = f"{plan.folder}/ingest"
    if not root.exists(f"{staged}/people.report.json"):
        return {"ingested": False}
    report = publish(settings, plan.day, staged, plan.attempt)
    root.delete_folder(staged)
    _stage_json(root, plan, "validate_step", {"seconds": _since(started)})
    return {
        "ingested": True,
        "rows_written": {t: r.rows_written for t, r in report.tables.items()},
        "quarantined": {t: r.quarantined for t, r in report.tables.items()},
    }


def manual_step(settings: Settings, plan: Attempt) -> dict[str, Any]:
    """Apply the inbox's uploads to the manual segments (each file exactly once, in order)."""
    settings = pinned(settings, plan)
    started = time.perf_counter()
    root = Root(settings.lake, settings.storage_options)
    segments, _ = load_segments(settings.definitions)
    _, previous = _previous(root, plan)
    manual_ids = sorted(sid for sid, s in segments.items() if s.is_manual)
    before = (
        scan_table(root, previous, "membership")
        .filter(pl.col("segment_id").is_in(manual_ids))
        .select(KEY)
        .collect()
        if previous is not None
        else pl.DataFrame(schema=MEMBERS)
    )
    committed = read_manifest(root, plan.catalog, plan.day)
    inbox = Root(settings.inbox, settings.storage_options)
    uploads = collect_uploads(
        inbox,
        plan.day,
        segments,
        functools.cache(lambda run_date: _applied_files(root, plan.catalog, run_date)),
        committed["manual"]["files"] if committed else None,
        plan.attempt,
        plan.catalog.committed_by,
    )
    people = lake.scan_people(root, plan.day).select("person_id", "email").collect()
    result = apply_uploads(inbox, uploads, before, people, plan.day)
    result.rejected = refusals(inbox, plan.day)
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
    root.write_parquet(result.members, f"{plan.folder}/manual_members.parquet")
    root.write_parquet(result.actions, f"{plan.folder}/manual_actions.parquet")
    _stage_json(root, plan, "manual_step", {**result.to_json(), "seconds": _since(started)})
    return {"applied": len(result.applied), "rejected": len(result.rejected)}


def materialize_step(settings: Settings, plan: Attempt) -> dict[str, Any]:
    """Compute every segment's members; the shrink guard rail stops the run here. With an
    engine that folds them (`Engine.folds_features`), the event features are folded from the
    previous run's (`feature_state`)."""
    settings = pinned(settings, plan)
    root = Root(settings.lake, settings.storage_options)
    previous_day, previous = _previous(root, plan)
    compiled = compile_definitions(settings, plan.day)
    engine = load_engine(plan.engine)
    started = time.perf_counter()
    folded = None
    if engine.folds_features:
        folded = run_features(
            root,
            plan.day,
            plan.attempt,
            compiled,
            (previous_day, previous) if previous else None,
            plan.full,
        )
    features_seconds = _since(started)
    evaluation = evaluate(
        settings,
        plan.day,
        engine,
        EvaluationOptions(
            manual_members=_staged_frame(root, plan, "manual_members"),
            compiled=compiled,
            features=folded.features if folded else None,
        ),
    )
    _check_snapshot(evaluation.people, previous, settings, plan)
    root.write_parquet(evaluation.members, f"{plan.folder}/members.parquet", statistics=False)
    root.write_parquet(evaluation.snapshot, f"{plan.folder}/snapshot.parquet", statistics=False)
    _stage_json(
        root,
        plan,
        "materialize_step",
        {
            "people": evaluation.people,
            "segments": sorted(evaluation.compiled.segments),
            "features": folded.how if folded else "recomputed",
            "feature_state": folded.record if folded else None,
            "files": folded.files if folded else {},
            "seconds": {"features": features_seconds, "evaluate": evaluation.seconds["evaluate"]},
        },
    )
    return {
        "people": evaluation.people,
        "members": evaluation.members.height,
        "features": folded.how if folded else "recomputed",
    }


def diff_step(settings: Settings, plan: Attempt) -> dict[str, Any]:
    """Enter/exit records against the previous run; writes the attempt's data files."""
    settings = pinned(settings, plan)
    started = time.perf_counter()
    root = Root(settings.lake, settings.storage_options)
    previous_day, previous = _previous(root, plan)
    segments, _ = load_segments(settings.definitions)
    context = DiffContext(
        run_date=plan.day,
        previous_run_date=previous_day,
        previous_definitions=previous["definitions"] if previous else {},
        current_definitions=definition_hashes(segments),
        snapshot=_staged_frame(root, plan, "snapshot"),
        manual_actions=_staged_frame(root, plan, "manual_actions"),
    )
    changes, membership = diff(  # the two memberships are held by `diff` alone: it frees them
        read_table(root, previous, "membership") if previous else None,
        _staged_frame(root, plan, "members"),
        context,
    )
    materialized = _staged_json(root, plan, "materialize_step")
    counts = _counts(membership, changes, materialized["segments"])
    tables = {"membership": membership, "changes": changes}
    files = write_tables(root, plan.day, plan.attempt, tables)
    _stage_json(
        root,
        plan,
        "diff_step",
        {
            "files": files,
            "rows": {name: frame.height for name, frame in tables.items()},
            "segments": {sid: asdict(c) for sid, c in counts.items()},
            "seconds": _since(started),
        },
    )
    return {"memberships": membership.height, "changes": changes.height}


def commit_step(settings: Settings, plan: Attempt) -> dict[str, Any]:
    """Publish the run: manifest, then the catalog swap. Returns the manifest."""
    settings = pinned(settings, plan)
    root = Root(settings.lake, settings.storage_options)
    previous_day, previous = _previous(root, plan)
    segments, _ = load_segments(settings.definitions)
    hashes = definition_hashes(segments)
    steps = {
        name: _staged_json(root, plan, name)
        for name in ("manual_step", "materialize_step", "diff_step")
    }
    ingested = {
        name: _staged_json(root, plan, name)
        for name in ("ingest_step", "validate_step")
        if root.exists(f"{plan.folder}/{name}.json")
    }
    seconds = {name.removesuffix("_step"): step["seconds"] for name, step in ingested.items()}
    unread = landing_changes(settings, plan.day)
    for line in unread:
        log.warning(
            "run %s: %s (not read by this run: `segments run --date %s` reads it)",
            plan.day,
            line,
            plan.day,
        )
    materialized = steps["materialize_step"]
    seconds |= {
        "manual": steps["manual_step"].pop("seconds"),
        **materialized["seconds"],
        "diff": steps["diff_step"]["seconds"],
    }
    manifest = commit(
        root,
        plan.day,
        plan.catalog,
        plan.attempt,
        {**steps["diff_step"]["files"], **materialized["files"]},
        {
            "previous_run_date": previous_day.isoformat() if previous_day else None,
            "definitions": hashes,
            "definitions_changed": definition_changes(
                previous["definitions"] if previous else {}, hashes
            ),
            "definitions_hash": hashlib.sha256(
                "".join(f"{k}={v}\n" for k, v in hashes.items()).encode()
            ).hexdigest()[:16],
            "people": steps["materialize_step"]["people"],
            "engine": plan.engine,
            "features": materialized["features"],
            "feature_state": materialized["feature_state"],
            "rows": steps["diff_step"]["rows"],
            "segments": steps["diff_step"]["segments"],
            "inputs": plan.inputs,
            "ingest": lake.ingest_manifest(plan.day),
            "ingested_by_run": "validate" in seconds,
            "ingest_reason": ingested.get("ingest_step", {}).get("why"),
            "landing_unread": unread,
            "manual": steps["manual_step"],
            "seconds": seconds,
        },
        settings.keep_superseded_files_for,
    )
    _remove_old_feature_state(root, plan.day)
    shutil.rmtree(_local_copy(plan), ignore_errors=True)
    return manifest


def _remove_old_feature_state(root: Root, day: date) -> None:
    """Keep the feature state of the latest `KEPT_RUNS` committed runs and of run `day` (a
    rebuild of later runs folds it next)."""
    catalog = read_catalog(root)
    days = sorted({*catalog.dates[-KEPT_RUNS:], day})
    removed = remove_unneeded_state(root, [read_manifest(root, catalog, d) for d in days])
    if removed:
        log.info("run %s: removed %d feature state files no run will fold", day, removed)


def report(settings: Settings, day: date) -> RunReport:
    """What the committed run of `day` did, from its manifest; writes its HTML report."""
    root = Root(settings.lake, settings.storage_options)
    catalog = read_catalog(root)
    manifest = read_manifest(root, catalog, day)
    if manifest is None:
        raise MissingInputError(
            f"run {day} has not committed in {root.url}", hint=f"run `segments run --date {day}`"
        )
    ingested = None
    if manifest.get("ingested_by_run"):
        ingested = IngestReport.from_json(json.loads(root.read_bytes(manifest["ingest"])))
    result = RunReport(
        date=day.isoformat(),
        previous_run_date=manifest["previous_run_date"],
        people=manifest["people"],
        segments={sid: SegmentCounts(**c) for sid, c in manifest["segments"].items()},
        manifest=catalog.runs[day.isoformat()],
        ingested=ingested,
        manual=manifest["manual"],
        seconds=manifest["seconds"],
        html=root.url_of(write_report(root, day)),
        features=manifest.get("features", "recomputed"),
        ingest_reason=manifest.get("ingest_reason"),
        landing_unread=manifest.get("landing_unread", []),
    )
    log.info("run %s: report %s", day, result.html)
    for sid, counts in result.segments.items():
        log.info(
            "run %s %s: %d members, %d entered, %d exited",
            day,
            sid,
            counts.size,
            counts.entered,
            counts.exited,
        )
    return result


STEPS = (ingest_step, validate_step, manual_step, materialize_step, diff_step, commit_step)
"""A run's steps in order; each takes (settings, plan)."""


def run(
    settings: Settings,
    day: date,
    *,
    accept_shrink: bool = False,
    rebuild_later: bool = False,
    engine: str = DEFAULT_ENGINE,
    full: bool = False,
    reingest: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Run date `day` and commit it; see the module docstring. `progress` is told each step
    as it starts (e.g. "2026-03-31: materialize")."""
    later = read_catalog(Root(settings.lake, settings.storage_options)).later(day)
    allowed = tuple(later) if rebuild_later else ()
    for index, each in enumerate([day, *later] if rebuild_later else [day]):
        plan = begin(
            settings,
            each,
            accept_shrink=accept_shrink,
            engine=engine,
            full=full,
            reingest=reingest and each == day,
            allowed_later=allowed[index:],
        )
        try:
            for step in STEPS:
                name = step.__name__.removesuffix("_step")
                log.debug("run %s: %s", each, name)
                if progress is not None:
                    progress(f"{each}: {name}")
                step(settings, plan)
        except Exception:
            discard(settings, plan)
            raise
        log.info("run %s committed", each)
    return report(settings, day)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)
