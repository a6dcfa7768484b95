"""Materialize: 30 segments using 40 distinct event features, against hand-written DuckDB.

    python -m benchmarks.materialize_bench --scale S     # 1M people, 10M events

Uses the landing data of `benchmarks.ingest_bench` (written there if missing) and ingests it
once. Then, --repeat times each and in separate processes (so peak memory is each engine's
own), it times:
- segments: `transforms.runs.run` on the ingested date (compile, one-pass features, 30
  predicates, diff against the previous run, membership and changes Parquet committed);
- segments-duckdb: the same run with `engine="duckdb"` (membership computed by the SQL the
  project generates, run by DuckDB);
- segments-spark: the same run with `engine="spark"` (the generated Spark SQL, run by Spark in
  local mode on this machine's cores, `local[*]`; its JVM's peak memory is added);
- duckdb: the same membership written by hand as one DuckDB query (`count(*) FILTER (WHERE
  ...)` per feature in one pass, joined to people, one SELECT per segment), written to Parquet.
Both outputs are compared row for row. Prints medians and the ratio; writes
benchmarks/results/materialize-<scale>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from benchmarks.ingest_bench import HERE, REPO, SCALES, save_result, write_landing
from transforms.compiler import as_of_instant
from transforms.demo import FIRST_DAY

EVENT_NAMES = [
    "page_viewed",
    "email_opened",
    "login",
    "email_clicked",
    "feature_used",
    "added_to_cart",
    "search",
    "purchase",
    "support_ticket_opened",
    "invite_sent",
]
WINDOWS = [1, 7, 30, 90]
FEATURES = [(name, days) for name in EVENT_NAMES for days in WINDOWS]  # 40 distinct features
PLANS = ["free", "trial", "pro", "enterprise"]


def segment_specs() -> list[tuple[str, str, str]]:
    """(segment id, predicate, the same condition in hand-written SQL over feature columns)."""
    specs = []
    for i in range(30):
        a, b = FEATURES[i % 40], FEATURES[(i * 7 + 11) % 40]
        low, high = 1 + i % 3, 3 + i % 5
        where = (
            f"event_count('{a[0]}', within => '{a[1]} days') >= {low}"
            f" AND event_count('{b[0]}', within => '{b[1]} days') < {high}"
        )
        fa, fb = FEATURES.index(a), FEATURES.index(b)
        sql = f"coalesce(f{fa}, 0) >= {low} AND coalesce(f{fb}, 0) < {high}"
        if i % 3 == 0:
            where += f" AND plan = '{PLANS[i % 4]}'"
            sql += f" AND plan = '{PLANS[i % 4]}'"
        if i % 5 == 0:
            extra = FEATURES[(i + 20) % 40]
            where = f"({where}) OR event_count('{extra[0]}', within => '{extra[1]} days') >= 20"
            sql = f"({sql}) OR coalesce(f{FEATURES.index(extra)}, 0) >= 20"
        specs.append((f"bench_{i:02d}", where, sql))
    used = {(n, d) for _, w, _ in specs for n, d in FEATURES if f"'{n}', within => '{d} days'" in w}
    missing = [f for f in FEATURES if f not in used]
    for j, (name, days) in enumerate(missing):  # make sure all 40 features are used
        sid, where, sql = specs[j]
        specs[j] = (
            sid,
            f"{where} AND event_count('{name}', within => '{days} days') >= 0",
            f"{sql} AND coalesce(f{FEATURES.index((name, days))}, 0) >= 0",
        )
    return specs


def duckdb_query(people_glob: str, events_glob: str, output: str) -> str:
    as_of = as_of_instant(FIRST_DAY).strftime("%Y-%m-%d %H:%M:%S+00")
    columns = ",\n    ".join(
        f"count(*) FILTER (WHERE name = '{name}' AND timestamp > TIMESTAMPTZ '{as_of}'"
        f" - INTERVAL {days} DAY) AS f{i}"
        for i, (name, days) in enumerate(FEATURES)
    )
    selects = "\n  UNION ALL ".join(
        f"SELECT '{sid}' AS segment_id, person_id FROM p WHERE {sql}"
        for sid, _, sql in segment_specs()
    )
    return f"""
COPY (
  WITH f AS (
    SELECT person_id,
    {columns}
    FROM read_parquet('{events_glob}')
    WHERE timestamp <= TIMESTAMPTZ '{as_of}'
      AND timestamp > TIMESTAMPTZ '{as_of}' - INTERVAL {max(WINDOWS)} DAY
      AND name IN ({", ".join(f"'{n}'" for n in EVENT_NAMES)})
    GROUP BY person_id
  ), p AS (
    SELECT * FROM read_parquet('{people_glob}') LEFT JOIN f USING (person_id)
  )
  {selects}
) TO '{output}' (FORMAT parquet)
"""


CONTENDERS = ["segments", "segments-duckdb", "segments-spark", "duckdb"]
SPARK_CONF = {"spark.driver.memory": "6g"}


def _jvm_peak_rss_mb() -> float:
    """Peak memory of this process's Spark JVM (a separate process the rusage of the run does
    not see), 0 when no JVM was started."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return 0.0
    status = Path(f"/proc/{gateway.proc.pid}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
        / 1024
    )


def child(engine: str, data: Path) -> None:
    """Run one engine once (in its own process) and print its wall time."""
    started = time.perf_counter()
    extra_rss_mb = 0.0
    if engine.startswith("segments"):
        from transforms.config import load_settings
        from transforms.runs import run

        settings = load_settings(
            None,
            lake=str(data / "lake"),
            inbox=str(data / "inbox"),
            contracts=str(REPO / "data_contracts"),
            definitions=str(data / "definitions"),
            spark_master="local[*]",
            spark_conf=SPARK_CONF,
        )
        run(settings, FIRST_DAY, engine=engine.removeprefix("segments").lstrip("-") or "polars")
        if engine == "segments-spark":
            extra_rss_mb = _jvm_peak_rss_mb()
    else:
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            duckdb_query(
                str(data / "lake" / "people" / "*" / "*.parquet"),
                str(data / "lake" / "events" / "*" / "*.parquet"),
                str(data / "duckdb-membership.parquet"),
            )
        )
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "extra_rss_mb": extra_rss_mb}))


def _measure(engine: str, data: Path) -> dict:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.materialize_bench",
            "--child",
            engine,
            "--data",
            str(data),
        ],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    _, status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read().decode()
    if status != 0:
        raise RuntimeError(f"{engine} run failed")
    result = json.loads(output.strip().splitlines()[-1])
    return {
        "seconds": result["seconds"],
        "peak_rss_mb": usage.ru_maxrss / 1024 + result["extra_rss_mb"],
    }


def prepare(scale: str) -> Path:
    people, events = SCALES[scale]
    data = HERE / "data" / scale
    write_landing(data / "landing", people, events)
    definitions = data / "definitions"
    shutil.rmtree(definitions, ignore_errors=True)
    definitions.mkdir(parents=True)
    for sid, where, _ in segment_specs():
        (definitions / f"{sid}.yaml").write_text(
            f'name: {sid}\ntype: data_driven\nwhere: "{where}"\n'
        )
    for derived in ("runs", "membership", "changes"):  # start from no committed run
        shutil.rmtree(data / "lake" / derived, ignore_errors=True)
    shutil.rmtree(data / "inbox", ignore_errors=True)
    if not (data / "lake" / "ingest" / f"ingest_date={FIRST_DAY}" / "manifest.json").exists():
        from transforms.config import load_settings
        from transforms.ingest import ingest

        ingest(
            load_settings(
                None,
                landing=str(data / "landing"),
                lake=str(data / "lake"),
                contracts=str(REPO / "data_contracts"),
            ),
            FIRST_DAY,
        )
    return data


def same_membership(data: Path) -> bool:
    """The committed membership (of the last segments run: segments-spark) against the
    hand-written DuckDB query's."""
    ours = pl.read_parquet(data / "lake" / "membership" / f"run_date={FIRST_DAY}" / "*.parquet")
    theirs = pl.read_parquet(data / "duckdb-membership.parquet")
    key = ["segment_id", "person_id"]
    return ours.select(key).sort(key).equals(theirs.select(key).sort(key))


def run(scale: str, repeat: int) -> dict:
    console = Console()
    with console.status(f"preparing scale {scale} (landing data and ingest, once)"):
        data = prepare(scale)
    runs: dict[str, list[dict]] = {engine: [] for engine in CONTENDERS}
    for attempt in range(repeat):
        for engine in runs:  # interleaved, so both see the same machine state
            with console.status(f"{engine} run {attempt + 1}/{repeat}"):
                runs[engine].append(_measure(engine, data))
    agree = same_membership(data)
    medians = {
        e: {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
        }
        for e, rs in runs.items()
    }
    result = {
        "scale": scale,
        "segments": 30,
        "features": len(FEATURES),
        "runs": runs,
        "medians": medians,
        "ratio_segments_to_duckdb": medians["segments"]["seconds"] / medians["duckdb"]["seconds"],
        "same_membership": agree,
    }
    table = Table(
        title=f"Materialize at scale {scale}: 30 segments, 40 event features,"
        f" median of {repeat} runs each"
    )
    table.add_column("engine")
    table.add_column("median s", justify="right")
    table.add_column("peak memory MB", justify="right")
    for engine, m in medians.items():
        table.add_row(engine, f"{m['seconds']:.1f}", f"{m['peak_rss_mb']:,.0f}")
    console.print(table)
    console.print(
        f"segments / duckdb time: {result['ratio_segments_to_duckdb']:.2f};"
        f" same membership: {agree}"
    )
    save_result(f"materialize-{scale}", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="S")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data)
    else:
        run(args.scale, args.repeat)


if __name__ == "__main__":
    main()
