"""Any recording in (issue 24): media made here with PyAV -- AAC in .m4a, AAC in .mp4 beside a
video track, Opus in .webm, MP3 -- streamed by the real CLI to the emulators, arrive as the same
speech as the WAV path (sample-level correlation, duration within one chunk), at 16 kHz (Melvin)
and 8 kHz (Bodhi); stdin takes any container; --audio-stream picks a stream; what cannot be
read is one line and exit 2."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from aiohttp import web

from streamcli.commands.melvin import sample_paths

from . import backend_matrix as bm
from .tls import make_self_signed, server_context

av = pytest.importorskip("av", reason="the [media] extra is not installed")

RATE = 48000  # what the recordings are made at; the client resamples to the backend's rate
SECONDS = 6.0
CHUNK = 0.1  # the client's chunk: durations must agree within one


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Six seconds of the bundled reading (a person), at 48 kHz, float."""
    pcm, rate = sf.read(str(sample_paths()[0]), dtype="float32")
    return soxr.resample(pcm[: int(SECONDS * rate)], rate, RATE).astype(np.float32)


def encode(path: Path, container: str, codec: str, audio: list[np.ndarray], video: bool = False):
    """Write ``audio`` (one array per audio stream, mono) with ``codec`` into ``container``."""
    out = av.open(str(path), "w", format=container)
    picture = None
    if video:
        picture = out.add_stream("mpeg4", rate=10)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
    streams = []
    for _ in audio:
        stream = out.add_stream(codec, rate=RATE)
        stream.layout = "mono"
        streams.append(stream)
    for stream, samples in zip(streams, audio, strict=True):
        for i in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[i : i + 1024].reshape(1, -1), format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = RATE, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    if picture is not None:
        for k in range(int(SECONDS * 10)):
            image = av.VideoFrame.from_ndarray(np.full((48, 64, 3), k, np.uint8), format="rgb24")
            image.pts = k
            for packet in picture.encode(image):
                out.mux(packet)
        for packet in picture.encode(None):
            out.mux(packet)
    out.close()
    return path


MEDIA = {
    "aac.m4a": ("mp4", "aac", False),
    "aac-with-video.mp4": ("mp4", "aac", True),
    "opus.webm": ("webm", "libopus", False),
    "mp3.mp3": ("mp3", "libmp3lame", False),
}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, speech) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    made = {name: encode(folder / name, *spec[:2], [speech], video=spec[2])
            for name, spec in MEDIA.items()}  # fmt: skip
    wav = folder / "speech.wav"
    sf.write(str(wav), speech, RATE, subtype="FLOAT")
    return {"wav": wav, **made}


async def received(
    cli, name: str, path: Path, *more: str, stdin: bytes | None = None, pythonpath: str = ""
):
    """Stream ``path`` (or stdin) to the backend's emulator; (result, PCM it received)."""
    emu = bm.emulator(name)
    await emu.start()
    try:
        model = ["--model", "hi-banking-v2-8khz"] if name == "bodhi" else []
        r = await cli(
            name, "-" if stdin is not None else str(path),
            *bm.args(name, emu.url, "--speed", "0", *model, *more),
            env={**bm.env(name), **({"PYTHONPATH": pythonpath} if pythonpath else {})},
            stdin=stdin, timeout=90,
        )  # fmt: skip
    finally:
        await emu.stop()
    if not emu.connections:
        return r, np.zeros(0, np.int16)
    conn = emu.connections[0]
    pcm = conn.pcm() if callable(conn.pcm) else conn.pcm
    return r, pcm


def same_speech(reference: np.ndarray, other: np.ndarray, rate: int) -> float:
    """The best normalized correlation of ``other`` with ``reference`` within ±0.15 s (a
    codec's delay), after checking that the lengths agree within one chunk."""
    assert abs(len(other) - len(reference)) <= CHUNK * rate, (len(other), len(reference))
    a = reference.astype(np.float64)
    b = other.astype(np.float64)
    n = min(len(a), len(b)) - int(0.3 * rate)
    best = 0.0
    for lag in range(-int(0.15 * rate), int(0.15 * rate) + 1):
        x = a[max(0, lag) : max(0, lag) + n]
        y = b[max(0, -lag) : max(0, -lag) + n]
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9)))
    return best


@pytest.mark.parametrize("name", ["melvin", "bodhi"])
@pytest.mark.parametrize("media", list(MEDIA))
async def test_each_recording_arrives_as_the_same_speech_as_the_wav(cli, recordings, name, media):
    r0, wav_pcm = await received(cli, name, recordings["wav"])
    r1, media_pcm = await received(cli, name, recordings[media])
    assert r0.code == 0 and r1.code == 0, r1.stderr
    rate = 16000 if name == "melvin" else 8000
    assert abs(len(wav_pcm) / rate - SECONDS) <= CHUNK
    assert same_speech(wav_pcm, media_pcm, rate) > 0.9


async def test_stdin_takes_any_container(cli, recordings):
    _, wav_pcm = await received(cli, "melvin", recordings["wav"])
    r1, piped = await received(cli, "melvin", recordings["aac.m4a"],
                               stdin=recordings["aac.m4a"].read_bytes())  # fmt: skip
    assert r1.code == 0, r1.stderr
    assert same_speech(wav_pcm, piped, 16000) > 0.9


async def test_audio_stream_picks_the_second_of_two(cli, tmp_path):
    t = np.arange(int(2 * RATE)) / RATE
    low, high = (0.4 * np.sin(2 * np.pi * f * t).astype(np.float32) for f in (440.0, 660.0))
    both = encode(tmp_path / "two.mkv", "matroska", "aac", [low, high])
    for stream, hz in ((None, 440.0), ("1", 660.0)):
        more = ["--audio-stream", stream] if stream else []
        r, pcm = await received(cli, "melvin", both, *more)
        assert r.code == 0, r.stderr
        spectrum = np.abs(np.fft.rfft(pcm[4000:28000] * np.hanning(24000)))
        assert np.fft.rfftfreq(24000, 1 / 16000)[np.argmax(spectrum)] == pytest.approx(hz, abs=3)
    r, _ = await received(cli, "melvin", both, "--audio-stream", "2")
    assert r.code == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"streamcli: error: --audio-stream 2: {both} has 2 audio stream(s), numbered from 0 to 1"
    )


def one_line(r) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr.strip().splitlines()[-1]


async def test_what_cannot_be_read_is_one_line_and_exit_2(cli, recordings, tmp_path):
    m4a = recordings["aac.m4a"].read_bytes()
    cut = tmp_path / "cut.m4a"  # an MP4 cut short loses its index (written last): unreadable
    cut.write_bytes(m4a[: len(m4a) // 2])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(20000))
    video = tmp_path / "video-only.mp4"
    out = av.open(str(video), "w")
    picture = out.add_stream("mpeg4", rate=10)
    picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
    for k in range(10):
        image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
        image.pts = k
        for packet in picture.encode(image):
            out.mux(packet)
    for packet in picture.encode(None):
        out.mux(packet)
    out.close()
    unreadable = (
        "not a readable audio file, nor a media file (Format not recognised; FFmpeg: Invalid "
        "data found when processing input)"
    )
    expected = {
        cut: f"{cut}: {unreadable}",
        junk: f"{junk}: {unreadable}",
        video: f"{video}: the file has no audio stream (video only)",
    }
    for path, line in expected.items():
        r, _ = await received(cli, "melvin", path)
        assert r.code == 2
        assert one_line(r) == f"streamcli: error: {line}"


async def test_a_cut_stream_is_streamed_as_far_as_it_goes_then_one_line(cli, recordings, tmp_path):
    # WebM needs no index: a cut file decodes up to the cut. What was there is streamed and
    # its finals are kept; then the run says the file was cut (exit 2).
    webm = recordings["opus.webm"].read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(webm[: len(webm) // 2])
    r, pcm = await received(cli, "melvin", cut, "--json")
    assert r.code == 2
    assert one_line(r).startswith(f"streamcli: error: {cut}: the file ends after ")
    assert one_line(r).endswith(f"of its {SECONDS:.1f} s (truncated?)")
    assert 1.0 < len(pcm) / 16000 < SECONDS - 1.0


async def test_without_the_media_extra_a_media_file_names_it(cli, recordings, tmp_path):
    (tmp_path / "av").mkdir()
    (tmp_path / "av" / "__init__.py").write_text("raise ImportError('not here')\n")
    path = os.pathsep.join([str(tmp_path), *sys.path])
    r, _ = await received(cli, "melvin", recordings["aac.m4a"], pythonpath=path)
    assert r.code == 2
    assert one_line(r).startswith(f"streamcli: error: {recordings['aac.m4a']}: not a format ")
    assert one_line(r).endswith("need PyAV: pip install 'streamcli[media]'")


# ---- http(s) URLs -------------------------------------------------------------------------------
class WebServer:
    """A local aiohttp server: the MP3 as a file (with its length), as an endless live stream
    (chunked, looped, at about real time), a stream that stalls, a 404 and an HTML page."""

    def __init__(self, mp3: bytes, ssl_context=None) -> None:
        self.mp3, self.ssl_context = mp3, ssl_context
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> WebServer:
        app = web.Application()
        app.router.add_get("/talk.mp3", self.file)
        app.router.add_get("/radio", self.radio)
        app.router.add_get("/stall", self.stall)
        app.router.add_get("/page", self.page)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def url(self, path: str) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}{path}"

    async def file(self, request: web.Request) -> web.Response:
        return web.Response(body=self.mp3, content_type="audio/mpeg")

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg", "icy-name": "test"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        return response

    async def radio(self, request: web.Request) -> web.StreamResponse:
        response = await self._chunked(request)
        step = 8000  # 64 kb/s MP3: 8 kB a second, sent every 0.1 s at a bit over real time
        with contextlib.suppress(ConnectionError):
            while True:  # endless: the recording again and again
                for i in range(0, len(self.mp3), step // 10):
                    await response.write(self.mp3[i : i + step // 10])
                    await asyncio.sleep(0.08)
        return response

    async def stall(self, request: web.Request) -> web.StreamResponse:
        response = await self._chunked(request)
        await response.write(self.mp3[: len(self.mp3) // 2])
        await asyncio.sleep(30)  # then nothing, the connection open
        return response

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Not a stream</body></html>", content_type="text/html")


async def test_a_file_url_arrives_as_the_same_speech_as_the_wav(cli, recordings):
    _, wav_pcm = await received(cli, "melvin", recordings["wav"])
    async with WebServer(recordings["mp3.mp3"].read_bytes()) as server:
        r, pcm = await received(cli, "melvin", server.url("/talk.mp3"))
    assert r.code == 0, r.stderr
    assert same_speech(wav_pcm, pcm, 16000) > 0.9


async def test_a_live_stream_is_paced_by_its_arrival_and_ends_with_duration(cli, recordings):
    _, wav_pcm = await received(cli, "bodhi", recordings["wav"])
    async with WebServer(recordings["mp3.mp3"].read_bytes()) as server:
        r, pcm = await received(cli, "bodhi", server.url("/radio"), "--duration", "4")
    assert r.code == 0, r.stderr
    assert abs(len(pcm) / 8000 - 4.0) <= CHUNK  # the live source ends at --duration
    head = wav_pcm[: len(pcm)]
    assert same_speech(head, pcm, 8000) > 0.9


async def test_url_failures_are_one_line_with_their_exit_codes(cli, recordings):
    async with WebServer(recordings["mp3.mp3"].read_bytes()) as server:
        missing, _ = await received(cli, "melvin", server.url("/nothing.mp3"))
        page, _ = await received(cli, "melvin", server.url("/page"))
        stalled, stalled_pcm = await received(
            cli, "melvin", server.url("/stall"), "--timeout", "2", "--json"
        )
        port = server.port
    gone, _ = await received(cli, "melvin", f"http://127.0.0.1:{port}/talk.mp3")
    assert (missing.code, one_line(missing)) == (
        2, f"streamcli: error: http://127.0.0.1:{port}/nothing.mp3: HTTP 404 Not Found"
    )  # fmt: skip
    assert (page.code, one_line(page)) == (
        2, f"streamcli: error: http://127.0.0.1:{port}/page: the server sent a text/html page, "
        "not audio",
    )  # fmt: skip
    assert (stalled.code, one_line(stalled)) == (
        4, f"streamcli: error: http://127.0.0.1:{port}/stall: the stream stalled: nothing came "
        "for 2 s",
    )  # fmt: skip
    # What came before the stall was streamed, and what the server made of it is kept.
    assert len(stalled_pcm) / 16000 > 2.0
    assert any(e["type"] == "final" for e in map(json.loads, stalled.stdout.splitlines()))
    assert gone.code == 4
    assert one_line(gone).startswith(f"streamcli: error: cannot reach http://127.0.0.1:{port}/")


async def test_an_https_url_takes_the_ca_file_and_says_why_without_it(cli, recordings, tmp_path):
    cert, key = make_self_signed(tmp_path)
    mp3 = recordings["mp3.mp3"].read_bytes()
    async with WebServer(mp3, server_context(cert, key)) as server:
        url = server.url("/talk.mp3")
        trusted, pcm = await received(cli, "melvin", url, "--ca-file", str(cert))
        untrusted, _ = await received(cli, "melvin", url)
    assert trusted.code == 0, trusted.stderr
    assert abs(len(pcm) / 16000 - SECONDS) <= CHUNK
    assert untrusted.code == 4
    assert "TLS failure connecting to https://127.0.0.1:" in one_line(untrusted)
    assert one_line(untrusted).endswith("--ca-file PATH, or skip checks with --insecure)")
