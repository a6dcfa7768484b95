"""The run report: one self-contained HTML file per committed run, whose charts draw in a real
browser (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.support.workspace import EVENTS_HEADER, PEOPLE_HEADER, land, person_row, with_definitions
from transforms.insights.report import ENTER, EXIT, LINE, html_report
from transforms.runs.steps import run

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
        events = "".join(f"{day}{p},{p},purchase,{day}T09:00:00Z,1,USD,\n" for p in bought)
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
