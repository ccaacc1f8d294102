"""Ctrl-C, SIGTERM and a closed stdout: a graceful end that keeps every final, a second Ctrl-C
that aborts, and no BrokenPipe traceback (the real CLI in a subprocess, emulators on loopback).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import CLEAN_ENV, speechlike

from .backend_matrix import args, emulator, env, events, of_type

MELVIN_ENV = env("melvin")


@pytest.fixture
def long_speech_wav(make_wav) -> Path:
    """Twelve voiced bursts, about 20 s: the stream is far from its end when a signal comes."""
    return make_wav("long.wav", speechlike(16000, [1.0] * 12), 16000)


class Running:
    """The CLI in a subprocess whose stdout is read line by line as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *argv: str, env: dict[str, str]) -> Running:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamcli",
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**CLEAN_ENV, "NO_COLOR": "1", "XDG_CONFIG_HOME": "/nonexistent", **env},
        )
        return cls(proc)

    async def until_final(self, timeout: float = 30.0) -> None:
        """Read stdout until the first final arrives."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), deadline - time.monotonic())
            assert line, "stdout ended before the first final"
            self.lines.append(line.decode())
            if json.loads(line)["type"] == "final":
                return

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def finish(self, timeout: float = 30.0) -> tuple[int, list[dict], str]:
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        evs = events("".join(self.lines) + out.decode())
        return self.proc.returncode, evs, err.decode()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_a_signal_ends_gracefully_keeps_the_finals_and_exits_130(
    script_file, long_speech_wav, sig
):
    emu = emulator("melvin", script_file)
    await emu.start()
    try:
        run = await Running.start(
            "melvin",
            str(long_speech_wav),
            *args("melvin", emu.url, "--speed", "4", "--json"),
            env=MELVIN_ENV,
        )
        await run.until_final()
        run.send(sig)
        code, evs, err = await run.finish()
    finally:
        await emu.stop()
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "streamcli: interrupted"
    assert "Traceback" not in err
    # The end-of-stream went out and the server's last results came back before the exit.
    (conn,) = emu.connections
    assert conn.eof_received and conn.ended == "eof"
    # Every final the server sent is on stdout (and what only reached a partial, marked).
    confirmed = [e["text"] for e in of_type(evs, "final") if not e.get("unconfirmed")]
    sent = [f["text"] for f in emu.exports[conn.export_id][0]]
    assert confirmed == sent and sent[0] == "Hello streaming world."
    assert evs[-1]["type"] == "end" and evs[-1]["export_id"] == conn.export_id
    assert conn.audio_seconds < 15  # it stopped early


async def test_a_second_ctrl_c_aborts_when_the_server_never_answers_the_end(
    script_file, long_speech_wav
):
    emu = emulator("melvin", script_file, fault="silent-after-eof")
    await emu.start()
    try:
        run = await Running.start(
            "melvin",
            str(long_speech_wav),
            *args("melvin", emu.url, "--speed", "4", "--json", "--timeout", "60"),
            env=MELVIN_ENV,
        )
        await run.until_final()
        run.send(signal.SIGINT)
        # The graceful end syncs with the server (a few seconds at most), sends eof, and then
        # waits for an answer that never comes.
        for _ in range(100):
            if emu.connections[0].eof_received:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert run.proc.returncode is None
        run.send(signal.SIGINT)
        started = time.monotonic()
        code, evs, err = await run.finish(timeout=10)
        took = time.monotonic() - started
    finally:
        await emu.stop()
    assert code == 130, err
    assert took < 5
    assert "Traceback" not in err
    assert of_type(evs, "final")[0]["text"] == "Hello streaming world."
    assert emu.connections[0].eof_received


async def test_ctrl_c_while_connecting_stops_at_once(speech_wav):
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        run = await Running.start(
            "melvin",
            str(speech_wav),
            "--url",
            f"ws://127.0.0.1:{port}",
            "--json",
            "--connect-timeout",
            "30",
            env=MELVIN_ENV,
        )
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.05)
        run.send(signal.SIGINT)
        started = time.monotonic()
        code, _, err = await run.finish(timeout=10)
    finally:
        server.close()
        for w in accepted:
            w.close()
    assert code == 130, err
    assert time.monotonic() - started < 3
    assert err.strip().splitlines() == ["streamcli: interrupted"]


@pytest.mark.parametrize("mode", ["--json", "plain"])
async def test_a_closed_stdout_ends_quietly(script_file, long_speech_wav, mode):
    emu = emulator("melvin", script_file)
    await emu.start()
    argv = ["melvin", str(long_speech_wav), *args("melvin", emu.url, "--speed", "4")]
    if mode == "--json":
        argv.append("--json")
    command = f"{shlex.quote(sys.executable)} -m streamcli {shlex.join(argv)} | head -1"
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**CLEAN_ENV, **MELVIN_ENV, "NO_COLOR": "1", "XDG_CONFIG_HOME": "/nonexistent"},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await emu.stop()
    assert proc.returncode == 0
    assert len(out.decode().splitlines()) == 1
    assert "Traceback" not in err.decode() and "BrokenPipe" not in err.decode(), err.decode()
    assert "error" not in err.decode()
    assert time.monotonic() - started < 10  # well before the 5 s of paced audio end + 20 s


async def test_two_quick_ctrl_c_abort_and_keep_the_finals(script_file, long_speech_wav):
    emu = emulator("melvin", script_file)
    await emu.start()
    try:
        run = await Running.start(
            "melvin",
            str(long_speech_wav),
            *args("melvin", emu.url, "--speed", "4", "--json"),
            env=MELVIN_ENV,
        )
        await run.until_final()
        run.send(signal.SIGINT)
        run.send(signal.SIGINT)  # a double Ctrl-C at once: abort
        code, evs, err = await run.finish(timeout=10)
    finally:
        await emu.stop()
    assert code == 130, err
    assert "Traceback" not in err
    assert of_type(evs, "final")[0]["text"] == "Hello streaming world."
