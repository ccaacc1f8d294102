"""The Locust users' session (``streamcli.locust.GreenletSession``: the backend over
websocket-client in greenlets) against the emulators: it ends as the CLI's session ends --
the same finals, the same end, the same error kind and message for each fault -- and paces
every frame. Each session runs in a subprocess (``greenlet_session.py``): Locust monkey-patches
the standard library with gevent, which this process must not have.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import pytest
from conftest import CLEAN_ENV

from .backend_matrix import WEBSOCKET_BACKENDS, args, emulator, env

HELPER = str(Path(__file__).with_name("greenlet_session.py"))


async def greenlet_session(backend: str, *argv: str, environ: dict[str, str]) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        HELPER,
        backend,
        *argv,
        env={**CLEAN_ENV, "XDG_CONFIG_HOME": "/nonexistent-streamcli-test", **environ},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode in (0, 2), err.decode()
    assert b"Traceback" not in err, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def outcome(events: list[dict]) -> dict:
    """What a session amounts to: its finals and how it ended."""
    finals = [e["text"] for e in events if e["type"] == "final"]
    last = [e for e in events if e["type"] in ("end", "error")][-1]
    end = {"type": last["type"]}
    if last["type"] == "error":
        end |= {"kind": last["kind"], "message": last["message"]}
    return {"finals": finals, "end": end}


@pytest.mark.parametrize("name", WEBSOCKET_BACKENDS)
async def test_a_session_ends_as_the_cli_session_does(name, speech_wav, script_file, cli):
    emu = emulator(name, script_file, **({"seats": 2} if name == "melvin" else {}))
    await emu.start()
    try:
        argv = [str(speech_wav), *args(name, emu.url)]
        events, r = await asyncio.gather(
            greenlet_session(name, *argv, environ=env(name)),
            cli(name, *argv, "--json", env=env(name)),
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    expected = outcome([json.loads(line) for line in r.lines])
    assert outcome(events[:-1]) == expected
    assert expected["finals"]  # the emulator transcribed something
    record = events[-1]
    assert record["ok"] is True and record["finals"] >= 1
    # Every chunk after the first was paced (100 ms chunks), and none late by a second.
    assert record["frames"] == -(-round(record["audio_seconds"] * 1000) // 100) - 1
    assert record["max_lateness"] < 1.0
    assert events[0]["type"] == "session" and "secret" not in json.dumps(events).lower()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("switches", "more", "environ", "kind"),
    [
        ({"fault": "silent-after-eof"}, ["--timeout", "1"], {}, "timeout"),
        ({"fault": "drop-after", "fault_after": 0.5}, [], {}, "connection"),
        ({"fault": "close-without-id"}, [], {}, None),
        ({}, [], {"MELVIN_API_KEY": "wrong-key-0123456789"}, "auth"),
        ({"refuse_first": 2, "refuse_status": 503}, [], {}, "connection"),
        ({"fault": "huge-message", "fault_after": 2.2}, [], {}, "protocol"),
    ],
)
async def test_each_fault_is_the_same_failure_as_in_the_cli(
    switches, more, environ, kind, speech_wav, script_file, cli
):
    emu = emulator("melvin", script_file, seats=2, **switches)
    await emu.start()
    try:
        argv = [str(speech_wav), *args("melvin", emu.url), *more]
        events, r = await asyncio.gather(  # at once: each fault plays on every connection
            greenlet_session("melvin", *argv, environ=env("melvin", **environ)),
            cli("melvin", *argv, "--json", env=env("melvin", **environ)),
        )
    finally:
        await emu.stop()
    expected = outcome([json.loads(line) for line in r.lines])
    assert outcome(events[:-1]) == expected, r.stderr
    if kind is not None:
        assert expected["end"]["kind"] == kind
    assert events[-1]["ok"] is (expected["end"]["type"] == "end")
    assert "wrong-key" not in json.dumps(events)


async def test_nothing_listening_is_a_connection_failure_with_the_cli_words(speech_wav, cli):
    argv = [str(speech_wav), "--url", f"ws://127.0.0.1:{closed_port()}"]
    events, r = await asyncio.gather(
        greenlet_session("melvin", *argv, environ=env("melvin")),
        cli("melvin", *argv, "--json", env=env("melvin")),
    )
    assert r.code == 4
    assert outcome(events[:-1]) == outcome([json.loads(line) for line in r.lines])
    assert events[-1]["ok"] is False and events[-1]["frames"] == 0


async def test_refused_arguments_say_why(speech_wav):
    events = await greenlet_session("melvin", str(speech_wav), "--mic", environ={})
    assert events == [
        {
            "type": "refused",
            "message": "--mic cannot be combined with a Locust user (one file, one session "
            "at a time)",
        }
    ]


async def test_an_input_with_no_audio_is_refused_once_decoded(make_wav):
    import numpy as np

    empty = make_wav("empty.wav", np.zeros(0, np.float32), 16000)
    events = await greenlet_session("melvin", str(empty), environ=env("melvin"))
    assert events == [{"type": "refused", "message": f"{empty}: no audio to stream"}]
