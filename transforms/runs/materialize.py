"""The materialize step: the members of every segment for run date D, computed without
writing anything (`transforms.runs.steps` diffs and commits them; `segments preview` shows them).

With the Polars engine, the event features of a committed date are read from the feature state
its run kept (only those the segments evaluated need; `feature_state.committed_features`),
unless the caller gives them or asks for them from the events (`EvaluationOptions`).

The manual segments' members are the ones the caller gives (the runs step: the previous run's
with the inbox's uploads applied), or else those the committed runs hold
(`committed_manual_members`), so `segments preview`, `plan` and `why` see what the run of D saw,
or what the next run starts from.

The events a run sees (README, "Ingest"): every event ingested by runs <= D, once per `event_id`,
with `timestamp <= as_of(D)`. The people are D's snapshot; events of people not in it do not
count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from transforms.config import Settings
from transforms.contracts.odcs import load_contract
from transforms.engines.feature_state import committed_features
from transforms.engines.membership import EventFeatures
from transforms.engines.registry import DEFAULT_ENGINE, Engine, Inputs, load_engine
from transforms.errors import DefinitionErrors
from transforms.language.compiler import compile_segments
from transforms.language.definitions import load_segments
from transforms.language.polars import CompiledDefinitions
from transforms.language.semantics import as_of_instant
from transforms.manual.inbox import previous_manual_members
from transforms.storage.catalog import read_catalog, read_manifest
from transforms.storage.roots import Root


def compile_definitions(settings: Settings, day: date) -> CompiledDefinitions:
    """Every definition compiled for run date `day`; DefinitionErrors lists every problem."""
    segments, problems = load_segments(settings.definitions)
    people = load_contract(settings.contracts, "people")
    events = load_contract(settings.contracts, "events")
    compiled, compile_problems = compile_segments(segments, people, events, as_of_instant(day))
    problems += compile_problems
    if problems:
        raise DefinitionErrors(problems)
    return compiled


@dataclass
class Evaluation:
    compiled: CompiledDefinitions
    members: pl.DataFrame
    """(segment_id, person_id) of every member of every segment."""
    snapshot: pl.DataFrame
    """person_id of everyone in the run's people snapshot."""
    seconds: dict[str, float] = field(default_factory=dict)
    kept_features: bool = False
    """Whether the event features were read from the committed run's feature state."""

    @property
    def people(self) -> int:
        return self.snapshot.height

    def sizes(self) -> dict[str, int]:
        counts = dict(self.members.group_by("segment_id").len().iter_rows())
        return {sid: counts.get(sid, 0) for sid in sorted(self.compiled.segments)}


@dataclass(frozen=True)
class EvaluationOptions:
    """What `evaluate` computes, and what the caller already has."""

    only: set[str] | None = None
    """These segments and what they depend on; None: every segment."""
    manual_members: pl.DataFrame | None = None
    """(segment_id, person_id) of the members of manual segments; None: those of the committed
    runs (`committed_manual_members`)."""
    compiled: CompiledDefinitions | None = None
    """The compiled definitions, when the caller already has them."""
    features: EventFeatures | None = None
    """The event features of every person (`transforms.engines.feature_state`), for an engine
    that folds them (`Engine.folds_features`). When not given, such an engine reads them from
    the feature state the committed run of the date kept, if it can be trusted
    (`feature_state.committed_features`; only the features the segments need), and computes
    from the events what it lacks; otherwise every feature is computed from the events."""
    kept_features: bool = True
    """False: never read the committed feature state, compute every feature from the events."""


def evaluate(
    settings: Settings,
    day: date,
    engine: Engine | str = DEFAULT_ENGINE,
    options: EvaluationOptions = EvaluationOptions(),
) -> Evaluation:
    """Members of every segment (or of `options.only` and what they depend on) for `day`,
    computed by `engine` (or the engine of that name, `transforms.engines.registry`),
    unwritten."""
    started = time.perf_counter()
    engine = load_engine(engine) if isinstance(engine, str) else engine
    inputs = engine_inputs(settings, day, engine, options)
    compiled_at = time.perf_counter()
    members, snapshot = engine.members(inputs)
    return Evaluation(
        inputs.compiled,
        members,
        snapshot,
        {
            "compile": round(compiled_at - started, 3),
            "evaluate": round(time.perf_counter() - compiled_at, 3),
        },
        kept_features=options.features is None and inputs.features is not None,
    )


def engine_inputs(
    settings: Settings, day: date, engine: Engine, options: EvaluationOptions
) -> Inputs:
    """What `engine` computes the members of `day` from, as `evaluate` gives it (`options`):
    the compiled definitions, the manual members, the event features it folds."""
    compiled = options.compiled or compile_definitions(settings, day)
    if options.only is not None:
        compiled = restrict(compiled, options.only)
    engine.check(settings)
    if options.features is not None and not engine.folds_features:
        raise ValueError(f"the {engine.name} engine computes the event features itself")
    manual_members = options.manual_members
    if manual_members is None:
        manual_ids = [sid for sid, segment in compiled.segments.items() if segment.manual]
        manual_members = committed_manual_members(settings, day, manual_ids)
    lake = Root(settings.lake, settings.storage_options)
    features = options.features
    if features is None and engine.folds_features and options.kept_features:
        committed = read_manifest(lake, read_catalog(lake), day)
        if committed is not None:
            features = committed_features(lake, day, compiled, committed.feature_state)
    return Inputs(settings, lake, day, compiled, manual_members, features)


def committed_manual_members(settings: Settings, day: date, manual_ids: list[str]) -> pl.DataFrame:
    """(segment_id, person_id) of the manual segments `manual_ids` in the committed run of
    `day`, or, when `day` has not committed, in the latest committed run before it (what the
    run of `day` starts from; uploads waiting in the inbox are not applied). Read as the runs
    step reads the previous run's (`previous_manual_members`)."""
    lake = Root(settings.lake, settings.storage_options)
    after_day = day + timedelta(days=1)  # the latest committed run before it is `day`'s, if any
    return previous_manual_members(lake, read_catalog(lake), after_day, manual_ids)


def restrict(compiled: CompiledDefinitions, only: set[str]) -> CompiledDefinitions:
    needed, stack = set(), list(only)
    while stack:
        sid = stack.pop()
        if sid not in needed:
            needed.add(sid)
            stack.extend(compiled.segments[sid].references)
    segments = {sid: s for sid, s in compiled.segments.items() if sid in needed}
    features = {f for s in segments.values() for f in s.features}
    return CompiledDefinitions(
        compiled.as_of,
        segments,
        [
            [sid for sid in level if sid in needed]
            for level in compiled.order
            if any(sid in needed for sid in level)
        ],
        {name: f for name, f in compiled.features.items() if name in features},
    )
