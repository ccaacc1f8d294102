"""``--reconnect N``: transient failures are retried with a new session that goes on with the
audio from the drop, on the original timeline; everything else is never retried.

A drop is an emulator switch (Melvin's ``fault_count``, Phebi's ``fail_after``) or, for any
backend, ``DroppingProxy``: a TCP relay in front of an emulator that resets the first
connection once it has carried some audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import speechlike

from streamcli import events as ev
from streamcli.audio.convert import Converter
from streamcli.backends.melvin import MelvinBackend
from streamcli.engine.interrupts import Interrupts
from streamcli.engine.run import run_source
from streamcli.engine.session import Session, SessionOptions
from streamcli.transport.websocket import WebSocketConnection

from .backend_matrix import WEBSOCKET_BACKENDS, args, emulator, env, events, of_type

MELVIN_ENV = env("melvin")
RATE = 16000
PAUSE = 1.5
# speechlike(RATE, [1.0] * 4, pause=1.5): voice at 0.2-1.2, 2.7-3.7, 5.2-6.2 and 7.7-8.7 s.
BURSTS = [(0.2 + i * (1.0 + PAUSE), 1.2 + i * (1.0 + PAUSE)) for i in range(4)]
SENTENCES = ["Hello streaming world.", "The second sentence ends here."]


@pytest.fixture
def spaced_wav(make_wav) -> Path:
    return make_wav("spaced.wav", speechlike(RATE, [1.0] * 4, pause=PAUSE), RATE)


def wire_rate(backend: str) -> int:
    return 8000 if backend == "bodhi" else 16000


def received_pcm(backend: str, conn: Any) -> bytes:
    return bytes(conn.audio)


def assert_on_the_original_timeline(finals: list[dict], bursts: list = BURSTS) -> None:
    """One final per voiced burst, in order; a confirmed one has the burst's times on the
    file's timeline (a tail cut by the drop comes back unconfirmed, without times)."""
    assert len(finals) == len(bursts), finals
    for final, (start, end) in zip(finals, bursts, strict=True):
        if final.get("unconfirmed"):
            continue
        assert abs(final["start"] - start) < 0.1 and abs(final["end"] - end) < 0.1, (final, start)
    assert sum(not f.get("unconfirmed") for f in finals) >= len(bursts) - 1


async def wait_closed(emu: Any) -> None:
    for conn in getattr(emu, "connections", []):
        finished = getattr(conn, "finished", None)
        if finished is not None:
            await asyncio.wait_for(finished.wait(), 10)


class DroppingProxy:
    """A TCP relay to ``port`` that resets its first ``drops`` connections (both sides) once
    ``after_bytes`` bytes went from the client to the server."""

    def __init__(self, port: int, after_bytes: int, drops: int = 1) -> None:
        self.port, self.after_bytes, self.drops = port, after_bytes, drops
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for t in self._tasks:
            t.cancel()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        self.connections += 1
        drop = self.connections <= self.drops
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.port)
        sent = 0

        async def upstream() -> None:
            nonlocal sent
            while data := await client_r.read(4096):
                server_w.write(data)
                sent += len(data)
                if drop and sent >= self.after_bytes:
                    for w in (client_w, server_w):
                        w.transport.abort()  # a TCP reset, as a network failure
                    return
            server_w.close()

        async def downstream() -> None:
            while data := await server_r.read(4096):
                client_w.write(data)
            client_w.close()

        tasks = {asyncio.create_task(upstream()), asyncio.create_task(downstream())}
        self._tasks |= tasks
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)


# ---- every WebSocket backend --------------------------------------------------------------------
@pytest.mark.parametrize("backend", WEBSOCKET_BACKENDS)
async def test_a_dropped_stream_reconnects_and_goes_on_from_the_drop(
    cli, script_file, spaced_wav, backend
):
    reference, faulty = emulator(backend, script_file), emulator(backend, script_file)
    await reference.start()
    await faulty.start()
    rate = wire_rate(backend)
    proxy = DroppingProxy(faulty.port, after_bytes=int(4.4 * rate * 2))  # in the second pause
    await proxy.start()
    try:
        ref, r = await asyncio.gather(
            cli(
                backend,
                str(spaced_wav),
                *args(backend, reference.url, "--speed", "8", "--json"),
                env=env(backend),
            ),
            cli(
                backend,
                str(spaced_wav),
                *args(backend, proxy.url, "--speed", "8", "--json", "--reconnect", "3"),
                env=env(backend),
            ),
        )
        await wait_closed(faulty)
        await wait_closed(reference)
    finally:
        await proxy.stop()
        await faulty.stop()
        await reference.stop()
    assert ref.code == 0, ref.stderr
    assert r.code == 0, r.stderr
    evs = events(r.stdout)
    (status,) = of_type(evs, "status")
    assert status["state"] == "reconnecting"
    assert "reconnecting in" in status["message"] and "(attempt 1 of 3)" in status["message"]
    first, second = of_type(evs, "session")
    resumed_at = second["info"]["resumed_at"]
    assert "resumed_at" not in first["info"] and second["info"]["reconnect"] == 1
    assert 3.7 < resumed_at < 4.5
    # The new session got exactly the audio from the resume point on: nothing lost, no gap.
    whole = received_pcm(backend, reference.connections[0])
    first_conn, second_conn = faulty.connections
    start = round(resumed_at * rate) * 2
    assert received_pcm(backend, second_conn) == whole[start:]
    assert len(received_pcm(backend, first_conn)) <= start + int(0.5 * rate) * 2
    # Times stay on the file's timeline (the emulators' scripts restart with each session).
    assert_on_the_original_timeline(of_type(evs, "final"))
    assert evs[-1]["type"] == "end"


# ---- Melvin: what is retried and what is not ----------------------------------------------------
async def melvin_with(script_file: Path, **switches: Any) -> Any:
    emu = emulator("melvin", script_file, **switches)
    await emu.start()
    return emu


async def test_a_1011_close_is_retried_and_the_finals_keep_their_times(
    cli, script_file, spaced_wav
):
    emu = await melvin_with(script_file, fault="drop-after", fault_after=5.05, fault_count=1)
    try:
        r = await cli(
            "melvin",
            str(spaced_wav),
            "--url",
            emu.url,
            "--speed",
            "8",
            "--json",
            "--reconnect",
            "2",
            env=MELVIN_ENV,
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    evs = events(r.stdout)
    assert [e["state"] for e in of_type(evs, "status")] == ["reconnecting"]
    assert "code 1011" in of_type(evs, "status")[0]["message"]
    first, second = emu.connections
    assert first.ended == "drop-after" and second.ended == "eof"
    assert second.frames[0][0] == "text" and "Authorization" in str(second.frames[0][1])
    assert_on_the_original_timeline(of_type(evs, "final"))
    assert evs[-1]["type"] == "end" and evs[-1]["export_id"] == second.export_id


async def test_a_handshake_answered_503_is_retried(cli, script_file, speech_wav):
    emu = await melvin_with(script_file, refuse_first=2)
    try:
        r = await cli(
            "melvin",
            str(speech_wav),
            "--url",
            emu.url,
            "--speed",
            "8",
            "--json",
            "--reconnect",
            "3",
            env=MELVIN_ENV,
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    statuses = of_type(events(r.stdout), "status")
    assert [s["state"] for s in statuses] == ["reconnecting", "reconnecting"]
    assert "HTTP 503 Service Unavailable" in statuses[0]["message"]
    assert emu.handshakes == 3 and len(emu.connections) == 1
    assert [e["text"] for e in of_type(events(r.stdout), "final")] == SENTENCES


async def test_a_refused_connection_is_retried_n_times_then_exits_4(cli, speech_wav):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = await cli(
        "melvin",
        str(speech_wav),
        "--url",
        f"ws://127.0.0.1:{port}",
        "--reconnect",
        "2",
        env=MELVIN_ENV,
    )
    assert r.code == 4, r.stderr
    lines = r.stderr.strip().splitlines()
    assert [line for line in lines if "reconnecting in" in line] == lines[:2]
    assert "(attempt 1 of 2)" in lines[0] and "(attempt 2 of 2)" in lines[1]
    # Full jitter: attempt n waits uniform(0, min(10, 0.5 * 2**n)) seconds, n from 0.
    delays = [float(line.split("reconnecting in ")[1].split(" s")[0]) for line in lines[:2]]
    assert delays[0] <= 0.5 and delays[1] <= 1.0
    assert lines[2:] == [
        f"streamcli: error: cannot connect to ws://127.0.0.1:{port}/: "
        f"Connect call failed ('127.0.0.1', {port})"
    ]


async def test_rejected_credentials_are_never_retried(cli, script_file, speech_wav):
    emu = await melvin_with(script_file)
    try:
        r = await cli(
            "melvin",
            str(speech_wav),
            "--url",
            emu.url,
            "--reconnect",
            "3",
            env={"MELVIN_API_KEY": "wrong-key"},
        )
    finally:
        await emu.stop()
    assert r.code == 3, r.stderr
    assert len(emu.connections) == 1
    assert "reconnecting" not in r.stderr


async def test_a_server_that_keeps_dropping_exhausts_the_retries(cli, script_file, spaced_wav):
    emu = await melvin_with(script_file, fault="drop-after", fault_after=1.0)
    try:
        r = await cli(
            "melvin",
            str(spaced_wav),
            "--url",
            emu.url,
            "--speed",
            "8",
            "--json",
            "--reconnect",
            "2",
            env=MELVIN_ENV,
        )
    finally:
        await emu.stop()
    assert r.code == 4, r.stderr
    assert len(emu.connections) == 3
    evs = events(r.stdout)
    assert len(of_type(evs, "status")) == 2
    assert [s["info"].get("resumed_at") for s in of_type(evs, "session")][1:] == [
        pytest.approx(0.8, abs=0.15),
        pytest.approx(1.6, abs=0.3),
    ]
    (error,) = of_type(evs, "error")
    assert error["message"].startswith("the server closed the connection (code 1011)")


async def test_a_failure_after_the_end_of_the_audio_is_not_retried(cli, script_file, speech_wav):
    emu = await melvin_with(script_file, fault="close-without-id")
    try:
        r = await cli(
            "melvin",
            str(speech_wav),
            "--url",
            emu.url,
            "--speed",
            "8",
            "--reconnect",
            "3",
            env=MELVIN_ENV,
        )
    finally:
        await emu.stop()
    assert r.code == 5, r.stderr
    assert len(emu.connections) == 1
    assert r.lines == SENTENCES


# ---- live audio: buffered while reconnecting ----------------------------------------------------
class FakeMic:
    """A live source: blocks come on their own clock (``speedup`` times real time)."""

    live = True
    channels = 1
    duration = None
    label = "fake mic"

    def __init__(self, samples: np.ndarray, rate: int, speedup: float = 8.0) -> None:
        self.samples, self.rate, self.speedup = samples, rate, speedup
        self._stopped = False

    async def blocks(self):
        step = self.rate // 10
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for n, i in enumerate(range(0, len(self.samples), step)):
            if self._stopped:
                return
            # A device clock: block n is ready at t0 + its end, whatever the loop did meanwhile.
            await asyncio.sleep(max(0.0, t0 + (n + 1) * 0.1 / self.speedup - loop.time()))
            yield self.samples[i : i + step].reshape(-1, 1)

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        pass


async def run_live(url: str, samples: np.ndarray, outage: float, backlog: float) -> list:
    """Stream ``samples`` live; the second connect attempt takes ``outage`` seconds."""
    got: list[ev.Event] = []
    attempts = 0

    async def slow_second_connect(*a: Any) -> WebSocketConnection:
        nonlocal attempts
        attempts += 1
        if attempts == 2:
            await asyncio.sleep(outage)
        return await WebSocketConnection.open(*a)

    key = MELVIN_ENV["MELVIN_API_KEY"]
    options = SessionOptions(
        speed=0, reconnect=2, reconnect_base=0.01, backlog_seconds=backlog, timeout=10
    )
    stream = Session(
        MelvinBackend(url, key),
        got.append,
        options,
        connect=slow_second_connect,
        factory=lambda: MelvinBackend(url, key),
    )
    outcome = await run_source(FakeMic(samples, RATE), [stream], options, Interrupts())
    assert outcome.status == 0, [e for e in got if isinstance(e, ev.Error)]
    return got


def wire_pcm(samples: np.ndarray) -> bytes:
    return Converter(RATE, RATE, "s16le").process(samples.reshape(-1, 1))


# Live tests: voice at 0.2-1.2, 4.2-5.2, 8.2-9.2 and 12.2-13.2 s; the drop comes at 6.1 s.
LIVE_PAUSE = 3.0
LIVE_BURSTS = [(0.2 + i * (1.0 + LIVE_PAUSE), 1.2 + i * (1.0 + LIVE_PAUSE)) for i in range(4)]


def finals_of(got: list) -> list[dict]:
    return [e.to_dict() for e in got if isinstance(e, ev.Final)]


async def test_live_audio_captured_during_the_outage_is_sent_after_it(script_file):
    samples = speechlike(RATE, [1.0] * 4, pause=LIVE_PAUSE)
    emu = await melvin_with(script_file, fault="drop-after", fault_after=6.05, fault_count=1)
    try:
        got = await run_live(emu.url, samples, outage=0.4, backlog=60)
    finally:
        await emu.stop()
    sessions = [e for e in got if isinstance(e, ev.SessionStarted)]
    resumed_at = sessions[1].info["resumed_at"]
    first, second = emu.connections
    whole = wire_pcm(samples)
    # 0.4 s of outage at 8x is 3.2 s of audio captured meanwhile: all of it arrived, in order.
    assert bytes(second.audio) == whole[round(resumed_at * RATE) * 2 :]
    assert len(first.audio) >= round(resumed_at * RATE) * 2
    assert_on_the_original_timeline(finals_of(got), LIVE_BURSTS)
    assert not [e for e in got if isinstance(e, ev.Warning)]


async def test_a_full_outage_buffer_drops_the_oldest_audio_with_a_warning(script_file):
    samples = speechlike(RATE, [1.0] * 4, pause=LIVE_PAUSE)
    emu = await melvin_with(script_file, fault="drop-after", fault_after=6.05, fault_count=1)
    try:
        got = await run_live(emu.url, samples, outage=0.8, backlog=1.5)
    finally:
        await emu.stop()
    warnings = [e.message for e in got if isinstance(e, ev.Warning)]
    assert warnings == [
        "the reconnect buffer is full (1.5 s of audio): the oldest audio is dropped"
    ]
    _, second = emu.connections
    sessions = [e for e in got if isinstance(e, ev.SessionStarted)]
    resumed_at = sessions[1].info["resumed_at"]
    whole = wire_pcm(samples)
    # 0.8 s of outage at 8x is 6.4 s of audio: only the newest 1.5 s survived, and the new
    # session's times start where that audio was captured, not where the drop was.
    assert bytes(second.audio) == whole[round(resumed_at * RATE) * 2 :]
    assert 9.2 < resumed_at < 12.2
    assert_on_the_original_timeline(finals_of(got), [LIVE_BURSTS[i] for i in (0, 1, 3)])


async def test_export_after_a_reconnect_says_it_holds_the_last_connection(
    cli, script_file, spaced_wav, tmp_path
):
    emu = await melvin_with(
        script_file, fault="drop-after", fault_after=5.05, fault_count=1, rest_port=0
    )
    try:
        r = await cli(
            "melvin",
            str(spaced_wav),
            "--url",
            emu.url,
            "--rest-url",
            emu.rest_url,
            "--speed",
            "8",
            "--json",
            "--reconnect",
            "2",
            "--export",
            "audio",
            "--export-dir",
            str(tmp_path),
            env=MELVIN_ENV,
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    end = events(r.stdout)[-1]
    first, second = emu.connections
    assert first.export_id is None and end["export_id"] == second.export_id
    resumed_at = of_type(events(r.stdout), "session")[1]["info"]["resumed_at"]
    assert end["resumed_at"] == resumed_at > 4.5
    assert (
        f"streamcli: the export {second.export_id} holds the last connection only: the input "
        f"from {resumed_at:g} s on (Melvin keeps nothing of a connection that dropped)"
    ) in r.stderr.splitlines()
    assert (tmp_path / f"{second.export_id}.wav").stat().st_size > 0
