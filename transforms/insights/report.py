"""The HTML report of a committed run: one self-contained file next to its manifest
(`runs/run_date=D/report-<attempt>.html`), readable offline: inline CSS and SVG, no scripts,
nothing fetched.

It shows, from the manifests only: each segment's size over the last runs (a line per segment),
who entered and exited in this run (bars), the inputs' quality (rows ingested, quarantined and
the rules they broke, re-sent events dropped, uploads applied, and those refused with where they
were moved), and the steps' timings. Counts are green or red only when they are not zero: a
segment nobody entered or left is no news.
"""

from __future__ import annotations

import logging
from datetime import date
from html import escape

from transforms.config import Settings
from transforms.insights.history import manifests
from transforms.logs import RESULT
from transforms.runs.report import RunReport
from transforms.storage import lake as keys
from transforms.storage.records import (
    IngestReport,
    ManualUploads,
    RunManifest,
    SegmentCounts,
    UploadReport,
)
from transforms.storage.roots import Root

log = logging.getLogger("segments.run")
RUNS_SHOWN = 14
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1d232a; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.sub { color: #5b6570; } table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e3e7eb; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #e3e7eb; border-radius: 6px; padding: .6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.4rem; }
.bad { color: #b42318; } .good { color: #067647; }
svg text { font: 11px system-ui, sans-serif; fill: #5b6570; }
"""
ENTER, EXIT, LINE = "#12b76a", "#f04438", "#2e90fa"


def write_report(lake: Root, day: date, inbox: str) -> str:
    """Render the report of the committed run of `day`, whose uploads came from `inbox`;
    returns its key in the lake."""
    runs = manifests(lake, until=day, last=RUNS_SHOWN)
    manifest = runs[-1]
    ingest = None
    if manifest.ingest and lake.exists(manifest.ingest):
        ingest = IngestReport.from_bytes(lake.read_bytes(manifest.ingest), manifest.ingest)
    key = keys.report_path(day, manifest.attempt)
    lake.write_bytes(key, render(runs, ingest, inbox).encode())
    return key


def html_report(settings: Settings, result: RunReport) -> RunReport:
    """`result`, what a committed run did, once its HTML report is written beside its manifest
    (what `segments run` and the refresh DAG's report task do)."""
    lake = Root(settings.lake, settings.storage_options)
    url = lake.url_of(write_report(lake, date.fromisoformat(result.date), settings.inbox))
    log.info("run %s: report %s", result.date, url, extra=RESULT)
    return result.model_copy(update={"html": url})


def render(runs: list[RunManifest], ingest: IngestReport | None, inbox: str) -> str:
    """The report of the last of `runs` (oldest first), with `ingest`, its date's ingest
    manifest (None if there is none), and `inbox`, the root its refused uploads were moved in."""
    manifest = runs[-1]
    day = manifest.run_date
    since = manifest.previous_run_date or "nothing (first run)"
    segments = manifest.segments
    entered = sum(c.entered for c in segments.values())
    exited = sum(c.exited for c in segments.values())
    cards = [
        ("people", f"{manifest.people:,}", ""),
        ("segments", f"{len(segments):,}", ""),
        ("memberships", f"{manifest.rows['membership']:,}", ""),
        ("entered", f"{entered:,}", _colour_unless_zero(entered, "good")),
        ("exited", f"{exited:,}", _colour_unless_zero(exited, "bad")),
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>segments run {escape(day)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Run {escape(day)}</h1>",
        f"<p class='sub'>compared with {escape(since)} · engine {escape(manifest.engine)}"
        f" · definitions {escape(manifest.definitions_hash)}</p>",
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><span class='sub'>{label}</span><b class='{cls}'>{value}</b></div>"
            for label, value, cls in cards
        )
        + "</div>",
        "<h2>Segments</h2>",
        _segments_table(runs),
        "<h2>Entered and exited in this run</h2>",
        _moves_chart(segments),
        "<h2>Inputs</h2>",
        _inputs(ingest, manifest.manual, inbox),
        "<h2>Step timings</h2>",
        _timings_chart(manifest.seconds),
        "</body></html>",
    ]
    return "\n".join(parts)


def _segments_table(runs: list[RunManifest]) -> str:
    latest = runs[-1]
    dates = [r.run_date for r in runs]
    rows = []
    for sid, counts in sorted(latest.segments.items()):
        sizes = [r.segments[sid].size if sid in r.segments else None for r in runs]
        rows.append(
            f"<tr><td>{escape(sid)}</td><td>{_sparkline(sid, sizes, dates)}</td>"
            f"<td class='n'>{counts.size:,}</td>"
            f"{_count_cell(counts.entered, '+', 'good')}"
            f"{_count_cell(counts.exited, '&minus;', 'bad')}</tr>"
        )
    head = (
        f"<tr><th>segment</th><th>size over the last {len(runs)} run(s)</th>"
        "<th class='n'>members</th><th class='n'>entered</th><th class='n'>exited</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _colour_unless_zero(count: int, colour: str) -> str:
    """The class of a count: `colour` (good or bad news), or none when there is no news."""
    return colour if count else ""


def _count_cell(count: int, sign: str, colour: str) -> str:
    """A table cell of a count, with its sign and colour unless it is zero."""
    if count == 0:
        return "<td class='n'>0</td>"
    return f"<td class='n {colour}'>{sign}{count:,}</td>"


def _sparkline(sid: str, sizes: list[int | None], dates: list[str]) -> str:
    """A segment's size per run as a line on a scale from 0 to its largest size, which its
    tooltip names. A point's height is its share of that size, so a change of 0.3% moves the
    line by 0.3% of the chart's height and growing from nothing spans all of it. (A scale from
    the row's smallest to its largest size would draw any change, however small, from bottom
    to top; one scale shared by every row would flatten small segments next to large ones.)"""
    width, height, pad = 260, 36, 4
    known = [(i, s) for i, s in enumerate(sizes) if s is not None]
    top = max((s for _, s in known), default=0)
    step = (width - 2 * pad) / max(len(sizes) - 1, 1)

    def point(i: int, size: int) -> tuple[float, float]:
        share = size / top if top else 0
        return pad + i * step, height - pad - (height - 2 * pad) * share

    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(i, s) for i, s in known))
    dots = "".join(
        f"<circle class='point' cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='{LINE}'>"
        f"<title>{escape(dates[i])}: {s:,}</title></circle>"
        for i, s in known
        for x, y in [point(i, s)]
    )
    label = escape(f"size of {sid} per run, on a scale from 0 to {top:,}")
    return (
        f"<svg class='chart sizes' data-segment='{escape(sid)}' width='{width}' height='{height}'"
        f" role='img' aria-label='{label}'><title>{label}</title>"
        f"<polyline points='{points}' fill='none' stroke='{LINE}' stroke-width='2'/>{dots}</svg>"
    )


def _bars(rows: list[tuple[str, list[tuple[float, str, str]], str]]) -> str:
    """A horizontal bar chart: per row a label, stacked bars (value, colour, tooltip) and the
    text shown after them."""
    label_width, bar_width, row_height = 190, 520, 20
    top = max((sum(v for v, _, _ in bars) for _, bars, _ in rows), default=0) or 1
    height = row_height * len(rows) + 4
    shapes = []
    for index, (label, bars, after) in enumerate(rows):
        y = index * row_height + 2
        shapes.append(f"<text x='0' y='{y + 13}'>{escape(label)}</text>")
        x = label_width
        for value, colour, tip in bars:
            width = bar_width * value / top
            shapes.append(
                f"<rect class='bar' x='{x:.1f}' y='{y + 2}' width='{width:.1f}' height='14'"
                f" fill='{colour}'><title>{escape(tip)}</title></rect>"
            )
            x += width
        shapes.append(f"<text x='{x + 6:.1f}' y='{y + 13}'>{escape(after)}</text>")
    return (
        f"<svg class='chart bars' width='{label_width + bar_width + 80}' height='{height}'"
        f" role='img'>{''.join(shapes)}</svg>"
    )


def _moves_chart(segments: dict[str, SegmentCounts]) -> str:
    rows = [
        (
            sid,
            [
                (c.entered, ENTER, f"{c.entered:,} entered"),
                (c.exited, EXIT, f"{c.exited:,} exited"),
            ],
            f"+{c.entered:,} / \u2212{c.exited:,}",
        )
        for sid, c in sorted(segments.items())
    ]
    return _bars(rows)


def _timings_chart(seconds: dict[str, float]) -> str:
    rows = [
        (step, [(value, LINE, f"{value:.3f} s")], f"{value:.2f} s")
        for step, value in seconds.items()
    ]
    return _bars(rows)


def _inputs(ingest: IngestReport | None, manual: ManualUploads, inbox: str) -> str:
    parts = []
    if ingest is None:
        parts.append("<p class='sub'>no ingest manifest for this date</p>")
    else:
        rows = "".join(
            f"<tr><td>{escape(table)}</td><td class='n'>{t.rows_read:,}</td>"
            f"<td class='n'>{t.rows_written:,}</td>"
            f"{_count_cell(t.quarantined, '', 'bad')}"
            f"<td class='n'>{t.duplicates_dropped:,}</td>"
            f"<td>{escape(', '.join(f'{r} ({n})' for r, n in t.broken_rules.items()))}</td>"
            f"<td>{escape(', '.join(f'{k} ({n})' for k, n in t.undeclared_keys.items()))}</td>"
            "</tr>"
            for table, t in ingest.tables.items()
        )
        parts.append(
            "<table><tr><th>table</th><th class='n'>rows read</th><th class='n'>written</th>"
            "<th class='n'>quarantined</th><th class='n'>re-sent dropped</th>"
            f"<th>rules broken</th><th>undeclared keys dropped</th></tr>{rows}</table>"
        )
    uploads = "".join(
        f"<tr><td>{escape(u.file)}</td><td>{escape(u.action)}</td>"
        f"<td class='n'>{u.rows:,}</td><td class='n'>{u.applied:,}</td>"
        f"<td class='n'>{u.unknown_count + u.ambiguous_count:,}</td>"
        f"<td>{_not_applied(u, inbox)}</td></tr>"
        for u in manual.applied
    ) + "".join(
        f"<tr class='bad'><td>{escape(r.file)}</td><td>refused</td><td></td><td></td><td></td>"
        f"<td>{escape('; '.join(r.problems))}"
        f"<br><span class='sub'>moved to {escape(f'{inbox}/{r.moved_to}')}</span></td></tr>"
        for r in manual.rejected
    )
    parts.append(
        "<h3>Manual uploads</h3>"
        + (
            "<table><tr><th>file</th><th>action</th><th class='n'>rows</th>"
            "<th class='n'>applied</th><th class='n'>unknown or ambiguous</th>"
            "<th>not applied, or why refused</th>"
            f"</tr>{uploads}</table>"
            if uploads
            else "<p class='sub'>none in this run</p>"
        )
    )
    return "".join(parts)


def _not_applied(upload: UploadReport, inbox: str) -> str:
    """The first unknown ids and ambiguous emails of an applied upload and where all are listed."""
    shown = [*upload.unknown, *upload.ambiguous_emails]
    if not shown:
        return ""
    hidden = upload.unknown_count + upload.ambiguous_count - len(shown)
    listed = escape(", ".join(shown)) + (f" and {hidden:,} more" if hidden > 0 else "")
    if upload.errors_file:
        listed += f"<br><span class='sub'>all in {escape(f'{inbox}/{upload.errors_file}')}</span>"
    return listed
