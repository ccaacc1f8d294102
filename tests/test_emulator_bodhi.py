"""The Navana Bodhi emulator, driven over loopback by a hand-written aiohttp client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from streamcli.emulators.bodhi import DEFAULT_MODELS, SERVE_HELP, BodhiEmulator

RATE = 8000
CHUNK = RATE // 10  # 100 ms, the vendor's recommended chunk
API_KEY = "test-key"
CUSTOMER_ID = "4a0c7f3e-9d51-4f0e-8a47-2f7f6f2b9c10"
HEADERS = {"x-api-key": API_KEY, "x-customer-id": CUSTOMER_ID}
SCRIPT = "Hello there general Kenobi. You are a bold one."
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def tone(seconds: float, amplitude: float = 0.3, freq: float = 300.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


def speech_like() -> np.ndarray:
    """Two bursts of a 300 Hz tone: the first ends in a pause, the second at end of stream."""
    return np.concatenate([silence(0.2), tone(1.2), silence(0.5), tone(1.0)])


def chunks(pcm: np.ndarray, size: int = CHUNK) -> list[bytes]:
    return [pcm[i : i + size].astype("<i2").tobytes() for i in range(0, len(pcm), size)]


def config_message(**overrides: Any) -> str:
    config = {
        "sample_rate": RATE,
        "transaction_id": str(uuid.uuid4()),
        "model": "hi-banking-v2-8khz",
        **overrides,
    }
    return json.dumps({"config": config})


async def read_until_close(ws: aiohttp.ClientWebSocketResponse) -> list[dict]:
    messages = []
    async for msg in ws:
        assert msg.type == aiohttp.WSMsgType.TEXT
        messages.append(json.loads(msg.data))
    return messages


async def read_until_eos(ws: aiohttp.ClientWebSocketResponse) -> list[dict]:
    messages = []
    async for msg in ws:
        messages.append(json.loads(msg.data))
        if messages[-1].get("eos"):
            break
    return messages


async def stream_session(
    ws: aiohttp.ClientWebSocketResponse, pcm: np.ndarray, **config: Any
) -> list[dict]:
    await ws.send_str(config_message(**config))
    for chunk in chunks(pcm):
        await ws.send_bytes(chunk)
    await ws.send_str('{"eof": 1}')
    messages = await read_until_eos(ws)
    await ws.close()
    return messages


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
    started: list[BodhiEmulator] = []

    async def start(**switches: Any) -> BodhiEmulator:
        emu = BodhiEmulator(
            **{"script": script, "api_key": API_KEY, "customer_id": CUSTOMER_ID, **switches}
        )
        await emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        await emu.stop()


@pytest.fixture
async def emulator(start: Any) -> BodhiEmulator:
    return await start()


def completes(messages: list[dict]) -> list[tuple[Any, str, bool]]:
    return [(m["segment_id"], m["text"], m["eos"]) for m in messages if m["type"] == "complete"]


async def test_bodhi_binds_a_free_port_and_describes_itself(emulator: BodhiEmulator) -> None:
    assert emulator.port != 0
    assert emulator.url == f"ws://127.0.0.1:{emulator.port}"
    assert emulator.name == "bodhi"
    assert SERVE_HELP and "\n" not in SERVE_HELP
    assert "hi-banking-v2-8khz" in DEFAULT_MODELS and "gu-general-v2-8khz" in DEFAULT_MODELS


async def test_bodhi_transcribes_a_session_from_the_script(
    emulator: BodhiEmulator, http: aiohttp.ClientSession
) -> None:
    pcm = speech_like()
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    messages = await stream_session(ws, pcm)

    call_id = messages[0]["call_id"]
    assert uuid.UUID(call_id).version == 4
    assert {m["call_id"] for m in messages} == {call_id}
    assert completes(messages) == [
        (0, "Hello there general Kenobi.", False),
        (1, "You are a bold one.", False),
        (2, "", True),
    ]
    first = next(m for m in messages if m["type"] == "complete")
    assert first == {
        "call_id": call_id,
        "segment_id": 0,
        "eos": False,
        "type": "complete",
        "text": "Hello there general Kenobi.",
        "language_code": "hi",
        "segment_meta": {
            "tokens": ["Hello", "there", "general", "Kenobi."],
            "timestamps": [0.0, 0.3, 0.6, 0.9],
            "start_time": 0.2,
            "confidence": 0.9,
            "words": [
                {"word": "Hello", "confidence": 0.9, "start_time": 0.0, "end_time": 0.3},
                {"word": "there", "confidence": 0.9, "start_time": 0.3, "end_time": 0.6},
                {"word": "general", "confidence": 0.9, "start_time": 0.6, "end_time": 0.9},
                {"word": "Kenobi.", "confidence": 0.9, "start_time": 0.9, "end_time": 1.2},
            ],
        },
    }
    second = [m for m in messages if m["type"] == "complete"][1]
    assert second["segment_meta"]["start_time"] == 1.9  # flushed at EOF, times still relative
    assert [w["start_time"] for w in second["segment_meta"]["words"]] == [0, 0.2, 0.4, 0.6, 0.8]
    assert messages[-1] == {
        "call_id": call_id,
        "segment_id": 2,
        "eos": True,
        "type": "complete",
        "text": "",
        "language_code": "hi",
        "segment_meta": {
            "tokens": [],
            "timestamps": [],
            "start_time": 2.9,
            "confidence": 0.0,
            "words": [],
        },
    }

    # One partial per audio chunk, without words; its text grows within the sentence.
    partials = [m for m in messages if m["type"] == "partial"]
    assert len(partials) == len(chunks(pcm))
    for partial in partials:
        assert set(partial) == {
            "call_id",
            "segment_id",
            "eos",
            "type",
            "text",
            "language_code",
            "segment_meta",
        }
        assert set(partial["segment_meta"]) == {"tokens", "timestamps", "start_time", "confidence"}
        assert partial["eos"] is False
        assert partial["text"] == " ".join(partial["segment_meta"]["tokens"])
    texts = {p["segment_id"]: [] for p in partials}
    for p in partials:
        texts[p["segment_id"]].append(p["text"])
    assert "Hello there general" in texts[0]
    assert "You are a" in texts[1]
    assert all(SCRIPT.startswith(t) for t in texts[0])

    await emulator.connections[0].finished.wait()
    record = emulator.connections[0]
    assert record.ended == "eos" and record.closed_by == "client" and record.eof
    assert record.violations == []
    assert record.headers["X-Api-Key"] == API_KEY
    assert record.config is not None and record.config["model"] == "hi-banking-v2-8khz"
    assert record.sample_rate == RATE
    assert np.array_equal(record.pcm, pcm)
    assert record.audio_seconds == pytest.approx(2.9)
    assert record.frames[0].kind == "text" and json.loads(record.frames[0].text or "")["config"]
    assert [f.kind for f in record.frames[1:-1]] == ["binary"] * len(chunks(pcm))
    assert record.frames[-1].text == '{"eof": 1}'
    assert record.sent == messages


async def test_bodhi_exclude_partial_suppresses_partials(
    emulator: BodhiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    messages = await stream_session(ws, speech_like(), exclude_partial=True)
    assert [m["type"] for m in messages] == ["complete"] * 3
    assert [m["text"] for m in messages] == [
        "Hello there general Kenobi.",
        "You are a bold one.",
        "",
    ]


async def test_bodhi_hex_segment_ids_are_opaque_strings(
    start: Any, http: aiohttp.ClientSession
) -> None:
    emu = await start(hex_segment_ids=True)
    ws = await http.ws_connect(emu.url, headers=HEADERS)
    messages = await stream_session(ws, speech_like(), exclude_partial=True)
    ids = [m["segment_id"] for m in messages]
    assert all(isinstance(i, str) and re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == 3


async def test_bodhi_aux_adds_aux_info(
    emulator: BodhiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    messages = await stream_session(ws, speech_like(), aux=True, exclude_partial=True)
    assert all(
        set(m["aux_info"]) == {"request_time", "eot_wait_time", "processed_audio_duration"}
        for m in messages
    )
    assert messages[-1]["aux_info"]["processed_audio_duration"] == 2.9


async def test_bodhi_endpoint_silence_is_clamped_and_joins_short_pauses(
    emulator: BodhiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    # 5 s is clamped to 1.2 s: the 0.5 s pause no longer ends a segment.
    messages = await stream_session(
        ws, speech_like(), endpoint_silence_duration=5, exclude_partial=True
    )
    assert completes(messages) == [(0, "Hello there general Kenobi.", False), (1, "", True)]
    assert messages[0]["segment_meta"]["start_time"] == 0.2


async def test_bodhi_without_a_script_sends_placeholder_words(
    start: Any, http: aiohttp.ClientSession
) -> None:
    emu = await start(script=None)
    ws = await http.ws_connect(emu.url, headers=HEADERS)
    messages = await stream_session(ws, speech_like(), exclude_partial=True)
    texts = [m["text"] for m in messages]
    assert texts[0] == "word1 word2 word3"  # 1.2 s of voice, about one word per 0.4 s
    assert texts[1].startswith("word4 ") and texts[2] == ""


async def test_bodhi_server_closes_when_the_client_does_not_after_eos(
    start: Any, http: aiohttp.ClientSession
) -> None:
    emu = await start(eos_close_after=0.2)
    ws = await http.ws_connect(emu.url, headers=HEADERS)
    await ws.send_str(config_message(exclude_partial=True))
    await ws.send_bytes(tone(0.3).tobytes())
    await ws.send_str('{"eof": 1}')
    messages = await read_until_close(ws)
    assert completes(messages) == [(0, "Hello there general Kenobi.", False), (1, "", True)]
    assert ws.close_code == 1000
    await emu.connections[0].finished.wait()
    assert (emu.connections[0].ended, emu.connections[0].closed_by) == ("eos", "server")


@pytest.mark.parametrize("status", [401, 402, 403])
async def test_bodhi_reject_refuses_the_handshake_with_the_vendor_text(
    start: Any, http: aiohttp.ClientSession, status: int
) -> None:
    emu = await start(reject=status)
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await http.ws_connect(emu.url, headers=HEADERS)
    assert raised.value.status == status
    async with http.get(emu.url.replace("ws://", "http://"), headers=HEADERS) as response:
        assert response.status == status
        assert (
            await response.text()
            == {
                401: "Invalid API key or customer ID.",
                402: "Insufficient balance.",
                403: "Customer has been deactivated",
            }[status]
        )
    assert emu.connections[0].ended == "rejected" and emu.connections[0].status == status


def test_bodhi_reject_takes_only_the_documented_statuses() -> None:
    with pytest.raises(ValueError, match="reject must be one of"):
        BodhiEmulator(reject=500)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-customer-id": CUSTOMER_ID},
        {"x-api-key": API_KEY},
        {"x-api-key": "wrong", "x-customer-id": CUSTOMER_ID},
        {"x-api-key": API_KEY, "x-customer-id": str(uuid.uuid4())},
    ],
)
async def test_bodhi_answers_401_to_wrong_or_missing_credentials(
    emulator: BodhiEmulator, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await http.ws_connect(emulator.url, headers=headers)
    assert raised.value.status == 401


async def test_bodhi_accepts_any_credentials_when_none_are_configured_but_needs_headers(
    start: Any, http: aiohttp.ClientSession
) -> None:
    emu = await start(api_key=None, customer_id=None)
    ws = await http.ws_connect(emu.url, headers={"x-api-key": "a", "x-customer-id": "b"})
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await http.ws_connect(emu.url)
    assert raised.value.status == 401


async def test_bodhi_answers_404_to_another_path(
    emulator: BodhiEmulator, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await http.ws_connect(emulator.url + "/v1/stream", headers=HEADERS)
    assert raised.value.status == 404


async def expect_error(
    emu: BodhiEmulator, ws: aiohttp.ClientWebSocketResponse, kind: str, code: int = 400
) -> dict:
    messages = await read_until_close(ws)
    assert len(messages) == 1
    (error,) = messages
    assert set(error) == {"error", "message", "code", "timestamp"}
    assert (error["error"], error["code"]) == (kind, code)
    assert TIMESTAMP.match(error["timestamp"])
    assert ws.close_code == (1008 if code == 400 else 1011)
    await emu.connections[-1].finished.wait()
    return error


@pytest.mark.parametrize(
    ("first", "kind"),
    [
        ("not json", "invalid_config"),
        (json.dumps({"sample_rate": RATE, "model": "hi-banking-v2-8khz"}), "invalid_config"),
        (json.dumps({"config": "hi-banking-v2-8khz"}), "invalid_config"),
        (
            json.dumps({"config": {"sample_rate": RATE, "model": "hi-banking-v2-8khz"}}),
            "invalid_config",
        ),
        (config_message(sample_rate="8000"), "invalid_config"),
        (config_message(sample_rate=4000), "invalid_config"),
        (config_message(exclude_partial="yes"), "invalid_config"),
        (config_message(hotwords=["loan"]), "invalid_config"),
        (config_message(transaction_id="abc"), "invalid_transaction_id"),
        (config_message(transaction_id=str(uuid.uuid1())), "invalid_transaction_id"),
        (config_message(model="xx-general-v2-8khz"), "model_not_available"),
        (b"\x00\x00" * CHUNK, "invalid_config"),  # audio before the config
    ],
)
async def test_bodhi_rejects_a_bad_first_message_with_a_400_error(
    emulator: BodhiEmulator, http: aiohttp.ClientSession, first: str | bytes, kind: str
) -> None:
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    if isinstance(first, bytes):
        await ws.send_bytes(first)
    else:
        await ws.send_str(first)
    error = await expect_error(emulator, ws, kind)
    record = emulator.connections[0]
    assert record.ended == "error" and record.config is None
    assert record.violations == [error["message"]]


@pytest.mark.parametrize(
    "text",
    [config_message(), '{"eof" : 1}', '{"eof":1}', '{"eof": true}', "EOF", '{"eof": 1} '],
)
async def test_bodhi_rejects_any_text_after_the_config_but_the_exact_eof(
    emulator: BodhiEmulator, http: aiohttp.ClientSession, text: str
) -> None:
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    await ws.send_str(config_message(exclude_partial=True))
    await ws.send_bytes(silence(0.1).tobytes())
    await ws.send_str(text)
    error = await expect_error(emulator, ws, "invalid_message")
    if text.startswith('{"config"'):
        assert error["message"] == "a second config message is not allowed"
    assert emulator.connections[0].eof is False


async def test_bodhi_records_null_and_unknown_config_keys_but_carries_on(
    emulator: BodhiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    messages = await stream_session(
        ws, speech_like(), exclude_partial=True, hotwords=None, samplerate=8000
    )
    assert messages[-1]["eos"] is True
    await emulator.connections[0].finished.wait()
    assert emulator.connections[0].violations == [
        "config.hotwords is null: omit keys that are unset",
        "unknown config key 'samplerate' (ignored)",
    ]


async def test_bodhi_accepts_the_optional_config_keys(
    emulator: BodhiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    messages = await stream_session(
        ws,
        tone(0.3),
        parse_number=True,
        exclude_partial=False,
        hotwords=[{"phrase": "home loan", "score": 2.5}, {"phrase": "EMI"}],
        aux=False,
        endpoint_silence_duration=0.6,
        at_start_lid=False,
        transliterate=False,
    )
    assert messages[-1]["eos"] is True
    await emulator.connections[0].finished.wait()
    assert emulator.connections[0].violations == []


async def test_bodhi_closes_an_idle_connection_even_when_pinged(
    start: Any, http: aiohttp.ClientSession
) -> None:
    emu = await start(idle_timeout=0.5)
    ws = await http.ws_connect(emu.url, headers=HEADERS)
    await ws.send_str(config_message())

    async def ping_forever() -> None:
        with contextlib.suppress(Exception):
            while not ws.closed:
                await ws.ping()
                await asyncio.sleep(0.1)

    pinger = asyncio.create_task(ping_forever())
    assert await read_until_close(ws) == []
    pinger.cancel()
    assert ws.close_code == 1000
    await emu.connections[0].finished.wait()
    record = emu.connections[0]
    assert (record.ended, record.closed_by) == ("idle timeout", "server")


async def test_bodhi_idle_clock_restarts_on_every_message(
    start: Any, http: aiohttp.ClientSession
) -> None:
    emu = await start(idle_timeout=0.5)
    ws = await http.ws_connect(emu.url, headers=HEADERS)
    await ws.send_str(config_message(exclude_partial=True))
    for _ in range(8):  # 0.8 s in all, never 0.5 s without a message
        await ws.send_bytes(silence(0.1).tobytes())
        await asyncio.sleep(0.1)
    await ws.send_str('{"eof": 1}')
    messages = await read_until_eos(ws)
    assert messages[-1]["eos"] is True
    await ws.close()


async def test_bodhi_error_after_sends_a_500_and_closes(
    start: Any, http: aiohttp.ClientSession
) -> None:
    emu = await start(error_after=0.5)
    ws = await http.ws_connect(emu.url, headers=HEADERS)
    await ws.send_str(config_message(exclude_partial=True))
    for chunk in chunks(silence(1.0)):
        if ws.closed:
            break
        await ws.send_bytes(chunk)
    await expect_error(emu, ws, "internal_error", code=500)
    assert emu.connections[0].ended == "error_after"
    assert emu.connections[0].violations == []


async def test_bodhi_records_a_client_that_closes_before_eof(
    emulator: BodhiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    await ws.send_str(config_message(exclude_partial=True))
    await ws.send_bytes(tone(0.2).tobytes() + b"\x00")  # an odd byte count, too
    await ws.close()
    await emulator.connections[0].finished.wait()
    record = emulator.connections[0]
    assert (record.ended, record.closed_by) == ("client closed", "client")
    assert record.violations == [
        "binary message of 3201 bytes: not a whole number of 16-bit samples",
        'the connection closed before {"eof": 1}',
    ]


async def test_bodhi_stop_closes_open_connections(
    emulator: BodhiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(emulator.url, headers=HEADERS)
    await ws.send_str(config_message())
    await emulator.stop()
    assert await read_until_close(ws) == []
    assert ws.close_code == 1001
    record = emulator.connections[0]
    assert (record.ended, record.violations) == ("server stopped", [])
