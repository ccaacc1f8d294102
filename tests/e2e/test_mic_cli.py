"""`streamcli melvin --mic` through a real input device: a PulseAudio null sink's monitor."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import CLEAN_ENV, dominant_frequency, require_asr

from streamcli.emulators.melvin import MelvinEmulator

from .conftest import KEY
from .test_mic_device import SINK, TONE_HZ, pulse, tone  # noqa: F401 - fixtures

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


async def slow_proxy(target_port: int, delay: float) -> tuple[asyncio.AbstractServer, int]:
    """A TCP proxy that makes every connection wait ``delay`` seconds before it goes through
    (a slow network or a server busy at its handshake)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_what_is_said_right_after_enter_is_sent_once_connected(
    pulse,  # noqa: F811
    emulator,
    tmp_path,
):
    """The user talks at once; the connection takes 2.5 s. The microphone has been capturing
    since launch, so the server gets the words said before it answered."""
    import subprocess

    rate = 48000
    t = np.arange(int(2.0 * rate)) / rate
    words = np.concatenate([0.5 * np.sin(2 * np.pi * TONE_HZ * t), np.zeros(10 * rate)])
    path = tmp_path / "said-at-once.wav"
    sf.write(path, words, rate, subtype="PCM_16")
    port = int(emulator.url.rsplit(":", 1)[1].split("/")[0])
    proxy, proxy_port = await slow_proxy(port, delay=2.5)
    try:
        cli = asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamcli", "melvin", "--mic", "--duration", "5",
            "--url", f"ws://127.0.0.1:{proxy_port}", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**CLEAN_ENV, **pulse_env()},
        )  # fmt: skip
        proc = await cli
        player = subprocess.Popen(
            ["paplay", f"--device={SINK}", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            player.terminate()
            player.wait(timeout=5)
    finally:
        proxy.close()
    assert proc.returncode == 0, err.decode()
    pcm = emulator.connections[0].pcm().astype(np.float32) / 32768
    voiced = np.abs(pcm).reshape(-1, 160).max(axis=1) > 0.1  # 10 ms frames with the tone
    # Without capture from launch, at most the tone's last ~0.3 s would arrive (capture would
    # start when the connection is up, 2.5 s after launch).
    assert voiced.sum() * 0.01 >= 1.2, voiced.sum()


async def test_demo_mic_recognizes_a_person_speaking_into_the_microphone(pulse, tmp_path):  # noqa: F811
    # Human speech (the first two readings of the bundled sample) played into the null sink
    # whose monitor is the microphone; the demo's emulator recognizes what it captured.
    require_asr()
    import jiwer

    from streamcli.commands.melvin import sample_paths

    from .test_mic_device import playing

    sample, transcript = sample_paths()
    pcm, rate = sf.read(str(sample), dtype="int16")
    spoken = tmp_path / "spoken.wav"
    sf.write(str(spoken), pcm[: 12 * rate], rate, subtype="PCM_16")
    said = " ".join(transcript.read_text("utf-8").splitlines()[:2])
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamcli", "demo", "--mic", "--duration", "15",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**CLEAN_ENV, **pulse_env(), "NO_COLOR": "1"},
    )  # fmt: skip
    assert demo.stderr is not None
    first = (await asyncio.wait_for(demo.stderr.readline(), 60)).decode()
    assert "streaming the microphone" in first, first
    await asyncio.sleep(1.0)  # the capture runs before the connection is up; give it a moment
    with playing(spoken):
        out, err = await asyncio.wait_for(demo.communicate(), 60)
    assert demo.returncode == 0, err.decode()
    heard = " ".join(out.decode().split())
    assert jiwer.wer(said, heard) < 0.6, heard
