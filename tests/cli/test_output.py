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
    with_definitions,
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
    assert f"dropped {inbox}/vip/" in line and "the first run applies it" in line


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


def test_a_run_prints_each_fact_once_and_its_log_is_not_wrapped(tmp_path: Path):
    long_id = "customers_who_bought_at_least_once_and_then_some_more_after"
    settings = with_definitions(
        workspace_settings(tmp_path),
        tmp_path / "definitions",
        {long_id: "name: Long\ntype: data_driven\nwhere: plan = 'pro'\n"},
    )
    land(settings, "people", "p.csv", PEOPLE_HEADER + person_row("a"))
    land(settings, "events", "e.csv", EVENTS_HEADER)
    flags = [f"--{name}={getattr(settings, name)}" for name in ("landing", "lake", "inbox")]
    flags += [f"--definitions={settings.definitions}", f"--contracts={settings.contracts}"]
    done = segments("run", "--date", DAY.isoformat(), "--no-publish", *flags, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert long_id in done.stdout  # the segments table has it
    assert long_id not in done.stderr  # and the log does not repeat it
    everything = done.stdout + done.stderr
    assert everything.count("committed") == 1, everything
    assert "rows read" not in done.stderr  # the ingest table says it
    verbose = segments("-v", "run", "--date", DAY.isoformat(), "--no-publish", *flags, cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    (line,) = [line for line in verbose.stderr.splitlines() if long_id in line]
    assert line.endswith("0 exited")  # one line, not hard-wrapped at 80 columns
