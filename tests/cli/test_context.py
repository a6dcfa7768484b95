"""The CLI's one context: workspace options declared once, resolved into settings once."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from tests.cli.test_errors import COMMANDS, ROOT
from transforms.cli.context import CliContext, uses
from transforms.cli.options import WORKSPACE_OPTIONS


def _command(path: str) -> typer.core.TyperCommand:
    command = ROOT
    for name in path.split():
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", COMMANDS)
def test_workspace_options_are_the_ones_declared_once(path: str) -> None:
    """Every command that takes --lake (or any workspace option) takes the same option, with
    the same help: the declaration in transforms/cli/options.py, not a copy."""
    command = _command(path)
    for param in command.params:
        if param.name in WORKSPACE_OPTIONS:
            info = WORKSPACE_OPTIONS[param.name].__metadata__[0]
            assert param.help == info.help, (path, param.name)
    assert "config" in {p.name for p in command.params}, path


def test_a_command_cannot_name_an_option_that_is_not_declared() -> None:
    with pytest.raises(ValueError, match="no workspace option"):
        uses("lakes")


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "segments.yaml"
    config.write_text(f"lake: {tmp_path / 'from-file'}\ninbox: {tmp_path / 'inbox'}\n")
    context = CliContext({"config": config, "lake": str(tmp_path / "from-flag"), "inbox": None})
    assert context.settings.lake == str(tmp_path / "from-flag")
    assert context.settings.inbox == str(tmp_path / "inbox")
    assert context.settings is context.settings  # resolved once per command


def test_every_root_a_command_reads_is_a_flag_it_takes(tmp_path: Path, monkeypatch) -> None:
    """Each command runs on a workspace named by its own flags alone, with a config file whose
    roots are all files, not folders: a command reading a root it has no flag for fails."""
    from typer.testing import CliRunner

    from tests.cli.test_errors import LONG, argv
    from tests.support.workspace import DAY, PEOPLE_HEADER, land, person_row, workspace_settings
    from transforms.cli.app import app
    from transforms.runs.steps import run

    settings = workspace_settings(tmp_path / "ws")
    land(settings, "people", "p.csv", PEOPLE_HEADER + person_row("p1", "pro"))
    run(settings, DAY)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    roots = ("landing", "lake", "inbox", "definitions", "contracts")
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    for name in roots:  # a file where a folder should be: reading it is an error
        (nowhere / name).write_text("not a folder\n")
    (elsewhere / "segments.yaml").write_text(
        "".join(f"{name}: {nowhere / name}\n" for name in roots)
    )
    monkeypatch.chdir(elsewhere)
    for name in roots:
        monkeypatch.delenv(f"SEGMENTS_{name.upper()}", raising=False)
    runner = CliRunner()
    for path in COMMANDS:
        if path in LONG:
            continue
        taken = {p.name for p in _command(path).params} & set(roots)
        flags = [f"--{name}={getattr(settings, name)}" for name in sorted(taken)]
        extra = ["--no-publish"] if path == "run" else []
        result = runner.invoke(app, [*argv(path), *extra, *flags])
        assert result.exit_code == 0, (path, result.output)
