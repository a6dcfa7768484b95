"""How the commands' results look on a terminal: rich tables, trees and notes. Results go to
stdout (`console`), errors, warnings, notes and logs to stderr (`errors`). Nothing here
computes anything."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from transforms.errors import SegmentsError
from transforms.storage.records import IngestReport, ManualUploads

if TYPE_CHECKING:
    from transforms.insights.history import SegmentRun
    from transforms.insights.plan import Plan
    from transforms.insights.why import Explanation
    from transforms.manual.inbox import InboxCheck
    from transforms.runs.iceberg import Published
    from transforms.runs.report import RunReport

PIPED_WIDTH = 1000
"""Columns of output to a pipe or a file: wide enough that no table cell is cut short."""


def _console(stderr: bool = False) -> Console:
    """Soft wrap: a long line (a path) is left to the terminal to wrap, never broken at 80
    columns when the output is a pipe or a file; there, tables are as wide as their cells."""
    on_terminal = Console(stderr=stderr).is_terminal
    return Console(stderr=stderr, soft_wrap=True, width=None if on_terminal else PIPED_WIDTH)


console = _console()
errors = _console(stderr=True)


def error(exc: SegmentsError) -> None:
    """`error:` (and `fix:`) lines on stderr."""
    errors.print(f"[bold red]error:[/] {exc.message}", highlight=False)
    if exc.hint:
        errors.print(f"[bold]fix:[/] {exc.hint}", highlight=False)


def problems(found: list[Any]) -> None:
    """One `error:` line per problem of a check that lists them all."""
    for problem in found:
        errors.print(f"[bold red]error:[/] {problem}", highlight=False)


def as_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def _table(title: str, columns: list[str], left: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def ingest(report: IngestReport) -> None:
    """The ingest report: one row per table, the quarantined rows by rule, file notes."""
    table = _table(
        f"Ingest {report.date}",
        ["table", "files", "rows read", "written", "quarantined", "re-sent dropped", "seconds"],
        ("table",),
    )
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
    console.print(table)
    broken = [
        (t.table, rule, count)
        for t in report.tables.values()
        for rule, count in sorted(t.broken_rules.items())
    ]
    if broken:
        quarantine = _table(
            "Quarantined rows by broken rule",
            ["table", "rule (column:check)", "rows"],
            ("table", "rule (column:check)"),
        )
        for name, rule, count in broken:
            quarantine.add_row(name, rule, f"{count:,}")
        console.print(quarantine)
    for t in report.tables.values():
        if t.undeclared_keys:
            keys = ", ".join(f"{key} ({rows:,} rows)" for key, rows in t.undeclared_keys.items())
            errors.print(
                f"[yellow]note:[/] {t.table}: keys not in the {t.table} contract were dropped:"
                f" {keys}",
                highlight=False,
            )
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


def run(report: RunReport, kinds: dict[str, str], lake: str, inbox: str) -> None:
    """A committed run: what it ingested and why, late landing files, the segments table,
    its uploads, how it computed the features, where it committed and its report."""
    if report.ingested is not None:
        console.print(f"ingested {report.date}: {report.ingest_reason}", highlight=False)
        ingest(report.ingested)
    for line in report.landing_unread:
        warning(
            f"{line}: it arrived after this run read the landing files;"
            f" `segments run --date {report.date}` reads it"
        )
    segments(report, kinds)
    manual(report.manual, inbox)
    console.print(f"event features: {report.features}", highlight=False)
    console.print(f"committed: {lake}/{report.manifest}", highlight=False)
    console.print(f"report: {report.html}", highlight=False)


def rebuilt(reports: list[RunReport]) -> None:
    """One row per run a `--rebuild-later` rerun committed."""
    table = _table(
        f"Rebuilt {len(reports)} runs",
        ["run", "people", "memberships", "entered", "exited", "uploads", "report"],
        ("run", "report"),
    )
    for each in reports:
        counts = each.segments.values()
        table.add_row(
            each.date,
            f"{each.people:,}",
            f"{sum(c.size for c in counts):,}",
            f"{sum(c.entered for c in counts):,}",
            f"{sum(c.exited for c in counts):,}",
            f"{len(each.manual.applied):,}",
            each.html or "",
        )
    console.print(table)


def warning(text: str) -> None:
    """A `warning:` line on stderr."""
    errors.print(f"[bold yellow]warning:[/] {text}", highlight=False)


def segments(report: RunReport, kinds: dict[str, str]) -> None:
    """One row per segment of a run: its type, members, entered and exited."""
    since = f" vs {report.previous_run_date}" if report.previous_run_date else " (first run)"
    table = _table(
        f"Run {report.date}{since}: {report.people:,} people",
        ["segment", "type", "members", "entered", "exited"],
        ("segment", "type"),
    )
    for sid, counts in report.segments.items():
        table.add_row(
            sid,
            kinds.get(sid, "deleted"),
            f"{counts.size:,}",
            f"{counts.entered:,}",
            f"{counts.exited:,}",
        )
    console.print(table)


def manual(uploads: ManualUploads, inbox: str, dry_run: bool = False) -> None:
    """The uploads a run applied and refused; the first unknown ids and ambiguous emails of
    each, and where every row it could not apply is listed."""
    for applied in uploads.applied:
        extra = ""
        if applied.unknown_count or applied.ambiguous_count:
            extra = f", {applied.unknown_count} unknown, {applied.ambiguous_count} ambiguous emails"
        console.print(
            f"  upload {applied.file}: {applied.action} {applied.applied} of"
            f" {applied.rows} rows{extra}",
            highlight=False,
        )
        for label, shown, count in (
            ("unknown", applied.unknown, applied.unknown_count),
            ("ambiguous emails", applied.ambiguous_emails, applied.ambiguous_count),
        ):
            if count:
                more = f" and {count - len(shown)} more" if count > len(shown) else ""
                console.print(f"    {label}: {', '.join(shown)}{more}", highlight=False)
        if applied.errors_file:
            console.print(
                f"    every row not applied: {inbox}/{applied.errors_file}", highlight=False
            )
    moved = "the run would move it to" if dry_run else "moved to"
    for refused in uploads.rejected:
        console.print(
            f"  [yellow]refused[/] {refused.file}: {'; '.join(refused.problems)}"
            f" ({moved} {inbox}/{refused.moved_to})",
            highlight=False,
        )


def inbox_check(result: InboxCheck, inbox: str) -> None:
    """A dry run of the inbox: what the run of its date would apply and refuse, and the
    manual segments' sizes."""
    snapshot = (
        f"the people snapshot of {result.snapshot}" if result.snapshot else "no people snapshot"
    )
    console.print(
        f"Inbox dry run for the run of {result.day} (matched against {snapshot});"
        " nothing was moved or applied:",
        highlight=False,
    )
    if not result.checked and not result.rejected:
        console.print("  no uploads waiting", highlight=False)
    manual(ManualUploads(applied=result.checked, rejected=result.rejected), inbox, dry_run=True)
    for sid, (before, after) in result.members.items():
        console.print(f"  {sid}: {before:,} -> {after:,} members", highlight=False)


def published(result: Published) -> None:
    """What a publish to the Iceberg tables replaced: one row per run, rows per table."""
    if not result.runs:
        console.print(
            f"Iceberg tables up to date ({result.up_to_date}"
            f" run{'' if result.up_to_date == 1 else 's'}) in {result.catalog}",
            highlight=False,
        )
        return
    names = ("membership", "changes", "membership_current")
    table = _table(
        f"Published to Iceberg in {result.seconds:.1f} s ({result.catalog})",
        ["run_date", *names],
        ("run_date",),
    )
    for day, rows in result.runs.items():
        table.add_row(day, *(f"{rows[n]:,}" if n in rows else "" for n in names))
    console.print(table)


def truth(value: bool | None) -> str:
    return {True: "[green]TRUE[/]", False: "[red]FALSE[/]", None: "[yellow]NULL[/]"}[value]


def why(result: Explanation, person: str, segment: str) -> None:
    """The verdict, the predicate's tree with each condition's value, the uploads."""
    verdict = "[green]is a member[/]" if result.member else "[red]is not a member[/]"
    console.print(f"{person} {verdict} of {segment} on {result.date}")
    if not result.in_snapshot:
        console.print(f"  {person} is not in the people snapshot of {result.date}", highlight=False)
    if result.tree is not None:

        def add(branch: Tree, node: Any) -> None:
            label = node.kind.upper() if node.kind != "condition" else node.sql
            child = branch.add(f"{truth(node.value)}  {label}", highlight=False)
            for seen in node.saw:
                window = f"  [dim]({seen['window']})[/]" if seen.get("window") else ""
                shown = truth(seen["value"]) if seen["kind"] == "segment" else repr(seen["value"])
                leaf = child.add(f"[dim]{seen['kind']}[/] {seen['name']} = {shown}{window}")
                for field, values in seen.get("properties", {}).items():
                    listed = ", ".join(map(repr, values))
                    leaf.add(f"[dim]{field} seen:[/] {listed}", highlight=False)
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


def plan(result: Plan) -> None:
    """Each new, changed or deleted definition: size before/after, would enter and exit."""
    if not result.segments:
        console.print(f"no definition differs from the ones run {result.run_date} used")
        return
    table = _table(
        f"Definitions on disk vs run {result.run_date}",
        ["segment", "status", "before", "after", "would enter", "would exit"],
        ("segment", "status"),
    )
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
        for verb, people, total in (
            ("enter", item.sample_entering, item.entering),
            ("exit", item.sample_exiting, item.exiting),
        ):
            if people:
                more = " ..." if len(people) < total else ""
                console.print(
                    f"  {item.segment_id}: would {verb}: {', '.join(people)}{more}",
                    highlight=False,
                )


def history(rows: list[SegmentRun], segment: str) -> None:
    """One row per committed run; `changed` where the definition's hash changed."""
    table = _table(
        f"{segment}: committed runs",
        ["run date", "members", "entered", "exited", "definition"],
        ("run date", "definition"),
    )
    previous = None
    for row in rows:
        note = "" if previous in (None, row.definition) else "changed"
        table.add_row(row.run_date, f"{row.size:,}", f"{row.entered:,}", f"{row.exited:,}", note)
        previous = row.definition
    console.print(table)
