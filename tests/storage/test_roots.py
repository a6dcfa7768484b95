"""Storage roots on local folders, and how object-store failures are reported."""

from __future__ import annotations

import pytest

from transforms.errors import ConfigError
from transforms.storage.roots import Root


def test_local_root_round_trip(tmp_path):
    root = Root(str(tmp_path / "lake"))
    assert not root.exists()
    root.write_bytes("a/b/file.txt", b"x")
    root.write_bytes("a/b/file.txt.gz", b"compressed")
    assert root.exists()
    assert root.read_bytes("a/b/file.txt.gz") == b"compressed"
    assert root.read_bytes("a/b/file.txt.gz", raw=True) != b"compressed"
    assert [f.key for f in root.list_files("a/b")] == ["a/b/file.txt", "a/b/file.txt.gz"]
    assert [f.key for f in root.list_files("a", recursive=True)] == [
        "a/b/file.txt",
        "a/b/file.txt.gz",
    ]
    assert root.list_files("missing") == []
    root.delete(["a/b/file.txt"])
    assert not root.exists("a/b/file.txt")
    assert root.url_of("a/b") == f"{tmp_path}/lake/a/b"


def test_misspelt_storage_options_are_a_config_error():
    root = Root("s3://bucket/lake", {"endpoint": "http://127.0.0.1:9", "key": "k", "secret": "s"})
    with pytest.raises(ConfigError, match="rejected storage_options") as raised:
        root.list_files("")
    assert "endpoint_url" in (raised.value.hint or "")
