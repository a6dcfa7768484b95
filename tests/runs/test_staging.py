"""The staging folder of an attempt: typed records and frames in, the same out."""

from __future__ import annotations

from datetime import date

import polars as pl

from transforms.runs.staging import StagedFrame, Staging
from transforms.storage import lake
from transforms.storage.catalog import place_parts
from transforms.storage.records import IngestStepResult, ValidateStepResult
from transforms.storage.roots import Root


def test_a_step_result_and_a_frame_read_back_as_staged(tmp_path):
    staging = Staging(Root(str(tmp_path)), date(2026, 3, 30), "20261201T014932320369-b82b8b")
    assert staging.find(IngestStepResult) is None
    staged = IngestStepResult(ingested=True, why="not ingested yet", rows_read={"people": 3})
    staging.write(staged)
    assert staging.read(IngestStepResult) == staged
    assert staging.find(ValidateStepResult) is None
    assert (tmp_path / staging.folder / "ingest_step.json").is_file()
    frame = pl.DataFrame({"segment_id": ["vip"], "person_id": ["a"]})
    staging.write_frame(StagedFrame.MEMBERS, frame)
    assert staging.read_frame(StagedFrame.MEMBERS).equals(frame)
    assert staged.summary() == {
        "ingested": True,
        "why": "not ingested yet",
        "rows_read": {"people": 3},
    }
    assert IngestStepResult(ingested=False).summary() == {"ingested": False}


ATTEMPT = "20261201T014932320369-b82b8b"


def stage_parts(staging: Staging, table: str, numbers: list[int]) -> None:
    """Part files as Spark writes them (and its marker and checksums beside them)."""
    folder = staging.parts_folder(table)
    staging.root.write_bytes(f"{folder}/_SUCCESS", b"")
    for number in numbers:
        name = f"part-{number:05d}-1f2e-c000.zstd.parquet"
        staging.root.write_bytes(f"{folder}/{name}", f"{table} {number}".encode())
        staging.root.write_bytes(f"{folder}/.{name}.crc", b"")


def test_parts_written_by_spark_are_moved_into_the_partition_in_part_order(tmp_path):
    day = date(2026, 3, 30)
    root = Root(str(tmp_path))
    staging = Staging(root, day, ATTEMPT)
    stage_parts(staging, "membership", [10, 2, 0, 100000])
    stage_parts(staging, "changes", [1])
    parts = {table: staging.parts(table) for table in ("membership", "changes")}
    assert [key.rsplit("/", 1)[1][:11] for key in parts["membership"]] == [
        "part-00000-",
        "part-00002-",
        "part-00010-",
        "part-100000",
    ]
    keys = place_parts(root, day, ATTEMPT, parts)
    assert keys["membership"] == [lake.data_part("membership", day, ATTEMPT, i) for i in range(4)]
    read = [root.read_bytes(key).decode() for key in keys["membership"]]
    assert read == ["membership 0", "membership 2", "membership 10", "membership 100000"]
    assert {lake.attempt_of(key) for ks in keys.values() for key in ks} == {ATTEMPT}
    # a retry of the step that writes fewer parts leaves none of the earlier try's behind
    stage_parts(staging, "membership", [3])
    again = place_parts(root, day, ATTEMPT, {"membership": staging.parts("membership")})
    listed = [info.key for info in root.list_files(lake.partition("membership", day))]
    assert listed == again["membership"] == [lake.data_part("membership", day, ATTEMPT, 0)]
    assert root.read_bytes(listed[0]) == b"membership 3"
