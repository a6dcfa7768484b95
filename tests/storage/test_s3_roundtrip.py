"""The project's storage and ingest against a real S3 server (SeaweedFS, signed requests).

Landing files are uploaded with plain boto3 (as an upstream exporter would) and the lake is
checked with plain boto3 too, so these tests do not only agree with themselves.
"""

from __future__ import annotations

import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.support.s3_server import S3Server
from tests.support.workspace import EXPECTED_PEOPLE, Bucket, s3_settings
from transforms.errors import StorageAccessError, StorageError
from transforms.ingest.step import ingest
from transforms.runs.steps import run
from transforms.storage.lake import read_ingest_manifest
from transforms.storage.records import IngestReport
from transforms.storage.roots import Root

pytestmark = pytest.mark.s3

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"
DAY = date(2026, 3, 30)
PEOPLE_CSV = (
    "person_id,email,first_name,plan,country,age,lifetime_value,email_opt_in,created_at,"
    "trial_ends_on\n"
    "00123,ada@example.com,Ada,pro,US,36,120.5,true,2026-01-31T10:00:00Z,\n"
    "00124,,Bo,trial,DE,,,,2026-01-31T12:00:00+02:00,2026-04-10\n"
    "00125,cy@example.com,Cy,platinum,FR,40,5,false,2026-02-01T00:00:00Z,\n"  # bad plan
)
EVENTS_CSV = (
    "event_id,person_id,name,timestamp,amount,currency,properties\n"
    'e1,00123,purchase,2026-03-30T09:00:00Z,25.0,USD,"{""source"": ""web""}"\n'
    "e2,00124,page_viewed,2026-03-30T23:59:59-01:00,,,\n"
    'e1,00123,purchase,2026-03-30T09:00:00Z,25.0,USD,"{""source"": ""web""}"\n'  # re-sent
)
UTC_US = pl.Datetime("us", "UTC")
EXPECTED_EVENTS = pl.DataFrame(
    {
        "event_id": ["e1", "e2"],
        "person_id": ["00123", "00124"],
        "name": ["purchase", "page_viewed"],
        "timestamp": [datetime(2026, 3, 30, 9), datetime(2026, 3, 31, 0, 59, 59)],  # UTC
        "amount": [25.0, None],
        "currency": ["USD", None],
        # the events contract's properties object: a struct of its declared fields
        "properties": [{"source": "web", "plan": None, "product_id": None, "price": None}, None],
    },
    schema_overrides={
        "properties": pl.Struct(
            {"source": pl.String, "plan": pl.String, "product_id": pl.String, "price": pl.Float64}
        )
    },
).with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))


# --- transforms.storage.roots.Root on s3:// ------------------------------------------------


def test_root_bytes_listing_exists_delete(s3: S3Server, bucket: Bucket, prefix: str) -> None:
    root = Root(f"s3://{s3.bucket}/{prefix}/lake", s3.storage_options)
    assert not root.is_local
    assert root.list_files("t") == []
    assert not root.exists("t/a.bin")

    root.write_bytes("t/a.bin", b"hello")
    root.write_bytes("t/sub/b.bin", b"world!")
    root.write_bytes("t/c.txt.gz", b"zipped " * 100)

    assert root.read_bytes("t/a.bin") == b"hello"
    assert root.read_bytes("t/c.txt.gz") == b"zipped " * 100
    assert bucket.get(f"{prefix}/lake/t/c.txt.gz")[:2] == b"\x1f\x8b"  # stored gzipped
    assert bucket.keys(f"{prefix}/lake") == {"t/a.bin", "t/sub/b.bin", "t/c.txt.gz"}
    assert root.exists("t/a.bin")

    files = root.list_files("t")
    assert [(f.key, f.name) for f in files] == [("t/a.bin", "a.bin"), ("t/c.txt.gz", "c.txt.gz")]
    assert files[0].size == 5
    assert all(f.modified is not None and f.modified.tzinfo is not None for f in files)
    assert [f.key for f in root.list_files("t", recursive=True)] == [
        "t/a.bin",
        "t/c.txt.gz",
        "t/sub/b.bin",
    ]

    root.write_bytes("t/a.bin", b"replaced")  # overwrite, then read the new bytes, not a cache
    assert root.read_bytes("t/a.bin") == b"replaced"

    root.delete(["t/a.bin", "t/sub/b.bin"])
    assert not root.exists("t/a.bin")
    assert [f.key for f in root.list_files("t", recursive=True)] == ["t/c.txt.gz"]
    assert bucket.keys(f"{prefix}/lake") == {"t/c.txt.gz"}


def test_root_parquet_round_trip_keeps_types(s3: S3Server, bucket: Bucket, prefix: str) -> None:
    root = Root(f"s3://{s3.bucket}/{prefix}/lake", s3.storage_options)
    first, second = EXPECTED_PEOPLE.slice(0, 1), EXPECTED_PEOPLE.slice(1, 1)
    root.write_parquet(first, "people/part-0.parquet")
    root.write_parquet(second, "people/part-1.parquet")

    keys = [f.key for f in root.list_files("people")]
    assert keys == ["people/part-0.parquet", "people/part-1.parquet"]
    assert_frame_equal(root.read_parquet(keys), EXPECTED_PEOPLE)
    raw = bucket.get(f"{prefix}/lake/people/part-1.parquet")
    assert_frame_equal(pl.read_parquet(io.BytesIO(raw)), second)
    assert root.read_parquet([]).is_empty()


@pytest.mark.parametrize("form", ["top-level endpoint_url", "client_kwargs"])
def test_both_storage_option_forms_work(s3: S3Server, bucket: Bucket, prefix: str, form: str):
    options: dict[str, Any] = {"key": s3.key, "secret": s3.secret}
    if form == "client_kwargs":
        options["client_kwargs"] = {"endpoint_url": s3.endpoint_url}
    else:
        options["endpoint_url"] = s3.endpoint_url
    root = Root(f"s3://{s3.bucket}/{prefix}", options)
    root.write_bytes("x.txt", form.encode())
    assert bucket.get(f"{prefix}/x.txt") == form.encode()


def test_requests_are_signed_and_checked(s3: S3Server, bucket: Bucket, prefix: str) -> None:
    assert bucket.put(f"{prefix}/secret.txt", b"s") == 200
    wrong = {**s3.storage_options, "secret": "not-the-secret"}
    with pytest.raises(StorageAccessError, match="access denied") as raised:
        Root(f"s3://{s3.bucket}/{prefix}", wrong).read_bytes("secret.txt")
    assert raised.value.terminal and "credentials" in (raised.value.hint or "")


# --- the ingest step with landing and lake on S3 ---------------------------------------------


def test_ingest_from_s3_landing_to_s3_lake(s3: S3Server, bucket: Bucket, prefix: str) -> None:
    landing_people = f"{prefix}/landing/people/{DAY}/people.csv"
    assert bucket.put(landing_people, PEOPLE_CSV.encode()) == 200
    assert bucket.put(f"{prefix}/landing/events/{DAY}/events.csv", EVENTS_CSV.encode()) == 200
    settings = s3_settings(s3, prefix)
    assert settings.storage_options == s3.storage_options

    report = ingest(settings, DAY)

    attempt = report.attempt
    people_key = f"people/snapshot_date={DAY}/part-{attempt}.parquet"
    events_key = f"events/ingest_date={DAY}/part-{attempt}.parquet"
    quarantine_key = f"quarantine/people/snapshot_date={DAY}/part-{attempt}.parquet"
    manifest_key = f"ingest/ingest_date={DAY}/manifest.json"
    published = {
        people_key,
        events_key,
        quarantine_key,
        f"ingest/ingest_date={DAY}/{attempt}/people.validation.json",
        f"ingest/ingest_date={DAY}/{attempt}/events.validation.json",
        f"ingest/ingest_date={DAY}/{attempt}/people.fingerprints.parquet",
        manifest_key,
    }
    assert bucket.keys(f"{prefix}/lake") == published

    lake = Root(settings.lake, settings.storage_options)
    assert_frame_equal(lake.read_parquet([people_key]), EXPECTED_PEOPLE)
    assert_frame_equal(lake.read_parquet([events_key]), EXPECTED_EVENTS)

    quarantine = lake.read_parquet([quarantine_key])
    assert quarantine.height == 1
    bad = quarantine.row(0, named=True)
    assert (bad["person_id"], bad["plan"]) == ("00125", "platinum")
    assert bad["_rules"] == "plan:validValues"
    assert "plan 'platinum' is not one of free, trial, pro, enterprise" in bad["_reason"]
    assert bad["_source_file"] == f"s3://{s3.bucket}/{landing_people}"
    assert bad["_source_row"] == 3

    manifest = json.loads(bucket.get(f"{prefix}/lake/{manifest_key}"))
    assert (
        IngestReport.model_validate(manifest)
        == read_ingest_manifest(Root(settings.lake, settings.storage_options), DAY)
        == report
    )
    people, events = manifest["tables"]["people"], manifest["tables"]["events"]
    assert (people["rows_read"], people["rows_written"], people["quarantined"]) == (3, 2, 1)
    assert (events["rows_written"], events["duplicates_dropped"]) == (2, 1)
    assert {k for keys in manifest["outputs"].values() for k in keys} == published - {manifest_key}

    again = ingest(settings, DAY)  # a re-run replaces the first attempt's files on S3 too
    assert again.attempt != attempt
    keys = bucket.keys(f"{prefix}/lake")
    assert not {k for k in keys if attempt in k}
    assert len(keys) == len(published)
    assert_frame_equal(
        lake.read_parquet([f"people/snapshot_date={DAY}/part-{again.attempt}.parquet"]),
        EXPECTED_PEOPLE,
    )


# --- conditional writes (what a commit protocol on this server could rely on) ----------------


def test_conditional_puts_are_enforced(bucket: Bucket, prefix: str) -> None:
    key = f"{prefix}/commit.json"
    assert bucket.put(key, b"v1", IfNoneMatch="*") == 200  # create-if-absent
    etag = bucket.etag(key)

    assert bucket.put(key, b"v2", IfNoneMatch="*") == 412
    assert bucket.put(key, b"v2", IfMatch='"00000000000000000000000000000000"') == 412
    assert bucket.get(key) == b"v1"

    assert bucket.put(key, b"v2", IfMatch=etag) == 200  # compare-and-swap
    assert bucket.get(key) == b"v2"
    assert bucket.put(key, b"v3", IfMatch=etag) == 412  # the old etag is stale now
    assert bucket.get(key) == b"v2"


def test_concurrent_conditional_puts_have_one_winner(bucket: Bucket, prefix: str) -> None:
    writers = 16
    one_winner = [200] + [412] * (writers - 1)

    def race(key: str, **condition: str) -> list[int]:
        """Statuses of `writers` concurrent PUTs; every body differs (so does every ETag)."""
        with ThreadPoolExecutor(writers) as pool:
            bodies = [uuid.uuid4().bytes for _ in range(writers)]
            return sorted(pool.map(lambda body: bucket.put(key, body, **condition), bodies))

    for round_ in range(3):
        key = f"{prefix}/race-{round_}.json"
        assert race(key, IfNoneMatch="*") == one_winner
        assert race(key, IfMatch=bucket.etag(key)) == one_winner


def test_exclusive_create_through_root_refuses_an_existing_key(s3: S3Server, prefix: str) -> None:
    root = Root(f"s3://{s3.bucket}/{prefix}", s3.storage_options)
    with root.open("manifest.json", "xb") as handle:
        handle.write(b"first")
    # AWS answers with FileExistsError here; SeaweedFS's 412 lacks <Condition>, so s3fs raises
    # a plain OSError(EINVAL), which Root reports as a StorageError. Either way the second
    # writer fails and the object is unchanged.
    with pytest.raises((FileExistsError, StorageError)), root.open("manifest.json", "xb") as handle:
        handle.write(b"second")
    assert root.read_bytes("manifest.json") == b"first"


def test_run_materializes_membership_on_s3(
    s3: S3Server, bucket: Bucket, prefix: str, tmp_path: Path
) -> None:
    assert bucket.put(f"{prefix}/landing/people/{DAY}/people.csv", PEOPLE_CSV.encode()) == 200
    assert bucket.put(f"{prefix}/landing/events/{DAY}/events.csv", EVENTS_CSV.encode()) == 200
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "buyers.yaml").write_text(
        "name: Buyers\ntype: data_driven\nwhere: event_sum('purchase', amount) >= 25\n"
    )
    settings = s3_settings(s3, prefix, definitions=str(definitions))
    report = run(settings, DAY)
    assert report.ingested is not None and report.segments["buyers"].size == 1
    (key,) = [k for k in bucket.keys(f"{prefix}/lake") if k.startswith("membership/")]
    membership = pl.read_parquet(io.BytesIO(bucket.get(f"{prefix}/lake/{key}")))
    assert membership.rows() == [("buyers", "00123", DAY)]
    catalog = json.loads(bucket.get(f"{prefix}/lake/runs/latest.json"))
    assert catalog["runs"] == {DAY.isoformat(): report.manifest}
