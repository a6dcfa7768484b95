"""Runs and the inbox against a real S3-compatible server: the commit protocol's conditional
writes, reruns, two writers, and manual uploads, checked with plain boto3."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.support.workspace import (
    EVENTS_HEADER,
    PEOPLE_HEADER,
    Bucket,
    commit_in_lockstep,
    concurrently,
    person_row,
    s3_settings,
)
from transforms.ingest.step import ingest
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

pytestmark = pytest.mark.s3
D1 = date(2026, 3, 30)
D2 = D1 + timedelta(days=1)


@pytest.fixture
def s3_ws(s3, bucket: Bucket, prefix: str, tmp_path: Path):
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "vip.yaml").write_text("name: VIP\ntype: manual\n")
    (definitions / "buyers.yaml").write_text(
        "name: Buyers\ntype: data_driven\nwhere: performed('purchase')\n"
    )
    for day, buyers in ((D1, ["a"]), (D2, ["b"])):
        people = "".join(person_row(p) for p in "abcde")
        bucket.put(f"{prefix}/landing/people/{day}/p.csv", (PEOPLE_HEADER + people).encode())
        events = "".join(
            f"{day}-{i},{p},purchase,{day}T10:00:00Z,,,\n" for i, p in enumerate(buyers)
        )
        bucket.put(f"{prefix}/landing/events/{day}/e.csv", (EVENTS_HEADER + events).encode())
    return s3_settings(s3, prefix, definitions=str(definitions))


def committed(settings, day: date):
    root = Root(settings.lake, settings.storage_options)
    manifest = read_manifest(root, read_catalog(root), day)
    members = read_table(root, manifest, "membership")
    changes = read_table(root, manifest, "changes")
    return members, changes, manifest


def pairs(frame: pl.DataFrame) -> set[tuple[str, str]]:
    return set(frame.select("segment_id", "person_id").rows())


def test_runs_with_uploads_on_s3(s3_ws, bucket: Bucket, prefix: str):
    bucket.put(f"{prefix}/inbox/vip/a-first.csv", b"person_id\na\nb\n")
    bucket.put(f"{prefix}/inbox/vip/b-broken.csv", b"person_id,action\nc,promote\n")
    bucket.put(f"{prefix}/inbox/buyers/x.csv", b"person_id\nc\n")  # data-driven: refused
    run(s3_ws, D1)
    first, changes, manifest = committed(s3_ws, D1)
    assert pairs(first) == {("vip", "a"), ("vip", "b"), ("buyers", "a")}
    assert pairs(changes) == pairs(first)
    rejected = {r.file: r for r in manifest.manual.rejected}
    assert set(rejected) == {"vip/b-broken.csv", "buyers/x.csv"}
    keys = bucket.keys(f"{prefix}/inbox")
    assert any(
        re.fullmatch(r"_processed/2026-03-30/\d{8}T\d{12}-[0-9a-f]{6}/0001/vip/a-first\.csv", k)
        for k in keys
    )
    assert {k for k in keys if k.startswith("_rejected/")} == {
        "_rejected/2026-03-30/vip__b-broken.csv",
        "_rejected/2026-03-30/vip__b-broken.csv.error.txt",
        "_rejected/2026-03-30/buyers__x.csv",
        "_rejected/2026-03-30/buyers__x.csv.error.txt",
    }

    bucket.put(f"{prefix}/inbox/vip/remove/out.csv", b"email\nB@example.com\n")
    run(s3_ws, D2)
    second, changes, _ = committed(s3_ws, D2)
    assert pairs(second) == {("vip", "a"), ("buyers", "a"), ("buyers", "b")}
    entered = pairs(changes.filter(pl.col("change") == "entered"))
    exited = pairs(changes.filter(pl.col("change") == "exited"))
    assert entered == pairs(second) - pairs(first) and exited == pairs(first) - pairs(second)
    assert set(changes.filter(pl.col("change") == "exited")["reason"]) == {"removed"}

    _, _, replaced = committed(s3_ws, D2)
    run(s3_ws, D2)  # a rerun: same rows; the replaced files stay readable for a while
    again, again_changes, manifest = committed(s3_ws, D2)
    assert again.equals(second) and again_changes.equals(changes)

    def files_of(table: str) -> set[str]:
        return {
            k
            for k in bucket.keys(f"{prefix}/lake")
            if k.startswith(f"{table}/run_date=2026-03-31/")
        }

    for table in ("membership", "changes"):
        assert files_of(table) == set(manifest.files[table]) | set(replaced.files[table])
    catalog = json.loads(bucket.get(f"{prefix}/lake/runs/latest.json"))
    assert catalog["latest"] == "2026-03-31"
    assert list(catalog["superseded"]) == [
        f"runs/run_date=2026-03-31/manifest-{replaced.attempt}.json"
    ]
    # once keep_superseded_files_for has passed, the next commit removes them (and keeps
    # the files of the run it replaces itself)
    run(s3_ws.model_copy(update={"keep_superseded_files_for": timedelta(0)}), D2)
    _, _, latest = committed(s3_ws, D2)
    for table in ("membership", "changes"):
        assert files_of(table) == set(latest.files[table]) | set(manifest.files[table])
    catalog = json.loads(bucket.get(f"{prefix}/lake/runs/latest.json"))
    assert list(catalog["superseded"]) == [
        f"runs/run_date=2026-03-31/manifest-{manifest.attempt}.json"
    ]


def test_an_inbox_key_with_dot_dot_is_refused_inside_the_inbox(s3_ws, bucket: Bucket, prefix):
    status = bucket.put(f"{prefix}/inbox/vip/../../escape.csv", b"person_id\na\n")
    run(s3_ws, D1)
    outside = {k for k in bucket.keys(prefix) if not k.startswith(("inbox/", "lake/", "landing/"))}
    assert outside <= {"escape.csv"}  # only what the server itself may have stored on put
    if status == 200 and "inbox/vip/../../escape.csv" in bucket.keys(prefix):
        _, _, manifest = committed(s3_ws, D1)
        assert manifest.manual.rejected[0].moved_to.startswith("_rejected/")


def test_two_runs_at_once_on_s3_cannot_both_commit(s3_ws, monkeypatch):
    run(s3_ws, D1)
    ingest(s3_ws, D2)
    commit_in_lockstep(monkeypatch)
    outcomes = concurrently(lambda: run(s3_ws, D2))
    assert sorted(type(o).__name__ for o in outcomes) == ["ConcurrentRunError", "RunReport"]
    _, _, manifest = committed(s3_ws, D2)
    root = Root(s3_ws.lake, s3_ws.storage_options)
    for table in ("membership", "changes"):
        assert all(root.exists(k) for k in manifest.files[table])


def test_the_duckdb_engine_reads_an_s3_lake(s3_ws, bucket: Bucket, prefix: str):
    bucket.put(f"{prefix}/inbox/vip/a.csv", b"person_id\nc\n")
    run(s3_ws, D1)
    polars_members, polars_changes, _ = committed(s3_ws, D1)
    run(s3_ws, D1, engine="duckdb")  # a rerun: same uploads, the other engine
    duckdb_members, duckdb_changes, manifest = committed(s3_ws, D1)
    assert manifest.engine == "duckdb"
    assert pairs(duckdb_members) == pairs(polars_members) == {("vip", "c"), ("buyers", "a")}
    assert pairs(duckdb_changes) == pairs(polars_changes)
