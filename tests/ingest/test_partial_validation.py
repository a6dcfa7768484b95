"""Validating only the rows of a snapshot that changed: the rows refused are exactly those a
validation of every row refuses, a changed contract validates every row again, and a killed
ingest never leaves fingerprints a later one trusts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.support.workspace import (
    CONTRACTS,
    DAY,
    EVENTS_HEADER,
    PEOPLE_HEADER,
    REPO,
    lake_files,
    lake_table,
    land,
    person_row,
)
from transforms.ingest.step import ingest
from transforms.storage import lake
from transforms.storage.lake import read_ingest_manifest
from transforms.storage.roots import Root

DAY2, DAY3 = DAY + timedelta(days=1), DAY + timedelta(days=2)
PLANS = ("free", "trial", "pro", "enterprise")
BASE = [person_row(f"p{i:03}", PLANS[i % 4]) for i in range(40)]
STILL_BAD = "bad01,ok@example.com,B,platinum,US,30,1,true,2026-01-01T00:00:00Z,\n"


def snapshot(rows: list[str]) -> str:
    return PEOPLE_HEADER + "".join(rows)


def outcome(settings, day) -> dict:
    """What an ingest of `day` kept and refused, attempt names aside."""
    people = lake_table(settings, lake.partition("people", day))
    quarantine = lake_table(settings, lake.quarantine_partition("people", day))
    refused = (
        quarantine.drop("_source_file").sort("_source_row").rows()
        if quarantine.height
        else []  # no quarantine file is written when nothing was refused
    )
    report = read_ingest_manifest(Root(settings.lake), day).tables["people"]
    return {
        "kept": people.rows(),
        "refused": refused,
        "broken_rules": report.broken_rules,
        "success": report.validation_success,
    }


def full(settings, tmp_path: Path, day, name: str = "full"):
    """The same landing files of `day` ingested into a lake of their own: every row validated."""
    alone = settings.model_copy(update={"lake": str(tmp_path / name)})
    report = ingest(alone, day)
    people = report.tables["people"]
    assert people.validated_against is None
    # every row but those that did not convert (refused before validation)
    assert people.rows_validated == people.rows_read - people.broken_rules.get("age:type", 0)
    return alone


def changed_day(settings) -> None:
    """Day 2: most rows as on day 1, some changed, some new, one key duplicated."""
    rows = list(BASE)
    rows[1] = rows[1].replace(",30,", ",7,")  # a row that changed into a bad value
    rows[2] = rows[2].replace(",US,", ",DE,")  # a row that changed and stays good
    rows += [
        person_row("p900"),  # new and good
        "p901,not-an-email,N,free,US,30,1,true,2026-01-01T00:00:00Z,\n",  # new and bad
        "p003,other@example.com,C,pro,US,30,1,true,2026-01-01T00:00:00Z,\n",  # p003 again
        "p904,ok@example.com,D,free,US,forty,1,true,2026-01-01T00:00:00Z,\n",  # not an integer
    ]
    land(settings, "people", "people.csv", snapshot([*rows, STILL_BAD]), DAY2)


def test_only_changed_rows_are_validated_and_the_same_rows_are_refused(settings, tmp_path):
    land(settings, "people", "people.csv", snapshot([*BASE, STILL_BAD]))
    first = ingest(settings, DAY).tables["people"]
    assert (first.rows_validated, first.validated_against) == (41, None)
    changed_day(settings)
    report = ingest(settings, DAY2).tables["people"]
    # validated: the two changed rows, p900, p901, the second p003 and the row refused on day
    # 1 (p904 did not convert: it is refused before validation); the 38 others passed already
    assert (report.rows_validated, report.validated_against) == (6, DAY.isoformat())
    assert report.rows_read == 45
    partial = outcome(settings, DAY2)
    assert partial == outcome(full(settings, tmp_path, DAY2), DAY2)
    refused = {row[0]: row[-2] for row in partial["refused"]}
    assert refused == {
        "p001": "age:range",
        "p003": "person_id:unique",
        "p901": "email:pattern",
        "p904": "age:type",
        "bad01": "plan:validValues",
    }
    assert [row[0] for row in partial["refused"]].count("p003") == 2  # both copies


def test_a_snapshot_with_nothing_changed_validates_no_row(settings, tmp_path):
    land(settings, "people", "people.csv", snapshot(BASE))
    ingest(settings, DAY)
    land(settings, "people", "people.csv", snapshot(list(reversed(BASE))), DAY2)
    report = ingest(settings, DAY2).tables["people"]
    assert (report.rows_validated, report.rows_written) == (0, 40)
    assert outcome(settings, DAY2) == outcome(full(settings, tmp_path, DAY2), DAY2)


def edited_contracts(tmp_path: Path) -> Path:
    """The repository's contracts with `trial` no longer a valid plan."""
    folder = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, folder)
    people = folder / "people.odcs.yaml"
    text = people.read_text()
    assert "[free, trial, pro, enterprise]" in text
    people.write_text(text.replace("[free, trial, pro, enterprise]", "[free, pro, enterprise]"))
    return folder


def test_a_changed_contract_validates_every_row_again(settings, tmp_path):
    land(settings, "people", "people.csv", snapshot(BASE))
    ingest(settings, DAY)
    land(settings, "people", "people.csv", snapshot(BASE), DAY2)
    edited = settings.model_copy(update={"contracts": str(edited_contracts(tmp_path))})
    report = ingest(edited, DAY2).tables["people"]
    assert (report.rows_validated, report.validated_against) == (40, None)
    assert report.broken_rules == {"plan:validValues": 10}  # unchanged rows, refused now
    assert outcome(edited, DAY2) == outcome(full(edited, tmp_path, DAY2), DAY2)
    # and back: day 2's rows passed the edited contract, not the original one
    land(settings, "people", "people.csv", snapshot(BASE), DAY3)
    back = ingest(settings, DAY3).tables["people"]
    assert (back.rows_validated, back.validated_against) == (40, None)
    assert back.rows_written == 40


def test_a_killed_ingest_leaves_no_fingerprints_a_later_one_uses(settings, tmp_path, monkeypatch):
    import transforms.ingest.step as step

    land(settings, "people", "people.csv", snapshot(BASE))
    ingest(settings, DAY)
    changed_day(settings)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a SIGKILL before the manifest would leave it

    with monkeypatch.context() as patch:
        patch.setattr(step, "publish_record", killed)
        patch.setattr(Root, "delete_folder", lambda self, folder: None)
        with pytest.raises(KeyboardInterrupt):
            ingest(settings, DAY2)
    left = [k for k in lake_files(settings) if k.endswith(".fingerprints.parquet")]
    assert len(left) == 2  # day 1's and the killed attempt's, which no manifest lists
    assert read_ingest_manifest(Root(settings.lake), DAY2) is None

    # day 3 compares with the last snapshot an ingest published: day 1's
    rows = [*BASE[:-1], BASE[-1].replace(",30,", ",200,")]
    land(settings, "people", "people.csv", snapshot(rows), DAY3)
    report = ingest(settings, DAY3).tables["people"]
    assert (report.rows_validated, report.validated_against) == (1, DAY.isoformat())
    assert outcome(settings, DAY3) == outcome(full(settings, tmp_path, DAY3), DAY3)

    # the rerun of day 2 gives what an uninterrupted ingest gives, and removes the killed files
    ingest(settings, DAY2)
    assert outcome(settings, DAY2) == outcome(full(settings, tmp_path, DAY2, "full2"), DAY2)
    manifest = read_ingest_manifest(Root(settings.lake), DAY2)
    (kept,) = [k for k in lake_files(settings) if "ingest_date=2026-03-31/" in k and "finger" in k]
    assert manifest.outputs["fingerprints/people"] == [kept]


def test_a_nightly_ingest_without_changed_rows_or_events_does_not_import_great_expectations(
    settings,
):
    land(settings, "people", "people.csv", snapshot(BASE))
    event = "e1,p001,login,2026-03-30T01:00:00Z,,,\n"
    land(settings, "events", "events.csv", EVENTS_HEADER + event)
    ingest(settings, DAY)
    land(settings, "people", "people.csv", snapshot(BASE), DAY2)
    program = (
        "import sys\n"
        "from datetime import date\n"
        "from transforms.config import load_settings\n"
        "from transforms.ingest.step import ingest\n"
        f"settings = load_settings(None, landing={settings.landing!r}, lake={settings.lake!r},"
        f" contracts={settings.contracts!r})\n"
        f"report = ingest(settings, date.fromisoformat({DAY2.isoformat()!r}))\n"
        "assert report.tables['people'].rows_validated == 0, report\n"
        "print('great_expectations' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
    assert (
        pl.read_parquet(
            Path(settings.lake)
            / read_ingest_manifest(Root(settings.lake), DAY2).outputs["people"][0]
        ).height
        == 40
    )


HARNESS = REPO / "tests" / "support" / "crash_harness.py"


def _ingest_killed_at(config: Path, day, kill_at: int, log: Path) -> int:
    """`segments ingest --date day` in its own process, SIGKILLed before its `kill_at`-th
    write (0: never); its return code."""
    command = [sys.executable, str(HARNESS), "--kill-at", str(kill_at)]
    command += ["--count-file", str(config.parent / "count"), "--log-file", str(log), "--"]
    command += ["ingest", "--date", day.isoformat(), "--config", str(config)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True).returncode


def _workspace(folder: Path) -> tuple[Path, object]:
    """Landing files of three dates (day 2 with changed, new, bad and duplicated rows; day 3
    with one more change) and day 1 ingested; (segments.yaml, its settings)."""
    from transforms.config import load_settings

    folder.mkdir()
    config = folder / "segments.yaml"
    paths = {name: str(folder / name) for name in ("landing", "lake", "inbox")}
    paths["contracts"] = str(CONTRACTS)
    config.write_text("".join(f"{key}: {value}\n" for key, value in paths.items()))
    settings = load_settings(config)
    land(settings, "people", "people.csv", snapshot([*BASE, STILL_BAD]))
    changed_day(settings)
    land(settings, "people", "people.csv", snapshot([*BASE[:-1], person_row("p777")]), DAY3)
    ingest(settings, DAY)
    return config, settings


def test_an_ingest_killed_while_it_publishes_and_its_rerun_give_what_one_ingest_gives(tmp_path):
    """Day 2's ingest SIGKILLed before its fingerprints, before its manifest, and before its
    first clean-up, then day 3 ingested (reading the fingerprints of whichever snapshot was
    published last), then day 2 and day 3 again: the same rows kept and refused as without
    the kill, and each day's are those of a validation of every row."""
    config, reference = _workspace(tmp_path / "reference")
    log = tmp_path / "reference.log"
    assert _ingest_killed_at(config, DAY2, 0, log) == 0
    assert _ingest_killed_at(config, DAY3, 0, log) == 0
    expected = {day: outcome(reference, day) for day in (DAY2, DAY3)}
    calls = log.read_text().splitlines()
    day2 = calls[: next(i for i, c in enumerate(calls) if "manifest.json" in c) + 2]
    points = {
        "fingerprints": next(i for i, c in enumerate(day2, 1) if "fingerprints.parquet" in c),
        "manifest": next(i for i, c in enumerate(day2, 1) if "put_if_absent" in c),
        "clean-up": next(i for i, c in enumerate(day2, 1) if " delete" in c),
    }
    for name, point in points.items():
        config, settings = _workspace(tmp_path / name)
        assert _ingest_killed_at(config, DAY2, point, tmp_path / f"{name}.log") == -9, name
        for day in (DAY3, DAY2, DAY3):
            assert _ingest_killed_at(config, day, 0, tmp_path / f"{name}.log") == 0, name
        for day in (DAY2, DAY3):
            assert outcome(settings, day) == expected[day], (name, day)
    for day in (DAY2, DAY3):
        assert expected[day] == outcome(full(reference, tmp_path, day, f"full-{day}"), day)
