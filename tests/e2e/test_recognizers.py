"""Real speech through every emulator with the PocketSphinx recognizer: a person reading
(the bundled LibriVox sample) streamed by the real CLI, scored against its transcript with
``--reference`` (jiwer). The thresholds are loose enough for PocketSphinx and tight enough to
fail when the audio is corrupted (a wrong sample rate in the header)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
import soundfile as sf
from conftest import CLEAN_ENV, require_asr

from streamcli.commands.melvin import sample_paths

from . import backend_matrix as bm

require_asr()

SAMPLE, TRANSCRIPT = sample_paths()
# (backend, emulator switches, CLI options, the WER to stay under): 16 kHz for Melvin, Phebi
# and Vosk; Bodhi's telephony model is 8 kHz (the 16 kHz model hears it worse).
CASES = [
    ("melvin", {}, [], 0.45),
    ("phebi", {}, [], 0.45),
    ("vosk", {"sample_rate": 16000}, ["--sample-rate", "16000"], 0.45),
    ("bodhi", {}, ["--model", "en-general-v2-8khz"], 0.6),
]


def result_of(stdout: str) -> dict:
    (result,) = [e for e in map(json.loads, stdout.splitlines()) if e["type"] == "result"]
    return result


async def score(cli, name: str, switches: dict, options: list[str], audio: Path, *more: str):
    emu = bm.emulator(name, recognizer="pocketsphinx", **switches)
    await emu.start()
    try:
        return await cli(
            name,
            str(audio),
            *bm.args(name, emu.url, "--speed", "0", "--reference", str(TRANSCRIPT), "--json"),
            *options,
            *more,
            env=bm.env(name),
            timeout=180,
        )
    finally:
        await emu.stop()


@pytest.mark.parametrize(
    ("name", "switches", "options", "threshold"), CASES, ids=[c[0] for c in CASES]
)
async def test_a_person_reading_is_recognized_through_each_emulator(
    cli, name, switches, options, threshold
):
    r = await score(cli, name, switches, options, SAMPLE)
    assert r.code == 0, r.stderr
    result = result_of(r.stdout)
    assert result["status"] == "ok" and result["accuracy"]["reference_words"] == 71
    assert result["accuracy"]["wer"] < threshold, result["transcript"]
    # Real, irregular words: not the transcript handed back.
    assert result["accuracy"]["wer"] > 0 and len(result["transcript"].split()) > 50


async def test_a_wrong_sample_rate_fails_the_wer_threshold(cli, tmp_path):
    # The same samples, the header says 11.025 kHz: the client resamples what it is told, the
    # recognizer hears slow, low speech.
    pcm, _ = sf.read(str(SAMPLE), dtype="int16")
    wrong = tmp_path / "wrong-rate.wav"
    sf.write(str(wrong), pcm, 11025, subtype="PCM_16")
    r = await score(cli, "melvin", {}, [], wrong, "--max-wer", "0.6")
    assert r.code == 8, r.stderr
    assert result_of(r.stdout)["accuracy"]["wer"] > 0.6


async def test_serve_with_the_recognizer_says_so_and_without_the_extra_says_how(tmp_path):
    env = {**CLEAN_ENV, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamcli", "serve", "vosk", "--port", "0",
        "--recognizer", "pocketsphinx",
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        first = (await asyncio.wait_for(server.stderr.readline(), 30)).decode()
        second = (await asyncio.wait_for(server.stderr.readline(), 30)).decode()
    finally:
        server.terminate()
        await server.wait()
    assert first.startswith("recognizer: PocketSphinx (US English)")
    assert re.search(r"vosk emulator listening on ws://127\.0\.0\.1:\d+", second)
    # Without the extra: a stand-in pocketsphinx that cannot be imported.
    (tmp_path / "pocketsphinx").mkdir()
    (tmp_path / "pocketsphinx" / "__init__.py").write_text("raise ImportError('not here')\n")
    hidden = {**env, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamcli", "serve", "melvin", "--port", "0", "--rest-port", "0",
        "--recognizer", "pocketsphinx",
        stderr=asyncio.subprocess.PIPE, env=hidden,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert err.decode().strip().splitlines() == [
        "streamcli: error: --recognizer pocketsphinx: real recognition needs PocketSphinx: "
        "pip install 'streamcli[asr]'"
    ]
