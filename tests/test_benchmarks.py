"""The nightly benchmark (`benchmarks.materialize_bench`) at a tiny scale: its hand-written DuckDB
peer and every segments run (folded, full recompute, DuckDB engine) give the same membership and
changes rows, the segments using the language's later additions have members, and the preview
contender runs `segments preview`."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.console import Console

from benchmarks.materialize_bench import measure, prepare_in, same_rows
from benchmarks.workspace import LANGUAGE_2, Scale


def test_peer_and_segments_runs_agree(tmp_path: Path) -> None:
    console = Console(quiet=True)
    data = prepare_in(tmp_path / "nightly", Scale(4_000, 240_000), console)
    contenders = ("segments", "segments-full", "segments-duckdb", "preview", "duckdb")
    runs, produced = measure(data, 1, contenders, console)

    assert set(produced) == {"segments", "segments-full", "segments-duckdb", "duckdb"}
    for other in produced:
        assert same_rows(produced["segments"], produced[other]), other
    sizes = dict(produced["segments"]["membership"].group_by("segment_id").len().iter_rows())
    assert all(sizes.get(sid, 0) > 0 for sid, _ in LANGUAGE_2), sizes
    changes = produced["segments"]["changes"]
    assert changes.filter(pl.col("change") == "exited").height > 0
    assert runs["preview"][0]["steps"]["preview"]["seconds"] > 0
    assert set(runs["segments-full"][0]["steps"]) >= {"materialize", "diff", "publish"}
