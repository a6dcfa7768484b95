"""The tables the pipeline writes are described by contracts that ship with the package, whatever
contracts folder a workspace points at; `run_date` is described as the partition it is."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from tests.support.workspace import CONTRACTS, REPO
from transforms.cli.app import app
from transforms.contracts.odcs import (
    OUTPUT_CONTRACTS,
    contract_docs,
    load_contract,
    load_contracts,
)

OUTPUT_TABLES = ("changes", "manual_upload", "membership")


def own_contracts(folder: Path) -> Path:
    """A workspace's own contracts folder: its people and events, nothing else."""
    folder.mkdir()
    for table in ("people", "events"):
        shutil.copy(CONTRACTS / f"{table}.odcs.yaml", folder)
    return folder


def test_docs_of_a_folder_with_only_people_and_events_describe_every_table(tmp_path: Path):
    contracts = own_contracts(tmp_path / "contracts")
    output = tmp_path / "tables.md"
    result = CliRunner().invoke(
        app, ["contracts", "docs", "--contracts", str(contracts), "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    text = output.read_text(encoding="utf-8")
    for table in OUTPUT_TABLES:
        assert f"## `{table}`" in text
    assert text == (REPO / "docs" / "tables.md").read_text(encoding="utf-8")


def test_output_contracts_load_from_the_package_when_the_folder_has_none(tmp_path: Path):
    contracts = own_contracts(tmp_path / "contracts")
    found, problems = load_contracts(contracts)
    assert problems == []
    assert set(found) == {"people", "events", *OUTPUT_TABLES}
    assert (
        load_contract(contracts, "membership").names == load_contract(CONTRACTS, "membership").names
    )


def run_date_row(docs: str, table: str) -> str:
    section = docs.split(f"## `{table}`", 1)[1].split("\n## ", 1)[0]
    (row,) = [line for line in section.splitlines() if line.startswith("| `run_date`")]
    return row


def test_run_date_is_documented_as_the_partition_folder_not_a_column_of_the_files():
    found, _ = load_contracts(CONTRACTS)
    docs = contract_docs([found[name] for name in sorted(found)])
    for table in ("membership", "changes"):
        column = found[table].column("run_date")
        assert column.partition
        row = run_date_row(docs, table)
        assert row.startswith("| `run_date` (partition) | date |")
        assert "`run_date=D/` folder" in row and "not stored in the Parquet files" in row


def test_a_folder_s_own_contract_of_an_output_table_is_the_one_used(tmp_path: Path):
    contracts = own_contracts(tmp_path / "contracts")
    packaged = (OUTPUT_CONTRACTS / "membership.odcs.yaml").read_text(encoding="utf-8")
    edited = packaged.replace("description: The member.", "description: Who is in.")
    (contracts / "membership.odcs.yaml").write_text(edited, encoding="utf-8")
    assert load_contract(contracts, "membership").column("person_id").description == "Who is in."
