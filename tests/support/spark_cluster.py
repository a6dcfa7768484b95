"""A Spark standalone cluster on the loopback interface, for the spark engine's cluster tests.

The `spark_cluster` fixture (one cluster for the test session; a test module imports it to use
it) skips when no Java runtime can be found. `standalone_cluster` starts, from the installed
pyspark distribution (`bin/spark-class`), one master and two workers of one core each, every
process in its own process group with `SPARK_LOCAL_IP=127.0.0.1`, and waits until both workers
have registered with the master (its JSON at http://127.0.0.1:<webui>/json/). It kills every
process group on the way out, whatever happened. A worker can be killed (SIGKILL of its group:
the worker and its executor) and started again.

`ClusterDriver` is the driver of the pipeline's runs on the cluster: a Python process of its
own (the test process may hold a local-mode session already, and one process has one
SparkContext), which keeps its session, and so its executors, from run to run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyspark
import pytest

from tests.support.workspace import SPARK_TEST_CONF
from transforms.config import Settings

SPARK_HOME = Path(pyspark.__file__).parent
STARTUP_SECONDS = 60
LOG_TAIL_LINES = 30
# every process of the cluster, the driver's included, on the loopback interface only
LOOPBACK_ENV = {"SPARK_LOCAL_IP": "127.0.0.1"}
CLUSTER_CONF = {
    **SPARK_TEST_CONF,
    "spark.driver.memory": "512m",
    "spark.executor.memory": "512m",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}
"""The Spark settings of a driver on the test cluster: small, and reachable on the loopback
interface (the engine binds the loopback interface for local masters only)."""


class ClusterStartError(RuntimeError):
    """The cluster did not come up in time; the message ends with its processes' log tails."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Daemon:
    """One master or worker process: how to start it again, and where it logs."""

    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen | None = None

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- {self.log} ---\n" + "\n".join(lines[-LOG_TAIL_LINES:])


class SparkCluster:
    """One master and two one-core workers of `memory` each of a Spark standalone cluster
    under `folder`."""

    def __init__(self, folder: Path, workers: int = 2, memory: str = "1g") -> None:
        self.folder = folder
        self.port, self.webui = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **LOOPBACK_ENV,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_CONF_DIR": str(self._folder("conf")),  # none of the machine's settings
            "SPARK_LOCAL_DIRS": str(self._folder("local")),
            "SPARK_DAEMON_MEMORY": "256m",
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        }
        self.master = Daemon(
            "master",
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
            + ["--port", str(self.port), "--webui-port", str(self.webui)],
            folder / "master.log",
        )
        self.workers = [
            Daemon(
                f"worker-{i}",
                ["org.apache.spark.deploy.worker.Worker", self.master_url, "--host", "127.0.0.1"]
                + ["--webui-port", str(free_port())]
                + ["--cores", "1", "--memory", memory, "--work-dir", str(self.work_dir(i))],
                folder / f"worker-{i}.log",
            )
            for i in range(workers)
        ]

    def _folder(self, name: str) -> Path:
        path = self.folder / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def work_dir(self, index: int) -> Path:
        """Where worker `index` runs its executors (each one's stdout and stderr inside)."""
        return self._folder(f"worker-{index}-work")

    def _start(self, daemon: Daemon) -> None:
        with open(daemon.log, "ab") as log:
            daemon.process = subprocess.Popen(
                [str(SPARK_HOME / "bin" / "spark-class"), *daemon.args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, its executors included
            )

    def state(self) -> dict[str, Any] | None:
        """The master's JSON (workers, applications), or None while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.webui}/json/", timeout=2) as r:
                return json.load(r)
        except OSError:
            return None

    def alive_workers(self) -> int:
        """How many workers the master counts as alive."""
        state = self.state() or {"workers": []}
        return sum(w["state"] == "ALIVE" for w in state["workers"])

    def _wait(self, what: str, ready, daemons: list[Daemon]) -> None:
        """Wait until `ready()`; fail with the logs' tails if a process exits or time runs out."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while not ready():
            exited = [d for d in daemons if d.process is None or d.process.poll() is not None]
            if exited or time.monotonic() > deadline:
                why = f"{exited[0].name} exited" if exited else f"not within {STARTUP_SECONDS} s"
                raise ClusterStartError(
                    f"the Spark cluster at {self.master_url}: {what}: {why}\n"
                    + "\n".join(d.tail() for d in [self.master, *self.workers])
                )
            time.sleep(0.2)

    def start(self) -> None:
        self._start(self.master)
        self._wait("the master answers", lambda: self.state() is not None, [self.master])
        for index in range(len(self.workers)):
            self.start_worker(index, wait=False)
        self.wait_for_workers()

    def start_worker(self, index: int, wait: bool = True) -> None:
        self._start(self.workers[index])
        if wait:
            self.wait_for_workers()

    def wait_for_workers(self) -> None:
        """Until every worker is registered with the master as ALIVE."""
        self._wait(
            f"{len(self.workers)} workers registered",
            lambda: self.alive_workers() == len(self.workers),
            [self.master, *self.workers],
        )

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker `index` and its executor (its process group), as a lost machine;
        returns once the master no longer counts it (it drops a worker whose connection
        closes), so that `wait_for_workers` after a restart waits for the new one."""
        process = self.workers[index].process
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self._wait(
            f"the master forgets worker-{index}",
            lambda: self.alive_workers() < len(self.workers),
            [self.master],
        )

    def stop(self) -> None:
        """Stop every process group still running: SIGTERM, then SIGKILL after 10 s."""
        running = [
            d.process
            for d in [*self.workers, self.master]
            if d.process is not None and d.process.poll() is None
        ]
        for process in running:
            os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def standalone_cluster(folder: Path, worker_memory: str = "1g") -> Iterator[SparkCluster]:
    """A started cluster under `folder`, each worker with `worker_memory`; every process is
    killed on the way out."""
    cluster = SparkCluster(folder, memory=worker_memory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """One standalone cluster for the test session; skipped only when no Java runtime can be
    found."""
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.skip("the Spark cluster tests need Java 17: no `java` on the PATH and no JAVA_HOME")
    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster")) as cluster:
        yield cluster


# --- the driver process --------------------------------------------------------------------
def _driver_environment() -> None:
    os.environ.update(LOOPBACK_ENV)


def _run_on_cluster(settings: Settings, day: date) -> tuple[str, str | None]:
    """In the driver process: run `day` on the spark engine. The master of the session it ran
    on, and the error that stopped the run (None: it committed)."""
    from transforms.engines.spark import spark_session
    from transforms.runs.steps import run

    try:
        run(settings, day, engine="spark")
        error = None
    except Exception as exc:  # reported as text: not every error survives pickling
        error = f"{type(exc).__name__}: {exc}"
    return spark_session(settings).sparkContext.master, error


def _stop_session() -> None:
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


class ClusterDriver:
    """A Python process (spawned: no state of the test process) that runs dates on the spark
    engine, keeping its session, and so its application's executors, between runs. The
    application takes every core of the cluster: `release` stops it before another driver
    (a `segments run` process) runs on the cluster."""

    def __init__(self) -> None:
        self.pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_driver_environment,
        )

    def submit(self, settings: Settings, day: date) -> Future:
        """Start the run of `day`; its future gives (the session's master, the run's error)."""
        return self.pool.submit(_run_on_cluster, settings, day)

    def run(self, settings: Settings, day: date) -> None:
        """Run `day` on `settings.spark_master`, which the session must be on; it must commit."""
        master, error = self.submit(settings, day).result()
        assert master == settings.spark_master
        assert error is None, error

    def release(self) -> None:
        """Stop the session (the application), so another one gets the cluster's cores."""
        self.pool.submit(_stop_session).result()

    def close(self) -> None:
        self.release()
        self.pool.shutdown()
