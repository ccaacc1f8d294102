"""The real CLI against the Phebi-Live emulator over loopback: wire, split channels, failures."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import CLEAN_ENV, dominant_frequency, speechlike

from streamcli.emulators.phebi import Frame, PhebiEmulator

KEY = "phebi-subscription-0123456789"
ENV = {"PHEBI_SUBSCRIPTION_KEY": KEY}
FINALS = ["Hello streaming world.", "The second sentence ends here."]
EMOTIONS = ("strong", "calm", "anxious", "happy", "sad")
# What phebi.md asks for, written out here rather than taken from the client's own code.
HEADER = (
    b"RIFF"
    + struct.pack("<I", 0xFFFFFFFF)
    + b"WAVEfmt "
    + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    + b"data"
    + struct.pack("<I", 0xFFFFFFFF)
)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def of_type(evs: list[dict], kind: str) -> list[dict]:
    return [e for e in evs if e["type"] == kind]


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
async def phebi(script_file):
    emu = PhebiEmulator(subscription_key=KEY, script=script_file)
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
def long_speech_wav(make_wav):
    """Two bursts with more than 2 s of voice between them: the emulator sends one Emotions."""
    return make_wav("speech.wav", speechlike(22050, [1.2, 1.4]), 22050)


def phebi_args(emu: PhebiEmulator, *more: str) -> list[str]:
    return ["--url", emu.url, "--project", "My Project/2025", "--session", "resp #1", *more]


async def test_phebi_sends_the_wav_header_first_and_the_end_byte_last(cli, phebi, long_speech_wav):
    r = await cli(
        "phebi", str(long_speech_wav), *phebi_args(phebi, "--speed", "8", "--json"), env=ENV
    )
    assert r.code == 0, r.stderr
    (conn,) = phebi.connections
    await conn.finished.wait()
    # Every segment is percent-encoded on its own: "/" inside a project is not a separator.
    assert conn.raw_path == "/sockets/live/My%20Project%2F2025/resp%20%231/respondent"
    assert (conn.project, conn.session, conn.speaker) == (
        "My Project/2025",
        "resp #1",
        "respondent",
    )
    assert conn.headers["Subscription"] == KEY
    assert conn.frames[0] == Frame("binary", 44)
    assert conn.wav_header == HEADER
    assert conn.frames[-1] == Frame("binary", 1)
    assert all(f.kind == "binary" and f.length % 2 == 0 for f in conn.frames[1:-1])
    assert conn.eof and conn.ended == "eof" and conn.violations == []
    expected = len(speechlike(22050, [1.2, 1.4])) / 22050
    assert abs(conn.audio_seconds - expected) < 0.02
    assert abs(dominant_frequency(conn.pcm[3200:16000], 16000) - 300) < 3


async def test_phebi_reports_finals_partials_and_emotions_for_the_speaker(
    cli, phebi, long_speech_wav
):
    r = await cli(
        "phebi", str(long_speech_wav), *phebi_args(phebi, "--speed", "8", "--json"), env=ENV
    )
    assert r.code == 0, r.stderr
    evs = events(r.stdout)
    assert evs[0]["type"] == "session" and evs[0]["backend"] == "phebi"
    assert evs[0]["info"]["url"].endswith(
        "/sockets/live/My%20Project%2F2025/resp%20%231/respondent"
    )
    assert [f["text"] for f in of_type(evs, "final")] == FINALS
    assert all(e["speaker"] == "respondent" for e in evs)
    assert all(
        FINALS[0].startswith(p["text"]) or FINALS[1].startswith(p["text"])
        for p in of_type(evs, "partial")
    )
    # Each score is the server's score times its confidence, named in the wire order.
    (conn,) = phebi.connections
    sent = [entry for msg in conn.sent for entry in msg.get("Emotions", [])]
    assert sent, "the emulator should have sent an Emotions entry"
    emotions = of_type(evs, "emotion")
    assert [
        {
            name: round(score * s["Confidence"], 6)
            for name, score in zip(EMOTIONS, s["Scores"], strict=True)
        }
        for s in sent
    ] == [e["scores"] for e in emotions]
    assert [e["confidence"] for e in emotions] == [s["Confidence"] for s in sent]
    assert evs[-1] == {
        "type": "end",
        "backend": "phebi",
        "speaker": "respondent",
        "reason": "closed",
    }


async def test_phebi_plain_output_is_one_line_per_final(cli, phebi, speech_wav):
    r = await cli("phebi", str(speech_wav), *phebi_args(phebi, "--speed", "8"), env=ENV)
    assert r.code == 0, r.stderr
    assert r.lines == FINALS


async def test_phebi_speaker_names_the_socket_and_the_events(cli, phebi, speech_wav):
    r = await cli(
        "phebi",
        str(speech_wav),
        *phebi_args(phebi, "--speed", "8", "--json", "--speaker", "moderator"),
        env=ENV,
    )
    assert r.code == 0, r.stderr
    assert phebi.connections[0].speaker == "moderator"
    assert {e["speaker"] for e in events(r.stdout)} == {"moderator"}


async def test_phebi_split_channels_opens_one_socket_per_speaker(cli, phebi, make_wav):
    left = speechlike(16000, [0.8], freq=300.0)
    right = speechlike(16000, [0.6, 0.7], freq=700.0)
    right = np.pad(right, (0, max(0, len(left) - len(right))))
    left = np.pad(left, (0, len(right) - len(left)))
    stereo = make_wav("interview.wav", np.stack([left, right], axis=1), 16000)
    r = await cli(
        "phebi",
        str(stereo),
        *phebi_args(
            phebi,
            "--speed",
            "8",
            "--json",
            "--split-channels",
            "--speaker",
            "moderator",
            "--speaker",
            "respondent",
        ),
        env=ENV,
    )
    assert r.code == 0, r.stderr
    conns = {c.speaker: c for c in phebi.connections}
    assert sorted(conns) == ["moderator", "respondent"]
    for conn in conns.values():
        await conn.finished.wait()
        assert conn.ended == "eof" and conn.violations == []
        assert conn.wav_header == HEADER and conn.frames[-1] == Frame("binary", 1)
        assert conn.raw_path.startswith("/sockets/live/My%20Project%2F2025/resp%20%231/")
    # Each socket carries its own channel, and only that one.
    assert abs(dominant_frequency(conns["moderator"].pcm, 16000) - 300) < 3
    assert abs(dominant_frequency(conns["respondent"].pcm, 16000) - 700) < 3
    evs = events(r.stdout)
    assert all(e.get("speaker") in ("moderator", "respondent") for e in evs)
    finals = {
        who: [e["text"] for e in of_type(evs, "final") if e["speaker"] == who]
        for who in ("moderator", "respondent")
    }
    assert finals == {"moderator": FINALS[:1], "respondent": FINALS}
    assert sorted(e["speaker"] for e in of_type(evs, "session")) == ["moderator", "respondent"]
    assert sorted(e["speaker"] for e in of_type(evs, "end")) == ["moderator", "respondent"]


async def test_phebi_split_channels_with_the_wrong_number_of_speakers_exits_2(cli, phebi, make_wav):
    tone = speechlike(16000, [0.5])
    stereo = make_wav("two.wav", np.stack([tone, tone], axis=1), 16000)
    r = await cli(
        "phebi",
        str(stereo),
        *phebi_args(
            phebi, "--split-channels", "--speaker", "a", "--speaker", "b", "--speaker", "c"
        ),
        env=ENV,
    )
    assert r.code == 2
    assert "2 channel(s) but 3 --speaker name(s)" in one_error_line(r.stderr)
    assert phebi.connections == []


async def test_phebi_wrong_subscription_key_exits_3(cli, phebi, speech_wav):
    wrong = "not-the-key-0123456789"
    r = await cli(
        "phebi", str(speech_wav), *phebi_args(phebi), env={"PHEBI_SUBSCRIPTION_KEY": wrong}
    )
    assert r.code == 3
    assert one_error_line(r.stderr).startswith(
        "streamcli: error: Phebi-Live rejected the Subscription key (HTTP 403"
    )
    assert wrong not in r.stderr + r.stdout
    assert phebi.connections[0].status == 403


async def test_phebi_error_message_mid_stream_exits_5(cli, speech_wav, script_file):
    emu = PhebiEmulator(
        subscription_key=KEY, script=script_file, error_message="Model crashed", error_at=0.5
    )
    await emu.start()
    try:
        r = await cli("phebi", str(speech_wav), *phebi_args(emu, "--speed", "8", "-q"), env=ENV)
    finally:
        await emu.stop()
    assert r.code == 5
    assert (
        one_error_line(r.stderr) == "streamcli: error: Phebi-Live reported an error: Model crashed"
    )
    assert emu.connections[0].ended == "error_message"


async def test_phebi_server_crash_mid_stream_exits_4(cli, speech_wav):
    emu = PhebiEmulator(subscription_key=KEY, fail_after=0.5)
    await emu.start()
    try:
        r = await cli("phebi", str(speech_wav), *phebi_args(emu, "--speed", "8", "-q"), env=ENV)
    finally:
        await emu.stop()
    assert r.code == 4
    assert one_error_line(r.stderr) == (
        "streamcli: error: the server closed the connection before the end of the audio (code 1011)"
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--url", "ws://127.0.0.1:9", "--session", "s"], ENV, "missing --project"),
        (["--url", "ws://127.0.0.1:9", "--project", "p"], ENV, "missing --session"),
        (["--project", "p", "--session", "s"], ENV, "missing --url"),
        (
            ["--url", "ws://127.0.0.1:9", "--project", "p", "--session", "s"],
            {},
            "set PHEBI_SUBSCRIPTION_KEY",
        ),
        (
            ["--url", "https://h.example", "--project", "p", "--session", "s"],
            ENV,
            "expected ws://HOST[:PORT] or wss://HOST[:PORT]",
        ),
    ],
)
async def test_phebi_missing_or_bad_settings_exit_2_before_connecting(
    cli, speech_wav, args, env, expected
):
    r = await cli("phebi", str(speech_wav), *args, env=env)
    assert r.code == 2
    assert expected in one_error_line(r.stderr)


async def test_phebi_url_project_and_session_can_come_from_a_profile(
    cli, phebi, speech_wav, tmp_path
):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[phebi]\nproject = "Default"\n\n[profiles.lab.phebi]\nurl = "{phebi.url}"\n'
        'project = "Lab study"\nsession = "r-7"\n',
        encoding="utf-8",
    )
    r = await cli(
        "phebi",
        str(speech_wav),
        "--config",
        str(config),
        "--profile",
        "lab",
        "--speed",
        "8",
        env=ENV,
    )
    assert r.code == 0, r.stderr
    assert phebi.connections[0].raw_path == "/sockets/live/Lab%20study/r-7/respondent"


async def test_phebi_url_can_come_from_the_environment(cli, phebi, speech_wav):
    r = await cli(
        "phebi",
        str(speech_wav),
        "--project",
        "p",
        "--session",
        "s",
        "--speed",
        "8",
        env={**ENV, "PHEBI_URL": phebi.url},
    )
    assert r.code == 0, r.stderr
    assert phebi.connections[0].raw_path == "/sockets/live/p/s/respondent"


async def test_serve_phebi_runs_the_emulator_for_the_client(cli, speech_wav, script_file):
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        "serve",
        "phebi",
        "--port",
        "0",
        "--subscription-key",
        KEY,
        "--script",
        str(script_file),
        stderr=asyncio.subprocess.PIPE,
        env=CLEAN_ENV,
    )
    try:
        url = await _listening_url(server)
        r = await cli(
            "phebi",
            str(speech_wav),
            "--url",
            url,
            "--project",
            "p",
            "--session",
            "s",
            "--speed",
            "8",
            env=ENV,
        )
        assert r.code == 0, r.stderr
        assert r.lines == FINALS
    finally:
        server.terminate()
        await server.wait()


async def _listening_url(server: asyncio.subprocess.Process) -> str:
    assert server.stderr is not None
    while line := (await asyncio.wait_for(server.stderr.readline(), 20)).decode():
        if " listening on " in line:
            return line.split(" listening on ")[1].split()[0]
    raise AssertionError("the emulator did not start")


HELP_PROBE = """
import json, sys
sys.argv = ["streamcli", *json.loads(sys.argv[1])]
from streamcli.cli import app
try:
    app(prog_name="streamcli")
except SystemExit:
    pass
heavy = ("aiohttp", "numpy", "soundfile", "soxr", "sounddevice", "socketio")
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(heavy))))
"""


@pytest.mark.parametrize(
    "args",
    [[name, "--help"] for name in ("phebi", "bodhi", "vosk")]
    + [["serve", name, "--help"] for name in ("phebi", "bodhi", "vosk")],
    ids=" ".join,
)
def test_backend_help_imports_no_heavy_library(args):
    done = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        env={**CLEAN_ENV, "NO_COLOR": "1"},
    )
    assert "Example: streamcli " in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
