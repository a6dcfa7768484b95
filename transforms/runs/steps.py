"""A run of date D: ingest -> validate -> manual uploads -> materialize -> diff -> commit.

`run(settings, D)` is what `segments run --date D` and the tests call; the Airflow DAG calls the
same steps one task each. `begin` reads the catalog of committed runs
(`transforms.storage.catalog`) and names the attempt, so everything the run computes is relative
to one consistent state of the lake; each step is a function of (settings, plan) that hands its
results to the next through the attempt's staging folder (`transforms.runs.staging`) as a typed
record, and returns it. A step can be retried: it rewrites its own staged files. Beginning,
loading and discarding an attempt are in `transforms.runs.attempt`, what a committed run did in
`transforms.runs.report`.

- the previous run is the latest committed run with a date before D; the first run has none;
- a run date with later committed runs is refused, unless `rebuild_later` is set, which then
  reruns every later date in order so their changes stay consistent;
- the guard rail: a people snapshot that is empty, or smaller than the previous run's by more
  than `max_snapshot_shrink`, fails the run instead of emitting mass exits (`accept_shrink`
  overrides it for this run);
- re-running D reproduces D's rows exactly.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from datetime import date

from transforms.config import Settings
from transforms.engines.changes import RunContext
from transforms.engines.feature_state import KEPT_RUNS, remove_unneeded_state, run_features
from transforms.engines.registry import (
    DEFAULT_ENGINE,
    DiffCounts,
    DistributedEngine,
    StagedDiff,
    load_engine,
)
from transforms.errors import SnapshotShrinkError
from transforms.ingest.step import import_validator_in_background, landing_changes, staged_reports
from transforms.language.definitions import definition_changes, definition_hashes, load_segments
from transforms.language.polars import import_hashing_in_background
from transforms.logs import RESULT
from transforms.manual.inbox import (
    apply_uploads,
    collect_uploads,
    committed_uploads,
    previous_manual_members,
    refusals,
    rejecting,
)
from transforms.runs.attempt import begin, discard, local_copy, pinned
from transforms.runs.diff import DiffContext, diff, segment_slices
from transforms.runs.materialize import (
    EvaluationOptions,
    compile_definitions,
    engine_inputs,
    evaluate,
)
from transforms.runs.report import RunReport, report
from transforms.runs.staging import StagedFrame, Staging
from transforms.storage import lake
from transforms.storage.catalog import (
    TABLES,
    commit,
    place_parts,
    read_catalog,
    read_manifest,
    read_table,
    write_tables,
)
from transforms.storage.records import (
    Attempt,
    DiffStepResult,
    IngestStepResult,
    ManualStepResult,
    MaterializeStepResult,
    RunManifest,
    SegmentCounts,
    ValidateStepResult,
)
from transforms.storage.roots import Root

log = logging.getLogger("segments.run")


def _check_snapshot(
    people: int, previous: RunManifest | None, settings: Settings, plan: Attempt
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
    before = previous.people
    if people < before * (1 - settings.max_snapshot_shrink):
        raise SnapshotShrinkError(
            f"the people snapshot of {day} has {people:,} people, {1 - people / before:.0%}"
            f" fewer than the {before:,} of run {previous.run_date} (the limit is"
            f" {settings.max_snapshot_shrink:.0%})",
            hint=f"check the export is complete. If it was cut short, land the full export in"
            f" landing/people/{day}/ and run again: a run reads the landing files of its date"
            " again when they changed. If these people really left, pass --accept-shrink for"
            " this run, or raise max_snapshot_shrink",
        )


def _counts(counts: DiffCounts, ids: list[str]) -> dict[str, SegmentCounts]:
    return {
        sid: SegmentCounts(
            size=counts.sizes.get(sid, 0),
            entered=counts.moves.get((sid, "entered"), 0),
            exited=counts.moves.get((sid, "exited"), 0),
        )
        for sid in sorted(set(ids) | {s for s, _ in counts.moves})
    }


def _previous(root: Root, plan: Attempt) -> tuple[date | None, RunManifest | None]:
    previous_day = plan.catalog.previous(plan.day)
    return previous_day, read_manifest(root, plan.catalog, previous_day) if previous_day else None


def ingest_step(settings: Settings, plan: Attempt) -> IngestStepResult:
    """Read and type the landing files of D when D has not been ingested yet, when they changed
    since it was (a late events file, a corrected export), or with `reingest`."""
    from transforms.ingest.step import stage

    settings = pinned(settings, plan)
    staging = Staging.of(Root(settings.lake, settings.storage_options), plan)
    why = _why_ingest(settings, plan.day, plan.reingest)
    if why is None:
        log.info("run %s: already ingested, and its landing files did not change", plan.day)
        return IngestStepResult(ingested=False)
    log.info("run %s: ingesting: %s", plan.day, why)
    started = time.perf_counter()
    engine = load_engine(plan.engine)
    if engine.distributed:
        reports = engine.stage_ingest(settings, plan.day, staging.ingest)
    else:
        reports = stage(settings, plan.day, staging.ingest)
    result = IngestStepResult(
        ingested=True,
        why=why,
        rows_read={t: r.rows_read for t, r in reports.items()},
        seconds=_since(started),
    )
    staging.write(result)
    return result


def _why_ingest(settings: Settings, day: date, reingest: bool) -> str | None:
    """Why the run of `day` reads its landing files, or None when its ingest is current."""
    if lake.read_ingest_manifest(Root(settings.lake, settings.storage_options), day) is None:
        return "not ingested yet"
    if reingest:
        return "re-ingest asked for"
    changed = landing_changes(settings, day)
    if changed:
        return "landing files changed since the ingest: " + "; ".join(changed)
    return None


def warm_up(
    settings: Settings, day: date, reingest: bool = False, engine: str = DEFAULT_ENGINE
) -> None:
    """What a process that runs every step of the run of `day` (`run`, the benchmark) starts
    with, before `begin`: when the run will ingest on this machine, Great Expectations is
    imported in the background while the attempt begins and the ingest step reads, so the
    validate step does not wait seconds for it. (The Airflow DAG runs each step in a process of
    its own: its validate task imports it. A distributed engine imports it after starting its
    session: Great Expectations must see pyspark as it is imported.)"""
    if load_engine(engine).distributed:
        return
    if _why_ingest(settings, day, reingest) is not None:
        import_validator_in_background()


def validate_step(settings: Settings, plan: Attempt) -> ValidateStepResult:
    """Validate what `ingest_step` read against the data contracts and publish it (refused rows
    to quarantine)."""
    from transforms.ingest.step import publish

    settings = pinned(settings, plan)
    started = time.perf_counter()
    root = Root(settings.lake, settings.storage_options)
    staging = Staging.of(root, plan)
    if staged_reports(root, staging.ingest) is None:
        return ValidateStepResult(ingested=False)
    engine = load_engine(plan.engine)
    if engine.distributed:
        report = engine.publish_ingest(settings, plan.day, staging.ingest, plan.attempt)
    else:
        report = publish(settings, plan.day, staging.ingest, plan.attempt)
    root.delete_folder(staging.ingest)
    result = ValidateStepResult(
        ingested=True,
        rows_written={t: r.rows_written for t, r in report.tables.items()},
        quarantined={t: r.quarantined for t, r in report.tables.items()},
        seconds=_since(started),
    )
    staging.write(result)
    return result


def manual_step(settings: Settings, plan: Attempt) -> ManualStepResult:
    """Apply the inbox's uploads to the manual segments (each file exactly once, in order)."""
    settings = pinned(settings, plan)
    started = time.perf_counter()
    root = Root(settings.lake, settings.storage_options)
    staging = Staging.of(root, plan)
    segments, _ = load_segments(settings.definitions)
    manual_ids = sorted(sid for sid, s in segments.items() if s.is_manual)
    before = previous_manual_members(root, plan.catalog, plan.day, manual_ids)
    committed = read_manifest(root, plan.catalog, plan.day)
    inbox = Root(settings.inbox, settings.storage_options)
    reject = rejecting(inbox, plan.day)
    uploads = collect_uploads(
        inbox,
        plan.day,
        segments,
        committed_uploads(root, plan.catalog),
        committed.manual.files if committed else None,
        plan.attempt,
        plan.catalog.committed_by,
        reject,
    )
    people = lake.scan_people(root, plan.day).select("person_id", "email")  # read as filtered
    applied = apply_uploads(inbox, uploads, before, people, reject)
    applied.rejected = refusals(inbox, plan.day)  # a retry's own, and its earlier attempts'

    for upload in applied.applied:
        log.info(
            "manual %s %s: %d rows, %d applied, %d unknown, %d ambiguous emails",
            upload.action,
            upload.file,
            upload.rows,
            upload.applied,
            upload.unknown_count,
            upload.ambiguous_count,
            extra=RESULT,
        )
    for refused in applied.rejected:
        log.warning(
            "manual upload %s refused: %s",
            refused.file,
            "; ".join(refused.problems),
            extra=RESULT,
        )
    staging.write_frame(StagedFrame.MANUAL_MEMBERS, applied.members)
    staging.write_frame(StagedFrame.MANUAL_ACTIONS, applied.actions)
    result = ManualStepResult(uploads=applied.uploads(), seconds=_since(started))
    staging.write(result)
    return result


def materialize_step(settings: Settings, plan: Attempt) -> MaterializeStepResult:
    """Compute every segment's members; the shrink guard rail stops the run here. With an
    engine that folds them (`Engine.folds_features`), the event features are folded from the
    previous run's (`feature_state`). A distributed engine (`Engine.distributed`) writes the
    members and the snapshot's person ids into the staging folder itself."""
    settings = pinned(settings, plan)
    root = Root(settings.lake, settings.storage_options)
    staging = Staging.of(root, plan)
    previous_day, previous = _previous(root, plan)
    compiled = compile_definitions(settings, plan.day)
    engine = load_engine(plan.engine)
    if not engine.distributed:
        import_hashing_in_background(compiled)
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
    options = EvaluationOptions(
        manual_members=staging.read_frame(StagedFrame.MANUAL_MEMBERS),
        compiled=compiled,
        features=folded.features if folded else None,
    )
    if engine.distributed:
        started = time.perf_counter()
        people, members = engine.stage_members(
            engine_inputs(settings, plan.day, engine, options),
            staging.parts_folder(StagedFrame.MEMBERS),
            staging.parts_folder(StagedFrame.SNAPSHOT),
        )
        evaluate_seconds = _since(started)  # with the executors' writes
        _check_snapshot(people, previous, settings, plan)
    else:
        evaluation = evaluate(settings, plan.day, engine, options)
        people, members = evaluation.people, evaluation.members.height
        evaluate_seconds = evaluation.seconds["evaluate"]
        _check_snapshot(people, previous, settings, plan)
        staging.write_frame(StagedFrame.MEMBERS, evaluation.members, statistics=False)
        staging.write_frame(StagedFrame.SNAPSHOT, evaluation.snapshot, statistics=False)
    result = MaterializeStepResult(
        people=people,
        members=members,
        segments=sorted(compiled.segments),
        features=folded.how if folded else "recomputed",
        feature_state=folded.record if folded else None,
        files=folded.files if folded else {},
        seconds={"features": features_seconds, "evaluate": evaluate_seconds},
    )
    staging.write(result)
    return result


def diff_step(settings: Settings, plan: Attempt) -> DiffStepResult:
    """Enter/exit records against the previous run; writes the attempt's data files (a
    distributed engine writes them, in parts, from what it staged: `_diff_distributed`)."""
    settings = pinned(settings, plan)
    started = time.perf_counter()
    root = Root(settings.lake, settings.storage_options)
    staging = Staging.of(root, plan)
    previous_day, previous = _previous(root, plan)
    segments, _ = load_segments(settings.definitions)
    context = RunContext(
        run_date=plan.day,
        previous_run_date=previous_day,
        previous_definitions=previous.definitions if previous else {},
        current_definitions=definition_hashes(segments),
    )
    engine = load_engine(plan.engine)
    if engine.distributed:
        files, counts = _diff_distributed(engine, settings, plan, context, previous)
    else:
        files, counts = _diff(root, plan, context, previous)
    materialized = staging.read(MaterializeStepResult)
    result = DiffStepResult(
        files=files,
        rows={"membership": sum(counts.sizes.values()), "changes": sum(counts.moves.values())},
        segments=_counts(counts, materialized.segments),
        seconds=_since(started),
    )
    staging.write(result)
    return result


def _diff(
    root: Root, plan: Attempt, context: RunContext, previous: RunManifest | None
) -> tuple[dict[str, list[str]], DiffCounts]:
    """The Polars diff of what the materialize step staged, written as one file per table;
    (keys per table, counts)."""
    staging = Staging.of(root, plan)
    changes, membership = diff(  # the two memberships are held by `diff` alone: it frees them
        read_table(root, previous, "membership") if previous else None,
        staging.read_frame(StagedFrame.MEMBERS),
        DiffContext(
            **vars(context),
            snapshot=staging.read_frame(StagedFrame.SNAPSHOT),
            manual_actions=staging.read_frame(StagedFrame.MANUAL_ACTIONS),
        ),
    )
    sizes = {sid: length for sid, (_, length) in segment_slices(membership["segment_id"]).items()}
    moves = changes.group_by("segment_id", "change").len().iter_rows()
    counts = DiffCounts(sizes, {(sid, change): n for sid, change, n in moves})
    tables = {"membership": membership, "changes": changes}
    return write_tables(root, plan.day, plan.attempt, tables), counts


def _diff_distributed(
    engine: DistributedEngine,
    settings: Settings,
    plan: Attempt,
    context: RunContext,
    previous: RunManifest | None,
) -> tuple[dict[str, list[str]], DiffCounts]:
    """The engine's diff of what it staged, written by its executors as parts into the staging
    folder, then moved into the table partitions; (keys per table, counts)."""
    root = Root(settings.lake, settings.storage_options)
    staging = Staging.of(root, plan)
    counts = engine.diff_members(
        settings,
        StagedDiff(
            context=context,
            previous=previous.files["membership"] if previous else [],
            members=staging.parts_folder(StagedFrame.MEMBERS),
            snapshot=staging.parts_folder(StagedFrame.SNAPSHOT),
            manual_actions=staging.frame_key(StagedFrame.MANUAL_ACTIONS),
            membership=staging.parts_folder("membership"),
            changes=staging.parts_folder("changes"),
        ),
    )
    parts = {table: staging.parts(table) for table in TABLES}
    return place_parts(root, plan.day, plan.attempt, parts), counts


def commit_step(settings: Settings, plan: Attempt) -> RunManifest:
    """Publish the run: manifest, then the catalog swap. Returns the manifest."""
    settings = pinned(settings, plan)
    root = Root(settings.lake, settings.storage_options)
    staging = Staging.of(root, plan)
    previous_day, previous = _previous(root, plan)
    segments, _ = load_segments(settings.definitions)
    hashes = definition_hashes(segments)
    manual = staging.read(ManualStepResult)
    materialized = staging.read(MaterializeStepResult)
    diffed = staging.read(DiffStepResult)
    ingested = staging.find(IngestStepResult)
    validated = staging.find(ValidateStepResult)
    seconds = {
        name: step.seconds
        for name, step in (("ingest", ingested), ("validate", validated))
        if step is not None
    }
    unread = landing_changes(settings, plan.day)
    for line in unread:
        log.warning(
            "run %s: %s (not read by this run: `segments run --date %s` reads it)",
            plan.day,
            line,
            plan.day,
            extra=RESULT,
        )
    seconds |= {"manual": manual.seconds, **materialized.seconds, "diff": diffed.seconds}
    manifest = RunManifest(
        previous_run_date=previous_day.isoformat() if previous_day else None,
        definitions=hashes,
        definitions_changed=definition_changes(previous.definitions if previous else {}, hashes),
        definitions_hash=hashlib.sha256(
            "".join(f"{k}={v}\n" for k, v in hashes.items()).encode()
        ).hexdigest()[:16],
        people=materialized.people,
        engine=plan.engine,
        features=materialized.features,
        feature_state=materialized.feature_state,
        rows=diffed.rows,
        segments=diffed.segments,
        inputs=plan.inputs,
        ingest=lake.ingest_manifest(plan.day),
        ingested_by_run=validated is not None,
        ingest_reason=ingested.why if ingested else None,
        landing_unread=unread,
        manual=manual.uploads,
        seconds=seconds,
        run_date=plan.day.isoformat(),
        attempt=plan.attempt,
        files={**diffed.files, **materialized.files},
    )
    commit(root, plan.catalog, manifest, settings.keep_superseded_files_for)
    _remove_old_feature_state(root, plan.day)
    shutil.rmtree(local_copy(plan), ignore_errors=True)
    return manifest


def _remove_old_feature_state(root: Root, day: date) -> None:
    """Keep the feature state of the latest `KEPT_RUNS` committed runs and of run `day` (a
    rebuild of later runs folds it next)."""
    catalog = read_catalog(root)
    days = sorted({*catalog.dates[-KEPT_RUNS:], day})
    removed = remove_unneeded_state(root, [read_manifest(root, catalog, d) for d in days])
    if removed:
        log.info("run %s: removed %d feature state files no run will fold", day, removed)


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
        warm_up(settings, each, reingest and each == day, engine)
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
    result = report(settings, day)
    if rebuild_later:
        result.rebuilt = [d.isoformat() for d in later]
    return result


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)
