"""The nightly run: 56 segments over 48 event features, against hand-written DuckDB and the floor.

    python -m benchmarks.materialize_bench --scale S     # 1M people, 10M events
    python -m benchmarks.materialize_bench --scale L     # 10M people, 100M events

Writes the workspace of `benchmarks.workspace` once (landing Parquet: 90 days of history up to
day 1, day 2; the inbox, 56 definitions) and runs day 1 once (ingest of the history, first
run). Then, --repeat times each, interleaved, in separate processes (so peak memory is each
one's own), from the same state of the lake (the one day 1 left):
- segments: the nightly run of day 2 (`transforms.runs.steps`, one step after the other: ingest and
  validate one day of events and a new snapshot, manual uploads, materialize, diff, commit),
  each step's wall time and peak memory;
- segments-full: the same run with a full recompute (`segments run --full`): the features from
  the events instead of folded into day 1's feature state;
- segments-duckdb: the same run with `engine="duckdb"`;
- segments-spark (only with --spark): the same run with `engine="spark"` (Spark in local mode
  on this machine's cores; its JVM's peak memory is added to each step's);
- segments-spark-cluster (only with --spark-cluster): the same run with `engine="spark"` on a
  Spark standalone cluster this benchmark starts on the loopback interface (one master, two
  workers of one core and `--worker-memory` each; tests/support/spark_cluster.py): each step's
  peak is the driver's, this process's and its Spark JVM's (the executors are the workers');
- duckdb (the peer): the same membership and diff written by hand as DuckDB SQL on the lake's
  Parquet files (`count(*) FILTER (WHERE ...)` per feature in one pass, one column per
  segment, EXCEPT both ways against the previous membership);
- preview: `segments preview <segment> --date <day 2>` (the CLI, in its own process) on the
  lake day 2's run left: the command's time and its process's, start-up included;
- floor: one scan of the event columns the features need and one group-by person (Polars).
Checks that every segments run and the peer produce exactly the same membership and changes,
prints medians, minimum, maximum and the ratios, and writes
benchmarks/results/materialize-<scale>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from benchmarks.ingest_bench import HERE, REPO, save_result
from benchmarks.workspace import (
    FEATURES,
    HAND_WRITTEN,
    LANGUAGE_2,
    SEQUENCES,
    Scale,
    hand_sql,
    history_landings,
    segment_templates,
    tenure_segments,
    write_definitions,
    write_inbox,
    write_landing,
)
from transforms.cli.demo import FIRST_DAY, SECOND_DAY
from transforms.language.semantics import as_of_instant

SCALES = {
    "XS": Scale(100_000, 1_000_000),
    "S": Scale(1_000_000, 10_000_000),
    "M": Scale(3_000_000, 30_000_000),
    "L": Scale(10_000_000, 100_000_000),
}
"""M (3x S) is for the cluster contender's driver memory against S's (`--spark-cluster`)."""
CONTENDERS = ("segments", "segments-full", "segments-duckdb", "preview", "duckdb", "floor")
OPTIONAL = ("segments-full", "segments-duckdb", "preview")
"""The contenders `--without` may leave out."""
ENGINES = {
    "segments": ("polars", False),
    "segments-full": ("polars", True),
    "segments-duckdb": ("duckdb", False),
    "segments-spark": ("spark", False),
    "segments-spark-cluster": ("spark", False),
}
"""The segments runs: (engine, full recompute)."""
PREVIEW_SEGMENT = "abandoned_checkout"
"""The segment `preview` previews by default: an event count and a two-step sequence."""
MANUAL = ("vip", "do_not_contact")
TABLES = ("membership", "changes")


SPARK_CONTENDERS = ("segments-spark", "segments-spark-cluster")
CLUSTER_DRIVER_CONF = {
    "spark.driver.memory": "1g",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "8",
}
"""The driver of the cluster contender: 1 GB of heap, whatever the scale (the executors do the
work), reachable on the loopback interface."""


def settings_of(data: Path, spark_master: str = "local[*]", executor_memory: str = "1g"):
    from transforms.config import load_settings

    on_cluster = not spark_master.startswith("local")
    return load_settings(
        None,
        spark_master=spark_master,
        spark_conf={**CLUSTER_DRIVER_CONF, "spark.executor.memory": executor_memory}
        if on_cluster
        else {"spark.driver.memory": "6g"},
        landing=str(data / "landing"),
        lake=str(data / "lake"),
        inbox=str(data / "inbox"),
        contracts=str(REPO / "data_contracts"),
        definitions=str(data / "definitions"),
    )


def _spark_jvm() -> str | None:
    """The process id of this process's Spark JVM, if it started one (a child process, whose
    peak its own does not count)."""
    pyspark = sys.modules.get("pyspark")
    gateway = pyspark.SparkContext._gateway if pyspark is not None else None
    return str(gateway.proc.pid) if gateway is not None else None


def _memory_mb(field: str, processes: tuple[str | None, ...]) -> float:
    """The sum of `field` (VmHWM: peak since the last `reset_peak`, VmRSS: now) of
    `processes` (ids, or "self"; None left out) from /proc, in MB."""
    total = 0.0
    for process in (p for p in processes if p is not None):
        for line in Path(f"/proc/{process}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1]) / 1024
    return total


def peak_mb() -> float:
    """This process's peak resident memory since the last `reset_peak`, plus its Spark JVM's
    if it runs one, in MB."""
    return _memory_mb("VmHWM", ("self", _spark_jvm()))


def reset_peak() -> None:
    for process in ("self", _spark_jvm()):
        if process is not None:
            Path(f"/proc/{process}/clear_refs").write_text("5")


def nightly_run(
    data: Path, engine: str, full: bool = False, settings: Any = None
) -> dict[str, Any]:
    """Day 2's run, step by step, then its publish to the Iceberg tables (as `segments run`
    does; with `full`, as `segments run --full` does): each step's seconds, peak memory, the
    memory resident as it started (this process's and its Spark JVM's) and its Spark JVM's
    peak. `settings`: `settings_of(data)` unless given."""
    from transforms.runs.attempt import begin
    from transforms.runs.iceberg import publish_runs
    from transforms.runs.steps import STEPS, warm_up

    settings = settings or settings_of(data)
    steps = {}
    warm_up(settings, SECOND_DAY, engine=engine)
    plan = begin(settings, SECOND_DAY, engine=engine, full=full)
    for step in (*STEPS, lambda settings, _: publish_runs(settings)):
        reset_peak()
        resident = _memory_mb("VmRSS", ("self", _spark_jvm()))
        started = time.perf_counter()
        step(settings, plan)
        name = step.__name__.removesuffix("_step") if step in STEPS else "publish"
        steps[name] = {
            "seconds": time.perf_counter() - started,
            "peak_mb": peak_mb(),
            "resident_before_mb": resident,  # what earlier steps left, inside the peak
            "spark_jvm_peak_mb": _memory_mb("VmHWM", (_spark_jvm(),)),
        }
    return steps


def preview(data: Path, segment: str) -> dict[str, Any]:
    """`segments preview <segment> --date <day 2>`, the command line in this process (imported
    and called as the `segments` script does): the command's seconds and peak memory, and the
    peak memory of this process before it (start-up and imports; the parent adds its time)."""
    from transforms.cli.app import app

    arguments = ["preview", segment, "--date", SECOND_DAY.isoformat(), "--sample", "0"]
    for flag in ("lake", "definitions", "contracts"):
        arguments += [f"--{flag}", str(getattr(settings_of(data), flag))]
    before = peak_mb()
    reset_peak()
    started = time.perf_counter()
    app(arguments, standalone_mode=False)
    return {
        "preview": {"seconds": time.perf_counter() - started, "peak_mb": peak_mb()},
        "start-up": {"seconds": 0.0, "peak_mb": before},
    }


def _glob(data: Path, table: str, column: str, day: str = "*") -> str:
    return str(data / "lake" / table / f"{column}={day}" / "*.parquet")


def peer_query(data: Path) -> str:
    """Membership and changes of day 2, written by hand as a data engineer would."""
    as_of = as_of_instant(SECOND_DAY).strftime("%Y-%m-%d %H:%M:%S+00")
    longest = max(f.days for f in FEATURES)
    features = ",\n      ".join(
        f"{f.sql(as_of)} AS f{i}" for i, f in enumerate(FEATURES) if not _own_pass(f)
    )
    events = f"read_parquet('{_glob(data, 'events', 'ingest_date')}')"
    own = [(i, f) for i, f in enumerate(FEATURES) if _own_pass(f)]
    own_passes = "".join(f",\n  {f.relation(i, events, as_of)}" for i, f in own)
    own_joins = " ".join(f"LEFT JOIN d{i} USING (person_id)" for i, _ in own)
    step_names = ", ".join(sorted({f"'{name}'" for q in SEQUENCES for name in q.steps}))
    step_days = max(q.days for q in SEQUENCES)
    sequences = ",\n  ".join(q.sql(i, "steps", as_of) for i, q in enumerate(SEQUENCES))
    sequence_joins = " ".join(f"LEFT JOIN q{i} USING (person_id)" for i in range(len(SEQUENCES)))
    tenure_joins = " ".join(
        f"LEFT JOIN (SELECT person_id, member_since AS since_{sid} FROM previous"
        f" WHERE segment_id = '{sid}') AS tenure_{sid} USING (person_id)"
        for sid in tenure_segments()
    )
    manual_flags = ", ".join(f"bool_or(segment_id = '{sid}') AS manual_{sid}" for sid in MANUAL)
    manual = ",\n      ".join(f"coalesce(manual_{sid}, false) AS s_{sid}" for sid in MANUAL)
    segments = ",\n      ".join(
        f"coalesce({hand_sql(template)}, false) AS s_{sid}"
        for sid, template in segment_templates()
        if template is not None
    )
    members = "\n    UNION ALL ".join(
        f"SELECT '{sid}' AS segment_id, person_id FROM m WHERE s_{sid}"
        for sid, _ in segment_templates()
    )
    uploads = " UNION ".join(
        f"SELECT '{sid}' AS segment_id, person_id"
        f" FROM read_csv('{data / 'day1' / 'inbox' / sid / '*.csv'}', all_varchar = true)"
        for sid in MANUAL
    )
    previous = _glob(data, "membership", "run_date", FIRST_DAY.isoformat())
    manual_ids = ", ".join(f"'{sid}'" for sid in MANUAL)
    return f"""
CREATE TEMP TABLE people AS
  SELECT * FROM read_parquet('{_glob(data, "people", "snapshot_date", SECOND_DAY.isoformat())}');
CREATE TEMP TABLE previous AS
  SELECT segment_id, person_id, member_since FROM read_parquet('{previous}');
CREATE TEMP TABLE uploads AS {uploads};
CREATE TEMP TABLE steps AS
  SELECT person_id, name, timestamp
  FROM read_parquet('{_glob(data, "events", "ingest_date")}')
  WHERE name IN ({step_names})
    AND timestamp <= TIMESTAMPTZ '{as_of}'
    AND timestamp > TIMESTAMPTZ '{as_of}' - INTERVAL {step_days} DAY;
CREATE TEMP TABLE current AS
  WITH {sequences}{own_passes},
  f AS (
    SELECT person_id,
      {features}
    FROM read_parquet('{_glob(data, "events", "ingest_date")}')
    WHERE timestamp <= TIMESTAMPTZ '{as_of}'
      AND timestamp > TIMESTAMPTZ '{as_of}' - INTERVAL {longest} DAY
    GROUP BY person_id
  ), manual AS (
    SELECT segment_id, person_id FROM previous WHERE segment_id IN ({manual_ids})
    UNION SELECT segment_id, person_id FROM uploads
  ), manual_flags AS (
    SELECT person_id, {manual_flags} FROM manual GROUP BY person_id
  ), m AS (
    SELECT person_id,
      {manual},
      {segments}
    FROM people LEFT JOIN f USING (person_id) LEFT JOIN manual_flags USING (person_id)
      {sequence_joins} {own_joins}
      {tenure_joins}
  )
  {members};
COPY (
  SELECT c.segment_id, c.person_id, coalesce(p.member_since, DATE '{SECOND_DAY}') AS member_since
  FROM current c LEFT JOIN previous p USING (segment_id, person_id)
  ORDER BY ALL
) TO '{data / "peer" / "membership.parquet"}' (FORMAT parquet);
COPY (
  SELECT e.segment_id, e.person_id, 'entered' AS change, DATE '{FIRST_DAY}' AS previous_run_date,
    CASE WHEN u.person_id IS NULL THEN 'condition' ELSE 'added' END AS reason
  FROM (SELECT segment_id, person_id FROM current
        EXCEPT SELECT segment_id, person_id FROM previous) e
  LEFT JOIN uploads u USING (segment_id, person_id)
  UNION ALL
  SELECT x.segment_id, x.person_id, 'exited', DATE '{FIRST_DAY}',
    CASE WHEN x.person_id IN (SELECT person_id FROM people) THEN 'condition'
         ELSE 'left_snapshot' END
  FROM (SELECT segment_id, person_id FROM previous
        EXCEPT SELECT segment_id, person_id FROM current) x
  ORDER BY segment_id, person_id
) TO '{data / "peer" / "changes.parquet"}' (FORMAT parquet);
"""


def _own_pass(feature: Any) -> bool:
    return getattr(feature, "own_pass", False)


def peer(data: Path) -> dict[str, Any]:
    import duckdb

    shutil.rmtree(data / "peer", ignore_errors=True)
    (data / "peer").mkdir()
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(peer_query(data))
    return {"membership+diff": {"seconds": time.perf_counter() - started, "peak_mb": peak_mb()}}


def floor(data: Path) -> dict[str, Any]:
    """One scan of the event columns the features read, one group-by person."""
    started = time.perf_counter()
    (
        pl.scan_parquet(_glob(data, "events", "ingest_date"))
        .group_by("person_id")
        .agg(
            pl.len(),
            pl.col("timestamp").max(),
            pl.col("name").max(),
            pl.col("amount").sum(),
            pl.col("currency").max(),
        )
        .collect()
    )
    return {"scan+group-by": {"seconds": time.perf_counter() - started, "peak_mb": peak_mb()}}


def child(contender: str, data: Path, segment: str = PREVIEW_SEGMENT, cluster: str = "") -> None:
    """Run one contender once, in its own process; print its steps as JSON. `cluster`: the
    master URL and executor memory of the cluster contender's cluster."""
    if contender == "duckdb":
        steps = peer(data)
    elif contender == "floor":
        steps = floor(data)
    elif contender == "preview":
        steps = preview(data, segment)
    elif contender == "segments-spark-cluster":
        master, memory = cluster.split(" ")
        steps = nightly_run(data, "spark", settings=settings_of(data, master, memory))
    else:
        steps = nightly_run(data, *ENGINES[contender])
    print(json.dumps(steps))


def _measure(
    contender: str, data: Path, segment: str = PREVIEW_SEGMENT, cluster: str = ""
) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.materialize_bench", "--child", contender]
    command += ["--data", str(data), "--preview-segment", segment, "--cluster", cluster]
    started = time.perf_counter()
    # the cluster contender's driver, as its cluster, on the loopback interface only
    environment = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"} if cluster else None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=REPO, env=environment)
    output = process.stdout.read().decode()
    _, status, _ = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"the {contender} run failed")
    steps = json.loads(output.strip().splitlines()[-1])
    if contender == "preview":  # what a user waits for: the process, start-up and imports too
        command_seconds = steps["preview"]["seconds"]
        steps["start-up"]["seconds"] = max(wall - command_seconds, 0.0)
    # the run's peak is its largest step's (each step's own peak is read from /proc; rusage's
    # maximum is no use here: it counts the parent's pages the child had before exec)
    peak = max(s["peak_mb"] for s in steps.values())
    return {"steps": steps, "peak_mb": peak}


def _executor_memory(worker_memory: str) -> str:
    """The executor heap that fits a worker of `worker_memory` (e.g. 6g -> 5g): a worker runs
    one executor, whose JVM needs some room beyond its heap."""
    megabytes = int(worker_memory[:-1]) * (1024 if worker_memory[-1] in "gG" else 1)
    return f"{max(megabytes * 5 // 6, 512)}m"


def _copy_tree(source: Path, target: Path) -> None:
    """A copy whose Parquet files are hard links (never rewritten in place), so a reset is fast."""

    def link_or_copy(src: str, dst: str) -> None:
        if src.endswith(".parquet"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.rmtree(target, ignore_errors=True)
    if source.exists():
        shutil.copytree(source, target, copy_function=link_or_copy)


def restore_day_one(data: Path) -> None:
    """Put the lake and inbox back as day 1's run left them, with day 2's uploads waiting."""
    for root in ("lake", "inbox"):
        _copy_tree(data / "day1" / root, data / root)


def prepare(scale: str, console: Console) -> Path:
    """The workspace of `scale` in benchmarks/data/<scale>/nightly/ (beside the ingest
    benchmark's landing), see `prepare_in`."""
    return prepare_in(HERE / "data" / scale / "nightly", SCALES[scale], console)


def definitions_digest(folder: Path) -> str:
    """A digest of the definition files in `folder` (names and text) and of the feature state's
    format (day 1's state must be one the nightly run folds)."""
    from transforms.engines.feature_state import FORMAT

    digest = hashlib.sha256(f"feature state format {FORMAT}\n".encode())
    for path in sorted(folder.glob("*.yaml")):
        digest.update(f"{path.name}\n{path.read_text()}\n".encode())
    return digest.hexdigest()


def prepare_in(data: Path, scale: Scale, console: Console) -> Path:
    """The workspace, its ingested history and day 1's committed run, each written once and
    reused (delete `.ingested` or `day1/` to redo one; day 1 is redone after the history is,
    and when the definitions it ran with are not the workspace's: `day1/.complete` holds their
    digest)."""
    from transforms.ingest.step import ingest
    from transforms.runs.steps import run

    write_landing(data / "landing", scale)
    write_definitions(data / "definitions")
    if not (data / ".ingested").exists():
        shutil.rmtree(data / "lake", ignore_errors=True)
        for day, _, _ in history_landings(scale):
            console.log(f"ingest the history landed on {day} (once)")
            ingest(settings_of(data), day)
        _copy_tree(data / "lake", data / "ingested")
        shutil.rmtree(data / "day1", ignore_errors=True)  # ran on the history of before
        (data / ".ingested").touch()
    digest = definitions_digest(data / "definitions")
    done = data / "day1" / ".complete"
    if not done.exists() or done.read_text() != digest:
        for folder in ("inbox", "day1"):
            shutil.rmtree(data / folder, ignore_errors=True)
        _copy_tree(data / "ingested", data / "lake")
        write_inbox(data / "inbox", scale.people, FIRST_DAY)
        console.log("day 1: the first run (once)")
        run(settings_of(data), FIRST_DAY)
        write_inbox(data / "inbox", scale.people, SECOND_DAY)
        for root in ("lake", "inbox"):
            _copy_tree(data / root, data / "day1" / root)
        done.write_text(digest)
    if not (data / "day1" / "lake" / "catalog.db").exists():
        from transforms.runs.iceberg import publish_runs

        console.log("day 1: publish to the Iceberg tables (once)")
        restore_day_one(data)
        publish_runs(settings_of(data))
        _copy_tree(data / "lake", data / "day1" / "lake")
    return data


def _committed(data: Path, table: str) -> pl.DataFrame:
    frame = pl.read_parquet(_glob(data, table, "run_date", SECOND_DAY.isoformat()))
    return frame.drop("run_date", strict=False).sort("segment_id", "person_id")


def outputs(data: Path, contender: str) -> dict[str, pl.DataFrame] | None:
    """Day 2's membership and changes as a contender wrote them (None: it writes none)."""
    if contender in ("floor", "preview"):
        return None
    if contender == "duckdb":
        return {t: pl.read_parquet(data / "peer" / f"{t}.parquet") for t in TABLES}
    return {t: _committed(data, t) for t in TABLES}


def same_rows(left: dict[str, pl.DataFrame], right: dict[str, pl.DataFrame]) -> bool:
    return all(
        left[t].sort(left[t].columns).equals(right[t].select(left[t].columns).sort(left[t].columns))
        for t in TABLES
    )


def validated_rows(data: Path) -> dict[str, list[int | None]]:
    """Per table of day 2's ingest (as the last segments run left it): [rows read, rows Great
    Expectations validated]."""
    from transforms.storage.lake import read_ingest_manifest
    from transforms.storage.roots import Root

    manifest = read_ingest_manifest(Root(str(data / "lake")), SECOND_DAY)
    return {t: [r.rows_read, r.rows_validated] for t, r in manifest.tables.items()}


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per contender: each step's seconds and peak MB, and the whole run's, as median/min/max."""
    summary = {}
    for contender, attempts in runs.items():
        steps = {
            step: {
                "seconds": _spread([a["steps"][step]["seconds"] for a in attempts]),
                "peak_mb": _spread([a["steps"][step]["peak_mb"] for a in attempts]),
            }
            for step in attempts[0]["steps"]
        }
        summary[contender] = {
            "steps": steps,
            "total_seconds": _spread(
                [sum(s["seconds"] for s in a["steps"].values()) for a in attempts]
            ),
            "peak_mb": _spread([a["peak_mb"] for a in attempts]),
        }
    return summary


def materialize_and_diff(attempt: dict[str, Any]) -> float:
    return sum(s["seconds"] for n, s in attempt["steps"].items() if n in ("materialize", "diff"))


def ratios(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Each segments run's materialize + diff over the peer's and the floor's time, and its
    validate's and publish's shares of its whole run; the full recompute's materialize + diff
    over the nightly run's; all per repetition."""
    result = {}
    for engine in (e for e in ENGINES if e in runs):
        for other in ("duckdb", "floor"):
            values = [
                materialize_and_diff(mine) / sum(s["seconds"] for s in theirs["steps"].values())
                for mine, theirs in zip(runs[engine], runs[other], strict=True)
            ]
            result[f"{engine} / {other}"] = _spread(values)
        for step in ("validate", "publish"):
            shares = [
                attempt["steps"][step]["seconds"]
                / sum(s["seconds"] for s in attempt["steps"].values())
                for attempt in runs[engine]
            ]
            result[f"{engine}: {step} / whole run"] = _spread(shares)
    if "segments-full" in runs:
        values = [
            materialize_and_diff(full) / materialize_and_diff(nightly)
            for full, nightly in zip(runs["segments-full"], runs["segments"], strict=True)
        ]
        result["segments-full / segments"] = _spread(values)
    return result


def print_tables(console: Console, scale: str, repeat: int, summary: dict, ratio: dict) -> None:
    table = Table(
        title=f"Nightly run at scale {scale}: {len(segment_templates())} segments,"
        f" {len(FEATURES)} event features, {len(SEQUENCES)} sequences;"
        f" {repeat} runs each, interleaved"
    )
    for column in ("contender", "step", "median s", "min s", "max s", "peak MB (median)"):
        table.add_column(column, justify="left" if column in ("contender", "step") else "right")
    for contender, figures in summary.items():
        for step, f in figures["steps"].items():
            s, m = f["seconds"], f["peak_mb"]
            table.add_row(
                contender,
                step,
                f"{s['median']:.2f}",
                f"{s['min']:.2f}",
                f"{s['max']:.2f}",
                f"{m['median']:,.0f}",
            )
        s, m = figures["total_seconds"], figures["peak_mb"]
        table.add_row(
            contender,
            "[b]whole run[/b]",
            f"{s['median']:.2f}",
            f"{s['min']:.2f}",
            f"{s['max']:.2f}",
            f"{m['median']:,.0f}",
            end_section=True,
        )
    console.print(table)
    shown = Table(
        title="materialize + diff, ratio to the peer and the floor (and full recompute to"
        " nightly); validate's and publish's shares of the run (same repetition)"
    )
    for column in ("ratio", "median", "min", "max"):
        shown.add_column(column, justify="left" if column == "ratio" else "right")
    for name, r in ratio.items():
        shown.add_row(name, f"{r['median']:.2f}", f"{r['min']:.2f}", f"{r['max']:.2f}")
    console.print(shown)


def preview_line(summary: dict, segment: str) -> str | None:
    """`segments preview`'s median (min-max), the command and its whole process."""
    if "preview" not in summary:
        return None
    command = summary["preview"]["steps"]["preview"]
    whole = summary["preview"]["total_seconds"]
    s = command["seconds"]
    return (
        f"segments preview {segment} --date {SECOND_DAY} (day 2, after its run): the command"
        f" {s['median']:.2f} s median ({s['min']:.2f}-{s['max']:.2f}), peak"
        f" {command['peak_mb']['median']:,.0f} MB; its process, start-up included,"
        f" {whole['median']:.2f} s ({whole['min']:.2f}-{whole['max']:.2f})"
    )


def measure(
    data: Path,
    repeat: int,
    contenders: tuple[str, ...],
    console: Console,
    segment: str = PREVIEW_SEGMENT,
    cluster: str = "",
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, pl.DataFrame]]]:
    """Each contender `repeat` times, interleaved (so all see the same machine state): the
    runs' figures, and the membership and changes each contender that writes them wrote last.
    The segments runs start from day 1's state; preview, the peer and the floor read the lake
    as the segments run before them left it (day 2 ingested and committed)."""
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    produced: dict[str, dict[str, pl.DataFrame]] = {}
    for attempt in range(repeat):
        for contender in contenders:
            if contender in ENGINES:
                restore_day_one(data)
            with console.status(f"{contender} run {attempt + 1}/{repeat}"):
                runs[contender].append(_measure(contender, data, segment, cluster))
            steps = runs[contender][-1]["steps"]
            shown = ", ".join(f"{name} {step['seconds']:.2f}" for name, step in steps.items())
            console.log(f"{contender} run {attempt + 1}/{repeat} (s): {shown}")
            written = outputs(data, contender)
            if written is not None:
                produced[contender] = written
    return runs, produced


def run(
    scale: str,
    repeat: int,
    spark: bool = False,
    without: tuple[str, ...] = (),
    segment: str = PREVIEW_SEGMENT,
    worker_memory: str | None = None,
) -> dict[str, Any]:
    """The benchmark; `worker_memory`: with the cluster contender, each worker's memory."""
    console = Console()
    data = prepare(scale, console)
    contenders = (*CONTENDERS, "segments-spark") if spark else CONTENDERS
    if worker_memory:
        contenders = (*contenders, "segments-spark-cluster")
    contenders = tuple(c for c in contenders if c not in without)
    with ExitStack() as stack:
        cluster = ""
        if worker_memory:
            from tests.support.spark_cluster import standalone_cluster

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            console.log(f"starting a standalone cluster (2 workers of 1 core, {worker_memory})")
            started = stack.enter_context(standalone_cluster(folder, worker_memory))
            cluster = f"{started.master_url} {_executor_memory(worker_memory)}"
        runs, produced = measure(data, repeat, contenders, console, segment, cluster)
    agree = {
        other: same_rows(produced["segments"], produced[other])
        for other in produced
        if other != "segments"
    }
    summary, ratio = summarize(runs), ratios(runs)
    print_tables(console, scale, repeat, summary, ratio)
    line = preview_line(summary, segment)
    if line:
        console.print(line)
    rows = {t: produced["segments"][t].height for t in TABLES}
    console.print(f"day 2 rows: {rows}; same membership and changes as segments: {agree}")
    validated = validated_rows(data)
    console.print(f"day 2's ingest, rows read / rows Great Expectations validated: {validated}")
    result = {
        "scale": scale,
        "people": SCALES[scale].people,
        "events": SCALES[scale].events,
        "segments": len(segment_templates()),
        "features": len(FEATURES),
        "hand_written_segments": len(HAND_WRITTEN) + len(LANGUAGE_2),
        "sequences": len(SEQUENCES),
        "preview_segment": segment if "preview" in contenders else None,
        "repeat": repeat,
        "runs": runs,
        "summary": summary,
        "ratios": ratio,
        "rows": rows,
        "same_rows": agree,
        "validated_rows": validated,
    }
    save_result(f"materialize-{scale}", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), default="S")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--spark", action="store_true", help="Time the Spark engine too (slow on one machine)."
    )
    parser.add_argument(
        "--spark-cluster",
        metavar="WORKER_MEMORY",
        help="Time the Spark engine on a standalone cluster of two one-core workers with this"
        " much memory each (e.g. 6g), started on the loopback interface.",
    )
    parser.add_argument(
        "--without",
        nargs="*",
        default=[],
        choices=list(OPTIONAL),
        help="Leave contenders out (the DuckDB engine takes long at L).",
    )
    parser.add_argument(
        "--preview-segment",
        default=PREVIEW_SEGMENT,
        help=f"The segment the preview contender previews (default {PREVIEW_SEGMENT}).",
    )
    parser.add_argument("--child", choices=[*CONTENDERS, *SPARK_CONTENDERS], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cluster", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.preview_segment, args.cluster)
    else:
        run(
            args.scale,
            args.repeat,
            args.spark,
            tuple(args.without),
            args.preview_segment,
            args.spark_cluster,
        )


if __name__ == "__main__":
    main()
