"""Committing a run on a lake that may be an object store (docs/lifecycle.md, "Commit").

1. data files are written under a fresh attempt name (`part-<attempt>.parquet`, or
   `part-<attempt>-<NNNNN>.parquet` for the parts of a table Spark's executors wrote into the
   attempt's staging folder and that are moved from there: `place_parts`);
2. the run's manifest is written as one object that must not exist yet
   (`runs/run_date=D/manifest-<attempt>.json`, `If-None-Match: *`);
3. the catalog `runs/latest.json`, which lists the committed manifest of every run date, is
   replaced by compare-and-swap (`If-Match: <version read at the start>`); its `latest` date
   never moves backwards. This is the commit point: a run is visible once the catalog names
   its manifest. Two writers cannot both succeed: the loser's swap fails, it removes its own
   files and reports `ConcurrentRunError` (a retry starts from the winner's result);
4. files of other attempts of D that started before this one and never committed (crashed or
   lost) are removed. Attempt names start with the time the attempt read the catalog; an
   attempt that started earlier read the catalog before this commit, so its swap can no longer
   succeed and its files are garbage. Attempts that started later are left alone: they may
   still commit.

A rerun of a committed date supersedes the run it replaces, whose files a reader may be reading
at that moment (it took the list from the old manifest). They stay, with their manifest, for
`keep_superseded_files_for` after the rerun commits: the catalog lists each superseded manifest
with the time it was superseded, and the first commit after that period removes its files
(before its own swap, so a reader never sees a listed file vanish). Until then the partition
folder of a rerun date holds both attempts' files: read through a manifest, never a listing.

A crash at any step leaves the previous catalog, and so every committed run, intact; the next
attempt cleans up after the crashed one. Readers go through the catalog and manifests only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from transforms.errors import ConcurrentRunError, MissingInputError
from transforms.logs import RESULT
from transforms.storage import lake
from transforms.storage.publish import publish
from transforms.storage.records import Catalog, CatalogFile, RunManifest
from transforms.storage.roots import Root

log = logging.getLogger("segments.commit")
TABLES = ("membership", "changes")


def read_catalog(root: Root) -> Catalog:
    found = root.read_versioned(lake.CATALOG)
    if found is None:
        return Catalog()
    data, version = found
    return CatalogFile.from_bytes(data, lake.CATALOG).catalog(version)


def read_manifest(root: Root, catalog: Catalog, day: date) -> RunManifest | None:
    """The committed manifest of run `day`, or None if `day` has no committed run."""
    key = catalog.runs.get(day.isoformat())
    return RunManifest.from_bytes(root.read_bytes(key), key) if key else None


def read_table(root: Root, manifest: RunManifest, table: str) -> pl.DataFrame:
    """A committed table of a run, read from exactly the files its manifest lists."""
    return root.read_parquet(manifest.files[table])


def scan_table(root: Root, manifest: RunManifest, table: str) -> pl.LazyFrame:
    """A committed table of a run as a lazy scan of exactly its manifest's files, for reading
    a filtered part of it."""
    return pl.concat([root.scan_parquet(key) for key in manifest.files[table]])


def manifest_before(root: Root, catalog: Catalog, day: date) -> RunManifest | None:
    """The manifest of the latest committed run before `day`, or None when there is none."""
    previous = catalog.previous(day)
    return read_manifest(root, catalog, previous) if previous else None


def members_before(
    root: Root, catalog: Catalog, day: date, segment_ids: list[str], columns: dict[str, Any]
) -> pl.DataFrame:
    """`columns` (names and types) of the membership rows of `segment_ids` in the latest
    committed run before `day`; no rows when there is none."""
    manifest = manifest_before(root, catalog, day)
    if manifest is None:
        return pl.DataFrame(schema=columns)
    return (
        scan_table(root, manifest, "membership")
        .filter(pl.col("segment_id").is_in(segment_ids))
        .select(list(columns))
        .collect()
        .cast(columns)
    )


@contextmanager
def superseded(root: Root, day: date, own: list[str]) -> Iterator[None]:
    """While writing an attempt's files: a newer attempt that already committed may be removing
    them. Then this attempt is stale: clean up and say so (a retry starts from the winner)."""
    try:
        yield
    except FileNotFoundError as exc:
        root.delete(own)
        raise ConcurrentRunError(
            f"a newer attempt for {day} committed to {root.url} while this one was writing",
            hint="run it again if needed: the retry starts from what committed",
        ) from exc


def write_tables(
    root: Root, day: date, attempt: str, tables: dict[str, pl.DataFrame]
) -> dict[str, list[str]]:
    """Step 1: the data files of attempt `attempt` of run `day`; nobody reads them until a
    manifest lists them. Returns the keys written per table."""
    keys = {table: [lake.data_file(table, day, attempt)] for table in tables}
    with superseded(root, day, [k for ks in keys.values() for k in ks]):
        for table, frame in tables.items():
            root.write_parquet(frame, keys[table][0])
    return keys


def place_parts(
    root: Root, day: date, attempt: str, staged: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Step 1 for tables written elsewhere in parts: move the part files `staged` lists per
    table (keys, in part order) into the table's partition as the data files of attempt
    `attempt` of run `day` (`lake.data_part`), after removing the ones an earlier try of the
    attempt left there. A move within the root: on an object store, a copy by the store.
    Returns the keys per table, in part order."""
    keys = {
        table: [lake.data_part(table, day, attempt, index) for index in range(len(parts))]
        for table, parts in staged.items()
    }
    with superseded(root, day, [k for ks in keys.values() for k in ks]):
        root.delete(
            [
                info.key
                for table in staged
                for info in root.list_files(lake.partition(table, day))
                if lake.attempt_of(info.key) == attempt
            ]
        )
        for table, parts in staged.items():
            for source, target in zip(parts, keys[table], strict=True):
                root.move(source, target)
    return keys


def commit(
    root: Root,
    catalog: Catalog,
    manifest: RunManifest,
    keep_superseded_for: timedelta = timedelta(hours=24),
) -> None:
    """Steps 2-4: publish the `manifest` of a run, whose files (from `write_tables`) it lists,
    swap the catalog, clean up.

    `catalog` and the manifest's attempt come from the start of the run (`read_catalog`,
    `new_attempt`): if another run committed since, the swap fails and this attempt is rolled
    back. The run this one replaces (a rerun of its date) is superseded: kept for
    `keep_superseded_for`.
    """
    day, attempt = date.fromisoformat(manifest.run_date), manifest.attempt
    manifest_key = lake.manifest_path(day, attempt)
    written = [k for keys in manifest.files.values() for k in keys]
    if not publish(root, manifest_key, manifest, None):
        root.delete(written)
        raise ConcurrentRunError(f"manifest {manifest_key} already exists")
    now = datetime.now(UTC)
    superseded = _remove_expired(root, catalog.superseded, now - keep_superseded_for)
    replaced = catalog.runs.get(day.isoformat())
    if replaced is not None:
        superseded[replaced] = now.isoformat(timespec="seconds")
    runs = {**catalog.runs, day.isoformat(): manifest_key}
    body = CatalogFile(
        latest=max(runs),
        runs=dict(sorted(runs.items())),
        committed_by=attempt,
        superseded=dict(sorted(superseded.items())) or None,
    )
    if not publish(root, lake.CATALOG, body, catalog.version):
        root.delete([*written, manifest_key])
        raise ConcurrentRunError(
            f"another run committed to {root.url} while run {day} was computing",
            hint="run it again: the retry starts from the run that committed",
        )
    clean_up(root, day, attempt, kept={lake.attempt_of(key) for key in superseded})
    log.info("committed run %s (attempt %s)", day, attempt, extra=RESULT)


def _remove_expired(root: Root, superseded: dict[str, str], before: datetime) -> dict[str, str]:
    """Delete the files of the superseded runs replaced before `before` (every file of their
    attempt in their date's folders); the ones still kept."""
    kept = {}
    for key, since in superseded.items():
        if datetime.fromisoformat(since) > before:
            kept[key] = since
            continue
        root.delete(attempt_files(root, lake.manifest_date(key), lake.attempt_of(key)))
        log.info("removed the files of %s, superseded at %s", key, since)
    return kept


def run_folders(day: date) -> list[str]:
    """Where the attempts of run `day` write: its tables, feature state and manifests."""
    folders = [lake.partition(t, day) for t in (*TABLES, *lake.STATE_TABLES)]
    return [*folders, lake.manifest_folder(day)]


def attempt_files(root: Root, day: date, attempt: str | None) -> list[str]:
    """Keys of every file attempt `attempt` of run `day` wrote in the run's folders."""
    return [
        info.key
        for folder in run_folders(day)
        for info in root.list_files(folder, recursive=True)
        if lake.attempt_of(info.key) == attempt
    ]


def clean_up(root: Root, day: date, attempt: str, kept: set[str | None] = frozenset()) -> None:
    """Remove what attempts of `day` older than `attempt` left (data files, manifests), except
    the superseded runs in `kept`, and the staging folders of this attempt and the older ones."""
    remove_older_attempts(root, run_folders(day), attempt, kept)
    staging = lake.staging("run", day)
    finished = {lake.attempt_of(info.key) for info in root.list_files(staging, recursive=True)}
    for other in sorted(a for a in finished if a is not None and a <= attempt):
        root.delete_folder(lake.staging("run", day, other))
    if not root.list_files(staging, recursive=True):
        root.delete_folder(staging)


def remove_older_attempts(
    root: Root, folders: list[str], attempt: str, kept: set[str | None] = frozenset()
) -> None:
    """Delete files under `folders` written by attempts that started before `attempt`, except
    those of the attempts in `kept`."""
    stale = []
    for folder in folders:
        for info in root.list_files(folder, recursive=True):
            other = lake.attempt_of(info.key)
            if other is not None and other < attempt and other not in kept:
                stale.append(info.key)
    root.delete(stale)


def committed_files(root: Root, table: str, day: date | None = None) -> tuple[date, list[str]]:
    """(run date, URLs of the files) of a table of a committed run: `day`, or the latest.

    What an engine should read: exactly the files the run's manifest lists."""
    catalog = read_catalog(root)
    day = day or catalog.latest
    manifest = read_manifest(root, catalog, day) if day else None
    if manifest is None:
        raise MissingInputError(
            f"no committed run {'of ' + day.isoformat() if day else 'yet'} in {root.url}",
            hint="run `segments run --date D` first",
        )
    return day, [root.url_of(key) for key in manifest.files[table]]
