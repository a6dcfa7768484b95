"""The lake's tables and folders (docs/storage.md) and how the pipeline reads them back.

Every module that reads or writes the lake builds its keys here, so the layout can be read off
this file: Hive partitions `<table>/<column>=<D>/` with the files of each attempt named by it
(`part-<attempt>.parquet`, or `part-<attempt>-<NNNNN>.parquet` for a table written in several
parts, read in part order), quarantine beside them, the ingest step's manifests under
`ingest/`, the runs' manifests, reports and catalog under `runs/`, the feature state's partials
by ingest date and bucket. Readers go through the manifests, never through a folder listing, so
files of an unfinished attempt are never read.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime

import polars as pl

from transforms.errors import MissingInputError
from transforms.storage.records import IngestReport
from transforms.storage.roots import Root

ATTEMPT = re.compile(r"\d{8}T\d{12}-[0-9a-f]{6}")


def new_attempt() -> str:
    """A unique attempt name that sorts by start time: `20261128T134512123456-1f2e3d`.

    Files are written under their attempt's name; the clock only orders attempts for clean-up
    (see `transforms.storage.catalog`) and never enters a result."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"


def attempt_of(key: str) -> str | None:
    """The attempt name inside a key, if it has one."""
    match = ATTEMPT.search(key)
    return match.group(0) if match else None


PARTITION_COLUMNS = {
    "people": "snapshot_date",
    "events": "ingest_date",
    "membership": "run_date",
    "changes": "run_date",
    "feature_totals": "run_date",
    "feature_partials": "run_date",
}
STATE_TABLES = ("feature_totals", "feature_partials")
"""What runs keep for the next run to fold its features from
(`transforms.engines.feature_state`)."""


def partition(table: str, day: date) -> str:
    """`people/snapshot_date=D`, `events/ingest_date=D`, `membership/run_date=D`."""
    return f"{table}/{PARTITION_COLUMNS[table]}={day.isoformat()}"


def quarantine_partition(table: str, day: date) -> str:
    return f"quarantine/{partition(table, day)}"


def data_file(table: str, day: date, attempt: str) -> str:
    """The file attempt `attempt` writes in the partition of `table` for `day`."""
    return f"{partition(table, day)}/part-{attempt}.parquet"


def data_part(table: str, day: date, attempt: str, index: int) -> str:
    """The `index`th (from 0) of the files attempt `attempt` writes in the partition of `table`
    for `day` when it writes the table in several parts; the names sort in part order."""
    return f"{partition(table, day)}/part-{attempt}-{index:05d}.parquet"


def quarantine_file(table: str, day: date, attempt: str) -> str:
    return f"{quarantine_partition(table, day)}/part-{attempt}.parquet"


PART = re.compile(r"part-(\d+)-[^/]*\.parquet")
"""The name of a Parquet part file Spark writes (`part-00003-<uuid>-c000.zstd.parquet`): its
task's part number in the group; a task that writes several files counts them in `c000`..."""


def part_keys(root: Root, folder: str) -> list[str]:
    """Keys of the Parquet parts in `folder` of `root`, in part order (not their files'
    checksums or markers)."""
    found = []
    for info in root.list_files(folder):
        match = PART.fullmatch(info.name)
        if match:
            found.append((int(match.group(1)), info.key))
    return [key for _, key in sorted(found)]


def partial_file(
    day: date, ingested: date, bucket: date, attempt: str, index: int, label: str = ""
) -> str:
    """A feature partial of run `day`: the events of ingest date `ingested` (its `index`th
    events file, or range of people) in `bucket`; `label` tells apart the files an attempt
    writes for other features of the same events."""
    return (
        f"{partition(STATE_TABLES[1], day)}/ingest_date={ingested.isoformat()}"
        f"/bucket={bucket.isoformat()}/part-{attempt}-{label}{index}.parquet"
    )


STATE_WRITTEN_BY = re.compile(r"^([^/]+/run_date=(\d{4}-\d{2}-\d{2}))/")
"""A feature state key's (run partition, run date)."""

CATALOG = "runs/latest.json"
"""The catalog of committed runs (`transforms.storage.catalog`)."""


def manifest_folder(day: date) -> str:
    return f"runs/run_date={day.isoformat()}"


def manifest_path(day: date, attempt: str) -> str:
    return f"{manifest_folder(day)}/manifest-{attempt}.json"


def manifest_date(key: str) -> date:
    """The run date of a manifest's key (`manifest_path`)."""
    return date.fromisoformat(key.removeprefix("runs/run_date=")[:10])


def report_path(day: date, attempt: str) -> str:
    """The HTML report of a committed run, next to its manifest."""
    return f"{manifest_folder(day)}/report-{attempt}.html"


def ingest_folder(day: date) -> str:
    return f"ingest/ingest_date={day.isoformat()}"


def ingest_manifest(day: date) -> str:
    """Written last by a successful ingest of D: the files it published and its counts."""
    return f"{ingest_folder(day)}/manifest.json"


def validation_file(day: date, attempt: str, table: str) -> str:
    """Great Expectations' validation result of `table` by ingest attempt `attempt`."""
    return f"{ingest_folder(day)}/{attempt}/{table}.validation.json"


def fingerprint_file(day: date, attempt: str, table: str) -> str:
    """The row fingerprints of the rows of `table` ingest attempt `attempt` kept: they passed
    its validation, so the next ingest need not validate them again
    (`transforms.contracts.rows`)."""
    return f"{ingest_folder(day)}/{attempt}/{table}.fingerprints.parquet"


def staging(step: str, day: date, attempt: str | None = None) -> str:
    """Where an attempt of a run (`step` "run") or of an ingest keeps what one step hands to the
    next: `_staging/run_date=D/<attempt>/`. Never read as a table; removed once the attempt
    publishes, and by the next successful attempt of the date after a failure."""
    column = "ingest_date" if step == "ingest" else "run_date"
    folder = f"_staging/{column}={day.isoformat()}"
    return f"{folder}/{attempt}" if attempt else folder


def read_ingest_manifest(lake: Root, day: date) -> IngestReport | None:
    """The manifest of the last successful ingest of `day`, or None."""
    key = ingest_manifest(day)
    return IngestReport.from_bytes(lake.read_bytes(key), key) if lake.exists(key) else None


def ingested_days(lake: Root) -> list[date]:
    """Dates with a committed ingest, oldest first."""
    days = []
    for info in lake.list_files("ingest", recursive=True):
        match = re.fullmatch(r"ingest/ingest_date=(\d{4}-\d{2}-\d{2})/manifest\.json", info.key)
        if match:
            days.append(date.fromisoformat(match.group(1)))
    return sorted(days)


def people_files(lake: Root, day: date) -> list[str]:
    """Keys of the validated people snapshot of `day` (as its ingest manifest lists them)."""
    manifest = read_ingest_manifest(lake, day)
    if manifest is None:
        raise MissingInputError(
            f"no ingested people snapshot for {day} in {lake.url}",
            hint=f"run `segments ingest --date {day}` (or `segments run`, which ingests first)",
        )
    return manifest.outputs["people"]


def event_files(lake: Root, day: date) -> list[list[str]]:
    """Keys of the events a run of `day` sees, per ingest date (oldest first)."""
    days = [d for d in ingested_days(lake) if d <= day]
    if not days:
        raise MissingInputError(
            f"nothing ingested on or before {day} in {lake.url}",
            hint=f"run `segments ingest --date {day}` first",
        )
    return [read_ingest_manifest(lake, d).outputs["events"] for d in days]


def _scan(lake: Root, keys: list[str]) -> pl.LazyFrame:
    return pl.concat([lake.scan_parquet(key) for key in keys], how="vertical")


def scan_people(lake: Root, day: date) -> pl.LazyFrame:
    """The validated people snapshot of `day`."""
    return _scan(lake, people_files(lake, day))


def earlier_events(lake: Root, day: date) -> tuple[dict[date, str], list[str]]:
    """({each date ingested before `day`: its ingest attempt}, the keys of their events)."""
    manifests = {d: read_ingest_manifest(lake, d) for d in ingested_days(lake) if d < day}
    attempts = {d: manifest.attempt for d, manifest in manifests.items()}
    return attempts, [key for manifest in manifests.values() for key in manifest.outputs["events"]]


def resent_events(lake: Root, day: date, event_ids: pl.Series) -> tuple[dict[date, str], pl.Series]:
    """({each date ingested before `day`: its ingest attempt}, which of `event_ids` their
    events already hold).

    Reads only the event_id column of the earlier dates and looks each up among `event_ids`
    (a day's events, small next to the history)."""
    attempts, keys = earlier_events(lake, day)
    if not keys:
        return attempts, pl.Series("event_id", [], dtype=pl.String)
    earlier = _scan(lake, keys).select("event_id")
    found = earlier.filter(pl.col("event_id").is_in(event_ids.implode())).collect()
    return attempts, found.get_column("event_id")


def checked_against_earlier(lake: Root, days: list[date]) -> bool:
    """Whether the ingest of each of `days` dropped the events that earlier ones of `days`
    hold now, so together they hold each event_id once.

    So it is when each date was ingested after every earlier one (attempt names sort by start
    time) and checked their events, at the attempts their manifests name now (where recorded).
    A date ingested again after a later one was may now hold events the later one kept: the
    later one checked against its events of before."""
    before: dict[str, str] = {}  # the dates of `days` already seen: their ingest's attempt
    for day in days:
        manifest = read_ingest_manifest(lake, day)
        report = manifest.tables["events"]
        if before and manifest.attempt <= max(before.values()):
            return False
        if not set(before) <= set(report.checked_against):
            return False
        checked = report.checked_attempts
        if checked is not None and any(checked.get(d) != a for d, a in before.items()):
            return False
        before[day.isoformat()] = manifest.attempt
    return True


def scan_events(lake: Root, day: date) -> pl.LazyFrame:
    """Every event ingested on or before `day`, once per event_id (the first ingest wins).

    Ingest drops re-sent events within a day, and events that dates ingested before it already
    hold; when the dates were ingested in order, nothing is left to deduplicate. Otherwise (a
    date ingested, or ingested again, after a later one, or by a version that did not check)
    the first ingest date wins here."""
    per_day = event_files(lake, day)
    events = _scan(lake, [key for keys in per_day for key in keys])
    days = [d for d in ingested_days(lake) if d <= day]
    if checked_against_earlier(lake, days):
        return events
    return events.unique(subset="event_id", keep="first")
