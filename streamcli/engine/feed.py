"""Audio into sessions, on a clock.

Two ways, both paced by ``audio.pacer.Pacer`` (absolute clock: no drift):
- ``feed``: read one source once, convert it for each session (one per channel with
  ``--split-channels``) and pace them all on one clock. A file waits for a reconnect; live audio
  goes on being captured (the session keeps a backlog).
- ``play``: a ``SharedAudio`` (decoded, resampled and encoded once, shared by every session of a
  load test) into one session on its own clock, started when its first chunk is accepted, so a
  session that waited for a handshake or a seat is never counted as late. Pacing lateness,
  backpressure and reconnect pauses go to the session's ``metrics.SessionRecord``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamcli.audio.convert import ENCODINGS, Chunker, Converter, chunk_bytes_for
from streamcli.audio.pacer import Pacer
from streamcli.audio.sources import AudioSource
from streamcli.engine.session import Session
from streamcli.metrics import SessionRecord

if TYPE_CHECKING:
    import numpy as np


async def feed(
    source: AudioSource,
    sessions: list[Session],
    pacer: Pacer,
    chunk_ms: int,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    on_audio: Callable[[object], None] | None = None,
) -> None:
    """Read the source once, convert per session, pace every session on one clock."""
    converters = {
        s: Converter(source.rate, s.backend.sample_rate, s.backend.encoding, channel=s.channel)
        for s in sessions
    }
    chunkers = {
        s: Chunker(
            chunk_bytes_for(s.backend.sample_rate, s.backend.encoding, chunk_ms),
            1 if s.backend.encoding == "mulaw" else 2,
        )
        for s in sessions
    }
    sent = dict.fromkeys(sessions, 0.0)
    limit_frames = None if duration is None else int(duration * source.rate)
    read_frames = 0
    for s in sessions:
        s.live_input = source.live
    pacer.start()
    loop = asyncio.get_running_loop()

    async def deliver(pending: list[tuple[float, int, Session, bytes]]) -> None:
        for t, _, s, chunk in sorted(pending, key=lambda p: (p[0], p[1])):
            if not source.live:
                await pacer.wait_until(t)
            sessions, before = s.sessions, loop.time()
            await s.offer(chunk)
            if s.sessions != sessions and not source.live and pacer.t0 is not None:
                # A file waited for a reconnect: go on at the pace, do not rush to catch up.
                pacer.t0 += loop.time() - before

    def cut(s: Session, chunks: list[bytes]) -> list[tuple[float, int, Session, bytes]]:
        out = []
        bps = s.backend.sample_rate * (1 if s.backend.encoding == "mulaw" else 2)
        for chunk in chunks:
            out.append((sent[s], id(s), s, chunk))
            sent[s] += len(chunk) / bps
        return out

    # aclosing: a --duration or a stop ends a microphone stream at once, not at garbage collection
    async with contextlib.aclosing(source.blocks()) as blocks:
        async for block in blocks:
            if stop is not None and stop.is_set():
                break
            if limit_frames is not None:
                block = block[: max(0, limit_frames - read_frames)]
            read_frames += len(block)
            if on_audio is not None:
                on_audio(block)
            pending = []
            for s in sessions:
                pending += cut(s, chunkers[s].push(converters[s].process(block)))
            await deliver(pending)
            if all(s.over for s in sessions):
                return
            if limit_frames is not None and read_frames >= limit_frames:
                break
    pending = []
    for s in sessions:
        chunks = chunkers[s].push(converters[s].flush())  # the resampler's tail
        rest = chunkers[s].rest()
        pending += cut(s, chunks + ([rest] if rest else []))
    await deliver(pending)


async def stop_feed(
    source: AudioSource, feeder: asyncio.Task[None], drain: float | None = None
) -> None:
    """Stop a ``feed`` task early: a live source stops capturing and its feed sends what was
    captured (for at most ``drain`` seconds, None: until done); a file is cut where it is.
    The feeder's own exception, if any, stays on the task for the caller."""
    stop_capture = getattr(source, "stop", None)
    if not feeder.done() and source.live and stop_capture is not None:
        stop_capture()  # a live source drains what it captured, then ends
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(feeder), drain)
    if not feeder.done():
        feeder.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await feeder


@dataclass(frozen=True)
class SharedAudio:
    """The input in one backend's wire format, cut into chunks that every session sends."""

    chunks: tuple[bytes, ...]
    starts: tuple[float, ...]  # audio time (seconds) at which each chunk begins
    seconds: float


class Decoder:
    """Blocks of a source in, ``SharedAudio`` (one backend's wire format, in chunks) out."""

    def __init__(
        self, source_rate: int, rate: int, encoding: str, chunk_ms: int, duration: float | None
    ) -> None:
        self.rate, self.encoding = rate, encoding
        self.converter = Converter(source_rate, rate, encoding)
        self.chunker = Chunker(chunk_bytes_for(rate, encoding, chunk_ms), ENCODINGS[encoding])
        self.chunks: list[bytes] = []
        self.limit = None if duration is None else int(duration * source_rate)
        self.read = 0

    def push(self, block: np.ndarray) -> bool:
        """Take a block; False once ``duration`` is reached (the rest is not wanted)."""
        if self.limit is not None:
            block = block[: max(0, self.limit - self.read)]
        self.read += len(block)
        self.chunks += self.chunker.push(self.converter.process(block))
        return self.limit is None or self.read < self.limit

    def finish(self) -> SharedAudio:
        chunks = self.chunks + self.chunker.push(self.converter.flush())
        rest = self.chunker.rest()
        if rest:
            chunks.append(rest)
        bytes_per_second = self.rate * ENCODINGS[self.encoding]
        starts, t = [], 0.0
        for chunk in chunks:
            starts.append(t)
            t += len(chunk) / bytes_per_second
        return SharedAudio(tuple(chunks), tuple(starts), t)


async def decode_once(
    source: AudioSource, rate: int, encoding: str, chunk_ms: int, duration: float | None
) -> SharedAudio:
    decoder = Decoder(source.rate, rate, encoding, chunk_ms, duration)
    async for block in source.blocks():
        if not decoder.push(block):
            break
    return decoder.finish()


async def play(
    session: Session,
    audio: SharedAudio,
    speed: float,
    record: SessionRecord,
    stop: asyncio.Event,
    repeat: int = 1,
) -> None:
    """Stream ``audio`` ``repeat`` times into ``session`` on its own clock, until it ends."""
    pacer = Pacer(speed)
    clock = pacer.clock
    loop = asyncio.get_running_loop()
    period = audio.seconds
    for round_ in range(repeat):
        for chunk, start in zip(audio.chunks, audio.starts, strict=True):
            # Over for good: not ``backend.finished``, which a reconnect may repair (the
            # session then waits in ``offer`` and goes on with a fresh backend).
            if record.ended or record.error is not None or stop.is_set():
                return
            audio_time = round_ * period + start
            if record.audio_t0 is None:
                await session.offer(chunk)  # waits for the protocol to accept audio
                pacer.start()
                record.audio_t0 = pacer.t0
                continue
            record.lateness.add(await pacer.wait_until(audio_time))
            before, sessions = clock(), session.sessions
            # ``offer`` returns at once unless it must wait (a full send queue, a
            # reconnect): a callback that ran meanwhile tells a wait from a GC pause.
            yielded: list[bool] = []
            marker = loop.call_soon(yielded.append, True)
            await session.offer(chunk)
            marker.cancel()
            blocked = clock() - before
            if session.sessions != sessions and pacer.t0 is not None:
                # Waited for a reconnect: go on at the pace from here, as ``feed`` does.
                pacer.t0 += blocked
                record.reconnect_seconds += blocked
            elif yielded:
                record.blocked_sends += 1
                record.blocked_seconds += blocked
