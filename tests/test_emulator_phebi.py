"""The Phebi-Live emulator, driven over loopback by a hand-written aiohttp client."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import yarl

from streamcli.emulators.phebi import SERVE_HELP, EmotionMeter, PhebiEmulator

RATE = 16000
KEY = "b97076b5-faf4-4c66-8123-1deb12db9817"
SCRIPT = "Hello there general Kenobi. You are a bold one."
CHUNK = RATE // 10  # 100 ms of samples


def tone(seconds: float, amplitude: float = 0.3, freq: float = 300.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


def speech_like() -> np.ndarray:
    """Two bursts of a 300 Hz tone: the first ends in a pause, the second at end of stream."""
    return np.concatenate([silence(0.2), tone(1.2), silence(0.5), tone(1.0)])


def wav_header(
    *,
    rate: int = RATE,
    channels: int = 1,
    bits: int = 16,
    tag: int = 1,
    data_size: int = 0xFFFFFFFF,
    riff: bytes = b"RIFF",
    wave: bytes = b"WAVE",
    fmt_size: int = 16,
    byte_rate: int | None = None,
) -> bytes:
    block = channels * bits // 8
    return (
        riff
        + struct.pack("<I", min(36 + data_size, 0xFFFFFFFF))
        + wave
        + b"fmt "
        + struct.pack(
            "<IHHIIHH", fmt_size, tag, channels, rate, byte_rate or rate * block, block, bits
        )
        + b"data"
        + struct.pack("<I", data_size)
    )


def chunks(pcm: np.ndarray, size: int = CHUNK) -> list[bytes]:
    return [pcm[i : i + size].astype("<i2").tobytes() for i in range(0, len(pcm), size)]


async def read_until_close(ws: aiohttp.ClientWebSocketResponse) -> list[dict]:
    messages = []
    async for msg in ws:
        assert msg.type == aiohttp.WSMsgType.TEXT
        messages.append(json.loads(msg.data))
    return messages


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "script.txt"
    path.write_text(SCRIPT, encoding="utf-8")
    return path


@pytest.fixture
async def emulator(script: Path) -> AsyncIterator[PhebiEmulator]:
    emu = PhebiEmulator(script=script, subscription_key=KEY)
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def live_url(emu: PhebiEmulator, project: str = "Test_Project") -> yarl.URL:
    return yarl.URL(f"{emu.url}/sockets/live/{project}/python/respondent", encoded=True)


async def connect(
    http: aiohttp.ClientSession, emu: PhebiEmulator, key: str = KEY, project: str = "Test_Project"
) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(live_url(emu, project), headers={"Subscription": key})


def words(transcription: list[dict]) -> list[str]:
    return [w["Text"] for w in transcription]


async def test_phebi_binds_a_free_port_and_describes_itself(emulator: PhebiEmulator) -> None:
    assert emulator.port != 0
    assert emulator.url == f"ws://127.0.0.1:{emulator.port}"
    assert emulator.name == "phebi"
    assert SERVE_HELP and "\n" not in SERVE_HELP


async def test_phebi_transcribes_a_session_from_the_script(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    pcm = speech_like()
    ws = await connect(http, emulator)
    await ws.send_bytes(wav_header())
    for chunk in chunks(pcm):
        await ws.send_bytes(chunk)
    await ws.send_bytes(b"\x01")
    messages = await read_until_close(ws)

    assert ws.close_code == 1000
    emotions = [m for m in messages if "Emotions" in m]
    assert [m for m in messages if "Emotions" not in m] == [
        {"InterimTranscription": "Hello there"},
        {
            "Transcription": [
                {"Position": 0.2, "Duration": 0.3, "Text": "Hello", "Speaker": 0},
                {"Position": 0.5, "Duration": 0.3, "Text": "there", "Speaker": 0},
                {"Position": 0.8, "Duration": 0.3, "Text": "general", "Speaker": 0},
                {"Position": 1.1, "Duration": 0.3, "Text": "Kenobi.", "Speaker": 0},
            ]
        },
        {"InterimTranscription": "You"},
        {
            "Transcription": [
                {"Position": 1.9, "Duration": 0.2, "Text": "You", "Speaker": 0},
                {"Position": 2.1, "Duration": 0.2, "Text": "are", "Speaker": 0},
                {"Position": 2.3, "Duration": 0.2, "Text": "a", "Speaker": 0},
                {"Position": 2.5, "Duration": 0.2, "Text": "bold", "Speaker": 0},
                {"Position": 2.7, "Duration": 0.2, "Text": "one.", "Speaker": 0},
            ]
        },
    ]
    # 2.2 s of voice: one Emotions entry, for the 2 s of voice that start at 0.2 s.
    assert len(emotions) == 1
    (entry,) = emotions[0]["Emotions"]
    assert set(entry) == {"Confidence", "Scores", "Speaker", "Position"}
    assert entry["Speaker"] == 0
    assert entry["Position"] == 0.2
    assert 0 < entry["Confidence"] <= 1
    assert len(entry["Scores"]) == 5
    assert sum(entry["Scores"]) == pytest.approx(1.0, abs=0.01)

    await emulator.connections[0].finished.wait()
    record = emulator.connections[0]
    assert record.ended == "eof" and record.closed_by == "server" and record.eof
    assert record.violations == []
    assert record.close_code == 1000
    assert record.headers["subscription"] == KEY
    assert (record.project, record.session, record.speaker) == (
        "Test_Project",
        "python",
        "respondent",
    )
    assert record.wav_header == wav_header()
    assert record.audio_bytes == len(pcm) * 2
    assert np.array_equal(record.pcm, pcm)
    assert record.audio_seconds == pytest.approx(2.9)
    assert [f.kind for f in record.frames] == ["binary"] * (2 + len(chunks(pcm)))
    assert record.frames[0].length == 44 and record.frames[-1].length == 1
    assert record.sent == messages


async def test_phebi_records_pcm_whose_dominant_frequency_is_the_tone(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await connect(http, emulator)
    await ws.send_bytes(wav_header() + tone(0.5).tobytes())
    await ws.send_bytes(b"\x01")
    await read_until_close(ws)
    await emulator.connections[0].finished.wait()
    pcm = emulator.connections[0].pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert np.fft.rfftfreq(len(pcm), 1 / RATE)[spectrum.argmax()] == pytest.approx(300, abs=2)


async def test_phebi_accepts_a_header_split_across_frames_like_the_python_example(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    data = wav_header(data_size=len(speech_like()) * 2) + speech_like().tobytes()
    ws = await connect(http, emulator)
    for i in range(0, len(data), 1024):  # the official example reads the file in 1 KB blocks
        await ws.send_bytes(data[i : i + 1024])
    await ws.send_bytes(b"\x01")
    messages = await read_until_close(ws)
    finals = [words(m["Transcription"]) for m in messages if "Transcription" in m]
    assert finals == [["Hello", "there", "general", "Kenobi."], ["You", "are", "a", "bold", "one."]]
    assert ws.close_code == 1000


async def test_phebi_sends_an_empty_final_transcription_when_nothing_is_open(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await connect(http, emulator)
    await ws.send_bytes(wav_header(data_size=12345))  # any data size is accepted
    await ws.send_bytes(silence(0.3).tobytes())
    await ws.send_bytes(b"\x01")
    assert await read_until_close(ws) == [{"Transcription": []}]


async def test_phebi_keeps_a_percent_encoded_project_as_one_path_segment(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await connect(http, emulator, project="My%20Project%2F2025")
    await ws.send_bytes(wav_header())
    await ws.send_bytes(b"\x01")
    await read_until_close(ws)
    record = emulator.connections[0]
    assert record.project == "My Project/2025"
    assert record.raw_path == "/sockets/live/My%20Project%2F2025/python/respondent"


async def test_phebi_answers_403_to_a_wrong_subscription_key(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await connect(http, emulator, key="wrong")
    assert raised.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await http.ws_connect(live_url(emulator))  # no Subscription header at all
    assert raised.value.status == 403
    assert [(r.status, r.ended) for r in emulator.connections] == [(403, "rejected")] * 2


async def test_phebi_accepts_any_key_when_none_is_configured_but_needs_the_header(
    http: aiohttp.ClientSession,
) -> None:
    emu = PhebiEmulator()
    await emu.start()
    try:
        ws = await http.ws_connect(live_url(emu), headers={"Subscription": "anything"})
        await ws.send_bytes(wav_header())
        await ws.send_bytes(b"\x01")
        assert await read_until_close(ws) == [{"Transcription": []}]
        with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
            await http.ws_connect(live_url(emu))
        assert raised.value.status == 403
    finally:
        await emu.stop()


async def test_phebi_answers_404_to_another_path(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emulator.url}/sockets/live/only-two/segments"
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await http.ws_connect(url, headers={"Subscription": KEY})
    assert raised.value.status == 404
    assert emulator.connections[0].ended == "not found"


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        (wav_header(rate=8000), "sample rate is 8000, expected 16000"),
        (wav_header(channels=2), "channels is 2, expected 1"),
        (wav_header(bits=8), "bits per sample is 8, expected 16"),
        (wav_header(tag=3, bits=32), "audio format is 3, expected 1"),
        (wav_header(riff=b"RIFX"), "RIFF chunk id is b'RIFX'"),
        (wav_header(wave=b"AVI "), "RIFF form type is b'AVI '"),
        (wav_header(fmt_size=18), "fmt chunk size is 18, expected 16"),
        (wav_header(byte_rate=16000), "byte rate is 16000, expected 32000"),
        (tone(0.1).tobytes(), "RIFF chunk id is"),  # raw PCM without a header
    ],
)
async def test_phebi_rejects_a_wrong_wav_header_with_an_error_and_a_close(
    emulator: PhebiEmulator, http: aiohttp.ClientSession, header: bytes, complaint: str
) -> None:
    ws = await connect(http, emulator)
    await ws.send_bytes(header + silence(0.1).tobytes())
    messages = await read_until_close(ws)
    assert len(messages) == 1 and list(messages[0]) == ["Error"]
    assert complaint in messages[0]["Error"]
    assert ws.close_code == 1008
    await emulator.connections[0].finished.wait()
    record = emulator.connections[0]
    assert record.ended == "violation"
    assert record.violations == [messages[0]["Error"]]


async def test_phebi_rejects_a_text_frame(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await connect(http, emulator)
    await ws.send_bytes(wav_header())
    await ws.send_str('{"eof": 1}')
    messages = await read_until_close(ws)
    assert len(messages) == 1 and "text messages are not part" in messages[0]["Error"]
    assert ws.close_code == 1008
    record = emulator.connections[0]
    assert [(f.kind, f.text) for f in record.frames] == [("binary", None), ("text", '{"eof": 1}')]


async def test_phebi_records_a_client_that_closes_without_the_end_byte(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await connect(http, emulator)
    await ws.send_bytes(wav_header() + tone(0.5).tobytes())
    await ws.close()
    await emulator.connections[0].finished.wait()
    record = emulator.connections[0]
    assert record.ended == "client closed" and record.closed_by == "client"
    assert not record.eof
    assert record.violations == [
        "the connection closed without the end-of-stream byte 0x01: "
        "the final transcription is never sent"
    ]
    assert not any("Transcription" in m for m in record.sent)


async def test_phebi_rejects_the_end_byte_before_a_header(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await connect(http, emulator)
    await ws.send_bytes(b"\x01")
    messages = await read_until_close(ws)
    assert messages == [
        {"Error": "end-of-stream byte 0x01 before the 44-byte RIFF/WAVE header was complete"}
    ]
    assert ws.close_code == 1008


async def test_phebi_fail_after_closes_with_1011_mid_stream(
    script: Path, http: aiohttp.ClientSession
) -> None:
    emu = PhebiEmulator(script=script, fail_after=1.5)
    await emu.start()
    try:
        ws = await http.ws_connect(live_url(emu), headers={"Subscription": KEY})
        await ws.send_bytes(wav_header())
        for chunk in chunks(speech_like()):
            if ws.closed:
                break
            await ws.send_bytes(chunk)
        messages = await read_until_close(ws)
        assert ws.close_code == 1011
        assert messages == [{"InterimTranscription": "Hello there"}]
        await emu.connections[0].finished.wait()
        record = emu.connections[0]
        assert record.ended == "fail_after"
        assert record.audio_seconds == pytest.approx(1.5)
    finally:
        await emu.stop()


@pytest.mark.parametrize("fatal", [True, False])
async def test_phebi_error_message_is_sent_mid_stream(
    http: aiohttp.ClientSession, fatal: bool
) -> None:
    emu = PhebiEmulator(error_message="Analysis failed", error_at=0.5, error_fatal=fatal)
    await emu.start()
    try:
        ws = await http.ws_connect(live_url(emu), headers={"Subscription": KEY})
        await ws.send_bytes(wav_header())
        for chunk in chunks(silence(1.0)):
            if ws.closed:
                break
            await ws.send_bytes(chunk)
        if not fatal:
            await ws.send_bytes(b"\x01")
        messages = await read_until_close(ws)
        if fatal:
            assert messages == [{"Error": "Analysis failed"}]
            assert ws.close_code == 1011
        else:
            assert messages == [{"Error": "Analysis failed"}, {"Transcription": []}]
            assert ws.close_code == 1000
    finally:
        await emu.stop()


async def test_phebi_stop_closes_open_connections(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    ws = await connect(http, emulator)
    await ws.send_bytes(wav_header())
    await emulator.stop()
    assert await read_until_close(ws) == []
    assert ws.close_code == 1001
    assert emulator.connections[0].ended == "server stopped"


def test_emotions_score_louder_voice_as_stronger() -> None:
    loud = EmotionMeter().feed(tone(2.0, amplitude=0.9))
    quiet = EmotionMeter().feed(tone(2.0, amplitude=0.02))
    assert len(loud) == len(quiet) == 1
    strong, calm = 0, 1
    assert loud[0]["Scores"][strong] > quiet[0]["Scores"][strong]
    assert loud[0]["Scores"][calm] < quiet[0]["Scores"][calm]
    assert EmotionMeter().feed(tone(2.0, amplitude=0.9)) == loud  # deterministic


async def test_phebi_answers_400_to_a_plain_http_request(
    emulator: PhebiEmulator, http: aiohttp.ClientSession
) -> None:
    url = str(live_url(emulator)).replace("ws://", "http://")
    async with http.get(url, headers={"Subscription": KEY}) as response:
        assert response.status == 400
    assert emulator.connections[0].ended == "not a websocket"
