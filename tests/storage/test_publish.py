"""Conditional publish on a local folder: of two writers that read the same version, one wins."""

from __future__ import annotations

from transforms.storage.publish import publish, version_of
from transforms.storage.records import CatalogFile
from transforms.storage.roots import Root

KEY = "runs/latest.json"


def catalog(latest: str) -> CatalogFile:
    return CatalogFile(latest=latest, runs={latest: f"runs/run_date={latest}/manifest-a.json"})


def test_only_the_first_writer_of_a_version_publishes(tmp_path):
    root = Root(str(tmp_path))
    assert version_of(root, KEY) is None
    assert publish(root, KEY, catalog("2026-03-30"), None)
    assert not publish(root, KEY, catalog("2026-03-31"), None)  # it exists now
    version = version_of(root, KEY)
    assert publish(root, KEY, catalog("2026-03-31"), version)
    assert not publish(root, KEY, catalog("2026-04-01"), version)  # replaced since
    assert CatalogFile.from_bytes(root.read_bytes(KEY), KEY).latest == "2026-03-31"
