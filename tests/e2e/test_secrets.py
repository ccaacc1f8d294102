"""No secret leaks: every backend runs with recognizable secrets in its environment and
``--debug`` on, through success and failure, and every byte it wrote is searched for them.
Also: the plain-text credentials warning, header injection, and path-segment encoding.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import CLEAN_ENV

from streamcli.emulators.veridas import VeridasEmulator

from .backend_matrix import SECRET_VALUES, WEBSOCKET_BACKENDS, args, emulator, env

VERIDAS_SECRETS = {
    "VERIDAS_CLIENT_ID": "veridas-client-id",
    "VERIDAS_CLIENT_SECRET": "VERIDAS-SECRET-5b3d1f7a9c2e4a86",
    "VERIDAS_AUDIOHOOK_API_KEY": "AUDIOHOOK-KEY-8e6c4a2f0d1b3c57",
    "VERIDAS_AUDIOHOOK_SECRET": "SG9va1NlY3JldC0xMjM0NTY3ODkwYWJjZGVmZ2hpams=",
}
ALL_SECRETS = [
    *SECRET_VALUES,
    *(v for k, v in VERIDAS_SECRETS.items() if k != "VERIDAS_CLIENT_ID"),
]
WRONG = "WRONG-SECRET-0f1e2d3c4b5a69788"


def assert_no_secret_in(*texts: str, secrets: list[str] = ALL_SECRETS) -> None:
    for secret in [*secrets, WRONG]:
        for text in texts:
            assert secret not in text, f"{secret!r} leaked:\n{text}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrong_env(backend: str) -> dict[str, str]:
    out = env(backend)
    for key in out:
        if not key.endswith("CUSTOMER_ID"):
            out[key] = WRONG
    return out


def drop_switches(backend: str) -> dict[str, Any]:
    return {
        "melvin": {"fault": "drop-after", "fault_after": 1.0},
        "phebi": {"fail_after": 1.0},
        "bodhi": {"error_after": 1.0},
        "vosk": {},
    }[backend]


@pytest.mark.parametrize("backend", WEBSOCKET_BACKENDS)
async def test_no_secret_appears_anywhere_on_success_or_failure(
    cli, script_file, speech_wav, tmp_path, backend
):
    good, dropping = (
        emulator(backend, script_file),
        emulator(backend, script_file, **drop_switches(backend)),
    )
    await good.start()
    await dropping.start()
    outputs = [tmp_path / f"out.{ext}" for ext in ("txt", "jsonl", "srt", "vtt")]
    files = [a for path in outputs for a in ("-o", str(path))]
    refused = f"ws://127.0.0.1:{free_port()}"
    debug = ("--debug", "--speed", "8")
    try:
        runs = await asyncio.gather(
            cli(
                backend,
                str(speech_wav),
                *args(backend, good.url, *debug, "--json", *files),
                env=env(backend),
            ),
            cli(
                backend,
                str(speech_wav),
                *args(backend, good.url, *debug, "--raw"),
                env=env(backend),
            ),
            cli(backend, str(speech_wav), *args(backend, good.url, *debug), env=wrong_env(backend)),
            cli(
                backend,
                str(speech_wav),
                *args(backend, refused, *debug, "--reconnect", "1"),
                env=env(backend),
            ),
            cli(
                backend,
                str(speech_wav),
                *args(backend, dropping.url, *debug, "--json"),
                env=env(backend),
            ),
        )
    finally:
        await good.stop()
        await dropping.stop()
    success = runs[0]
    assert success.code == 0, success.stderr
    assert "[wire " in success.stderr  # the trace is on
    assert "unencrypted" not in success.stderr  # ws:// to loopback is not worth a warning
    if backend != "vosk":
        assert runs[2].code == 3, runs[2].stderr
    assert runs[3].code == 4, runs[3].stderr
    for r in runs:
        assert "Traceback" not in r.stderr
        assert_no_secret_in(r.stdout, r.stderr)
    assert_no_secret_in(*(path.read_text(encoding="utf-8") for path in outputs))
    if backend in ("melvin", "phebi", "bodhi"):
        secret = next(v for k, v in env(backend).items() if not k.endswith("CUSTOMER_ID"))
        assert secret[:4] + "…" in success.stderr  # masked, still recognizable


URL_PASSWORD = "URLPASS-5e7a9c1b3d2f"
URL_TOKEN = "URLTOKEN-8f6d4b2a0c1e3579"
URL_SECRETS = [URL_PASSWORD, URL_TOKEN]


def with_url_secrets(url: str) -> str:
    """``url`` with a password and a token in its query (a proxy's credentials, say)."""
    p = urlsplit(url)
    return urlunsplit(
        (p.scheme, f"streamer:{URL_PASSWORD}@{p.netloc}", p.path, f"token={URL_TOKEN}&x=1", "")
    )


@pytest.mark.parametrize("backend", WEBSOCKET_BACKENDS)
async def test_a_password_or_token_in_the_url_is_masked_everywhere(
    cli, script_file, speech_wav, tmp_path, backend
):
    emu = emulator(backend, script_file)
    await emu.start()
    jsonl = tmp_path / "out.jsonl"
    debug = ("--debug", "--speed", "8")
    try:
        good, refused, bad_port = await asyncio.gather(
            cli(
                backend,
                str(speech_wav),
                *args(backend, with_url_secrets(emu.url), *debug, "--json", "-o", str(jsonl)),
                env=env(backend),
            ),
            cli(
                backend,
                str(speech_wav),
                *args(backend, with_url_secrets(f"ws://127.0.0.1:{free_port()}"), *debug),
                env=env(backend),
            ),
            cli(
                backend,
                str(speech_wav),
                *args(backend, with_url_secrets("ws://127.0.0.1:99999"), *debug),
                env=env(backend),
            ),
        )
    finally:
        await emu.stop()
    assert good.code == 0, good.stderr
    assert refused.code == 4, refused.stderr
    assert bad_port.code in (2, 4), bad_port.stderr
    # The trace still shows where it connected, with the secret parts masked.
    assert f"streamer:URLP…@127.0.0.1:{urlsplit(emu.url).port}" in good.stderr
    assert "token=URLT…&x=1" in good.stderr
    (session,) = [e for e in map(json.loads, good.stdout.splitlines()) if e["type"] == "session"]
    assert "streamer" not in session["info"]["url"] and "?" not in session["info"]["url"]
    for r in (good, refused, bad_port):
        assert "Traceback" not in r.stderr
        assert_no_secret_in(r.stdout, r.stderr, secrets=[*ALL_SECRETS, *URL_SECRETS])
    assert_no_secret_in(jsonl.read_text(encoding="utf-8"), secrets=URL_SECRETS)


async def test_config_show_masks_the_secrets(cli, tmp_path):
    folder = tmp_path / "streamcli"
    folder.mkdir()
    config = folder / "config.toml"
    config.write_text(
        '[melvin]\napi_key = "CONFIG-SECRET-1a2b3c4d5e6f7a8b"\n'
        f'url = "{with_url_secrets("ws://asr.example.org:8394")}"\n'
        '[phebi]\nsubscription_key = "CONFIG-SECRET-9f8e7d6c5b4a3f2e"\n',
        encoding="utf-8",
    )
    os.chmod(config, 0o600)
    every = {k: v for b in WEBSOCKET_BACKENDS for k, v in env(b).items()}
    results = await asyncio.gather(
        *(
            cli("config", "show", *extra, env={**every, "XDG_CONFIG_HOME": str(tmp_path)})
            for extra in ([], ["--json"], ["melvin"], ["phebi", "--json"], ["veridas"])
        )
    )
    for r in results:
        assert r.code == 0, r.stderr
        assert "Traceback" not in r.stderr
        assert_no_secret_in(
            r.stdout,
            r.stderr,
            secrets=[
                *SECRET_VALUES,
                "CONFIG-SECRET-1a2b3c4d5e6f7a8b",
                "CONFIG-SECRET-9f8e7d6c5b4a3f2e",
                *URL_SECRETS,
            ],
        )
    assert "ws://streamer:URLP…@asr.example.org:8394?token=URLT…&x=1" in results[0].stdout


async def test_veridas_leaks_no_secret_on_success_or_failure(tmp_path, speech_wav):
    emu = VeridasEmulator(
        client_id=VERIDAS_SECRETS["VERIDAS_CLIENT_ID"],
        client_secret=VERIDAS_SECRETS["VERIDAS_CLIENT_SECRET"],
        audiohook_api_key=VERIDAS_SECRETS["VERIDAS_AUDIOHOOK_API_KEY"],
        audiohook_secret=VERIDAS_SECRETS["VERIDAS_AUDIOHOOK_SECRET"],
    )
    await emu.start()
    audio = with_url_secrets(emu.url.replace("http://", "ws://") + "/audiohook")
    common = [
        "--url",
        emu.url,
        "--audio-url",
        audio,
        "--audio-protocol",
        "audiohook",
        "--debug",
        "--duration",
        "1",
        "--speed",
        "4",
        "--model-hash",
        "test-model",
    ]
    wrong = {**VERIDAS_SECRETS, "VERIDAS_CLIENT_SECRET": WRONG}
    try:
        runs = await asyncio.gather(
            veridas(
                "register",
                str(speech_wav),
                *common,
                "--credential-out",
                str(tmp_path / "me.cred"),
                "--json",
                env=VERIDAS_SECRETS,
            ),
            veridas("register", str(speech_wav), *common, env=wrong),
            veridas(
                "register",
                str(speech_wav),
                "--url",
                with_url_secrets(f"http://127.0.0.1:{free_port()}"),
                *common[2:],
                env=VERIDAS_SECRETS,
            ),
        )
    finally:
        await emu.stop()
    assert runs[0].code == 0, runs[0].stderr
    assert runs[1].code == 3, runs[1].stderr
    assert runs[2].code == 4, runs[2].stderr
    for r in runs:
        assert "Traceback" not in r.stderr
        assert_no_secret_in(
            r.stdout,
            r.stderr,
            secrets=[*ALL_SECRETS, *emu.credentials, *emu.issued_tokens, *URL_SECRETS],
        )
    assert "token=URLT…&x=1" in runs[0].stderr  # the audio channel's trace, masked
    # The token request and its answer are traced, the secret and the token masked.
    post = next(line for line in runs[0].stderr.splitlines() if "→ POST" in line)
    assert post.endswith(
        "/socket.io/oauth2/token form client_id=veridas-client-id client_secret=VERI… "
        "grant_type=client_credentials"
    )
    answer = next(line for line in runs[0].stderr.splitlines() if "← HTTP 200" in line)
    assert '"access_token": "' in answer and "…" in answer


async def veridas(*argv: str, env: dict[str, str]) -> Any:
    from conftest import Result

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        "veridas",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**CLEAN_ENV, "NO_COLOR": "1", "XDG_CONFIG_HOME": "/nonexistent", **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Result(proc.returncode or 0, out.decode(), err.decode())


# ---- credentials over plain connections ---------------------------------------------------------
async def test_credentials_over_plain_ws_to_another_host_print_one_warning(cli, speech_wav):
    # 192.0.2.1 (TEST-NET-1) is never this machine; the run fails to connect, after the warning.
    results = await asyncio.gather(
        *(
            cli(
                b,
                str(speech_wav),
                *args(b, "ws://192.0.2.1:9", "--connect-timeout", "0.5"),
                env=env(b),
            )
            for b in WEBSOCKET_BACKENDS
        )
    )
    for backend, r in zip(WEBSOCKET_BACKENDS, results, strict=True):
        assert r.code == 4, (backend, r.stderr)
        warnings = [line for line in r.stderr.splitlines() if "warning" in line]
        if backend == "vosk":  # no credentials: nothing to warn about
            assert warnings == [], r.stderr
        else:
            assert warnings == [
                "streamcli: warning: credentials are sent unencrypted to 192.0.2.1 (ws://): "
                "use wss:// unless this network is trusted"
            ], (backend, r.stderr)
        assert_no_secret_in(r.stdout, r.stderr)


# ---- injection ----------------------------------------------------------------------------------
async def test_a_header_value_with_a_line_break_is_refused_before_connecting(cli, speech_wav):
    port = free_port()
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen()
    listener.setblocking(False)
    evil = "PHEBI-SECRET-2c8e6a4b1d9f7e35\r\nX-Injected: yes"
    bodhi_evil = {**env("bodhi"), "BODHI_API_KEY": "BODHI-SECRET-9a7c5e3b1f2d4c68\nX-Injected: 1"}
    try:
        phebi, bodhi = await asyncio.gather(
            cli(
                "phebi",
                str(speech_wav),
                *args("phebi", f"ws://127.0.0.1:{port}"),
                env={"PHEBI_SUBSCRIPTION_KEY": evil},
            ),
            cli("bodhi", str(speech_wav), *args("bodhi", f"ws://127.0.0.1:{port}"), env=bodhi_evil),
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()
    assert phebi.code == 2, phebi.stderr
    assert phebi.stderr.strip().splitlines() == [
        "streamcli: error: refusing to send the Subscription header: its value contains a "
        "line break or a NUL character"
    ]
    assert bodhi.code == 2, bodhi.stderr
    assert bodhi.stderr.strip().splitlines() == [
        "streamcli: error: refusing to send the x-api-key header: its value contains a "
        "line break or a NUL character"
    ]
    assert_no_secret_in(phebi.stdout, phebi.stderr, bodhi.stdout, bodhi.stderr)
    assert "X-Injected" not in phebi.stderr + bodhi.stderr


async def test_path_segments_from_user_input_are_encoded(cli, script_file, speech_wav):
    emu = emulator("phebi", script_file)
    await emu.start()
    try:
        r = await cli(
            "phebi",
            str(speech_wav),
            "--url",
            emu.url,
            "--project",
            "../../admin?x=1#y",
            "--session",
            "a/b c%2F",
            "--speed",
            "8",
            env=env("phebi"),
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    (conn,) = emu.connections
    assert conn.raw_path == (
        "/sockets/live/..%2F..%2Fadmin%3Fx=1%23y/a%2Fb%20c%252F/respondent"  # "=" may stay
    )
    assert (conn.project, conn.session) == ("../../admin?x=1#y", "a/b c%2F")
