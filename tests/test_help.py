"""``--help`` as a user reads it: a flag takes no value, so it shows no type."""

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
        assert re.search(r"--speed\s+<float", result.output)  # a value still shows its type
        assert re.search(r"--output\s+-o\s+FILE", result.output)
