"""The ingest step: landing files of a date -> typed, validated Parquet in the lake.

For each table (people, events) of date D:
1. read every landing file (`transforms.ingest.landing`); an unreadable file, a file of an unknown
   format, a missing required column or a missing people snapshot fails the step;
2. type each column to its contract (`transforms.contracts.coerce`); unconvertible values are
   flagged, as are object values that are not JSON objects or hold a declared field of another
   type; keys of object columns the contract does not declare are dropped and counted;
3. events only: drop re-sent events (an `event_id` seen earlier in the day's files, or ingested
   on an earlier date), counted;
4. validate: uniqueness over the whole table in Polars, every other rule with the Great
   Expectations suite generated from the contract (`transforms.contracts.expectations`). For
   the people snapshot, only the rows that did not pass the same suite in the latest snapshot
   ingested before D go through Great Expectations: ingest keeps a fingerprint of every row a
   snapshot kept (`transforms.contracts.rows`), published with it by its manifest, and a changed
   contract validates every row;
5. rows that broke a rule go to `lake/quarantine/<table>/...` with every rule they broke and why;
6. publish: data and quarantine files under a fresh attempt name, Great Expectations' JSON, and
   last the manifest `lake/ingest/ingest_date=D/manifest.json`, by a conditional write against
   the version read when validation starts (two ingests of one date cannot both publish; the
   loser removes its files); files of attempts that started earlier are then removed.

The manifest records a fingerprint of every landing file read (key, size, modified time, ETag);
`landing_changes` tells what landed, changed or went away since, so a run can read the date
again instead of ignoring a late or corrected file.

Steps 1-3 (`stage`) and 4-6 (`publish`) hand over through a staging folder of the lake
(`lake.staging`), so a scheduler can show and retry them as separate tasks; `ingest` runs both
in one process and hands the tables over in memory. Every check runs before the first write to
a table, so a failed ingest leaves the tables as they were. With `--engine spark`, a run's ingest
does the same on Spark's executors (`transforms.engines.spark_ingest`), with this module's parts.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from transforms.config import Settings
from transforms.contracts.coerce import CAST_FAILURES, UNDECLARED, coerce
from transforms.contracts.odcs import TableContract, load_contract
from transforms.contracts.rows import (
    FINGERPRINT,
    row_fingerprints,
    rule_order,
    suite_hash,
    unique_failures,
)
from transforms.errors import (
    ConcurrentRunError,
    ContractError,
    InputFileError,
    MissingInputError,
)
from transforms.ingest.landing import (
    SOURCE_FILE,
    SOURCE_ROW,
    fingerprint,
    fingerprint_changes,
    landing_files,
    read_landed_file,
)
from transforms.logs import RESULT
from transforms.storage import lake
from transforms.storage.catalog import remove_older_attempts, superseded
from transforms.storage.publish import publish as publish_record
from transforms.storage.publish import version_of
from transforms.storage.records import IngestReport, TableReport
from transforms.storage.roots import FileInfo, Root

log = logging.getLogger("segments.ingest")
TABLES = ("people", "events")
RULES, REASON = "_rules", "_reason"
EXPECTATIONS = "transforms.contracts.expectations"
"""Great Expectations and the suites built with it: seconds to import, so imported only by a
validation with rows to check, in the background while the checks in Polars run
(`import_validator_in_background`)."""
KEEP = "__keep"
"""Staged beside each typed row: False if it was already refused (bad value, re-sent event)."""


@dataclass
class _Prepared:
    """A table ready to publish: everything computed, nothing written."""

    report: TableReport
    valid: pl.DataFrame
    quarantine: pl.DataFrame
    validation: list[dict[str, Any]]
    fingerprints: pl.DataFrame | None
    """Of the rows kept, for snapshot tables (`SNAPSHOT_TABLES`)."""


def _timed(report: TableReport, step: str, started: float) -> None:
    report.seconds[step] = round(time.perf_counter() - started, 3)


def files_to_read(
    landing: Root, contract: TableContract, day: date, report: TableReport
) -> list[FileInfo]:
    """The landing files of the table of `contract` for `day`, fingerprinted in `report`; an
    InputFileError for a file of an unknown format."""
    files, unknown = landing_files(landing, contract.table, day)
    if unknown:
        raise InputFileError(
            "unknown file format",
            file=landing.url_of(unknown[0].key),
            hint="landing files must end in .csv, .jsonl, .ndjson or .parquet (optionally .gz);"
            " move other files out of the landing folder",
        )
    report.fingerprints = [fingerprint(info) for info in files]
    return files


def require_snapshot(report: TableReport, landing: Root, day: date) -> None:
    """A MissingInputError when no people snapshot landed for `day`."""
    if report.table == "people" and not report.files:
        raise MissingInputError(
            f"no people snapshot for {day}: no files in {landing.url_of(f'people/{day}')}/",
            hint="land the full people snapshot of the date first (CSV, JSON lines or Parquet);"
            " a run without one would make everybody leave every segment",
        )


def _read(landing: Root, contract: TableContract, day: date, report: TableReport):
    files = files_to_read(landing, contract, day, report)
    typed, raw = [], []
    for info in files:
        landed = read_landed_file(landing, info, contract)
        report.files.append(landed.file)
        if landed.ignored_columns:
            report.ignored_columns[landed.file] = list(landed.ignored_columns)
        if landed.missing_optional:
            report.missing_columns[landed.file] = list(landed.missing_optional)
        typed.append(coerce(landed.frame, contract))
        raw.append(landed.frame.select(raw_text(landed.frame, contract)))
    if not typed:
        empty = pl.DataFrame(schema=contract.polars_schema())
        undeclared = [pl.lit([], pl.List(pl.String)).alias(UNDECLARED)] if contract.objects else []
        return empty.with_columns(
            pl.lit(None, pl.String).alias(SOURCE_FILE),
            pl.lit(None, pl.Int64).alias(SOURCE_ROW),
            pl.lit([], pl.List(pl.String)).alias(CAST_FAILURES),
            *undeclared,
        ), pl.DataFrame(schema={n: pl.String for n in typed_columns(contract)})
    return pl.concat(typed, how="vertical"), pl.concat(raw, how="vertical")


def raw_text(frame: pl.DataFrame, contract: TableContract) -> list[pl.Expr]:
    """The text of each typed column as landed: a struct (an object column from Parquet or
    JSON lines) as its JSON text."""
    return [
        pl.col(name).struct.json_encode()
        if isinstance(frame.schema[name], pl.Struct)
        else pl.col(name).cast(pl.String)
        for name in typed_columns(contract)
    ]


def undeclared_counts(typed: pl.DataFrame) -> dict[str, int]:
    """`<column>.<key>` -> rows whose object held a value under that undeclared key."""
    if UNDECLARED not in typed.columns:
        return {}
    keys = typed.get_column(UNDECLARED).explode().drop_nulls()
    counted = keys.value_counts(sort=True, name="rows").sort(
        ["rows", UNDECLARED], descending=[True, False]
    )
    return dict(
        zip(
            counted.get_column(UNDECLARED).to_list(),
            counted.get_column("rows").to_list(),
            strict=True,
        )
    )


def typed_columns(contract: TableContract) -> list[str]:
    """The columns whose typed value is not their text: only their text is staged apart (a
    string column's typed value is its text)."""
    return [c.name for c in contract.columns if c.logical_type != "string"]


def describe(rule: str, raw: dict[str, Any], contract: TableContract) -> str:
    column, kind = rule.split(":", 1)
    if "." in column:  # a field of an object column
        name, key = column.split(".", 1)
        declared = contract.column(name).field(key).logical_type
        return f"{column} in {raw.get(name)!r} is not a {declared} (or null)"
    value = raw.get(column)
    if contract.column(column).logical_type == "object" and kind == "type":
        return f"{column} {value!r} is not a JSON object"
    col = contract.column(column)
    if kind == "required":
        return f"{column} is missing"
    if kind == "type":
        return f"{column} {value!r} is not a valid {col.logical_type}"
    if kind == "unique":
        return f"{column} {value!r} appears more than once"
    if kind == "validValues":
        return f"{column} {value!r} is not one of {', '.join(map(str, col.valid_values or ()))}"
    if kind == "pattern":
        return f"{column} {value!r} does not match {col.pattern}"
    if kind == "range":
        low = (
            "" if col.minimum is None else f"{'>' if col.strict_minimum else '>='} {col.minimum:g}"
        )
        high = (
            "" if col.maximum is None else f"{'<' if col.strict_maximum else '<='} {col.maximum:g}"
        )
        bounds = " and ".join(filter(None, [low, high]))
        return f"{column} {value} is outside the allowed range ({bounds})"
    if kind == "length":
        return (
            f"{column} {value!r} has a length outside {col.min_length or 0}..{col.max_length or ''}"
        )
    return f"{column} breaks {kind}"


def _quarantine_rows(
    typed: pl.LazyFrame, raw: pl.LazyFrame, rules: dict[int, list[str]], contract: TableContract
) -> pl.DataFrame:
    """Raw text of the refused rows (text columns from `typed`, the others' text from `raw`,
    the staged text of the typed columns of every row), where they came from, the rules broken
    and why."""
    if not rules:
        return pl.DataFrame(schema=quarantine_schema(contract))
    positions = sorted(rules)
    position = pl.int_range(pl.len(), dtype=pl.UInt32)
    chosen = position.is_in(pl.Series(positions, dtype=pl.UInt32).implode())
    texts = [n for n in contract.names if n not in typed_columns(contract)]
    rows = pl.concat(
        [
            typed.select(*texts, SOURCE_FILE, SOURCE_ROW).filter(chosen).collect(),
            raw.select(typed_columns(contract)).filter(chosen).collect(),
        ],
        how="horizontal",
    )
    return explained(rows, [rules[p] for p in positions], contract)


def quarantine_schema(contract: TableContract) -> dict[str, pl.DataType]:
    """The columns of a quarantine file: every contract column as landed text, where the row
    came from, the rules it broke and why."""
    return {
        **{n: pl.String for n in contract.names},
        SOURCE_FILE: pl.String,
        SOURCE_ROW: pl.Int64,
        RULES: pl.String,
        REASON: pl.String,
    }


def explained(rows: pl.DataFrame, broken: list[list[str]], contract: TableContract) -> pl.DataFrame:
    """Refused `rows` (the contract's columns as landed text, source file and row) as
    quarantine rows: `broken[i]` holds the rules row i broke, in suite order."""
    reasons = [
        "; ".join(describe(rule, row, contract) for rule in rules)
        for rules, row in zip(broken, rows.iter_rows(named=True), strict=True)
    ]
    return rows.with_columns(
        pl.Series(RULES, [", ".join(rules) for rules in broken], pl.String),
        pl.Series(REASON, reasons, pl.String),
    ).select(list(quarantine_schema(contract)))


def _parquet_schema(root: Root, key: str) -> pl.Schema:
    """The schema of a Parquet file of `root`, from its footer."""
    if root.is_local:
        return pl.read_parquet_schema(root.local_path(key))
    with root.open(key) as handle:
        return pl.read_parquet_schema(handle)


def check_earlier_objects(lake_root: Root, contract: TableContract, day: date) -> None:
    """Refuse to ingest `day` when the latest date ingested before it holds an object column
    (event properties) in another form than the contract's: text written before the column
    was declared an object, or other fields. Runs read the events of every date as one table,
    which would then fail; ingesting the earlier dates again, oldest first, brings them to the
    contract's form."""
    if not contract.objects:
        return
    earlier = [d for d in lake.ingested_days(lake_root) if d < day]
    manifest = lake.read_ingest_manifest(lake_root, earlier[-1]) if earlier else None
    keys = manifest.outputs.get(contract.table) if manifest else None
    if not keys:
        return
    found, expected = _parquet_schema(lake_root, keys[0]), contract.polars_schema()
    differ = [name for name in contract.objects if found.get(name) != expected[name]]
    if differ:
        shown = ", ".join(f"{name} as {found.get(name)}" for name in differ)
        raise ContractError(
            f"the {contract.table} ingested on {earlier[-1]} hold {shown}, not the"
            f" {', '.join(f'{n} {expected[n]}' for n in differ)} this contract declares: runs"
            " could not read both",
            file=contract.file,
            hint=f"ingest the dates before {day} again, oldest first (segments ingest --date"
            f" {earlier[0]}, ...), or restore the contract they were ingested with",
        )


@dataclass
class _Staged:
    """A table read and typed (steps 1-3), for `publish`: the typed rows with `KEEP`, and the
    landed text of the typed columns (`raw_text`)."""

    report: TableReport
    typed: pl.LazyFrame
    raw: pl.LazyFrame


def _read_table(
    settings: Settings, landing: Root, lake_root: Root, table: str, day: date
) -> _Staged:
    """Read and type one table's landing files, flag the rows already refused (unconvertible
    values, re-sent events)."""
    contract = load_contract(settings.contracts, table)
    check_earlier_objects(lake_root, contract, day)
    report = TableReport(table=table)
    started = time.perf_counter()
    typed, raw = _read(landing, contract, day, report)
    report.rows_read = typed.height
    report.undeclared_keys = undeclared_counts(typed)
    require_snapshot(report, landing, day)
    keep = typed.get_column(CAST_FAILURES).list.len() == 0
    key = contract.primary_key
    if table == "events" and key:
        earlier, resent = lake.resent_events(lake_root, day, typed.get_column(key))
        report.checked_against = [d.isoformat() for d in earlier]
        report.checked_attempts = {d.isoformat(): attempt for d, attempt in earlier.items()}
        ids = typed.get_column(key)
        first = ids.is_null() | (_first_occurrences(ids) & ~ids.is_in(resent.implode()))
        report.duplicates_dropped = int((keep & ~first).sum())
        keep = keep & first
    # the undeclared keys are counted already
    staged = typed.drop(UNDECLARED, strict=False).with_columns(keep.alias(KEEP))
    _timed(report, "read", started)
    return _Staged(report, staged.lazy(), raw.lazy())


def _write_staged(lake_root: Root, folder: str, staged: _Staged) -> None:
    """A table `_read_table` read, staged under `folder` (`_scan_staged` reads it back)."""
    started = time.perf_counter()
    table = staged.report.table
    # read whole, soon, once: no column statistics, and Snappy, which reads back faster
    for part, frame in (("typed", staged.typed), ("raw", staged.raw)):
        lake_root.write_parquet(
            frame.collect(),
            _staged_file(folder, table, part),
            statistics=False,
            compression="snappy",
        )
    _timed(staged.report, "stage", started)
    lake_root.write_bytes(staged_report(folder, table), staged.report.to_bytes())


def _scan_staged(lake_root: Root, folder: str, report: TableReport) -> _Staged:
    """What `_write_staged` staged under `folder`, as `report` says."""
    return _Staged(
        report,
        *(
            lake_root.scan_parquet(_staged_file(folder, report.table, part))
            for part in ("typed", "raw")
        ),
    )


def _staged_file(folder: str, table: str, part: str) -> str:
    return f"{folder}/{table}.{part}.parquet"


def _first_occurrences(values: pl.Series) -> pl.Series:
    """Whether each of `values` is the first row holding it, as `is_first_distinct` tells.

    Only the rows whose hash another row shares are compared: sorting the hashes of 10M event
    ids takes a sixth of the time of the hash table `is_first_distinct` builds over them."""
    hashes = values.hash()
    ordered = hashes.sort()
    shared = ordered.filter(ordered == ordered.shift(1))
    first = pl.repeat(True, values.len(), dtype=pl.Boolean, eager=True)
    if shared.is_empty():
        return first
    positions = hashes.is_in(shared.implode()).arg_true()
    return first.scatter(positions, values.gather(positions).is_first_distinct())


def staged_report(folder: str, table: str) -> str:
    return f"{folder}/{table}.report.json"


def staged_reports(lake_root: Root, folder: str) -> dict[str, TableReport] | None:
    """The report of each table `stage` left in `folder` of the lake, or None if it left
    none (nothing staged, or `publish` published it since)."""
    keys = {table: staged_report(folder, table) for table in TABLES}
    if not all(lake_root.exists(key) for key in keys.values()):
        return None
    return {
        table: TableReport.from_bytes(lake_root.read_bytes(key), key) for table, key in keys.items()
    }


def staged_to_publish(lake_root: Root, folder: str, day: date) -> dict[str, TableReport]:
    """`staged_reports`, or a MissingInputError when nothing is staged in `folder`."""
    reports = staged_reports(lake_root, folder)
    if reports is None:
        raise MissingInputError(
            f"nothing staged to publish in {lake_root.url_of(folder)}",
            hint=f"run `segments ingest --date {day}`",
        )
    return reports


SNAPSHOT_TABLES = ("people",)
"""Tables landed whole on every date, mostly the same rows as the date before: the fingerprints
of the rows they keep are stored with their validation, so the next date validates only the
rows that changed (`transforms.contracts.rows`)."""


def _passed_before(
    lake_root: Root, table: str, day: date, suite: str
) -> tuple[str | None, pl.DataFrame | None]:
    """(its ingest date, the fingerprints of the rows it kept) of the latest ingest of `table`
    before `day`, if it validated them with the same suite; else (None, None).

    Only fingerprints a published manifest lists are read: a killed attempt's never are."""
    earlier = [d for d in lake.ingested_days(lake_root) if d < day]
    if not earlier:
        return None, None
    manifest = lake.read_ingest_manifest(lake_root, earlier[-1])
    keys = manifest.outputs.get(f"fingerprints/{table}") if manifest else None
    if not keys or manifest.tables[table].suite_hash != suite:
        return None, None
    try:
        return earlier[-1].isoformat(), lake_root.read_parquet(keys)
    except FileNotFoundError:  # that date was ingested again meanwhile: validate every row
        return None, None


def _rows_at(height: int, positions: pl.Series) -> pl.Series:
    """A boolean mask of `height` rows, true at `positions`."""
    return pl.Series(range(height), dtype=pl.UInt32).is_in(positions.implode())


def count_rules(rules: dict[int, list[str]], contract: TableContract, report: TableReport) -> None:
    """Put the rules each refused row broke in one order (conversion failures first, then the
    suite's), and count every rule broken in `report.broken_rules`."""
    order = rule_order(contract)
    for row, broken in rules.items():
        rules[row] = sorted(broken, key=lambda rule: order.get(rule, -1))
        for rule in broken:
            report.broken_rules[rule] = report.broken_rules.get(rule, 0) + 1


def _validate_table(settings: Settings, lake_root: Root, staged: _Staged, day: date) -> _Prepared:
    """Validate a table read: uniqueness over the whole table in Polars, every other rule
    with its Great Expectations suite, over the rows that did not pass the same suite in the
    previous snapshot (snapshot tables) or over every row; split valid from refused."""
    report, table = staged.report, staged.report.table
    contract = load_contract(settings.contracts, table)
    started = time.perf_counter()
    # the raw text is read only for the rows refused, at the end
    typed = staged.typed.select(*contract.names, CAST_FAILURES, KEEP).collect()
    keep = typed.get_column(KEEP)
    failing = typed.with_row_index("__position").filter(
        typed.get_column(CAST_FAILURES).list.len() > 0
    )
    rules: dict[int, list[str]] = dict(
        zip(failing["__position"].to_list(), failing[CAST_FAILURES].to_list(), strict=True)
    )
    duplicated = unique_failures(typed, contract, keep)
    for position, rule in duplicated.iter_rows():
        rules.setdefault(position, []).append(rule)

    check, fingerprints = keep, None
    if table in SNAPSHOT_TABLES:
        report.suite_hash = suite_hash(contract)
        fingerprints = row_fingerprints(typed, contract)
        report.validated_against, passed = _passed_before(lake_root, table, day, report.suite_hash)
        if passed is not None:
            already = (
                fingerprints.with_row_index("__position")
                .join(passed, on=list(FINGERPRINT), how="semi")
                .get_column("__position")
            )
            check = keep & ~_rows_at(typed.height, already)
    candidates = typed.select(contract.names).with_row_index("__position")
    if not check.all():
        candidates = candidates.filter(check)
    report.rows_validated = candidates.height
    results: list[dict[str, Any]] = []
    convert = run = 0.0
    if candidates.height:
        waited = time.perf_counter()
        from transforms.contracts.expectations import (
            ContractValidator,  # Great Expectations takes seconds to import: only when needed
        )

        validator = ContractValidator(contract, settings.validation_batch_rows)
        report.validation_seconds["import"] = round(time.perf_counter() - waited, 3)
        validation = validator.validate(candidates.select(contract.names))
        positions = candidates.get_column("__position")
        for batch_row, broken in validation.failures.items():
            rules.setdefault(int(positions[batch_row]), []).extend(broken)
        results = validation.results
        convert, run = validation.convert_seconds, validation.run_seconds
    count_rules(rules, contract, report)
    report.validation_success = all(r.get("success") for r in results) and not duplicated.height
    _timed(report, "validate", started)
    report.validation_seconds |= {
        "to_pandas": round(convert, 3),
        "great_expectations": round(run, 3),
    }

    started = time.perf_counter()
    failed = _rows_at(typed.height, pl.Series(list(rules), dtype=pl.UInt32))
    kept = keep & ~failed
    if fingerprints is not None:
        fingerprints = fingerprints.filter(kept)
    valid = typed.lazy().select(contract.names).filter(kept)
    if table == "people":  # in person order: runs then list members in key order without a sort
        valid = valid.sort(contract.primary_key)
    valid = valid.collect()
    del typed, candidates
    quarantine = _quarantine_rows(staged.typed, staged.raw, rules, contract)
    report.rows_written, report.quarantined = valid.height, quarantine.height
    _timed(report, "split", started)
    return _Prepared(report, valid, quarantine, results, fingerprints)


def require_landing(landing: Root) -> None:
    """A MissingInputError when the landing root does not exist."""
    if not landing.exists():
        raise MissingInputError(
            f"the landing root {landing.url} does not exist",
            hint="create it (or the bucket), or point --landing / SEGMENTS_LANDING at the right"
            " place",
        )


def stage(settings: Settings, day: date, folder: str) -> dict[str, TableReport]:
    """Steps 1-3 of the module docstring: read and type the landing files of `day`, staged
    under `folder` of the lake for `publish`."""
    lake_root = Root(settings.lake, settings.storage_options)
    reports = {}
    for staged in _read_tables(settings, day):
        _write_staged(lake_root, folder, staged)
        reports[staged.report.table] = staged.report
    return reports


def _read_tables(settings: Settings, day: date) -> Iterator[_Staged]:
    """Each table read and typed (`_read_table`), one after the other."""
    landing = Root(settings.landing, settings.storage_options)
    lake_root = Root(settings.lake, settings.storage_options)
    require_landing(landing)
    for table in TABLES:
        log.info("ingest %s %s: reading", table, day)
        yield _read_table(settings, landing, lake_root, table, day)


Stage = Callable[[Settings, date, str], dict[str, TableReport]]
Publish = Callable[[Settings, date, str, str], IngestReport]


def ingest(
    settings: Settings, day: date, steps: tuple[Stage, Publish] | None = None
) -> IngestReport:
    """Ingest the landing files of `day` into the lake; see the module docstring. Both halves
    run in this process, so the tables read go to validation in memory, unstaged. `steps`:
    (stage, publish) of an engine that runs them where the data is, handing over through a
    staging folder it removes."""
    lake_root = Root(settings.lake, settings.storage_options)
    attempt = lake.new_attempt()
    if steps is None:
        current = version_of(lake_root, lake.ingest_manifest(day))
        return _publish(settings, day, attempt, current, list(_read_tables(settings, day)))
    folder = lake.staging("ingest", day, attempt)
    staging, publishing = steps
    try:
        staging(settings, day, folder)
        return publishing(settings, day, folder, attempt)
    finally:
        lake_root.delete_folder(folder)


_IMPORTING: list[threading.Thread] = []
"""The background import of `EXPECTATIONS`, once started."""


def import_validator_in_background() -> None:
    """Start importing Great Expectations (`EXPECTATIONS`) in a background thread, so that a
    validation later in this process finds it imported, or part way (a second import of a
    module waits for the first). `publish` waits for it to end: while it runs, pyspark and
    SQLAlchemy look not installed to this process (`expectations.UNUSED_INTEGRATIONS`)."""
    if EXPECTATIONS not in sys.modules and not _IMPORTING:
        _IMPORTING.append(
            threading.Thread(target=importlib.import_module, args=(EXPECTATIONS,), daemon=True)
        )
        _IMPORTING[0].start()


def publish(settings: Settings, day: date, folder: str, attempt: str) -> IngestReport:
    """Steps 4-6: validate what `stage` left in `folder`, then publish it as attempt `attempt`."""
    lake_root = Root(settings.lake, settings.storage_options)
    current = version_of(lake_root, lake.ingest_manifest(day))
    reports = staged_to_publish(lake_root, folder, day)
    staged = [_scan_staged(lake_root, folder, report) for report in reports.values()]
    return _publish(settings, day, attempt, current, staged)


def _publish(
    settings: Settings, day: date, attempt: str, current: str | None, tables: list[_Staged]
) -> IngestReport:
    """Validate the `tables` read, then publish them as attempt `attempt` against `current`,
    the ingest manifest's version before they were read."""
    lake_root = Root(settings.lake, settings.storage_options)
    if any(t.report.table == "events" and t.report.rows_read for t in tables):
        import_validator_in_background()  # events are validated every row: it will be needed
    prepared = {}
    for staged in tables:
        log.info("ingest %s %s: validating", staged.report.table, day)
        prepared[staged.report.table] = _validate_table(settings, lake_root, staged, day)
    for started in _IMPORTING:  # nothing else of the run imports while modules look missing
        started.join()

    outputs = _write(lake_root, day, attempt, prepared)
    return commit_ingest(
        lake_root, day, attempt, current, {t: p.report for t, p in prepared.items()}, outputs
    )


def _write(
    lake_root: Root, day: date, attempt: str, prepared: dict[str, _Prepared]
) -> dict[str, list[str]]:
    """The files of attempt `attempt` of the ingest of `day`: keys per output."""
    outputs: dict[str, list[str]] = {}
    own = [
        key
        for t in TABLES
        for key in (
            lake.data_file(t, day, attempt),
            lake.quarantine_file(t, day, attempt),
            lake.validation_file(day, attempt, t),
            lake.fingerprint_file(day, attempt, t),
        )
    ]
    with superseded(lake_root, day, own):
        for table, ready in prepared.items():
            started = time.perf_counter()
            data_key = lake.data_file(table, day, attempt)
            lake_root.write_parquet(ready.valid, data_key)
            outputs[table] = [data_key]
            if ready.quarantine.height:
                q_key = lake.quarantine_file(table, day, attempt)
                lake_root.write_parquet(ready.quarantine, q_key)
                outputs[f"quarantine/{table}"] = [q_key]
            v_key = lake.validation_file(day, attempt, table)
            lake_root.write_bytes(v_key, json.dumps(ready.validation, indent=1).encode())
            outputs[f"validation/{table}"] = [v_key]
            if ready.fingerprints is not None:
                f_key = lake.fingerprint_file(day, attempt, table)
                lake_root.write_parquet(ready.fingerprints, f_key, statistics=False)
                outputs[f"fingerprints/{table}"] = [f_key]
            _timed(ready.report, "write", started)

    return outputs


def commit_ingest(
    lake_root: Root,
    day: date,
    attempt: str,
    current: str | None,
    reports: dict[str, TableReport],
    outputs: dict[str, list[str]],
) -> IngestReport:
    """Publish the manifest of attempt `attempt` listing `outputs`, by a conditional write
    against `current`, the manifest's version when validation started; then remove the files of
    earlier attempts. A ConcurrentRunError (its files removed) when another ingest of `day`
    published meanwhile."""
    report = IngestReport(
        date=day.isoformat(),
        attempt=attempt,
        tables=reports,
        outputs=outputs,
    )
    if not publish_record(lake_root, lake.ingest_manifest(day), report, current):
        lake_root.delete([key for keys in outputs.values() for key in keys])
        raise ConcurrentRunError(
            f"another ingest of {day} published to {lake_root.url} meanwhile",
            hint="run it again if the landing files changed since",
        )
    folders = [lake.partition(t, day) for t in TABLES]
    folders += [lake.quarantine_partition(t, day) for t in TABLES] + [lake.ingest_folder(day)]
    folders.append(lake.staging("ingest", day))  # what killed ingests of the date staged
    remove_older_attempts(lake_root, folders, attempt)
    for table, r in reports.items():
        log.info(
            "ingest %s %s: %d rows read, %d written, %d quarantined, %d re-sent dropped%s",
            table,
            day,
            r.rows_read,
            r.rows_written,
            r.quarantined,
            r.duplicates_dropped,
            "".join(
                f", {rows} {key} dropped (undeclared)" for key, rows in r.undeclared_keys.items()
            ),
            extra=RESULT,
        )
    return report


def landing_changes(settings: Settings, day: date) -> list[str]:
    """What differs between the landing files of `day` now and those its ingest read, one line
    per file: `events/2026-03-30/late.csv: new since the ingest`,
    `people/2026-03-30/export.csv: changed (size 120 -> 4,210)`,
    `...: removed since the ingest`. [] when they are the same.

    Also [] when `day` has not been ingested (there is nothing to compare with), and for a
    table whose manifest was written before fingerprints were recorded: what that ingest read
    is unknown, and reading the date again on every run would be worse than not noticing."""
    lake_root = Root(settings.lake, settings.storage_options)
    manifest = lake.read_ingest_manifest(lake_root, day)
    if manifest is None:
        return []
    landing = Root(settings.landing, settings.storage_options)
    changes = []
    for table in TABLES:
        recorded = manifest.tables[table].fingerprints
        if recorded is not None:
            known, unknown = landing_files(landing, table, day)
            changes += fingerprint_changes(recorded, known + unknown)
    return changes
