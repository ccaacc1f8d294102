"""`streamcli melvin --mic` through a real input device: a PulseAudio null sink's monitor."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import CLEAN_ENV, dominant_frequency

from streamcli.emulators.melvin import MelvinEmulator

from .conftest import KEY
from .test_mic_device import TONE_HZ, pulse, tone  # noqa: F401 - fixtures

pytestmark = pytest.mark.mic


def pulse_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("PULSE_")} | {"MELVIN_API_KEY": KEY}


@pytest.fixture
async def emulator(script_file):
    emu = MelvinEmulator(api_keys=[KEY], script=script_file)
    await emu.start()
    yield emu
    await emu.stop()


async def test_mic_streams_the_tone_for_the_duration_at_16k(cli, tone, emulator):  # noqa: F811
    r = await cli("melvin", "--mic", "--duration", "3", "--url", emulator.url, env=pulse_env())
    assert r.code == 0, r.stderr
    conn = emulator.connections[0]
    assert conn.eof_received
    assert 2.8 <= conn.audio_seconds <= 3.2
    pcm = conn.pcm().astype(np.float32)
    assert abs(dominant_frequency(pcm[8000:], 16000) - TONE_HZ) < 5


async def test_ctrl_c_ends_a_mic_session_normally(tone, emulator):  # noqa: F811
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        "melvin",
        "--mic",
        "--url",
        emulator.url,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**CLEAN_ENV, **pulse_env()},
    )
    while not emulator.connections or emulator.connections[0].audio_seconds < 1.5:
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert emulator.connections[0].eof_received
    assert b'"type":"end"' in out


async def test_save_audio_keeps_what_was_captured(cli, tone, emulator, tmp_path):  # noqa: F811
    saved = tmp_path / "take1.wav"
    r = await cli(
        "melvin",
        "--mic",
        "--duration",
        "2",
        "--url",
        emulator.url,
        "--save-audio",
        str(saved),
        env=pulse_env(),
    )
    assert r.code == 0, r.stderr
    audio, rate = sf.read(str(saved), always_2d=True)
    assert abs(len(audio) / rate - 2.0) < 0.1
    assert abs(dominant_frequency(audio[:, 0], rate) - TONE_HZ) < 5


async def test_an_unknown_device_exits_2_listing_the_devices(cli, pulse):  # noqa: F811
    r = await cli("melvin", "--mic", "--device", "no-such-usb-mic", env=pulse_env())
    assert r.code == 2
    (line,) = r.stderr.strip().splitlines()
    assert "no-such-usb-mic" in line and "pulse" in line
