"""The HTML report of a committed run: one self-contained file next to its manifest
(`runs/run_date=D/report-<attempt>.html`), readable offline: inline CSS and SVG, no scripts,
nothing fetched.

It shows, from the manifests only: each segment's size over the last runs (a line per segment),
who entered and exited in this run (bars), the inputs' quality (rows ingested, quarantined and
the rules they broke, re-sent events dropped, uploads applied and refused), and the steps'
timings.
"""

from __future__ import annotations

import logging
from datetime import date
from html import escape

from transforms.config import Settings
from transforms.insights.history import manifests
from transforms.runs.report import RunReport
from transforms.storage import lake as keys
from transforms.storage.records import (
    IngestReport,
    ManualUploads,
    RunManifest,
    SegmentCounts,
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


def write_report(lake: Root, day: date) -> str:
    """Render the report of the committed run of `day`; returns its key in the lake."""
    runs = manifests(lake, until=day, last=RUNS_SHOWN)
    manifest = runs[-1]
    ingest = None
    if manifest.ingest and lake.exists(manifest.ingest):
        ingest = IngestReport.from_bytes(lake.read_bytes(manifest.ingest), manifest.ingest)
    key = keys.report_path(day, manifest.attempt)
    lake.write_bytes(key, render(runs, ingest).encode())
    return key


def html_report(settings: Settings, result: RunReport) -> RunReport:
    """`result`, what a committed run did, once its HTML report is written beside its manifest
    (what `segments run` and the refresh DAG's report task do)."""
    lake = Root(settings.lake, settings.storage_options)
    url = lake.url_of(write_report(lake, date.fromisoformat(result.date)))
    log.info("run %s: report %s", result.date, url)
    return result.model_copy(update={"html": url})


def render(runs: list[RunManifest], ingest: IngestReport | None) -> str:
    """The report of the last of `runs` (oldest first), with `ingest`, its date's ingest
    manifest (None if there is none)."""
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
        ("entered", f"{entered:,}", "good"),
        ("exited", f"{exited:,}", "bad"),
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
        _inputs(ingest, manifest.manual),
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
            f"<td class='n good'>+{counts.entered:,}</td>"
            f"<td class='n bad'>&minus;{counts.exited:,}</td></tr>"
        )
    head = (
        f"<tr><th>segment</th><th>size over the last {len(runs)} run(s)</th>"
        "<th class='n'>members</th><th class='n'>entered</th><th class='n'>exited</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _sparkline(sid: str, sizes: list[int | None], dates: list[str]) -> str:
    width, height, pad = 260, 36, 4
    known = [(i, s) for i, s in enumerate(sizes) if s is not None]
    low = min((s for _, s in known), default=0)
    span = max((s for _, s in known), default=0) - low
    step = (width - 2 * pad) / max(len(sizes) - 1, 1)

    def point(i: int, size: int) -> tuple[float, float]:  # from its smallest to its largest
        share = (size - low) / span if span else 0.5
        return pad + i * step, height - pad - (height - 2 * pad) * share

    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(i, s) for i, s in known))
    dots = "".join(
        f"<circle class='point' cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='{LINE}'>"
        f"<title>{escape(dates[i])}: {s:,}</title></circle>"
        for i, s in known
        for x, y in [point(i, s)]
    )
    return (
        f"<svg class='chart sizes' data-segment='{escape(sid)}' width='{width}' height='{height}'"
        f" role='img' aria-label='size of {escape(sid)} per run'>"
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


def _inputs(ingest: IngestReport | None, manual: ManualUploads) -> str:
    parts = []
    if ingest is None:
        parts.append("<p class='sub'>no ingest manifest for this date</p>")
    else:
        rows = "".join(
            f"<tr><td>{escape(table)}</td><td class='n'>{t.rows_read:,}</td>"
            f"<td class='n'>{t.rows_written:,}</td>"
            f"<td class='n bad'>{t.quarantined:,}</td>"
            f"<td class='n'>{t.duplicates_dropped:,}</td>"
            f"<td>{escape(', '.join(f'{r} ({n})' for r, n in t.broken_rules.items()))}</td>"
            "</tr>"
            for table, t in ingest.tables.items()
        )
        parts.append(
            "<table><tr><th>table</th><th class='n'>rows read</th><th class='n'>written</th>"
            "<th class='n'>quarantined</th><th class='n'>re-sent dropped</th>"
            f"<th>rules broken</th></tr>{rows}</table>"
        )
    uploads = "".join(
        f"<tr><td>{escape(u.file)}</td><td>{escape(u.action)}</td>"
        f"<td class='n'>{u.rows:,}</td><td class='n'>{u.applied:,}</td>"
        f"<td class='n'>{u.unknown_count + u.ambiguous_count:,}</td><td></td></tr>"
        for u in manual.applied
    ) + "".join(
        f"<tr class='bad'><td>{escape(r.file)}</td><td>refused</td><td></td><td></td><td></td>"
        f"<td>{escape('; '.join(r.problems))}</td></tr>"
        for r in manual.rejected
    )
    parts.append(
        "<h3>Manual uploads</h3>"
        + (
            "<table><tr><th>file</th><th>action</th><th class='n'>rows</th>"
            "<th class='n'>applied</th><th class='n'>unknown or ambiguous</th><th>why refused</th>"
            f"</tr>{uploads}</table>"
            if uploads
            else "<p class='sub'>none in this run</p>"
        )
    )
    return "".join(parts)
