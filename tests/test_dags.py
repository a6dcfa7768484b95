"""The Airflow DAGs: parsed by a DagBag, run by `dag.test()`, and run by a real scheduler.

Airflow is configured by environment variables when it is imported, so everything Airflow does
here runs in subprocesses (tests/support/airflow_probe.py, the `airflow` command) with a temporary
AIRFLOW_HOME, a SQLite metadata database and loopback ports; the workspace's settings reach
the tasks through SEGMENTS_CONFIG.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from pyiceberg.catalog import load_catalog

from tests.support.s3_server import free_ports
from tests.support.workspace import REPO
from transforms.cli.demo import FIRST_DAY, write_demo_workspace
from transforms.config import load_settings
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.records import RunManifest
from transforms.storage.roots import Root

pytestmark = pytest.mark.airflow
BIN = Path(sys.executable).parent
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(3)]
HEAVY = ("polars", "great_expectations", "duckdb", "pyspark", "transforms")
LIGHT = ("transforms", "transforms.errors", "transforms.engines", "transforms.engines.registry")
"""What parsing may import of the package: the engine names, for the `engine` param."""


def due(day: date) -> str:
    """The logical date of the nightly run that processes `day` (02:00 UTC the day after)."""
    return f"{day + timedelta(days=1)}T02:00:00+00:00"


def migrated_airflow(home: Path) -> dict[str, str]:
    """Environment of a fresh Airflow in `home`: SQLite database, loopback ports, migrated."""
    api_port, log_port = free_ports(2)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # several Airflow processes write the one SQLite file: wait for its lock, not fail
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db?timeout=60",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": "segments-tests-only",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow(env, "db", "migrate")
    return env


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One Airflow for the `dag.test()` tests (each runs its own dates on its own lake)."""
    return migrated_airflow(tmp_path_factory.mktemp("airflow"))


def airflow(env: dict[str, str], *args: str) -> str:
    for _ in range(3):
        done = subprocess.run(
            [str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=300
        )
        # SQLite fails at once, whatever the busy timeout, a write that would deadlock with
        # another process's (the scheduler's): the command wrote nothing, run it again
        if done.returncode == 0 or "database is locked" not in done.stderr:
            break
    assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stderr[-4000:]}"
    return done.stdout


def probe(env: dict[str, str], *args: str) -> tuple[object, str]:
    """(the probe's RESULT, everything it printed)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/support/airflow_probe.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the probe printed no result:\n{output[-6000:]}"
    return json.loads(lines[-1].removeprefix("RESULT ")), output


def workspace(folder: Path, definitions: Path = REPO / "segment_definitions") -> Path:
    """The demo workspace for DAYS (the demo lands all three), every upload already in the inbox;
    returns its config file."""
    landing, inbox = Root(str(folder / "landing")), Root(str(folder / "inbox"))
    files = write_demo_workspace(landing, inbox, people_count=1500)
    for key, data in files.later_uploads.items():
        inbox.write_bytes(key, data)
    config = folder / "segments.yaml"
    config.write_text(
        f"landing: {folder / 'landing'}\nlake: {folder / 'lake'}\ninbox: {folder / 'inbox'}\n"
        f"definitions: {definitions}\ncontracts: {REPO / 'data_contracts'}\n"
    )
    return config


def with_config(env: dict[str, str], config: Path) -> dict[str, str]:
    return {**env, "SEGMENTS_CONFIG": str(config)}


def committed(config: Path) -> dict[str, tuple[dict, pl.DataFrame, pl.DataFrame]]:
    """Per committed run date: (manifest, membership, changes), rows sorted."""
    root = Root(load_settings(config).lake)
    catalog = read_catalog(root)
    result = {}
    for day in catalog.dates:
        manifest = read_manifest(root, catalog, day)
        tables = [read_table(root, manifest, t).sort(pl.all()) for t in ("membership", "changes")]
        result[day.isoformat()] = (manifest, *tables)
    return result


def comparable(manifest: RunManifest) -> dict:
    """What must not depend on who ran it: no attempt names, file names or timings."""
    return {
        "previous_run_date": manifest.previous_run_date,
        "definitions_hash": manifest.definitions_hash,
        "people": manifest.people,
        "rows": manifest.rows,
        "segments": manifest.segments,
        "applied": [(a.file, a.applied) for a in manifest.manual.applied],
        "rejected": manifest.manual.rejected,
    }


def test_dagbag_parses_both_dags_light_and_strict(airflow_home):
    result, _ = probe(airflow_home, "integrity")
    assert result["import_errors"] == {}
    assert set(result["dags"]) == {"segments_refresh", "segments_inbox"}
    for dag in result["dags"].values():
        assert dag["tags"] == ["segments"]
        assert dag["max_active_runs"] == 1 and dag["catchup"] is False
        assert dag["schedule"] == "CronTriggerTimetable"
        assert all(retries >= 2 for retries in dag["retries"].values())
    refresh = result["dags"]["segments_refresh"]
    assert refresh["tasks"][:6] == ["ingest", "validate", "manual", "materialize", "diff", "commit"]
    assert set(refresh["tasks"][6:]) == {"publish", "report"}
    assert refresh["upstream"]["publish"] == refresh["upstream"]["report"] == ["commit"]
    assert refresh["outlets"]["publish"] == ["segments.changes", "segments.membership"]
    assert refresh["outlets"]["commit"] == []
    # parsing imports nothing heavy: the tasks import the pipeline when they run
    heavy = [m for m in result["new_modules"] if m.split(".")[0] in HEAVY and m not in LIGHT]
    assert heavy == []
    print("parse seconds per DAG file:", result["parse_seconds"])


def test_three_nightly_runs_give_what_the_cli_gives(airflow_home, tmp_path):
    through_airflow = workspace(tmp_path / "airflow")
    result, output = probe(
        with_config(airflow_home, through_airflow),
        "test",
        "segments_refresh",
        *(due(day) for day in DAYS),
    )
    assert [r["state"] for r in result] == ["success"] * 3, output[-6000:]
    assert all(t["try_number"] == 1 for r in result for t in r["tasks"].values())

    through_cli = workspace(tmp_path / "cli")
    for day in DAYS:
        run(load_settings(through_cli), day)
    dag_runs, cli_runs = committed(through_airflow), committed(through_cli)
    assert list(dag_runs) == [d.isoformat() for d in DAYS] == list(cli_runs)
    for day in dag_runs:
        (dag_manifest, *dag_tables), (cli_manifest, *cli_tables) = dag_runs[day], cli_runs[day]
        assert comparable(dag_manifest) == comparable(cli_manifest)
        for ours, theirs in zip(dag_tables, cli_tables, strict=True):
            assert ours.equals(theirs)
    # the publish task put every run into the Iceberg tables, tagged
    lake = load_settings(through_airflow).lake
    catalog = load_catalog(
        "segments",
        type="sql",
        uri=f"sqlite:///{lake}/catalog.db",
        warehouse=f"file://{lake}/iceberg",
    )
    for index, name in enumerate(("membership", "changes")):
        table = catalog.load_table(f"segments.{name}")
        for day, (_, *tables) in dag_runs.items():
            tagged = table.snapshot_by_name(f"run-{day}").snapshot_id
            rows = pl.from_arrow(table.scan(f"run_date = '{day}'", snapshot_id=tagged).to_arrow())
            assert rows.drop("run_date").sort(pl.all()).equals(tables[index])
    assert not (tmp_path / "airflow/lake/_staging").exists() or not any(
        (tmp_path / "airflow/lake/_staging").rglob("*.json")
    )


def test_terminal_errors_fail_without_retry_and_transient_ones_retry(airflow_home):
    result, _ = probe(airflow_home, "boundary")
    assert result == {
        "terminal": "AirflowFailException",
        "transient": "StorageError",
        "lost_race_elsewhere": "ConcurrentRunError",
        "lost_race_at_commit": "AirflowFailException",
    }


BAD_DEFINITION = "name: Big spenders (typo)\ntype: data_driven\nwhere: lifetime_valu > 100\n"


def test_a_bad_definition_fails_the_first_task_once_and_keeps_the_committed_run(
    airflow_home, tmp_path
):
    definitions = tmp_path / "definitions"
    shutil.copytree(REPO / "segment_definitions", definitions)
    config = workspace(tmp_path / "ws", definitions)
    run(load_settings(config), DAYS[0])
    catalog = tmp_path / "ws/lake/runs/latest.json"
    before = catalog.read_bytes()
    (definitions / "big_spenders_typo.yaml").write_text(BAD_DEFINITION)

    (result,), output = probe(
        with_config(airflow_home, config), "test", "segments_refresh", due(DAYS[1])
    )
    tasks = result["tasks"]
    assert result["state"] == "failed"
    # the attempt checks its definitions before it pins them or writes anything
    assert tasks["ingest"] == {"state": "failed", "try_number": 1}  # no retry
    assert {tasks[t]["state"] for t in ("validate", "manual", "materialize", "commit")} == {
        "upstream_failed"
    }
    assert not any(p.is_file() for p in (tmp_path / "ws/lake/_staging").rglob("*"))
    assert "lifetime_valu" in output and "big_spenders_typo" in output
    assert catalog.read_bytes() == before


def test_inbox_dag_refuses_bad_uploads_now_and_dry_runs_the_rest(airflow_home, tmp_path):
    config = workspace(tmp_path / "ws")
    run(load_settings(config), DAYS[0])
    inbox = tmp_path / "ws/inbox"
    (inbox / "vip_customers/late.csv").write_text("email\nnobody@example.net\n")
    (inbox / "big_spenders").mkdir()
    (inbox / "big_spenders/hand-picked.csv").write_text("person_id\np1\n")

    (result,), output = probe(
        with_config(airflow_home, config), "test", "segments_inbox", "2026-04-01T10:05:00+00:00"
    )
    assert result["state"] == "success", output[-6000:]
    # filed for the run that meets them next: the day after the latest commit, here also the
    # last complete day (not the date of the inbox DAG's own run)
    rejected = inbox / "_rejected/2026-03-31"
    assert sorted(p.name for p in rejected.iterdir()) == [
        "big_spenders__hand-picked.csv",
        "big_spenders__hand-picked.csv.error.txt",
    ]
    assert "data-driven" in (rejected / "big_spenders__hand-picked.csv.error.txt").read_text()
    assert (inbox / "vip_customers/late.csv").exists()  # left for the next refresh
    assert "vip_customers/late.csv: 1 rows, 0 match people, 1 unknown" in output
    committed = run(load_settings(config), DAYS[1])  # and that run reports the refusal
    assert [r.file for r in committed.manual.rejected] == ["big_spenders/hand-picked.csv"]


@pytest.fixture
def scheduler(tmp_path) -> Iterator[dict[str, str]]:
    """A real Airflow (api-server, scheduler, dag-processor) on loopback with a database of its
    own (the `dag.test()` runs of the same dates would make a backfill skip them)."""
    home = tmp_path / "airflow"
    home.mkdir()
    env = with_config(migrated_airflow(home), workspace(tmp_path / "ws"))
    airflow(env, "dags", "reserialize")
    logs = tmp_path / "airflow-logs"
    logs.mkdir()
    commands = {
        "api-server": ["api-server", "-H", "127.0.0.1", "-p", env["AIRFLOW__API__PORT"], "-w", "1"],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
    }
    processes = [
        subprocess.Popen(
            [str(BIN / "airflow"), *args],
            env=env,
            stdout=(logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name, args in commands.items()
    ]
    try:
        yield env
    finally:
        for process in processes:
            os.killpg(process.pid, 15)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)


def list_runs(env: dict[str, str]) -> list[dict]:
    out = airflow(env, "dags", "list-runs", "segments_refresh", "-o", "json")
    return json.loads(out.strip().splitlines()[-1])


def test_a_real_scheduler_runs_a_backfill_in_order(scheduler, tmp_path):
    airflow(
        scheduler,
        "backfill", "create", "--dag-id", "segments_refresh",
        "--from-date", due(DAYS[0]), "--to-date", due(DAYS[-1]), "--max-active-runs", "1",
    )  # fmt: skip
    # unpaused, the DAG also gets its run for the latest cron tick (of today: there is no
    # landing for it, so it fails at ingest); only the backfill's runs are checked
    airflow(scheduler, "dags", "unpause", "segments_refresh")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        backfill = [r for r in list_runs(scheduler) if r["run_id"].startswith("backfill__")]
        if len(backfill) == 3 and all(r["state"] in ("success", "failed") for r in backfill):
            break
        time.sleep(5)
    backfill.sort(key=lambda r: r["logical_date"])
    logs = "\n".join(p.read_text()[-3000:] for p in (tmp_path / "airflow-logs").iterdir())
    assert [r["state"] for r in backfill] == ["success"] * 3, f"{backfill}\n{logs}"
    ends = [r["end_date"] for r in backfill]
    starts = [r["start_date"] for r in backfill]
    assert all(starts[i + 1] >= ends[i] for i in range(2))  # one after the other, in order
    runs = committed(tmp_path / "ws/segments.yaml")
    assert list(runs) == [d.isoformat() for d in DAYS]
    assert [runs[d][0].previous_run_date for d in runs] == [None, *list(runs)[:2]]
