"""What edited definitions would do, before a run applies them (`segments plan`).

The definitions on disk are compared with the content hashes the committed run of D recorded
(by default the latest run). Every new, changed or deleted segment is evaluated at D, with the
inputs of D and the manual members that run committed, and compared with the membership that
run committed: size before and after, who would enter and who would exit. Unchanged segments
that reference a changed one (`in_segment`) are reported as affected when their membership
would move too. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from transforms.config import Settings
from transforms.errors import MissingInputError
from transforms.language.definitions import definition_changes, definition_hashes, load_segments
from transforms.language.polars import CompiledDefinitions
from transforms.runs.materialize import EvaluationOptions, compile_definitions, evaluate
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root


@dataclass
class SegmentPlan:
    segment_id: str
    status: str  # new | changed | deleted | affected (references a new or changed segment)
    before: int
    after: int
    entering: int
    exiting: int
    sample_entering: list[str] = field(default_factory=list)
    sample_exiting: list[str] = field(default_factory=list)


@dataclass
class Plan:
    run_date: str
    segments: list[SegmentPlan]

    @property
    def changes(self) -> bool:
        return bool(self.segments)


def plan(settings: Settings, day: date | None = None, sample: int = 5) -> Plan:
    """What the definitions on disk would change at the committed run of `day` (default: the
    latest); see the module docstring."""
    lake = Root(settings.lake, settings.storage_options)
    catalog = read_catalog(lake)
    day = day or catalog.latest
    manifest = read_manifest(lake, catalog, day) if day else None
    if manifest is None:
        raise MissingInputError(
            f"no committed run {'of ' + day.isoformat() if day else 'yet'} in {lake.url} to"
            " compare with",
            hint="run `segments run --date D` first; every segment is new until then",
        )
    segments, _ = load_segments(settings.definitions)
    changed = definition_changes(manifest.definitions, definition_hashes(segments))
    committed = read_table(lake, manifest, "membership").select("segment_id", "person_id")
    compiled = compile_definitions(settings, day)
    affected = _dependents(compiled, changed.new + changed.changed)
    touched = changed.new + changed.changed + affected
    after = pl.DataFrame(schema=committed.schema)
    if touched:
        evaluation = evaluate(  # with the manual members of the committed run of `day`
            settings, day, options=EvaluationOptions(only=set(touched), compiled=compiled)
        )
        after = evaluation.members.filter(pl.col("segment_id").is_in(touched))
    plans = []
    statuses = {
        "new": changed.new,
        "changed": changed.changed,
        "deleted": changed.deleted,
        "affected": affected,
    }
    for status, ids in statuses.items():
        for sid in ids:
            old = set(committed.filter(pl.col("segment_id") == sid)["person_id"].to_list())
            new = set(after.filter(pl.col("segment_id") == sid)["person_id"].to_list())
            if status == "affected" and old == new:
                continue
            plans.append(
                SegmentPlan(
                    sid,
                    status,
                    len(old),
                    len(new),
                    len(new - old),
                    len(old - new),
                    sorted(new - old)[:sample],
                    sorted(old - new)[:sample],
                )
            )
    return Plan(day.isoformat(), plans)


def _dependents(compiled: CompiledDefinitions, changed: list[str]) -> list[str]:
    """Unchanged segments that reference a changed one, directly or through others."""
    found: set[str] = set()
    frontier = set(changed)
    while frontier:
        frontier = {
            sid
            for sid, segment in compiled.segments.items()
            if frontier & set(segment.references) and sid not in found and sid not in changed
        }
        found |= frontier
    return sorted(found)
