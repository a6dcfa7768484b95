"""Configuration: one YAML file, overridden by environment variables, overridden by flags.

Precedence, lowest first: defaults below < `segments.yaml` (or the file named by
`--config` / `SEGMENTS_CONFIG`) < `SEGMENTS_<FIELD>` environment variables < CLI flags.
Relative local paths are resolved against the folder of the config file that set them
(the current directory for defaults, variables and flags).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from transforms.errors import ConfigError

CONFIG_FILE_NAME = "segments.yaml"
ROOT_FIELDS = ("landing", "lake", "inbox", "definitions", "contracts")
# settings a SEGMENTS_<FIELD> environment variable can set
ENV_FIELDS = (
    *ROOT_FIELDS,
    "validation_batch_rows",
    "max_snapshot_shrink",
    "keep_superseded_files_for",
    "spark_master",
    "spark_remote",
    "spark_s3a",
)


class Settings(BaseModel):
    """Where a workspace's data lives and how the pipeline treats it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    landing: str = Field("workspace/landing", description="Upstream export files, per date.")
    lake: str = Field("workspace/lake", description="Everything the pipeline writes.")
    inbox: str = Field("workspace/inbox", description="Manual-segment CSV drops.")
    definitions: str = Field("segment_definitions", description="One YAML per segment.")
    contracts: str = Field("data_contracts", description="ODCS v3 data contracts.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed to the object-store client (fsspec/s3fs) for s3:// and gs:// roots,"
        " e.g. {endpoint_url: http://127.0.0.1:8333, key: ..., secret: ...}.",
    )
    validation_batch_rows: int = Field(
        1_000_000, gt=0, description="Rows per Great Expectations batch (bounds its memory)."
    )
    max_snapshot_shrink: float = Field(
        0.2,
        ge=0,
        le=1,
        description="A run fails when its people snapshot is smaller than the previous run's by"
        " more than this share (0.2 = 20%), instead of emitting mass exits; `--accept-shrink`"
        " overrides it for one run.",
    )
    keep_superseded_files_for: timedelta = Field(
        timedelta(hours=24),
        description="How long the files of a run replaced by a rerun of its date stay readable"
        " (a reader may have taken their list from the old manifest): `24h`, `90m`, `2d`, or"
        " seconds. The first commit after that removes them.",
    )
    catalog: dict[str, Any] | None = Field(
        None,
        description="The Iceberg catalog committed runs are published to, as pyiceberg catalog"
        " properties, e.g. {type: sql, uri: 'sqlite:////srv/segments/catalog.db', warehouse:"
        " 's3://bucket/iceberg'} or {type: rest, uri: https://...}. Unset: a SQLite catalog at"
        " <lake>/catalog.db with its warehouse in <lake>/iceberg/ (local lakes only).",
    )
    spark_master: str = Field(
        "local[2]",
        description="Where `--engine spark` runs when no spark_remote is set: `local[N]` (in"
        " process, N cores), `spark://host:7077`, `yarn`, `k8s://...`. Every executor must be"
        " able to read the lake's paths.",
    )
    spark_remote: str | None = Field(
        None,
        description="A Spark Connect server (`sc://host:15002`) for `--engine spark`; when set,"
        " spark_master is not used. Needs the `pyspark[connect]` client packages.",
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description="More Spark settings for a session the engine starts, e.g."
        " {spark.driver.memory: 4g, spark.sql.shuffle.partitions: '64'}.",
    )
    spark_s3a: bool = Field(
        False,
        description="The Spark cluster provides hadoop-aws (and the AWS SDK jars of its Hadoop):"
        " `--engine spark` then reads an s3:// lake as s3a://, with the endpoint and"
        " credentials of storage_options. Off: the spark engine refuses object-store lakes.",
    )

    @field_validator("keep_superseded_files_for", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """`24h`, `90m`, `2d`, `30s`, `3600` (seconds), or what pydantic reads (ISO 8601)."""
        if isinstance(value, str) and (match := DURATION.fullmatch(value.strip())):
            return timedelta(**{DURATION_UNITS[match[2]]: float(match[1])})
        return value


DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
DURATION_UNITS = {"": "seconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _is_url(value: str) -> bool:
    return "://" in value


def _resolve(value: str, base: Path) -> str:
    if _is_url(value) or Path(value).is_absolute():
        return value
    return str((base / value).resolve())


def _find_config_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    named = explicit or os.environ.get("SEGMENTS_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist",
                hint="pass an existing file to --config / SEGMENTS_CONFIG, or unset it",
            )
        return path
    default = Path.cwd() / CONFIG_FILE_NAME
    return default if default.is_file() else None


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Settings from the config file, then `SEGMENTS_*` variables, then `overrides` (flags).

    Overrides whose value is None are ignored, so CLI flags can be passed through as they are.
    """
    values: dict[str, Any] = {}
    path = _find_config_file(config_file)
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{path}: expected a mapping of settings, got {type(loaded).__name__}"
            )
        values.update(loaded)
        for field in ROOT_FIELDS:
            if isinstance(values.get(field), str):
                values[field] = _resolve(values[field], path.parent.resolve())
    cwd = Path.cwd()
    for field in ENV_FIELDS:
        env = os.environ.get(f"SEGMENTS_{field.upper()}")
        if env:
            values[field] = _resolve(env, cwd) if field in ROOT_FIELDS else env
    for field, value in overrides.items():
        if value is not None:
            values[field] = _resolve(str(value), cwd) if field in ROOT_FIELDS else value
    for field in ROOT_FIELDS:
        values.setdefault(field, _resolve(Settings.model_fields[field].default, cwd))
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid settings{where}: {problems}") from exc
