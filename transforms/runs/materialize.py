"""The materialize step: the members of every segment for run date D, computed without
writing anything (`transforms.runs.steps` diffs and commits them; `segments preview` shows them).

The events a run sees (README, "Ingest"): every event ingested by runs <= D, once per `event_id`,
with `timestamp <= as_of(D)`. The people are D's snapshot; events of people not in it do not
count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from transforms.config import Settings
from transforms.contracts.odcs import load_contract
from transforms.engines.membership import event_features, in_order, segment_members
from transforms.engines.person_order import marked_if_in_person_order, person_ranges
from transforms.errors import ConfigError, DefinitionErrors
from transforms.language.compiler import CompiledDefinitions, as_of_instant, compile_segments
from transforms.language.definitions import load_segments
from transforms.storage import lake
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

    @property
    def people(self) -> int:
        return self.snapshot.height

    def sizes(self) -> dict[str, int]:
        counts = dict(self.members.group_by("segment_id").len().iter_rows())
        return {sid: counts.get(sid, 0) for sid in sorted(self.compiled.segments)}


def evaluate(
    settings: Settings,
    day: date,
    only: set[str] | None = None,
    manual_members: pl.DataFrame | None = None,
    engine: str = "polars",
    compiled: CompiledDefinitions | None = None,
    features: pl.LazyFrame | None = None,
) -> Evaluation:
    """Members of every segment (or of `only` and what they depend on) for `day`, unwritten.

    `manual_members` holds (segment_id, person_id) of manual segments; `engine` is polars
    (the default), duckdb or spark, which run the SQL of `transforms.language.sql`; `compiled`
    is the compiled definitions when the caller already has them; `features` the event features of
    every person (`transforms.engines.feature_state`), recomputed from the events when not given."""
    started = time.perf_counter()
    compiled = compiled or compile_definitions(settings, day)
    if only is not None:
        compiled = restrict(compiled, only)
    lake_root = Root(settings.lake, settings.storage_options)
    if engine != "polars":
        compiled_at = time.perf_counter()
        members, snapshot = _sql_engine_members(
            engine, settings, lake_root, day, compiled, manual_members
        )
        seconds = {
            "compile": round(compiled_at - started, 3),
            "evaluate": round(time.perf_counter() - compiled_at, 3),
        }
        return Evaluation(compiled, members, snapshot, seconds)
    people = marked_if_in_person_order(lake.scan_people(lake_root, day))
    compiled_at = time.perf_counter()
    manual = manual_members.lazy() if manual_members is not None else None
    if features is not None:
        members_plan = segment_members(people, features, compiled, manual)
        members, snapshot = pl.collect_all(
            [members_plan, people.select("person_id")], engine="streaming"
        )
    else:  # features from the events: one range of people at a time, as a recompute does
        snapshot = people.select("person_id").collect()
        events = lake.scan_events(lake_root, day)
        members = pl.concat(
            segment_members(
                people.filter(in_range),
                event_features(events.filter(in_range), compiled),
                compiled,
                manual,
                first_row,
            ).collect(engine="streaming")
            for in_range, first_row in person_ranges(snapshot["person_id"])
        )
    members = in_order(members)
    done = time.perf_counter()
    return Evaluation(
        compiled,
        members,
        snapshot,
        {"compile": round(compiled_at - started, 3), "evaluate": round(done - compiled_at, 3)},
    )


def _sql_engine_members(
    engine: str,
    settings: Settings,
    root: Root,
    day: date,
    compiled: CompiledDefinitions,
    manual: pl.DataFrame | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    from transforms.engines import sql_engines as engines

    if engine == "duckdb":
        return engines.duckdb_members(root, day, compiled, manual)
    if engine == "spark":
        return engines.spark_members(settings, root, day, compiled, manual)
    raise ConfigError(
        f"unknown engine '{engine}'", hint=f"choose one of {', '.join(engines.ENGINES)}"
    )


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
