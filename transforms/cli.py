"""The `segments` command line. Commands only parse flags, call `transforms` functions and
render their results; all logic lives in the modules they call."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from transforms.config import Settings, load_settings
from transforms.errors import SegmentsError

if TYPE_CHECKING:
    from transforms.ingest import IngestReport

app = typer.Typer(
    help="Keep customer segments up to date from warehouse snapshots.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
contracts_app = typer.Typer(
    help="Data contracts: check them, print their docs.", no_args_is_help=True
)
app.add_typer(contracts_app, name="contracts")
console = Console()
errors = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Config file (default ./segments.yaml).")
]
LandingOpt = Annotated[str | None, typer.Option(help="Landing root (path or s3:// URL).")]
LakeOpt = Annotated[str | None, typer.Option(help="Lake root (path or s3:// URL).")]
InboxOpt = Annotated[str | None, typer.Option(help="Inbox root (path or s3:// URL).")]
DefinitionsOpt = Annotated[str | None, typer.Option(help="Segment definitions folder.")]
ContractsOpt = Annotated[str | None, typer.Option(help="Data contracts folder.")]
DateOpt = Annotated[str, typer.Option("--date", help="The run's logical date D (YYYY-MM-DD, UTC).")]


def _settings(config: Path | None, **roots: str | None) -> Settings:
    return load_settings(config, **roots)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date: use YYYY-MM-DD", param_hint="--date"
        ) from None


def _fail(exc: SegmentsError) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {exc.message}", highlight=False)
    if exc.hint:
        errors.print(f"[bold]fix:[/] {exc.hint}", highlight=False)
    return typer.Exit(code=1)


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
    from transforms.ingest import ingest as run_ingest

    try:
        settings = _settings(config, landing=landing, lake=lake, contracts=contracts)
        report = run_ingest(settings, _day(date_))
    except SegmentsError as exc:
        raise _fail(exc) from exc
    if as_json:
        console.print_json(json.dumps(report.to_json()))
        return
    _print_ingest(report)


@contracts_app.command("check")
def contracts_check(config: ConfigOpt = None, contracts: ContractsOpt = None) -> None:
    """Check every contract file; list every problem found."""
    from transforms.contracts import load_contracts

    try:
        settings = _settings(config, contracts=contracts)
    except SegmentsError as exc:
        raise _fail(exc) from exc
    found, problems = load_contracts(settings.contracts)
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
    from transforms.contracts import contract_docs, load_contracts

    settings = _settings(config, contracts=contracts)
    found, problems = load_contracts(settings.contracts)
    if problems:
        raise _fail(problems[0])
    text = contract_docs([found[name] for name in sorted(found)])
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)


@app.command()
def demo(
    config: ConfigOpt = None,
    landing: LandingOpt = None,
    lake: LakeOpt = None,
    inbox: InboxOpt = None,
) -> None:
    """Write the demo workspace (two days of landing files, manual CSVs) and run the pipeline."""
    from transforms.demo import FIRST_DAY, SECOND_DAY, write_demo_workspace
    from transforms.ingest import ingest as run_ingest
    from transforms.storage import Root

    try:
        settings = _settings(config, landing=landing, lake=lake, inbox=inbox)
        with console.status("writing the demo workspace"):
            files = write_demo_workspace(
                Root(settings.landing, settings.storage_options),
                Root(settings.inbox, settings.storage_options),
            )
        console.print(
            f"Demo workspace: {len(files.landing)} landing files under"
            f" {settings.landing}, {len(files.inbox)} manual uploads under"
            f" {settings.inbox}"
        )
        for day in (FIRST_DAY, SECOND_DAY):
            with console.status(f"ingesting {day}"):
                report = run_ingest(settings, day)
            _print_ingest(report)
    except SegmentsError as exc:
        raise _fail(exc) from exc
    console.print(
        f"Lake written to {settings.lake}: typed Parquet under people/ and events/,"
        " refused rows under quarantine/, Great Expectations results under ingest/."
    )
    console.print("Manual uploads stay in the inbox: this version does not apply them yet.")
