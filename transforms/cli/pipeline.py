"""Commands that move data: `ingest`, `run`, `publish`, `files`, `manual`, `demo`."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from transforms.cli import render
from transforms.cli.context import CliContext, parse_day, uses
from transforms.cli.options import (
    DEFAULT_ENGINE_NAME,
    DateOpt,
    EngineOpt,
    JsonOpt,
    OptionalDateOpt,
    SegmentArg,
)
from transforms.errors import MissingInputError, SegmentsError


@uses("landing", "lake", "contracts")
def ingest(context: CliContext, date_: DateOpt, as_json: JsonOpt = False) -> None:
    """Read landing files of a date, type and validate them, write them to the lake."""
    from transforms.ingest.step import ingest as ingest_date

    report = ingest_date(context.settings, parse_day(date_))
    if as_json:
        render.as_json(report.to_json())
    else:
        render.ingest(report)


@uses("landing", "lake", "inbox", "definitions", "contracts", "spark_master", "spark_remote")
def run(
    context: CliContext,
    date_: DateOpt,
    accept_shrink: Annotated[
        bool, typer.Option(help="Accept a people snapshot that shrank past the guard rail.")
    ] = False,
    rebuild_later: Annotated[
        bool, typer.Option(help="Rerun D even though later runs exist, then rerun them in order.")
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            help="Recompute the event features from every event instead of folding the"
            " previous run's state into one day's events."
        ),
    ] = False,
    reingest: Annotated[
        bool,
        typer.Option(
            help="Read D's landing files again even if they did not change since D was ingested"
            " (a run re-ingests by itself when they did)."
        ),
    ] = False,
    publish: Annotated[
        bool,
        typer.Option(
            help="Publish the committed run (and any committed run not published yet) to the"
            " Iceberg tables."
        ),
    ] = True,
    as_json: JsonOpt = False,
    engine: EngineOpt = DEFAULT_ENGINE_NAME,
) -> None:
    """Run date D: ingest it if needed, compute every segment, diff, commit the run, and
    publish it to the Iceberg tables."""
    from transforms.insights.report import html_report
    from transforms.runs.iceberg import open_catalog, publish_runs
    from transforms.runs.steps import run as run_date

    day = parse_day(date_)
    settings = context.settings
    if publish:
        open_catalog(settings)  # no catalog to publish to, or a broken one: before computing
    with render.console.status(f"run {day}") as status:
        report = run_date(
            settings,
            day,
            accept_shrink=accept_shrink,
            rebuild_later=rebuild_later,
            engine=engine.value,
            full=full,
            reingest=reingest,
            progress=lambda step: status.update(f"run {step}"),
        )
        report = html_report(settings, report)
        if publish:
            status.update(f"run {day}: publish")
            published = publish_runs(settings, progress=lambda step: status.update(step))
    if as_json:
        render.as_json(
            report.to_json() | {"iceberg": dataclasses.asdict(published) if publish else None}
        )
        return
    render.run(report, context.segment_kinds())
    render.console.print(f"event features: {report.features}", highlight=False)
    render.console.print(f"committed: {settings.lake}/{report.manifest}", highlight=False)
    render.console.print(f"report: {report.html}", highlight=False)
    if publish:
        render.published(published)


@uses("lake", "contracts")
def publish(
    context: CliContext,
    date_: OptionalDateOpt = None,
    all_runs: Annotated[
        bool,
        typer.Option("--all", help="Every committed run (the default; --date narrows it)."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Publish committed runs to the Iceberg tables where missing or stale (after a crash
    between commit and publish, --no-publish, or a rerun); publishing twice changes nothing."""
    from transforms.runs.iceberg import publish_runs
    from transforms.storage.catalog import read_catalog

    if all_runs and date_:
        raise typer.BadParameter("give --date or --all, not both", param_hint="--all")
    committed = read_catalog(context.lake)
    days = [parse_day(date_)] if date_ else None
    if not committed.runs or (days and days[0].isoformat() not in committed.runs):
        raise MissingInputError(
            f"no committed run {'of ' + date_ + ' ' if date_ else ''}in {context.settings.lake}"
            " to publish",
            hint="run `segments run --date D` first (`segments history` lists the runs)",
        )
    with render.console.status("publish") as status:
        result = publish_runs(context.settings, days, progress=status.update)
    if as_json:
        render.as_json(dataclasses.asdict(result))
    else:
        render.published(result)


@uses("lake")
def files(
    context: CliContext,
    table: Annotated[str, typer.Argument(help="membership or changes")],
    date_: Annotated[
        str | None, typer.Option("--date", help="A committed run date (default: the latest).")
    ] = None,
) -> None:
    """Print the files of a committed run's table, one per line: what an engine should read."""
    from transforms.storage.catalog import TABLES, committed_files

    if table not in TABLES:
        raise typer.BadParameter(f"choose one of {', '.join(TABLES)}", param_hint="TABLE")
    _, urls = committed_files(context.lake, table, parse_day(date_) if date_ else None)
    for url in urls:
        typer.echo(url)


class ManualAction(StrEnum):
    add = "add"
    remove = "remove"
    clear = "clear"


@uses("inbox", "definitions")
def manual(
    context: CliContext,
    action: Annotated[ManualAction, typer.Argument(help="add, remove or clear (everyone).")],
    segment: SegmentArg,
    ids: Annotated[str | None, typer.Option(help="Comma-separated person ids (or emails).")] = None,
    file: Annotated[
        Path | None, typer.Option(help="A CSV or .xlsx with person_id, id or email.")
    ] = None,
    email: Annotated[bool, typer.Option("--email", help="--ids are email addresses.")] = False,
) -> None:
    """Manual segments: drop an upload (add, remove, clear) into the inbox for the next run."""
    from transforms.manual.inbox import drop_upload

    definition = context.segment(segment)
    if action != ManualAction.clear and (ids is None) == (file is None):
        raise SegmentsError("give exactly one of --ids and --file")
    key = drop_upload(
        context.inbox,
        definition,
        action.value,
        ids.split(",") if ids else None,
        file.read_bytes() if file else None,
        "email" if email else "person_id",
    )
    render.console.print(
        f"dropped {context.settings.inbox}/{key}: the next run applies it", highlight=False
    )


@uses("landing", "lake", "inbox", "definitions", "contracts")
def demo(context: CliContext) -> None:
    """Write the demo workspace (two days of landing files, manual CSVs) and run the pipeline."""
    from transforms.cli.demo import FIRST_DAY, SECOND_DAY, prepare_demo_roots, write_demo_workspace
    from transforms.insights.report import html_report
    from transforms.runs.iceberg import catalog_properties, publish_runs
    from transforms.runs.steps import run as run_date

    settings = context.settings
    context.compiled(FIRST_DAY)  # broken contracts or definitions: before writing anything
    catalog_properties(settings)  # and no catalog to publish to
    landing, lake, inbox = (context.root(name) for name in ("landing", "lake", "inbox"))
    with render.console.status("writing the demo workspace"):
        prepare_demo_roots([landing, lake, inbox])
        written = write_demo_workspace(landing, inbox)
    render.console.print(
        f"Demo workspace: {len(written.landing)} landing files under {settings.landing},"
        f" {len(written.inbox)} manual uploads under {settings.inbox}"
    )
    kinds = context.segment_kinds()
    for day in (FIRST_DAY, SECOND_DAY):
        if day == SECOND_DAY:
            for key, data in written.later_uploads.items():
                inbox.write_bytes(key, data)
            render.console.print(
                f"A marketer drops {len(written.later_uploads)} more uploads: "
                + ", ".join(written.later_uploads),
                highlight=False,
            )
        with render.console.status(f"running {day}") as status:
            report = run_date(settings, day, progress=lambda step: status.update(f"running {step}"))
            html_report(settings, report)
        if report.ingested is not None:
            render.ingest(report.ingested)
        render.segments(report, kinds)
        render.manual(report.manual)
    with render.console.status("publishing to the Iceberg tables") as status:
        published = publish_runs(settings, progress=status.update)
    render.published(published)
    render.console.print(
        f"Tables (Hive-partitioned Parquet): {settings.lake}/membership/run_date=D/ and"
        f" {settings.lake}/changes/run_date=D/; validated inputs in people/ and events/; refused"
        f" rows in quarantine/; run manifests in runs/ (a run is visible once"
        f" runs/latest.json names it). Uploads: {settings.inbox}/_processed/ and _rejected/."
        " Read them as the Iceberg tables segments.membership, segments.changes and"
        " segments.membership_current: docs/tables.md.",
        highlight=False,
    )
