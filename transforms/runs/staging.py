"""The staging folder of an attempt of a run (`lake.staging`): what its steps hand each other.

`Staging` owns the names of the files in it: the attempt's plan (`Attempt`), each step's result
(`IngestStepResult` ... `DiffStepResult`), the frames the steps pass on (`StagedFrame`), the
folders of Parquet parts a distributed engine's executors write (a frame, or a table before its
parts are moved into its partition: `parts_folder`), the pinned inputs and what the ingest step
stages. Steps write and read them by type, never by
name. The folder is removed when the attempt commits, or when it fails under `segments run`.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import TypeVar

import polars as pl

from transforms.storage import lake
from transforms.storage.records import (
    Attempt,
    DiffStepResult,
    IngestStepResult,
    ManualStepResult,
    MaterializeStepResult,
    Record,
    ValidateStepResult,
)
from transforms.storage.roots import Root

R = TypeVar("R", bound=Record)

STAGED_AS: dict[type[Record], str] = {
    Attempt: "plan",
    IngestStepResult: "ingest_step",
    ValidateStepResult: "validate_step",
    ManualStepResult: "manual_step",
    MaterializeStepResult: "materialize_step",
    DiffStepResult: "diff_step",
}
"""The file (without `.json`) each staged record is kept in."""


class StagedFrame(StrEnum):
    """The frames steps hand on, each kept as `<name>.parquet`."""

    MANUAL_MEMBERS = "manual_members"
    """(segment_id, person_id) of every manual segment after the run's uploads."""
    MANUAL_ACTIONS = "manual_actions"
    """(segment_id, person_id, action): the last upload action per person and segment."""
    MEMBERS = "members"
    """Every segment's members, as the engine computed them (a distributed engine stages
    them as parts: `Staging.parts_folder`)."""
    SNAPSHOT = "snapshot"
    """The person ids of the run's people snapshot (parts too, from a distributed engine)."""


class Staging:
    """The staging folder of attempt `attempt` of run `day` in the lake `root`."""

    def __init__(self, root: Root, day: date, attempt: str) -> None:
        self.root = root
        self.folder = lake.staging("run", day, attempt)

    @classmethod
    def of(cls, root: Root, plan: Attempt) -> Staging:
        return cls(root, plan.day, plan.attempt)

    @property
    def inputs(self) -> str:
        """The folder of the definition and contract files the attempt pinned."""
        return f"{self.folder}/inputs"

    @property
    def ingest(self) -> str:
        """The folder the ingest step stages the landing files it read in."""
        return f"{self.folder}/ingest"

    def key(self, kind: type[Record]) -> str:
        return f"{self.folder}/{STAGED_AS[kind]}.json"

    def write(self, record: Record) -> None:
        """Stage `record`, replacing what an earlier try of its step staged."""
        self.root.write_bytes(self.key(type(record)), record.to_bytes())

    def read(self, kind: type[R]) -> R:
        return kind.from_bytes(self.root.read_bytes(self.key(kind)), self.key(kind))

    def find(self, kind: type[R]) -> R | None:
        """The staged record of `kind`, or None if none was staged."""
        return self.read(kind) if self.root.exists(self.key(kind)) else None

    def frame_key(self, name: StagedFrame) -> str:
        """The file frame `name` is staged in (`write_frame`)."""
        return f"{self.folder}/{name}.parquet"

    def write_frame(self, name: StagedFrame, frame: pl.DataFrame, statistics: bool = True) -> None:
        """Snappy: read once by a later step of the attempt, then removed (zstd's smaller files
        took half as long again to write and read)."""
        self.root.write_parquet(
            frame, self.frame_key(name), statistics=statistics, compression="snappy"
        )

    def read_frame(self, name: StagedFrame) -> pl.DataFrame:
        return self.root.read_parquet([self.frame_key(name)])

    def parts_folder(self, name: str) -> str:
        """The folder of the Parquet parts a distributed engine's executors write for `name`: a
        `StagedFrame`, or a table (membership, changes) before its parts are moved."""
        return f"{self.folder}/parts/{name}"

    def parts(self, name: str) -> list[str]:
        """Keys of the Parquet parts in `parts_folder(name)`, in part order (not their files'
        checksums or markers)."""
        return lake.part_keys(self.root, self.parts_folder(name))
