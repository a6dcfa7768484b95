"""Commands that move data: `ingest`, `run`, `publish`, `files`, `manual`, `demo`."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from transforms.cli import render
from transforms.cli.context import CliContext, parse_day, uses
from transforms.cli.options import (
    DEFAULT_ENGINE_NAME,
    DateOpt,
    EngineName,
    EngineOpt,
    JsonOpt,
    OptionalDateOpt,
    SegmentArg,
)
from transforms.errors import DefinitionErrors, MissingInputError, SegmentsError


@uses("landing", "lake", "contracts", "spark_master", "spark_remote")
def ingest(
    context: CliContext,
    date_: DateOpt,
    engine: Annotated[
        EngineName,
        typer.Option(
            help="spark: read and validate on Spark's executors; polars or duckdb: in this"
            " process (both the same way)."
        ),
    ] = DEFAULT_ENGINE_NAME,
    as_json: JsonOpt = False,
) -> None:
    """Read landing files of a date, type and validate them, write them to the lake."""
    from transforms.engines.registry import load_engine
    from transforms.ingest.step import ingest as ingest_date

    chosen = load_engine(engine.value)
    chosen.check(context.settings)
    steps = (chosen.stage_ingest, chosen.publish_ingest) if chosen.distributed else None
    report = ingest_date(context.settings, parse_day(date_), steps)
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
    from transforms.runs.report import report as committed_report
    from transforms.runs.steps import run as run_date

    day = parse_day(date_)
    settings = context.settings
    if publish:
        open_catalog(settings)  # no catalog to publish to, or a broken one: before computing
    if rebuild_later:
        _warn_rebuild(context, day)
    with render.console.status(f"run {day}") as status:
        first = run_date(
            settings,
            day,
            accept_shrink=accept_shrink,
            rebuild_later=rebuild_later,
            engine=engine.value,
            full=full,
            reingest=reingest,
            progress=lambda step: status.update(f"run {step}"),
        )
        status.update(f"run {day}: report")
        reports = [html_report(settings, first)]
        for later in first.rebuilt:
            status.update(f"run {later}: report")
            reports.append(html_report(settings, committed_report(settings, parse_day(later))))
        if publish:
            status.update(f"run {day}: publish")
            published = publish_runs(settings, progress=lambda step: status.update(step))
    if as_json:
        render.as_json(
            reports[0].to_json()
            | {"rebuilt": [r.to_json() for r in reports[1:]]}
            | {"iceberg": dataclasses.asdict(published) if publish else None}
        )
        return
    for each in reports:
        render.run(each, context.segment_kinds(), settings.lake, settings.inbox)
    if len(reports) > 1:
        render.rebuilt(reports)
    if publish:
        render.published(published)


def _warn_rebuild(context: CliContext, day: date) -> None:
    """--rebuild-later recomputes history: say which runs, and with what, before it starts."""
    from transforms.storage.catalog import read_catalog

    later = read_catalog(context.lake).later(day)
    if later:
        render.warning(
            f"--rebuild-later reruns {day} and the {len(later)} later committed run(s)"
            f" {later[0]} to {later[-1]} with the definitions and landing files as they are now:"
            " their earlier results are replaced (kept for keep_superseded_files_for)"
        )


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


IdsOpt = Annotated[str | None, typer.Option(help="Comma-separated person ids (or emails).")]
FileOpt = Annotated[
    Path | None,
    typer.Option(
        help="A CSV (any common delimiter and encoding) or .xlsx with person_id, id or email."
    ),
]
EmailOpt = Annotated[bool, typer.Option("--email", help="--ids are email addresses.")]


def _manual_drop(action: str, doc: str):
    """The `segments manual <action>` command that drops an upload of `action`."""

    def command(
        context: CliContext,
        segment: SegmentArg,
        ids: IdsOpt = None,
        file: FileOpt = None,
        email: EmailOpt = False,
    ) -> None:
        if (ids is None) == (file is None):
            raise SegmentsError("give exactly one of --ids and --file")
        _drop(context, segment, action, ids, file, "email" if email else "person_id")

    command.__doc__ = doc
    return uses("lake", "inbox", "definitions")(command)


manual_add = _manual_drop("add", "Add people to a manual segment at the next run.")
manual_remove = _manual_drop("remove", "Remove people from a manual segment at the next run.")
manual_replace = _manual_drop(
    "replace",
    "Make the list the manual segment's whole membership at the next run (a replace-list:"
    " everyone not in it leaves, with reason `replaced`).",
)


@uses("lake", "inbox", "definitions")
def manual_clear(context: CliContext, segment: SegmentArg) -> None:
    """Remove everyone from a manual segment at the next run."""
    _drop(context, segment, "clear", None, None, "person_id")


def _drop(
    context: CliContext,
    segment: str,
    action: str,
    ids: str | None,
    file: Path | None,
    column: str,
) -> None:
    from transforms.manual.inbox import drop_upload
    from transforms.storage.catalog import read_catalog

    definition = context.segment(segment)
    key = drop_upload(
        context.inbox,
        definition,
        action,
        ids.split(",") if ids else None,
        file.read_bytes() if file else None,
        column,
        file.stem if file else "cli",
    )
    after = read_catalog(context.lake).next_date
    which = f"the run of {after}" if after else "the first run"
    render.console.print(
        f"dropped {context.settings.inbox}/{key}: {which} applies it (a rerun of a committed"
        " date re-applies only the uploads it applied)",
        highlight=False,
    )


@uses("lake", "inbox", "definitions", "contracts")
def manual_check(
    context: CliContext,
    date_: Annotated[
        str | None,
        typer.Option(
            "--date", help="The run to check (default: the one after the latest committed run)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Dry run: what the next run would apply from the inbox, what it would refuse and why,
    and each manual segment's size before and after. Moves nothing. Exits with 1 when a file
    would be refused."""
    from transforms.manual.inbox import check_uploads

    _, problems = context.definitions
    if problems:  # an upload for a segment whose definition is broken would look unknown
        raise DefinitionErrors(problems)
    result = check_uploads(context.settings, parse_day(date_) if date_ else None)
    if as_json:
        render.as_json(result.model_dump(mode="json"))
    else:
        render.inbox_check(result, context.settings.inbox)
    if result.rejected:
        raise typer.Exit(code=1)


@uses("landing", "lake", "inbox", "definitions", "contracts")
def demo(context: CliContext, as_json: JsonOpt = False) -> None:
    """Write the demo workspace (three days of landing files, manual CSVs), run the first two
    days with more uploads dropped in between, and publish them."""
    from transforms.cli.demo import (
        FIRST_DAY,
        SECOND_DAY,
        prepare_demo_roots,
        write_demo_workspace,
    )
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
    say = (lambda text: None) if as_json else _say
    say(
        f"Demo workspace: {len(written.landing)} landing files under {settings.landing},"
        f" {len(written.inbox)} manual uploads under {settings.inbox}"
    )
    kinds = context.segment_kinds()
    reports = []
    for day in (FIRST_DAY, SECOND_DAY):
        if day == SECOND_DAY:
            for key, data in written.later_uploads.items():
                inbox.write_bytes(key, data)
            say(
                f"A marketer drops {len(written.later_uploads)} more uploads: "
                + ", ".join(written.later_uploads)
            )
        with render.console.status(f"running {day}") as status:
            report = run_date(settings, day, progress=lambda step: status.update(f"running {step}"))
            reports.append(html_report(settings, report))
        if not as_json:
            if report.ingested is not None:
                render.ingest(report.ingested)
            render.segments(report, kinds)
            render.manual(report.manual, settings.inbox)
    with render.console.status("publishing to the Iceberg tables") as status:
        published = publish_runs(settings, progress=status.update)
    if as_json:
        render.as_json(
            {"runs": [r.to_json() for r in reports], "iceberg": dataclasses.asdict(published)}
        )
        return
    render.published(published)
    _say(_demo_epilogue(settings.lake, settings.inbox))


def _say(text: str) -> None:
    render.console.print(text, highlight=False)


def _demo_epilogue(lake: str, inbox: str) -> str:
    from transforms.cli.demo import THIRD_DAY

    return (
        f"Tables (Hive-partitioned Parquet): {lake}/membership/run_date=D/ and"
        f" {lake}/changes/run_date=D/; validated inputs in people/ and events/; refused"
        " rows in quarantine/; run manifests in runs/ (a run is visible once runs/latest.json"
        f" names it). Uploads: {inbox}/_processed/ and _rejected/. Read them as the Iceberg"
        " tables segments.membership, segments.changes and segments.membership_current:"
        f" docs/tables.md.\nThe landing files of {THIRD_DAY} are in place too, not run yet:"
        f" drop uploads, check them with `segments manual check`, then `segments run --date"
        f" {THIRD_DAY}` (the README's walk-through in Manual segments)."
    )
