"""What a busy Melvin-ASR server costs a session (issue 22): the time to a worker seat, the end
phase (from when the last audio was due to the end of session) and the whole session, for
sessions that found a seat and ones that waited, against the same session on an idle server.

    python bench/seats.py                      # the emulator: 2 seats, reminders every 10 s
    python bench/seats.py --url ws://HOST:8394 # a real server (MELVIN_API_KEY; its own seats)

Busy: ``--sessions`` real-time sessions at once, and one more ``--late`` seconds later (the
colleague who starts a run while two are streaming). Every session streams the same
``--seconds`` of speech-like audio through the engine (``loadtest.play_job``), as
``--concurrency`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, script_file, speech_like_wav

from streamcli.audio.sources import open_source
from streamcli.backends.melvin import MelvinBackend
from streamcli.emulators.melvin import MelvinEmulator
from streamcli.engine.feed import SharedAudio, decode_once
from streamcli.engine.interrupts import Interrupts
from streamcli.engine.run import PlayJob, Schedule, run_sessions
from streamcli.engine.session import SessionOptions
from streamcli.loadtest import play_job
from streamcli.metrics import SessionRecord

KEY = "bench-key-0123456789"


@dataclass
class Late:
    """A job that starts ``delay`` seconds after the others."""

    job: PlayJob
    delay: float

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(self.delay)
        await self.job.run(stop)

    def abort(self) -> None:
        self.job.abort()


async def sessions(
    url: str, key: str, audio: SharedAudio, count: int, late: float | None
) -> list[SessionRecord]:
    options = SessionOptions(speed=1.0, timeout=60)
    records = [SessionRecord(index=i, speed=1.0) for i in range(count + (late is not None))]
    jobs: list = [
        play_job(MelvinBackend(url, key), r, audio, options, 1, None) for r in records[:count]
    ]
    if late is not None:
        jobs.append(Late(play_job(MelvinBackend(url, key), records[-1], audio, options, 1, None),
                         late))  # fmt: skip
    await run_sessions(jobs, Schedule(), Interrupts())
    return records


def row(label: str, records: list[SessionRecord], seconds: float) -> str:
    def figure(values: list[float]) -> str:
        if not values:
            return "—"
        return f"{median(values):5.1f} ({min(values):.1f}–{max(values):.1f})"

    ok = [r for r in records if r.ok]
    seated = [r.seat_wait for r in ok if r.seat_wait is not None]
    ends = [e for r in ok if (e := r.end_phase(seconds)) is not None]
    whole = [r.ended_at - r.connect_started for r in ok if r.ended_at and r.connect_started]
    return (
        f"| {label} | {len(ok)}/{len(records)} | {len(seated)} | {figure(seated)} | "
        f"{figure(ends)} | {figure(whole)} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running Melvin server (default: the emulator)")
    parser.add_argument("--seats", type=int, default=2, help="the emulator's worker seats")
    parser.add_argument("--reminder", type=float, default=10.0, help="the emulator's reminders")
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--late", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.2)
    args = parser.parse_args()

    source = open_source(str(speech_like_wav(args.seconds)))
    audio = await decode_once(source, 16000, "s16le", 100, None)
    source.close()
    emulator = None
    url, key = args.url, os.environ.get("MELVIN_API_KEY", KEY)
    if url is None:
        emulator = MelvinEmulator(
            api_keys=[key], seats=args.seats, script=script_file(), rest_port=None,
            reminder_interval=args.reminder,
        )  # fmt: skip
        await emulator.start()
        url = emulator.url
    try:
        idle = await sessions(url, key, audio, 1, None)
        busy = await sessions(url, key, audio, args.sessions, args.late)
    finally:
        if emulator is not None:
            await emulator.stop()
    server = args.url or f"the emulator ({args.seats} seats, reminders every {args.reminder:g} s)"
    print(f"# {machine()}")
    print(f"# {audio.seconds:.1f} s of audio at real time; {server}")
    print("| run | ok | waited | seat wait s, median (min–max) | end phase s | session s |")
    print("|---|---|---|---|---|---|")
    print(row("idle: one session", idle, audio.seconds))
    print(row(f"busy: {args.sessions} at once + 1 at {args.late:g} s", busy, audio.seconds))
    waited = [r for r in busy if r.seat_wait is not None]
    print(row("busy: the ones that waited", waited, audio.seconds))


if __name__ == "__main__":
    asyncio.run(main())
