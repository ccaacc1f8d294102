"""The real CLI against the Vosk server emulator over loopback: config, PCM, the exact EOF."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import pytest
from conftest import CLEAN_ENV, dominant_frequency, speechlike

from streamcli.emulators.vosk import Frame, VoskEmulator

FINALS = ["Hello streaming world.", "The second sentence ends here."]
# vosk-server compares the text with exactly this string: the space before the colon matters.
EOF = Frame("text", 11, '{"eof" : 1}')


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def of_type(evs: list[dict], kind: str) -> list[dict]:
    return [e for e in evs if e["type"] == kind]


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
async def vosk(script_file):
    emu = VoskEmulator(script=script_file)
    await emu.start()
    yield emu
    await emu.stop()


async def test_vosk_sends_the_config_then_pcm_then_the_exact_eof(cli, vosk, speech_wav):
    r = await cli("vosk", str(speech_wav), "--url", vosk.url, "--speed", "8", "--json")
    assert r.code == 0, r.stderr
    (conn,) = vosk.connections
    await conn.finished.wait()
    config = '{"config": {"sample_rate": 16000}}'
    assert conn.frames[0] == Frame("text", len(config), config)
    assert conn.frames[-1] == EOF
    assert all(f.kind == "binary" and f.length % 2 == 0 for f in conn.frames[1:-1])
    assert conn.sample_rate == 16000
    assert conn.eof and conn.ended == "eof" and conn.violations == []
    # 22.05 kHz in, 16 kHz raw PCM on the wire: same duration, same pitch.
    expected = len(speechlike(22050, [0.8, 1.0])) / 22050
    assert abs(conn.audio_seconds - expected) < 0.02
    assert abs(dominant_frequency(conn.pcm[3200:16000], 16000) - 300) < 3


async def test_vosk_reports_finals_with_words_and_an_end(cli, vosk, speech_wav):
    r = await cli("vosk", str(speech_wav), "--url", vosk.url, "--speed", "8", "--json")
    assert r.code == 0, r.stderr
    evs = events(r.stdout)
    assert evs[0]["type"] == "session" and evs[0]["backend"] == "vosk"
    finals = of_type(evs, "final")
    assert [f["text"] for f in finals] == FINALS
    assert [w["word"] for w in finals[0]["words"]] == FINALS[0].split()
    assert all(w["confidence"] == 0.9 for f in finals for w in f["words"])
    assert evs[-1] == {"type": "end", "backend": "vosk", "reason": "eof"}


async def test_vosk_plain_output_is_one_line_per_final(cli, vosk, speech_wav):
    r = await cli("vosk", str(speech_wav), "--url", vosk.url, "--speed", "8")
    assert r.code == 0, r.stderr
    assert r.lines == FINALS


async def test_vosk_sample_rate_sets_the_config_and_the_wire_rate(cli, vosk, speech_wav):
    r = await cli(
        "vosk", str(speech_wav), "--url", vosk.url, "--speed", "8", "--sample-rate", "8000"
    )
    assert r.code == 0, r.stderr
    conn = vosk.connections[0]
    assert conn.frames[0].text == '{"config": {"sample_rate": 8000}}'
    assert conn.sample_rate == 8000
    assert abs(dominant_frequency(conn.pcm[1600:8000], 8000) - 300) < 3
    assert r.lines == FINALS


async def test_vosk_reads_wav_from_stdin(cli, vosk, speech_wav):
    r = await cli("vosk", "-", "--url", vosk.url, "--speed", "8", stdin=speech_wav.read_bytes())
    assert r.code == 0, r.stderr
    assert r.lines == FINALS


async def test_vosk_connection_refused_exits_4(cli, speech_wav):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = await cli("vosk", str(speech_wav), "--url", f"ws://127.0.0.1:{port}")
    assert r.code == 4
    assert one_error_line(r.stderr).startswith(
        f"streamcli: error: cannot connect to ws://127.0.0.1:{port}"
    )


@pytest.mark.parametrize(
    "args", [["--url", "http://localhost:2700"], ["--sample-rate", "100"], ["--speed", "-1"]]
)
async def test_vosk_bad_options_exit_2(cli, vosk, speech_wav, args):
    r = await cli("vosk", str(speech_wav), "--url", vosk.url, *args)
    assert r.code == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert vosk.connections == []


async def test_vosk_settings_come_from_the_config_file_unless_typed(
    cli, vosk, speech_wav, tmp_path
):
    config = tmp_path / "config.toml"
    config.write_text(f'[vosk]\nurl = "{vosk.url}"\nsample_rate = 8000\n', encoding="utf-8")
    r = await cli("vosk", str(speech_wav), "--config", str(config), "--speed", "8")
    assert r.code == 0, r.stderr
    r = await cli(
        "vosk", str(speech_wav), "--config", str(config), "--speed", "8", "--sample-rate", "16000"
    )
    assert r.code == 0, r.stderr
    assert [c.frames[0].text for c in vosk.connections] == [
        '{"config": {"sample_rate": 8000}}',
        '{"config": {"sample_rate": 16000}}',
    ]


async def test_serve_vosk_runs_the_emulator_for_the_client(cli, speech_wav, script_file):
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        "serve",
        "vosk",
        "--port",
        "0",
        "--script",
        str(script_file),
        stderr=asyncio.subprocess.PIPE,
        env=CLEAN_ENV,
    )
    try:
        url = await _listening_url(server)
        r = await cli("vosk", str(speech_wav), "--url", url, "--speed", "8")
    finally:
        server.terminate()
        await server.wait()
    assert r.code == 0, r.stderr
    assert r.lines == FINALS


async def _listening_url(server: asyncio.subprocess.Process) -> str:
    assert server.stderr is not None
    while line := (await asyncio.wait_for(server.stderr.readline(), 20)).decode():
        if " listening on " in line:
            return line.split(" listening on ")[1].split()[0]
    raise AssertionError("the emulator did not start")


def test_every_backend_command_takes_every_common_option():
    """The CLI contract: phebi, bodhi and vosk accept all the options melvin does."""
    import typer

    from streamcli.cli import app
    from streamcli.commands.options import Common

    group = typer.main.get_command(app)
    melvin = {p.name for p in group.commands["melvin"].params}
    shared = melvin & set(Common.__dataclass_fields__)
    assert {"heartbeat", "reconnect", "concurrency", "max_p95_latency", "profile"} <= shared
    for name in ("phebi", "bodhi", "vosk"):
        params = {p.name for p in group.commands[name].params}
        assert shared <= params, (name, shared - params)
