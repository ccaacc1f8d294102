"""Outputs that stop working mid-run: a full disk (``/dev/full``, or a file-size limit that makes
every write past N bytes fail with EFBIG), stdout on a full disk, a credential whose directory
disappears. Each is one line on stderr naming the output, exit 7, and everything else goes on:
no final is lost from stdout (or from the output files when stdout is what failed)."""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CLEAN_ENV, Result

from streamcli.emulators.veridas import VeridasEmulator

from .backend_matrix import emulator, env

OUTPUT_FAILED = 7


async def run(
    *args: str,
    env: dict[str, str],
    max_file_bytes: int | None = None,
    stdout: int | None = None,
    until: Callable[[], bool] | None = None,
    then: Callable[[], None] | None = None,
) -> Result:
    """The CLI in a subprocess; ``max_file_bytes`` caps every file it writes (RLIMIT_FSIZE);
    ``then`` runs once ``until`` holds (polled while the CLI runs)."""

    def limit() -> None:
        if max_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout if stdout is not None else asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**CLEAN_ENV, "NO_COLOR": "1", "XDG_CONFIG_HOME": "/nonexistent", **env},
        preexec_fn=limit,
    )
    if until is not None and then is not None:
        while proc.returncode is None and not until():
            await asyncio.sleep(0.01)
        then()
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Result(proc.returncode or 0, (out or b"").decode(), err.decode())


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("streamcli: error:")]


def finals(stdout: str) -> list[str]:
    return [e["text"] for e in map(json.loads, stdout.splitlines()) if e["type"] == "final"]


@pytest.fixture
async def melvin(script_file):
    emu = emulator("melvin", script_file)
    await emu.start()
    yield emu
    await emu.stop()


def melvin_args(emu, wav: Path, *more: str) -> list[str]:
    return ["melvin", str(wav), "--url", emu.url, "--speed", "8", "--json", *more]


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "srt", "vtt"])
async def test_an_output_file_on_a_full_disk_is_one_line_exit_7_and_stdout_keeps_every_final(
    melvin, speech_wav, fmt
):
    reference = await run(*melvin_args(melvin, speech_wav), env=env("melvin"))
    r = await run(
        *melvin_args(melvin, speech_wav, "-o", "/dev/full", "--format", fmt), env=env("melvin")
    )
    assert reference.code == 0, reference.stderr
    assert r.code == OUTPUT_FAILED, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert errors(r.stderr) == [
        "streamcli: error: cannot write /dev/full: No space left on device "
        "(the results go on to stdout)"
    ]
    assert finals(r.stdout) == finals(reference.stdout) != []


async def test_a_file_size_limit_mid_run_stops_the_file_and_the_saved_audio_not_the_stream(
    melvin, speech_wav, tmp_path
):
    out, audio = tmp_path / "out.jsonl", tmp_path / "take.wav"
    reference = await run(*melvin_args(melvin, speech_wav), env=env("melvin"))
    r = await run(
        *melvin_args(melvin, speech_wav, "-o", str(out), "--save-audio", str(audio)),
        env=env("melvin"),
        max_file_bytes=300,  # the first event fits, the second does not
    )
    assert r.code == OUTPUT_FAILED, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(errors(r.stderr)) == [
        f"streamcli: error: --save-audio {audio}: cannot write it (File too large) "
        "(the results go on to stdout)",
        f"streamcli: error: cannot write {out}: File too large (the results go on to stdout)",
    ]
    assert finals(r.stdout) == finals(reference.stdout) != []
    written = out.read_text(encoding="utf-8").splitlines()
    # Every line up to the limit is whole; the one the disk cut may not be.
    assert written and all(json.loads(line) for line in written[:-1])
    assert json.loads(written[0])["type"] == "session"
    assert out.stat().st_size <= 300 and audio.stat().st_size <= 300


async def test_stdout_on_a_full_disk_is_one_line_and_the_output_file_keeps_every_final(
    melvin, speech_wav, tmp_path
):
    out = tmp_path / "out.jsonl"
    reference = await run(*melvin_args(melvin, speech_wav), env=env("melvin"))
    with open("/dev/full", "wb") as full:
        r = await run(
            *melvin_args(melvin, speech_wav, "-o", str(out)),
            env=env("melvin"),
            stdout=full.fileno(),
        )
    assert r.code == OUTPUT_FAILED, r.stderr
    assert errors(r.stderr) == [
        "streamcli: error: cannot write to standard output: No space left on device "
        "(the output files go on)"
    ]
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
    assert finals(out.read_text(encoding="utf-8")) == finals(reference.stdout) != []


async def test_a_session_error_keeps_its_own_exit_code_over_a_failed_output(speech_wav):
    # Nothing listens: exit 4 (the connection), not 7, though -o /dev/full failed first (vtt
    # writes its header at once).
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = await run(
        "melvin",
        str(speech_wav),
        "--url",
        f"ws://127.0.0.1:{port}",
        "-o",
        "/dev/full",
        "--format",
        "vtt",
        env=env("melvin"),
    )
    assert r.code == 4, r.stderr
    assert errors(r.stderr)[0].startswith("streamcli: error: cannot write /dev/full")
    assert errors(r.stderr)[-1].startswith("streamcli: error: cannot connect")


# ---- the Veridas credential ----------------------------------------------------------------------
CLIENT = {"VERIDAS_CLIENT_ID": "client", "VERIDAS_CLIENT_SECRET": "client-secret-0a9b8c7d6e"}


@pytest.fixture
async def veridas_emu():
    e = VeridasEmulator(
        client_id=CLIENT["VERIDAS_CLIENT_ID"], client_secret=CLIENT["VERIDAS_CLIENT_SECRET"]
    )
    await e.start()
    yield e
    await e.stop()


def register_args(e: VeridasEmulator, wav: Path, out: Path, speed: str) -> list[str]:
    audio = e.url.replace("http://", "ws://") + "/twilio"
    return [
        "veridas",
        "register",
        str(wav),
        "--url",
        e.url,
        "--audio-url",
        audio,
        "--audio-protocol",
        "twilio",
        "--duration",
        "1",
        "--speed",
        speed,
        "--model-hash",
        "test-model",
        "--credential-out",
        str(out),
    ]


def assert_credential_lost(r: Result, e: VeridasEmulator, out: Path, reason: str) -> None:
    assert r.code == OUTPUT_FAILED, r.stderr
    assert "Traceback" not in r.stderr
    assert errors(r.stderr) == [
        f"streamcli: error: cannot write the credential to {out}: {reason} (the voice was "
        "registered, but its credential is lost: register again)"
    ]
    assert r.stdout.startswith("registered: Registration: approved")  # the result is reported
    assert "credential saved" not in r.stdout
    for secret in (*e.credentials, CLIENT["VERIDAS_CLIENT_SECRET"]):
        assert secret not in r.stdout + r.stderr


async def test_a_credential_that_cannot_be_written_is_exit_7_after_the_result(
    veridas_emu, speech_wav, tmp_path
):
    out = tmp_path / "me.cred"
    r = await run(*register_args(veridas_emu, speech_wav, out, "4"), env=CLIENT, max_file_bytes=8)
    assert_credential_lost(r, veridas_emu, out, "File too large")
    assert not out.exists() and list(tmp_path.glob(".streamcli-*")) == []  # no partial file


async def test_a_credential_directory_removed_mid_run_is_exit_7(veridas_emu, speech_wav, tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir()
    out = folder / "me.cred"
    r = await run(
        *register_args(veridas_emu, speech_wav, out, "1"),
        env=CLIENT,
        until=lambda: bool(veridas_emu.consumers),  # streaming: the check at start has passed
        then=lambda: shutil.rmtree(folder),
    )
    assert_credential_lost(r, veridas_emu, out, "No such file or directory")


@pytest.mark.parametrize("target", ["/dev/full", "/dev/stdout"])
async def test_a_credential_out_that_is_not_a_regular_file_is_refused_before_streaming(
    veridas_emu, speech_wav, target
):
    r = await run(*register_args(veridas_emu, speech_wav, Path(target), "4"), env=CLIENT)
    assert r.code == 2, r.stderr
    assert errors(r.stderr) == [f"streamcli: error: --credential-out {target}: not a regular file"]
    assert veridas_emu.consumers == []
