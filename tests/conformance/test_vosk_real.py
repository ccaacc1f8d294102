"""The real client against the official Vosk WebSocket server (``websocket/asr_server.py``).

The server runs unmodified under a ``websockets`` release that still calls ``(websocket, path)``
handlers; only the ``vosk`` module (Kaldi) is the stand-in in ``servers/vosk/vosk.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import run_cli

from .conftest import ServerProcess, free_port, real_servers_dir
from .envs import SERVERS_DIR
from .servers.coded_words import RATE, encode, word_text

pytestmark = pytest.mark.skipif(
    not real_servers_dir().is_dir(), reason=f"no real server code at {real_servers_dir()}"
)


@pytest.fixture(scope="module")
def vosk(real_servers, vosk_python, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vosk")
    port = free_port()
    env = {
        "PYTHONPATH": str(SERVERS_DIR / "vosk"),
        "VOSK_SERVER_INTERFACE": "127.0.0.1",
        "VOSK_SERVER_PORT": str(port),
        "VOSK_SAMPLE_RATE": "8000",  # the server's default; the client's config overrides it
    }
    script = real_servers / "vosk-server" / "websocket" / "asr_server.py"
    server = ServerProcess.start(
        "vosk", [str(vosk_python), str(script), "model"], port, workdir, env
    )
    yield server
    server.stop()


def coded_wav(folder: Path, words: int) -> Path:
    path = folder / f"words{words}.wav"
    sf.write(str(path), np.frombuffer(encode(words), "<i2"), RATE, subtype="PCM_16")
    return path


@pytest.mark.parametrize("speed", ["4", "0"])
async def test_vosk_every_word_in_order_and_a_clean_end(vosk, tmp_path, speed):
    wav = coded_wav(tmp_path, 18)
    url = f"ws://127.0.0.1:{vosk.port}"
    r = await run_cli(
        "vosk", str(wav), "--url", url, "--speed", speed, "--json", "--debug", timeout=90
    )
    assert r.code == 0, f"{r.stderr}\n{vosk.log()}"
    events = [json.loads(line) for line in r.lines]
    finals = [e for e in events if e["type"] == "final"]
    assert [w for f in finals for w in f["text"].split()] == [word_text(i) for i in range(18)]
    assert all(not f.get("unconfirmed") for f in finals)
    assert finals[0]["words"][0]["start"] == 0.25  # times from the server, in seconds
    assert events[-1]["type"] == "end"
    # The server compares the eof frame byte for byte: '{"eof" : 1}', spaces included.
    sent = [line for line in r.stderr.splitlines() if "→ text" in line]
    assert sent[0].endswith('{"config": {"sample_rate": 16000}}')
    assert sent[-1].endswith('{"eof" : 1}')
    assert "Traceback" not in vosk.log()
