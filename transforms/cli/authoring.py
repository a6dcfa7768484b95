"""Commands for writing definitions and contracts: `validate`, `compile`, `preview`,
`contracts check`, `contracts docs`."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from transforms.cli import render
from transforms.cli.context import CliContext, parse_day, uses
from transforms.cli.options import DEFAULT_ENGINE_NAME, DateOpt, EngineOpt, SegmentArg

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
def validate(context: CliContext) -> None:
    """Check every contract and every segment definition; list every problem found."""
    from transforms.language.compiler import compile_segments
    from transforms.language.semantics import as_of_instant

    found, problems = context.contracts
    segments, definition_problems = context.definitions
    problems = [*problems, *definition_problems]
    if "people" in found and "events" in found:
        _, compile_problems = compile_segments(
            segments, found["people"], found["events"], as_of_instant(VALIDATION_DAY)
        )
        problems += compile_problems
    render.problems(problems)
    render.console.print(
        f"{len(found)} contract(s), {len(segments)} segment definition(s):"
        f" {len(problems)} problem(s)"
    )
    if problems:
        raise typer.Exit(code=1)


@uses("definitions", "contracts")
def compile_(
    context: CliContext,
    segment: Annotated[str | None, typer.Argument(help="Segment id; omit it with --all.")] = None,
    dialect: Annotated[
        str | None,
        typer.Option(help="Print SQL for duckdb, spark, snowflake, bigquery, trino, ..."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="The whole run's query (--dialect).")] = False,
    date_: Annotated[
        str | None, typer.Option("--date", help="Run date whose as-of instant the SQL uses.")
    ] = None,
) -> None:
    """Print a segment's canonical predicate and the event features it needs, or SQL."""
    from transforms.runs.materialize import restrict

    compiled = context.compiled(parse_day(date_) if date_ else VALIDATION_DAY)
    if segment is not None and segment not in compiled.segments:
        raise context.unknown_segment(segment, compiled.segments)
    if all_ or dialect:
        if not all_ and segment is None:
            raise typer.BadParameter("name a SEGMENT or pass --all")
        import sqlglot

        from transforms.language.semantics import DIALECT
        from transforms.language.sql import run_query

        chosen = compiled if all_ else restrict(compiled, {segment})
        try:
            sqlglot.Dialect.get_or_raise(dialect or DIALECT)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dialect") from None
        typer.echo(
            run_query(chosen, "people", "events", "manual_members", dialect=dialect or DIALECT)
        )
        return
    if segment is None:
        raise typer.BadParameter("name a SEGMENT")
    one = compiled.segments[segment]
    if one.manual:
        render.console.print(f"{segment} is a manual segment: its members come from uploads only.")
        return
    render.console.print(one.canonical(), highlight=False, markup=False)
    if one.features:
        table = Table(
            title="event features (computed in one pass for all segments)", title_justify="left"
        )
        for column in ("column", "feature", "type"):
            table.add_column(column)
        for name in one.features:
            feature = compiled.features[name]
            table.add_row(name, feature.describe(), feature.type)
        render.console.print(table)
    if one.references:
        render.console.print("references: " + ", ".join(one.references))


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
