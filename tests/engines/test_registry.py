"""The engine registry: every name has its engine, and reading the names imports no engine."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest
from sqlglot import exp

from tests.support.workspace import REPO
from transforms.engines.registry import DEFAULT_ENGINE, ENGINES, load_engine
from transforms.engines.relations import deduplicated_events
from transforms.errors import ConfigError


def test_every_name_loads_its_engine_only_polars_folds_features_only_spark_is_distributed():
    engines = [load_engine(name) for name in ENGINES]
    assert [e.name for e in engines] == list(ENGINES) == ["polars", "duckdb", "spark"]
    assert DEFAULT_ENGINE in ENGINES
    assert [e.name for e in engines if e.folds_features] == ["polars"]
    assert [e.name for e in engines if e.distributed] == ["spark"]


def test_an_unknown_engine_is_refused_with_the_names_to_choose_from():
    with pytest.raises(ConfigError) as refused:
        load_engine("pandas")
    assert "unknown engine 'pandas'" in str(refused.value)
    assert refused.value.hint == "choose one of polars, duckdb, spark"


def test_reading_the_names_imports_no_engine():
    """The Airflow DAG file reads them while it parses, which must stay fast."""
    code = (
        "import json, sys; from transforms.engines.registry import ENGINES;"
        " print(json.dumps(sorted(sys.modules)))"
    )
    modules = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    )
    heavy = ("polars", "pyarrow", "duckdb", "pyspark", "sqlglot", "pydantic", "yaml", "fsspec")
    assert [m for m in modules if m.split(".")[0] in heavy] == []
    assert [m for m in modules if m.startswith("transforms.engines.")] == [
        "transforms.engines.registry"
    ]


def test_events_of_several_ingest_days_count_once_the_earliest_day_winning():
    con = duckdb.connect()
    days = [
        exp.values([("e1", "first"), ("e2", "first")], "d0", ["event_id", "seen"]),
        exp.values([("e1", "second"), ("e3", "second")], "d1", ["event_id", "seen"]),
    ]
    query = exp.select("event_id", "seen").from_(deduplicated_events(days)).order_by("event_id")
    assert con.sql(query.sql(dialect="duckdb")).fetchall() == [
        ("e1", "first"),
        ("e2", "first"),
        ("e3", "second"),
    ]
