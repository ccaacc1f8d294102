"""A busy Melvin server (issue 22): a session told to wait for a worker seat holds its audio,
learns it is seated from its probe's answer, then streams as if it had just begun -- for one
CLI run, live audio, split channels, a load test, a batch run and Locust users. The emulator
looks for a free seat only at each "waiting" reminder and reads nothing meanwhile, as the real
server does (tests/conformance/test_melvin_real.py runs the real code)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike, tone

from streamcli import events as ev
from streamcli.audio.convert import Converter
from streamcli.backends.melvin import MelvinBackend
from streamcli.emulators.melvin import MelvinEmulator
from streamcli.engine.interrupts import Interrupts
from streamcli.engine.run import run_source
from streamcli.engine.session import Session, SessionOptions

from .conftest import KEY
from .test_reconnect import FakeMic

ENV = {"MELVIN_API_KEY": KEY}
SENTENCES = ["Hello streaming world.", "The second sentence ends here."]


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


async def busy_melvin(script_file: Path, taken: int = 1, **switches) -> MelvinEmulator:
    """An emulator whose seats are all taken (by someone else) until ``release``."""
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, reminder_interval=0.3, **switches)
    await emu.start()
    for _ in range(taken):
        await emu._free_seats.acquire()
    return emu


def release_after(emu: MelvinEmulator, seconds: float, seats: int = 1) -> asyncio.TimerHandle:
    def free() -> None:
        for _ in range(seats):
            emu._free_seats.release()

    return asyncio.get_running_loop().call_later(seconds, free)


def assert_held_until_seated(conn) -> None:
    """Between the notice and the seat the client sent its probe only: what was read before
    the seat is the auth, the frames sent before the notice came (a round trip: a frame or
    two), and the probe, last."""
    assert conn.waited_for_seat and conn.read_before_seat is not None
    before = conn.frames[: conn.read_before_seat]
    assert before[-1] == ("text", "seat"), before
    assert sum(kind == "binary" for kind, _ in before) <= 2, before


async def test_a_file_waits_for_its_seat_then_streams_it_all_on_the_original_timeline(
    cli, speech_wav, script_file
):
    free = MelvinEmulator(api_keys=[KEY], script=script_file)
    await free.start()
    busy = await busy_melvin(script_file)
    try:
        alone = await cli(
            "melvin", str(speech_wav), "--url", free.url, "--speed", "4", "--json", env=ENV
        )
        release_after(busy, 1.5)
        r = await cli(
            "melvin", str(speech_wav), "--url", busy.url, "--speed", "4", "--json", env=ENV
        )
    finally:
        await free.stop()
        await busy.stop()
    assert alone.code == 0 and r.code == 0, r.stderr
    evs = events(r.stdout)
    statuses = [e for e in evs if e["type"] == "status"]
    assert statuses[0] == {
        "type": "status",
        "backend": "melvin",
        "state": "waiting",
        "message": "No transcription workers available. Retrying in 10 seconds",
        "seconds": 0.0,
    }
    assert [s["state"] for s in statuses[1:-1]] == ["waiting"] * (len(statuses) - 2)
    assert statuses[-1]["state"] == "seated" and statuses[-1]["seconds"] >= 0.3  # a reminder
    assert evs[-1]["type"] == "end" and busy.connections[0].ended == "eof"
    # The same audio, the same finals at the same audio times, as without a wait.
    assert busy.connections[0].audio == free.connections[0].audio
    finals = [(e["text"], e["start"], e["end"]) for e in evs if e["type"] == "final"]
    assert finals == [
        (e["text"], e["start"], e["end"]) for e in events(alone.stdout) if e["type"] == "final"
    ]
    assert [f[0] for f in finals] == SENTENCES
    assert_held_until_seated(busy.connections[0])


async def test_live_audio_is_kept_while_waiting_and_all_of_it_is_sent_once_seated(script_file):
    rate = 16000
    samples = speechlike(rate, [1.0, 1.0], pause=1.0)
    emu = await busy_melvin(script_file)
    got: list[ev.Event] = []
    try:
        release_after(emu, 0.5)  # 4 s of audio captured meanwhile (the mic runs at 8x)
        options = SessionOptions(speed=0, timeout=10)
        stream = Session(MelvinBackend(emu.url, KEY), got.append, options)
        outcome = await run_source(FakeMic(samples, rate), [stream], options, Interrupts())
    finally:
        await emu.stop()
    assert outcome.status == 0, [e for e in got if isinstance(e, ev.Error)]
    conn = emu.connections[0]
    assert bytes(conn.audio) == Converter(rate, rate, "s16le").process(samples.reshape(-1, 1))
    assert [e.text for e in got if isinstance(e, ev.Final)] == SENTENCES
    assert [e.state for e in got if isinstance(e, ev.Status)][-1] == "seated"
    assert not [e for e in got if isinstance(e, ev.Warning)]
    assert_held_until_seated(conn)


async def test_split_channels_on_one_seat_the_second_waits_for_the_first(
    cli, make_wav, script_file
):
    # One seat, two channels: the second session's seat is the first one's. Its wait must not
    # stop the first channel's audio (the feeder is shared), or neither would ever end.
    rate = 16000
    left = speechlike(rate, [0.8, 1.0])
    right = tone(440, len(left) / rate, rate, amplitude=0.3)
    wav = make_wav("call.wav", np.stack([left, right], axis=1), rate)
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, seats=1, reminder_interval=0.3)
    await emu.start()
    try:
        r = await cli(
            "melvin",
            str(wav),
            "--url",
            emu.url,
            "--split-channels",
            "--speed",
            "4",
            "--json",
            env=ENV,
            timeout=60,
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    evs = events(r.stdout)
    ends = [e for e in evs if e["type"] == "end"]
    assert sorted(e["speaker"] for e in ends) == ["channel1", "channel2"]
    first, second = emu.connections
    assert not first.waited_for_seat and second.waited_for_seat
    assert_held_until_seated(second)
    stored, _ = sf.read(str(wav), dtype="float32")  # as written: 16-bit
    pcm = [Converter(rate, rate, "s16le").process(stored[:, [c]]) for c in (0, 1)]
    assert {bytes(first.audio), bytes(second.audio)} == set(pcm)
    waits = [e for e in evs if e["type"] == "status" and e["state"] == "seated"]
    assert len(waits) == 1 and waits[0]["seconds"] > 1.0


async def test_no_seat_within_the_seat_timeout_exits_6_with_one_line(cli, speech_wav, script_file):
    emu = await busy_melvin(script_file)
    try:
        r = await cli(
            "melvin", str(speech_wav), "--url", emu.url, "--seat-timeout", "1.5", "--json", env=ENV
        )
    finally:
        await emu.stop()
    assert r.code == 6, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "streamcli: error: no worker seat within 1.5 s: the server is busy (it kept answering "
        "'No transcription workers available'); wait longer with --seat-timeout SECONDS"
    )
    assert "Traceback" not in r.stderr
    assert emu.connections[0].eof_received is False  # nothing but the probe was sent


async def test_twenty_concurrent_sessions_on_four_seats_all_keep_their_session(
    cli, speech_wav, script_file
):
    # Sessions seated more than 10 s after they began used to fail (their end-of-stream,
    # sent while waiting, met the burst's transcription: no export id): 12 of these 20.
    emu = MelvinEmulator(
        api_keys=[KEY], script=script_file, seats=4, reminder_interval=2.0, rest_port=None
    )
    await emu.start()
    try:
        r = await cli(
            "melvin",
            str(speech_wav),
            "--url",
            emu.url,
            "--concurrency",
            "20",
            "--speed",
            "4",
            "--json",
            env=ENV,
            timeout=180,
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["ok"], summary["failed"]) == (20, 0), summary
    assert summary["seat_wait"]["count"] == sum(c.waited_for_seat for c in emu.connections) >= 12
    assert all(c.ended == "eof" and c.audio == emu.connections[0].audio for c in emu.connections)
    assert summary["final_latency"]["count"] == 2 * 20
    # The wait is kept apart: no session's own latency holds it.
    assert summary["final_latency"]["max"] < summary["seat_wait"]["p50"]


async def test_a_batch_run_with_four_jobs_on_one_seat_scores_every_file(
    cli, make_wav, script_file, tmp_path
):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(4):
        sf.write(str(folder / f"take{i}.wav"), speechlike(16000, [0.6, 0.8]), 16000)
    emu = MelvinEmulator(
        api_keys=[KEY], script=script_file, seats=1, reminder_interval=2.0, rest_port=None
    )
    await emu.start()
    try:
        r = await cli(
            "melvin",
            str(folder),
            "--url",
            emu.url,
            "--jobs",
            "4",
            "--speed",
            "4",
            "--json",
            env=ENV,
            timeout=180,
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    results = [e for e in events(r.stdout) if e["type"] == "result"]
    assert sorted(Path(e["input"]).name for e in results) == [f"take{i}.wav" for i in range(4)]
    assert all(e["status"] == "ok" and e["transcript"] == " ".join(SENTENCES) for e in results)
    assert sum(c.waited_for_seat for c in emu.connections) == 3
    assert sorted(e["seat_wait"] is not None for e in results) == [False, True, True, True]
    (summary,) = [e for e in events(r.stdout) if e["type"] == "summary"]
    assert summary["seat_wait"]["count"] == 3 and summary["failed"] == 0
    assert all(c.ended == "eof" for c in emu.connections)


@pytest.mark.slow
async def test_locust_twenty_users_on_a_busy_server_fail_no_session(
    tmp_path, make_wav, script_file, cli, monkeypatch
):
    from .test_locust import master_and_two_workers, read_csv

    monkeypatch.chdir(tmp_path)
    make_wav("talk.wav", speechlike(16000, [0.6, 0.8]), 16000)
    emu = MelvinEmulator(
        api_keys=[KEY], script=script_file, seats=8, reminder_interval=2.0, rest_port=None
    )
    await emu.start()
    try:
        made = await cli(
            "locustfile",
            "melvin",
            "talk.wav",
            "--url",
            emu.url,
            "--speed",
            "2",
            "-o",
            str(tmp_path / "locustfile.py"),
        )
        assert made.code == 0, made.stderr
        with (tmp_path / "locustfile.py").open("a") as f:
            f.write("\nMelvinUser.sessions = 1  # one session a user: all twenty run at once\n")
        master, outputs = await master_and_two_workers(
            tmp_path, ENV, 20, "30s", "--html", "report.html"
        )
    finally:
        await emu.stop()
    errors = "".join(err.decode() for _, err in outputs)
    assert master.returncode == 0, errors  # Locust: 1 when any request failed
    stats = {(r["Type"], r["Name"]): r for r in read_csv(tmp_path / "run_stats.csv")}
    sessions = stats[("melvin", "session")]
    assert (int(sessions["Request Count"]), int(sessions["Failure Count"])) == (20, 0), errors
    waited = sum(c.waited_for_seat for c in emu.connections)
    assert waited >= 12 and int(stats[("melvin", "seat wait")]["Request Count"]) == waited
    assert all(c.ended == "eof" for c in emu.connections)
    # The seat wait is its own figure: the sessions' final latencies hold none of it.
    assert float(stats[("melvin", "final latency")]["Max Response Time"]) < 2000
    # Locust's own HTML report of the run (a Locust run's report): self-contained, drawn.
    from .browser import open_page

    page = await open_page(tmp_path / "report.html")
    assert page["errors"] == [], page["errors"]
    assert not [u for u in page["requests"] if not u.startswith("file:")], page["requests"]
    assert "seat wait" in page["text"] and "final latency" in page["text"]
    assert page["canvases"] > 0
