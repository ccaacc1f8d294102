"""The README's commands work as written: the demo offline, and serve + stream in two processes."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
from conftest import CLEAN_ENV

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TEXT = (ROOT / "streamcli" / "data" / "sample.txt").read_text().split("\n")


def test_readme_has_exactly_the_two_quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.S)
    assert commands == [
        "pip install '.[asr]' && streamcli demo",
        "pip install -e '.[test]' && python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test]'" in ci and "python -m pytest" in ci


async def test_demo_with_the_script_recognizer_streams_the_bundled_transcript_offline(cli):
    r = await cli("demo", "--speed", "0", "--json", "--recognizer", "script")
    assert r.code == 0, r.stderr
    finals = [json.loads(line)["text"] for line in r.lines if json.loads(line)["type"] == "final"]
    assert finals == [line for line in SAMPLE_TEXT if line]


async def test_demo_recognizes_the_bundled_human_speech_and_shows_it_beside_the_transcript(cli):
    # A person reading (LibriVox); PocketSphinx gets about two thirds of the words right.
    r = await cli("demo", "--speed", "0")
    assert r.code == 0, r.stderr
    read = " ".join(line for line in SAMPLE_TEXT if line)
    assert f"read:  {read}" in r.stderr.splitlines()
    (heard,) = [line[7:] for line in r.stderr.splitlines() if line.startswith("heard: ")]
    assert heard == " ".join(r.lines)  # the finals printed on stdout, as heard
    wer = float(re.search(r"word error rate (\d+)%", r.stderr).group(1)) / 100
    assert independent_wer(read, heard) == pytest.approx(wer, abs=0.006), r.stderr
    assert wer < 0.5 and len(heard.split()) > 50
    assert "PocketSphinx recognizes the audio" in r.stderr


def independent_wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(reference, hypothesis))


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


async def test_the_readme_ci_script_runs_as_written(tmp_path):
    """The "Regression tests in CI" script, run by bash on a folder laid out as it expects
    (only the install line and the port differ: no network here, and a free port)."""
    import shutil
    import socket
    import subprocess

    if shutil.which("espeak-ng") is None:
        import os

        import pytest

        if os.environ.get("STREAMCLI_REQUIRE_ESPEAK"):
            pytest.fail("espeak-ng is required here (STREAMCLI_REQUIRE_ESPEAK) but not installed")
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Regression tests in CI", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"```sh\n(#!/usr/bin/env bash\n.*?)\n```", section, re.S)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    script = script.replace("pip install 'streamcli[wer,report]'", ":").replace("8394", port)
    speech = tmp_path / "tests" / "speech"
    (speech / "audio").mkdir(parents=True)
    (speech / "refs").mkdir()
    sentence = "The quick brown fox jumps over the lazy dog."  # what the emulator "recognizes"
    (speech / "script.txt").write_text(sentence + "\n")
    for name, text in (("first", sentence), ("second", sentence)):
        subprocess.run(["espeak-ng", "-w", str(speech / "audio" / f"{name}.wav"), text], check=True)
        (speech / "refs" / f"{name}.txt").write_text(text + "\n")
    code, text, err = await run_bash(script, tmp_path, "-c", 120)
    assert code == 0, (text, err)
    assert "speech regression: passed" in text
    assert re.search(r"^WER 0 over 2 files, p95 latency", text, re.M), text
    assert (tmp_path / "report.xml").exists() and (tmp_path / "summary.md").exists()
    assert sorted(p.name for p in (tmp_path / "transcripts").iterdir()) == [
        "first.srt",
        "second.srt",
    ]
    # The HTML report, in a real browser: it says what the JSON summary says.
    from .browser import assert_report_matches, open_report

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    (summary,) = [e for e in events if e["type"] == "summary"]
    report = tmp_path / "report.html"
    assert_report_matches(await open_report(report), report, summary)


async def test_the_readme_locust_commands_run_as_written(tmp_path, speech_wav, script_file):
    """The "Load tests on many machines" block, run by bash against an emulator: only the
    install line, the URL, the key and the size of the run differ."""
    import shutil

    from streamcli.emulators.melvin import MelvinEmulator

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Load tests on many machines", 1)[1].split("\n## ", 1)[0]
    script = re.findall(r"```sh\n(.*?)\n```", section, re.S)[0]
    shutil.copy(speech_wav, tmp_path / "talk.wav")
    emu = MelvinEmulator(api_keys=["readme-key-0123456789"], seats=4, script=script_file)
    await emu.start()
    try:
        script = (
            script.replace("pip install 'streamcli[locust]'", ":")
            .replace("MELVIN_API_KEY=...", "MELVIN_API_KEY=readme-key-0123456789")
            .replace("ws://asr.example.org:8394", emu.url)
            .replace("-u 200 -r 20 --run-time 5m --processes 2", "-u 2 -r 2 --run-time 12s")
        )
        assert "--run-time 12s" in script and emu.url in script
        code, _, err = await run_bash(script, tmp_path, "-ec", 90)
    finally:
        await emu.stop()
    assert code == 0, err
    stats = (tmp_path / "run_stats.csv").read_text()
    assert "melvin,final latency," in stats and "melvin,session," in stats, stats
    assert "readme-key" not in (tmp_path / "locustfile.py").read_text()


async def run_bash(script: str, cwd: Path, flags: str, timeout: float) -> tuple[int, str, str]:
    """A README script run by bash, with this interpreter's scripts first on PATH."""
    env = {**CLEAN_ENV, "PATH": f"{Path(sys.executable).parent}:{CLEAN_ENV.get('PATH', '')}"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    proc = await asyncio.create_subprocess_exec(
        "bash",
        flags,
        script,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()
