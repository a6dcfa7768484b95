"""The ingest step run by Spark's executors (`--engine spark`).

What `transforms.ingest.step` does, with nothing that grows with the rows passing through the
driver but the refused rows (and their rules):

- `stage`: each landing file is read and typed to its contract by one executor task, with the
  code the Polars ingest runs (`read_landed_file`, `coerce`). The task writes the typed rows,
  with the text of the typed columns as landed, as a Parquet part into the staging folder, and
  returns the file's counts. Re-sent events (an `event_id` seen earlier in the day's files, in
  file and row order, or ingested on an earlier date) are found by Spark and staged as row ids.
- `publish`: uniqueness is checked by Spark, every other rule by Great Expectations with its
  Spark execution engine, over every row kept. The valid rows are written by the executors
  (people in person_id order, events in landing order) and moved into the partitions as the
  attempt's parts. The refused rows, and only they, come to the driver, which explains them and
  writes the quarantine file. The manifest is committed as the Polars ingest commits it
  (`commit_ingest`).

Unlike the Polars ingest, every row of a people snapshot is validated (rows that passed before
are not skipped) and no row fingerprints are stored, so an ingest by another engine after it
validates every row once. A row's id while staged (`ROW`) is its file's position among the
date's files (high 32 bits) and its row in the file.

The executors run this package: they need it installed, with its dependencies, in the Python
`spark.pyspark.python` names (a local master uses this process's; README, "Running on Spark").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from transforms.config import Settings
from transforms.contracts.coerce import CAST_FAILURES, UNDECLARED, coerce
from transforms.contracts.odcs import TableContract, load_contract
from transforms.contracts.rows import suite_hash
from transforms.engines.spark_tables import read_parquet, write_parts
from transforms.errors import InputFileError
from transforms.ingest.landing import SOURCE_FILE, SOURCE_ROW, read_landed_file
from transforms.ingest.step import (
    SNAPSHOT_TABLES,
    TABLES,
    check_earlier_objects,
    commit_ingest,
    count_rules,
    explained,
    files_to_read,
    raw_text,
    require_landing,
    require_snapshot,
    staged_report,
    staged_to_publish,
    typed_columns,
    undeclared_counts,
)
from transforms.storage import lake
from transforms.storage.catalog import place_parts, superseded
from transforms.storage.publish import version_of
from transforms.storage.records import IngestReport, TableReport
from transforms.storage.roots import FileInfo, Root

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("segments.ingest")
ROW = "__row"
RAW = "__raw__"
"""Prefix of the staged text, as landed, of each typed column."""
KEEP = "__keep"
FILE_BITS = 32
FILE_COUNTS = (
    "file_index int, file string, rows long, ignored string, missing string,"
    " undeclared string, error string"
)
"""What the task that stages a landing file returns: its counts, or the error reading it."""
_FILE_COUNTS_ARROW = pa.schema(
    [
        ("file_index", pa.int32()),
        ("file", pa.string()),
        ("rows", pa.int64()),
        ("ignored", pa.string()),
        ("missing", pa.string()),
        ("undeclared", pa.string()),
        ("error", pa.string()),
    ]
)


def _typed_parts(folder: str, table: str) -> str:
    return f"{folder}/parts/{table}"


def _resent_parts(folder: str, table: str) -> str:
    return f"{folder}/parts/{table}-resent"


def _valid_parts(folder: str, table: str) -> str:
    return f"{folder}/parts/{table}-valid"


@dataclass(frozen=True)
class _StageFiles:
    """The task that reads, types and stages landing files, run by the executors (pickled
    with what it needs: no settings file or contract folder is read there)."""

    landing: str
    lake: str
    storage_options: dict[str, Any]
    contract: TableContract
    files: tuple[FileInfo, ...]
    folder: str

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for index in batch.column(0).to_pylist():
                yield pa.RecordBatch.from_pylist([self.stage(index)], schema=_FILE_COUNTS_ARROW)

    def stage(self, index: int) -> dict[str, Any]:
        landing = Root(self.landing, self.storage_options)
        lake_root = Root(self.lake, self.storage_options)
        try:
            landed = read_landed_file(landing, self.files[index], self.contract)
        except InputFileError as exc:
            return {"file_index": index, "error": json.dumps(_error_fields(exc))}
        typed = coerce(landed.frame, self.contract)
        raw = landed.frame.select(raw_text(landed.frame, self.contract))
        staged = pl.concat(
            [
                typed.drop(UNDECLARED, strict=False),
                raw.rename({name: RAW + name for name in raw.columns}),
            ],
            how="horizontal",
        ).with_columns(((index << FILE_BITS) + pl.col(SOURCE_ROW)).alias(ROW))
        key = f"{_typed_parts(self.folder, self.contract.table)}/part-{index:05d}-typed.parquet"
        lake_root.write_parquet(staged, key, statistics=False)
        return {
            "file_index": index,
            "file": landed.file,
            "rows": staged.height,
            "ignored": json.dumps(landed.ignored_columns),
            "missing": json.dumps(landed.missing_optional),
            "undeclared": json.dumps(undeclared_counts(typed)),
        }


def _error_fields(exc: InputFileError) -> dict[str, Any]:
    where = f"{exc.file}, line {exc.line}" if exc.line is not None else exc.file
    return {
        "message": exc.message.removeprefix(f"{where}: "),
        "file": exc.file,
        "line": exc.line,
        "hint": exc.hint,
    }


def _stage_files(
    spark: SparkSession,
    settings: Settings,
    contract: TableContract,
    files: list[FileInfo],
    folder: str,
    report: TableReport,
) -> None:
    """One task per landing file; the counts of each (in file order) added to `report`, or the
    first file's error in file order raised."""
    task = _StageFiles(
        settings.landing, settings.lake, settings.storage_options, contract, tuple(files), folder
    )
    found = spark.range(len(files), numPartitions=len(files)).mapInArrow(task, FILE_COUNTS)
    undeclared: dict[str, int] = {}
    for row in sorted(found.collect(), key=lambda r: r.file_index):
        if row.error:
            raise InputFileError(**json.loads(row.error))
        report.files.append(row.file)
        report.rows_read += row.rows
        if ignored := json.loads(row.ignored):
            report.ignored_columns[row.file] = ignored
        if missing := json.loads(row.missing):
            report.missing_columns[row.file] = missing
        for key, rows in json.loads(row.undeclared).items():
            undeclared[key] = undeclared.get(key, 0) + rows
    report.undeclared_keys = dict(sorted(undeclared.items(), key=lambda kv: (-kv[1], kv[0])))


def _resent(
    spark: SparkSession, lake_root: Root, typed: DataFrame, key: str, earlier: list[str]
) -> DataFrame:
    """The ids (`ROW`) of the re-sent events among `typed` not refused already: a non-null
    `key` held by an earlier row of the day's files, or by an event of the files `earlier`
    (those of the dates ingested before)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as f

    ids = typed.where(f.col(key).isNotNull()).select(
        key,
        ROW,
        (f.size(CAST_FAILURES) == 0).alias("__converted"),
        (f.row_number().over(Window.partitionBy(key).orderBy(ROW)) == 1).alias("__first"),
    )
    again = ~f.col("__first")
    if earlier:
        seen = read_parquet(spark, lake_root, earlier).select(key).distinct()
        ids = ids.join(seen.withColumn("__earlier", f.lit(True)), key, "left")
        again = again | f.col("__earlier").isNotNull()
    return ids.where(f.col("__converted") & again).select(ROW)


def _stage_table(
    spark: SparkSession, settings: Settings, table: str, day: date, folder: str
) -> TableReport:
    landing = Root(settings.landing, settings.storage_options)
    lake_root = Root(settings.lake, settings.storage_options)
    contract = load_contract(settings.contracts, table)
    check_earlier_objects(lake_root, contract, day)
    report = TableReport(table=table)
    started = time.perf_counter()
    files = files_to_read(landing, contract, day, report)
    for parts in (_typed_parts(folder, table), _resent_parts(folder, table)):
        lake_root.delete_folder(parts)  # what an earlier try of this attempt staged
    if files:
        log.info("ingest %s %s: reading %d files on the executors", table, day, len(files))
        _stage_files(spark, settings, contract, files, folder, report)
    require_snapshot(report, landing, day)
    key = contract.primary_key
    if table == "events" and key:
        attempts, earlier = lake.earlier_events(lake_root, day)
        report.checked_against = [d.isoformat() for d in attempts]
        report.checked_attempts = {d.isoformat(): attempt for d, attempt in attempts.items()}
        if files:
            typed = read_parquet(spark, lake_root, [_typed_parts(folder, table)])
            resent = _resent(spark, lake_root, typed, key, earlier)
            report.duplicates_dropped = write_parts(resent, lake_root, _resent_parts(folder, table))
    report.seconds["read"] = round(time.perf_counter() - started, 3)
    lake_root.write_bytes(staged_report(folder, table), report.to_bytes())
    return report


def stage(
    spark: SparkSession, settings: Settings, day: date, folder: str
) -> dict[str, TableReport]:
    """Steps 1-3 of `transforms.ingest.step`, on the executors: the typed landing files of
    `day` and the re-sent events, staged under `folder` of the lake for `publish`."""
    require_landing(Root(settings.landing, settings.storage_options))
    return {table: _stage_table(spark, settings, table, day, folder) for table in TABLES}


def _kept(spark: SparkSession, lake_root: Root, folder: str, table: str) -> DataFrame:
    """The staged rows of `table` with `KEEP`: converted, and not a re-sent event."""
    from pyspark.sql import functions as f

    typed = read_parquet(spark, lake_root, [_typed_parts(folder, table)])
    keep = f.size(CAST_FAILURES) == 0
    resent = _resent_parts(folder, table)
    if lake_root.list_files(resent):
        dropped = read_parquet(spark, lake_root, [resent]).withColumn("__resent", f.lit(True))
        typed = typed.join(dropped, ROW, "left")
        keep = keep & f.col("__resent").isNull()
    return typed.withColumn(KEEP, keep)


def _broken_rules(
    staged: DataFrame, contract: TableContract, report: TableReport
) -> tuple[dict[int, list[str]], list[dict[str, Any]]]:
    """(row id -> the rules it broke, Great Expectations' result documents) for the staged
    rows: conversion failures, `unique` over the rows kept (Spark), every other rule over the
    rows kept (Great Expectations' Spark execution engine)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as f

    from transforms.contracts.expectations import ContractValidator  # seconds to import

    rules: dict[int, list[str]] = {
        row: list(failures)
        for row, failures in staged.where(f.size(CAST_FAILURES) > 0)
        .select(ROW, CAST_FAILURES)
        .collect()
    }
    kept = staged.where(KEEP)
    duplicated = False
    for column in (c.name for c in contract.columns if c.unique):
        copies = f.count(f.lit(1)).over(Window.partitionBy(column))
        for (row,) in (
            kept.where(f.col(column).isNotNull())
            .select(ROW, copies.alias("__copies"))
            .where("__copies > 1")
            .select(ROW)
            .collect()
        ):
            rules.setdefault(row, []).append(f"{column}:unique")
            duplicated = True
    report.rows_validated = kept.count()
    results: list[dict[str, Any]] = []
    if report.rows_validated:
        validation = ContractValidator(contract, spark=True).validate_spark(kept, ROW)
        for row, broken in validation.failures.items():
            rules.setdefault(row, []).extend(broken)
        results = validation.results
        report.validation_seconds["great_expectations"] = round(validation.run_seconds, 3)
    count_rules(rules, contract, report)
    report.validation_success = all(r.get("success") for r in results) and not duplicated
    return rules, results


def _quarantine(
    staged: DataFrame, refused: DataFrame, rules: dict[int, list[str]], contract: TableContract
) -> pl.DataFrame:
    """The refused rows as landed, with the rules they broke and why, in landing order."""
    from pyspark.sql import functions as f

    typed = set(typed_columns(contract))
    columns = [f.col(RAW + n).alias(n) if n in typed else f.col(n) for n in contract.names]
    rows = pl.from_arrow(
        staged.join(f.broadcast(refused), ROW, "left_semi")
        .select(*columns, SOURCE_FILE, SOURCE_ROW, ROW)
        .orderBy(ROW)
        .toArrow()
    )
    broken = [rules[row] for row in rows.get_column(ROW).to_list()]
    return explained(rows.drop(ROW), broken, contract)


def _publish_table(
    spark: SparkSession,
    settings: Settings,
    report: TableReport,
    folder: str,
    day: date,
    attempt: str,
) -> dict[str, list[str]]:
    """Validate a staged table on the executors and write its files as attempt `attempt`;
    the keys written per output."""
    from pyspark.sql import functions as f

    lake_root = Root(settings.lake, settings.storage_options)
    table = report.table
    contract = load_contract(settings.contracts, table)
    if table in SNAPSHOT_TABLES:
        report.suite_hash = suite_hash(contract)
    started = time.perf_counter()
    if not report.files:  # nothing landed: an empty table
        return _write_small(
            lake_root, day, attempt, table, pl.DataFrame(schema=contract.polars_schema()), [], None
        )
    log.info("ingest %s %s: validating on the executors", table, day)
    staged = _kept(spark, lake_root, folder, table).persist()
    try:
        rules, results = _broken_rules(staged, contract, report)
        report.seconds["validate"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        valid = staged.where(KEEP)
        quarantine = None
        if rules:
            refused = spark.createDataFrame([(row,) for row in sorted(rules)], f"{ROW} long")
            valid = valid.join(f.broadcast(refused), ROW, "left_anti")
            quarantine = _quarantine(staged, refused, rules, contract)
        order = contract.primary_key if table == "people" else ROW
        valid = valid.orderBy(order).select(contract.names)
        report.rows_written = write_parts(valid, lake_root, _valid_parts(folder, table))
        report.quarantined = len(rules)
        report.seconds["split"] = round(time.perf_counter() - started, 3)
    finally:
        staged.unpersist()
    started = time.perf_counter()
    parts = lake.part_keys(lake_root, _valid_parts(folder, table))
    empty = None if parts else pl.DataFrame(schema=contract.polars_schema())
    outputs = place_parts(lake_root, day, attempt, {table: parts}) if parts else {}
    outputs |= _write_small(lake_root, day, attempt, table, empty, results, quarantine)
    report.seconds["write"] = round(time.perf_counter() - started, 3)
    return outputs


def _write_small(
    lake_root: Root,
    day: date,
    attempt: str,
    table: str,
    valid: pl.DataFrame | None,
    results: list[dict[str, Any]],
    quarantine: pl.DataFrame | None,
) -> dict[str, list[str]]:
    """What the driver writes of a table: the data file when nothing landed (`valid`), the
    quarantine file (refused rows only), Great Expectations' result documents."""
    outputs: dict[str, list[str]] = {}
    keys = [
        lake.data_file(table, day, attempt),
        lake.quarantine_file(table, day, attempt),
        lake.validation_file(day, attempt, table),
    ]
    with superseded(lake_root, day, keys):
        if valid is not None:
            lake_root.write_parquet(valid, keys[0])
            outputs[table] = [keys[0]]
        if quarantine is not None and quarantine.height:
            lake_root.write_parquet(quarantine, keys[1])
            outputs[f"quarantine/{table}"] = [keys[1]]
        lake_root.write_bytes(keys[2], json.dumps(results, indent=1).encode())
        outputs[f"validation/{table}"] = [keys[2]]
    return outputs


def publish(
    spark: SparkSession, settings: Settings, day: date, folder: str, attempt: str
) -> IngestReport:
    """Steps 4-6 of `transforms.ingest.step`, on the executors: validate what `stage` left in
    `folder`, write it as attempt `attempt` and commit its manifest."""
    lake_root = Root(settings.lake, settings.storage_options)
    current = version_of(lake_root, lake.ingest_manifest(day))
    reports = staged_to_publish(lake_root, folder, day)
    outputs: dict[str, list[str]] = {}
    for report in reports.values():
        outputs |= _publish_table(spark, settings, report, folder, day, attempt)
    return commit_ingest(lake_root, day, attempt, current, reports, outputs)
