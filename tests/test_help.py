"""``--help`` as a user reads it: a flag takes no value, so it shows no type; an option shows
what to type (URL, KEY, SECONDS, FILE, N, ...), never a Python type name; ranges read in words;
no option name is ever cut, at 60, 80 or 120 columns."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from streamcli.cli import app

COMMANDS = [
    [],
    ["melvin"],
    ["phebi"],
    ["bodhi"],
    ["vosk"],
    ["veridas", "register"],
    ["veridas", "verify"],
    ["serve", "melvin"],
    ["serve", "veridas"],
    ["config", "show"],
    ["devices"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "streamcli")
def test_flags_show_no_type_and_options_with_values_still_do(command):
    result = CliRunner().invoke(
        app, [*command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    )
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    help_line = next(line for line in result.output.splitlines() if "--help" in line)
    assert "<" not in help_line
    if command and command[0] in ("melvin", "phebi", "bodhi", "vosk"):
        json_line = next(line for line in result.output.splitlines() if "--json " in line)
        assert not re.search(r"--json\s+<", json_line)
        assert re.search(r"--speed\s+FACTOR", result.output)  # a value shows what to type
        assert re.search(r"--output, -o\s+FILE", result.output)


def every_command() -> list[tuple[list[str], list]]:
    """(path, params) of every command, subcommands included, as Click sees them."""
    from typer.main import get_command

    found = []

    def walk(command, path: list[str]) -> None:
        found.append((path, list(getattr(command, "params", []))))
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return found


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_every_help_page_names_what_to_type_and_never_cuts_an_option(columns):
    for path, params in every_command():
        result = CliRunner().invoke(
            app, [*path, "--help"], env={"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
        )
        page = f"streamcli {' '.join(path)} --help at {columns} columns:\n{result.output}"
        assert result.exit_code == 0, page
        assert not re.search(r"<(str|int|float|bool|list|path)", result.output), page
        assert "x>=" not in result.output and "<=x" not in result.output, page
        assert "[input]" not in result.output, page
        for line in result.output.splitlines():
            assert len(line) <= columns, page
        for param in params:
            for name in [*param.opts, *getattr(param, "secondary_opts", [])]:
                if name.startswith("--"):  # every long name whole, on one line
                    assert re.search(rf"{re.escape(name)}(?![\w-])", result.output), (name, page)
        # Options that take a value say what it is: a metavar follows the name.
        for param in params:
            takes = param.param_type_name == "option" and not param.is_flag and param.opts
            if takes and param.opts[0].startswith("--") and not param.hidden:
                shown = re.search(rf"{re.escape(param.opts[0])}(?:, -\w)?\s+([A-Z][A-Z:_.\[\]]*)",
                                  result.output)  # fmt: skip
                assert shown, (param.opts[0], page)


def test_ranges_read_in_words():
    result = CliRunner().invoke(
        app, ["serve", "melvin", "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"}
    )
    assert re.search(r"--port\s+PORT \[0 to 65535\]", result.output)
    assert re.search(r"--seats\s+N \[at least 1\]", result.output)
