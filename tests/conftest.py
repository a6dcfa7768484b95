"""Shared fixtures: a throwaway workspace, one S3-compatible server and one Spark session per
test session. The helpers they build on are in `tests/support/workspace.py`."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# before any test imports Great Expectations, which then sees it: the Spark engine's ingest
# validates Spark DataFrames in this process
import pyspark  # noqa: F401
import pytest

from tests.support.s3_server import S3Server, WeedUnavailable, find_weed, seaweedfs_s3
from tests.support.workspace import SPARK_TEST_CONF, Bucket, workspace_settings
from transforms.config import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return workspace_settings(tmp_path)


# --- a real S3-compatible server (SeaweedFS), for the object-store tests ----------------------
@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the session; skipped only if `weed` cannot run at all."""
    try:
        weed = find_weed()
    except WeedUnavailable as exc:
        pytest.skip(str(exc))
    with seaweedfs_s3(weed=weed, workdir=tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def bucket(s3: S3Server) -> Bucket:
    return Bucket(s3.client(), s3.bucket)


@pytest.fixture
def prefix() -> str:
    """A fresh folder in the bucket, so tests never see each other's objects."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session (2 cores) for the whole test session; skipped only when no
    Java runtime can be found."""
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.skip("the spark tests need Java 17: no `java` on the PATH and no JAVA_HOME")
    from transforms.engines.spark import spark_session

    session = spark_session(
        load_settings(None, spark_master="local[2]", spark_conf=SPARK_TEST_CONF)
    )
    yield session
    session.stop()
