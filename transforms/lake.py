"""Names of the lake's tables and folders (STORAGE.md), in one place.

Every module that reads or writes the lake builds its keys here, so the layout can be read
off this file: Hive partitions `<table>/<column>=<D>/`, quarantine beside them, and the ingest
step's manifest under `ingest/`.
"""

from __future__ import annotations

from datetime import date

PARTITION_COLUMNS = {"people": "snapshot_date", "events": "ingest_date"}


def partition(table: str, day: date) -> str:
    """`people/snapshot_date=D`, `events/ingest_date=D`."""
    return f"{table}/{PARTITION_COLUMNS[table]}={day.isoformat()}"


def quarantine_partition(table: str, day: date) -> str:
    return f"quarantine/{partition(table, day)}"


def ingest_folder(day: date) -> str:
    return f"ingest/ingest_date={day.isoformat()}"


def ingest_manifest(day: date) -> str:
    """Written last by a successful ingest of D: the files it published and its counts."""
    return f"{ingest_folder(day)}/manifest.json"
