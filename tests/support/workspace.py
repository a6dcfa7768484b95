"""Building blocks of the tests: a throwaway workspace (landing, lake, inbox) on local folders or
under a prefix of the test bucket, landing files, and readers of what a run wrote."""

from __future__ import annotations

import gzip
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from botocore.exceptions import ClientError

from tests.support.s3_server import S3Server
from transforms.config import Settings, load_settings
from transforms.errors import ConcurrentRunError

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"
DAY = date(2026, 3, 30)


def workspace_settings(folder: Path) -> Settings:
    """Settings of a workspace whose landing, lake and inbox are folders under `folder`, with
    the repository's contracts and example definitions."""
    return load_settings(
        None,
        landing=str(folder / "landing"),
        lake=str(folder / "lake"),
        inbox=str(folder / "inbox"),
        contracts=str(CONTRACTS),
        definitions=str(REPO / "segment_definitions"),
    )


def land(settings: Settings, table: str, name: str, content: bytes | str, day: date = DAY) -> Path:
    """Write one landing file `landing/<table>/<day>/<name>` (gzip when the name ends in .gz)."""
    data = content.encode() if isinstance(content, str) else content
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path = Path(settings.landing) / table / day.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def lake_table(settings: Settings, folder: str) -> pl.DataFrame:
    """Every Parquet file under `lake/<folder>` read as one frame (empty frame if none)."""
    files = sorted((Path(settings.lake) / folder).glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def lake_files(settings: Settings) -> dict[str, bytes]:
    """Every file under the lake root, by relative path, with its bytes."""
    root = Path(settings.lake)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# The typed rows of the two well-formed people of the ingest tests' CSV (00123, 00124).
EXPECTED_PEOPLE = pl.DataFrame(
    {
        "person_id": ["00123", "00124"],
        "email": ["ada@example.com", None],
        "first_name": ["Ada", "Bo"],
        "plan": ["pro", "trial"],
        "country": ["US", "DE"],
        "age": [36, None],
        "lifetime_value": [120.5, None],
        "email_opt_in": [True, None],
        "created_at": [datetime(2026, 1, 31, 10, tzinfo=UTC)] * 2,
        "trial_ends_on": [None, date(2026, 4, 10)],
    },
    schema_overrides={"created_at": pl.Datetime("us", "UTC")},
)


def concurrently(call: Callable[[], object], times: int = 2) -> list[object]:
    """Call `call` from `times` threads at once; each thread's result, or the
    ConcurrentRunError it raised."""
    outcomes: list[object] = []

    def attempt() -> None:
        try:
            outcomes.append(call())
        except ConcurrentRunError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def commit_in_lockstep(monkeypatch: pytest.MonkeyPatch, parties: int = 2) -> None:
    """Make runs wait for each other just before committing: they have all read the same
    catalog and computed, so exactly one commit can succeed."""
    import transforms.runs.steps as runs_module

    barrier = threading.Barrier(parties)
    real_commit = runs_module.commit

    def commit_together(*args: Any, **kwargs: Any) -> Any:
        barrier.wait(timeout=60)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(runs_module, "commit", commit_together)


EVENTS_HEADER = "event_id,person_id,name,timestamp,amount,currency,properties\n"

TYPED_PROPERTY_FIELDS = """          - name: seats
            logicalType: integer
          - name: trial
            logicalType: boolean
          - name: renews_on
            logicalType: date
          - name: seen_at
            logicalType: timestamp
"""


def events_contract_with_typed_fields() -> str:
    """The repository's events contract text with properties fields of every other type
    (TYPED_PROPERTY_FIELDS) declared before `source`."""
    text = (CONTRACTS / "events.odcs.yaml").read_text()
    marker = "          - name: source\n"
    assert marker in text
    return text.replace(marker, TYPED_PROPERTY_FIELDS + marker)


def person_row(pid: str, plan: str = "free") -> str:
    """One well-formed people CSV row (after PEOPLE_HEADER)."""
    return f"{pid},{pid}@example.com,A,{plan},US,30,1,true,2026-01-01T00:00:00Z,\n"


def with_definitions(settings: Settings, folder: Path, definitions: dict[str, str]) -> Settings:
    """`settings` reading segment definitions from `folder`, written from {id: yaml text}."""
    folder.mkdir(parents=True, exist_ok=True)
    for segment_id, text in definitions.items():
        (folder / f"{segment_id}.yaml").write_text(text)
    return settings.model_copy(update={"definitions": str(folder)})


PEOPLE_HEADER = (
    "person_id,email,first_name,plan,country,age,lifetime_value,email_opt_in,created_at,"
    "trial_ends_on\n"
)


def s3_settings(s3: S3Server, prefix: str, **overrides: Any) -> Settings:
    """Settings of a workspace whose landing, lake and inbox are under `prefix/` of the test
    bucket, with the repository's contracts (and `overrides`)."""
    return load_settings(
        None,
        landing=f"s3://{s3.bucket}/{prefix}/landing",
        lake=f"s3://{s3.bucket}/{prefix}/lake",
        inbox=f"s3://{s3.bucket}/{prefix}/inbox",
        contracts=str(CONTRACTS),
        storage_options=s3.storage_options,
        **overrides,
    )


@dataclass(frozen=True)
class Bucket:
    """The test bucket through plain boto3 (thread-safe), not through the project's code."""

    client: Any
    name: str

    def keys(self, prefix: str) -> set[str]:
        """Keys under `prefix/`, relative to it, as the server lists them."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix + "/"
        )
        return {o["Key"][len(prefix) + 1 :] for page in pages for o in page.get("Contents", [])}

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def etag(self, key: str) -> str:
        return self.client.head_object(Bucket=self.name, Key=key)["ETag"]

    def put(self, key: str, body: bytes, **condition: str) -> int:
        """HTTP status of a (conditional: IfNoneMatch=, IfMatch=) PutObject."""
        try:
            response = self.client.put_object(Bucket=self.name, Key=key, Body=body, **condition)
        except ClientError as exc:
            return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        return int(response["ResponseMetadata"]["HTTPStatusCode"])


# --- Apache Spark in local mode, for the spark engine's tests ----------------------------------
SPARK_TEST_CONF = {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"}
