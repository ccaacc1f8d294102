"""The README's commands work as written: the demo offline, and serve + stream in two processes."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from conftest import CLEAN_ENV

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TEXT = (ROOT / "streamcli" / "data" / "sample.txt").read_text().split("\n")


def test_readme_has_exactly_the_two_quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.S)
    assert commands == [
        "pip install . && streamcli demo",
        "pip install -e '.[test]' && python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test]'" in ci and "python -m pytest" in ci


async def test_demo_streams_the_bundled_sample_offline(cli):
    r = await cli("demo", "--speed", "0", "--json")
    assert r.code == 0, r.stderr
    finals = [json.loads(line)["text"] for line in r.lines if json.loads(line)["type"] == "final"]
    assert finals == [line for line in SAMPLE_TEXT if line]


async def test_serve_melvin_then_stream_to_it_like_the_readme(cli, speech_wav, script_file):
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        "serve",
        "melvin",
        "--port",
        "0",
        "--rest-port",
        "0",
        "--api-key",
        "test",
        "--script",
        str(script_file),
        stderr=asyncio.subprocess.PIPE,
        env=CLEAN_ENV,
    )
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(server.stderr.readline(), 20)).decode()
            assert line, "the emulator exited before listening"
            found = re.search(r"listening on (ws://\S+)", line)
            url = found.group(1) if found else None
        r = await cli(
            "melvin", str(speech_wav), "--url", url, "--speed", "8", env={"MELVIN_API_KEY": "test"}
        )
    finally:
        server.terminate()
        await server.wait()
    assert r.code == 0, r.stderr
    assert r.lines == ["Hello streaming world.", "The second sentence ends here."]
