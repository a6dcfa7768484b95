"""What `pip install .` ships: every module of the package, and the files it reads at run time
(a deployment into Airflow installs it that way, not from a checkout)."""

from __future__ import annotations

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
