"""Start-up stays light: help and shell completion import none of the heavy libraries.

Each case runs the real app in a fresh interpreter and reports which modules got imported;
the assertion is about behaviour (what is imported), never about wall-clock time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("aiohttp", "socketio", "engineio", "numpy", "soundfile", "sounddevice", "soxr")

PROBE = """
import io, json, sys
from contextlib import redirect_stdout
heavy = json.loads(sys.argv[2])
sys.argv = ["streamcli", *json.loads(sys.argv[1])]
out = io.StringIO()
code = 0
with redirect_stdout(out):
    from streamcli.cli import app
    try:
        app(prog_name="streamcli")
    except SystemExit as e:
        code = e.code or 0
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(heavy))
print(json.dumps({"code": code, "loaded": loaded, "out": out.getvalue()}))
"""


def probe(args: list[str], env: dict[str, str] | None = None) -> dict:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("_STREAMCLI_COMPLETE")}
    full_env.update({"NO_COLOR": "1", "COLUMNS": "100"}, **(env or {}))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [["--help"], ["melvin", "--help"], ["serve", "--help"], ["serve", "melvin", "--help"]],
    ids=" ".join,
)
def test_help_imports_no_heavy_library(args):
    result = probe(args)
    assert result["code"] == 0
    assert "Usage" in result["out"]
    assert result["loaded"] == []


def test_version_imports_no_heavy_library():
    result = probe(["--version"])
    assert result["out"].startswith("streamcli ")
    assert result["loaded"] == []


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [("streamcli mel", "1", "melvin"), ("streamcli melvin --sp", "2", "--speed")],
)
def test_bash_completion_imports_no_heavy_library(words, cword, expected):
    env = {"_STREAMCLI_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
    result = probe([], env)
    assert expected in result["out"].split()
    assert result["loaded"] == []


def test_zsh_completion_imports_no_heavy_library():
    env = {"_STREAMCLI_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "streamcli melvin --con"}
    result = probe([], env)
    assert "--concurrency" in result["out"]
    assert result["loaded"] == []


def test_the_probe_would_notice_a_heavy_import():
    # Guard against a probe that can never fail: importing the session loads aiohttp.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, streamcli.engine.session; print('aiohttp' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "True"


def test_the_help_style_loads_rich_tables_only_for_a_help_page():
    # helpstyle patches the options table when a page is rendered: a run pays nothing for it.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, streamcli.cli; print('typer.rich_utils' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "False"
