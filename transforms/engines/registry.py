"""The engines that compute membership, by name: what each one is and where it lives.

An engine (`Engine`) computes, for a run date, the members of every segment and the person ids
of the date's people snapshot; the diff and the commit are the same whatever the engine. A
`distributed` engine (Spark) also ingests the landing files, stages the members and diffs them
where the data is (`DistributedEngine`), so that the process that runs the steps never holds
them. Every
list of engine names (the CLI's `--engine`, the DAG's `engine` param) is `ENGINES`;
`load_engine` turns a name into its engine. Importing this module imports no engine:
each one's module (and its polars, duckdb or pyspark) is imported when it is loaded, so the
Airflow DAG file can read the names while it parses.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Protocol

from transforms.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from transforms.config import Settings
    from transforms.engines.changes import RunContext
    from transforms.engines.membership import EventFeatures
    from transforms.language.polars import CompiledDefinitions
    from transforms.storage.records import IngestReport, TableReport
    from transforms.storage.roots import Root

MODULES = {
    "polars": "transforms.engines.polars",
    "duckdb": "transforms.engines.duckdb",
    "spark": "transforms.engines.spark",
}
"""Each engine's name and the module whose `ENGINE` it is."""
ENGINES = tuple(MODULES)
DEFAULT_ENGINE = "polars"


@dataclass(frozen=True)
class Inputs:
    """What an engine computes a run date's members from."""

    settings: Settings
    lake: Root
    day: date
    compiled: CompiledDefinitions
    manual: pl.DataFrame | None = None
    """(segment_id, person_id) of the members of manual segments."""
    features: EventFeatures | None = None
    """The event features of every person, folded from the previous run's kept state; given
    only to an engine that `folds_features`. None: the engine computes them from the events."""


class Engine(Protocol):
    """Computes the members of every segment for a run date."""

    name: str
    distributed: bool
    """Whether the run's members are staged and diffed by the engine itself, where the data is
    (`DistributedEngine`), instead of coming back to this process for the Polars diff."""
    folds_features: bool
    """Whether a run folds the event features from the previous run's kept state
    (`transforms.engines.feature_state`) and hands them to `members` in `Inputs.features`; an
    engine that does not computes them from the events and is never given any."""

    def check(self, settings: Settings) -> None:
        """Raise ConfigError, saying what to configure, when `settings` lack what the engine
        needs (a lake it can read, a runtime)."""
        ...

    def members(self, inputs: Inputs) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(segment_id, person_id) of every member of every segment of `inputs.compiled`, and
        the person_id of everyone in the people snapshot of `inputs.day`."""
        ...


@dataclass(frozen=True)
class StagedDiff:
    """What a distributed engine diffs and where it writes the result: keys (folders of
    Parquet parts, or files) in the lake."""

    context: RunContext
    previous: list[str]
    """The previous committed run's membership files, in order ([]: there is none)."""
    members: str
    """The folder of the members the engine staged (`DistributedEngine.stage_members`)."""
    snapshot: str
    """The folder of the snapshot's person ids it staged."""
    manual_actions: str
    """The file of (segment_id, person_id, action) of the run's manual uploads."""
    membership: str
    """The folder to write the membership parts in, in key order."""
    changes: str
    """The folder to write the changes parts in, in key order."""


@dataclass(frozen=True)
class DiffCounts:
    """What a distributed diff counted: rows per segment, of the membership and of the
    changes."""

    sizes: dict[str, int]
    """segment_id -> members."""
    moves: dict[tuple[str, str], int]
    """(segment_id, change) -> change rows."""


@dataclass(frozen=True)
class FileColumn:
    """A column of the Parquet files a distributed engine writes for another reader (the
    Iceberg tables' data files)."""

    name: str
    field_id: int
    """The Parquet field id the reader matches the column by."""
    logical_type: str
    """A contract logical type (`string`, `date`, ...)."""
    required: bool
    """Written as a required Parquet column (its values are never NULL)."""


class DistributedEngine(Engine, Protocol):
    """An engine whose executors write the members and the run's tables (`Engine.distributed`):
    only counts come back."""

    def stage_members(self, inputs: Inputs, members: str, snapshot: str) -> tuple[int, int]:
        """Write, as Parquet parts in the folders `members` and `snapshot` (keys in
        `inputs.lake`, replaced), what `members` returns; (people, members) counted."""
        ...

    def stage_ingest(self, settings: Settings, day: date, folder: str) -> dict[str, TableReport]:
        """What `transforms.ingest.step.stage` does, by the executors: the landing files of
        `day` read, typed and staged under `folder` of the lake; a report per table."""
        ...

    def publish_ingest(
        self, settings: Settings, day: date, folder: str, attempt: str
    ) -> IngestReport:
        """What `transforms.ingest.step.publish` does, by the executors: what `stage_ingest`
        left in `folder` validated, written as attempt `attempt`, its manifest committed."""
        ...

    def write_table_files(
        self,
        settings: Settings,
        keys: list[str],
        folder: str,
        columns: list[FileColumn],
        day: date,
    ) -> list[str]:
        """The rows of the lake's Parquet files `keys`, with `run_date` = `day`, written by the
        executors as Parquet files in `folder` (a URL) with exactly `columns` (one the files
        lack is NULL); the URLs of the files that hold rows."""
        ...

    def diff_members(self, settings: Settings, diff: StagedDiff) -> DiffCounts:
        """Write the membership (segment_id, person_id, member_since) and the changes
        (`transforms.runs.diff.CHANGES_SCHEMA`) of `diff.context`'s run, each in key order
        across its parts in part order, what `transforms.runs.diff.diff` computes from the same
        inputs; the counts of what it wrote."""
        ...


def load_engine(name: str) -> Engine:
    """The engine called `name` (one of `ENGINES`), its module imported."""
    if name not in MODULES:
        raise ConfigError(f"unknown engine '{name}'", hint=f"choose one of {', '.join(ENGINES)}")
    return importlib.import_module(MODULES[name]).ENGINE
