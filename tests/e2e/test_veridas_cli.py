"""``streamcli veridas``: the real CLI (a subprocess) against the emulator over loopback, and the
session in process for the cases that need no CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import stat
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamcli import events as ev
from streamcli.audio.sources import open_source
from streamcli.backends.veridas import RequestSettings, token_from_value
from streamcli.emulators.veridas import VeridasEmulator
from streamcli.engine.session import SessionOptions
from streamcli.exit import ExitStatus
from streamcli.veridas_session import AudiohookSettings, VeridasConfig, run_veridas

CLIENT_ID = "streamcli-test-client"
CLIENT_SECRET = "client-secret-4f9a1c7e2b"
API_KEY = "audiohook-api-key-8d2e6f"
HOOK_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
FAST = ["--duration", "1", "--speed", "4", "--model-hash", "test-model"]  # every run


def _veridas_is_mounted() -> bool:
    from streamcli import cli

    names = [g.name or g.typer_instance.info.name for g in cli.app.registered_groups]
    return "veridas" in names


# ``python -m streamcli veridas`` once the sub-app is mounted; the sub-app itself until then.
PREFIX = (
    [sys.executable, "-m", "streamcli", "veridas"]
    if _veridas_is_mounted()
    else [sys.executable, "-c", "from streamcli.commands.veridas import app; app()"]
)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


async def veridas(command: str, env: dict[str, str] | None = None) -> Run:
    """Run ``streamcli veridas <command>``; the command line is split like a shell would."""
    args = [*shlex.split(command), *FAST]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VERIDAS_", "STREAMCLI_"))}
    full = {**clean, "NO_COLOR": "1", "XDG_CONFIG_HOME": "/nonexistent-streamcli-test"}
    full.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        *PREFIX,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return Run(proc.returncode or 0, out.decode(), err.decode())


def credentials(**extra: str) -> dict[str, str]:
    return {"VERIDAS_CLIENT_ID": CLIENT_ID, "VERIDAS_CLIENT_SECRET": CLIENT_SECRET, **extra}


@pytest.fixture
def voice(tmp_path: Path) -> Path:
    """1.6 s of a voiced tone at 16 kHz (the client resamples to 8 kHz) between short silences."""
    rate = 16000
    t = np.arange(int(1.6 * rate)) / rate
    tone = 0.4 * np.sin(2 * np.pi * 180 * t) + 0.1 * np.sin(2 * np.pi * 360 * t)
    silence = np.zeros(int(0.1 * rate))
    path = tmp_path / "voice.wav"
    sf.write(str(path), np.concatenate([silence, tone, silence]).astype(np.float32), rate)
    return path


@pytest.fixture
async def emu():
    e = VeridasEmulator(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        audiohook_api_key=API_KEY,
        audiohook_secret=HOOK_SECRET,
    )
    await e.start()
    yield e
    await e.stop()


def ws(e: VeridasEmulator, consumer: str) -> str:
    return e.url.replace("http://", "ws://") + "/" + consumer


def target(e: VeridasEmulator, protocol: str) -> str:
    """The options that point the CLI at the emulator and one of its audio consumers."""
    return f"--url {e.url} --audio-url {ws(e, protocol)} --audio-protocol {protocol}"


def assert_no_secrets(run: Run, e: VeridasEmulator, *more: str) -> None:
    text = run.stdout + run.stderr
    for secret in (CLIENT_SECRET, API_KEY, HOOK_SECRET, *e.credentials, *e.issued_tokens, *more):
        assert secret not in text


# ---- register ------------------------------------------------------------------------------------
async def test_register_over_twilio_writes_a_0600_credential_and_never_prints_it(
    emu, voice, tmp_path
):
    cred = tmp_path / "me.cred"
    run = await veridas(
        f"register {voice} {target(emu, 'twilio')} --credential-out {cred} --json",
        env=credentials(),
    )
    assert run.code == 0, run.stderr
    events = run.events()
    assert [e["type"] for e in events][:2] == ["session", "status"]
    assert events[0]["info"]["audio_protocol"] == "twilio"
    assert any(e["type"] == "progress" and e["goal"] == 1.0 for e in events)
    end = events[-1]
    assert end == {
        "type": "end",
        "backend": "veridas",
        "reason": "registered",
        "authenticity": 0.99,
        "voice_audio_collected": end["voice_audio_collected"],
        "content": "Registration: approved",
        "credential_file": str(cred),
    }
    assert end["voice_audio_collected"] >= 1.0
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert cred.read_text() in emu.credentials
    assert_no_secrets(run, emu)
    assert emu.violations == []
    [consumer] = emu.consumers
    assert consumer.messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert consumer.messages[1]["event"] == "start"
    assert consumer.messages[1]["start"]["callSid"] == events[0]["info"]["call_id"]
    assert emu.initializations[0]["data"]["metadata"]["call_id"] == events[0]["info"]["call_id"]


async def test_register_over_audiohook_with_a_signature_and_a_debug_trace_leaks_nothing(
    emu, voice, tmp_path
):
    cred = tmp_path / "me.cred"
    run = await veridas(
        f"register {voice} {target(emu, 'audiohook')} --credential-out {cred} --debug",
        env=credentials(VERIDAS_AUDIOHOOK_API_KEY=API_KEY, VERIDAS_AUDIOHOOK_SECRET=HOOK_SECRET),
    )
    assert run.code == 0, run.stderr
    assert "[wire veridas]" in run.stderr and "[wire audiohook]" in run.stderr
    [consumer] = emu.consumers
    assert consumer.signature_ok is True
    assert [m["type"] for m in consumer.messages] == ["open", "close"]
    assert consumer.close_reason == "disconnect"
    assert emu.violations == []
    assert run.stdout.startswith("registered: Registration: approved")
    assert f"credential saved to {cred}" in run.stdout
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert_no_secrets(run, emu)


async def test_the_signature_covers_the_request_target_as_it_goes_on_the_wire(emu, voice):
    # yarl (under aiohttp) sends "%2F" in a query as "/" and "%7e" as "~": sign those bytes.
    url = ws(emu, "audiohook") + "?tok=abc%2Fdef%2B%3D&x=%7e"
    run = await veridas(
        f"register {voice} --url {emu.url} --audio-url '{url}' --audio-protocol audiohook",
        env=credentials(VERIDAS_AUDIOHOOK_API_KEY=API_KEY, VERIDAS_AUDIOHOOK_SECRET=HOOK_SECRET),
    )
    assert run.code == 0, run.stderr
    [consumer] = emu.consumers
    assert consumer.signature_ok is True
    assert emu.violations == []


async def test_register_without_credential_out_warns_and_prints_no_credential(emu, voice):
    run = await veridas(f"register {voice} {target(emu, 'twilio')}", env=credentials())
    assert run.code == 0, run.stderr
    assert "the credential was not saved" in run.stderr
    assert_no_secrets(run, emu)


async def test_verify_sends_the_stored_credential_and_exits_0_when_accepted(emu, voice, tmp_path):
    cred = tmp_path / "me.cred"
    cred.write_text("stored-voiceprint-0123456789\n")
    emu.credentials["stored-voiceprint-0123456789"] = str(uuid.uuid4())
    run = await veridas(
        f"verify {voice} --credential {cred} {target(emu, 'twilio')} --json", env=credentials()
    )
    assert run.code == 0, run.stderr
    end = run.events()[-1]
    assert (end["reason"], end["verdict"], end["score"]) == (
        "verified",
        "Verification: approved",
        0.99,
    )
    sent = emu.initializations[0]
    assert sent["namespace"] == "/socket.io/verify"
    assert sent["data"]["verify_request"]["credential"] == "stored-voiceprint-0123456789"
    assert_no_secrets(run, emu, "stored-voiceprint-0123456789")


async def test_verify_with_an_unknown_credential_is_rejected_with_exit_5(emu, voice, tmp_path):
    cred = tmp_path / "other.cred"
    cred.write_text("somebody-else-0123456789")
    run = await veridas(
        f"verify {voice} --credential {cred} {target(emu, 'twilio')}", env=credentials()
    )
    assert run.code == ExitStatus.SERVER
    assert "streamcli: error: das-Peak answered result-failure" in run.stderr
    assert "Verification: rejected" in run.stderr


# ---- failures and their exit codes ---------------------------------------------------------------
async def test_rejected_client_credentials_exit_3_with_the_servers_reason(emu, voice):
    run = await veridas(
        f"register {voice} {target(emu, 'twilio')}",
        env=credentials(VERIDAS_CLIENT_SECRET="a-wrong-secret-123"),
    )
    assert run.code == ExitStatus.AUTH
    assert run.stderr.strip().splitlines()[-1] == (
        "streamcli: error: the token endpoint refused the client credentials: HTTP 401 "
        "(invalid_client: Invalid client credentials)"
    )
    assert "a-wrong-secret-123" not in run.stderr
    assert emu.initializations == []


async def test_a_ready_token_the_server_does_not_know_exits_3(emu, voice):
    run = await veridas(
        f"register {voice} {target(emu, 'twilio')}",
        env={"VERIDAS_TOKEN": "Bearer not-a-known-token-xyz"},
    )
    assert run.code == ExitStatus.AUTH
    assert "refused the connection to namespace /socket.io/register" in run.stderr
    assert "not-a-known-token-xyz" not in run.stderr
    assert emu.token_requests == []  # a ready token skips the token request


async def test_a_rejected_registration_exits_5(voice):
    e = VeridasEmulator(reject=True)
    await e.start()
    try:
        run = await veridas(f"register {voice} {target(e, 'audiohook')}", env=credentials())
    finally:
        await e.stop()
    assert run.code == ExitStatus.SERVER
    assert 'das-Peak answered result-failure: {"authenticity":0.41' in run.stderr
    assert "Registration: rejected" in run.stderr


async def test_no_result_within_the_timeout_exits_6(voice):
    e = VeridasEmulator(no_result=True)
    await e.start()
    try:
        run = await veridas(
            f"register {voice} {target(e, 'twilio')} --timeout 0.5", env=credentials()
        )
    finally:
        await e.stop()
    assert run.code == ExitStatus.TIMEOUT
    assert "no result from das-Peak within 0.5 s after the audio ended" in run.stderr


async def test_an_unreachable_audio_consumer_exits_4(emu, voice):
    run = await veridas(
        f"register {voice} --url {emu.url} --audio-url ws://127.0.0.1:9/twilio", env=credentials()
    )
    assert run.code == ExitStatus.CONNECTION
    assert "cannot connect to ws://127.0.0.1:9/twilio" in run.stderr


async def test_an_unreachable_service_exits_4(voice):
    run = await veridas(
        f"register {voice} --url http://127.0.0.1:9 --audio-url ws://127.0.0.1:9/t",
        env={"VERIDAS_TOKEN": "abc"},
    )
    assert run.code == ExitStatus.CONNECTION
    assert run.stderr.startswith("streamcli: error: cannot connect to http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ("", credentials(), "missing --audio-url"),
        ("--audio-url http://x/y", credentials(), "--audio-url 'http://x/y': expected"),
        ("--audio-url ws://x/y", {}, "no credentials"),
        ("--audio-url ws://x/y --credential-out /nonexistent/me.cred", credentials(), "directory"),
        ("--audio-url ws://x/y --call-id abc", credentials(), "not a UUID"),
        (  # a version 7 UUID: the AudioHook reference refuses it
            "--audio-url ws://x/y --call-id 01932c07-2ed4-7e4b-9f1c-5a0d3b8e6f21",
            credentials(),
            "a UUID of version 1 to 5 is needed (version 7 is refused by AudioHook servers)",
        ),
    ],
)
async def test_bad_options_exit_2_before_connecting(voice, args, env, message):
    run = await veridas(f"register {voice} {args}", env=env)
    assert run.code == ExitStatus.USAGE
    assert run.stderr.startswith("streamcli: error: ") and message in run.stderr


async def test_an_unknown_audio_protocol_is_a_usage_error(voice):
    run = await veridas(f"register {voice} --audio-url ws://x/y --audio-protocol sip")
    assert run.code == ExitStatus.USAGE
    assert "'sip'" in run.stderr and "--audio-protocol" in run.stderr


# ---- the session in process ----------------------------------------------------------------------
def config(e: VeridasEmulator, protocol: str, **hook: str) -> VeridasConfig:
    return VeridasConfig(
        url=e.url,
        audio_url=ws(e, protocol),
        request=RequestSettings(
            audio_protocol=protocol, call_id=str(uuid.uuid4()), model_hash="m", duration=1.0
        ),
        token_url=e.url + "/socket.io/oauth2/token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        audiohook=AudiohookSettings(**hook),
    )


async def session(e: VeridasEmulator, cfg: VeridasConfig, voice: Path, timeout: float = 2.0):
    events: list[ev.Event] = []
    options = SessionOptions(speed=4.0, timeout=timeout)
    outcome = await run_veridas(open_source(str(voice)), cfg, options, events.append)
    return outcome.status, events


async def test_a_wrong_audiohook_secret_is_an_auth_failure(emu, voice):
    wrong = "d3Jvbmctc2VjcmV0LWZvci10aGUtaG9vaw=="
    status, events = await session(
        emu, config(emu, "audiohook", api_key=API_KEY, secret=wrong), voice
    )
    assert status == ExitStatus.AUTH
    error = next(e for e in events if isinstance(e, ev.Error))
    assert "refused the credentials (unauthorized: invalid signature)" in error.message
    assert emu.consumers[0].close_reason == "disconnect"


async def test_a_wrong_audiohook_api_key_is_refused_at_the_upgrade(emu, voice):
    status, events = await session(emu, config(emu, "audiohook", api_key="wrong-key-123"), voice)
    assert status == ExitStatus.AUTH
    assert "HTTP 401" in next(e for e in events if isinstance(e, ev.Error)).message


async def test_no_consumer_ready_within_the_timeout_is_a_timeout(voice):
    e = VeridasEmulator(consumer_delay=5.0)
    await e.start()
    try:
        cfg = config(e, "twilio")
        cfg.token = token_from_value("x")
        e.issued_tokens.add("x")
        status, events = await session(e, cfg, voice, timeout=0.3)
    finally:
        await e.stop()
    assert status == ExitStatus.TIMEOUT
    assert events[-1].message == "no info-consumer-ready from das-Peak within 0.3 s"


async def test_progress_is_reported_as_voiced_seconds_toward_the_goal(emu, voice):
    status, events = await session(emu, config(emu, "twilio"), voice)
    assert status == ExitStatus.OK
    progress = [e for e in events if isinstance(e, ev.Progress)]
    first = ev.Progress(backend="veridas", value=0.4, goal=1.0, unit="s", percent=40.0)
    assert progress[0] == first
    assert all(e.backend == "veridas" for e in events)


async def test_audiohook_start_paused_and_repeated_pause_resume_are_each_answered(voice):
    e = VeridasEmulator(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, audiohook_start_paused=True
    )
    await e.start()
    try:
        status, events = await session(e, config(e, "audiohook"), voice)
    finally:
        await e.stop()
    assert status == ExitStatus.OK, events
    assert e.violations == []
    [consumer] = e.consumers
    types = [m["type"] for m in consumer.messages]
    assert types[:5] == ["open", "paused", "paused", "resumed", "resumed"]
    assert consumer.audio_seconds >= 1.0  # the audio came after the resume, none while paused
    states = [x.state for x in events if isinstance(x, ev.Status)]
    assert "audio-paused" in states


async def test_audiohook_without_an_api_key_warns_before_connecting(emu, voice):
    run = await veridas(f"register {voice} {target(emu, 'audiohook')}", env=credentials())
    assert run.stderr.splitlines()[0] == (
        "streamcli: warning: no AudioHook API key: servers refuse a connection without "
        "X-API-KEY (set VERIDAS_AUDIOHOOK_API_KEY)"
    )
    assert run.code == ExitStatus.AUTH  # and this one does refuse it (HTTP 401)


async def test_collected_audio_is_kept_and_an_object_credential_stays_an_object(voice, tmp_path):
    e = VeridasEmulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, credential_objects=True)
    await e.start()
    cred, audio = tmp_path / "me.cred", tmp_path / "collected.ulaw"
    try:
        registered = await veridas(
            f"register {voice} {target(e, 'twilio')} --credential-out {cred} "
            f"--collected-audio-out {audio} --json",
            env=credentials(),
        )
        verified = await veridas(
            f"verify {voice} {target(e, 'twilio')} --credential {cred} --json",
            env=credentials(),
        )
    finally:
        await e.stop()
    assert registered.code == 0, registered.stderr
    stored = json.loads(cred.read_text())
    assert set(stored) == {"voiceprint", "model_hash"}  # the object, as das-Peak sent it
    # result-success's second argument, byte for byte, private like the credential.
    assert audio.read_bytes() == bytes(e.sessions[e.consumers[0].call_id].collected)
    assert stat.S_IMODE(audio.stat().st_mode) == 0o600
    end = registered.events()[-1]
    assert end["collected_audio_file"] == str(audio)
    assert end["collected_audio_bytes"] == audio.stat().st_size > 0
    assert verified.code == 0, verified.stderr  # the emulator takes only the object back
    assert e.initializations[1]["data"]["verify_request"]["credential"] == stored
    assert e.violations == []
    for run in (registered, verified):
        assert stored["voiceprint"] not in run.stdout + run.stderr


async def test_no_collected_audio_with_the_result_is_a_warning(emu, voice, tmp_path):
    emu.collected_audio_argument = False
    audio = tmp_path / "collected.ulaw"
    run = await veridas(
        f"register {voice} {target(emu, 'twilio')} --collected-audio-out {audio}",
        env=credentials(),
    )
    assert run.code == 0, run.stderr
    assert (
        f"streamcli: warning: das-Peak sent no collected audio with its result: {audio} was "
        "not written"
    ) in run.stderr.splitlines()
    assert not audio.exists()
