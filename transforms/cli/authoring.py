"""Commands for writing definitions and contracts: `validate`, `compile`, `preview`,
`contracts check`, `contracts docs`."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from transforms.cli import render
from transforms.cli.context import CliContext, parse_day, uses
from transforms.cli.options import DEFAULT_ENGINE_NAME, DateOpt, EngineOpt, JsonOpt, SegmentArg
from transforms.errors import ContractError, DefinitionError, SegmentsError

if TYPE_CHECKING:
    from transforms.language.polars import CompiledDefinitions

VALIDATION_DAY = date(2000, 1, 1)  # any date: validation does not depend on the run date


@uses("contracts")
def contracts_check(context: CliContext) -> None:
    """Check every contract file; list every problem found."""
    found, problems = context.contracts
    render.problems(problems)
    render.console.print(f"{len(found)} contract(s) valid, {len(problems)} with problems")
    if problems:
        raise typer.Exit(code=1)


@uses("contracts")
def contracts_docs(
    context: CliContext,
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the tables reference generated from the contracts (Markdown)."""
    from transforms.contracts.odcs import contract_docs

    found, problems = context.contracts
    if problems:
        raise problems[0]
    text = contract_docs([found[name] for name in sorted(found)])
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)


@uses("definitions", "contracts")
def validate(context: CliContext, as_json: JsonOpt = False) -> None:
    """Check every contract and every segment definition; list every problem found."""
    from transforms.language.compiler import compile_segments
    from transforms.language.definitions import read_folder
    from transforms.language.semantics import as_of_instant

    found, problems = context.contracts
    folder = read_folder(context.settings.definitions)
    problems = [*problems, *folder.problems]
    if "people" in found and "events" in found:
        _, compile_problems = compile_segments(
            folder.to_check, found["people"], found["events"], as_of_instant(VALIDATION_DAY)
        )
        problems += compile_problems
    if as_json:
        render.as_json([_problem_facts(problem) for problem in problems])
    else:
        render.problems(problems)
        render.console.print(
            f"{len(found)} contract(s), {len(folder.segments)} segment definition(s):"
            f" {len(problems)} problem(s)"
        )
    if problems:
        raise typer.Exit(code=1)


def _problem_facts(problem: DefinitionError | ContractError) -> dict[str, object]:
    """A problem of `validate --json`: where it is, what is wrong, how to fix it."""
    if isinstance(problem, DefinitionError):
        where = (problem.line, problem.column, problem.text)
        message = problem.problem
    else:
        where = (None, None, None)
        message = problem.message.removeprefix(f"{problem.file}: ")
    line, column, text = where
    return {
        "file": problem.file,
        "line": line,
        "column": column,
        "text": text,
        "message": message,
        "hint": problem.hint,
    }


@uses("lake", "definitions", "contracts")
def compile_(
    context: CliContext,
    segment: Annotated[str | None, typer.Argument(help="Segment id; omit it with --all.")] = None,
    dialect: Annotated[
        str | None,
        typer.Option(help="Print SQL for duckdb, spark, snowflake, bigquery, trino, ..."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="The whole run's query (--dialect).")] = False,
    date_: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="Run date whose as-of instant the SQL uses (default: the latest committed run).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a segment's canonical predicate and the event features it needs, or SQL."""
    if all_ or dialect:
        if as_json:
            raise typer.BadParameter("--json prints the predicate, not SQL", param_hint="--json")
        _print_sql(context, segment, dialect, _sql_day(context, date_))
        return
    if segment is None:
        raise typer.BadParameter("name a SEGMENT")
    compiled = context.compiled(parse_day(date_) if date_ else VALIDATION_DAY)
    if segment not in compiled.segments:
        raise context.unknown_segment(segment, compiled.segments)
    facts = _segment_facts(compiled, segment)
    if as_json:
        render.as_json(facts)
    else:
        _print_segment(facts)


def _sql_day(context: CliContext, date_: str | None) -> date:
    """The run date whose as-of instant the SQL uses: --date, or the latest committed run."""
    from transforms.storage.catalog import read_catalog

    if date_ is not None:
        return parse_day(date_)
    latest = read_catalog(context.lake).latest
    if latest is None:
        raise SegmentsError(
            "the SQL computes the members of one run date: no --date given, and no committed"
            f" run in {context.settings.lake} to default to",
            hint="give --date D (its as-of instant is the end of D, 00:00 UTC of D+1)",
        )
    render.errors.print(
        f"note: using the as-of instant of the latest committed run, {latest}"
        " (give --date D to choose)",
        highlight=False,
    )
    return latest


def _print_sql(context: CliContext, segment: str | None, dialect: str | None, day: date) -> None:
    """The SQL computing SEGMENT (or, with segment None, the whole run) in `dialect`."""
    import sqlglot

    from transforms.language.semantics import DIALECT
    from transforms.language.sql import run_query
    from transforms.runs.materialize import restrict

    try:
        sqlglot.Dialect.get_or_raise(dialect or DIALECT)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dialect") from None
    compiled = context.compiled(day)
    if segment is not None and segment not in compiled.segments:
        raise context.unknown_segment(segment, compiled.segments)
    chosen = compiled if segment is None else restrict(compiled, {segment})
    typer.echo(run_query(chosen, "people", "events", "manual_members", dialect=dialect or DIALECT))


def _segment_facts(compiled: CompiledDefinitions, segment: str) -> dict[str, Any]:
    """What `compile SEGMENT` prints: the canonical predicate, its features, its references."""
    one = compiled.segments[segment]
    features = [
        {
            "column": name,
            "feature": compiled.features[name].describe(),
            "type": compiled.features[name].type,
        }
        for name in one.features
    ]
    return {
        "segment": segment,
        "manual": one.manual,
        "predicate": None if one.manual else one.canonical(),
        "features": features,
        "references": list(one.references),
    }


def _print_segment(facts: dict[str, Any]) -> None:
    if facts["manual"]:
        render.console.print(
            f"{facts['segment']} is a manual segment: its members come from uploads only."
        )
        return
    render.console.print(facts["predicate"], highlight=False, markup=False)
    if facts["features"]:
        table = Table(
            title="event features (computed in one pass for all segments)", title_justify="left"
        )
        for column in ("column", "feature", "type"):
            table.add_column(column)
        for feature in facts["features"]:
            table.add_row(feature["column"], feature["feature"], feature["type"])
        render.console.print(table)
    if facts["references"]:
        render.console.print("references: " + ", ".join(facts["references"]))


@uses("lake", "definitions", "contracts", "spark_master", "spark_remote")
def preview(
    context: CliContext,
    segment: SegmentArg,
    date_: DateOpt,
    sample: Annotated[int, typer.Option(help="How many members to show.")] = 10,
    engine: EngineOpt = DEFAULT_ENGINE_NAME,
) -> None:
    """Size and a sample of a segment's members on a date, computed without writing anything."""
    import polars as pl

    from transforms.runs.materialize import EvaluationOptions, evaluate

    day = parse_day(date_)
    compiled = context.compiled(day)
    if segment not in compiled.segments:
        raise context.unknown_segment(segment, compiled.segments)
    with render.console.status(f"evaluating {segment} for {date_}"):
        evaluation = evaluate(
            context.settings,
            day,
            engine.value,
            EvaluationOptions(only={segment}, compiled=compiled),
        )
    members = evaluation.members.filter(pl.col("segment_id") == segment)
    render.console.print(
        f"{segment} on {date_}: {members.height:,} of {evaluation.people:,} people"
    )
    for person in members.sort("person_id").head(sample)["person_id"]:
        render.console.print(f"  {person}", highlight=False)
