"""The help cache: a replayed page is byte for byte what Typer renders, and any input of the
rendering (arguments, terminal, environment, the code) makes a new page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamcli import helpcache


def run(args: list[str], cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCLI_", "_STREAMCLI"))}
    full.update({"XDG_CACHE_HOME": str(cache), "NO_COLOR": "1", "COLUMNS": "100", **env})
    return subprocess.run(
        [sys.executable, "-m", "streamcli", *args], capture_output=True, text=True, env=full
    )


@pytest.mark.parametrize(
    "args", [["--help"], ["-h"], [], ["melvin", "--help"], ["serve", "melvin", "--help"]]
)
def test_a_replayed_page_is_exactly_the_rendered_one(tmp_path, args):
    fresh = run(args, tmp_path, STREAMCLI_NO_HELP_CACHE="1")
    first = run(args, tmp_path)  # renders and records
    pages = list((tmp_path / "streamcli" / "help").iterdir())
    second = run(args, tmp_path)  # replays
    assert fresh.returncode == first.returncode == second.returncode == 0
    assert len(pages) == 1
    assert fresh.stdout == first.stdout == second.stdout
    assert "Usage:" in second.stdout and second.stderr == ""


def test_another_terminal_width_or_color_setting_is_another_page(tmp_path):
    narrow = run(["--help"], tmp_path, COLUMNS="60")
    wide = run(["--help"], tmp_path, COLUMNS="120")
    run(["--help"], tmp_path, COLUMNS="120", NO_COLOR="")
    assert len(list((tmp_path / "streamcli" / "help").iterdir())) == 3
    assert max(map(len, narrow.stdout.splitlines())) <= 60 < max(map(len, wide.stdout.splitlines()))


def test_errors_and_other_arguments_are_never_cached(tmp_path):
    bad = run(["nosuch", "--help"], tmp_path)
    assert bad.returncode == 2
    assert not (tmp_path / "streamcli" / "help").exists()
    assert not helpcache.wanted(["melvin", "--json", "--help"])
    assert not helpcache.wanted(["melvin", "talk.wav"])
    assert helpcache.wanted(["serve", "melvin", "-h"]) and helpcache.wanted([])


def test_completion_and_the_off_switch_bypass_it(monkeypatch):
    monkeypatch.setenv("_STREAMCLI_COMPLETE", "complete_bash")
    assert not helpcache.wanted(["--help"])
    monkeypatch.delenv("_STREAMCLI_COMPLETE")
    monkeypatch.setenv("STREAMCLI_NO_HELP_CACHE", "1")
    assert not helpcache.wanted(["--help"])


def test_a_change_to_the_code_changes_the_key():
    cli = Path(helpcache.__file__).with_name("cli.py")
    st = cli.stat()
    before = helpcache.key(["--help"])
    try:
        os.utime(cli, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert helpcache.key(["--help"]) != before
    finally:
        os.utime(cli, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert helpcache.key(["--help"]) == before


def test_a_completion_is_replayed_but_a_device_list_is_not(tmp_path):
    words = {"COMP_WORDS": "streamcli melvin --con", "COMP_CWORD": "2"}
    complete = {"_STREAMCLI_COMPLETE": "complete_bash", **words}
    first = run([], tmp_path, **complete)
    second = run([], tmp_path, **complete)
    fresh = run([], tmp_path, STREAMCLI_NO_HELP_CACHE="1", **complete)
    assert first.stdout == second.stdout == fresh.stdout
    assert "--concurrency" in second.stdout
    pages = tmp_path / "streamcli" / "help"
    assert len(list(pages.iterdir())) == 1
    devices = {**complete, "COMP_WORDS": "streamcli melvin --device ", "COMP_CWORD": "3"}
    assert run([], tmp_path, **devices).returncode == 0
    assert len(list(pages.iterdir())) == 1  # the devices change: never stored
