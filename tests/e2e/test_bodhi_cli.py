"""The real CLI against the Navana Bodhi emulator over loopback: the wire, keepalive, refusals."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import pytest
from conftest import CLEAN_ENV, dominant_frequency, speechlike

from streamcli.emulators.bodhi import BodhiEmulator, Frame

KEY = "bodhi-api-key-0123456789"
CUSTOMER = "123e4567-e89b-12d3-a456-426614174000"
ENV = {"BODHI_API_KEY": KEY, "BODHI_CUSTOMER_ID": CUSTOMER}
FINALS = ["Hello streaming world.", "The second sentence ends here."]
EOF = Frame("text", 10, '{"eof": 1}')


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def of_type(evs: list[dict], kind: str) -> list[dict]:
    return [e for e in evs if e["type"] == kind]


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
async def bodhi(script_file):
    emu = BodhiEmulator(api_key=KEY, customer_id=CUSTOMER, script=script_file)
    await emu.start()
    yield emu
    await emu.stop()


async def test_bodhi_sends_headers_then_one_config_then_pcm_then_the_exact_eof(
    cli, bodhi, speech_wav
):
    r = await cli("bodhi", str(speech_wav), "--url", bodhi.url, "--speed", "8", "--json", env=ENV)
    assert r.code == 0, r.stderr
    (conn,) = bodhi.connections
    await conn.finished.wait()
    assert conn.headers["x-api-key"] == KEY and conn.headers["x-customer-id"] == CUSTOMER
    session = of_type(events(r.stdout), "session")[0]
    transaction_id = session["info"]["transaction_id"]
    assert uuid.UUID(transaction_id).version == 4
    # Only the required keys when no option is given, in the vendor's order and spelling.
    config = json.dumps(
        {
            "config": {
                "sample_rate": 8000,
                "transaction_id": transaction_id,
                "model": "hi-banking-v2-8khz",
            }
        }
    )
    assert conn.frames[0] == Frame("text", len(config), config)
    assert conn.frames[-1] == EOF
    assert all(f.kind == "binary" and f.length == 1600 for f in conn.frames[1:-2])
    assert conn.eof and conn.ended == "eos" and conn.closed_by == "client"
    assert conn.violations == []
    # 22.05 kHz in, 8 kHz raw PCM on the wire (no header): same duration, same pitch.
    expected = len(speechlike(22050, [0.8, 1.0])) / 22050
    assert abs(conn.audio_seconds - expected) < 0.02
    assert abs(dominant_frequency(conn.pcm[1600:8000], 8000) - 300) < 3


async def test_bodhi_reports_finals_and_the_transaction_id(cli, bodhi, speech_wav):
    r = await cli("bodhi", str(speech_wav), "--url", bodhi.url, "--speed", "8", "--json", env=ENV)
    assert r.code == 0, r.stderr
    evs = events(r.stdout)
    assert evs[0]["type"] == "session" and evs[0]["backend"] == "bodhi"
    assert evs[0]["info"]["model"] == "hi-banking-v2-8khz"
    assert [f["text"] for f in of_type(evs, "final")] == FINALS
    words = of_type(evs, "final")[1]["words"]
    assert [w["word"] for w in words] == FINALS[1].split()
    assert all(w["start"] >= 1.4 for w in words)  # on the stream timeline, not the segment's
    conn = bodhi.connections[0]
    (end,) = of_type(evs, "end")
    assert end["transaction_id"] == conn.config["transaction_id"]
    assert end["transaction_id"] == evs[0]["info"]["transaction_id"]
    assert end["call_id"] == conn.sent[-1]["call_id"]


async def test_bodhi_plain_output_is_one_line_per_final(cli, bodhi, speech_wav):
    r = await cli("bodhi", str(speech_wav), "--url", bodhi.url, "--speed", "8", env=ENV)
    assert r.code == 0, r.stderr
    assert r.lines == FINALS


async def test_bodhi_config_carries_exactly_the_options_given(cli, bodhi, speech_wav):
    r = await cli(
        "bodhi",
        str(speech_wav),
        "--url",
        bodhi.url,
        "--speed",
        "8",
        "--json",
        "--parse-number",
        "--no-exclude-partial",
        "--aux",
        "--endpoint-silence",
        "0.5",
        "--hotword",
        "account balance:2.5",
        "--hotword",
        "EMI",
        "--at-start-lid",
        "--no-transliterate",
        env=ENV,
    )
    assert r.code == 0, r.stderr
    conn = bodhi.connections[0]
    transaction_id = of_type(events(r.stdout), "session")[0]["info"]["transaction_id"]
    assert conn.frames[0].text == json.dumps(
        {
            "config": {
                "sample_rate": 8000,
                "transaction_id": transaction_id,
                "model": "hi-banking-v2-8khz",
                "parse_number": True,
                "exclude_partial": False,
                "hotwords": [
                    {"phrase": "account balance", "score": 2.5},
                    {"phrase": "EMI", "score": 1.5},
                ],
                "aux": True,
                "endpoint_silence_duration": 0.5,
                "at_start_lid": True,
                "transliterate": False,
            }
        }
    )
    assert conn.violations == []
    assert [f["text"] for f in of_type(events(r.stdout), "final")] == FINALS


async def test_bodhi_16k_model_gets_16k_audio(cli, bodhi, speech_wav):
    r = await cli(
        "bodhi",
        str(speech_wav),
        "--url",
        bodhi.url,
        "--speed",
        "8",
        "--json",
        "--sample-rate",
        "16000",
        "--model",
        "en-general-v2-16khz",
        env=ENV,
    )
    assert r.code == 0, r.stderr
    conn = bodhi.connections[0]
    assert conn.config["sample_rate"] == 16000 and conn.config["model"] == "en-general-v2-16khz"
    assert abs(dominant_frequency(conn.pcm[3200:16000], 16000) - 300) < 3


async def test_bodhi_model_and_rate_can_come_from_a_profile(cli, bodhi, speech_wav, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[profiles.lab.bodhi]\nurl = "{bodhi.url}"\nmodel = "ta-general-v2-16khz"\n'
        "sample_rate = 16000\n",
        encoding="utf-8",
    )
    r = await cli(
        "bodhi",
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
    config_sent = bodhi.connections[0].config
    assert config_sent["model"] == "ta-general-v2-16khz" and config_sent["sample_rate"] == 16000


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (401, "Navana Bodhi rejected the credentials: invalid API key or customer ID (HTTP 401)"),
        (402, "Navana Bodhi refused the session: insufficient balance (HTTP 402)"),
        (403, "Navana Bodhi refused the session: the customer has been deactivated (HTTP 403)"),
    ],
)
async def test_bodhi_handshake_refusal_exits_3_with_the_vendor_meaning(
    cli, speech_wav, status, line
):
    emu = BodhiEmulator(reject=status)
    await emu.start()
    try:
        r = await cli("bodhi", str(speech_wav), "--url", emu.url, env=ENV)
    finally:
        await emu.stop()
    assert r.code == 3
    assert one_error_line(r.stderr) == f"streamcli: error: {line}"
    assert KEY not in r.stderr + r.stdout
    assert [c.status for c in emu.connections] == [status]


async def test_bodhi_wrong_key_exits_3(cli, bodhi, speech_wav):
    r = await cli(
        "bodhi",
        str(speech_wav),
        "--url",
        bodhi.url,
        env={**ENV, "BODHI_API_KEY": "wrong-key-0123456789"},
    )
    assert r.code == 3
    assert "invalid API key or customer ID" in one_error_line(r.stderr)


async def test_bodhi_customer_id_that_is_not_a_uuid_exits_2_before_connecting(
    cli, bodhi, speech_wav
):
    r = await cli(
        "bodhi", str(speech_wav), "--url", bodhi.url, env={**ENV, "BODHI_CUSTOMER_ID": "acme-corp"}
    )
    assert r.code == 2
    assert one_error_line(r.stderr) == (
        "streamcli: error: the Navana Bodhi customer id must be a UUID "
        "(like 123e4567-e89b-12d3-a456-426614174000), not 'acme-corp'"
    )
    assert bodhi.connections == []


async def test_bodhi_missing_credentials_exit_2_naming_the_variables(cli, bodhi, speech_wav):
    r = await cli("bodhi", str(speech_wav), "--url", bodhi.url)
    assert r.code == 2
    line = one_error_line(r.stderr)
    assert "BODHI_API_KEY" in line and "BODHI_CUSTOMER_ID" in line
    r = await cli("bodhi", str(speech_wav), "--url", bodhi.url, env={"BODHI_API_KEY": KEY})
    assert r.code == 2
    assert one_error_line(r.stderr) == (
        "streamcli: error: missing Navana Bodhi customer id: set BODHI_CUSTOMER_ID "
        "(or give --customer-id)"
    )
    assert bodhi.connections == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sample-rate", "11025"], "--sample-rate 11025: Navana Bodhi takes 8000 or 16000"),
        (["--hotword", "EMI:"], "missing score after ':'"),
        (["--hotword", "EMI:-2"], "the score must be a positive number"),
        (["--endpoint-silence", "0"], "invalid endpoint silence"),
        (["--url", "http://bodhi.example"], "expected ws://HOST[:PORT] or wss://HOST[:PORT]"),
    ],
)
async def test_bodhi_bad_options_exit_2_before_connecting(cli, bodhi, speech_wav, args, expected):
    r = await cli("bodhi", str(speech_wav), "--url", bodhi.url, *args, env=ENV)
    assert r.code == 2
    assert expected in one_error_line(r.stderr)
    assert bodhi.connections == []


async def test_bodhi_unavailable_model_exits_2_with_the_server_message(cli, bodhi, speech_wav):
    r = await cli(
        "bodhi", str(speech_wav), "--url", bodhi.url, "--model", "xx-nothing-v9", "--json", env=ENV
    )
    assert r.code == 2
    assert one_error_line(r.stderr) == (
        "streamcli: error: Navana Bodhi rejected the request: "
        "model 'xx-nothing-v9' is not available (code 400)"
    )


async def test_bodhi_error_mid_stream_exits_5(cli, speech_wav, script_file):
    emu = BodhiEmulator(api_key=KEY, customer_id=CUSTOMER, script=script_file, error_after=0.5)
    await emu.start()
    try:
        r = await cli("bodhi", str(speech_wav), "--url", emu.url, "--speed", "8", "-q", env=ENV)
    finally:
        await emu.stop()
    assert r.code == 5
    assert one_error_line(r.stderr) == (
        "streamcli: error: Navana Bodhi reported internal_error (code 500): Internal server error"
    )
    assert emu.connections[0].ended == "error_after"


async def test_bodhi_keepalive_silence_outlives_a_stalled_stdin(make_wav, script_file):
    """A producer that stalls for longer than the server's idle limit: the session survives."""
    emu = BodhiEmulator(api_key=KEY, customer_id=CUSTOMER, script=script_file, idle_timeout=2.0)
    await emu.start()
    samples = speechlike(8000, [0.8, 1.0])
    wav = make_wav("slow.wav", samples, 8000).read_bytes()
    pcm_bytes = len(samples) * 2
    header = len(wav) - pcm_bytes
    before_stall = header + int(1.2 * 8000) * 2  # into the pause after the first burst
    env = {**CLEAN_ENV, **ENV, "NO_COLOR": "1", "XDG_CONFIG_HOME": "/nonexistent-streamcli-test"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        "bodhi",
        "-",
        "--url",
        emu.url,
        "--json",
        "--speed",
        "8",
        "--chunk-ms",
        "200",
        "--keepalive",
        "0.4",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(wav[:before_stall])
        await proc.stdin.drain()
        await asyncio.sleep(3.0)  # longer than the emulator's idle limit
        proc.stdin.write(wav[before_stall:])
        await proc.stdin.drain()
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await emu.stop()
    assert proc.returncode == 0, err.decode()
    (conn,) = emu.connections
    assert conn.ended == "eos" and conn.violations == []
    # Audio frames are 200 ms (3200 bytes); each keepalive is 100 ms of silence (1600 bytes).
    keepalive_bytes = conn.audio_bytes - pcm_bytes
    assert keepalive_bytes > 0 and keepalive_bytes % 1600 == 0
    assert keepalive_bytes // 1600 >= 3
    offset, silent_frames = 0, 0
    for frame in conn.frames[1:-1]:
        chunk = conn.audio[offset : offset + frame.length]
        offset += frame.length
        silent_frames += frame.length == 1600 and not any(chunk)
    assert silent_frames >= keepalive_bytes // 1600
    assert [e["text"] for e in of_type(events(out.decode()), "final")] == FINALS


async def test_serve_bodhi_reject_402_makes_the_client_exit_3(cli, speech_wav):
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        "serve",
        "bodhi",
        "--port",
        "0",
        "--reject",
        "402",
        stderr=asyncio.subprocess.PIPE,
        env=CLEAN_ENV,
    )
    try:
        url = await _listening_url(server)
        r = await cli("bodhi", str(speech_wav), "--url", url, env=ENV)
    finally:
        server.terminate()
        await server.wait()
    assert r.code == 3
    assert "insufficient balance" in one_error_line(r.stderr)


async def test_serve_bodhi_refuses_an_unknown_rejection_code(cli):
    r = await cli("serve", "bodhi", "--port", "0", "--reject", "404")
    assert r.code == 2
    assert one_error_line(r.stderr) == "streamcli: error: --reject 404: choose 401, 402 or 403"


async def _listening_url(server: asyncio.subprocess.Process) -> str:
    assert server.stderr is not None
    while line := (await asyncio.wait_for(server.stderr.readline(), 20)).decode():
        if " listening on " in line:
            return line.split(" listening on ")[1].split()[0]
    raise AssertionError("the emulator did not start")
