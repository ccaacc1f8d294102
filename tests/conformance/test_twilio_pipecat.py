"""Our Twilio audio channel (the Veridas ``--audio-protocol twilio`` path) against a real Twilio
Media Streams consumer: pipecat 1.14's telephony runner code (``servers/pipecat_twilio.py``,
in its own cached venv). pipecat recognizes a Twilio stream by its full ``start`` message, and
decodes each ``media`` payload with its ``TwilioFrameSerializer``."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from streamcli import events as ev
from streamcli.audio.pacer import Pacer
from streamcli.audio.sources import open_source
from streamcli.backends.twilio import TwilioMediaClient
from streamcli.engine.feed import feed
from streamcli.engine.session import Session, SessionOptions

from .conftest import ServerProcess, free_port
from .envs import PIPECAT_REQUIREMENTS, SERVERS_DIR, python_env

AMPLITUDE = 0.3


def start_consumer(tmp: Path, enough_seconds: float) -> ServerProcess:
    python = python_env("pipecat", PIPECAT_REQUIREMENTS)
    port = free_port()
    cmd = [str(python), str(SERVERS_DIR / "pipecat_twilio.py"), str(port), str(enough_seconds)]
    # The runner reads the account for its auto hang-up (never used here: we send no EndFrame).
    env = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "conformance-token"}
    return ServerProcess.start("pipecat", cmd, port, tmp, env)


@pytest.fixture(scope="module")
def pipecat(tmp_path_factory):
    server = start_consumer(tmp_path_factory.mktemp("pipecat"), 0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pipecat_enough(tmp_path_factory):
    server = start_consumer(tmp_path_factory.mktemp("pipecat-enough"), 1.0)
    yield server
    server.stop()


def reports(server: ServerProcess) -> list[dict]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith('{"report"'):
            out.append(json.loads(line)["report"])
    return out


async def next_report(server: ServerProcess, before: int) -> dict:
    for _ in range(50):
        found = reports(server)
        if len(found) > before:
            return found[before]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no report from the consumer:\n{server.log()}")


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    t = np.arange(int(4.0 * 16000)) / 16000
    path = tmp_path / "tone.wav"
    sf.write(str(path), (AMPLITUDE * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


async def run_channel(url: str, wav: Path, call_sid: str) -> tuple[TwilioMediaClient, list]:
    """One audio channel as the Veridas session runs it: connect, feed, end."""
    backend = TwilioMediaClient(url, call_sid)
    events: list[ev.Event] = []
    stream = Session(backend, events.append, SessionOptions(speed=4.0, timeout=10.0))
    assert await stream.connect(), events
    runner = asyncio.create_task(stream.run())
    await feed(open_source(str(wav)), [stream], Pacer(4.0), 100)
    stream.end_audio()
    await asyncio.wait_for(runner, 30)
    return backend, events


async def test_pipecat_recognizes_our_stream_as_twilio_and_decodes_every_sample(pipecat, tone):
    before = len(reports(pipecat))
    call = str(uuid.uuid4())
    backend, events = await run_channel(f"ws://127.0.0.1:{pipecat.port}/ws", tone, call)
    seen = await next_report(pipecat, before)
    assert "error" not in seen, seen
    assert not [e for e in events if isinstance(e, ev.Error)], events
    assert seen["transport"] == "twilio"
    assert (seen["call_id"], seen["stream_id"], seen["body"]) == (call, backend.stream_sid, {})
    assert seen["events"] == ["media"] * (len(seen["events"]) - 1) + ["stop"]
    assert seen["samples"] == 4 * 8000  # every sample, decoded by pipecat's serializer
    # μ-law keeps the tone's level: RMS of a sine is A/√2.
    assert seen["rms"] == pytest.approx(AMPLITUDE * 32768 / math.sqrt(2), rel=0.02)


async def test_a_consumer_that_has_enough_audio_closes_and_the_channel_ends_cleanly(
    pipecat_enough, tone
):
    before = len(reports(pipecat_enough))
    url = f"ws://127.0.0.1:{pipecat_enough.port}/ws"
    backend, events = await run_channel(url, tone, str(uuid.uuid4()))
    seen = await next_report(pipecat_enough, before)
    assert seen["enough"] is True and seen["samples"] >= 8000
    assert not [e for e in events if isinstance(e, ev.Error)], events
    assert backend.finished


async def test_the_old_subset_is_not_a_twilio_stream_to_pipecat(pipecat):
    # What we sent before: start with only callSid, media with only payload. pipecat refuses it.
    before = len(reports(pipecat))
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{pipecat.port}/ws")
        await ws.send_str(json.dumps({"event": "start", "start": {"callSid": "c"}}))
        await ws.send_str(json.dumps({"event": "media", "media": {"payload": "//8="}}))
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1011
    seen = await next_report(pipecat, before)
    assert seen["error"].startswith("Unsupported telephony provider: unknown")
