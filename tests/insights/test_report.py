"""The run report: one self-contained HTML file per committed run, whose charts draw in a real
browser (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date, timedelta
from html import escape, unescape
from pathlib import Path

import pytest

from tests.support.workspace import EVENTS_HEADER, PEOPLE_HEADER, land, person_row, with_definitions
from transforms.insights.report import ENTER, EXIT, LINE, html_report, render
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest
from transforms.storage.records import IngestReport, RunManifest, SegmentCounts, TableReport
from transforms.storage.roots import Root

D1 = date(2026, 3, 30)
DAYS = [D1 + timedelta(days=n) for n in range(3)]
DEFINITIONS = {
    "buyers": "name: Buyers\ntype: data_driven\nwhere: event_count('purchase') >= 1\n",
    "pro": "name: Pro\ntype: data_driven\nwhere: plan = 'pro'\n",
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def reports(settings, tmp_path: Path) -> list[Path]:
    """Three runs (people come and go, plans change, purchases happen); their reports."""
    ws = with_definitions(settings, tmp_path / "definitions", DEFINITIONS)
    plans = [
        {"a": "pro", "b": "free"},
        {"a": "pro", "b": "pro", "c": "free"},
        {"b": "free", "d": "pro"},
    ]
    paths = []
    for index, (day, people) in enumerate(zip(DAYS, plans, strict=True)):
        rows = "".join(person_row(p, plan) for p, plan in people.items())
        land(ws, "people", "p.csv", PEOPLE_HEADER + rows + "bad,,,gold,,,,,,\n", day)
        bought = list(people)[: index + 1]
        utm = '"{""utm"": ""spring""}"'  # a key the events contract does not declare
        events = "".join(f"{day}{p},{p},purchase,{day}T09:00:00Z,1,USD,{utm}\n" for p in bought)
        land(ws, "events", "e.csv", EVENTS_HEADER + events, day)
        paths.append(Path(html_report(ws, run(ws, day, accept_shrink=True)).html))
    return paths


def test_every_run_writes_a_self_contained_report_next_to_its_manifest(reports):
    for path in reports:
        assert path.parent.name.startswith("run_date=") and path.name.startswith("report-")
        assert (
            (path.parent / path.name.replace("report-", "manifest-")).with_suffix(".json").exists()
        )
    html = reports[-1].read_text()
    assert "<script" not in html and not re.search(r"(src|href)=['\"]?https?:", html)
    assert html.count("class='chart sizes'") == 2  # one line per segment
    assert "data-segment='buyers'" in html and "data-segment='pro'" in html
    assert html.count("<circle class='point'") == 6  # three runs of two segments
    assert "quarantined" in html and "people.quarantine" not in html
    assert "undeclared keys dropped" in html and "properties.utm (2)" in html


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="needs Debian's chromium package (.ci/run installs it: apt-get install chromium)",
)
def test_the_charts_draw_in_headless_chromium(reports, tmp_path: Path):
    from PIL import Image

    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1400",
            f"--screenshot={screenshot}",
            reports[-1].as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = Image.open(screenshot).convert("RGB")
    colours = {colour: 0 for colour in (LINE, ENTER, EXIT)}
    wanted = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)): c for c in colours}
    for count, rgb in image.getcolors(maxcolors=1 << 20):
        if rgb in wanted:
            colours[wanted[rgb]] += count
    assert len(image.getcolors(maxcolors=1 << 20)) > 10  # not a blank page
    assert all(pixels > 50 for pixels in colours.values()), colours  # lines and both bars drew
    dom = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom",
         reports[-1].as_uri()],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert dom.count("<polyline") == 2 and dom.count('class="bar"') >= 4


def result_manifest(ws, day: date) -> RunManifest:
    lake = Root(ws.lake)
    return read_manifest(lake, read_catalog(lake), day)


def manifest(day: date, segments: dict[str, tuple[int, int, int]]) -> RunManifest:
    """A committed run's manifest holding only what the report reads: per segment (size,
    entered, exited)."""
    counts = {
        sid: SegmentCounts(size=s, entered=e, exited=x) for sid, (s, e, x) in segments.items()
    }
    return RunManifest(
        previous_run_date=None,
        definitions={},
        definitions_hash="0123456789abcdef",
        people=1003,
        rows={"membership": sum(c.size for c in counts.values()), "changes": 0},
        segments=counts,
        run_date=day.isoformat(),
        attempt="a1",
        files={},
    )


def point_heights(html: str, segment: str) -> list[float]:
    """The y of each point of a segment's size line (0 is the top of the chart)."""
    chart = re.search(rf"data-segment='{segment}'.*?</svg>", html).group(0)
    return [float(y) for y in re.findall(r"cy='([0-9.]+)'", chart)]


def test_a_small_relative_change_draws_as_a_small_move(tmp_path: Path):
    runs = [
        manifest(DAYS[0], {"steady": (1000, 1000, 0), "growing": (0, 0, 0)}),
        manifest(DAYS[1], {"steady": (1003, 3, 0), "growing": (10, 10, 0)}),
    ]
    html = render(runs, None, str(tmp_path / "inbox"))
    before, after = point_heights(html, "steady")
    assert abs(before - after) < 1  # 0.3% of the size: not from the bottom to the top
    assert "0 to 1,003" in html  # the scale is labelled
    empty, ten = point_heights(html, "growing")
    assert empty - ten > 20  # from nothing to something is the whole height


def test_zero_counts_are_neutral():
    runs = [manifest(DAYS[0], {"quiet": (5, 0, 0), "busy": (5, 2, 1)})]
    table = TableReport(table="people", rows_read=5, rows_written=5, quarantined=0)
    ingest = IngestReport(
        date=DAYS[0].isoformat(), attempt="a1", tables={"people": table}, outputs={}
    )
    html = render(runs, ingest, "inbox")
    coloured = re.findall(r"class='[^']*\b(?:good|bad)\b[^']*'>([^<]*)<", html)
    assert coloured  # busy's counts are still coloured
    zeros = [text for text in coloured if unescape(text).strip("+\u2212 ") == "0"]
    assert zeros == []


def test_a_refused_upload_says_where_it_was_moved(settings, tmp_path: Path):
    ws = with_definitions(settings, tmp_path / "definitions", {"vip": "name: VIP\ntype: manual\n"})
    land(ws, "people", "p.csv", PEOPLE_HEADER + person_row("a"), D1)
    upload = Path(ws.inbox) / "vip" / "list.csv"
    upload.parent.mkdir(parents=True)
    upload.write_text("name\nAnn\n")  # no identifier column
    result = run(ws, D1)
    (refused,) = result_manifest(ws, D1).manual.rejected
    assert (Path(ws.inbox) / refused.moved_to).exists()
    html = Path(html_report(ws, result).html).read_text()
    assert f"moved to {escape(ws.inbox)}/{refused.moved_to}" in html


def test_an_upload_with_unknown_ids_lists_the_first_and_links_the_errors_file(
    settings, tmp_path: Path
):
    ws = with_definitions(settings, tmp_path / "definitions", {"vip": "name: VIP\ntype: manual\n"})
    land(ws, "people", "p.csv", PEOPLE_HEADER + person_row("a"), D1)
    upload = Path(ws.inbox) / "vip" / "list.csv"
    upload.parent.mkdir(parents=True)
    strangers = [f"stranger{n:02}" for n in range(25)]
    upload.write_text("person_id\na\n" + "".join(f"{s}\n" for s in strangers))
    result = run(ws, D1)
    (applied,) = result_manifest(ws, D1).manual.applied
    html = Path(html_report(ws, result).html).read_text()
    assert "stranger00" in html and "stranger19" in html and "stranger20" not in html
    assert "and 5 more" in html
    assert applied.errors_file and (Path(ws.inbox) / applied.errors_file).exists()
    assert f"all in {escape(ws.inbox)}/{applied.errors_file}" in html
