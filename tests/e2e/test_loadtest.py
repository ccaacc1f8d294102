"""Load-test mode (``--concurrency``) against the emulators over loopback: summary and codes."""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import sys
import uuid

import pytest
from conftest import CLEAN_ENV

from streamcli.backends.bodhi import BodhiBackend
from streamcli.backends.vosk import VoskBackend
from streamcli.commands.options import Common
from streamcli.commands.run import run_streaming
from streamcli.emulators.bodhi import BodhiEmulator
from streamcli.emulators.melvin import MelvinEmulator
from streamcli.emulators.vosk import VoskEmulator

from .conftest import KEY

ENV = {"MELVIN_API_KEY": KEY}
SUMMARY_KEYS = {
    "type",
    "backend",
    "sessions",
    "ok",
    "failed",
    "not_started",
    "aborted",
    "failures",
    "concurrency",
    "ramp",
    "repeat",
    "speed",
    "chunk_ms",
    "audio_seconds",
    "wall_seconds",
    "connect",
    "first_partial",
    "first_final",
    "final_latency",
    "seat_wait",
    "pacing_lateness",
    "backpressure",
    "reconnects",
    "max_p95_latency",
    "latency_ok",
    "interrupted",
    "exit_code",
}
STATS = {"count", "p50", "p95", "max"}


def frames_per_session(seconds: float, chunk_ms: int = 100) -> int:
    return -(-round(seconds * 1000) // chunk_ms)  # the last chunk may be short


@pytest.fixture
async def melvin20(script_file):
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, seats=20, rest_port=None)
    await emu.start()
    yield emu
    await emu.stop()


async def test_twenty_melvin_sessions_share_one_input_and_print_one_json_summary(
    cli, melvin20, speech_wav
):
    r = await cli(
        "melvin", str(speech_wav), "--url", melvin20.url, "--concurrency", "20", "--speed", "4",
        "--max-p95-latency", "5", "--json", env=ENV,
    )  # fmt: skip
    assert r.code == 0, r.stderr
    assert len(r.lines) == 1
    summary = json.loads(r.lines[0])
    assert summary.keys() == SUMMARY_KEYS
    assert summary["type"] == "loadtest" and summary["backend"] == "melvin"
    assert (summary["sessions"], summary["ok"], summary["failed"]) == (20, 20, 0)
    assert summary["failures"] == [] and summary["exit_code"] == 0
    assert summary["latency_ok"] is True
    assert summary["audio_seconds"] == pytest.approx(3.8, abs=0.01)
    for key in ("connect", "first_partial", "first_final", "final_latency", "pacing_lateness"):
        assert summary[key].keys() == STATS
        assert summary[key]["p50"] <= summary[key]["p95"] <= summary[key]["max"]
    assert summary["connect"]["count"] == 20
    assert summary["first_partial"]["count"] == summary["first_final"]["count"] == 20
    assert summary["final_latency"]["count"] == 40  # two sentences per session
    assert summary["seat_wait"] == {"count": 0, "p50": None, "p95": None, "max": None}
    assert summary["reconnects"] == 0
    # Every frame but each session's first is paced (the first starts the session's clock).
    assert summary["pacing_lateness"]["count"] == 20 * (frames_per_session(3.8) - 1)
    assert len(melvin20.connections) == 20
    assert all(c.ended == "eof" for c in melvin20.connections)
    assert all(c.audio_seconds == pytest.approx(3.8, abs=0.01) for c in melvin20.connections)


async def test_one_melvin_seat_makes_the_other_sessions_wait_and_reports_it(
    cli, speech_wav, script_file
):
    # A free seat is looked for at each reminder, as the real server does every 10 s.
    emu = MelvinEmulator(
        api_keys=[KEY], script=script_file, seats=1, rest_port=None, reminder_interval=0.2
    )
    await emu.start()
    try:
        r = await cli(
            "melvin", str(speech_wav), "--url", emu.url, "--concurrency", "3", "--ramp", "0.3",
            "--speed", "4", "--json", env=ENV,
        )  # fmt: skip
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["ok"], summary["failed"]) == (3, 0)
    assert [c.waited_for_seat for c in emu.connections] == [False, True, True]
    waits = summary["seat_wait"]
    assert waits["count"] == 2
    # The first session holds the seat for its audio (~0.95 s at 4x) plus Melvin's end phase
    # (~4 s); the third waits for two such sessions and two looks for a seat.
    assert 1.0 < waits["p50"] <= waits["max"] < 12.0
    # The wait is not the sessions' own latency: a seated session goes on as if just begun.
    assert summary["first_final"]["max"] < waits["p50"]
    assert summary["final_latency"]["max"] < waits["p50"]


async def test_repeat_streams_the_input_again_on_one_continuous_timeline(cli, melvin20, speech_wav):
    r = await cli(
        "melvin", str(speech_wav), "--url", melvin20.url, "--concurrency", "2", "--repeat", "2",
        "--speed", "8", "--json", env=ENV,
    )  # fmt: skip
    assert r.code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["audio_seconds"] == pytest.approx(7.6, abs=0.02)
    assert all(c.audio_seconds == pytest.approx(7.6, abs=0.02) for c in melvin20.connections)
    assert summary["final_latency"]["count"] == 2 * 4  # two sentences per pass


async def test_a_wrong_key_fails_every_session_with_exit_3(cli, melvin20, speech_wav):
    r = await cli(
        "melvin", str(speech_wav), "--url", melvin20.url, "--concurrency", "20", "--speed", "4",
        "--json", env={"MELVIN_API_KEY": "wrong"},
    )  # fmt: skip
    assert r.code == 3
    summary = json.loads(r.stdout)
    assert (summary["ok"], summary["failed"], summary["exit_code"]) == (0, 20, 3)
    assert summary["failures"] == [
        {
            "kind": "auth",
            "message": "Melvin-ASR rejected the credentials: Provided api key is invalid",
            "count": 20,
            "exit_code": 3,
        }
    ]
    assert r.stderr.strip().splitlines()[-1] == (
        "streamcli: error: 20 of 20 sessions failed; 20: Melvin-ASR rejected the credentials: "
        "Provided api key is invalid"
    )
    assert "Traceback" not in r.stderr


async def test_a_server_that_drops_every_session_mid_stream_exits_4(cli, speech_wav, script_file):
    emu = MelvinEmulator(
        api_keys=[KEY], script=script_file, seats=5, rest_port=None, fault="drop-after"
    )
    await emu.start()
    try:
        r = await cli(
            "melvin", str(speech_wav), "--url", emu.url, "--concurrency", "5", "--speed", "4",
            "--json", env=ENV,
        )  # fmt: skip
    finally:
        await emu.stop()
    assert r.code == 4, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["ok"], summary["failed"]) == (0, 5)
    assert [(f["kind"], f["count"], f["exit_code"]) for f in summary["failures"]] == [
        ("connection", 5, 4)
    ]


async def test_sessions_reconnect_after_a_drop_and_count_it(cli, speech_wav, script_file):
    if "fault_count" not in inspect.signature(MelvinEmulator).parameters:
        pytest.skip("this Melvin emulator cannot fault only the first connections")
    emu = MelvinEmulator(
        api_keys=[KEY], script=script_file, seats=6, rest_port=None, fault="drop-after",
        fault_count=3,
    )  # fmt: skip
    await emu.start()
    try:
        r = await cli(
            "melvin", str(speech_wav), "--url", emu.url, "--concurrency", "3", "--speed", "4",
            "--reconnect", "1", "--json", env=ENV,
        )  # fmt: skip
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["ok"], summary["failed"], summary["reconnects"]) == (3, 0, 3)
    assert len(emu.connections) == 6
    # Each session's audio went on after its drop: all of it arrived (some of it twice).
    assert sum(c.audio_seconds for c in emu.connections) >= 3 * 3.8 - 0.05
    assert all(c.ended == "eof" for c in emu.connections[3:])


async def test_a_p95_final_latency_above_the_limit_exits_5(cli, melvin20, speech_wav):
    r = await cli(
        "melvin", str(speech_wav), "--url", melvin20.url, "--concurrency", "4", "--speed", "4",
        "--max-p95-latency", "0.001", "--json", env=ENV,
    )  # fmt: skip
    assert r.code == 5, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["ok"], summary["failed"]) == (4, 0)
    assert summary["latency_ok"] is False and summary["max_p95_latency"] == 0.001
    assert "exceeds --max-p95-latency 0.001 s" in r.stderr.splitlines()[-1]


async def test_load_test_rejects_options_it_cannot_honour(cli, speech_wav):
    r = await cli("melvin", str(speech_wav), "--concurrency", "2", "--raw", env=ENV)
    assert r.code == 2
    assert r.stderr.strip() == (
        "streamcli: error: --raw cannot be combined with --concurrency (load-test mode)"
    )


async def test_a_plain_summary_goes_to_stdout_as_json_when_it_is_not_a_terminal(
    cli, melvin20, speech_wav
):
    r = await cli(
        "melvin", str(speech_wav), "--url", melvin20.url, "--concurrency", "2", "--speed", "8",
        env=ENV,
    )  # fmt: skip
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["ok"] == 2


async def test_ctrl_c_ends_every_session_gracefully_and_still_prints_the_summary(
    melvin20, speech_wav
):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamcli", "melvin", str(speech_wav), "--url", melvin20.url,
        "--concurrency", "3", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**CLEAN_ENV, **ENV, "NO_COLOR": "1"},
    )  # fmt: skip
    while sum(c.audio_seconds > 0.3 for c in melvin20.connections) < 3:
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 130, err.decode()
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert (summary["ok"], summary["failed"], summary["exit_code"]) == (3, 0, 130)
    assert all(c.ended == "eof" and c.audio_seconds < 3.0 for c in melvin20.connections)
    assert err.decode().strip().splitlines()[-1] == "streamcli: interrupted"


async def test_the_vosk_command_runs_a_load_test_too(cli, speech_wav, script_file):
    emu = VoskEmulator(script=script_file)
    await emu.start()
    try:
        r = await cli(
            "vosk", str(speech_wav), "--url", emu.url, "--concurrency", "20", "--speed", "4",
            "--json",
        )  # fmt: skip
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["backend"], summary["ok"], summary["failed"]) == ("vosk", 20, 0)
    assert summary["final_latency"]["count"] >= 20
    assert len(emu.connections) == 20


# ---- other backends: the load test in-process (its own event loop in a worker thread) ----------
CUSTOMER = str(uuid.UUID(int=42))


def vosk_case(url: str):
    return "vosk", lambda speaker: VoskBackend(url, 16000, speaker=speaker)


def bodhi_case(url: str):
    return "bodhi", lambda speaker: BodhiBackend(
        url, api_key="k", customer_id=CUSTOMER, model="en-general-v2-16khz", sample_rate=16000,
        speaker=speaker,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("emulator_cls", "case"), [(VoskEmulator, vosk_case), (BodhiEmulator, bodhi_case)]
)
async def test_twenty_sessions_work_with_other_backends(
    emulator_cls, case, speech_wav, script_file, capsys
):
    emu = emulator_cls(script=script_file)
    await emu.start()
    name, factory = case(emu.url)
    common = Common(inputs=[str(speech_wav)], speed=4.0, concurrency=20, json=True)
    try:
        code, _ = await asyncio.to_thread(run_streaming, common, name, factory)
    finally:
        await emu.stop()
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out)
    assert (summary["backend"], summary["sessions"], summary["ok"]) == (name, 20, 20)
    assert summary["final_latency"]["count"] >= 20
    assert summary["first_partial"]["count"] == 20
    assert summary["pacing_lateness"]["count"] == 20 * (frames_per_session(3.8) - 1)
    assert len(emu.connections) == 20


async def test_a_server_that_cannot_be_reached_fails_every_session_with_exit_4(speech_wav, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name, factory = vosk_case(f"ws://127.0.0.1:{port}")
    common = Common(inputs=[str(speech_wav)], concurrency=5, json=True)
    code, _ = await asyncio.to_thread(run_streaming, common, name, factory)
    summary = json.loads(capsys.readouterr().out)
    assert code == 4
    assert (summary["failed"], summary["failures"][0]["kind"]) == (5, "connection")
