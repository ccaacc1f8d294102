"""The microphone through a real audio device: PortAudio → ALSA's ``pulse`` plugin →
PulseAudio, recording the monitor of a null sink while ``paplay`` plays a tone into it.

``.ci/pulse.sh`` starts the daemon (idempotent). PortAudio scans the devices once, when
``sounddevice`` is imported, so the environment that points at the daemon is set first and
PortAudio is re-initialized if something imported it earlier in this process.
Skipped, with the reason, only when PulseAudio cannot run here at all; set
STREAMCLI_REQUIRE_PULSE=1 (CI) to make that a failure instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from streamcli.audio import mic

pytestmark = pytest.mark.mic

ROOT = Path(__file__).resolve().parents[2]
PULSE_SH = ROOT / ".ci" / "pulse.sh"
SINK = "streamcli_test"
TONE_HZ = 440.0
RIGHT_HZ = 660.0
CAPTURE_SECONDS = 2.0


def _unavailable(reason: str) -> None:
    if os.environ.get("STREAMCLI_REQUIRE_PULSE") == "1":
        pytest.fail(f"PulseAudio is required here (STREAMCLI_REQUIRE_PULSE=1): {reason}")
    pytest.skip(f"PulseAudio cannot run here: {reason}")


def start_pulse() -> dict[str, str]:
    """Run .ci/pulse.sh; return the environment it prints (PULSE_SERVER, PULSE_SOURCE)."""
    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (apt-get install pulseaudio pulseaudio-utils)")
    done = subprocess.run(
        ["bash", str(PULSE_SH)], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        _unavailable(done.stderr.strip().replace("\n", " | ") or f"exit {done.returncode}")
    return dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)


def rescan_sounddevice() -> ModuleType:
    """sounddevice with PortAudio's device list taken in the current environment."""
    sd = sys.modules.get("sounddevice")
    if sd is None:
        return mic.import_sounddevice()  # the import scans the devices
    sd._terminate()  # PortAudio's ALSA backend also drops ALSA's cached configuration here
    sd._initialize()
    return sd


@pytest.fixture(scope="module")
def pulse() -> Iterator[ModuleType]:
    env = start_pulse()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)  # PULSE_SOURCE=streamcli_test.monitor: the "microphone"
        yield rescan_sounddevice()
    rescan_sounddevice()


@pytest.fixture
def tone(tmp_path: Path, pulse: ModuleType) -> Iterator[None]:
    """A 440 Hz tone playing into the null sink (30 s, longer than any capture here)."""
    import soundfile as sf

    rate = 48000
    t = np.arange(30 * rate) / rate
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * TONE_HZ * t), rate, subtype="PCM_16")
    with playing(path):
        yield


@pytest.fixture
def stereo_tones(tmp_path: Path, pulse: ModuleType) -> Iterator[None]:
    """440 Hz on the left and 660 Hz on the right, playing into the (stereo) null sink."""
    import soundfile as sf

    rate = 48000
    t = np.arange(30 * rate) / rate
    both = np.stack([np.sin(2 * np.pi * TONE_HZ * t), np.sin(2 * np.pi * RIGHT_HZ * t)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, 0.5 * both, rate, subtype="PCM_16")
    with playing(path):
        yield


@contextlib.contextmanager
def playing(path: Path) -> Iterator[None]:
    """``paplay`` plays ``path`` into the null sink until the block ends."""
    player = subprocess.Popen(
        ["paplay", f"--device={SINK}", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_playing(player)
        yield
    finally:
        player.terminate()
        player.wait(timeout=5)


def wait_until_playing(player: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if player.poll() is not None:
            err = player.stderr.read().decode() if player.stderr else ""
            pytest.fail(f"paplay exited with {player.returncode}: {err.strip()}")
        inputs = subprocess.run(
            ["pactl", "list", "short", "sink-inputs"], capture_output=True, text=True, check=True
        )
        if inputs.stdout.strip():
            return
        time.sleep(0.05)
    pytest.fail(f"paplay did not start playing within {timeout:g} s")


def dominant_frequency(audio: np.ndarray, rate: int) -> float:
    mono = audio.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / rate)[np.argmax(spectrum)])


async def capture(source: mic.MicSource, seconds: float) -> np.ndarray:
    """What blocks() yields when the session calls stop() after ``seconds``."""
    asyncio.get_running_loop().call_later(seconds, source.stop)
    blocks = [block async for block in source.blocks()]
    assert blocks, "the microphone delivered no audio"
    return np.concatenate(blocks)


def test_pulse_is_an_input_device(pulse: ModuleType) -> None:
    names = [d.name for d in mic.list_input_devices(pulse)]
    assert "pulse" in names, names
    assert mic.select_device("pulse", pulse).name == "pulse"


@pytest.mark.parametrize("device", ["pulse", None], ids=["pulse", "default"])
async def test_the_microphone_hears_a_tone_played_into_the_null_sink(
    device: str | None, pulse: ModuleType, tone: None
) -> None:
    source = mic.MicSource(device=device, want_rate=16000, sd=pulse)
    try:
        opened = source._stream.samplerate  # the rate PortAudio really opened
        audio = await capture(source, CAPTURE_SECONDS)
    finally:
        source.close()
    assert source.rate == opened
    assert source.rate in (16000, round(source.device.default_samplerate))
    assert audio.dtype == np.float32
    assert audio.shape[1] == source.channels == 1
    seconds = len(audio) / source.rate
    assert 1.0 < seconds < CAPTURE_SECONDS + 0.5, f"{seconds:.2f} s of audio in 2 s"
    assert dominant_frequency(audio, source.rate) == pytest.approx(TONE_HZ, abs=3.0)
    assert source.level is not None and source.level > -20.0  # the 0.5 tone is at -9 dBFS
    assert source.take_warnings() == []


async def test_two_channels_arrive_as_the_device_interleaves_them(
    pulse: ModuleType, stereo_tones: None
) -> None:
    # The stream is raw (bytes from PortAudio): each block must come out as (frames, 2) with
    # the left channel in column 0, as --split-channels sends them to two sessions.
    source = mic.MicSource(device="pulse", want_rate=16000, channels=2, sd=pulse)
    try:
        audio = await capture(source, CAPTURE_SECONDS)
    finally:
        source.close()
    assert audio.dtype == np.float32
    assert audio.shape[1] == source.channels == 2
    assert dominant_frequency(audio[:, :1], source.rate) == pytest.approx(TONE_HZ, abs=3.0)
    assert dominant_frequency(audio[:, 1:], source.rate) == pytest.approx(RIGHT_HZ, abs=3.0)


async def test_a_rate_the_plugin_cannot_take_falls_back_without_error(
    pulse: ModuleType, tone: None
) -> None:
    # 1 Hz is below what any ALSA device takes: PortAudio refuses it, the device's own
    # default rate is opened instead, and "Invalid sample rate" never reaches the user.
    source = mic.MicSource(device="pulse", want_rate=1, sd=pulse)
    try:
        audio = await capture(source, 1.0)
    finally:
        source.close()
    assert source.rate == round(source.device.default_samplerate)
    assert dominant_frequency(audio, source.rate) == pytest.approx(TONE_HZ, abs=3.0)
