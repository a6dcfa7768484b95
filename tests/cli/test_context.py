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
