"""Our AudioHook channel (the Veridas ``--channel audiohook`` audio path) against the Genesys
AudioHook reference server session and its HTTP signature verifier (TypeScript, unmodified,
run by ts-node behind ``servers/audiohook/server.js``)."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamcli import events as ev
from streamcli.audio.pacer import Pacer
from streamcli.audio.sources import open_source
from streamcli.backends.audiohook import AudiohookClient
from streamcli.engine.feed import feed
from streamcli.engine.session import Session, SessionOptions

from .conftest import ServerProcess, free_port, real_servers_dir
from .envs import AUDIOHOOK_PACKAGES, SERVERS_DIR, node_env

pytestmark = pytest.mark.skipif(
    not real_servers_dir().is_dir(), reason=f"no real server code at {real_servers_dir()}"
)
API_KEY = "conformance-api-key"
SECRET = base64.b64encode(b"conformance client secret 0123456789").decode()
ORG = "d7934305-0972-4844-938e-9060eef73d05"


@pytest.fixture(scope="module")
def audiohook(real_servers, tmp_path_factory):
    if shutil.which("node") is None:
        raise RuntimeError("node is not installed: the AudioHook reference server needs Node 20")
    modules = node_env("audiohook", AUDIOHOOK_PACKAGES) / "node_modules"
    port = free_port()
    cmd = [
        "node", str(SERVERS_DIR / "audiohook" / "server.js"),
        str(real_servers / "audiohook-reference" / "app"), str(port), API_KEY, SECRET,
    ]  # fmt: skip
    server = ServerProcess.start(
        "audiohook", cmd, port, tmp_path_factory.mktemp("audiohook"), {"NODE_PATH": str(modules)}
    )
    yield server
    server.stop()


def log_lines(server: ServerProcess, session_id: str) -> list[dict]:
    lines = []
    for line in server.log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("session") == session_id:
            lines.append(entry)
    return lines


def summary(lines: list[dict]) -> dict:
    for entry in lines:
        if entry["msg"].startswith('{"summary"'):
            return json.loads(entry["msg"])["summary"]
    raise AssertionError(f"the session never closed: {lines}")


async def run_channel(url: str, wav: Path, secret: str) -> tuple[AudiohookClient, list[ev.Event]]:
    """One register-side audio session, as ``veridas register --channel audiohook`` runs it."""
    backend = AudiohookClient(
        url,
        conversation_id=str(uuid.uuid4()),
        organization_id=ORG,
        api_key=API_KEY,
        client_secret=secret,
        created=int(time.time()),
        ping_interval=0.5,
    )
    events: list[ev.Event] = []
    stream = Session(backend, events.append, SessionOptions(speed=2.0, timeout=10.0))
    if await stream.connect():
        runner = asyncio.create_task(stream.run())
        await feed(open_source(str(wav)), [stream], Pacer(2.0), 100)
        stream.end_audio()  # close -> closed, as the Veridas session does after the feed
        await asyncio.wait_for(runner, 30)
    return backend, events


@pytest.fixture
def voice(tmp_path: Path) -> Path:
    t = np.arange(int(4.0 * 16000)) / 16000
    path = tmp_path / "voice.wav"
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


async def test_a_signed_audiohook_session_is_accepted_from_open_to_closed(audiohook, voice):
    # A path and a query: the reference verifies @request-target against what it received.
    url = f"ws://127.0.0.1:{audiohook.port}/api/v1/voicebiometrics/ws?tok=abc"
    backend, events = await run_channel(url, voice, SECRET)
    await asyncio.sleep(0.3)  # the server logs its summary after the close transaction
    lines = log_lines(audiohook, backend.session_id)
    problems = [e for e in lines if e["level"] in ("warn", "error", "fatal")]
    assert problems == [], problems
    assert not [e for e in events if isinstance(e, ev.Error)], events
    assert backend.finished and isinstance(events[-1], ev.Status)
    assert events[-1].state == "audio-closed"  # after "closed": the channel ended cleanly
    seen = summary(lines)
    assert seen["verify"] == {"code": "VERIFIED"}
    # close -> closed completed, then the socket closed and the fini handlers ran.
    assert any("Close handlers completed, session closed" in e["msg"] for e in lines)
    assert seen["state"] == "FINALIZING"
    types = [m["type"] for m in seen["clientMessages"]]
    assert types[0] == "open" and types[-1] == "close" and "ping" in types
    assert [m["seq"] for m in seen["clientMessages"]] == list(range(1, len(types) + 1))
    assert seen["clientMessages"][-1]["parameters"] == {"reason": "end"}
    # 4 s of 8 kHz PCMU, every sample, and the close position says so.
    assert seen["audioBytes"] == 4 * 8000
    assert seen["clientMessages"][-1]["position"] == "PT4S"


async def test_a_wrong_client_secret_is_refused_by_the_reference_verifier(audiohook, voice):
    wrong = base64.b64encode(b"not the secret the server knows").decode()
    backend, events = await run_channel(f"ws://127.0.0.1:{audiohook.port}/ws", voice, wrong)
    errors = [e for e in events if isinstance(e, ev.Error)]
    assert errors and errors[0].kind == ev.AUTH, events
    await asyncio.sleep(0.3)
    seen = summary(log_lines(audiohook, backend.session_id))
    assert seen["verify"]["code"] == "FAILED"


async def test_percent_escapes_in_the_url_are_signed_as_they_go_on_the_wire(audiohook, voice):
    # aiohttp (yarl) sends "%2F" in a query as "/" and "%7e" as "~"; the reference verifies the
    # request target it received, so we sign that, not what was typed.
    url = f"ws://127.0.0.1:{audiohook.port}/api/v1/voicebiometrics/ws?tok=abc%2Fdef%2B%3D&x=%7e"
    backend, events = await run_channel(url, voice, SECRET)
    assert not [e for e in events if isinstance(e, ev.Error)], events
    await asyncio.sleep(0.3)
    assert summary(log_lines(audiohook, backend.session_id))["verify"] == {"code": "VERIFIED"}
