"""Conditional publish: write a record only over the version a writer read, so that of two
writers of the same key only one succeeds (docs/lifecycle.md, "Commit").

A writer reads the key's version when it starts (`version_of`), computes, then publishes over
that version (`publish`): `If-None-Match: *` when the key did not exist, `If-Match: <version>`
when it did (a lock on local folders). The loser's publish returns False and it removes what
it wrote.
"""

from __future__ import annotations

from transforms.storage.records import Record
from transforms.storage.roots import Root


def version_of(root: Root, key: str) -> str | None:
    """The version of the object at `key` now, or None if it does not exist."""
    found = root.read_versioned(key)
    return found[1] if found else None


def publish(root: Root, key: str, record: Record, version: str | None) -> bool:
    """Write `record` at `key` if the object there is still at `version` (None: if there is
    none yet); False if another writer got there first."""
    data = record.to_bytes()
    if version is None:
        return root.put_if_absent(key, data)
    return root.put_if_match(key, data, version)
