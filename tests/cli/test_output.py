"""What the commands print when their output is piped (to grep, a file, a CI log): nothing
hard-wrapped at 80 columns, and no other library's warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.workspace import (
    DAY,
    EVENTS_HEADER,
    PEOPLE_HEADER,
    land,
    person_row,
    workspace_settings,
)

SEGMENTS = str(Path(sys.executable).parent / "segments")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTS_") and k != "COLUMNS"}


def segments(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `segments` command with stdout and stderr piped (not a terminal)."""
    return subprocess.run(
        [SEGMENTS, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300
    )


def test_a_long_path_piped_stays_on_one_line(tmp_path: Path):
    inbox = tmp_path / ("a-rather-long-folder-name-" * 5) / "inbox"
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "vip.yaml").write_text("name: VIP\ntype: manual\n")
    done = segments(
        "manual", "add", "vip", "--ids", "a", "--inbox", str(inbox),
        "--definitions", str(definitions), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("dropped")]
    assert f"dropped {inbox}/vip/" in line and line.endswith("the next run applies it")


def test_ingest_prints_no_third_party_warning(tmp_path: Path):
    settings = workspace_settings(tmp_path)
    land(settings, "people", "p.csv", PEOPLE_HEADER + person_row("a"))
    land(settings, "events", "e.csv", EVENTS_HEADER + f"e1,a,purchase,{DAY}T10:00:00Z,1,USD,\n")
    done = segments(
        "ingest", "--date", DAY.isoformat(), "--landing", settings.landing,
        "--lake", settings.lake, "--contracts", settings.contracts, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
