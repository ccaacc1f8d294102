"""The real CLI against the Melvin emulator over loopback: every outcome and its exit code."""

from __future__ import annotations

import json
import socket
import struct

import numpy as np
import soundfile as sf
from conftest import dominant_frequency, speechlike, tone

from streamcli.emulators.melvin import MelvinEmulator

from .conftest import KEY

ENV = {"MELVIN_API_KEY": KEY}


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


async def test_melvin_streams_a_file_and_prints_finals_as_json(cli, melvin, speech_wav):
    r = await cli("melvin", str(speech_wav), "--url", melvin.url, "--speed", "8", "--json", env=ENV)
    assert r.code == 0, r.stderr
    evs = events(r.stdout)
    assert evs[0]["type"] == "session" and evs[0]["backend"] == "melvin"
    finals = [e for e in evs if e["type"] == "final"]
    assert [f["text"] for f in finals] == [
        "Hello streaming world.",
        "The second sentence ends here.",
    ]
    assert all(
        w.keys() == {"word", "start", "end", "confidence"} for f in finals for w in f["words"]
    )
    assert evs[-1]["type"] == "end" and len(evs[-1]["export_id"]) == 32
    conn = melvin.connections[0]
    assert conn.frames[0] == ("text", json.dumps({"Authorization": KEY}, separators=(",", ":")))
    assert conn.frames[-1] == ("text", "eof")
    # Between auth and eof: audio, and the end-of-stream sync probes (one before the held
    # last frame, one after it; see backends/melvin.py).
    texts = [f for f in conn.frames[1:-1] if f[0] == "text"]
    assert texts == [("text", "sync"), ("text", "sync")]
    assert all(n % 2 == 0 for kind, n in conn.frames[1:-1] if kind == "binary")
    assert conn.frames[-2] == ("text", "sync") and conn.frames[-3][0] == "binary"
    # 22.05 kHz in, 16 kHz on the wire: same duration, same pitch.
    expected = len(speechlike(22050, [0.8, 1.0])) / 22050
    assert abs(conn.audio_seconds - expected) < 0.02
    pcm = conn.pcm()
    assert abs(dominant_frequency(pcm[int(0.2 * 16000) : int(0.9 * 16000)], 16000) - 300) < 3


async def test_melvin_plain_output_is_one_line_per_final(cli, melvin, speech_wav):
    r = await cli("melvin", str(speech_wav), "--url", melvin.url, "--speed", "8", env=ENV)
    assert r.code == 0, r.stderr
    assert r.lines == ["Hello streaming world.", "The second sentence ends here."]


async def test_melvin_reads_wav_from_stdin(cli, melvin, speech_wav):
    r = await cli(
        "melvin", "-", "--url", melvin.url, "--speed", "8", stdin=speech_wav.read_bytes(), env=ENV
    )
    assert r.code == 0, r.stderr
    assert r.lines == ["Hello streaming world.", "The second sentence ends here."]


async def test_melvin_speed_zero_avoids_the_eof_race(cli, melvin, speech_wav):
    r = await cli("melvin", str(speech_wav), "--url", melvin.url, "--speed", "0", "--json", env=ENV)
    assert r.code == 0, r.stderr
    assert events(r.stdout)[-1]["type"] == "end"
    assert melvin.connections[0].ended == "eof"


async def test_melvin_raw_prints_the_server_messages_compacted(cli, melvin, speech_wav):
    r = await cli("melvin", str(speech_wav), "--url", melvin.url, "--speed", "8", "--raw", env=ENV)
    assert r.code == 0, r.stderr
    values = [json.loads(line) for line in r.lines]
    assert {"partial": ""} in values or any("partial" in v for v in values if isinstance(v, dict))
    assert any(isinstance(v, dict) and "result" in v for v in values)
    assert isinstance(values[-1], str) and len(values[-1]) == 32


async def test_melvin_wrong_key_exits_3_with_the_server_reason(cli, melvin, speech_wav):
    r = await cli("melvin", str(speech_wav), "--url", melvin.url, env={"MELVIN_API_KEY": "wrong"})
    assert r.code == 3
    assert r.stderr.strip().splitlines()[-1] == (
        "streamcli: error: Melvin-ASR rejected the credentials: Provided api key is invalid"
    )
    assert "Traceback" not in r.stderr


async def test_melvin_no_auth_against_an_auth_server_exits_3(cli, melvin, speech_wav):
    r = await cli("melvin", str(speech_wav), "--url", melvin.url, "--no-auth", env=ENV)
    assert r.code == 3
    assert "Initial message was not text" in r.stderr


async def test_melvin_no_auth_works_with_an_old_server(cli, speech_wav, script_file):
    emu = MelvinEmulator(api_keys=[], script=script_file)
    await emu.start()
    try:
        r = await cli("melvin", str(speech_wav), "--url", emu.url, "--no-auth", "--speed", "8")
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    assert emu.connections[0].frames[0][0] == "binary"


async def test_melvin_connection_refused_exits_4(cli, speech_wav):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = await cli("melvin", str(speech_wav), "--url", f"ws://127.0.0.1:{port}", env=ENV)
    assert r.code == 4
    assert (
        r.stderr.strip().splitlines()
        == [
            f"streamcli: error: cannot connect to ws://127.0.0.1:{port}/: Connect call failed "
            f"('127.0.0.1', {port})"
        ]
        or "cannot connect" in r.stderr.strip().splitlines()[-1]
    )


async def test_melvin_server_closing_without_id_exits_5(cli, speech_wav, script_file):
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, fault="close-without-id")
    await emu.start()
    try:
        r = await cli(
            "melvin", str(speech_wav), "--url", emu.url, "--speed", "8", "--json", env=ENV
        )
    finally:
        await emu.stop()
    assert r.code == 5
    assert "without an export id" in r.stderr.splitlines()[-1]
    assert [e["text"] for e in events(r.stdout) if e["type"] == "final"][:2] == [
        "Hello streaming world.",
        "The second sentence ends here.",
    ]


async def test_melvin_server_silent_after_eof_times_out_with_6(cli, speech_wav, script_file):
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, fault="silent-after-eof")
    await emu.start()
    try:
        r = await cli(
            "melvin", str(speech_wav), "--url", emu.url, "--speed", "8", "--timeout", "1.5", env=ENV
        )
    finally:
        await emu.stop()
    assert r.code == 6
    assert r.stderr.splitlines()[-1] == (
        "streamcli: error: no end of session from the server within 1.5 s after the audio ended"
    )
    assert r.lines[:2] == ["Hello streaming world.", "The second sentence ends here."]


async def test_melvin_connection_dropped_mid_stream_exits_4(cli, speech_wav, script_file):
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, fault="drop-after", fault_after=1.0)
    await emu.start()
    try:
        r = await cli("melvin", str(speech_wav), "--url", emu.url, "--speed", "8", env=ENV)
    finally:
        await emu.stop()
    assert r.code == 4
    assert "closed the connection" in r.stderr.splitlines()[-1]


async def test_melvin_waiting_for_a_seat_is_reported_and_then_streams(cli, speech_wav, script_file):
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, seats=1, reminder_interval=0.3)
    await emu.start()
    try:
        await emu._free_seats.acquire()  # someone else holds the only seat
        import asyncio

        task = asyncio.create_task(
            cli("melvin", str(speech_wav), "--url", emu.url, "--speed", "8", "--json", env=ENV)
        )
        await asyncio.sleep(1.2)
        emu._free_seats.release()
        r = await task
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    statuses = [e for e in events(r.stdout) if e["type"] == "status"]
    assert statuses and statuses[0]["state"] == "waiting"
    assert emu.connections[0].waited_for_seat
    assert [e["text"] for e in events(r.stdout) if e["type"] == "final"] == [
        "Hello streaming world.",
        "The second sentence ends here.",
    ]


async def test_melvin_exports_transcript_and_audio(cli, speech_wav, script_file, tmp_path):
    emu = MelvinEmulator(api_keys=[KEY], script=script_file)
    await emu.start()
    out = tmp_path / "out"
    try:
        r = await cli(
            "melvin",
            str(speech_wav),
            "--url",
            emu.url,
            "--speed",
            "8",
            "--json",
            "--export",
            "transcript,audio",
            "--export-dir",
            str(out),
            "--rest-url",
            emu.rest_url,
            env=ENV,
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    (export_id,) = emu.exports
    transcript = json.loads((out / f"{export_id}.json").read_text())
    # The export is the server's own file, verbatim: the real server keeps the word it sent
    # twice (the emulator's default quirk); only the live finals drop it.
    assert [t["text"] for t in transcript] == [
        "Hello streaming world.",
        "world. The second sentence ends here.",
    ]
    assert [f["text"] for f in map(json.loads, r.lines) if f["type"] == "final"] == [
        "Hello streaming world.",
        "The second sentence ends here.",
    ]
    audio, rate = sf.read(str(out / f"{export_id}.wav"))
    assert rate == 16000 and abs(len(audio) / rate - emu.connections[0].audio_seconds) < 0.01


async def test_missing_file_exits_2_with_one_line(cli):
    r = await cli("melvin", "/nonexistent/talk.wav")
    assert r.code == 2
    assert r.stderr.strip() == "streamcli: error: /nonexistent/talk.wav: no such file"


async def test_a_non_audio_file_exits_2_with_one_line(cli, tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are notes, not audio\n" * 10)
    r = await cli("melvin", str(path))
    assert r.code == 2
    assert r.stderr.strip().startswith(f"streamcli: error: {path}: not a readable audio file")
    assert len(r.stderr.strip().splitlines()) == 1


async def test_a_truncated_wav_header_exits_2(cli, tmp_path, make_wav):
    full = make_wav("full.wav", tone(440, 1.0, 16000), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:30])
    r = await cli("melvin", str(cut))
    assert r.code == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


async def test_a_wav_cut_mid_data_streams_what_is_there(cli, melvin, tmp_path):
    data = (speechlike(16000, [0.8, 1.0]) * 32767).astype("<i2").tobytes()
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        + b"data"
        + struct.pack("<I", len(data))
    )
    path = tmp_path / "cut.wav"
    path.write_bytes(header + data[: len(data) // 2 + 1])  # odd cut inside a sample
    r = await cli("melvin", str(path), "--url", melvin.url, "--speed", "8", env=ENV)
    assert r.code == 0, r.stderr
    assert melvin.connections[0].audio_seconds < len(data) / 2 / 16000


async def test_bad_option_values_exit_2(cli, speech_wav):
    for args in (
        ["--speed", "-1"],
        ["--chunk-ms", "0"],
        ["--url", "http://x"],
        ["--export", "video"],
    ):
        r = await cli("melvin", str(speech_wav), *args)
        assert r.code == 2, (args, r.stderr)
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith("streamcli: error: "), (args, r.stderr)
        assert "Traceback" not in r.stderr


async def test_debug_trace_masks_the_key(cli, melvin, speech_wav):
    r = await cli(
        "melvin", str(speech_wav), "--url", melvin.url, "--speed", "8", "--debug", env=ENV
    )
    assert r.code == 0, r.stderr
    assert "[wire melvin] →" in r.stderr
    assert KEY not in r.stderr and KEY not in r.stdout
    assert KEY[:4] + "…" in r.stderr


async def test_mulaw_and_8bit_inputs_arrive_as_16k_s16le(cli, melvin, tmp_path):
    data = speechlike(8000, [0.8, 1.0])
    path = tmp_path / "in.wav"
    sf.write(str(path), data, 8000, subtype="ULAW")
    r = await cli("melvin", str(path), "--url", melvin.url, "--speed", "8", env=ENV)
    assert r.code == 0, r.stderr
    assert abs(melvin.connections[0].audio_seconds - len(data) / 8000) < 0.02
    assert np.abs(melvin.connections[0].pcm()).max() > 10000


async def test_melvin_eof_waits_for_the_running_transcription_so_the_export_id_survives(
    cli, speech_wav, script_file
):
    # The emulator's passes take 0.4 s here: eof sent during one would lose the export id.
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, transcribe_seconds=0.4)
    await emu.start()
    try:
        for speed in ("1", "0"):
            r = await cli("melvin", str(speech_wav), "--url", emu.url, "--speed", speed, env=ENV)
            assert r.code == 0, r.stderr
    finally:
        await emu.stop()
    assert [c.ended for c in emu.connections] == ["eof", "eof"]


async def test_melvin_live_finals_drop_the_word_the_server_sends_twice(cli, melvin, speech_wav):
    r = await cli("melvin", str(speech_wav), "--url", melvin.url, "--speed", "8", "--json", env=ENV)
    assert r.code == 0, r.stderr
    assert melvin.connections[0].repeated_words == 1
    words = [w["word"] for e in events(r.stdout) if e["type"] == "final" for w in e["words"]]
    assert " ".join(words) == "Hello streaming world. The second sentence ends here."
    raw = await cli(
        "melvin", str(speech_wav), "--url", melvin.url, "--speed", "8", "--raw", env=ENV
    )
    finals = [json.loads(line) for line in raw.lines if line.startswith("{") and "result" in line]
    assert finals[1]["text"].startswith("world.")  # --raw stays verbatim


async def test_melvin_export_without_a_final_warns_and_still_fetches_the_audio(
    cli, tmp_path, make_wav
):
    script = tmp_path / "one.txt"
    script.write_text("Short.\n", encoding="utf-8")
    emu = MelvinEmulator(api_keys=[KEY], script=script)
    await emu.start()
    out = tmp_path / "out"
    # Under a second of audio: no transcription pass, so no final (the real server's REST app
    # then answers 404 for the transcript while the audio export exists).
    short = make_wav("short.wav", tone(300, 0.8, 16000), 16000)
    try:
        r = await cli(
            "melvin", str(short), "--url", emu.url, "--speed", "4", "--export", "transcript,audio",
            "--export-dir", str(out), "--rest-url", emu.rest_url, env=ENV,
        )  # fmt: skip
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    (export_id,) = emu.exports
    assert "the server kept no transcript" in r.stderr
    assert (out / f"{export_id}.wav").exists() and not (out / f"{export_id}.json").exists()
