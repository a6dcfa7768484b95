"""Ingest throughput: how many rows per second the ingest step turns into validated Parquet.

    python -m benchmarks.ingest_bench --scale S     # 1M people, 10M events
    python -m benchmarks.ingest_bench --scale XS    # 100k people, 1M events (a quick look)

Writes a seeded landing folder (people CSV, events CSV, the demo workspace's contracts) under
benchmarks/data/<scale>/ once, then ingests it --repeat times into a fresh lake and prints the
median wall time per step, rows/s, and the share spent in Great Expectations. Results are also
written to benchmarks/results/ingest-<scale>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from transforms.cli.demo import FIRST_DAY, HISTORY_DAYS, SEED, demo_events, demo_people
from transforms.config import load_settings
from transforms.ingest.step import ingest
from transforms.storage.roots import Root

SCALES = {"XS": (100_000, 1_000_000), "S": (1_000_000, 10_000_000)}
"""No L: ingest holds one date in memory, and one date of 100M events does not fit in 24 GB (the
nightly benchmark lands L's history over ten dates, and times each night's ingest)."""
HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def write_landing(folder: Path, people: int, events: int) -> None:
    """People snapshot and events of FIRST_DAY as CSV, about `events` rows of skewed activity."""
    done = folder / ".complete"
    if done.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(SEED)
    landing = Root(str(folder))
    frame = demo_people(rng, people, first_id=1)
    people_dir = folder / "people" / FIRST_DAY.isoformat()
    people_dir.mkdir(parents=True)
    frame.write_csv(people_dir / "people.csv", datetime_format="%Y-%m-%dT%H:%M:%S%.fZ")
    start = datetime.combine(FIRST_DAY, datetime.min.time(), UTC) - timedelta(days=HISTORY_DAYS - 1)
    per_day = events / people / HISTORY_DAYS
    ids = frame["person_id"].to_list()
    events_dir = folder / "events" / FIRST_DAY.isoformat()
    events_dir.mkdir(parents=True)
    chunk = 1_000_000  # people per chunk, to bound memory while generating
    for part, offset in enumerate(range(0, people, chunk)):
        batch = demo_events(
            rng, ids[offset : offset + chunk], start, HISTORY_DAYS, per_day, f"p{part}-"
        )
        batch.write_csv(
            events_dir / f"events-{part:03d}.csv", datetime_format="%Y-%m-%dT%H:%M:%S%.fZ"
        )
    del landing
    done.touch()


def run(scale: str, repeat: int) -> dict:
    people, events = SCALES[scale]
    data = HERE / "data" / scale
    console = Console()
    with console.status(f"writing landing data for scale {scale} (once)"):
        write_landing(data / "landing", people, events)
    started = time.perf_counter()
    import transforms.contracts.expectations  # noqa: F401  (Great Expectations' import, paid once per process)

    import_seconds = time.perf_counter() - started
    runs = []
    for attempt in range(repeat):
        lake = data / "lake"
        shutil.rmtree(lake, ignore_errors=True)
        settings = load_settings(
            None,
            landing=str(data / "landing"),
            lake=str(lake),
            contracts=str(REPO / "data_contracts"),
        )
        with console.status(f"ingest run {attempt + 1}/{repeat}"):
            started = time.perf_counter()
            report = ingest(settings, FIRST_DAY)
            wall = time.perf_counter() - started
        rows = sum(t.rows_read for t in report.tables.values())
        steps: dict[str, float] = {}
        for t in report.tables.values():
            for step, seconds in {
                **t.seconds,
                **{f"validate.{k}": v for k, v in t.validation_seconds.items()},
            }.items():
                steps[step] = steps.get(step, 0.0) + seconds
        runs.append({"wall": wall, "rows": rows, "steps": steps})
    median = statistics.median(r["wall"] for r in runs)
    step_medians = {s: statistics.median(r["steps"][s] for r in runs) for s in runs[0]["steps"]}
    result = {
        "scale": scale,
        "people": people,
        "events_rows": runs[0]["rows"] - people,
        "runs": runs,
        "median_seconds": median,
        "rows_per_second": runs[0]["rows"] / median,
        "step_median_seconds": step_medians,
        "great_expectations_share": (step_medians.get("validate", 0.0)) / median,
        "great_expectations_import_seconds": import_seconds,
    }
    events_rows = result["events_rows"]
    table = Table(
        title=f"Ingest, scale {scale}: {people:,} people + {events_rows:,} events,"
        f" median of {repeat} runs"
    )
    table.add_column("step")
    table.add_column("median s", justify="right")
    table.add_column("share", justify="right")
    for step, seconds in step_medians.items():
        table.add_row(step, f"{seconds:.1f}", f"{seconds / median:.0%}")
    table.add_row("total (wall)", f"{median:.1f}", "100%")
    console.print(table)
    console.print(
        f"throughput: {result['rows_per_second']:,.0f} rows/s; validate step (pandas conversion"
        f" + Great Expectations): {result['great_expectations_share']:.0%}; importing Great"
        f" Expectations adds {import_seconds:.1f} s once per process (not in the medians)"
    )
    save_result(f"ingest-{scale}", result)
    return result


def save_result(name: str, result: dict) -> None:
    """Write a benchmark's figures to benchmarks/results/<name>.json."""
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="S")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run(args.scale, args.repeat)


if __name__ == "__main__":
    main()
