"""Melvin-ASR emulator: the WebSocket and REST protocol of ``shared/protocols/melvin.md``.

Faithful to the server's quirks: no auth ack, the three exact failure strings (then close 1000),
"waiting" reminders while no worker seat is free (a free seat is looked for only then; frames
queued unread meanwhile, 32 at most, then TCP backpressure), indent=2 JSON,
partials with leading/double spaces, a transcription pass about once per second of received
audio, the 32-hex export id then close 1000, and REST exports on a second port.

Switches (constructor keywords, also ``streamcli serve melvin`` options):
- ``api_keys``: accepted keys; empty = an old server without the auth frame (<= v1.1.0-dev.0).
- ``seats``: worker seats; ``reminder_interval``: seconds between "waiting" reminders (10).
- ``script``: transcript file whose sentences are spread over the voiced audio.
- ``recognizer``: ``script`` (the default here) or ``pocketsphinx``: words recognized from the
  audio (``recognition.py``); a pass sends the finals of the utterances that ended and the
  partial of the one being spoken.
- ``fault``: ``close-without-id`` (crash at eof), ``silent-after-eof`` (never answer eof),
  ``drop-after`` (close 1011 after ``fault_after`` seconds of audio), ``reset-after`` (abort the
  TCP connection after ``fault_after`` seconds of audio).
- ``quirks`` (default on; ``serve melvin --no-quirks`` turns them off), the real server's bugs
  (v1.1.0-dev.2, ``src/websocket/stream.py``): eof while a transcription pass is in flight (a
  pass takes ``transcribe_seconds``) closes 1000 without an export id; and every other final ends
  with a word cut at the window edge (shorter end) that the next final and partial send again
  with the same start and the full end. Off: eof waits for the pass, no word is repeated.
  Not faults of the real server, but of networks and broken servers, for the client's tests
  (each after ``fault_after`` seconds of audio): ``close-after`` (close 1000), ``freeze-after``
  (stop reading and answering, pings included: a dead peer; the socket stays open),
  ``garbage-text`` (a non-JSON text), ``garbage-json`` (JSON of the wrong shape: a list),
  ``garbage-binary`` (a binary frame), ``huge-message`` (a text of ``huge_size`` bytes, 20 MB).
  The garbage faults go on with the session afterwards.
- ``fault_count``: how many connections get the fault (None = every one): ``fault_count=1``
  drops the first connection only, so a client's reconnect succeeds.
- ``refuse_first``: answer the first N handshakes with HTTP ``refuse_status`` (503), as a
  server that restarts does.
- ``ssl_context``: serve ``wss://`` with this server context.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import ssl
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from streamcli.emulators.recognition import Recognition, RecognizerHost
from streamcli.emulators.scripted import ScriptWord, split_sentences

AUTH_NOT_TEXT = "Initial message was not text and therefore did not match the expected auth format"
AUTH_BAD_JSON = "Initial websocket message contained invalid json"
AUTH_BAD_KEY = "Provided api key is invalid"
WAITING = "No transcription workers available. Retrying in 10 seconds"
UNKNOWN = "control message unknown"
RATE = 16000
UNREAD_LIMIT = 32  # messages the server's WebSocket library queues before it stops reading
FAULTS = (
    "close-without-id",
    "silent-after-eof",
    "drop-after",
    "reset-after",
    "close-after",
    "freeze-after",
    "garbage-text",
    "garbage-json",
    "garbage-binary",
    "huge-message",
)
MID_STREAM_FAULTS = frozenset(FAULTS) - {"close-without-id", "silent-after-eof"}
GARBAGE = {
    "garbage-text": "<html><body>502 Bad Gateway</body></html>",
    "garbage-json": '["not", "an", "object"]',
}
HUGE_SIZE = 20 * 1024 * 1024
FROZEN_RCVBUF = 64 * 1024  # bytes the kernel keeps for a frozen connection
CUT_WORD_SHORTFALL = 0.08  # a word cut at the window edge ends this much early (quirk)
SERVE_HELP = "Melvin-ASR emulator (WebSocket on --port, REST export on --rest-port)."


@dataclass
class MelvinConnection:
    """What one client did, for tests."""

    path: str
    frames: list[tuple[str, int | str]] = field(default_factory=list)  # ("text", s) / ("binary", n)
    faulted: bool = False
    audio: bytearray = field(default_factory=bytearray)
    authenticated: bool = False
    waited_for_seat: bool = False
    read_before_seat: int | None = None  # frames read (queued unread) when a waiting one sat
    frozen: bool = False  # freeze-after: nothing is read from the socket any more
    eof_received: bool = False
    export_id: str | None = None
    ended: str = ""
    repeated_words: int = 0  # finals that re-sent a cut word (quirk)

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / 2 / RATE

    def pcm(self) -> np.ndarray:
        return np.frombuffer(bytes(self.audio), "<i2")


class MelvinEmulator:
    name = "melvin"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rest_port: int | None = 0,
        api_keys: tuple[str, ...] | list[str] = (),
        seats: int = 1,
        script: str | Path | None = None,
        reminder_interval: float = 10.0,
        fault: str | None = None,
        fault_after: float = 1.0,
        fault_count: int | None = None,
        huge_size: int = HUGE_SIZE,
        refuse_first: int = 0,
        refuse_status: int = 503,
        ssl_context: ssl.SSLContext | None = None,
        quirks: bool = True,
        transcribe_seconds: float = 0.05,
        recognizer: str = "script",
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
        self.fault_count = fault_count
        self.huge_size = huge_size
        self.ssl_context = ssl_context
        self.quirks, self.transcribe_seconds = quirks, transcribe_seconds
        self.faults_done = 0
        self.refuse_first, self.refuse_status = refuse_first, refuse_status
        self.handshakes = 0
        self._stopping = asyncio.Event()
        self.host, self.port, self.rest_port = host, port, rest_port
        self.api_keys = tuple(api_keys)
        self.seats = seats
        self.script = script
        self.recognizers = RecognizerHost(recognizer, script)
        self.reminder_interval = reminder_interval
        self.fault, self.fault_after = fault, fault_after
        self.connections: list[MelvinConnection] = []
        self.exports: dict[str, tuple[list[dict], bytes]] = {}
        self._free_seats = asyncio.Semaphore(seats)
        self._runners: list[web.AppRunner] = []

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.rest_port}"

    async def start(self) -> None:
        await self.recognizers.start()
        ws_app = web.Application()
        ws_app.router.add_get("/health", self._health)
        ws_app.router.add_route("GET", "/{tail:.*}", self._websocket)
        self.port = await self._listen(ws_app, self.port)
        if self.rest_port is not None:
            rest = web.Application()
            rest.router.add_get("/export/transcript/{id}", self._export_transcript)
            rest.router.add_get("/export/audio/{id}", self._export_audio)
            rest.router.add_get("/health", self._health)
            self.rest_port = await self._listen(rest, self.rest_port)

    async def _listen(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, ssl_context=self.ssl_context)
        await site.start()
        self._runners.append(runner)
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._stopping.set()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self.recognizers.stop()

    # ---- WebSocket ----------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.path != "/":
            return web.Response(status=403, text="Forbidden")
        self.handshakes += 1
        if self.handshakes <= self.refuse_first:
            return web.Response(status=self.refuse_status, text="Service Unavailable")
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="WebSocket expected")
        await ws.prepare(request)
        conn = MelvinConnection(path=request.path)
        self.connections.append(conn)
        try:
            await self._session(ws, conn)
        except ConnectionResetError:
            conn.ended = conn.ended or "client vanished"
        return ws

    async def _session(self, ws: web.WebSocketResponse, conn: MelvinConnection) -> None:
        if self.api_keys and not await self._authenticate(ws, conn):
            return
        conn.authenticated = True
        # The real server's WebSocket library keeps at most 32 unread messages, then stops
        # reading the socket (uvicorn's ws_max_queue): a client that streams on meets TCP
        # backpressure.
        queue: asyncio.Queue = asyncio.Queue(maxsize=UNREAD_LIMIT)
        reader = asyncio.create_task(self._read(ws, conn, queue))
        try:
            if not await self._take_seat(ws, conn, reader):
                return
            try:
                await self._transcribe(ws, conn, queue)
            finally:
                self._free_seats.release()
        finally:
            reader.cancel()

    async def _authenticate(self, ws: web.WebSocketResponse, conn: MelvinConnection) -> bool:
        msg = await ws.receive()
        if msg.type == WSMsgType.BINARY:
            conn.frames.append(("binary", len(msg.data)))
            return await self._reject(ws, conn, AUTH_NOT_TEXT)
        if msg.type != WSMsgType.TEXT:
            conn.ended = "closed before auth"
            return False
        conn.frames.append(("text", msg.data))
        try:
            key = json.loads(msg.data)["Authorization"]
        except (ValueError, KeyError, TypeError):
            return await self._reject(ws, conn, AUTH_BAD_JSON)
        if key not in self.api_keys:
            return await self._reject(ws, conn, AUTH_BAD_KEY)
        return True

    async def _reject(self, ws: web.WebSocketResponse, conn: MelvinConnection, text: str) -> bool:
        await ws.send_str(text)
        await ws.close(code=1000)
        conn.ended = f"rejected: {text}"
        return False

    async def _take_seat(
        self, ws: web.WebSocketResponse, conn: MelvinConnection, reader: asyncio.Task
    ) -> bool:
        """Like the real server (websockets_server.py, handle_new_client): look for a free
        seat; none: send the waiting message and look again ``reminder_interval`` later (a
        seat that frees up meanwhile waits for that look). The handler reads nothing
        meanwhile: what the client sends queues up (``_read``) until it is seated."""
        while True:
            if not self._free_seats.locked():
                await self._free_seats.acquire()
                if conn.waited_for_seat:
                    conn.read_before_seat = len(conn.frames)
                return True
            conn.waited_for_seat = True
            await ws.send_str(WAITING)
            await asyncio.wait({reader}, timeout=self.reminder_interval)
            if reader.done():  # the client left while waiting
                conn.ended = "left while waiting for a seat"
                return False

    async def _read(self, ws: web.WebSocketResponse, conn: MelvinConnection, queue: asyncio.Queue):
        """Receive frames into a queue (frames sent while waiting for a seat are queued)."""
        async for msg in ws:
            if conn.frozen:  # a dead peer reads nothing (aiohttp's own buffer then fills too)
                await self._stopping.wait()
                return
            if msg.type == WSMsgType.BINARY:
                conn.frames.append(("binary", len(msg.data)))
                await queue.put(("binary", msg.data, time.monotonic()))
            elif msg.type == WSMsgType.TEXT:
                conn.frames.append(("text", msg.data))
                await queue.put(("text", msg.data, time.monotonic()))
        await queue.put(("closed", None, time.monotonic()))

    async def _transcribe(
        self, ws: web.WebSocketResponse, conn: MelvinConnection, queue: asyncio.Queue
    ) -> None:
        script = split_sentences(Path(self.script).read_text("utf-8")) if self.script else []
        passes = _Passes(self.recognizers.new(RATE, script))
        try:
            await self._receive(ws, conn, queue, passes)
        finally:
            passes.recognizer.close()

    async def _receive(
        self,
        ws: web.WebSocketResponse,
        conn: MelvinConnection,
        queue: asyncio.Queue,
        passes: _Passes,
    ) -> None:
        next_pass = 1.0
        while True:
            kind, data, _ = await queue.get()
            if kind == "closed":
                conn.ended = conn.ended or "client closed without eof"
                return
            if kind == "text":
                if "eof" in data:
                    conn.eof_received = True
                    if self.fault == "silent-after-eof":
                        conn.ended = "silent after eof"
                        while (await queue.get())[0] != "closed":
                            pass  # never answer; wait for the client to give up
                        return
                    await self._eof(ws, conn, passes)
                    return
                await ws.send_str(UNKNOWN)
                continue
            if len(data) % 2:
                # An odd frame makes the real server raise: close 1000, no message.
                conn.ended = "odd-length frame"
                await ws.close(code=1000)
                return
            conn.audio += data
            await passes.recognizer.feed(np.frombuffer(data, "<i2"))
            if await self._fault_mid_stream(ws, conn, queue, passes):
                return
            # Like the real server: a pass starts on received audio, one at a time, and runs
            # while further frames are read (the eof race needs exactly that).
            if conn.audio_seconds >= next_pass and not passes.in_flight():
                next_pass = conn.audio_seconds + 1.0
                passes.task = asyncio.ensure_future(self._transcription_pass(ws, conn, passes))

    async def _fault_mid_stream(
        self,
        ws: web.WebSocketResponse,
        conn: MelvinConnection,
        queue: asyncio.Queue,
        passes: _Passes,
    ) -> bool:
        """Play the mid-stream fault once its time has come; True when the session is over.
        A bad message waits for the transcription in flight, so what the client had received
        before it is the same from run to run (the tests check it was kept)."""
        if (
            self.fault not in MID_STREAM_FAULTS
            or conn.faulted
            or conn.audio_seconds < self.fault_after
            or (self.fault_count is not None and self.faults_done >= self.fault_count)
        ):
            return False
        conn.faulted = True
        self.faults_done += 1
        fault = self.fault
        if fault in (*GARBAGE, "garbage-binary", "huge-message") and passes.in_flight():
            assert passes.task is not None
            await asyncio.shield(passes.task)
        if fault in GARBAGE:
            await ws.send_str(GARBAGE[fault])
            return False
        if fault == "garbage-binary":
            await ws.send_bytes(b"\x00\x01binary where text is expected")
            return False
        if fault == "huge-message":
            await ws.send_str("x" * self.huge_size)
            return False
        conn.ended = fault
        if fault == "drop-after":
            await ws.close(code=1011)
        elif fault == "close-after":
            await ws.close(code=1000)
        elif fault == "freeze-after":
            conn.frozen = True
            await self._freeze(ws)
        else:
            transport = ws._req.transport if ws._req is not None else None
            if transport is not None:
                transport.abort()
        return True

    async def _freeze(self, ws: web.WebSocketResponse) -> None:
        """Neither read nor answer (no pongs either) until the emulator stops (2 min at most)."""
        transport = ws._req.transport if ws._req is not None else None
        if transport is not None:
            transport.pause_reading()
            # A small receive buffer from now on: the kernel's autotuning (up to tcp_rmem's
            # 32 MB) would otherwise take tens of megabytes more before the client must wait.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FROZEN_RCVBUF)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=120)
        if transport is not None:
            transport.abort()

    async def _transcription_pass(
        self, ws: web.WebSocketResponse, conn: MelvinConnection, passes: _Passes
    ) -> None:
        await asyncio.sleep(self.transcribe_seconds)  # the model at work
        recognizer = passes.recognizer
        with contextlib.suppress(ConnectionError, RuntimeError):  # the client is gone
            while len(passes.finals) < len(recognizer.finals):
                final = self._final(conn, passes, recognizer.finals[len(passes.finals)])
                await ws.send_str(json.dumps(final, indent=2, ensure_ascii=False))
            # Whisper's raw words keep their leading space and are joined with " " (melvin.md);
            # the word cut at the window edge comes again (the server's workaround misses it).
            words = ([passes.carry["word"]] if passes.carry else []) + list(
                recognizer.current_partial()
            )
            partial = " ".join(" " + w for w in words)
            await ws.send_str(json.dumps({"partial": partial}, indent=2, ensure_ascii=False))

    def _final(self, conn: MelvinConnection, passes: _Passes, words: list[ScriptWord]) -> dict:
        """The next final, re-sending the previous final's cut word and cutting its own last
        word on every other final (quirk)."""
        result: list[dict[str, Any]] = [
            {"conf": w.conf, "start": w.start, "end": w.end, "word": w.word} for w in words
        ]
        if passes.carry is not None:
            result.insert(0, passes.carry)
            passes.carry = None
            conn.repeated_words += 1
        if self.quirks and len(passes.finals) % 2 == 0 and len(result) >= 2:
            passes.carry = dict(result[-1])
            last = result[-1]
            # Cut short, like the real server's 12.0-12.3 then 12.0-12.4 (melvin.md).
            cut = max(last["start"] + 0.01, last["end"] - CUT_WORD_SHORTFALL)
            result[-1] = {**last, "end": round(cut, 6)}
        final = {"result": result, "text": " ".join(w["word"] for w in result)}
        passes.finals.append(final)
        return final

    async def _eof(
        self, ws: web.WebSocketResponse, conn: MelvinConnection, passes: _Passes
    ) -> None:
        if passes.in_flight():
            if self.quirks:
                # Real server: echo() iterates its set of transcription tasks while removing
                # from it, raises "Set changed size during iteration" and closes without an id.
                conn.ended = "closed without id (eof race)"
                await ws.close(code=1000)
                return
            assert passes.task is not None
            await asyncio.wait({passes.task})
        if self.fault == "close-without-id":
            conn.ended = "closed without id"
            await ws.close(code=1000)
            return
        export_id = uuid.uuid4().hex
        conn.export_id = export_id
        self.exports[export_id] = (passes.finals, bytes(conn.audio))
        await ws.send_str(export_id)
        await ws.close(code=1000)
        conn.ended = "eof"

    # ---- REST -----------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return not self.api_keys or request.headers.get("Authorization") in self.api_keys

    async def _export_transcript(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"detail": "Unauthorized"}, status=401)
        export = self.exports.get(request.match_info["id"])
        if export is None or not export[0]:
            return web.json_response({"detail": "Transcription ID not found"}, status=404)
        return web.json_response(export[0])

    async def _export_audio(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"detail": "Unauthorized"}, status=401)
        export = self.exports.get(request.match_info["id"])
        if export is None:
            return web.json_response({"detail": "File not found"}, status=404)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(export[1])
        return web.Response(body=buf.getvalue(), content_type="audio/wav")


@dataclass
class _Passes:
    """One connection's transcription state: the recognizer, the finals sent, the pass running
    and the word a final cut at the window edge (re-sent next)."""

    recognizer: Recognition
    finals: list[dict] = field(default_factory=list)
    task: asyncio.Future | None = None
    carry: dict[str, Any] | None = None

    def in_flight(self) -> bool:
        return self.task is not None and not self.task.done()
