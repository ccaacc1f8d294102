"""The emulators' recognizers behind one async interface, and the pool that runs the real one.

Every emulator stream holds a ``Recognition``: ``await feed(pcm)`` returns the segments that
ended (timed words), ``await flush()`` the one still open at the end; ``current_partial()``,
``open_span()``, ``seconds`` and ``finals`` read the state as of the last call. Two kinds:
- ``script``: ``scripted.ScriptedRecognizer``, in the event loop (exact, reproducible words);
- ``pocketsphinx``: ``sphinx.SphinxRecognizer`` in a worker process of the emulator's
  ``RecognizerPool`` (one process per core, started with the emulator). Decoding holds the
  GIL for tens of milliseconds a chunk, so in a thread it would stall the emulator's loop; in
  a process the loop stays free for the protocol (reminders, seats, faults, pings) whatever
  the load. Each stream stays on one worker, which keeps its decoder (and gives it to the
  next stream when this one closes: making one takes 0.4 s). When more streams are open than
  the workers can recognize in real time, the pool says so once on stderr; results then lag,
  nothing fails.

The worker speaks length-prefixed pickles on its stdin/stdout (``python -m
streamcli.emulators.recognition``): requests ``(stream, op, args)``, one reply each, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from streamcli.emulators.scripted import ScriptedRecognizer, ScriptWord

KINDS = ("script", "pocketsphinx")
Kind = Literal["script", "pocketsphinx"]
REALTIME_STREAMS_PER_WORKER = 3  # measured: one core decodes about 3 real-time streams
_HEADER = struct.Struct("!I")


def resolve_kind(kind: str, script: object | None) -> Kind:
    """``auto``: PocketSphinx when it is installed and no script asks for exact words."""
    from streamcli.emulators import sphinx

    if kind == "auto":
        return "pocketsphinx" if script is None and sphinx.available() else "script"
    if kind == "pocketsphinx" and not sphinx.available():
        raise RuntimeError(sphinx.MISSING)
    if kind not in KINDS:
        raise ValueError(f"unknown recognizer {kind!r}; choose from {', '.join(KINDS)}")
    return kind  # type: ignore[return-value]


class Recognition:
    """One stream's recognizer, as an emulator uses it."""

    finals: list[list[ScriptWord]]
    min_pause: float

    async def feed(self, pcm: np.ndarray) -> list[list[ScriptWord]]:
        raise NotImplementedError

    async def flush(self) -> list[ScriptWord]:
        raise NotImplementedError

    def current_partial(self) -> list[str]:
        raise NotImplementedError

    def open_span(self) -> tuple[float, float] | None:
        raise NotImplementedError

    @property
    def seconds(self) -> float:
        raise NotImplementedError

    def close(self) -> None:
        """The stream is over: give back what it holds."""


class ScriptedRecognition(Recognition):
    """The scripted recognizer, called directly (it is cheap)."""

    def __init__(self, rate: int, script: list[list[str]]) -> None:
        self.recognizer = ScriptedRecognizer(rate=rate, script=[list(s) for s in script])
        self.finals = self.recognizer.finals

    @property
    def min_pause(self) -> float:
        return self.recognizer.min_pause

    @min_pause.setter
    def min_pause(self, value: float) -> None:
        self.recognizer.min_pause = value

    async def feed(self, pcm: np.ndarray) -> list[list[ScriptWord]]:
        return self.recognizer.feed(pcm)

    async def flush(self) -> list[ScriptWord]:
        return self.recognizer.flush()

    def current_partial(self) -> list[str]:
        return self.recognizer.current_partial()

    def open_span(self) -> tuple[float, float] | None:
        return self.recognizer.open_span()

    @property
    def seconds(self) -> float:
        return self.recognizer.seconds


class RecognizerHost:
    """An emulator's recognizers: which kind, and the worker pool while it serves."""

    def __init__(self, kind: str, script: object | None) -> None:
        self.kind = resolve_kind(kind, script)
        self.pool: RecognizerPool | None = None
        self._owned: dict[int, list[Recognition]] = {}  # by id() of a connection's record

    async def start(self) -> None:
        if self.kind == "pocketsphinx" and self.pool is None:
            self.pool = RecognizerPool()
            await self.pool.start()

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    def new(self, rate: int, script: list[list[str]], owner: object = None) -> Recognition:
        """A recognizer for one stream of audio at ``rate``; ``release(owner)`` closes it (no
        owner: the caller closes it)."""
        recognition: Recognition
        if self.kind == "pocketsphinx":
            if self.pool is None:
                raise RuntimeError("the recognizer pool is not running (start the emulator)")
            recognition = PooledRecognition(self.pool, rate)
        else:
            recognition = ScriptedRecognition(rate, script)
        if owner is not None:
            self._owned.setdefault(id(owner), []).append(recognition)
        return recognition

    def release(self, owner: object) -> None:
        """The connection is over: close the recognizers made for it."""
        for recognition in self._owned.pop(id(owner), []):
            recognition.close()


# ---- the pool -----------------------------------------------------------------------------------
@dataclass
class _Worker:
    process: asyncio.subprocess.Process
    streams: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def call(self, stream: int, op: str, *args: Any) -> Any:
        """One request, one reply. The lock keeps the pairs together on the pipe."""
        assert self.process.stdin is not None and self.process.stdout is not None
        body = pickle.dumps((stream, op, args), protocol=pickle.HIGHEST_PROTOCOL)
        async with self.lock:
            self.process.stdin.write(_HEADER.pack(len(body)) + body)
            await self.process.stdin.drain()
            size = _HEADER.unpack(await self.process.stdout.readexactly(_HEADER.size))[0]
            reply = pickle.loads(await self.process.stdout.readexactly(size))
        if isinstance(reply, BaseException):
            raise reply
        return reply


class RecognizerPool:
    """Worker processes, one per core, each recognizing the streams it was given."""

    def __init__(self, workers: int | None = None) -> None:
        self.size = workers or max(1, os.cpu_count() or 1)
        self._workers: list[_Worker] = []
        self._starting: asyncio.Lock | None = None
        self._ids = itertools.count(1)
        self._warned = False

    @property
    def streams(self) -> int:
        return sum(w.streams for w in self._workers)

    async def start(self) -> None:
        """Start the workers (each makes its first decoder at once)."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            missing = self.size - len(self._workers)
            if missing <= 0:
                return
            workers = [_Worker(await _spawn()) for _ in range(missing)]
            # Each answers once its first decoder is made (about 1 s, all at once).
            await asyncio.gather(*(w.call(0, "ready") for w in workers))
            self._workers += workers

    async def assign(self) -> tuple[_Worker, int]:
        """A worker for a new stream (the one with the fewest) and the stream's id."""
        if len(self._workers) < self.size:
            await self.start()
        worker = min(self._workers, key=lambda w: w.streams)
        worker.streams += 1
        capacity = self.size * REALTIME_STREAMS_PER_WORKER
        if self.streams > capacity and not self._warned:
            self._warned = True
            print(
                f"recognizer: {self.streams} streams on {self.size} worker processes (about "
                f"{capacity} in real time): results will lag behind the audio",
                file=sys.stderr,
                flush=True,
            )
        return worker, next(self._ids)

    def release(self, worker: _Worker) -> None:
        worker.streams -= 1

    async def close(self) -> None:
        for worker in self._workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 5)
            except TimeoutError:
                worker.process.kill()
        self._workers.clear()


class PooledRecognition(Recognition):
    """A ``SphinxRecognizer`` in a worker process; the state is mirrored after each call."""

    def __init__(self, pool: RecognizerPool, rate: int) -> None:
        self.pool, self.rate = pool, rate
        self.min_pause = 0.3
        self.finals = []
        self._worker: _Worker | None = None
        self._id = 0
        self._state: dict[str, Any] = {"seconds": 0.0, "partial": [], "span": None}

    async def _call(self, op: str, *args: Any) -> Any:
        if self._worker is None:
            self._worker, self._id = await self.pool.assign()
            await self._worker.call(self._id, "open", self.rate, self.min_pause)
        result, self._state = await self._worker.call(self._id, op, *args)
        return result

    async def feed(self, pcm: np.ndarray) -> list[list[ScriptWord]]:
        done: list[list[ScriptWord]] = await self._call("feed", pcm.astype("<i2").tobytes())
        self.finals += done
        return done

    async def flush(self) -> list[ScriptWord]:
        words: list[ScriptWord] = await self._call("flush")
        if words:
            self.finals.append(words)
        return words

    def current_partial(self) -> list[str]:
        return list(self._state["partial"])

    def open_span(self) -> tuple[float, float] | None:
        span: tuple[float, float] | None = self._state["span"]
        return span

    @property
    def seconds(self) -> float:
        return float(self._state["seconds"])

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self.pool.release(worker)
        task = asyncio.ensure_future(worker.call(self._id, "close"))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _spawn() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli.emulators.recognition",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


# ---- the worker process -------------------------------------------------------------------------
def _serve(stdin: Any, stdout: Any) -> None:
    """Requests in, replies out, until stdin closes. Decoders are kept for the next stream."""
    from streamcli.emulators.sphinx import SphinxRecognizer, new_decoder

    spare = [new_decoder()]  # the first stream need not wait 0.4 s
    streams: dict[int, SphinxRecognizer] = {}
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        stream, op, args = pickle.loads(stdin.read(_HEADER.unpack(header)[0]))
        reply: Any
        try:
            if op == "ready":
                reply = None
            elif op == "open":
                rate, min_pause = args
                decoder = spare.pop() if spare else None
                streams[stream] = SphinxRecognizer(rate, min_pause, decoder=decoder)
                reply = None
            elif op == "close":
                recognizer = streams.pop(stream, None)
                if recognizer is not None:
                    spare.append(recognizer.decoder)
                reply = None
            else:
                recognizer = streams[stream]
                if op == "feed":
                    result: Any = recognizer.feed(np.frombuffer(args[0], "<i2"))
                else:
                    result = recognizer.flush()
                state = {
                    "seconds": recognizer.seconds,
                    "partial": recognizer.current_partial(),
                    "span": recognizer.open_span(),
                }
                reply = (result, state)
        except Exception as e:  # sent back: the emulator's call raises it
            reply = RuntimeError(f"recognizer {op}: {e}")
        body = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_HEADER.pack(len(body)) + body)
        stdout.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
