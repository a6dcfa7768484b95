"""The same runs on Polars and on DuckDB (through the generated SQL): identical tables."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from tests.support.workspace import CONTRACTS, REPO
from transforms.cli.app import app
from transforms.cli.demo import FIRST_DAY, SECOND_DAY, write_demo_workspace
from transforms.config import load_settings
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root


def committed(settings, day: date, table: str) -> pl.DataFrame:
    root = Root(settings.lake)
    manifest = read_manifest(root, read_catalog(root), day)
    return read_table(root, manifest, table).sort("segment_id", "person_id")


def test_demo_runs_are_identical_on_both_engines(tmp_path: Path):
    results = {}
    for engine in ("polars", "duckdb"):
        settings = load_settings(
            None,
            landing=str(tmp_path / engine / "landing"),
            lake=str(tmp_path / engine / "lake"),
            inbox=str(tmp_path / engine / "inbox"),
            contracts=str(CONTRACTS),
            definitions=str(REPO / "segment_definitions"),
        )
        files = write_demo_workspace(Root(settings.landing), Root(settings.inbox), 2_000)
        run(settings, FIRST_DAY, engine=engine)
        for key, data in files.later_uploads.items():
            Root(settings.inbox).write_bytes(key, data)
        run(settings, SECOND_DAY, engine=engine)
        results[engine] = [
            committed(settings, day, table)
            for day in (FIRST_DAY, SECOND_DAY)
            for table in ("membership", "changes")
        ]
    for ours, theirs in zip(results["polars"], results["duckdb"], strict=True):
        assert ours.height > 0
        assert ours.equals(theirs)


def test_compile_prints_sql_for_a_dialect():
    runner = CliRunner()
    flags = ["--definitions", str(REPO / "segment_definitions"), "--contracts", str(CONTRACTS)]
    flags += ["--date", "2026-03-30"]  # without it, the latest committed run's date
    result = runner.invoke(app, ["compile", "repeat_buyers", "--dialect", "duckdb", *flags])
    assert result.exit_code == 0, result.output
    assert "FILTER(WHERE" in result.stdout and "__seg_repeat_buyers" in result.stdout
    every = runner.invoke(app, ["compile", "--all", "--dialect", "spark", *flags])
    assert every.exit_code == 0, every.output
    ids = [p.stem for p in (REPO / "segment_definitions").glob("*.yaml")]
    assert len(ids) == 19
    assert all(f"IF(`__seg_{sid}`, '{sid}', NULL)" in every.stdout for sid in ids)
    assert "EXPLODE(" in every.stdout and "UNION ALL" not in every.stdout
    assert "`properties`.`price`" in every.stdout  # app_buyers reads an event property


def test_compile_refuses_a_dialect_without_struct_fields_for_event_properties():
    runner = CliRunner()
    flags = ["--definitions", str(REPO / "segment_definitions"), "--contracts", str(CONTRACTS)]
    flags += ["--date", "2026-03-30"]
    refused = runner.invoke(app, ["compile", "--all", "--dialect", "snowflake", *flags])
    assert refused.exit_code == 1
    assert "sum('purchase', properties.price, within => '30 days'" in refused.stderr
    assert "reads an event property" in refused.stderr and "bigquery" in refused.stderr
    for dialect, field in (("duckdb", '"properties"."price"'), ("bigquery", "`price`")):
        shown = runner.invoke(app, ["compile", "app_buyers", "--dialect", dialect, *flags])
        assert shown.exit_code == 0, shown.output
        assert field in shown.stdout
    other = runner.invoke(app, ["compile", "repeat_buyers", "--dialect", "snowflake", *flags])
    assert other.exit_code == 0, other.output
