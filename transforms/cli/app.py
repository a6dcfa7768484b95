"""The `segments` command line. Commands only parse flags, call `transforms` functions and
render their results; all logic lives in the modules they call."""

from __future__ import annotations

import difflib
import errno
import json
import logging
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from typer.core import TyperGroup

from transforms.config import Settings, load_settings
from transforms.errors import ConfigError, DefinitionErrors, SegmentsError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from transforms.contracts.odcs import TableContract
    from transforms.errors import ContractError
    from transforms.ingest.step import IngestReport
    from transforms.language.definitions import Segment
    from transforms.runs.steps import RunReport

errors = Console(stderr=True, soft_wrap=True)


def _fail(exc: SegmentsError) -> typer.Exit:
    """Print `error:` (and `fix:`) on stderr; the caller raises the returned exit code 1."""
    errors.print(f"[bold red]error:[/] {exc.message}", highlight=False)
    if exc.hint:
        errors.print(f"[bold]fix:[/] {exc.hint}", highlight=False)
    return typer.Exit(code=1)


def _path_error(exc: OSError) -> SegmentsError:
    where = f": {exc.filename}" if exc.filename else ""
    return ConfigError(
        f"{exc.strerror or exc}{where}",
        hint="check that path and its permissions (a flag, the config file or a SEGMENTS_*"
        " variable names it)",
    )


class _Commands(TyperGroup):
    """Runs the chosen command; any SegmentsError it raises, or an OSError on a path it
    reads or writes, ends it with `error:`/`fix:` on stderr and exit code 1, not a traceback.
    Usage errors keep click's handling (exit code 2)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SegmentsError as exc:
            raise _fail(exc) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # stdout closed early (`| head`): click handles it
                raise
            raise _fail(_path_error(exc)) from exc


app = typer.Typer(
    cls=_Commands,
    help="Keep customer segments up to date from warehouse snapshots.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
contracts_app = typer.Typer(
    cls=_Commands, help="Data contracts: check them, print their docs.", no_args_is_help=True
)
app.add_typer(contracts_app, name="contracts")
console = Console()

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Config file (default ./segments.yaml).")
]
LandingOpt = Annotated[str | None, typer.Option(help="Landing root (path or s3:// URL).")]
LakeOpt = Annotated[str | None, typer.Option(help="Lake root (path or s3:// URL).")]
InboxOpt = Annotated[str | None, typer.Option(help="Inbox root (path or s3:// URL).")]
DefinitionsOpt = Annotated[str | None, typer.Option(help="Segment definitions folder.")]
ContractsOpt = Annotated[str | None, typer.Option(help="Data contracts folder.")]
EngineOpt = Annotated[
    str,
    typer.Option(
        help="Where membership is computed: polars (in process), duckdb or spark (the SQL"
        " `compile --dialect` prints)."
    ),
]
SparkMasterOpt = Annotated[
    str | None, typer.Option(help="Spark master for --engine spark (default local[2]).")
]
SparkRemoteOpt = Annotated[
    str | None, typer.Option(help="Spark Connect URL (sc://host:15002) for --engine spark.")
]
DateOpt = Annotated[str, typer.Option("--date", help="The run's logical date D (YYYY-MM-DD, UTC).")]


def _settings(config: Path | None, **roots: str | None) -> Settings:
    try:
        return load_settings(config, **roots)
    except UnicodeDecodeError as exc:
        named = config or "named by SEGMENTS_CONFIG (or ./segments.yaml)"
        raise ConfigError(
            f"the config file {named} is not UTF-8 text", hint="save it as UTF-8 YAML"
        ) from exc


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date: use YYYY-MM-DD", param_hint="--date"
        ) from None


def _engine(name: str) -> str:
    from transforms.engines.sql_engines import ENGINES

    if name not in ENGINES:
        raise typer.BadParameter(f"choose one of {', '.join(ENGINES)}", param_hint="--engine")
    return name


def _unknown_segment(settings: Settings, segment: str, known: Iterable[str]) -> SegmentsError:
    """The error of a SEGMENT argument that names no definition."""
    close = difflib.get_close_matches(segment, list(known), n=1)
    where = (
        "segment ids are the names (without .yaml) of the definition files in"
        f" {settings.definitions}"
    )
    return SegmentsError(
        f"unknown segment '{segment}'",
        hint=f"did you mean '{close[0]}'? {where}" if close else where,
    )


def _segment(settings: Settings, segment: str) -> Segment:
    """The definition SEGMENT names. A missing one is unknown, unless some definition is
    broken (it may be that one): then every problem is the error."""
    from transforms.language.definitions import load_segments

    segments, problems = load_segments(settings.definitions)
    if segment in segments:
        return segments[segment]
    if problems:
        raise DefinitionErrors(problems)
    raise _unknown_segment(settings, segment, segments)


def _contracts(settings: Settings) -> tuple[dict[str, TableContract], list[ContractError]]:
    """Every contract and every problem found; a missing folder is an error, not no contracts."""
    from transforms.contracts.odcs import load_contracts

    if not Path(settings.contracts).is_dir():
        raise ConfigError(
            f"the contracts folder {settings.contracts} does not exist",
            hint="create it, or point --contracts / SEGMENTS_CONTRACTS at it",
        )
    return load_contracts(settings.contracts)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    handler = RichHandler(console=errors, show_path=False, log_time_format="%H:%M:%S")
    logger = logging.getLogger("segments")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _ingest_table(report: IngestReport) -> Table:
    table = Table(title=f"Ingest {report.date}", title_justify="left")
    for column in (
        "table",
        "files",
        "rows read",
        "written",
        "quarantined",
        "re-sent dropped",
        "seconds",
    ):
        table.add_column(column, justify="left" if column == "table" else "right")
    for t in report.tables.values():
        table.add_row(
            t.table,
            str(len(t.files)),
            f"{t.rows_read:,}",
            f"{t.rows_written:,}",
            f"{t.quarantined:,}",
            f"{t.duplicates_dropped:,}",
            f"{sum(t.seconds.values()):.1f}",
        )
    return table


def _quarantine_table(report: IngestReport) -> Table | None:
    rows = [
        (t.table, rule, count)
        for t in report.tables.values()
        for rule, count in sorted(t.broken_rules.items())
    ]
    if not rows:
        return None
    table = Table(title="Quarantined rows by broken rule", title_justify="left")
    table.add_column("table")
    table.add_column("rule (column:check)")
    table.add_column("rows", justify="right")
    for name, rule, count in rows:
        table.add_row(name, rule, f"{count:,}")
    return table


def _print_ingest(report: IngestReport) -> None:
    console.print(_ingest_table(report))
    broken = _quarantine_table(report)
    if broken:
        console.print(broken)
    _print_ingest_notes(report)


def _print_ingest_notes(report) -> None:
    for t in report.tables.values():
        for file, columns in t.ignored_columns.items():
            errors.print(
                f"[yellow]note:[/] {file}: columns not in the {t.table} contract were"
                f" ignored: {', '.join(columns)}",
                highlight=False,
            )
        for file, columns in t.missing_columns.items():
            errors.print(
                f"[yellow]note:[/] {file}: optional columns absent, read as NULL:"
                f" {', '.join(columns)}",
                highlight=False,
            )


@app.command()
def ingest(
    date_: DateOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOpt = None,
    landing: LandingOpt = None,
    lake: LakeOpt = None,
    contracts: ContractsOpt = None,
) -> None:
    """Read landing files of a date, type and validate them, write them to the lake."""
    from transforms.ingest.step import ingest as run_ingest

    settings = _settings(config, landing=landing, lake=lake, contracts=contracts)
    report = run_ingest(settings, _day(date_))
    if as_json:
        console.print_json(json.dumps(report.to_json()))
        return
    _print_ingest(report)


@contracts_app.command("check")
def contracts_check(config: ConfigOpt = None, contracts: ContractsOpt = None) -> None:
    """Check every contract file; list every problem found."""
    found, problems = _contracts(_settings(config, contracts=contracts))
    for problem in problems:
        errors.print(f"[bold red]error:[/] {problem}", highlight=False)
    console.print(f"{len(found)} contract(s) valid, {len(problems)} with problems")
    if problems:
        raise typer.Exit(code=1)


@contracts_app.command("docs")
def contracts_docs(
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of stdout.")
    ] = None,
    config: ConfigOpt = None,
    contracts: ContractsOpt = None,
) -> None:
    """Print the tables reference generated from the contracts (Markdown)."""
    from transforms.contracts.odcs import contract_docs

    found, problems = _contracts(_settings(config, contracts=contracts))
    if problems:
        raise problems[0]
    text = contract_docs([found[name] for name in sorted(found)])
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)


SegmentArg = Annotated[str, typer.Argument(help="Segment id (its definition file's stem).")]
VALIDATION_DAY = date(2000, 1, 1)  # any date: validation does not depend on the run date


@app.command()
def validate(
    config: ConfigOpt = None, definitions: DefinitionsOpt = None, contracts: ContractsOpt = None
) -> None:
    """Check every contract and every segment definition; list every problem found."""
    from transforms.language.compiler import compile_segments
    from transforms.language.definitions import load_segments

    settings = _settings(config, definitions=definitions, contracts=contracts)
    found, problems = _contracts(settings)
    segments, definition_problems = load_segments(settings.definitions)
    problems = [*problems, *definition_problems]
    if "people" in found and "events" in found:
        from transforms.language.compiler import as_of_instant

        _, compile_problems = compile_segments(
            segments, found["people"], found["events"], as_of_instant(VALIDATION_DAY)
        )
        problems += compile_problems
    for problem in problems:
        errors.print(f"[bold red]error:[/] {problem}", highlight=False)
    console.print(
        f"{len(found)} contract(s), {len(segments)} segment definition(s):"
        f" {len(problems)} problem(s)"
    )
    if problems:
        raise typer.Exit(code=1)


@app.command("compile")
def compile_(
    segment: Annotated[str | None, typer.Argument(help="Segment id; omit it with --all.")] = None,
    dialect: Annotated[
        str | None,
        typer.Option(help="Print SQL for duckdb, spark, snowflake, bigquery, trino, ..."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="The whole run's query (--dialect).")] = False,
    date_: Annotated[
        str | None, typer.Option("--date", help="Run date whose as-of instant the SQL uses.")
    ] = None,
    config: ConfigOpt = None,
    definitions: DefinitionsOpt = None,
    contracts: ContractsOpt = None,
) -> None:
    """Print a segment's canonical predicate and the event features it needs, or SQL."""
    from transforms.runs.materialize import compile_definitions, restrict

    settings = _settings(config, definitions=definitions, contracts=contracts)
    compiled = compile_definitions(settings, _day(date_) if date_ else VALIDATION_DAY)
    if segment is not None and segment not in compiled.segments:
        raise _unknown_segment(settings, segment, compiled.segments)
    if all_ or dialect:
        if not all_ and segment is None:
            raise typer.BadParameter("name a SEGMENT or pass --all")
        from transforms.language.sql import run_query

        chosen = compiled if all_ else restrict(compiled, {segment})
        try:
            typer.echo(
                run_query(chosen, "people", "events", "manual_members", dialect=dialect or "duckdb")
            )
        except (ValueError, KeyError) as exc:  # sqlglot: unknown dialect
            raise typer.BadParameter(str(exc), param_hint="--dialect") from None
        return
    if segment is None:
        raise typer.BadParameter("name a SEGMENT")
    chosen = compiled.segments[segment]
    if chosen.manual:
        console.print(f"{segment} is a manual segment: its members come from uploads only.")
        return
    console.print(chosen.canonical(), highlight=False, markup=False)
    table = Table(
        title="event features (computed in one pass for all segments)", title_justify="left"
    )
    table.add_column("column")
    table.add_column("feature")
    table.add_column("type")
    for name in chosen.features:
        feature = compiled.features[name]
        table.add_row(name, feature.describe(), feature.type)
    if chosen.features:
        console.print(table)
    if chosen.references:
        console.print("references: " + ", ".join(chosen.references))


@app.command()
def preview(
    segment: SegmentArg,
    date_: DateOpt,
    sample: Annotated[int, typer.Option(help="How many members to show.")] = 10,
    engine: EngineOpt = "polars",
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    definitions: DefinitionsOpt = None,
    contracts: ContractsOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_remote: SparkRemoteOpt = None,
) -> None:
    """Size and a sample of a segment's members on a date, computed without writing anything."""
    import polars as pl

    from transforms.runs.materialize import compile_definitions, evaluate

    day, engine = _day(date_), _engine(engine)
    settings = _settings(
        config,
        lake=lake,
        definitions=definitions,
        contracts=contracts,
        spark_master=spark_master,
        spark_remote=spark_remote,
    )
    compiled = compile_definitions(settings, day)
    if segment not in compiled.segments:
        raise _unknown_segment(settings, segment, compiled.segments)
    with console.status(f"evaluating {segment} for {date_}"):
        evaluation = evaluate(settings, day, only={segment}, engine=engine, compiled=compiled)
    members = evaluation.members.filter(pl.col("segment_id") == segment)
    console.print(f"{segment} on {date_}: {members.height:,} of {evaluation.people:,} people")
    for person in members.sort("person_id").head(sample)["person_id"]:
        console.print(f"  {person}", highlight=False)


@app.command()
def run(
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    engine: EngineOpt = "polars",
    config: ConfigOpt = None,
    landing: LandingOpt = None,
    lake: LakeOpt = None,
    inbox: InboxOpt = None,
    definitions: DefinitionsOpt = None,
    contracts: ContractsOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_remote: SparkRemoteOpt = None,
) -> None:
    """Run date D: ingest it if needed, compute every segment, diff, and commit the run."""
    from transforms.runs.steps import run as run_date

    day = _day(date_)
    settings = _settings(
        config,
        landing=landing,
        lake=lake,
        inbox=inbox,
        definitions=definitions,
        contracts=contracts,
        spark_master=spark_master,
        spark_remote=spark_remote,
    )
    _engine(engine)
    with console.status(f"run {day}") as status:
        report = run_date(
            settings,
            day,
            accept_shrink=accept_shrink,
            rebuild_later=rebuild_later,
            engine=engine,
            full=full,
            reingest=reingest,
            progress=lambda step: status.update(f"run {step}"),
        )
    if as_json:
        console.print_json(json.dumps(report.to_json()))
        return
    if report.ingested is not None:
        console.print(f"ingested {report.date}: {report.ingest_reason}", highlight=False)
        _print_ingest(report.ingested)
    for line in report.landing_unread:
        errors.print(
            f"[bold yellow]warning:[/] {line}: it arrived after this run read the landing"
            f" files; `segments run --date {report.date}` reads it",
            highlight=False,
        )
    console.print(_run_table(report, _segment_kinds(settings)))
    console.print(f"event features: {report.features}", highlight=False)
    console.print(f"committed: {settings.lake}/{report.manifest}", highlight=False)
    console.print(f"report: {report.html}", highlight=False)


def _run_table(report: RunReport, kinds: dict[str, str]) -> Table:
    since = f" vs {report.previous_run_date}" if report.previous_run_date else " (first run)"
    table = Table(title=f"Run {report.date}{since}: {report.people:,} people", title_justify="left")
    for column in ("segment", "type", "members", "entered", "exited"):
        table.add_column(column, justify="left" if column in ("segment", "type") else "right")
    for sid, counts in report.segments.items():
        table.add_row(
            sid,
            kinds.get(sid, "deleted"),
            f"{counts.size:,}",
            f"{counts.entered:,}",
            f"{counts.exited:,}",
        )
    return table


def _segment_kinds(settings: Settings) -> dict[str, str]:
    from transforms.language.definitions import load_segments

    segments, _ = load_segments(settings.definitions)
    return {sid: s.spec.type for sid, s in segments.items()}


@app.command()
def files(
    table: Annotated[str, typer.Argument(help="membership or changes")],
    date_: Annotated[
        str | None, typer.Option("--date", help="A committed run date (default: the latest).")
    ] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
) -> None:
    """Print the files of a committed run's table, one per line: what an engine should read."""
    from transforms.storage.catalog import TABLES, committed_files
    from transforms.storage.roots import Root

    if table not in TABLES:
        raise typer.BadParameter(f"choose one of {', '.join(TABLES)}", param_hint="TABLE")
    settings = _settings(config, lake=lake)
    _, urls = committed_files(
        Root(settings.lake, settings.storage_options), table, _day(date_) if date_ else None
    )
    for url in urls:
        typer.echo(url)


def _drop(
    action: str,
    segment: str,
    ids: str | None,
    file: Path | None,
    email: bool,
    config: Path | None,
    inbox: str | None,
    definitions: str | None,
) -> None:
    from transforms.manual.inbox import drop_upload
    from transforms.storage.roots import Root

    settings = _settings(config, inbox=inbox, definitions=definitions)
    definition = _segment(settings, segment)
    if action != "clear" and (ids is None) == (file is None):
        raise SegmentsError("give exactly one of --ids and --file")
    key = drop_upload(
        Root(settings.inbox, settings.storage_options),
        definition,
        action,
        ids.split(",") if ids else None,
        file.read_bytes() if file else None,
        "email" if email else "person_id",
    )
    console.print(f"dropped {settings.inbox}/{key}: the next run applies it", highlight=False)


IdsOpt = Annotated[str | None, typer.Option(help="Comma-separated person ids (or emails).")]
FileOpt = Annotated[Path | None, typer.Option(help="A CSV with person_id, id or email.")]
EmailOpt = Annotated[bool, typer.Option("--email", help="--ids are email addresses.")]


class ManualAction(StrEnum):
    add = "add"
    remove = "remove"
    clear = "clear"


@app.command()
def manual(
    action: Annotated[ManualAction, typer.Argument(help="add, remove or clear (everyone).")],
    segment: SegmentArg,
    ids: IdsOpt = None,
    file: FileOpt = None,
    email: EmailOpt = False,
    config: ConfigOpt = None,
    inbox: InboxOpt = None,
    definitions: DefinitionsOpt = None,
) -> None:
    """Manual segments: drop an upload (add, remove, clear) into the inbox for the next run."""
    _drop(action.value, segment, ids, file, email, config, inbox, definitions)


@app.command()
def demo(
    config: ConfigOpt = None,
    landing: LandingOpt = None,
    lake: LakeOpt = None,
    inbox: InboxOpt = None,
    definitions: DefinitionsOpt = None,
    contracts: ContractsOpt = None,
) -> None:
    """Write the demo workspace (two days of landing files, manual CSVs) and run the pipeline."""
    from transforms.cli.demo import FIRST_DAY, SECOND_DAY, prepare_demo_roots, write_demo_workspace
    from transforms.runs.materialize import compile_definitions
    from transforms.runs.steps import run as run_date
    from transforms.storage.roots import Root

    settings = _settings(
        config,
        landing=landing,
        lake=lake,
        inbox=inbox,
        definitions=definitions,
        contracts=contracts,
    )
    compile_definitions(settings, FIRST_DAY)  # broken contracts or definitions: before writing
    roots = [
        Root(getattr(settings, name), settings.storage_options)
        for name in ("landing", "lake", "inbox")
    ]
    with console.status("writing the demo workspace"):
        prepare_demo_roots(roots)
        files = write_demo_workspace(roots[0], roots[2])
    console.print(
        f"Demo workspace: {len(files.landing)} landing files under {settings.landing},"
        f" {len(files.inbox)} manual uploads under {settings.inbox}"
    )
    kinds = _segment_kinds(settings)
    for day in (FIRST_DAY, SECOND_DAY):
        if day == SECOND_DAY:
            for key, data in files.later_uploads.items():
                roots[2].write_bytes(key, data)
            console.print(
                f"A marketer drops {len(files.later_uploads)} more uploads: "
                + ", ".join(files.later_uploads),
                highlight=False,
            )
        with console.status(f"running {day}") as status:
            report = run_date(settings, day, progress=lambda step: status.update(f"running {step}"))
        if report.ingested is not None:
            _print_ingest(report.ingested)
        console.print(_run_table(report, kinds))
        _print_manual(report.manual)
    lake_url = settings.lake
    console.print(
        f"Tables (Hive-partitioned Parquet): {lake_url}/membership/run_date=D/ and"
        f" {lake_url}/changes/run_date=D/; validated inputs in people/ and events/; refused"
        f" rows in quarantine/; run manifests in runs/ (a run is visible once"
        f" runs/latest.json names it). Uploads: {settings.inbox}/_processed/ and _rejected/.",
        highlight=False,
    )


def _print_manual(manual: dict) -> None:
    for applied in manual["applied"]:
        extra = ""
        if applied["unknown_count"] or applied["ambiguous_count"]:
            extra = (
                f", {applied['unknown_count']} unknown,"
                f" {applied['ambiguous_count']} ambiguous emails"
            )
        console.print(
            f"  upload {applied['file']}: {applied['action']} {applied['applied']} of"
            f" {applied['rows']} rows{extra}",
            highlight=False,
        )
    for refused in manual["rejected"]:
        console.print(
            f"  [yellow]refused[/] {refused['file']}: {'; '.join(refused['problems'])}"
            f" (moved to {refused['moved_to']})",
            highlight=False,
        )


OptionalDateOpt = Annotated[
    str | None,
    typer.Option("--date", help="The run date D (YYYY-MM-DD); default: the latest committed run."),
]


def _run_day(settings: Settings, text: str | None) -> date:
    """`--date`, or the latest committed run's date."""
    if text is not None:
        return _day(text)
    from transforms.storage.catalog import read_catalog
    from transforms.storage.roots import Root

    latest = read_catalog(Root(settings.lake, settings.storage_options)).latest
    if latest is None:
        raise SegmentsError(
            f"no committed run in {settings.lake}", hint="run `segments run --date D` first"
        )
    return latest


def _truth(value: bool | None) -> str:
    return {True: "[green]TRUE[/]", False: "[red]FALSE[/]", None: "[yellow]NULL[/]"}[value]


@app.command()
def why(
    person: Annotated[str, typer.Argument(help="The person_id.")],
    segment: SegmentArg,
    date_: OptionalDateOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    inbox: InboxOpt = None,
    definitions: DefinitionsOpt = None,
    contracts: ContractsOpt = None,
) -> None:
    """Why a person is or is not in a segment: the predicate's tree with each condition's
    value for them and the values it saw (or, for a manual segment, the uploads)."""
    from dataclasses import asdict

    from rich.tree import Tree

    from transforms.insights.why import explain

    settings = _settings(
        config, lake=lake, inbox=inbox, definitions=definitions, contracts=contracts
    )
    _segment(settings, segment)
    result = explain(settings, person, segment, _run_day(settings, date_))
    if as_json:
        console.print_json(json.dumps(asdict(result), default=str))
        return
    verdict = "[green]is a member[/]" if result.member else "[red]is not a member[/]"
    console.print(f"{person} {verdict} of {segment} on {result.date}")
    if not result.in_snapshot:
        console.print(f"  {person} is not in the people snapshot of {result.date}", highlight=False)
    if result.tree is not None:

        def add(branch: Tree, node) -> None:
            label = node.kind.upper() if node.kind != "condition" else node.sql
            child = branch.add(f"{_truth(node.value)}  {label}", highlight=False)
            for seen in node.saw:
                window = f"  [dim]({seen['window']})[/]" if seen.get("window") else ""
                shown = _truth(seen["value"]) if seen["kind"] == "segment" else repr(seen["value"])
                child.add(f"[dim]{seen['kind']}[/] {seen['name']} = {shown}{window}")
            for sub in node.children:
                add(child, sub)

        tree = Tree("predicate (a member when TRUE; NULL is not TRUE)")
        add(tree, result.tree)
        console.print(tree)
    for upload in result.uploads:
        line = f", line {upload['line']}" if "line" in upload else ""
        console.print(
            f"  run {upload['run_date']}: {upload['action']} by {upload['file']}{line}",
            highlight=False,
        )
    if result.kind == "manual" and not result.uploads:
        console.print("  no applied upload named this person", highlight=False)
    if result.committed_member is not None and result.committed_member != result.member:
        console.print(
            f"[yellow]note:[/] the committed run of {result.date} has them as"
            f" {'a member' if result.committed_member else 'not a member'}: the definitions"
            " changed since (see `segments plan`)"
        )


@app.command()
def plan(
    date_: OptionalDateOpt = None,
    fail_on_change: Annotated[
        bool, typer.Option(help="Exit with 1 when any segment is new, changed or deleted.")
    ] = False,
    sample: Annotated[int, typer.Option(help="People shown per would-enter/exit list.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    definitions: DefinitionsOpt = None,
    contracts: ContractsOpt = None,
) -> None:
    """What the definitions on disk would change against a committed run (default: the
    latest): size before/after, would-enter and would-exit. Writes nothing."""
    from dataclasses import asdict

    from transforms.insights.plan import plan as plan_changes

    settings = _settings(config, lake=lake, definitions=definitions, contracts=contracts)
    day = _day(date_) if date_ else None
    with console.status("evaluating the changed definitions"):
        result = plan_changes(settings, day, sample)
    if as_json:
        console.print_json(json.dumps(asdict(result)))
    elif not result.segments:
        console.print(f"no definition differs from the ones run {result.run_date} used")
    else:
        table = Table(title=f"Definitions on disk vs run {result.run_date}", title_justify="left")
        for column in ("segment", "status", "before", "after", "would enter", "would exit"):
            table.add_column(column, justify="left" if column in ("segment", "status") else "right")
        for item in result.segments:
            table.add_row(
                item.segment_id,
                item.status,
                f"{item.before:,}",
                f"{item.after:,}",
                f"{item.entering:,}",
                f"{item.exiting:,}",
            )
        console.print(table)
        for item in result.segments:
            for verb, people in (("enter", item.sample_entering), ("exit", item.sample_exiting)):
                if people:
                    console.print(
                        f"  {item.segment_id}: would {verb}: {', '.join(people)}"
                        + (
                            " ..."
                            if len(people) < (item.entering if verb == "enter" else item.exiting)
                            else ""
                        ),
                        highlight=False,
                    )
    if fail_on_change and result.changes:
        raise typer.Exit(code=1)


@app.command()
def history(
    segment: SegmentArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
) -> None:
    """Size, entered and exited of a segment in every committed run."""
    from dataclasses import asdict

    from transforms.insights.history import segment_history
    from transforms.storage.roots import Root

    settings = _settings(config, lake=lake)
    rows = segment_history(Root(settings.lake, settings.storage_options), segment)
    if not rows:
        _segment(settings, segment)  # an id no definition has (nor any committed run) is unknown
        raise SegmentsError(
            f"no committed run has segment '{segment}' yet",
            hint="run a date first: `segments run --date D`",
        )
    if as_json:
        console.print_json(json.dumps([asdict(r) for r in rows]))
        return
    table = Table(title=f"{segment}: committed runs", title_justify="left")
    for column in ("run date", "members", "entered", "exited", "definition"):
        table.add_column(
            column, justify="left" if column in ("run date", "definition") else "right"
        )
    previous = None
    for row in rows:
        note = "" if previous in (None, row.definition) else "changed"
        table.add_row(row.run_date, f"{row.size:,}", f"{row.entered:,}", f"{row.exited:,}", note)
        previous = row.definition
    console.print(table)
