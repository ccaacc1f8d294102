"""Every fault gets one clear line and its documented exit code, and the finals received before
it are kept: the real CLI against emulators and hand-made broken servers on 127.0.0.1.

Exit codes: 2 bad input, 3 credentials rejected, 4 cannot connect / connection lost,
5 server or protocol error, 6 timeout.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from conftest import speechlike

from streamcli.emulators.melvin import MelvinEmulator

from .backend_matrix import WEBSOCKET_BACKENDS, args, emulator, env, events, of_type
from .tls import make_self_signed, server_context

MELVIN_ENV = env("melvin")
FINALS = ["Hello streaming world.", "The second sentence ends here."]


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("streamcli: error:")]


@pytest.fixture
def four_bursts_wav(make_wav) -> Path:
    """Four voiced bursts at 16 kHz (0.2-1.2, 1.8-2.8, 3.4-4.4, 5.0-6.0 s); the emulator
    confirms them in its passes, one per second of audio."""
    return make_wav("four.wav", speechlike(16000, [1.0, 1.0, 1.0, 1.0]), 16000)


@pytest.fixture
def long_quiet_wav(make_wav) -> Path:
    """150 s of near-silence at 8 kHz: 4.8 MB on the wire, more than the socket buffers hold."""
    data = np.zeros(150 * 8000, np.float32)
    data[::40] = 0.01
    return make_wav("long.wav", data, 8000)


async def melvin_with(script_file: Path, **switches) -> MelvinEmulator:
    emu = emulator("melvin", script_file, **switches)
    await emu.start()
    return emu


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- connect ------------------------------------------------------------------------------------
async def test_connection_refused_exits_4_with_one_line_for_every_backend(cli, speech_wav):
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    results = await asyncio.gather(
        *(cli(b, str(speech_wav), *args(b, url), env=env(b)) for b in WEBSOCKET_BACKENDS)
    )
    for backend, r in zip(WEBSOCKET_BACKENDS, results, strict=True):
        assert r.code == 4, (backend, r.stderr)
        (line,) = error_lines(r.stderr)
        assert line.startswith(f"streamcli: error: cannot connect to {url}"), line
        assert line.endswith(f": Connect call failed ('127.0.0.1', {port})"), line


async def test_unknown_host_exits_4_naming_the_host(cli, speech_wav):
    r = await cli(
        "melvin",
        str(speech_wav),
        "--url",
        "ws://no-such-host.invalid:8394",
        "--connect-timeout",
        "5",
        env=MELVIN_ENV,
    )
    assert r.code == 4, r.stderr
    assert last_line(r.stderr).startswith(
        "streamcli: error: cannot connect to ws://no-such-host.invalid:8394/: "
        "unknown host no-such-host.invalid"
    )


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the openssl command line tool)."""
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_self_signed(tmp_path_factory) -> tuple[Path, Path]:
    """A second one, that the first does not vouch for."""
    return make_self_signed(tmp_path_factory.mktemp("tls-other"))


@pytest.fixture
async def tls_melvin(self_signed, script_file):
    emu = await melvin_with(script_file, ssl_context=server_context(*self_signed), rest_port=0)
    yield emu
    await emu.stop()


async def test_a_self_signed_server_is_refused_with_the_way_out(cli, tls_melvin, speech_wav):
    r = await cli("melvin", str(speech_wav), "--url", tls_melvin.url, env=MELVIN_ENV)
    assert r.code == 4, r.stderr
    assert error_lines(r.stderr) == [
        f"streamcli: error: TLS failure connecting to {tls_melvin.url}/: certificate verify "
        "failed: self-signed certificate (trust the server's certificate with --ca-file PATH, "
        "or skip checks with --insecure)"
    ]
    assert tls_melvin.connections == []


async def test_ca_file_trusts_the_server_and_insecure_skips_the_check_with_a_warning(
    cli, tls_melvin, speech_wav, self_signed
):
    cert, _ = self_signed
    trusted, insecure = await asyncio.gather(
        *(
            cli("melvin", str(speech_wav), "--url", tls_melvin.url, "--speed", "8", *extra,
                env=MELVIN_ENV)
            for extra in (["--ca-file", str(cert)], ["--insecure"])
        )
    )  # fmt: skip
    assert trusted.code == 0, trusted.stderr
    assert trusted.lines == FINALS
    assert "warning" not in trusted.stderr
    assert insecure.code == 0, insecure.stderr
    assert insecure.lines == FINALS
    assert "streamcli: warning: --insecure: TLS certificates are not checked" in (
        insecure.stderr.splitlines()
    )


async def test_the_rest_exports_trust_what_the_session_trusts(
    cli, tls_melvin, speech_wav, self_signed, tmp_path
):
    # The REST app of a TLS server speaks TLS too: --ca-file and --insecure hold for fetching
    # the exports as for the session.
    cert, _ = self_signed
    outs = [tmp_path / "trusted", tmp_path / "insecure"]
    runs = await asyncio.gather(
        *(
            cli("melvin", str(speech_wav), "--url", tls_melvin.url, "--speed", "8",
                "--export", "transcript", "--export-dir", str(out),
                "--rest-url", tls_melvin.rest_url, *extra, env=MELVIN_ENV)
            for out, extra in zip(outs, (["--ca-file", str(cert)], ["--insecure"]), strict=True)
        )
    )  # fmt: skip
    assert tls_melvin.rest_url.startswith("https://")
    for r, out in zip(runs, outs, strict=True):
        assert r.code == 0, r.stderr
        assert r.lines == FINALS
        assert [p.suffix for p in out.iterdir()] == [".json"]


async def test_an_untrusted_rest_certificate_is_one_line_after_the_finals(
    cli, tls_melvin, speech_wav, self_signed, other_self_signed, script_file, tmp_path
):
    cert, _ = self_signed
    other = await melvin_with(
        script_file, ssl_context=server_context(*other_self_signed), rest_port=0
    )
    try:
        r = await cli(
            "melvin", str(speech_wav), "--url", tls_melvin.url, "--speed", "8", "--ca-file",
            str(cert), "--export", "transcript", "--export-dir", str(tmp_path),
            "--rest-url", other.rest_url, env=MELVIN_ENV,
        )  # fmt: skip
    finally:
        await other.stop()
    assert r.code == 4, r.stderr
    assert r.lines == FINALS  # what was received is on stdout before the export failed
    assert error_lines(r.stderr) == [
        f"streamcli: error: TLS failure connecting to {other.rest_url}: certificate verify "
        "failed: self-signed certificate (trust the server's certificate with --ca-file PATH, "
        "or skip checks with --insecure)"
    ]


async def test_a_missing_ca_file_exits_2(cli, tls_melvin, speech_wav, tmp_path):
    r = await cli(
        "melvin",
        str(speech_wav),
        "--url",
        tls_melvin.url,
        "--ca-file",
        str(tmp_path / "none.pem"),
        env=MELVIN_ENV,
    )
    assert r.code == 2, r.stderr
    assert last_line(r.stderr).startswith(f"streamcli: error: --ca-file {tmp_path / 'none.pem'}:")


@pytest.fixture
async def status_server():
    """A server that answers every request with one HTTP status (no WebSocket upgrade)."""
    runners: list[web.AppRunner] = []

    async def start(status: int) -> str:
        async def answer(request: web.Request) -> web.Response:
            return web.Response(status=status, text="go away")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"ws://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


HANDSHAKE_REFUSALS = [
    (401, 3, "Unauthorized"),
    (403, 3, "Forbidden"),
    (404, 5, "Not Found"),
    (500, 4, "Internal Server Error"),
    (503, 4, "Service Unavailable"),
]


async def test_a_handshake_refused_with_an_http_status_gets_its_exit_code(
    cli, status_server, speech_wav
):
    urls = [await status_server(status) for status, _, _ in HANDSHAKE_REFUSALS]
    results = await asyncio.gather(
        *(cli("melvin", str(speech_wav), "--url", url, env=MELVIN_ENV) for url in urls)
    )
    for (status, code, reason), r in zip(HANDSHAKE_REFUSALS, results, strict=True):
        assert r.code == code, (status, r.stderr)
        assert error_lines(r.stderr) == [
            f"streamcli: error: the server refused the connection: HTTP {status} {reason}"
        ]


async def test_a_server_that_never_completes_the_handshake_times_out_with_4(cli, speech_wav):
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # read the upgrade request and never answer it

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        r = await cli(
            "melvin",
            str(speech_wav),
            "--url",
            f"ws://127.0.0.1:{port}",
            "--connect-timeout",
            "1",
            env=MELVIN_ENV,
        )
    finally:
        server.close()
        for w in accepted:
            w.close()
    assert r.code == 4, r.stderr
    assert error_lines(r.stderr) == [
        f"streamcli: error: cannot connect to ws://127.0.0.1:{port}/: "
        "no WebSocket handshake within 1 s"
    ]
    assert accepted and time.monotonic() - started < 8


# ---- mid-stream ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("close-after", "the server closed the connection (code 1000) before the end of the audio"),
        ("drop-after", "the server closed the connection (code 1011) before the end of the audio"),
        ("reset-after", "before the end of the audio"),
    ],
)
async def test_a_connection_lost_mid_stream_exits_4_and_keeps_the_finals(
    cli, script_file, four_bursts_wav, tmp_path, fault, message
):
    emu = await melvin_with(script_file, fault=fault, fault_after=4.2)
    out = tmp_path / "out.txt"
    try:
        r = await cli(
            "melvin",
            str(four_bursts_wav),
            "--url",
            emu.url,
            "--speed",
            "8",
            "--json",
            "-o",
            str(out),
            env=MELVIN_ENV,
        )
    finally:
        await emu.stop()
    assert r.code == 4, r.stderr
    (line,) = error_lines(r.stderr)
    assert message in line
    finals = [e["text"] for e in of_type(events(r.stdout), "final") if not e.get("unconfirmed")]
    assert finals == FINALS  # both sentences were confirmed (the pass at 4 s) before the drop
    assert out.read_text(encoding="utf-8").splitlines()[:2] == FINALS


async def test_phebi_closing_1011_mid_stream_exits_4(cli, script_file, speech_wav):
    emu = emulator("phebi", script_file, fail_after=1.0)
    await emu.start()
    try:
        r = await cli(
            "phebi", str(speech_wav), *args("phebi", emu.url, "--speed", "8"), env=env("phebi")
        )
    finally:
        await emu.stop()
    assert r.code == 4, r.stderr
    assert "the server closed the connection before the end of the audio (code 1011" in (
        last_line(r.stderr)
    )


async def test_a_server_that_stops_reading_is_reported_then_times_out_with_6(
    cli, script_file, long_quiet_wav
):
    """The writer waits (memory stays flat), warns, and gives up after --timeout: a timeout,
    not a lost connection, so it is not retried either."""
    emu = await melvin_with(script_file, fault="freeze-after", fault_after=1.0)
    started = time.monotonic()
    argv = ["--speed", "0", "--heartbeat", "0", "--timeout", "2", "--reconnect", "3"]
    try:
        r = await cli(
            "melvin", str(long_quiet_wav), "--url", emu.url, *argv, env=MELVIN_ENV, timeout=60
        )
    finally:
        await emu.stop()
    assert r.code == 6, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        "streamcli: warning: the server is not reading: nothing could be sent for 1 s ("
    ), r.stderr
    assert error_lines(r.stderr) == [
        "streamcli: error: the server stopped reading: nothing could be sent for 2 s"
    ]
    assert len(emu.connections) == 1
    assert time.monotonic() - started < 20


async def test_a_dead_peer_is_detected_by_heartbeat_with_4(cli, script_file, speech_wav):
    emu = await melvin_with(script_file, fault="freeze-after", fault_after=0.5)
    started = time.monotonic()
    try:
        r = await cli(
            "melvin",
            str(speech_wav),
            "--url",
            emu.url,
            "--speed",
            "1",
            "--heartbeat",
            "0.5",
            env=MELVIN_ENV,
        )
    finally:
        await emu.stop()
    assert r.code == 4, r.stderr
    assert error_lines(r.stderr) == [
        "streamcli: error: connection lost: no answer to WebSocket pings: the server is gone"
    ]
    assert time.monotonic() - started < 10


async def test_silence_after_the_end_times_out_with_6_and_keeps_the_finals(
    cli, script_file, speech_wav, tmp_path
):
    emu = await melvin_with(script_file, fault="silent-after-eof")
    out = tmp_path / "out.srt"
    try:
        r = await cli(
            "melvin",
            str(speech_wav),
            "--url",
            emu.url,
            "--speed",
            "8",
            "--timeout",
            "1",
            "-o",
            str(out),
            env=MELVIN_ENV,
        )
    finally:
        await emu.stop()
    assert r.code == 6, r.stderr
    assert error_lines(r.stderr) == [
        "streamcli: error: no end of session from the server within 1 s after the audio ended"
    ]
    assert r.lines == FINALS
    srt = out.read_text(encoding="utf-8")
    assert all(text in srt for text in FINALS)


# ---- garbage from the server --------------------------------------------------------------------
UNREADABLE = {
    "garbage-text": "ignored a non-JSON message: <html><body>502 Bad Gateway</body></html>",
    "garbage-json": 'ignored a JSON message of the wrong shape: ["not", "an", "object"]',
}


async def test_unreadable_text_is_a_warning_and_the_session_goes_on(cli, script_file, speech_wav):
    emus = [await melvin_with(script_file, fault=f, fault_after=1.0) for f in UNREADABLE]
    try:
        results = await asyncio.gather(
            *(
                cli("melvin", str(speech_wav), "--url", e.url, "--speed", "8", env=MELVIN_ENV)
                for e in emus
            )
        )
    finally:
        for e in emus:
            await e.stop()
    for warning, r in zip(UNREADABLE.values(), results, strict=True):
        assert r.code == 0, r.stderr
        assert r.lines == FINALS
        assert f"streamcli: warning: {warning}" in r.stderr.splitlines()


async def test_binary_where_text_is_expected_exits_5(cli, script_file, speech_wav):
    emu = await melvin_with(script_file, fault="garbage-binary", fault_after=2.2)
    try:
        r = await cli("melvin", str(speech_wav), "--url", emu.url, "--speed", "8", env=MELVIN_ENV)
    finally:
        await emu.stop()
    assert r.code == 5, r.stderr
    assert error_lines(r.stderr) == [
        "streamcli: error: unexpected binary message of 31 bytes from the server"
    ]
    assert r.lines[:1] == FINALS[:1]


async def test_a_20_mb_message_is_refused_with_5_not_a_crash(cli, script_file, speech_wav):
    emu = await melvin_with(script_file, fault="huge-message", fault_after=2.2)
    try:
        r = await cli(
            "melvin", str(speech_wav), "--url", emu.url, "--speed", "8", "--json", env=MELVIN_ENV
        )
    finally:
        await emu.stop()
    assert r.code == 5, r.stderr
    (line,) = error_lines(r.stderr)
    assert line.startswith("streamcli: error: the server sent a message larger than the limit (")
    assert [e["text"] for e in of_type(events(r.stdout), "final")][:1] == FINALS[:1]


# ---- bad input ----------------------------------------------------------------------------------
def wav_header(channels: int, rate: int = 16000, bits: int = 16, data: int = 3200) -> bytes:
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", data)
    )


@pytest.fixture
def bad_inputs(tmp_path: Path, speech_wav: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, the start of the one error line)."""
    (tmp_path / "folder.wav").mkdir()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "truncated.wav").write_bytes(speech_wav.read_bytes()[:30])
    (tmp_path / "notes.wav").write_text("these are notes, not audio\n" * 10)
    (tmp_path / "zero.wav").write_bytes(wav_header(0) + bytes(3200))
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(1).bytes(5000))
    return {
        "missing": (tmp_path / "missing.wav", "no such file"),
        "directory": (tmp_path / "folder.wav", "is a directory"),
        "empty": (tmp_path / "empty.wav", "the file is empty"),
        "truncated": (tmp_path / "truncated.wav", "not a readable audio file"),
        "not audio": (tmp_path / "notes.wav", "not a readable audio file"),
        "zero channels": (tmp_path / "zero.wav", ""),
        "random bytes": (tmp_path / "random.bin", "not a readable audio file"),
    }


async def test_every_unusable_file_exits_2_with_one_line(cli, bad_inputs):
    cases = [c for c in bad_inputs if c != "random bytes"]
    results = await asyncio.gather(
        *(cli("melvin", str(bad_inputs[c][0]), "--url", "ws://127.0.0.1:9") for c in cases)
    )
    for case, r in zip(cases, results, strict=True):
        path, reason = bad_inputs[case]
        lines = r.stderr.strip().splitlines()
        assert r.code == 2 and len(lines) == 1, (case, r.stderr)
        assert lines[0].startswith(f"streamcli: error: {path}: {reason}"), (case, r.stderr)


async def test_random_bytes_exit_2_with_one_line(cli, bad_inputs):
    path, _ = bad_inputs["random bytes"]
    r = await cli("melvin", str(path), "--url", "ws://127.0.0.1:9")
    assert r.code == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"streamcli: error: {path}: not a readable audio file"), r.stderr


async def test_unusable_stdin_exits_2_with_one_line(cli):
    feeds = (b"", b"RIFF\x00\x00", wav_header(0))
    results = await asyncio.gather(
        *(cli("melvin", "-", "--url", "ws://127.0.0.1:9", stdin=data) for data in feeds)
    )
    for data, r in zip(feeds, results, strict=True):
        lines = r.stderr.strip().splitlines()
        assert r.code == 2 and len(lines) == 1, (data, r.stderr)
        assert lines[0].startswith("streamcli: error: stdin"), (data, r.stderr)


ABSURD_OPTIONS = [
    ["--speed", "-1"],
    ["--speed", "1e9"],
    ["--speed", "nan"],
    ["--speed", "fast"],
    ["--chunk-ms", "0"],
    ["--chunk-ms", "999999"],
    ["--timeout", "nan"],
    ["--connect-timeout", "0"],
    ["--heartbeat", "-1"],
    ["--reconnect", "-1"],
    ["--duration", "inf"],
]


async def test_every_absurd_option_exits_2_naming_it(cli, speech_wav):
    # Typer's own usage errors are a small box, not one line (see the report in cli.py).
    results = await asyncio.gather(
        *(cli("melvin", str(speech_wav), "--url", "ws://127.0.0.1:9", *o) for o in ABSURD_OPTIONS)
    )
    for option, r in zip(ABSURD_OPTIONS, results, strict=True):
        assert r.code == 2, (option, r.stderr)
        assert "Traceback" not in r.stderr and option[0] in r.stderr, (option, r.stderr)


async def test_an_unknown_device_exits_2_with_one_line(cli):
    r = await cli("melvin", "--mic", "--device", "no such device 42", "--url", "ws://127.0.0.1:9")
    assert r.code == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamcli: error: "), r.stderr


async def test_a_url_that_is_not_a_websocket_url_exits_2(cli, speech_wav):
    urls = ("http://127.0.0.1:9", "ws://", "ws://127.0.0.1:99999", "127.0.0.1:9")
    results = await asyncio.gather(*(cli("melvin", str(speech_wav), "--url", u) for u in urls))
    for url, r in zip(urls, results, strict=True):
        assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1, (url, r.stderr)
