"""The session loop: runs one or many streams (one per speaker) over their connections.

Theory of operation. A ``Stream`` couples one sans-I/O backend with one WebSocket. It runs
three tasks: a receiver (frames in -> backend -> events out), a writer (the only task that
sends, so frames leave in the order the backend queued them) and a timer (the backend's
``next_deadline``). A single feeder reads the source once, converts it for every stream and
paces all of them on one clock. After the audio, each backend's end-of-stream is sent and the
session waits (bounded by ``timeout``) for every stream to finish. Failures never raise out
of here: they become ``Error`` events, and the worst one decides the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO

from streamcli import events as ev
from streamcli.audio.convert import Chunker, Converter, chunk_bytes_for
from streamcli.audio.pacer import Pacer
from streamcli.audio.sources import AudioSource
from streamcli.backends.base import Backend
from streamcli.exit import ExitStatus, StreamcliError, status_for_error_kind
from streamcli.transport.websocket import WebSocketConnection, WireOptions

EventHandler = Callable[[ev.Event], None]
MAX_QUEUED_FRAMES = 64  # bound on frames waiting for the socket (a server that stops reading)


@dataclass
class SessionOptions:
    speed: float = 1.0
    chunk_ms: int = 100
    timeout: float = 30.0  # max wait for the end of the session after the audio ends
    wire: WireOptions = field(default_factory=WireOptions)
    raw: bool = False
    debug: bool = False
    duration: float | None = None  # stop after this much audio (seconds)


class Tracer:
    """``--debug`` wire trace on stderr; secrets are masked (``abcd…``)."""

    def __init__(self, secrets: tuple[str, ...], out: TextIO | None = None) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self.out = out or sys.stderr

    def mask(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, mask_secret(s))
        return text

    def __call__(
        self, label: str, direction: str, frame: str | bytes | None, note: str = ""
    ) -> None:
        if isinstance(frame, bytes):
            body = f"binary {len(frame)} bytes"
        elif frame is None:
            body = note
        else:
            body = "text " + self.mask(frame.replace("\n", "\\n"))
        print(f"[wire {label}] {direction} {body}", file=self.out, flush=True)


def mask_secret(secret: str) -> str:
    return (secret[:4] if len(secret) >= 12 else "") + "…"


class Stream:
    """One backend on one WebSocket connection."""

    def __init__(
        self,
        backend: Backend,
        emit: EventHandler,
        options: SessionOptions,
        channel: int | None = None,
        connect: Callable[..., Awaitable[WebSocketConnection]] = WebSocketConnection.open,
    ) -> None:
        self.backend = backend
        self.channel = channel
        self._emit_event = emit
        self.options = options
        self._connect = connect
        self.ws: WebSocketConnection | None = None
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._done = asyncio.Event()
        self.label = backend.speaker or backend.name
        request = backend.connect_request()
        self.request = request
        self.trace = Tracer(request.secrets) if options.debug else None
        self.failed = False

    # ---- events ---------------------------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        if isinstance(event, ev.Error):
            self.failed = True
        self._emit_event(event)

    def fail(self, message: str, kind: str) -> None:
        if self.backend.finished:
            return
        self.backend.give_up(self._now())
        self.pump()
        self.backend.finished = True
        self.emit(
            ev.Error(
                backend=self.backend.name, speaker=self.backend.speaker, message=message, kind=kind
            )
        )
        self._done.set()
        self._changed.set()

    def pump(self) -> None:
        """Move what the backend queued: frames to the writer, events to the sinks."""
        for frame in self.backend.frames_to_send():
            self._queue.put_nowait(frame)
        for event in self.backend.events_received():
            self.emit(event)
        if self.backend.finished:
            self._done.set()
        self._changed.set()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # ---- lifecycle --------------------------------------------------------------------------
    async def connect(self) -> bool:
        if self.trace:
            self.trace(self.label, "→", None, f"connect {self.trace.mask(self.request.url)}")
        handshake = getattr(self.backend, "handshake_error", None)
        try:
            if handshake is not None:
                self.ws = await self._connect(self.request, self.options.wire, handshake)
            else:
                self.ws = await self._connect(self.request, self.options.wire)
        except StreamcliError as e:
            self.backend.finished = True
            self.emit(
                ev.Error(
                    backend=self.backend.name,
                    speaker=self.backend.speaker,
                    message=e.message,
                    kind=_kind_for_status(e.status),
                )
            )
            self._done.set()
            return False
        self.emit(
            ev.SessionStarted(
                backend=self.backend.name,
                speaker=self.backend.speaker,
                info={
                    "url": _public_url(self.request.url),
                    **getattr(self.backend, "session_info", {}),
                },
            )
        )
        self.backend.start(self._now())
        self.pump()
        return True

    async def run(self) -> None:
        """Receive, write and tick until the backend is finished and its frames are sent."""
        assert self.ws is not None
        writer = asyncio.create_task(self._writer())
        timer = asyncio.create_task(self._timer())
        try:
            await self._receiver()
        finally:
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(writer, timeout=2.0)
            timer.cancel()
            writer.cancel()
            await self.ws.close()

    async def _receiver(self) -> None:
        assert self.ws is not None
        while not self.backend.finished:
            recv = asyncio.ensure_future(self.ws.receive())
            done_wait = asyncio.ensure_future(self._done.wait())
            await asyncio.wait({recv, done_wait}, return_when=asyncio.FIRST_COMPLETED)
            done_wait.cancel()
            if not recv.done():
                recv.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await recv
                break
            try:
                msg = recv.result()
            except Exception as e:
                self.fail(f"connection lost: {e}", ev.CONNECTION)
                break
            self._handle(msg)

    def _handle(self, msg) -> None:
        now = self._now()
        if self.trace:
            self.trace(
                self.label,
                "←",
                msg.data if msg.kind in ("text", "binary") else None,
                f"{msg.kind} {msg.code or ''} {msg.reason}".strip(),
            )
        if self.options.raw and msg.kind in ("text", "binary"):
            self.emit(_raw_event(self.backend, msg.data))
        if msg.kind == "text":
            self.backend.receive_text(msg.data, now)
        elif msg.kind == "binary":
            self.backend.receive_binary(msg.data, now)
        elif msg.kind == "close":
            self.backend.receive_close(msg.code, msg.reason, now)
            self.pump()
            if not self.backend.finished:
                self.fail("the server closed the connection", ev.CONNECTION)
            return
        else:
            self.backend.give_up(now)
            self.pump()
            self.fail(f"connection lost: {msg.reason}", ev.CONNECTION)
            return
        self.pump()

    async def _writer(self) -> None:
        assert self.ws is not None
        while True:
            frame = await self._queue.get()
            if frame is None:
                return
            if self.trace:
                self.trace(self.label, "→", frame)
            try:
                await self.ws.send(frame)
            except Exception as e:
                self.fail(f"connection lost while sending: {e}", ev.CONNECTION)
                return
            self._changed.set()

    async def _timer(self) -> None:
        while not self.backend.finished:
            deadline = self.backend.next_deadline()
            self._changed.clear()
            if deadline is None:
                await self._changed.wait()
                continue
            delay = deadline - self._now()
            if delay > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=delay)
                continue
            self.backend.tick(self._now())
            self.pump()

    # ---- audio in ---------------------------------------------------------------------------
    async def offer(self, chunk: bytes) -> None:
        """Send one chunk when the protocol allows; wait while the socket is backed up."""
        while not self.backend.finished and (
            not self.backend.ready_for_audio or self._queue.qsize() >= MAX_QUEUED_FRAMES
        ):
            self._changed.clear()
            await self._changed.wait()
        if self.backend.finished:
            return
        self.backend.send_audio(chunk, self._now())
        self.pump()

    def end_audio(self) -> None:
        if not self.backend.finished:
            self.backend.end_audio(self._now())
            self.pump()

    async def wait_done(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._done.wait(), timeout=timeout)
        except TimeoutError:
            self.fail(
                f"no end of session from the server within {timeout:g} s after the audio ended",
                ev.TIMEOUT,
            )


async def feed(
    source: AudioSource,
    streams: list[Stream],
    pacer: Pacer,
    chunk_ms: int,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    on_audio: Callable[[object], None] | None = None,
) -> None:
    """Read the source once, convert per stream, pace every stream on one clock."""
    converters = {
        s: Converter(source.rate, s.backend.sample_rate, s.backend.encoding, channel=s.channel)
        for s in streams
    }
    chunkers = {
        s: Chunker(
            chunk_bytes_for(s.backend.sample_rate, s.backend.encoding, chunk_ms),
            1 if s.backend.encoding == "mulaw" else 2,
        )
        for s in streams
    }
    sent = dict.fromkeys(streams, 0.0)
    limit_frames = None if duration is None else int(duration * source.rate)
    read_frames = 0
    pacer.start()

    async def deliver(pending: list[tuple[float, int, Stream, bytes]]) -> None:
        for t, _, s, chunk in sorted(pending, key=lambda p: (p[0], p[1])):
            if not source.live:
                await pacer.wait_until(t)
            await s.offer(chunk)

    def cut(s: Stream, chunks: list[bytes]) -> list[tuple[float, int, Stream, bytes]]:
        out = []
        bps = s.backend.sample_rate * (1 if s.backend.encoding == "mulaw" else 2)
        for chunk in chunks:
            out.append((sent[s], id(s), s, chunk))
            sent[s] += len(chunk) / bps
        return out

    async for block in source.blocks():
        if stop is not None and stop.is_set():
            break
        if limit_frames is not None:
            block = block[: max(0, limit_frames - read_frames)]
        read_frames += len(block)
        if on_audio is not None:
            on_audio(block)
        pending = []
        for s in streams:
            pending += cut(s, chunkers[s].push(converters[s].process(block)))
        await deliver(pending)
        if all(s.backend.finished for s in streams):
            return
        if limit_frames is not None and read_frames >= limit_frames:
            break
    pending = []
    for s in streams:
        chunks = chunkers[s].push(converters[s].flush())  # the resampler's tail
        rest = chunkers[s].rest()
        pending += cut(s, chunks + ([rest] if rest else []))
    await deliver(pending)


def _kind_for_status(status: ExitStatus) -> str:
    return {
        ExitStatus.AUTH: ev.AUTH,
        ExitStatus.CONNECTION: ev.CONNECTION,
        ExitStatus.TIMEOUT: ev.TIMEOUT,
        ExitStatus.USAGE: ev.USAGE,
    }.get(status, ev.SERVER)


def _public_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    p = urlsplit(url)
    netloc = p.hostname or ""
    if p.port:
        netloc += f":{p.port}"
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


def _raw_event(backend: Backend, data: str | bytes) -> ev.Raw:
    if isinstance(data, bytes):
        return ev.Raw(backend=backend.name, speaker=backend.speaker, binary_length=len(data))
    return ev.Raw(backend=backend.name, speaker=backend.speaker, message=data)


def raw_line(event: ev.Raw) -> str:
    """``--raw``: the server's message as one JSON line (compacted when it is JSON)."""
    if event.message is None:
        return json.dumps({"binary_length": event.binary_length})
    try:
        value = json.loads(event.message)
    except ValueError:
        value = event.message
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Interrupts:
    """Ctrl-C / SIGTERM: the first asks for a graceful end, the second aborts."""

    def __init__(self) -> None:
        self.count = 0
        self.graceful = asyncio.Event()
        self.abort = asyncio.Event()
        self.output_closed = False  # stdout went away (``| head -1``): stop quietly

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.trigger)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    def trigger(self) -> None:
        self.count += 1
        self.graceful.set()
        if self.count >= 2:
            self.abort.set()

    def trigger_abort(self) -> None:
        """The reader of stdout is gone: nobody wants more results."""
        self.output_closed = True
        self.graceful.set()
        self.abort.set()


@dataclass
class Outcome:
    status: ExitStatus
    interrupted: bool = False


async def run_session(
    source: AudioSource,
    streams: list[Stream],
    options: SessionOptions,
    interrupts: Interrupts | None = None,
    on_audio: Callable[[object], None] | None = None,
) -> Outcome:
    """Connect every stream, feed the audio, wait for the ends. Never raises StreamcliError."""
    interrupts = interrupts or Interrupts()
    errors: list[ev.Error] = []
    for s in streams:
        original = s._emit_event

        def record(event: ev.Event, _orig: EventHandler = original) -> None:
            if isinstance(event, ev.Error):
                errors.append(event)
            _orig(event)

        s._emit_event = record

    async def main() -> None:
        connected = await asyncio.gather(*(s.connect() for s in streams))
        live = [s for s, ok in zip(streams, connected, strict=True) if ok]
        if not live:
            return
        runners = [asyncio.create_task(s.run()) for s in live]
        pacer = Pacer(0.0 if source.live else options.speed)
        feeder = asyncio.create_task(
            feed(
                source,
                live,
                pacer,
                options.chunk_ms,
                options.duration,
                interrupts.graceful,
                on_audio,
            )
        )
        stopper = asyncio.create_task(interrupts.graceful.wait())
        await asyncio.wait({feeder, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        stop_capture = getattr(source, "stop", None)
        if not feeder.done() and source.live and stop_capture is not None:
            stop_capture()  # a live source drains what it captured, then ends
            await feeder
        if not feeder.done():
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        elif feeder.exception() is not None:
            exc = feeder.exception()
            for s in live:
                s.fail(str(exc), ev.USAGE if isinstance(exc, StreamcliError) else ev.SERVER)
            await asyncio.gather(*runners, return_exceptions=True)
            raise exc  # type: ignore[misc]
        for s in live:
            s.end_audio()
        await asyncio.gather(*(s.wait_done(options.timeout) for s in live))
        await asyncio.gather(*runners, return_exceptions=True)

    interrupts.install()
    task = asyncio.create_task(main())
    aborter = asyncio.create_task(interrupts.abort.wait())
    try:
        await asyncio.wait({task, aborter}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for s in streams:
                s.backend.give_up(asyncio.get_running_loop().time())
                s.pump()
            if interrupts.output_closed:
                return Outcome(ExitStatus.OK, interrupted=True)
            return Outcome(ExitStatus.INTERRUPTED, interrupted=True)
        task.result()
    finally:
        aborter.cancel()
        interrupts.uninstall()

    status = ExitStatus.OK
    if errors:
        status = max((status_for_error_kind(e.kind) for e in errors), key=_severity)
    interrupted = interrupts.count > 0
    if interrupted and not source.live and status == ExitStatus.OK:
        status = ExitStatus.INTERRUPTED
    return Outcome(status, interrupted=interrupted)


def _severity(status: ExitStatus) -> int:
    # When several streams fail differently, report the most specific cause.
    order = [
        ExitStatus.TIMEOUT,
        ExitStatus.SERVER,
        ExitStatus.CONNECTION,
        ExitStatus.AUTH,
        ExitStatus.USAGE,
    ]
    return order.index(status) if status in order else -1
