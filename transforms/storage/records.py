"""The records runs write to the lake and read back, as typed models.

- `RunManifest`: `runs/run_date=D/manifest-<attempt>.json`, what a committed run did;
- `CatalogFile`: `runs/latest.json`, the committed runs (read as a `Catalog`);
- `IngestReport`: `ingest/ingest_date=D/manifest.json`, what the ingest of D published, with
  a `TableReport` per table (also staged alone between the ingest's two halves);
- `FeatureState`: the manifest's `feature_state`, the state a run keeps for the next one to
  fold its event features from (`transforms.engines.feature_state`);
- `Attempt`: the plan an attempt of a run saves when it begins;
- one result per step of a run (`IngestStepResult` ... `DiffStepResult`), staged for the steps
  after it; the commit's result is the `RunManifest`.

Each top-level record carries a `format_version`; a record written before it was recorded
reads as version 1. The JSON keys are those the records always had, so files written before
these models read as they are, and readers of the files written now find the same keys.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from transforms.errors import RecordError

FORMAT_VERSION = 1
"""The version of the records this code writes, and the latest it reads."""


class Part(BaseModel):
    """A part of a record: no version of its own (its record's applies)."""

    model_config = ConfigDict(extra="ignore")


class Record(Part):
    """A record stored as one JSON file of the lake."""

    format_version: int = FORMAT_VERSION

    @field_validator("format_version")
    @classmethod
    def _readable(cls, version: int) -> int:
        if version > FORMAT_VERSION:
            raise ValueError(
                f"format_version {version} was written by a newer version of segments (this one"
                f" reads up to {FORMAT_VERSION}): upgrade segments"
            )
        return version

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> Self:
        """The record stored at `key` (named in the error when it cannot be read)."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise RecordError(
                f"{key} cannot be read as a {cls.__name__}: {problem['msg']}"
                + (f" (at {where})" if where else ""),
                hint="a damaged file: restore it from the bucket's versions or a backup, or"
                " rerun the date that wrote it; a newer format: upgrade segments",
            ) from exc


# --- the catalog of committed runs ------------------------------------------------------------
class Catalog(Part):
    """The committed runs, as the catalog said when it was read."""

    model_config = ConfigDict(frozen=True)

    runs: dict[str, str] = Field(default_factory=dict)
    """Run date (ISO) -> key of its committed manifest."""
    version: str | None = None
    """The catalog object's version tag, for the compare-and-swap; None if it does not exist."""
    committed_by: str | None = None
    """The attempt that made the latest commit; attempts that started before it cannot commit."""
    superseded: dict[str, str] = Field(default_factory=dict)
    """Manifest key of a run replaced by a rerun -> when it was replaced (ISO, UTC); its files
    are kept for readers until `keep_superseded_files_for` has passed."""

    @property
    def dates(self) -> list[date]:
        return sorted(date.fromisoformat(d) for d in self.runs)

    @property
    def latest(self) -> date | None:
        return self.dates[-1] if self.runs else None

    @property
    def next_date(self) -> date | None:
        """The date after the latest committed run: the run that applies what is dropped in
        the inbox now (None before the first commit)."""
        return self.latest + timedelta(days=1) if self.latest else None

    def previous(self, day: date) -> date | None:
        """The latest committed run with a date before `day`."""
        earlier = [d for d in self.dates if d < day]
        return earlier[-1] if earlier else None

    def later(self, day: date) -> list[date]:
        return [d for d in self.dates if d > day]


class CatalogFile(Record):
    """`runs/latest.json`: the committed manifest of every run date (`superseded` only when a
    rerun's replaced run is still kept)."""

    latest: str
    runs: dict[str, str]
    committed_by: str | None = None
    superseded: dict[str, str] | None = None

    def catalog(self, version: str | None) -> Catalog:
        return Catalog(
            runs=self.runs,
            version=version,
            committed_by=self.committed_by,
            superseded=self.superseded or {},
        )

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=1).encode()


# --- ingest -----------------------------------------------------------------------------------
class Fingerprint(Part):
    """A landing file an ingest read (`transforms.ingest.landing.fingerprint`)."""

    key: str
    """Relative to the landing root."""
    size: int
    modified: str | None = None
    """ISO 8601 in UTC; None when the store gives no time."""
    etag: str | None = None
    """The object store's; None on local folders."""


class TableReport(Record):
    """What ingesting one table of one date did."""

    table: str
    files: list[str] = Field(default_factory=list)
    rows_read: int = 0
    rows_written: int = 0
    quarantined: int = 0
    duplicates_dropped: int = 0
    """Re-sent events dropped: an event_id seen earlier in the day's files, or ingested on an
    earlier date."""
    checked_against: list[str] = Field(default_factory=list)
    """Events only: the earlier ingest dates whose events were checked for re-sent ones."""
    checked_attempts: dict[str, str] | None = None
    """Events only: the ingest attempt of each date of `checked_against` whose events were
    checked (None in manifests written before it was recorded)."""
    fingerprints: list[Fingerprint] | None = None
    """The landing files read. None in manifests written before fingerprints were recorded."""
    broken_rules: dict[str, int] = Field(default_factory=dict)
    undeclared_keys: dict[str, int] = Field(default_factory=dict)
    """Keys of object columns that the contract does not declare, dropped at ingest:
    `<column>.<key>` -> how many rows held a value under it."""
    ignored_columns: dict[str, list[str]] = Field(default_factory=dict)
    missing_columns: dict[str, list[str]] = Field(default_factory=dict)
    validation_success: bool = True
    rows_validated: int | None = None
    """Rows Great Expectations checked: those that did not pass the same suite in the snapshot
    of `validated_against` (None in manifests written before it was recorded)."""
    validated_against: str | None = None
    """The ingest date of the snapshot whose rows' fingerprints were reused; None when every
    row was validated."""
    suite_hash: str | None = None
    """What the kept rows passed (`transforms.contracts.rows.suite_hash`); its fingerprints
    are reused only under the same one."""
    seconds: dict[str, float] = Field(default_factory=dict)
    """Wall time per step: read, validate, split, write."""
    validation_seconds: dict[str, float] = Field(default_factory=dict)
    """The validate step split: waiting for Great Expectations' import and building its suite
    (`import`, when rows needed it), converting to pandas, and inside Great Expectations."""


class IngestReport(Record):
    """What an ingest of a date published: its manifest."""

    date: str
    attempt: str
    tables: dict[str, TableReport]
    outputs: dict[str, list[str]]
    """Keys written per output: `people`, `events`, `quarantine/<table>`,
    `validation/<table>`, `fingerprints/<table>` (snapshot tables)."""

    def to_json(self) -> dict[str, object]:
        """As `segments ingest --json` prints it."""
        versions = {"format_version": True, "tables": {"__all__": {"format_version"}}}
        return self.model_dump(mode="json", exclude=versions)


# --- event feature state ----------------------------------------------------------------------
class FeatureState(Record):
    """The feature state a run keeps for the next one (`transforms.engines.feature_state`)."""

    format: int = 1
    """The format of the state's files (1 where it was not recorded); a run folds only state
    of its own format."""
    features: list[str]
    """The foldable features the state holds."""
    totals: list[str]
    """Keys of the totals files."""
    partials: list[tuple[date, date, str]]
    """(ingest date, bucket, key) of each partial file a later run can still count."""
    events: dict[date, list[str]]
    """The events files of each ingest date the state was computed from."""


# --- manual uploads ---------------------------------------------------------------------------
class UploadReport(Part):
    """What applying one upload did."""

    file: str
    segment_id: str
    action: str
    rows: int = 0
    applied: int = 0
    unknown: list[str] = Field(default_factory=list)
    unknown_count: int = 0
    ambiguous_emails: list[str] = Field(default_factory=list)
    ambiguous_count: int = 0
    notes: list[str] = Field(default_factory=list)
    errors_file: str | None = None
    """Inbox key of the CSV listing every row not applied (line, value, problem), if any."""


class Refusal(Part):
    """An upload that could not be applied, filed under `_rejected/<D>/`."""

    file: str
    moved_to: str
    problems: list[str]


class ManualUploads(Part):
    """The uploads a run applied, in order, and those refused for its date."""

    applied: list[UploadReport] = Field(default_factory=list)
    rejected: list[Refusal] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    """Keys under `_processed/<D>/` of the files applied, in order."""


# --- a run ------------------------------------------------------------------------------------
class SegmentCounts(Part):
    size: int
    entered: int
    exited: int


class DefinitionChanges(Part):
    new: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)


class RunManifest(Record):
    """`runs/run_date=D/manifest-<attempt>.json`: what a committed run did."""

    previous_run_date: str | None
    definitions: dict[str, str]
    """Content hash of each segment's definition."""
    definitions_changed: DefinitionChanges = Field(default_factory=DefinitionChanges)
    definitions_hash: str
    people: int
    engine: str = "polars"
    features: str = "recomputed"
    """"folded" from the previous run's state, or why they were recomputed."""
    feature_state: FeatureState | None = None
    rows: dict[str, int]
    segments: dict[str, SegmentCounts]
    inputs: dict[str, dict[str, str]] | None = None
    """Hashes of the pinned definition and contract files, per folder and file name."""
    ingest: str | None = None
    """Key of the ingest manifest of the run's date."""
    ingested_by_run: bool = False
    ingest_reason: str | None = None
    landing_unread: list[str] = Field(default_factory=list)
    manual: ManualUploads = Field(default_factory=ManualUploads)
    seconds: dict[str, float] = Field(default_factory=dict)
    run_date: str
    attempt: str
    files: dict[str, list[str]]
    """Keys of the run's files per table (its data and its feature state)."""
    status: str = "committed"


class Attempt(Record):
    """One attempt at a run: what `begin` saw, which every later step works from."""

    model_config = ConfigDict(frozen=True)

    day: date
    attempt: str
    catalog: Catalog
    accept_shrink: bool = False
    engine: str = "polars"
    full: bool = False
    """Recompute the event features from the events instead of folding the previous run's
    state (`transforms.engines.feature_state`)."""
    reingest: bool = False
    """Read the landing files of D again even if they did not change since D was ingested."""
    inputs: dict[str, dict[str, str]] | None = None
    """Hashes of the definition and contract files `begin` pinned, per folder and file name;
    None for an attempt begun before inputs were pinned (it reads the configured folders)."""


# --- the results steps hand on ----------------------------------------------------------------
class IngestStepResult(Record):
    ingested: bool
    why: str | None = None
    """Why the run read D's landing files (not ingested yet, changed since, asked for)."""
    rows_read: dict[str, int] = Field(default_factory=dict)
    seconds: float | None = None

    def summary(self) -> dict[str, object]:
        return self.model_dump(include={"ingested", "why", "rows_read"}, exclude_defaults=True)


class ValidateStepResult(Record):
    ingested: bool
    rows_written: dict[str, int] = Field(default_factory=dict)
    quarantined: dict[str, int] = Field(default_factory=dict)
    seconds: float | None = None

    def summary(self) -> dict[str, object]:
        return self.model_dump(
            include={"ingested", "rows_written", "quarantined"}, exclude_defaults=True
        )


class ManualStepResult(Record):
    uploads: ManualUploads
    seconds: float

    def summary(self) -> dict[str, object]:
        return {"applied": len(self.uploads.applied), "rejected": len(self.uploads.rejected)}


class MaterializeStepResult(Record):
    people: int
    members: int
    segments: list[str]
    features: str
    """How the event features were computed: "folded", or why they were recomputed."""
    feature_state: FeatureState | None = None
    files: dict[str, list[str]] = Field(default_factory=dict)
    """Keys of the feature state files the attempt wrote, per table."""
    seconds: dict[str, float]

    def summary(self) -> dict[str, object]:
        return {"people": self.people, "members": self.members, "features": self.features}


class DiffStepResult(Record):
    files: dict[str, list[str]]
    rows: dict[str, int]
    segments: dict[str, SegmentCounts]
    seconds: float

    def summary(self) -> dict[str, object]:
        return {"memberships": self.rows["membership"], "changes": self.rows["changes"]}
