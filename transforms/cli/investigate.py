"""Commands that read committed runs and explain them: `why`, `plan`, `history`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from transforms.cli import render
from transforms.cli.context import CliContext, parse_day, uses
from transforms.cli.options import JsonOpt, OptionalDateOpt, SegmentArg
from transforms.errors import SegmentsError


@uses("lake", "inbox", "definitions", "contracts")
def why(
    context: CliContext,
    person: Annotated[str, typer.Argument(help="The person_id.")],
    segment: SegmentArg,
    date_: OptionalDateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why a person is or is not in a segment: the predicate's tree with each condition's
    value for them and the values it saw (or, for a manual segment, the uploads)."""
    from transforms.insights.why import explain

    context.segment(segment)
    result = explain(context.settings, person, segment, context.run_day(date_))
    if as_json:
        render.as_json(asdict(result))
    else:
        render.why(result, person, segment)


@uses("lake", "definitions", "contracts")
def plan(
    context: CliContext,
    date_: OptionalDateOpt = None,
    fail_on_change: Annotated[
        bool, typer.Option(help="Exit with 1 when any segment is new, changed or deleted.")
    ] = False,
    sample: Annotated[int, typer.Option(help="People shown per would-enter/exit list.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """What the definitions on disk would change against a committed run (default: the
    latest): size before/after, would-enter and would-exit. Writes nothing."""
    from transforms.insights.plan import plan as plan_changes

    day = parse_day(date_) if date_ else None
    with render.console.status("evaluating the changed definitions"):
        result = plan_changes(context.settings, day, sample)
    if as_json:
        render.as_json(asdict(result))
    else:
        render.plan(result)
    if fail_on_change and result.changes:
        raise typer.Exit(code=1)


@uses("lake")
def history(context: CliContext, segment: SegmentArg, as_json: JsonOpt = False) -> None:
    """Size, entered and exited of a segment in every committed run."""
    from transforms.insights.history import segment_history

    rows = segment_history(context.lake, segment)
    if not rows:
        context.segment(segment)  # an id no definition has (nor any committed run) is unknown
        raise SegmentsError(
            f"no committed run has segment '{segment}' yet",
            hint="run a date first: `segments run --date D`",
        )
    if as_json:
        render.as_json([asdict(r) for r in rows])
    else:
        render.history(rows, segment)
