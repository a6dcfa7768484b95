"""Every byte the pipeline reads or writes goes through here.

A `Root` is one configured location (landing, lake, inbox): a local folder or an object-store
prefix such as `s3://bucket/lake`. Callers name files by keys relative to the root
(`people/snapshot_date=2026-01-31/part-0.parquet`); the root turns them into paths for its
filesystem (fsspec: local, s3fs, gcsfs...).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import fsspec
import polars as pl

from transforms.errors import ConfigError, StorageAccessError, StorageError

COMPRESSIONS = {".gz": "gzip"}


@contextmanager
def _storage_errors(action: str, where: str) -> Iterator[None]:
    """Turn filesystem/object-store exceptions into the project's errors.

    Missing files stay `FileNotFoundError` (callers decide what absence means); refusals are
    terminal; bad client options are configuration errors; anything else may pass on retry.
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise StorageAccessError(
            f"{action} {where}: access denied ({exc})",
            hint="check the credentials in storage_options or the AWS_* variables",
        ) from exc
    except TypeError as exc:
        raise ConfigError(
            f"{action} {where}: the object-store client rejected storage_options ({exc})",
            hint="use option names your filesystem accepts (s3fs: key, secret, endpoint_url,"
            " client_kwargs, ...)",
        ) from exc
    except OSError as exc:
        raise StorageError(f"{action} {where}: {exc}") from exc


@dataclass(frozen=True)
class FileInfo:
    """A file under a root: its key relative to the root, size, last-modified time and the
    ETag where the store gives one (object stores; None on local folders)."""

    key: str
    size: int
    modified: datetime | None
    etag: str | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class Root:
    """A local folder or object-store prefix, addressed by relative keys."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        options = dict(storage_options or {})
        if "://" not in self.url or self.url.startswith("file://"):
            options = {"auto_mkdir": True}
        self.fs, self.path = fsspec.core.url_to_fs(self.url, **options)
        self.path = self.path.rstrip("/")

    def __repr__(self) -> str:
        return f"Root({self.url!r})"

    def _full(self, key: str) -> str:
        return f"{self.path}/{key.strip('/')}" if key else self.path

    def _key(self, full_path: str) -> str:
        return full_path[len(self.path) :].strip("/")

    def url_of(self, key: str) -> str:
        """The address to show a person: the root's URL joined with the key."""
        return f"{self.url}/{key.strip('/')}"

    def local_path(self, key: str) -> str:
        """The file's path on this machine (local roots only)."""
        return self._full(key)

    @property
    def is_local(self) -> bool:
        return self.fs.protocol in ("file", "local") or "file" in self.fs.protocol

    def list_files(self, prefix: str, *, recursive: bool = False) -> list[FileInfo]:
        """Files directly under `prefix` (or anywhere below it), sorted by key; [] if absent."""
        full = self._full(prefix)
        try:
            with _storage_errors("cannot list", self.url_of(prefix)):
                self.fs.invalidate_cache(full)
                if recursive:
                    found = self.fs.find(full, detail=True)
                    entries = list(found.values()) if isinstance(found, dict) else found
                else:
                    entries = self.fs.ls(full, detail=True)
        except FileNotFoundError:
            return []
        files = [
            FileInfo(
                key=self._key(e["name"]),
                size=int(e.get("size") or 0),
                modified=_mtime(e),
                etag=e.get("ETag") or e.get("etag"),
            )
            for e in entries
            if e.get("type") == "file"
        ]
        return sorted(files, key=lambda f: f.key)

    def exists(self, key: str = "") -> bool:
        """Whether the file (or, with no key, the root itself: folder or bucket) exists."""
        with _storage_errors("cannot check", self.url_of(key)):
            self.fs.invalidate_cache(self._full(key))
            return self.fs.exists(self._full(key))

    @contextmanager
    def open(self, key: str, mode: str = "rb", *, raw: bool = False) -> Iterator[IO[bytes]]:
        """Open a file; `.gz` keys are decompressed on read and compressed on write, unless
        `raw`."""
        suffix = "." + key.rsplit(".", 1)[-1] if "." in key else ""
        compression = None if raw else COMPRESSIONS.get(suffix.lower())
        with (
            _storage_errors("cannot open", self.url_of(key)),
            self.fs.open(self._full(key), mode, compression=compression) as handle,
        ):
            yield handle

    def read_bytes(self, key: str, *, raw: bool = False) -> bytes:
        """The file's bytes (decompressed for `.gz` keys, unless `raw`)."""
        with self.open(key, raw=raw) as handle, _storage_errors("cannot read", self.url_of(key)):
            return handle.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a file whole: readers see the old content or the new, never a part of it."""
        if self.is_local and not key.lower().endswith(".gz"):
            path = Path(self._full(key))
            with _storage_errors("cannot write", self.url_of(key)):
                os.replace(_write_temporary(path, data), path)
            return
        with self.open(key, "wb") as handle, _storage_errors("cannot write", self.url_of(key)):
            handle.write(data)

    def write_parquet(
        self,
        frame: pl.DataFrame | pl.LazyFrame,
        key: str,
        statistics: bool = True,
        compression: str = "zstd",
    ) -> None:
        """`frame` as Parquet (a lazy one computed as it is written); `statistics=False` leaves
        out column statistics (a quarter faster to write) for files this project only ever
        reads whole."""
        buffer = io.BytesIO()
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(buffer, compression=compression, statistics=statistics)
        else:
            frame.write_parquet(buffer, compression=compression, statistics=statistics)
        self.write_bytes(key, buffer.getvalue())

    def read_parquet(self, keys: list[str]) -> pl.DataFrame:
        frames = []
        for key in keys:
            with self.open(key) as handle:
                frames.append(pl.read_parquet(handle))
        return pl.concat(frames, how="vertical") if frames else pl.DataFrame()

    def move(self, source: str, target: str) -> None:
        """Move a file within the root (copy then delete on object stores)."""
        with _storage_errors("cannot move", f"{self.url_of(source)} to {self.url_of(target)}"):
            if self.is_local:
                Path(self._full(target)).parent.mkdir(parents=True, exist_ok=True)
            self.fs.mv(self._full(source), self._full(target))

    def scan_parquet(self, key: str) -> pl.LazyFrame:
        """A lazy scan of one Parquet file (read eagerly first from object stores)."""
        if self.is_local:
            return pl.scan_parquet(self._full(key))
        with self.open(key) as handle:
            return pl.read_parquet(handle).lazy()

    # --- conditional writes: what the commit protocol stands on ---------------------------

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """(content, version tag) of a small object, or None if absent. The tag is the S3 ETag,
        or a content hash on local folders; pass it to `put_if_match`."""
        if self.is_local:
            try:
                with _storage_errors("cannot read", self.url_of(key)):
                    data = Path(self._full(key)).read_bytes()
            except FileNotFoundError:
                return None
            return data, hashlib.sha256(data).hexdigest()
        full = self._full(key)
        try:
            with _storage_errors("cannot read", self.url_of(key)):
                self.fs.invalidate_cache(full)
                # the tag first, then the bytes: if the object changes in between, the bytes
                # are newer than the tag and a put_if_match with that tag fails, as it should
                version = self.fs.info(full)["ETag"]
                return self.fs.cat_file(full), version
        except FileNotFoundError:
            return None

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create `key` only if it does not exist (S3 `If-None-Match: *`); False if it did."""
        if self.is_local:
            path = Path(self._full(key))
            with _storage_errors("cannot write", self.url_of(key)):
                temporary = _write_temporary(path, data)
                try:
                    os.link(temporary, path)  # atomic, and fails if the name exists
                except FileExistsError:
                    return False
                finally:
                    temporary.unlink()
            return True
        return self._conditional_put(key, data, IfNoneMatch="*")

    def put_if_match(self, key: str, data: bytes, version: str) -> bool:
        """Replace `key` only if its version is still `version` (S3 `If-Match`); else False."""
        if self.is_local:
            path = Path(self._full(key))
            with _storage_errors("cannot write", self.url_of(key)), _locked(path):
                current = self.read_versioned(key)
                if current is None or current[1] != version:
                    return False
                os.replace(_write_temporary(path, data), path)
            return True
        return self._conditional_put(key, data, IfMatch=version)

    def _bucket_key(self, key: str) -> tuple[str, str]:
        bucket, _, path = self._full(key).partition("/")
        return bucket, path

    def _require_s3(self) -> None:
        if "s3" not in self.fs.protocol and "s3a" not in self.fs.protocol:
            raise ConfigError(
                f"{self.url}: commits need conditional writes, available here on local folders"
                " and S3-compatible stores",
                hint="put the lake on a local folder or an s3:// URL",
            )

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> bool:
        self._require_s3()
        bucket, path = self._bucket_key(key)
        try:
            with _storage_errors("cannot write", self.url_of(key)):
                self.fs.call_s3("put_object", Bucket=bucket, Key=path, Body=data, **condition)
        except (StorageError, FileNotFoundError) as exc:
            if _precondition_failed(exc):
                return False
            raise
        finally:
            self.fs.invalidate_cache(self._full(key))
        return True

    def delete(self, keys: list[str]) -> None:
        """Delete files; one already gone (another attempt removed it) is not an error."""
        with _storage_errors("cannot delete", f"{len(keys)} file(s) under {self.url}"):
            for key in keys:
                try:
                    self.fs.rm_file(self._full(key))
                except FileNotFoundError:
                    continue

    def delete_folder(self, prefix: str) -> None:
        """Delete everything under `prefix`; an absent folder is not an error."""
        with _storage_errors("cannot delete", self.url_of(prefix)):
            try:
                self.fs.rm(self._full(prefix), recursive=True)
            except FileNotFoundError:
                return


def _precondition_failed(exc: BaseException) -> bool:
    """Whether an S3 error (however the client wrapped it) is 412 Precondition Failed, or the
    404 that AWS answers to If-Match on a missing key."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if "PreconditionFailed" in text or "412" in text or "Precondition" in text:
            return True
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
                return True
        seen = seen.__cause__ or seen.__context__
    return False


def _write_temporary(path: Path, data: bytes) -> Path:
    """`data` in a hidden file beside `path`, flushed to disk, for an atomic link or rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temporary


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside `path`, for compare-and-swap on local folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _mtime(entry: dict[str, Any]) -> datetime | None:
    for field in ("mtime", "LastModified", "last_modified", "updated"):
        value = entry.get(field)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=UTC)
    return None
