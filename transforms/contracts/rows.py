"""What the ingest step checks of a table's rows without Great Expectations, and what lets it
hand Great Expectations only the rows that changed.

- `rule_order`: every row-level rule id of a contract (`<column>:<kind>`), in the order of its
  Great Expectations suite (`transforms.contracts.expectations`), so the rules a refused row
  broke are listed in one order however they were found.
- `unique_failures`: the `unique` rules over the whole table, in Polars: every copy of a value
  that appears more than once (NULLs aside, as Great Expectations counts them). They need every
  row at once; the other rules look at one row at a time.
- `suite_hash`: what the other rules' outcome for a row depends on besides the row: the rules
  themselves (from the contract), and the versions of Polars (which hashes the rows) and of
  Great Expectations (which checks them).
- `row_fingerprints`: a 128-bit hash of each row's values in the columns those rules look at.
  A row whose fingerprint is among those of rows that passed the same suite (same
  `suite_hash`) passes it too, so it need not be validated again.

Nothing here imports Great Expectations (several seconds per process).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from importlib.metadata import version

import polars as pl

from transforms.contracts.odcs import Column, TableContract

FINGERPRINT = ("_fingerprint_0", "_fingerprint_1")
"""The two 64-bit halves of a row fingerprint, as stored."""
_SEEDS = (0x5E6D1A2B, 0x3C4D7E8F)


def column_rules(column: Column) -> list[str]:
    """The ids of the row-level rules the contract declares on a column, in suite order."""
    kinds = []
    if column.required:
        kinds.append("required")
    if column.unique:
        kinds.append("unique")
    if column.valid_values is not None:
        kinds.append("validValues")
    if column.pattern is not None:
        kinds.append("pattern")
    if column.minimum is not None or column.maximum is not None:
        kinds.append("range")
    if column.min_length is not None or column.max_length is not None:
        kinds.append("length")
    return [f"{column.name}:{kind}" for kind in kinds]


def rule_order(contract: TableContract) -> dict[str, int]:
    """Every row-level rule id of the contract -> its position in the suite."""
    ids = [rule for column in contract.columns for rule in column_rules(column)]
    return {rule: position for position, rule in enumerate(ids)}


def is_unique_rule(rule: str) -> bool:
    return rule.endswith(":unique")


def row_checked_columns(contract: TableContract) -> list[str]:
    """The columns with a rule other than `unique`: what Great Expectations looks at."""
    return [
        c.name
        for c in contract.columns
        if any(not is_unique_rule(rule) for rule in column_rules(c))
    ]


def unique_failures(frame: pl.DataFrame, contract: TableContract, rows: pl.Series) -> pl.DataFrame:
    """(`__position`, `rule`) for every copy of a duplicated value of a `unique` column among the
    rows of `frame` where `rows` is true; positions are row numbers in `frame`, in order."""
    found = [
        duplicated_positions(frame.get_column(c.name), rows)
        .to_frame("__position")
        .with_columns(pl.lit(f"{c.name}:unique").alias("rule"))
        for c in contract.columns
        if c.unique
    ]
    if not found:
        return pl.DataFrame(schema={"__position": pl.UInt32, "rule": pl.String})
    return pl.concat(found)


def duplicated_positions(values: pl.Series, rows: pl.Series) -> pl.Series:
    """The positions, in order, of the non-NULL `values` where `rows` is true whose value occurs
    more than once among them. Copies of a value have the same 64-bit hash, so only the values
    whose hash occurs twice (found by sorting the hashes: at 10M ids about 4x faster than a
    table of the values) are compared by value."""
    keyed = (
        values.hash()
        .to_frame("__hash")
        .with_row_index("__position")
        .filter(rows & values.is_not_null())
        .sort("__hash")
    )
    same = pl.col("__hash")
    candidates = keyed.filter((same == same.shift(1)) | (same == same.shift(-1)))["__position"]
    checked = pl.DataFrame({"__position": candidates, "value": values.gather(candidates)})
    return checked.filter(pl.col("value").is_duplicated()).sort("__position")["__position"]


def suite_hash(contract: TableContract) -> str:
    """A hash of everything besides a row's values that decides whether it passes the row
    rules other than `unique`."""
    columns = [
        asdict(replace(c, description=""))
        for c in contract.columns
        if c.name in row_checked_columns(contract)
    ]
    identity = {
        "format": 1,
        "columns": columns,
        "polars": pl.__version__,
        "great_expectations": version("great_expectations"),
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def row_fingerprints(frame: pl.DataFrame, contract: TableContract) -> pl.DataFrame:
    """The fingerprint of each row of `frame` (typed to the contract): two UInt64 columns."""
    checked = frame.select(row_checked_columns(contract))
    halves = zip(FINGERPRINT, _SEEDS, strict=True)
    return pl.DataFrame([checked.hash_rows(seed).alias(name) for name, seed in halves])
