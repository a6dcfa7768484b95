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

import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

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
from transforms.contracts.odcs import TableContract, load_contract
from transforms.errors import ConcurrentRunError, ConfigError
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.records import Catalog, RunManifest
from transforms.storage.roots import Root

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
    if settings.catalog:
        properties = {key: str(value) for key, value in settings.catalog.items()}
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
    catalog = load_catalog(NAMESPACE, **catalog_properties(settings))
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


def open_tables(settings: Settings, catalog: IcebergCatalog) -> dict[str, Table]:
    """The three tables, created on first use from the contracts (partitioned by run_date but
    for `membership_current`); a column a contract added since is added to the table."""
    tables = {}
    for name, contract_name in CONTRACT_OF.items():
        schema = iceberg_schema(load_contract(settings.contracts, contract_name))
        spec = UNPARTITIONED_PARTITION_SPEC
        if name in PER_RUN:
            run_date = schema.find_field("run_date").field_id
            spec = PartitionSpec(PartitionField(run_date, 1000, IdentityTransform(), "run_date"))
        identifier = f"{NAMESPACE}.{name}"
        try:  # not create_table_if_not_exists: it writes a metadata file before it looks
            table = catalog.load_table(identifier)
        except NoSuchTableError:
            table = catalog.create_table_if_not_exists(
                identifier, schema=schema, partition_spec=spec
            )
        if table.schema().column_names != schema.column_names:
            with table.update_schema() as update:
                update.union_by_name(schema)
        tables[name] = table
    return tables


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
    rows = frame.with_columns(pl.lit(day).alias("run_date")).select(
        field.name for field in schema.fields
    )
    folder = f"run_date={day.isoformat()}/" if table.spec().fields else ""
    location = f"{table.location()}/data/{folder}{uuid.uuid4()}.parquet"
    with table.io.new_output(location).create(overwrite=True) as stream:
        rows.write_parquet(stream, arrow_schema=schema_to_pyarrow(schema))
    return [parquet_file_to_data_file(table.io, table.metadata, location)]


def _replace(table: Table, files: list[DataFile], day: date | None, summary: dict[str, str]) -> int:
    """One snapshot of `table` that replaces the rows of run `day` (all its rows when `day` is
    None) with those of `files`, tagged `run-D` when `day` is given; its id."""
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
        snapshot_id = transaction.table_metadata.current_snapshot_id
        if day is not None:
            tag = tag_of(day)
            with ManageSnapshots(transaction) as manage:
                if tag in transaction.table_metadata.refs:
                    manage.remove_tag(tag)
                manage.create_tag(snapshot_id, tag)
    return snapshot_id


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
    not hold the latest run; then expire old untagged snapshots."""
    started = time.perf_counter()
    lake = Root(settings.lake, settings.storage_options)
    runs = read_catalog(lake)
    catalog = open_catalog(settings)
    tables = open_tables(settings, catalog)
    published: dict[str, dict[str, int]] = {}
    up_to_date = 0
    try:
        for day in runs.dates if days is None else days:
            key = runs.runs.get(day.isoformat())
            if key is None:
                continue
            manifest = read_manifest(lake, runs, day)
            stale = [t for t in PER_RUN if _published_from(tables[t], tag_of(day)) != key]
            if not stale:
                up_to_date += 1
                continue
            if progress is not None:
                progress(f"{day}: publish {', '.join(stale)}")
            rows = published.setdefault(day.isoformat(), {})
            for name in stale:
                table = tables[name]
                frame = read_table(lake, manifest, name)
                _replace(table, _write(table, frame, day), day, _summary(manifest, key))
                rows[name] = frame.height
        if runs.latest is not None:
            _publish_current(lake, runs, tables, published, progress)
    except CommitFailedException as exc:
        raise ConcurrentRunError(
            f"another writer changed the Iceberg tables while publishing: {exc}",
            hint="run `segments publish` again: it publishes what is still missing",
        ) from exc
    _expire(tables.values(), settings)
    seconds = round(time.perf_counter() - started, 3)
    return Published(
        catalog=re.sub(r"//[^/@]*@", "//", catalog.properties.get("uri", catalog.name)),
        runs=published,
        seconds=seconds,
        up_to_date=up_to_date,
    )


def _publish_current(
    lake: Root,
    runs: Catalog,
    tables: dict[str, Table],
    published: dict[str, dict[str, int]],
    progress: Callable[[str], None] | None,
) -> None:
    day = runs.latest
    key = runs.runs[day.isoformat()]
    table = tables["membership_current"]
    if _published_from(table, "main") == key:
        return
    if progress is not None:
        progress(f"{day}: publish membership_current")
    manifest = read_manifest(lake, runs, day)
    frame = read_table(lake, manifest, "membership")
    _replace(table, _write(table, frame, day), None, _summary(manifest, key))
    published.setdefault(day.isoformat(), {})["membership_current"] = frame.height


def _expire(tables: Iterable[Table], settings: Settings) -> None:
    """Expire the snapshots no tag or head names that are older than
    `keep_superseded_files_for`."""
    before = (datetime.now(UTC) - settings.keep_superseded_files_for).timestamp() * 1000
    for table in tables:
        named = {ref.snapshot_id for ref in table.metadata.refs.values()}
        old = [
            snapshot.snapshot_id
            for snapshot in table.snapshots()
            if snapshot.timestamp_ms < before and snapshot.snapshot_id not in named
        ]
        if old:  # nothing to expire: no commit, so publishing again writes nothing
            table.maintenance.expire_snapshots().by_ids(old).commit()
