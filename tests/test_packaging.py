"""What `pip install .` ships: every module of the package, and the files it reads at run time
(a deployment into Airflow installs it that way, not from a checkout)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.workspace import REPO


def test_the_wheel_holds_every_module_and_data_file_of_the_package(tmp_path: Path):
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info beside it
    shutil.copytree(REPO / "transforms", source / "transforms")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        check=True,
        cwd=source,
    )
    (wheel,) = tmp_path.glob("segments-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "transforms"
    expected = {
        path.relative_to(REPO).as_posix()
        for path in package.rglob("*")
        if path.suffix in (".py", ".md", ".yaml") and "__pycache__" not in path.parts
    }
    assert expected - shipped == set()


def test_make_venv_compiles_the_environment_to_bytecode():
    """Where PYTHONDONTWRITEBYTECODE is set (this CI's machine, many container images), a module
    installed without its bytecode is compiled again by every process that imports it, each
    Airflow task included: `make venv` compiles what it installs."""
    for name in ("great_expectations", "pyiceberg.catalog.sql", "polars", "transforms.runs.steps"):
        source = importlib.util.find_spec(name).origin
        assert Path(importlib.util.cache_from_source(source)).exists(), name
