"""The Veridas fault matrix: every way the token endpoint, the Socket.IO signalling and the audio
consumer can fail, through the real CLI over loopback against the emulator (``fault=``). Each
case: one error line naming what failed, its documented exit code, no traceback, and no secret
(client secret, token, credential) anywhere in the output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import socket
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web

from streamcli.emulators.veridas import VeridasEmulator

from .tls import make_self_signed, server_context

CLIENT_ID = "fault-client"
CLIENT_SECRET = "fault-client-secret-6b1d9e3f"
CREDENTIALS = {"VERIDAS_CLIENT_ID": CLIENT_ID, "VERIDAS_CLIENT_SECRET": CLIENT_SECRET}
AUTH, CONNECTION, SERVER, USAGE = 3, 4, 5, 2


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("streamcli: error:")]


async def veridas(args: str, env: dict[str, str] | None = None) -> Run:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VERIDAS_", "STREAMCLI_"))}
    full = {**clean, "NO_COLOR": "1", "XDG_CONFIG_HOME": "/nonexistent", **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        "veridas",
        "register",
        *shlex.split(args),
        "--model-hash",
        "m",
        "--duration",
        "1",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Run(proc.returncode or 0, out.decode(), err.decode())


@pytest.fixture
def voice(tmp_path):
    rate = 16000
    t = np.arange(int(2.0 * rate)) / rate
    path = tmp_path / "voice.wav"
    sf.write(str(path), (0.4 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), rate)
    return path


async def emulator(**switches) -> VeridasEmulator:
    e = VeridasEmulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **switches)
    await e.start()
    return e


def audio_url(e: VeridasEmulator, protocol: str) -> str:
    return e.url.replace("http://", "ws://") + f"/{protocol}"


def assert_clean(run: Run, e: VeridasEmulator | None = None) -> None:
    assert "Traceback" not in run.stderr
    secrets = [CLIENT_SECRET, *(e.issued_tokens if e else ()), *(e.credentials if e else ())]
    for secret in secrets:
        assert secret not in run.stdout + run.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MATRIX = [
    ("token-500", "twilio", CONNECTION,
     "the token endpoint failed: HTTP 500 (upstream identity provider unavailable)"),
    ("token-not-json", "twilio", SERVER,
     "the token endpoint answered without an access_token: its answer is not JSON (<html><body>"
     "Welcome</body></html>); check --token-url"),
    ("refuse-namespace", "twilio", SERVER,
     "the server refused the connection to namespace /socket.io/register: namespace closed for "
     "maintenance (check --namespace)"),
    ("disconnect-before-ready", "twilio", CONNECTION,
     "das-Peak closed the signalling connection before a result (server disconnect)"),
    ("disconnect-mid-audio", "twilio", CONNECTION,
     "das-Peak closed the signalling connection before a result (server disconnect)"),
    ("disconnect-mid-audio", "audiohook", CONNECTION,
     "das-Peak closed the signalling connection before a result (server disconnect)"),
    ("failure-no-payload", "twilio", SERVER, "das-Peak answered result-failure without a payload"),
    ("consumer-401", "twilio", AUTH,
     "the audio consumer {audio} refused the connection: HTTP 401 Unauthorized"),
    ("consumer-401", "audiohook", AUTH,
     "the audio consumer {audio} refused the connection: HTTP 401 Unauthorized"),
    ("consumer-404", "twilio", SERVER,
     "the audio consumer {audio} refused the connection: HTTP 404 Not Found"),
    ("consumer-drop", "twilio", CONNECTION,
     "the audio consumer closed the connection (code 1011, consumer failure)"),
    ("consumer-drop", "audiohook", CONNECTION,
     "the audio consumer closed the connection (code 1011, consumer failure)"),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "protocol", "code", "message"), MATRIX)
async def test_each_fault_is_one_line_and_its_exit_code(voice, fault, protocol, code, message):
    e = await emulator(fault=fault)
    audio = audio_url(e, protocol)
    try:
        run = await veridas(
            f"{voice} --url {e.url} --audio-url {audio} --audio-protocol {protocol} --speed 4 "
            "--timeout 10",
            env={**CREDENTIALS, "VERIDAS_AUDIOHOOK_API_KEY": "hook-key-0123456789"},
        )
    finally:
        await e.stop()
    assert run.code == code, run.stderr
    assert run.errors == ["streamcli: error: " + message.format(audio=audio)]
    assert "all audio sent" not in run.stderr  # the audio was cut, not all sent
    assert_clean(run, e)


async def test_a_second_argument_on_result_success_is_taken_in_stride(voice, tmp_path):
    e = await emulator()  # sends the collected audio as the second argument
    try:
        run = await veridas(
            f"{voice} --url {e.url} --audio-url {audio_url(e, 'twilio')} --speed 4 --json",
            env=CREDENTIALS,
        )
    finally:
        await e.stop()
    assert run.code == 0, run.stderr
    assert run.errors == []
    assert_clean(run, e)


async def test_a_token_without_token_type_is_sent_as_bearer_with_a_warning(voice):
    e = await emulator(fault="token-no-type")
    try:
        run = await veridas(
            f"{voice} --url {e.url} --audio-url {audio_url(e, 'twilio')} --speed 4",
            env=CREDENTIALS,
        )
    finally:
        await e.stop()
    assert run.code == 0, run.stderr
    assert (
        "streamcli: warning: the token endpoint sent no token_type: sending a Bearer token"
        in run.stderr.splitlines()
    )
    assert e.connections[0]["authorization"].startswith("Bearer ")
    assert_clean(run, e)


async def test_an_unreachable_token_endpoint_exits_4(voice):
    port = free_port()
    run = await veridas(
        f"{voice} --url http://127.0.0.1:{port} --audio-url ws://127.0.0.1:{port}/twilio",
        env=CREDENTIALS,
    )
    assert run.code == CONNECTION, run.stderr
    assert run.errors == [
        f"streamcli: error: cannot get a token from http://127.0.0.1:{port}/socket.io/oauth2/"
        f"token: Connect call failed ('127.0.0.1', {port})"  # as for every other backend
    ]
    assert_clean(run)


async def test_a_wrong_socketio_path_hints_the_option(voice):
    e = await emulator()
    try:
        run = await veridas(
            f"{voice} --url {e.url} --socketio-path not-socket-io "
            f"--audio-url {audio_url(e, 'twilio')}",
            env=CREDENTIALS,
        )
    finally:
        await e.stop()
    assert run.code == SERVER, run.stderr
    assert run.errors == [
        f"streamcli: error: the Socket.IO server {e.url} refused the connection: HTTP 404 Not "
        "Found (check --socketio-path, now 'not-socket-io')"
    ]
    assert_clean(run, e)


async def test_a_token_with_a_line_break_is_refused_before_connecting(voice):
    e = await emulator()
    try:
        run = await veridas(
            f"{voice} --url {e.url} --audio-url {audio_url(e, 'twilio')}",
            env={"VERIDAS_TOKEN": "Bearer abc\r\nX-Injected: 1"},
        )
    finally:
        await e.stop()
    assert run.code == USAGE, run.stderr
    assert run.errors == [
        "streamcli: error: refusing to send the Authorization header: its value contains a line "
        "break or a NUL character"
    ]
    assert e.connections == []  # nothing reached the Socket.IO server
    assert "X-Injected" not in run.stderr


async def test_credentials_over_plain_http_to_another_host_get_one_warning(voice):
    # 192.0.2.1 (TEST-NET-1) is never this machine: the warning, then a connect failure.
    run = await veridas(
        f"{voice} --url http://192.0.2.1:9 --audio-url ws://192.0.2.1:9/audiohook "
        "--audio-protocol audiohook --connect-timeout 0.5",
        env={**CREDENTIALS, "VERIDAS_AUDIOHOOK_API_KEY": "hook-key-0123456789"},
    )
    assert run.code == CONNECTION, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "unencrypted" in line]
    assert warnings == [
        "streamcli: warning: credentials are sent unencrypted to 192.0.2.1 (http://): use "
        "https:// unless this network is trusted",
        "streamcli: warning: credentials are sent unencrypted to 192.0.2.1 (ws://): use wss:// "
        "unless this network is trusted",
    ]
    assert_clean(run)


# ---- reconnect: retried before the session exists, never after -----------------------------------
async def test_reconnect_retries_a_transient_failure_before_the_session_starts(voice):
    runs, emulators = [], []
    for extra in ("", "--reconnect 2"):
        e = await emulator(fault="token-500-once")
        emulators.append(e)
        try:
            runs.append(
                await veridas(
                    f"{voice} --url {e.url} --audio-url {audio_url(e, 'twilio')} --speed 4 "
                    + extra,
                    env=CREDENTIALS,
                )
            )
        finally:
            await e.stop()
    without, retried = runs
    assert without.code == CONNECTION, without.stderr
    assert retried.code == 0, retried.stderr
    retry_lines = [line for line in retried.stderr.splitlines() if "retrying in" in line]
    assert len(retry_lines) == 1, retried.stderr
    assert retry_lines[0].startswith("streamcli: the token endpoint failed: HTTP 500")
    assert retry_lines[0].endswith("(1 of 2)")
    assert len(emulators[1].token_requests) == 2  # the one that failed, the one that did not
    assert_clean(retried, emulators[1])


async def test_reconnect_never_restarts_a_session_that_began(voice):
    e = await emulator(fault="disconnect-mid-audio")
    try:
        run = await veridas(
            f"{voice} --url {e.url} --audio-url {audio_url(e, 'twilio')} --speed 4 --reconnect 3",
            env=CREDENTIALS,
        )
    finally:
        await e.stop()
    assert run.code == CONNECTION, run.stderr
    assert len(e.initializations) == 1  # das-Peak cannot resume a session: no second one
    assert_clean(run, e)


# ---- heartbeat -----------------------------------------------------------------------------------
class FreezingProxy:
    """A TCP proxy that can stop forwarding both ways without closing anything: a dead peer."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while not self.frozen.is_set():
                    data = await src.read(65536)
                    if not data or self.frozen.is_set():
                        break
                    dst.write(data)
                    await dst.drain()
            if not self.frozen.is_set():
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        await self.frozen.wait()  # hold the sockets open, silent
        writer.close()
        up_writer.close()

    async def stop(self) -> None:
        self.frozen.set()
        if self.server is not None:
            self.server.close()


async def test_heartbeat_finds_a_dead_signalling_peer(voice):
    e = await emulator(no_result=True)  # without the heartbeat: a timeout (6), much later
    proxy = FreezingProxy(e.port)
    await proxy.start()

    async def freeze_once_streaming() -> None:
        while not e.consumers:
            await asyncio.sleep(0.02)
        proxy.frozen.set()

    freezer = asyncio.create_task(freeze_once_streaming())
    try:
        run = await veridas(
            f"{voice} --url http://127.0.0.1:{proxy.port} --audio-url {audio_url(e, 'twilio')} "
            "--speed 1 --heartbeat 0.5 --timeout 30",
            env=CREDENTIALS,
        )
    finally:
        freezer.cancel()
        await proxy.stop()
        await e.stop()
    assert run.code == CONNECTION, run.stderr
    assert run.errors[0].startswith(
        "streamcli: error: das-Peak closed the signalling connection before a result"
    )
    assert_clean(run, e)


# ---- TLS ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def untrusted(self_signed):
    """An HTTPS server with a self-signed certificate (whatever it would answer)."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(*self_signed))
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


UNTRUSTED = (
    "certificate verify failed: self-signed certificate (trust the server's certificate with "
    "--ca-file PATH, or skip checks with --insecure)"
)


async def test_an_untrusted_token_endpoint_is_the_tls_line_of_every_backend(voice, untrusted):
    run = await veridas(
        f"{voice} --url {untrusted} --audio-url ws://127.0.0.1:9/twilio", CREDENTIALS
    )
    assert run.code == CONNECTION, run.stderr
    assert run.errors == [
        f"streamcli: error: TLS failure connecting to {untrusted}/socket.io/oauth2/token: "
        + UNTRUSTED
    ]
    assert_clean(run)


async def test_an_untrusted_signalling_server_is_the_tls_line_and_not_retried(voice, untrusted):
    e = await emulator()
    try:
        run = await veridas(
            f"{voice} --url {untrusted} --token-url {e.url}/socket.io/oauth2/token "
            f"--audio-url {audio_url(e, 'twilio')} --reconnect 2",
            env=CREDENTIALS,
        )
    finally:
        await e.stop()
    assert run.code == CONNECTION, run.stderr
    assert run.errors == [f"streamcli: error: TLS failure connecting to {untrusted}: " + UNTRUSTED]
    assert "retrying" not in run.stderr  # a certificate does not change on a second try
    assert_clean(run, e)
