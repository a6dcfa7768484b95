"""Committed runs published as Apache Iceberg tables (docs/tables.md, "Reading the tables").

The run catalog (`runs/latest.json`) stays the pipeline's source of truth; after a run commits,
`publish_runs` copies it into an Iceberg catalog, namespace `segments`:

- `membership` and `changes`, partitioned by `run_date`: publishing run D replaces D's partition
  in one snapshot (the files of the partition before it are removed from the table, the new ones
  added, in one commit) and tags that snapshot `run-D`;
- `membership_current`: the latest committed run only, replaced whole in one snapshot.

Each snapshot's summary names the run date, the attempt and the manifest it was published from
(`segments.run-date`, `segments.attempt`, `segments.manifest`). A run is published when the
snapshot its tag names came from the manifest the run catalog names now; otherwise (never
published, a crash between commit and publish, or a rerun since) publishing it again replaces
its partition. So publishing twice is a no-op, and any sequence of interrupted publishes
followed by one that finishes leaves what one publish leaves.

The rows are copied into the Iceberg warehouse rather than referenced in the lake: the lake's
files carry `run_date` only in their folder name (Iceberg takes a partition value from the
file's own column), and a rerun's superseded lake files are removed after
`keep_superseded_files_for`, while a tag keeps its snapshot readable for good.

Snapshots that no tag or table head names are expired once they are older than
`keep_superseded_files_for` (a reader that planned its scan on one has that long to finish);
tagged snapshots are kept.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl
from pyiceberg.catalog import Catalog as IcebergCatalog
from pyiceberg.catalog import load_catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, EqualTo
from pyiceberg.io.pyarrow import parquet_file_to_data_file, schema_to_pyarrow
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update.snapshot import ManageSnapshots
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from transforms.config import Settings
from transforms.contracts.odcs import POLARS_TYPES, TableContract, load_contract
from transforms.engines.registry import FileColumn, load_engine
from transforms.errors import ConcurrentRunError, ConfigError, MissingInputError, SegmentsError
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.records import Catalog, RunManifest
from transforms.storage.roots import Root

log = logging.getLogger("segments.publish")
NAMESPACE = "segments"
CONTRACT_OF = {"membership": "membership", "changes": "changes", "membership_current": "membership"}
"""Each Iceberg table and the data contract its schema comes from."""
PER_RUN = ("membership", "changes")
"""The tables that keep every run, one `run_date` partition each."""
RUN_DATE, ATTEMPT, MANIFEST = "segments.run-date", "segments.attempt", "segments.manifest"
"""The snapshot summary properties naming the run a snapshot was published from."""

ICEBERG_TYPES = {
    "string": StringType(),
    "date": DateType(),
    "timestamp": TimestamptzType(),
    "integer": LongType(),
    "number": DoubleType(),
    "boolean": BooleanType(),
}
"""Contract logical types and the Iceberg types they are published as."""
LOGICAL_TYPES = {iceberg: logical for logical, iceberg in ICEBERG_TYPES.items()}

S3_PROPERTIES = {
    "endpoint_url": "s3.endpoint",
    "key": "s3.access-key-id",
    "secret": "s3.secret-access-key",
    "token": "s3.session-token",
}
"""The lake's fsspec/s3fs storage options and the pyiceberg FileIO properties they become."""


def tag_of(day: date) -> str:
    """The tag of run `day`'s snapshot in `membership` and `changes`: `run-YYYY-MM-DD`."""
    return f"run-{day.isoformat()}"


def catalog_properties(settings: Settings) -> dict[str, str]:
    """The pyiceberg catalog properties of a workspace: its `catalog` setting, or for a local
    lake the embedded SQLite catalog at `<lake>/catalog.db` with its warehouse in
    `<lake>/iceberg/`. The lake's storage options fill in the S3 properties it does not set."""
    lake = Root(settings.lake, settings.storage_options)
    if settings.catalog:  # (its name is always "segments": a `name` key would clash)
        properties = {k: str(v) for k, v in settings.catalog.items() if k != "name"}
    elif lake.is_local:
        folder = lake.local_path("")
        properties = {
            "type": "sql",
            "uri": f"sqlite:///{folder}/catalog.db",
            "warehouse": f"file://{folder}/iceberg",
        }
    else:
        raise ConfigError(
            f"the lake {settings.lake} is on an object store, and no Iceberg catalog is set to"
            " publish its runs to",
            hint="add a `catalog:` to segments.yaml with pyiceberg catalog properties, e.g."
            " {type: sql, uri: 'sqlite:////var/lib/segments/catalog.db', warehouse:"
            " 's3://bucket/iceberg'} (`segments run --no-publish` runs without publishing)",
        )
    options = dict(settings.storage_options)
    options.update(options.pop("client_kwargs", None) or {})
    for option, prop in S3_PROPERTIES.items():
        if option in options and prop not in properties:
            properties[prop] = str(options[option])
    if "region_name" in options and "s3.region" not in properties:
        properties["s3.region"] = str(options["region_name"])
    return properties


def open_catalog(settings: Settings) -> IcebergCatalog:
    """The workspace's Iceberg catalog, with the namespace created."""
    properties = catalog_properties(settings)
    if not settings.catalog:  # the embedded one: SQLite creates its file, not the lake folder
        lake = Root(settings.lake)
        lake.fs.makedirs(lake.local_path(""), exist_ok=True)
    catalog = load_catalog(NAMESPACE, **properties)
    catalog.create_namespace_if_not_exists(NAMESPACE)
    return catalog


def iceberg_schema(contract: TableContract) -> Schema:
    """The Iceberg schema of a contract's table: its columns in order, required where the
    contract says not null."""
    return Schema(
        *(
            NestedField(
                index,
                column.name,
                ICEBERG_TYPES[column.logical_type],
                required=column.required,
                doc=column.description or None,
            )
            for index, column in enumerate(contract.columns, start=1)
        )
    )


TABLE_PROPERTIES = {
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}
"""Each commit removes the table's metadata files beyond the last 20."""


def open_tables(settings: Settings, catalog: IcebergCatalog) -> dict[str, Table]:
    """The three tables, created on first use from the contracts (partitioned by run_date but
    for `membership_current`). A column a contract added since is added (optional: the runs
    published before have no value for it); a column it dropped stays, made optional."""
    tables = {}
    for name, contract_name in CONTRACT_OF.items():
        schema = iceberg_schema(load_contract(settings.contracts, contract_name))
        identifier = f"{NAMESPACE}.{name}"
        try:  # not create_table_if_not_exists: it writes a metadata file before it looks
            table = catalog.load_table(identifier)
        except NoSuchTableError:
            spec = UNPARTITIONED_PARTITION_SPEC
            if name in PER_RUN:
                source = schema.find_field("run_date").field_id
                spec = PartitionSpec(PartitionField(source, 1000, IdentityTransform(), "run_date"))
            table = catalog.create_table_if_not_exists(
                identifier, schema=schema, partition_spec=spec, properties=TABLE_PROPERTIES
            )
        _check_location(settings, table)
        _follow_contract(table, schema)
        tables[name] = table
    return tables


def _check_location(settings: Settings, table: Table) -> None:
    """The embedded catalog keeps absolute paths: refuse one copied with its lake from
    elsewhere, whose tables would still write into the original lake's warehouse."""
    if settings.catalog:
        return
    warehouse = catalog_properties(settings)["warehouse"]
    if not table.location().startswith(warehouse):
        raise ConfigError(
            f"the Iceberg catalog in {settings.lake} keeps its tables at {table.location()},"
            f" outside this lake's {warehouse}: the lake was copied or moved with its catalog",
            hint="delete catalog.db and iceberg/ in the lake, then `segments publish --all`"
            " publishes every run again here",
        )


def _follow_contract(table: Table, schema: Schema) -> None:
    names = table.schema().column_names
    added = [field for field in schema.fields if field.name not in names]
    dropped = [f for f in table.schema().fields if f.required and f.name not in schema.column_names]
    if not added and not dropped:
        return
    with table.update_schema() as update:
        for field in added:
            update.add_column(field.name, field.field_type, doc=field.doc)
        for field in dropped:
            update.make_column_optional(field.name)


def _published_from(table: Table, ref: str) -> str | None:
    """The manifest the snapshot `ref` (a tag or `main`) of `table` was published from."""
    found = table.metadata.refs.get(ref)
    if found is None:
        return None
    snapshot = table.snapshot_by_id(found.snapshot_id)
    return snapshot.summary[MANIFEST] if snapshot and snapshot.summary else None


def _write(table: Table, frame: pl.DataFrame, day: date) -> list[DataFile]:
    """Run `day`'s rows (a frame of the lake's table) as one Parquet data file of `table`, with
    their run_date and the table's field ids; none for no rows. Polars writes it (pyiceberg's
    own writer splits the rows by partition first, several times slower for the one partition
    a run has); pyiceberg reads its footer back for the file's statistics."""
    if frame.is_empty():
        return []
    schema = table.schema()
    frame = frame.with_columns(pl.lit(day).alias("run_date"))
    rows = frame.select(  # a column added to the contract after this run: NULL
        pl.col(field.name)
        if field.name in frame.columns
        else pl.lit(None, POLARS_TYPES[LOGICAL_TYPES[field.field_type]]).alias(field.name)
        for field in schema.fields
    )
    folder = f"run_date={day.isoformat()}/" if table.spec().fields else ""
    location = f"{table.location()}/data/{folder}{uuid.uuid4()}.parquet"
    with table.io.new_output(location).create(overwrite=True) as stream:
        rows.write_parquet(stream, arrow_schema=schema_to_pyarrow(schema))
    return [parquet_file_to_data_file(table.io, table.metadata, location)]


def _replace(
    table: Table, files: list[DataFile], day: date | None, summary: dict[str, str]
) -> None:
    """One snapshot of `table` that replaces the rows of run `day` (all its rows when `day` is
    None) with those of `files`, tagged `run-D` when `day` is given."""
    which = EqualTo("run_date", day.isoformat()) if day else AlwaysTrue()
    replaced = [task.file for task in table.scan(row_filter=which).plan_files()]
    with table.transaction() as transaction:
        # one snapshot: the replaced files out, the new ones in (pyiceberg's own overwrite
        # commits a delete and an append snapshot)
        update = transaction.update_snapshot(snapshot_properties=summary)
        with update.overwrite() if replaced else update.fast_append() as snapshot:
            for data_file in replaced:
                snapshot.delete_data_file(data_file)
            for data_file in files:
                snapshot.append_data_file(data_file)
        if day is not None:
            tag = tag_of(day)
            with ManageSnapshots(transaction) as manage:
                if tag in transaction.table_metadata.refs:
                    manage.remove_tag(tag)
                manage.create_tag(transaction.table_metadata.current_snapshot_id, tag)


@dataclass
class Published:
    """What `publish_runs` did: the runs whose tables it replaced (rows per table) and the
    time it took."""

    catalog: str
    """The catalog's address (its `uri`, without a password it may hold)."""
    runs: dict[str, dict[str, int]]
    seconds: float
    up_to_date: int


def _summary(manifest: RunManifest, key: str) -> dict[str, str]:
    return {RUN_DATE: manifest.run_date, ATTEMPT: manifest.attempt, MANIFEST: key}


def publish_runs(
    settings: Settings,
    days: list[date] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Published:
    """Publish the committed runs of `days` (every committed run when None) whose Iceberg
    snapshots are missing or come from another manifest, and `membership_current` when it does
    not hold the latest run; then expire old untagged snapshots.

    A run that cannot be read does not stop the others: they are published, then the error
    names it."""
    started = time.perf_counter()
    catalog = open_catalog(settings)
    # the tables before the run catalog: a rerun that commits and publishes in between makes
    # this publish's commits fail, instead of letting it publish the run the rerun replaced
    tables = open_tables(settings, catalog)
    lake = Root(settings.lake, settings.storage_options)
    runs = read_catalog(lake)
    published: dict[str, dict[str, int]] = {}
    membership_files: dict[date, list[DataFile]] = {}  # of the runs published here
    failed: dict[str, str] = {}
    up_to_date = 0
    try:
        for day in runs.dates if days is None else days:
            if day.isoformat() not in runs.runs:
                continue
            stale = [
                t for t in PER_RUN if _published_from(tables[t], tag_of(day)) != _key(runs, day)
            ]
            if not stale:
                up_to_date += 1
                continue
            if progress is not None:
                progress(f"{day}: publish {', '.join(stale)}")
            try:
                written = _publish_run(settings, runs, day, tables, stale)
            except (SegmentsError, OSError) as exc:
                failed[day.isoformat()] = str(exc)
                continue
            published[day.isoformat()] = {name: rows for name, (_, rows) in written.items()}
            if "membership" in written:
                membership_files[day] = written["membership"][0]
        if runs.latest is not None and _published_from(
            tables["membership_current"], "main"
        ) != _key(runs, runs.latest):
            if progress is not None:
                progress(f"{runs.latest}: publish membership_current")
            try:
                rows = _publish_current(
                    settings,
                    runs,
                    tables["membership_current"],
                    (tables["membership"], membership_files.get(runs.latest)),
                )
                published.setdefault(runs.latest.isoformat(), {})["membership_current"] = rows
            except (SegmentsError, OSError) as exc:
                failed.setdefault(runs.latest.isoformat(), str(exc))
    except CommitFailedException as exc:
        raise ConcurrentRunError(
            f"another writer changed the Iceberg tables while publishing: {exc}",
            hint="run `segments publish` again: it publishes what is still missing",
        ) from exc
    if failed:
        shown = "; ".join(f"{day}: {problem}" for day, problem in failed.items())
        raise MissingInputError(
            f"runs committed in {lake.url} could not be published ({shown})"
            + (f"; published {', '.join(published)}" if published else ""),
            hint="a committed run whose files are gone is run again with `segments run --date"
            " D --rebuild-later`; then `segments publish`",
        )
    for table in tables.values():
        _expire(table, settings.keep_superseded_files_for)
    return Published(
        catalog=re.sub(r"//[^/@]*@", "//", catalog.properties.get("uri", catalog.name)),
        runs=published,
        seconds=round(time.perf_counter() - started, 3),
        up_to_date=up_to_date,
    )


def _key(runs: Catalog, day: date) -> str:
    return runs.runs[day.isoformat()]


def _data_files(
    settings: Settings, manifest: RunManifest, table: Table, name: str, day: date
) -> tuple[list[DataFile], int]:
    """Run `day`'s rows of the lake's table `name` as data files of `table`, and how many rows.
    A run of a distributed engine has its executors write them (`write_table_files`): only the
    files' footers are read here. Else `_write` writes them from this process."""
    engine = load_engine(manifest.engine)
    if not engine.distributed:
        frame = read_table(Root(settings.lake, settings.storage_options), manifest, name)
        return _write(table, frame, day), frame.height
    columns = [
        FileColumn(field.name, field.field_id, LOGICAL_TYPES[field.field_type], field.required)
        for field in table.schema().fields
    ]
    folder = f"run_date={day.isoformat()}/" if table.spec().fields else ""
    location = f"{table.location()}/data/{folder}{uuid.uuid4()}"
    written = engine.write_table_files(settings, manifest.files[name], location, columns, day)
    files = [parquet_file_to_data_file(table.io, table.metadata, url) for url in written]
    return files, sum(file.record_count for file in files)


def _publish_run(
    settings: Settings, runs: Catalog, day: date, tables: dict[str, Table], stale: list[str]
) -> dict[str, tuple[list[DataFile], int]]:
    """Replace run `day`'s partition of each table of `stale`; (data files, rows) per table."""
    manifest = read_manifest(Root(settings.lake, settings.storage_options), runs, day)
    written = {}
    for name in stale:
        written[name] = _data_files(settings, manifest, tables[name], name, day)
        _replace(tables[name], written[name][0], day, _summary(manifest, _key(runs, day)))
    return written


def _publish_current(
    settings: Settings,
    runs: Catalog,
    table: Table,
    published: tuple[Table, list[DataFile] | None],
) -> int:
    """Replace `membership_current` with the latest run's membership; its rows. When this
    publish wrote that run's `membership` files (`published`: the table, its files or None)
    from this process and the two tables have the same schema, the files are the same bytes:
    they are copied instead of written again from the lake (at 30M members, publishing a run
    took 3.5 s instead of 5.1-6.3 s). A distributed engine's executors write them again:
    nothing that large goes through this process."""
    day = runs.latest
    manifest = read_manifest(Root(settings.lake, settings.storage_options), runs, day)
    membership, files = published
    here = not load_engine(manifest.engine).distributed
    if files is not None and here and membership.schema() == table.schema():
        files = [_copied(data_file, table) for data_file in files]
        rows = sum(data_file.record_count for data_file in files)
    else:
        files, rows = _data_files(settings, manifest, table, "membership", day)
    _replace(table, files, None, _summary(manifest, _key(runs, day)))
    return rows


def _copied(data_file: DataFile, table: Table) -> DataFile:
    """A copy of `data_file` (of another table, with the same schema) as a data file of the
    unpartitioned `table`: each table expires its own files."""
    location = f"{table.location()}/data/{uuid.uuid4()}.parquet"
    source = table.io.new_input(data_file.file_path)
    with source.open() as reader, table.io.new_output(location).create(overwrite=True) as writer:
        shutil.copyfileobj(reader, writer, COPY_CHUNK)
    return parquet_file_to_data_file(table.io, table.metadata, location)


COPY_CHUNK = 16 << 20
"""Bytes read and written at a time when copying a data file."""


def _expire(table: Table, keep: timedelta) -> None:
    """Expire the snapshots no tag or head names that were replaced more than `keep` ago (a
    reader that planned a scan on one has that long to finish it), then delete the files only
    they reached. Best effort: a failure leaves them for the next publish."""
    before = (datetime.now(UTC) - keep).timestamp() * 1000
    named = {ref.snapshot_id for ref in table.metadata.refs.values()}
    ordered = sorted(table.snapshots(), key=lambda snapshot: snapshot.timestamp_ms)
    expired = [
        snapshot
        for snapshot, successor in zip(ordered, ordered[1:], strict=False)
        if successor.timestamp_ms < before and snapshot.snapshot_id not in named
    ]
    if not expired:  # no commit, so publishing again writes nothing
        return
    kept = [s for s in ordered if s not in expired]
    try:
        unreachable = _files(table, expired) - _files(table, kept)
        table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in expired]).commit()
    except (CommitFailedException, ValueError) as exc:  # another publisher expired them first
        log.warning(
            "expiring old snapshots of %s: %s (the next publish retries)", table.name(), exc
        )
        return
    for path in sorted(unreachable):
        table.io.delete(path)


def _files(table: Table, snapshots: list[Snapshot]) -> set[str]:
    """Every file the snapshots reach: manifest lists, manifests, live data files."""
    found, manifests = set(), {}
    for snapshot in snapshots:
        found.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            manifests[manifest.manifest_path] = manifest
    for path, manifest in manifests.items():
        found.add(path)
        found.update(entry.data_file.file_path for entry in manifest.fetch_manifest_entry(table.io))
    return found
