"""What explains a change record: the run's dates and definitions, and the rules that give an
entered or exited row its reason, most specific first (docs/tables.md).

One description for both diffs: the Polars one on the driver (`transforms.runs.diff`) and a
distributed engine's on its executors (`transforms.engines.spark_tables`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class RunContext:
    """What a run knows of itself and its previous run, whatever engine diffs it."""

    run_date: date
    previous_run_date: date | None
    previous_definitions: dict[str, str]
    """Segment id -> definition hash, as recorded by the previous committed run."""
    current_definitions: dict[str, str]


@dataclass(frozen=True)
class ReasonRule:
    """A change whose `column` value is (`holds`) or is not in `values` has the reason
    `reason`; None: the value of its `action` column."""

    column: str
    values: list
    holds: bool
    reason: str | None


def reason_rules(context: RunContext, change: str) -> list[ReasonRule]:
    """The rules that give an `change` ("entered" or "exited") row its reason, most specific
    first: the first that holds gives it, "condition" when none does. A change row has its
    segment_id, its manual `action` (NULL: none) and, for an exit, whether its person is
    `in_snapshot`."""
    previous = sorted(context.previous_definitions)
    current = sorted(context.current_definitions)
    changed = sorted(
        s
        for s in current
        if s in previous and context.previous_definitions[s] != context.current_definitions[s]
    )
    if change == "entered":
        return [
            ReasonRule("segment_id", previous, False, "new_segment"),
            ReasonRule("segment_id", changed, True, "definition_changed"),
            ReasonRule("action", ["added"], True, "added"),
        ]
    return [
        ReasonRule("segment_id", current, False, "segment_deleted"),
        ReasonRule("segment_id", changed, True, "definition_changed"),
        ReasonRule("in_snapshot", [False], True, "left_snapshot"),
        ReasonRule("action", ["removed", "cleared", "replaced"], True, None),
    ]
