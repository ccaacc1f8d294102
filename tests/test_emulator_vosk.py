"""The Vosk server emulator, driven over loopback by a hand-written aiohttp client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from streamcli.emulators.vosk import SERVE_HELP, VoskEmulator

RATE = 16000
CHUNK = RATE // 10  # 100 ms
SCRIPT = "Hello there general Kenobi. You are a bold one."
EOF = '{"eof" : 1}'


def tone(seconds: float, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * 300.0 * t)).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), np.int16)


def speech_like(rate: int = RATE) -> np.ndarray:
    """Two bursts of a 300 Hz tone: the first ends in a pause, the second at end of stream."""
    return np.concatenate(
        [silence(0.2, rate), tone(1.2, rate), silence(0.5, rate), tone(1.0, rate)]
    )


def chunks(pcm: np.ndarray, size: int = CHUNK) -> list[bytes]:
    return [pcm[i : i + size].astype("<i2").tobytes() for i in range(0, len(pcm), size)]


async def read_until_close(ws: aiohttp.ClientWebSocketResponse) -> list[dict]:
    messages = []
    async for msg in ws:
        assert msg.type == aiohttp.WSMsgType.TEXT
        messages.append(json.loads(msg.data))
    return messages


async def reply_to(ws: aiohttp.ClientWebSocketResponse, data: bytes | str) -> str:
    """Send one message and return the one reply it gets."""
    if isinstance(data, bytes):
        await ws.send_bytes(data)
    else:
        await ws.send_str(data)
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msg.data


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "script.txt"
    path.write_text(SCRIPT, encoding="utf-8")
    return path


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start(script: Path) -> AsyncIterator[Any]:
    started: list[VoskEmulator] = []

    async def start(**switches: Any) -> VoskEmulator:
        emu = VoskEmulator(**{"script": script, **switches})
        await emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        await emu.stop()


@pytest.fixture
async def emulator(start: Any) -> VoskEmulator:
    return await start()


async def test_vosk_binds_a_free_port_and_describes_itself(emulator: VoskEmulator) -> None:
    assert emulator.port != 0
    assert emulator.url == f"ws://127.0.0.1:{emulator.port}"
    assert emulator.name == "vosk"
    assert SERVE_HELP and "\n" not in SERVE_HELP


async def test_vosk_answers_each_chunk_once_and_the_eof_with_the_final_result(
    emulator: VoskEmulator, http: aiohttp.ClientSession
) -> None:
    pcm = speech_like()
    ws = await http.ws_connect(emulator.url)
    await ws.send_str(json.dumps({"config": {"sample_rate": RATE}}))  # no reply to a config
    replies = [json.loads(await reply_to(ws, chunk)) for chunk in chunks(pcm)]
    final = await reply_to(ws, EOF)
    assert await read_until_close(ws) == []
    assert ws.close_code == 1000

    results = [(i, r) for i, r in enumerate(replies) if "partial" not in r]
    assert len(results) == 1
    index, first = results[0]
    assert index == 17  # the chunk in which 0.3 s of pause after 1.4 s ended the segment
    assert first == {
        "result": [
            {"conf": 0.9, "end": 0.5, "start": 0.2, "word": "Hello"},
            {"conf": 0.9, "end": 0.8, "start": 0.5, "word": "there"},
            {"conf": 0.9, "end": 1.1, "start": 0.8, "word": "general"},
            {"conf": 0.9, "end": 1.4, "start": 1.1, "word": "Kenobi."},
        ],
        "text": "Hello there general Kenobi.",
    }
    partials = [r["partial"] for r in replies if "partial" in r]
    assert partials[0] == "" and "Hello there general" in partials and "You are a" in partials
    assert all(set(r) == {"partial"} for r in replies if "partial" in r)
    # vosk-api's layout, which clients must parse as JSON rather than match as text
    assert final.startswith('{\n  "result" : [') and '"text" : "You are a bold one."' in final
    assert json.loads(final) == {
        "result": [
            {"conf": 0.9, "end": 2.1, "start": 1.9, "word": "You"},
            {"conf": 0.9, "end": 2.3, "start": 2.1, "word": "are"},
            {"conf": 0.9, "end": 2.5, "start": 2.3, "word": "a"},
            {"conf": 0.9, "end": 2.7, "start": 2.5, "word": "bold"},
            {"conf": 0.9, "end": 2.9, "start": 2.7, "word": "one."},
        ],
        "text": "You are a bold one.",
    }

    await emulator.connections[0].finished.wait()
    record = emulator.connections[0]
    assert (record.ended, record.closed_by, record.eof) == ("eof", "server", True)
    assert record.violations == []
    assert record.configs == [{"sample_rate": RATE}] and record.sample_rate == RATE
    assert np.array_equal(record.pcm, pcm)
    assert record.audio_seconds == pytest.approx(2.9)
    assert record.frames[-1].text == EOF
    assert len(record.sent) == len(chunks(pcm)) + 1


async def test_vosk_assumes_8_khz_without_a_config(
    emulator: VoskEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url)
    replies = [json.loads(await reply_to(ws, c)) for c in chunks(speech_like(8000), 800)]
    await reply_to(ws, EOF)
    assert [r["text"] for r in replies if "text" in r] == ["Hello there general Kenobi."]
    assert emulator.connections[0].sample_rate == 8000


async def test_vosk_words_false_leaves_out_the_word_list(
    emulator: VoskEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url)
    await ws.send_str(json.dumps({"config": {"sample_rate": RATE, "words": False}}))
    for chunk in chunks(tone(0.5)):
        await reply_to(ws, chunk)
    assert json.loads(await reply_to(ws, EOF)) == {"text": "Hello there general Kenobi."}


async def test_vosk_answers_an_eof_without_speech_with_an_empty_text(
    emulator: VoskEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url)
    assert json.loads(await reply_to(ws, silence(0.2).tobytes())) == {"partial": ""}
    assert json.loads(await reply_to(ws, EOF)) == {"text": ""}
    assert await read_until_close(ws) == []


@pytest.mark.parametrize("eof", ['{"eof": 1}', '{"eof":1}', '{ "eof" : 1 }'])
async def test_vosk_treats_an_eof_with_other_spacing_as_a_crash(
    emulator: VoskEmulator, http: aiohttp.ClientSession, eof: str
) -> None:
    ws = await http.ws_connect(emulator.url)
    await reply_to(ws, tone(0.2).tobytes())
    await ws.send_str(eof)
    assert await read_until_close(ws) == []  # no final result
    assert ws.close_code == 1011
    await emulator.connections[0].finished.wait()
    record = emulator.connections[0]
    assert (record.ended, record.eof) == ("violation", False)
    assert record.violations == [
        f"text message {eof!r} is not the end-of-stream marker: vosk-server compares the "
        'exact string {"eof" : 1} (with a space before the colon) and fails on others'
    ]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("hello", "is neither a config nor"),
        ('{"reconfigure": true}', "contains 'config' but is not"),
        ('{"config": 16000}', "contains 'config' but is not"),
        ('{"config": {"sample_rate": "fast"}}', "contains 'config' but is not"),
        ('{"config": {"sample_rate": 0}}', "is not a positive rate"),
    ],
)
async def test_vosk_crashes_on_text_it_cannot_take(
    emulator: VoskEmulator, http: aiohttp.ClientSession, text: str, complaint: str
) -> None:
    ws = await http.ws_connect(emulator.url)
    await ws.send_str(text)
    assert await read_until_close(ws) == []
    assert ws.close_code == 1011
    await emulator.connections[0].finished.wait()
    (violation,) = emulator.connections[0].violations
    assert complaint in violation


async def test_vosk_records_a_config_after_audio_as_having_no_effect(
    emulator: VoskEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url)
    await reply_to(ws, silence(0.1, 8000).tobytes())
    await ws.send_str(json.dumps({"config": {"sample_rate": RATE}}))
    assert json.loads(await reply_to(ws, EOF)) == {"text": ""}
    record = emulator.connections[0]
    assert record.sample_rate == 8000
    assert record.violations == ["config after audio has no effect: the recognizer exists"]


async def test_vosk_reply_to_config_switch_answers_the_config(
    start: Any, http: aiohttp.ClientSession
) -> None:
    emu = await start(reply_to_config=True)
    ws = await http.ws_connect(emu.url)
    assert json.loads(await reply_to(ws, json.dumps({"config": {"sample_rate": RATE}}))) == {
        "partial": ""
    }


async def test_vosk_accepts_any_path_and_records_it(
    emulator: VoskEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url + "/asr/en?x=1", headers={"X-Trace": "abc"})
    await reply_to(ws, EOF)
    record = emulator.connections[0]
    assert (record.path, record.raw_path) == ("/asr/en", "/asr/en?x=1")
    assert record.headers["x-trace"] == "abc"


async def test_vosk_records_a_client_that_closes_before_eof(
    emulator: VoskEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url)
    await reply_to(ws, tone(0.2).tobytes())
    await ws.close()
    await emulator.connections[0].finished.wait()
    record = emulator.connections[0]
    assert (record.ended, record.closed_by) == ("client closed", "client")
    assert record.violations == ['the connection closed before {"eof" : 1}']


async def test_vosk_stop_closes_open_connections(
    emulator: VoskEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url)
    await reply_to(ws, silence(0.1).tobytes())
    await emulator.stop()
    assert await read_until_close(ws) == []
    assert ws.close_code == 1001
    record = emulator.connections[0]
    assert (record.ended, record.violations) == ("server stopped", [])
