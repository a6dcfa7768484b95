"""The spark engine on a real Spark standalone cluster (one master, two one-core workers on the
loopback interface; tests/support/spark_cluster.py): the runs commit what Polars commits, run
by `segments run --spark-master spark://...` or by a driver process that keeps its session,
and a worker lost in the middle of a run costs at most a rerun.

Executors read the lake as the driver does: a local folder every process of the machine sees.
`pytest -m spark_cluster` runs these alone.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.engines.test_sql_engines import committed
from tests.support import spark_cluster as cluster_support
from tests.support.spark_cluster import CLUSTER_CONF, LOOPBACK_ENV, ClusterDriver, SparkCluster
from tests.support.workspace import (
    EVENTS_HEADER,
    PEOPLE_HEADER,
    land,
    person_row,
    with_definitions,
    workspace_settings,
)
from transforms.cli.demo import FIRST_DAY, SECOND_DAY, write_demo_workspace
from transforms.config import Settings
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest
from transforms.storage.roots import Root

pytestmark = pytest.mark.spark_cluster
SEGMENTS = Path(sys.executable).with_name("segments")
spark_cluster = cluster_support.spark_cluster  # the fixture: one cluster for the session


@pytest.fixture(scope="module")
def driver(spark_cluster: SparkCluster) -> Iterator[ClusterDriver]:
    cluster_driver = ClusterDriver()
    yield cluster_driver
    cluster_driver.close()


def on_cluster(settings: Settings, cluster: SparkCluster) -> Settings:
    return settings.model_copy(
        update={"spark_master": cluster.master_url, "spark_conf": CLUSTER_CONF}
    )


def run_with_the_cli(settings: Settings, day: date, folder: Path) -> None:
    """`segments run --engine spark --spark-master <settings'>` in a process of its own."""
    config = folder / "segments.yaml"
    roots = ("landing", "lake", "inbox", "definitions", "contracts")
    config.write_text(
        yaml.safe_dump({**{r: getattr(settings, r) for r in roots}, "spark_conf": CLUSTER_CONF})
    )
    done = subprocess.run(
        [str(SEGMENTS), "run", "--config", str(config), "--date", day.isoformat()]
        + ["--engine", "spark", "--spark-master", settings.spark_master],
        env={**os.environ, **LOOPBACK_ENV},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def results(settings: Settings, days: list[date]) -> list:
    """Each run's committed membership and changes, and its manifest's counts."""
    root = Root(settings.lake)
    found = []
    for day in days:
        manifest = read_manifest(root, read_catalog(root), day)
        found += [committed(settings, day, t) for t in ("membership", "changes")]
        found.append((manifest.people, manifest.rows, manifest.segments))
    return found


def engines_of(settings: Settings, days: list[date]) -> set[str]:
    root = Root(settings.lake)
    return {read_manifest(root, read_catalog(root), day).engine for day in days}


def assert_same(ours: list, theirs: list) -> None:
    for polars_result, spark_result in zip(ours, theirs, strict=True):
        if isinstance(polars_result, pl.DataFrame):
            assert polars_result.height > 0
            assert polars_result.equals(spark_result)
        else:
            assert polars_result == spark_result


def applications(cluster: SparkCluster) -> set[str]:
    """The ids of the applications the master knows, running or finished."""
    state = cluster.state()
    return {a["id"] for a in state["activeapps"] + state["completedapps"]}


# --- the demo workspace ---------------------------------------------------------------------
def demo_runs(folder: Path, first: Callable, second: Callable) -> Settings:
    """The demo workspace's two days, run by `first` and `second` (settings, day), the later
    uploads dropped in between."""
    settings = workspace_settings(folder)
    files = write_demo_workspace(Root(settings.landing), Root(settings.inbox), 2_000)
    first(settings, FIRST_DAY)
    for key, data in files.later_uploads.items():
        Root(settings.inbox).write_bytes(key, data)
    second(settings, SECOND_DAY)
    return settings


def on_polars(settings: Settings, day: date) -> None:
    run(settings, day, engine="polars")


@pytest.fixture(scope="module")
def polars_demo(tmp_path_factory: pytest.TempPathFactory) -> list:
    folder = tmp_path_factory.mktemp("polars-demo")
    return results(demo_runs(folder, on_polars, on_polars), [FIRST_DAY, SECOND_DAY])


def test_the_demo_days_on_the_cluster_commit_what_polars_commits(
    spark_cluster, driver, polars_demo, tmp_path
):
    """The first day through `segments run --spark-master spark://...`, the second through the
    driver process; membership, changes and the manifests' counts are Polars'."""
    driver.release()  # the CLI's application gets the cluster's cores
    known = applications(spark_cluster)

    def through_the_cli(settings: Settings, day: date) -> None:
        run_with_the_cli(on_cluster(settings, spark_cluster), day, tmp_path)

    settings = demo_runs(
        tmp_path / "spark",
        through_the_cli,
        lambda settings, day: driver.run(on_cluster(settings, spark_cluster), day),
    )
    state = spark_cluster.state()
    by_the_cli = [a["name"] for a in state["completedapps"] if a["id"] not in known]
    assert by_the_cli == ["segments"]  # the `segments run` process ran on the cluster
    assert engines_of(settings, [FIRST_DAY, SECOND_DAY]) == {"spark"}
    assert_same(polars_demo, results(settings, [FIRST_DAY, SECOND_DAY]))


# --- day after day, with manual uploads -----------------------------------------------------
START = date(2026, 3, 20)
DAYS = [START + timedelta(days=i) for i in range(3)]
PEOPLE = [f"p{i:02d}" for i in range(40)]
DEFINITIONS = {
    "vip": "name: VIP\ntype: manual\n",
    "pro": "name: Pro\ntype: data_driven\nwhere: plan = 'pro'\n",
    "buyer": "name: Buyer\ntype: data_driven\n"
    "where: event_count('purchase', within => '3 days') >= 1\n",
    "big_spender": "name: Big spender\ntype: data_driven\n"
    "where: event_sum('purchase', amount) > 20\n",
    "vip_buyer": "name: VIP buyer\ntype: data_driven\n"
    "where: in_segment('vip') AND in_segment('buyer')\n",
    "loyal_pro": "name: Loyal pro\ntype: data_driven\nwhere: days_in_segment('pro') >= 1\n",
}
UPLOADS = {
    DAYS[0]: {"vip/first.csv": "person_id\np01\np02\np03\nnobody\n"},
    DAYS[1]: {"vip/more.csv": "person_id\np04\np05\n", "vip/remove/out.csv": "person_id\np02\n"},
    DAYS[2]: {"vip/replace/sync.csv": "person_id\np03\np05\np06\n"},
}


def day_after_day_workspace(folder: Path) -> Settings:
    """Three days of people (plans change, people leave and come back) and events, with the
    definitions above; the same files on every call."""
    settings = with_definitions(workspace_settings(folder), folder / "definitions", DEFINITIONS)
    rng = random.Random(20260320)
    for day in DAYS:
        people = [p for p in PEOPLE if rng.random() > 0.1]
        rows = "".join(person_row(p, rng.choice(["free", "pro"])) for p in people)
        land(settings, "people", "p.csv", PEOPLE_HEADER + rows, day)
        events = "".join(
            f"{day}-{i},{rng.choice(PEOPLE)},{rng.choice(['login', 'purchase'])},"
            f"{day}T{rng.randint(0, 23):02d}:00:00Z,{rng.randint(1, 9)},USD,\n"
            for i in range(80)
        )
        land(settings, "events", "e.csv", EVENTS_HEADER + events, day)
    return settings


def day_after_day(settings: Settings, run_day: Callable[[Settings, date], None]) -> None:
    for day in DAYS:
        for key, text in UPLOADS[day].items():
            Root(settings.inbox).write_bytes(key, text.encode())
        run_day(settings, day)


def test_days_with_manual_uploads_run_one_after_the_other_on_the_cluster(
    spark_cluster, driver, tmp_path
):
    ours = day_after_day_workspace(tmp_path / "polars")
    day_after_day(ours, on_polars)
    theirs = on_cluster(day_after_day_workspace(tmp_path / "spark"), spark_cluster)
    day_after_day(theirs, driver.run)
    assert engines_of(theirs, DAYS) == {"spark"}
    assert_same(results(ours, DAYS), results(theirs, DAYS))
    vip = committed(theirs, DAYS[-1], "membership").filter(segment_id="vip")
    assert sorted(vip["person_id"]) == ["p03", "p05", "p06"]


# --- a worker lost in the middle of a run ---------------------------------------------------
def executor_logs(cluster: SparkCluster, index: int) -> dict[Path, int]:
    """The size of each executor log (stderr) of worker `index`."""
    return {p: p.stat().st_size for p in cluster.work_dir(index).glob("*/*/stderr")}


def worker_running_a_task(cluster: SparkCluster, before: list[dict[Path, int]]) -> int | None:
    """The worker whose executor logged a task start since `before` (sizes), if any."""
    for index, sizes in enumerate(before):
        for log in executor_logs(cluster, index):
            with open(log, "rb") as handle:
                handle.seek(sizes.get(log, 0))
                if b"Running task" in handle.read():
                    return index
    return None


def test_a_worker_killed_during_a_run_costs_at_most_a_rerun(
    spark_cluster, driver, polars_demo, tmp_path
):
    """SIGKILL of a worker and its executor while the executor runs a task of the run: Spark
    reruns its tasks on the other executor and the run commits, or the run fails and its
    rerun commits; either way, what Polars commits."""
    settings = on_cluster(workspace_settings(tmp_path), spark_cluster)
    write_demo_workspace(Root(settings.landing), Root(settings.inbox), 2_000)
    before = [executor_logs(spark_cluster, i) for i in range(len(spark_cluster.workers))]
    running = driver.submit(settings, FIRST_DAY)
    killed = None
    try:
        while killed is None and not running.done():
            killed = worker_running_a_task(spark_cluster, before)
            time.sleep(0.1)
        assert killed is not None, "the run ended before an executor started a task"
        spark_cluster.kill_worker(killed)
        master, error = running.result()
        assert master == spark_cluster.master_url
        if error is not None:
            driver.run(settings, FIRST_DAY)
    finally:
        if killed is not None:
            spark_cluster.start_worker(killed)
    assert engines_of(settings, [FIRST_DAY]) == {"spark"}
    assert_same(polars_demo[:3], results(settings, [FIRST_DAY]))
