"""Reading upstream export files from the landing root.

`landing/<table>/<D>/*.{csv,jsonl,ndjson,parquet}[.gz]` are read into frames with every column
the file has, plus `_source_file` and `_source_row` (1-based data row) so any refused row can be
traced back. CSV is read as text (ids like `00123` keep their zeros; empty fields are NULL);
typing to the contract happens in `transforms.contracts.coerce`.

A file that cannot be read at all raises `InputFileError` naming the file, the line where it
can be found, and what to change.

Ingest records a fingerprint of every file it read (`fingerprint`); `fingerprint_changes`
compares those with the files landed now, so a late or corrected file is noticed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, date

import polars as pl

from transforms.contracts.odcs import TableContract
from transforms.errors import InputFileError
from transforms.storage.records import Fingerprint
from transforms.storage.roots import FileInfo, Root

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
SOURCE_FILE, SOURCE_ROW = "_source_file", "_source_row"


@dataclass(frozen=True)
class LandedFile:
    """One landing file read into a frame, with what was noticed about its columns."""

    file: str
    frame: pl.DataFrame
    missing_optional: tuple[str, ...]
    ignored_columns: tuple[str, ...]


def file_format(key: str) -> str | None:
    """'csv', 'jsonl' or 'parquet' from the key's suffix (after an optional .gz), else None."""
    name = key.rsplit("/", 1)[-1].lower().removesuffix(".gz")
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    return FORMATS.get(suffix)


def landing_files(root: Root, table: str, day: date) -> tuple[list[FileInfo], list[FileInfo]]:
    """(readable files, files of an unknown format) in `<table>/<D>/`, sorted by key."""
    files = [f for f in root.list_files(f"{table}/{day.isoformat()}") if not f.name.startswith(".")]
    known = [f for f in files if file_format(f.key)]
    unknown = [f for f in files if not file_format(f.key)]
    return known, unknown


def fingerprint(info: FileInfo) -> Fingerprint:
    """What ingest records of a landing file it read: `key` (relative to the landing root),
    `size` in bytes, `modified` (ISO 8601 in UTC, None when the store gives no time) and `etag`
    (the object store's, None on local folders)."""
    modified = info.modified.astimezone(UTC).isoformat() if info.modified else None
    return Fingerprint(key=info.key, size=info.size, modified=modified, etag=info.etag)


def _difference(recorded: Fingerprint, current: Fingerprint) -> str | None:
    """How a file differs from its recorded fingerprint, in words (the size if it differs,
    else the ETag or the modified time); None if it is the same.

    Where both sides carry an ETag it stands for the content, so a file uploaded again with the
    same bytes is the same file; else the modified time does, compared as the recorded text.
    Local folders keep sub-second times, so a rewrite within the same second is still seen,
    except on file systems that keep whole seconds: there a rewrite of the same size within
    one second is not."""
    if recorded.size != current.size:
        return f"size {recorded.size:,} -> {current.size:,}"
    if recorded.etag and current.etag:
        same = recorded.etag == current.etag
        return None if same else f"ETag {recorded.etag} -> {current.etag}"
    if recorded.modified and current.modified and recorded.modified != current.modified:
        return f"modified {recorded.modified} -> {current.modified}"
    return None


def fingerprint_changes(recorded: list[Fingerprint], current: list[FileInfo]) -> list[str]:
    """The differences between the fingerprints an ingest recorded and the files landed now,
    one line per file in key order: new, changed (and how) or removed; [] if none.

    A new file of an unknown format is reported too: ingest refuses it, so reading the date
    again fails and says so, instead of leaving the file unread without a word."""
    before = {f.key: f for f in recorded}
    now = {info.key: info for info in current}
    lines = []
    for key in sorted(before.keys() | now.keys()):
        if key not in now:
            lines.append(f"{key}: removed since the ingest")
        elif key not in before:
            unknown = "" if file_format(key) else " (of an unknown format: ingest refuses it)"
            lines.append(f"{key}: new since the ingest{unknown}")
        elif difference := _difference(before[key], fingerprint(now[key])):
            lines.append(f"{key}: changed ({difference})")
    return lines


def _csv_problem_line(data: bytes) -> tuple[int | None, str]:
    """Find the first line a strict CSV reading chokes on (only called after a failure)."""
    for number, raw_line in enumerate(data.splitlines(), start=1):
        try:
            raw_line.decode("utf-8")
        except UnicodeDecodeError:
            return number, "is not UTF-8 text"
    text = data.decode("utf-8").lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        for row in reader:
            if row and len(row) != len(header):
                return reader.line_num, f"has {len(row)} fields where the header has {len(header)}"
    except csv.Error as exc:
        return reader.line_num, f"is not valid CSV ({exc})"
    return None, "could not be parsed as CSV"


def _jsonl_problem_line(data: bytes) -> tuple[int | None, str]:
    for number, raw_line in enumerate(data.splitlines(), start=1):
        if not raw_line.strip():
            continue
        try:
            value = json.loads(raw_line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return number, f"is not a JSON object ({exc})"
        if not isinstance(value, dict):
            return number, "is not a JSON object"
    return None, "could not be parsed as JSON lines"


def _unparseable(
    exc: Exception, located: tuple[int | None, str], file: str, hint: str
) -> InputFileError:
    """The reader's failure, at the line our own strict pass found (when it found one)."""
    line, problem = located
    message = f"line {problem}" if line else f"{problem}: {str(exc).splitlines()[0]}"
    return InputFileError(message, file=file, line=line, hint=hint)


def _read_csv(data: bytes, file: str) -> pl.DataFrame:
    if not data.strip():
        raise InputFileError(
            "the file is empty: a CSV needs at least a header row",
            file=file,
            hint="export a header row even when there are no rows, or remove the file",
        )
    try:
        return pl.read_csv(data, infer_schema=False, encoding="utf8", raise_if_empty=False)
    except pl.exceptions.PolarsError as exc:
        raise _unparseable(
            exc,
            _csv_problem_line(data),
            file,
            "export UTF-8 CSV with a header row and the same number of fields on every line",
        ) from exc


def _read_jsonl(
    data: bytes, file: str, text_columns: list[str], object_columns: list[str]
) -> pl.DataFrame:
    """Object columns are read as their JSON text, whether a line holds an object or text."""
    if not data.strip():
        return pl.DataFrame()
    try:
        try:
            frame = pl.read_ndjson(
                data,
                infer_schema_length=None,
                schema_overrides=dict.fromkeys(object_columns, pl.String()),
            )
        except pl.exceptions.SchemaFieldNotFoundError:  # no line has the object column
            frame = pl.read_ndjson(data, infer_schema_length=None)
        text = [c for c in text_columns if c in frame.columns]
        return frame.with_columns(pl.col(text).cast(pl.String)) if text else frame
    except pl.exceptions.PolarsError as exc:
        raise _unparseable(
            exc, _jsonl_problem_line(data), file, "write one JSON object per line, UTF-8"
        ) from exc


def _read_parquet(data: bytes, file: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(data)
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(
            f"not a readable Parquet file: {str(exc).splitlines()[0]}",
            file=file,
            hint="re-export the file; a truncated upload is the usual cause",
        ) from exc


LOCAL_READ_BYTES = 1 << 20
"""Uncompressed CSV files on local folders from this size on are read by Polars from their path
(mapped, not copied into memory first)."""


def _read_local_csv(root: Root, info: FileInfo) -> pl.DataFrame | None:
    """A large local CSV file read from its path; None if Polars cannot (then the bytes are
    read, which finds the line at fault)."""
    try:
        return pl.read_csv(root.local_path(info.key), infer_schema=False, encoding="utf8")
    except pl.exceptions.PolarsError:
        return None


def read_landed_file(root: Root, info: FileInfo, contract: TableContract) -> LandedFile:
    """Read one landing file into a frame with the contract's columns (raw, untyped)."""
    shown = root.url_of(info.key)
    kind = file_format(info.key)
    local = root.is_local and kind == "csv" and not info.key.lower().endswith(".gz")
    if local and info.size >= LOCAL_READ_BYTES:
        frame = _read_local_csv(root, info)
        if frame is not None:
            return _fit_columns(frame, contract, shown)
    data = root.read_bytes(info.key, raw=True)
    if info.key.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise InputFileError(
                f"cannot be decompressed: {exc}",
                file=shown,
                hint="a .gz file must be gzip-compressed; re-export or re-upload it whole",
            ) from exc
    if kind == "csv":
        frame = _read_csv(data, shown)
    elif kind == "jsonl":
        frame = _read_jsonl(
            data,
            shown,
            [c.name for c in contract.columns if c.logical_type == "string"],
            list(contract.objects),
        )
    else:
        frame = _read_parquet(data, shown)
    return _fit_columns(frame, contract, shown)


def _fit_columns(frame: pl.DataFrame, contract: TableContract, file: str) -> LandedFile:
    columns = set(frame.columns)
    missing_required = [c for c in contract.required if c not in columns]
    if missing_required and frame.width > 0:
        raise InputFileError(
            f"missing required column(s) {', '.join(missing_required)}"
            f" (the file has: {', '.join(frame.columns)})",
            file=file,
            hint=f"add the column(s) to the export, or mark them not required in the"
            f" {contract.table} contract ({contract.file})",
        )
    missing_optional = tuple(c for c in contract.names if c not in columns)
    ignored = tuple(c for c in frame.columns if c not in contract.names)
    # in one chunk per column: typing the hundreds Polars' CSV reader returns takes 2-3x longer
    frame = (
        frame.with_columns(pl.lit(None, dtype=pl.String).alias(name) for name in missing_optional)
        .select(contract.names)
        .rechunk()
    )
    frame = frame.with_columns(
        pl.lit(file).alias(SOURCE_FILE),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(SOURCE_ROW),
    )
    return LandedFile(
        file=file,
        frame=frame,
        missing_optional=missing_optional if columns else (),
        ignored_columns=ignored,
    )
