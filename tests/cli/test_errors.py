"""Every command, given a broken config or a missing input, ends with `error:` (and `fix:`) on
stderr and exit code 1, or with a usage error (exit code 2): never with a traceback. The
commands are listed from the app, so a new one is covered as soon as it has ARGS below."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from tests.support.workspace import CONTRACTS, REPO
from transforms.cli.app import app
from transforms.config import ENV_FIELDS

runner = CliRunner()
DAY = "2026-03-30"
DEFINITIONS = REPO / "segment_definitions"


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


ROOT = typer.main.get_command(app)
COMMANDS = list(_commands(ROOT))

# The fewest arguments each command needs to get past argument parsing; `{segment}` is where
# a SEGMENT goes. A new command fails test_every_command_has_its_arguments_here until added.
ARGS = {
    "compile": ["{segment}"],
    "contracts check": [],
    "contracts docs": [],
    "demo": [],
    "files": ["membership"],
    "history": ["{segment}"],
    "ingest": ["--date", DAY],
    "manual add": ["{segment}", "--ids", "p1"],
    "manual check": [],
    "manual clear": ["{segment}"],
    "manual remove": ["{segment}", "--ids", "p1"],
    "manual replace": ["{segment}", "--ids", "p1"],
    "plan": [],
    "preview": ["{segment}", "--date", DAY],
    "publish": [],
    "run": ["--date", DAY],
    "validate": [],
    "why": ["p1", "{segment}"],
}
MANUAL = ("manual add", "manual clear", "manual remove", "manual replace")
SEGMENT = dict.fromkeys(MANUAL, "beta_testers")  # manual segments; the others: data-driven


def command_of(name: str) -> Any:
    command = ROOT
    for part in name.split():
        command = command.commands[part]
    return command


def argv(name: str, segment: str | None = None) -> list[str]:
    if name not in ARGS:
        pytest.fail(f"add the minimal arguments of `segments {name}` to ARGS")
    chosen = segment or SEGMENT.get(name, "big_spenders")
    return [*name.split(), *(a.format(segment=chosen) for a in ARGS[name])]


# A workspace whose config file (./segments.yaml) names the repository's contracts and
# definitions and landing, lake and inbox folders that do not exist yet. Each scenario breaks
# one thing and returns the extra arguments (none: the config file of the folder is used).
def _config(tmp_path: Path, **roots: Path) -> None:
    values = {
        "landing": tmp_path / "landing",
        "lake": tmp_path / "lake",
        "inbox": tmp_path / "inbox",
        "definitions": DEFINITIONS,
        "contracts": CONTRACTS,
        **roots,
    }
    (tmp_path / "segments.yaml").write_text(
        "".join(f"{name}: {path}\n" for name, path in values.items()), encoding="utf-8"
    )


def _config_file(text: bytes) -> Callable[[Path], list[str]]:
    def scenario(tmp_path: Path) -> list[str]:
        path = tmp_path / "broken.yaml"
        path.write_bytes(text)
        return ["--config", str(path)]

    return scenario


def _root(name: str, make: Callable[[Path], None] | None = None) -> Callable[[Path], list[str]]:
    def scenario(tmp_path: Path) -> list[str]:
        path = tmp_path / f"broken_{name}"
        if make is not None:
            make(path)
        _config(tmp_path, **{name: path})
        return []

    return scenario


def _a_file(path: Path) -> None:
    path.write_text("not a folder\n")


SCENARIOS: dict[str, Callable[[Path], list[str]]] = {
    "missing config": lambda tmp_path: ["--config", "/nonexistent.yaml"],
    "config not YAML": _config_file(b"lake: [unclosed\n"),
    "config unknown setting": _config_file(b"no_such_setting: 1\n"),
    "config not a mapping": _config_file(b"- lake\n- inbox\n"),
    "config invalid value": _config_file(b"max_snapshot_shrink: 2\n"),
    "config not UTF-8": _config_file(b"\xff\xfe\x00lake"),
    "missing contracts": _root("contracts"),
    "missing definitions": _root("definitions"),
    "missing lake": _root("lake"),
    "empty lake": _root("lake", lambda path: path.mkdir()),
    "lake is a file": _root("lake", _a_file),
    "missing inbox": _root("inbox"),
    "inbox is a file": _root("inbox", _a_file),
}
LAKE = {"missing lake", "empty lake", "lake is a file"}
INBOX = {"missing inbox", "inbox is a file"}

# Where a command legitimately succeeds (exit 0) because it does not read the broken input.
# Everywhere else it must fail: the base workspace has no landing files and no committed run,
# so every command that reads the lake or the landing fails even when its other inputs are fine.
SUCCEEDS = {
    # compile and validate read only the contracts and the definitions
    "compile": LAKE | INBOX,
    "validate": LAKE | INBOX,
    # the contracts commands read only the contracts folder
    "contracts check": LAKE | INBOX | {"missing definitions"},
    "contracts docs": LAKE | INBOX | {"missing definitions"},
    # manual uploads read the definitions and write the inbox (creating a missing one); they
    # read the lake's catalog to say which run applies them (none committed yet: the first)
    **dict.fromkeys(MANUAL, {"missing lake", "empty lake", "missing contracts", "missing inbox"}),
    # demo creates its own landing, lake and inbox, then runs two dates: long work, which
    # test_cli.py's demo test covers, so these cases are not run here
    "demo": {"missing lake", "empty lake", "missing inbox"},
}
LONG = {"demo"}


@pytest.fixture(autouse=True)
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated folder: no SEGMENTS_* variables, no segments.yaml but its own."""
    for field in ENV_FIELDS:
        monkeypatch.delenv(f"SEGMENTS_{field.upper()}", raising=False)
    monkeypatch.delenv("SEGMENTS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    _config(tmp_path)
    return tmp_path


def assert_handled(result: Result) -> None:
    """Exit 0, 1 or 2 without an uncaught exception; exit 1 says what is wrong."""
    output = result.stdout + result.stderr
    uncaught = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not uncaught, f"uncaught {result.exception!r}:\n{output}"
    assert "Traceback" not in output, output
    assert result.exit_code in (0, 1, 2), output
    if result.exit_code == 1:
        assert "error:" in result.stderr, output


def test_every_command_has_its_arguments_here() -> None:
    assert sorted(ARGS) == sorted(COMMANDS), "keep ARGS in step with the app's commands"


CASES = [
    (name, scenario)
    for name in COMMANDS
    for scenario in SCENARIOS
    # a long command that does not need this input would run the whole pipeline: the `demo`
    # creates a missing lake and inbox, and test_cli.py runs it
    if not (name in LONG and scenario in SUCCEEDS.get(name, set()))
]


@pytest.mark.parametrize(("name", "scenario"), CASES)
def test_a_broken_input_is_an_error_not_a_traceback(
    name: str, scenario: str, workspace: Path
) -> None:
    succeeds = scenario in SUCCEEDS.get(name, set())
    extra = SCENARIOS[scenario](workspace)
    result = runner.invoke(app, [*argv(name), *extra])
    assert_handled(result)
    output = result.stdout + result.stderr
    if succeeds:
        assert result.exit_code == 0, output
    else:
        assert result.exit_code in (1, 2), output
    if name == "demo" and result.exit_code != 0:  # failed before writing the demo's files
        assert not (workspace / "landing" / "people").exists()


def test_the_config_errors_name_the_file_and_the_fix() -> None:
    missing = runner.invoke(app, ["validate", "--config", "/nonexistent.yaml"])
    assert missing.exit_code == 1
    assert "error: config file /nonexistent.yaml does not exist" in missing.stderr
    assert "fix:" in missing.stderr
    contracts = runner.invoke(
        app, ["compile", "big_spenders", "--contracts", "/nonexistent/contracts"]
    )
    assert contracts.exit_code == 1 and "/nonexistent/contracts" in contracts.stderr
    folder = runner.invoke(app, ["contracts", "check", "--contracts", "/nonexistent/contracts"])
    assert folder.exit_code == 1
    assert "the contracts folder /nonexistent/contracts does not exist" in folder.stderr


SEGMENT_COMMANDS = [
    name for name in COMMANDS if any(param.name == "segment" for param in command_of(name).params)
]


def test_the_segment_commands_are_found() -> None:
    assert {"compile", "preview", "manual add", "why", "history"} <= set(SEGMENT_COMMANDS)


@pytest.mark.parametrize("name", SEGMENT_COMMANDS)
def test_an_unknown_segment_says_where_definitions_live(name: str) -> None:
    result = runner.invoke(app, argv(name, segment="big_spender"))
    assert_handled(result)
    assert result.exit_code == 1, result.output
    assert "error: unknown segment 'big_spender'" in result.stderr
    assert "fix: did you mean 'big_spenders'? segment ids are the names" in result.stderr
    assert str(DEFINITIONS) in result.stderr
