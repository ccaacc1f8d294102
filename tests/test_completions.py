"""Shell completion: the committed scripts are what the app generates, and TAB offers options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from streamcli.cli import app

ROOT = Path(__file__).resolve().parent.parent
COMPLETIONS = ROOT / "completions"
GENERATOR = COMPLETIONS / "generate.py"
SCRIPTS = ("streamcli.bash", "_streamcli", "streamcli.fish")
RUN_APP = "from streamcli.cli import app; app(prog_name='streamcli')"


def complete_bash(words: str, cword: int, extra_env: dict[str, str] | None = None) -> list[str]:
    """What ``streamcli`` answers to the bash script's callback for ``COMP_WORDS=words``."""
    env = {
        **os.environ,
        "_STREAMCLI_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
        **(extra_env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-c", RUN_APP], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # anything here would land on the user's prompt
    return done.stdout.splitlines()


def complete_in_process(*words: str) -> list[str]:
    """The same callback, in this process: fast enough to try every command."""
    env = {
        "_STREAMCLI_COMPLETE": "complete_bash",
        "COMP_WORDS": " ".join(("streamcli", *words)),
        "COMP_CWORD": str(len(words)),
    }
    result = CliRunner().invoke(app, [], env=env, prog_name="streamcli")
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


# Typer vendors its own Click, so commands are recognised by shape, not by class.
def long_options(command: Any) -> set[str]:
    return {
        name
        for param in command.params
        if param.param_type_name == "option" and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--")
    }


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every leaf command under ``group``, with the words that name it."""
    found = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            found += commands(command, (*path, name))
        elif not command.hidden:
            found.append(((*path, name), command))
    return found


CLI = typer.main.get_command(app)


def test_the_committed_scripts_are_what_the_app_generates(tmp_path):
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    stale = [
        name
        for name in SCRIPTS
        if not (COMPLETIONS / name).is_file()
        or (COMPLETIONS / name).read_bytes() != (tmp_path / name).read_bytes()
    ]
    assert not stale, f"out of date: {', '.join(stale)}: run python completions/generate.py"


def test_the_generator_check_mode_reports_a_stale_script(tmp_path):
    for name in SCRIPTS:
        shutil.copy(COMPLETIONS / name, tmp_path / name)
    (tmp_path / "streamcli.fish").write_text("# edited by hand\n", encoding="utf-8")
    check = [sys.executable, str(GENERATOR), "--check", "--out", str(tmp_path)]
    done = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "out of date: streamcli.fish: run python completions/generate.py\n"


def test_the_zsh_script_is_autoloadable_from_fpath():
    lines = (COMPLETIONS / "_streamcli").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#compdef streamcli"
    assert "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then" in lines


def test_completing_melvin_offers_its_options():
    offered = complete_bash("streamcli melvin --", 2)
    assert {"--url", "--api-key", "--device", "--json", "--output", "--help"} <= set(offered)
    assert set(offered) == long_options(CLI.commands["melvin"]) | {"--help"}


def test_completing_the_first_word_offers_the_commands():
    offered = complete_bash("streamcli ", 1)
    assert {"melvin", "demo", "serve"} <= set(offered)


@pytest.mark.parametrize(
    ("words", "command"), [pytest.param(w, c, id=" ".join(w)) for w, c in commands(CLI)]
)
def test_every_command_completes_its_options(words, command):
    """Commands added later are covered without regenerating the scripts."""
    assert long_options(command) <= set(complete_in_process(*words, "--"))


def test_device_completion_offers_matching_input_device_names(monkeypatch):
    from streamcli.audio import mic

    devices = [
        mic.InputDevice(0, "Built-in Microphone", "ALSA", 48000.0, 2, True),
        mic.InputDevice(3, "USB Headset", "ALSA", 16000.0, 1, False),
    ]
    monkeypatch.setattr(mic, "list_input_devices", lambda: devices)
    assert complete_in_process("melvin", "--device", "USB") == ["USB Headset"]
    assert complete_in_process("melvin", "--device", "") == ["Built-in Microphone", "USB Headset"]


def test_device_completion_offers_nothing_when_devices_cannot_be_listed(monkeypatch):
    from streamcli.audio import mic
    from streamcli.commands.options import complete_device

    def broken() -> list[mic.InputDevice]:
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(mic, "list_input_devices", broken)
    assert complete_device("") == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_bash_script_completes_through_the_program(tmp_path):
    """Source the committed script in a real bash and press TAB after ``streamcli melvin --``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "streamcli"  # this checkout's app, whatever is installed
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{RUN_APP}" "$@"\n')
    wrapper.chmod(0o755)
    tab = (
        f"source {COMPLETIONS / 'streamcli.bash'}\n"
        "COMP_WORDS=(streamcli melvin --u); COMP_CWORD=2\n"
        "_streamcli_completion streamcli\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", tab],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["--url"]
