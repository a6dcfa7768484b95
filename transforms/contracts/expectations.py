"""Great Expectations suites generated from data contracts, and row-level validation with them.

`ContractValidator(contract)` builds one in-memory (ephemeral) Great Expectations context with a
suite derived from the contract: `required` -> not null, `validValues` -> in set, `pattern` ->
regex, `minimum`/`maximum` -> between, `minLength`/`maxLength` -> value lengths between.
`validate(frame)` converts the typed Polars frame to an Arrow-backed pandas frame in batches
(Great Expectations 1.x validates pandas, not Polars; only the columns that have rules are
converted), runs the suite on each batch with the COMPLETE result format, and returns Great
Expectations' own JSON per batch plus, for every failing row, the rules it broke.
`ContractValidator(contract, spark=True).validate_spark(frame, row_id)` runs the same suite on a
Spark DataFrame with Great Expectations' Spark execution engine, where the data is: only the
failing rows' ids and values come back.

Great Expectations does not fingerprint the batches (`HASH_THRESHOLD` below): their result
documents have no `batch_markers.pandas_data_fingerprint`.

`unique`/`primaryKey` (expect values to be unique) is the one rule that needs every row of the
table at once; the ingest step checks it over the whole table in Polars
(`transforms.contracts.rows.unique_failures`) and hands Great Expectations only the rows it
must look at (rows that did not pass the same suite before), so the suite run here holds the
rules that look at one row at a time, and batches are plain slices of the rows.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import polars as pl

from transforms.contracts.odcs import Column, TableContract
from transforms.contracts.rows import is_unique_rule, row_checked_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame

UNUSED_INTEGRATIONS = ("pyspark", "sqlalchemy")
"""Packages Great Expectations imports at its own import when they are installed, which
validating pandas frames never uses: Spark (installed for the Spark engine) and SQLAlchemy (for
the Iceberg catalog) add a second or more each to every process that validates. One already
imported is not hidden: the Spark engine's ingest, which starts its session first, validates
Spark DataFrames."""


@contextmanager
def _without(modules: tuple[str, ...]) -> Iterator[None]:
    """While importing Great Expectations, the `modules` not imported yet look not installed
    to it; afterwards they import as usual (for the Spark engine)."""
    hidden = [m for m in modules if m not in sys.modules]
    for module in hidden:
        sys.modules[module] = None  # type: ignore[assignment]  # an import then raises
    try:
        yield
    finally:
        for module in hidden:
            if sys.modules.get(module, 0) is None:
                del sys.modules[module]


UNUSED_AT_IMPORT = ("scipy.stats", "altair")
"""Modules Great Expectations imports at its own import for one expectation this project never
generates (`expect_column_kl_divergence_to_be_less_than`, which uses them only when it runs):
about 2 of the 6 seconds the import takes. They are loaded on first use instead (`_deferred`)."""


def _deferred(name: str) -> None:
    """Module `name`, unless imported already or not installed, registered as a stand-in that
    imports it on the first access to one of its attributes and hands each access on to it.
    (`importlib.util.LazyLoader` would not do: the import system reads the module's
    `__spec__`, which makes a lazy module load.)"""
    spec = None if name in sys.modules else importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = types.ModuleType(name)
    stand_in.__spec__ = spec

    def loaded(attribute: str) -> Any:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attribute)

    stand_in.__getattr__ = loaded  # type: ignore[method-assign]  # a module's own __getattr__
    sys.modules[name] = stand_in


for _module in UNUSED_AT_IMPORT:
    _deferred(_module)
with _without(UNUSED_INTEGRATIONS):
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

pandas_execution_engine.HASH_THRESHOLD = 0
"""Great Expectations fingerprints every pandas batch smaller than this many bytes (pandas' hash
of every value, then md5) for a marker of the result's metadata (`batch_markers`) that this
project never reads: three quarters of its time over a batch of events. At 0 every batch counts
as too large to fingerprint; the verdicts and failing rows are the same."""


def _sees_pyspark() -> bool:
    """Whether Great Expectations found pyspark as it was imported (`UNUSED_INTEGRATIONS`)."""
    from great_expectations.compatibility import pyspark as integration
    from great_expectations.compatibility.not_imported import NotImported

    return not isinstance(integration.pyspark, NotImported)


ROW_ID = "__row"
RULE = "rule"


def rule_expectations(column: Column) -> list[tuple[str, gxe.Expectation]]:
    """(rule id, expectation) for every row-level rule the contract declares on a column."""
    name = column.name
    rules: list[tuple[str, gxe.Expectation]] = []
    if column.required:
        rules.append((f"{name}:required", gxe.ExpectColumnValuesToNotBeNull(column=name)))
    if column.unique:
        rules.append((f"{name}:unique", gxe.ExpectColumnValuesToBeUnique(column=name)))
    if column.valid_values is not None:
        rules.append(
            (
                f"{name}:validValues",
                gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(column.valid_values)),
            )
        )
    if column.pattern is not None:
        rules.append(
            (
                f"{name}:pattern",
                gxe.ExpectColumnValuesToMatchRegex(column=name, regex=column.pattern),
            )
        )
    if column.minimum is not None or column.maximum is not None:
        rules.append(
            (
                f"{name}:range",
                gxe.ExpectColumnValuesToBeBetween(
                    column=name,
                    min_value=column.minimum,
                    max_value=column.maximum,
                    strict_min=column.strict_minimum,
                    strict_max=column.strict_maximum,
                ),
            )
        )
    if column.min_length is not None or column.max_length is not None:
        rules.append(
            (
                f"{name}:length",
                gxe.ExpectColumnValueLengthsToBeBetween(
                    column=name, min_value=column.min_length, max_value=column.max_length
                ),
            )
        )
    return rules


def _to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """Arrow-backed columns (no copy of strings), but numpy-backed dates and timestamps, and
    numbers numpy holds exactly (`_exact_in_numpy`): Great Expectations checks Arrow temporal
    columns about ten times slower, and the range of an Arrow number with one Python call per
    value (over 1M people it took 2.26 s so, 1.04 s with numpy numbers)."""
    converted = frame.to_pandas(use_pyarrow_extension_array=True)
    for name, dtype in frame.schema.items():
        column = frame.get_column(name)
        if dtype.is_temporal() or _exact_in_numpy(column):
            converted[name] = column.to_pandas()
    return converted


def _exact_in_numpy(column: pl.Series) -> bool:
    """Whether a numpy column holds the values of `column` as they are: floats without NaN (in
    numpy, NaN and NULL are one value), integers without NULLs (int64) or, with NULLs (then
    floats), within +-2^53."""
    if column.dtype.is_float():
        return not column.is_nan().any()
    if not column.dtype.is_integer() or column.dtype == pl.UInt64:
        return False
    if not column.has_nulls() or column.null_count() == column.len():
        return True
    exact = 2**53
    return -exact <= column.min() and column.max() <= exact


def suite_rules(contract: TableContract) -> list[tuple[str, gxe.Expectation]]:
    """Every row-level rule of the contract as an expectation (`unique` ones included)."""
    return [rule for column in contract.columns for rule in rule_expectations(column)]


@dataclass
class Validation:
    """What validating a whole table found."""

    results: list[dict[str, Any]] = field(default_factory=list)
    """Great Expectations' own validation result JSON, one per batch."""
    failures: dict[int, list[str]] = field(default_factory=dict)
    """Row position in the validated frame -> the rules that row broke."""
    convert_seconds: float = 0.0
    """Time spent converting Polars batches to Arrow-backed pandas."""
    run_seconds: float = 0.0
    """Time spent inside Great Expectations."""

    @property
    def success(self) -> bool:
        return all(r.get("success") for r in self.results)


class ContractValidator:
    """Validates frames against the Great Expectations suite generated from one contract."""

    def __init__(
        self, contract: TableContract, batch_rows: int = 1_000_000, spark: bool = False
    ) -> None:
        """`spark`: validate Spark DataFrames (`validate_spark`) with Great Expectations' Spark
        execution engine, instead of Polars frames converted to pandas (`validate`)."""
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        if spark and not _sees_pyspark():
            raise RuntimeError(
                "Great Expectations was imported in this process before pyspark, and cannot"
                " validate Spark DataFrames in it: import pyspark (start the Spark session)"
                " before transforms.contracts.expectations"
            )
        self.contract = contract
        self.batch_rows = batch_rows
        self.rules = [rule for rule in suite_rules(contract) if not is_unique_rule(rule[0])]
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        expectations = []
        for rule_id, expectation in self.rules:
            expectation.meta = {RULE: rule_id}
            expectations.append(expectation)
        suite = context.suites.add(
            gx.ExpectationSuite(name=f"{contract.table}_contract", expectations=expectations)
        )
        sources = context.data_sources
        source = (
            sources.add_spark(f"{contract.table}_frames", persist=False)
            if spark
            else sources.add_pandas(f"{contract.table}_frames")
        )
        batch = source.add_dataframe_asset(contract.table).add_batch_definition_whole_dataframe(
            "batch"
        )
        self._context = context
        self._definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{contract.table}_validation", data=batch, suite=suite)
        )

    def _batches(self, frame: pl.DataFrame) -> Iterator[pl.DataFrame]:
        """The batches, one at a time (only one is copied out of `frame` at once)."""
        indexed = frame.with_row_index(ROW_ID)
        for offset in range(0, max(frame.height, 1), self.batch_rows):
            yield indexed.slice(offset, self.batch_rows)

    def _forget_results(self) -> None:
        """The context keeps every validation result in memory; we keep our own copy."""
        store = self._context.validation_results_store
        for key in store.list_keys():
            store.remove_key(key)

    def validate(self, frame: pl.DataFrame) -> Validation:
        """Run the suite over `frame` (contract columns, typed) in batches."""
        found = Validation()
        if not self.rules:
            return found
        checked = row_checked_columns(self.contract)
        for batch in self._batches(frame.select(checked)):
            started = time.perf_counter()
            # the pandas index carries the row position: Great Expectations then lists failing
            # rows by index label, several times faster than by an id column
            pandas_batch = _to_pandas(batch.drop(ROW_ID)).set_axis(
                pd.Index(batch.get_column(ROW_ID).to_numpy()), axis=0
            )
            found.convert_seconds += time.perf_counter() - started
            started = time.perf_counter()
            result = self._definition.run(
                batch_parameters={"dataframe": pandas_batch},
                result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False},
            ).to_json_dict()
            self._forget_results()
            found.run_seconds += time.perf_counter() - started
            _record(found, result, int)
        return found

    def validate_spark(self, frame: SparkFrame, row_id: str) -> Validation:
        """Run the suite over the Spark DataFrame `frame` (contract columns, typed, and
        `row_id`, a unique integer per row) on its cluster, as one batch: only the failing
        rows' ids and values come back (`Validation.failures` is keyed by `row_id`)."""
        found = Validation()
        if not self.rules:
            return found
        started = time.perf_counter()
        checked = frame.select(row_id, *row_checked_columns(self.contract))
        result = self._definition.run(
            batch_parameters={"dataframe": checked},
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [row_id],
                "return_unexpected_index_query": False,
            },
        ).to_json_dict()
        self._forget_results()
        found.run_seconds = time.perf_counter() - started
        _record(found, result, lambda row: int(row[row_id]))
        return found


def _record(found: Validation, result: dict[str, Any], row_of: Callable[[Any], int]) -> None:
    """Add a batch's result to `found`: the rules each failing row broke, `row_of` telling the
    row of an entry of Great Expectations' `unexpected_index_list`."""
    found.results.append(result)
    for entry in result["results"]:
        if entry["success"]:
            continue
        rule = entry["expectation_config"]["meta"][RULE]
        if entry["exception_info"].get("raised_exception"):
            raise RuntimeError(
                f"Great Expectations could not evaluate {rule}:"
                f" {entry['exception_info'].get('exception_message')}"
            )
        for row in entry["result"].get("unexpected_index_list", []):
            found.failures.setdefault(row_of(row), []).append(rule)
