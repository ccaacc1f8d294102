"""An ``http://`` or ``https://`` URL as the input: a file on a web server, or an endless live
stream (Icecast/SHOUTcast radio, chunked transfer).

The body is fetched with aiohttp (the one async stack; ``--ca-file``/``--insecure`` apply) by a
reader thread with its own event loop, so the URL opens before the sessions' loop starts and
FFmpeg can learn the stream's rate and channels from its first bytes. Then:
- a file (the server says its length): downloaded to a temporary file first, and opened as a
  local file would be (libsndfile, else FFmpeg): paced like any file (``--speed``);
- a live stream (no length): piped into FFmpeg (PyAV) as it arrives; the source is ``live``,
  paced by its own arrival, never sped up; it ends with Ctrl-C or ``--duration``.
A stream that stalls for ``stall`` seconds (the session's ``--timeout``) or drops ends with one
line (exit 4); what was streamed until then is kept. 401/403 exit 3, 404 and other 4xx exit 2
(the input names nothing), 5xx and unreachable hosts exit 4, an HTML page exits 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from streamcli.audio.media import INSTALL_HINT, MediaSource, import_av
from streamcli.exit import AuthError, ConnectError, StreamcliError, UsageError
from streamcli.redact import public_url

if TYPE_CHECKING:
    from streamcli.audio.sources import AudioSource
    from streamcli.transport.websocket import WireOptions

CHUNK_BYTES = 1 << 16


def is_url(spec: str) -> bool:
    return spec.lower().startswith(("http://", "https://"))


class HttpReader:
    """GET the URL in a thread of its own; the body comes out of ``pipe`` (a file object)."""

    def __init__(self, url: str, wire: WireOptions, stall: float) -> None:
        self.url, self.where = url, public_url(url)
        self.wire, self.stall = wire, stall
        self.length: int | None = None
        self.error: StreamcliError | None = None  # what ended the body early
        self.received = 0
        self._headers = threading.Event()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        read_end, self._write_end = os.pipe()
        self.pipe = os.fdopen(read_end, "rb", buffering=0)
        self._thread = threading.Thread(target=self._run, name="http-input", daemon=True)
        self._thread.start()
        self._headers.wait()
        if self.error is not None and self.received == 0:
            self.close()
            raise self.error

    def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        try:
            await self._fetch()
        except asyncio.CancelledError:
            pass
        except StreamcliError as e:
            self.error = e
        finally:
            self._headers.set()
            with contextlib.suppress(OSError):
                os.close(self._write_end)  # the decoder sees the end of the stream

    async def _fetch(self) -> None:
        import aiohttp

        from streamcli.transport.websocket import short_reason, tls_failure, tls_reason

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.wire.connect_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(self.url, ssl=self.wire.ssl_context()) as response,
            ):
                self._check(response)
                self._headers.set()
                await self._copy(response)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as e:
            raise tls_failure(self.where, tls_reason(e)) from None
        except aiohttp.ClientPayloadError as e:
            raise self._dropped(short_reason(e)) from None
        except (aiohttp.ClientError, OSError) as e:
            if self.received:
                raise self._dropped(short_reason(e)) from None
            raise ConnectError(f"cannot reach {self.where}: {short_reason(e)}") from None

    def _check(self, response: Any) -> None:
        status = response.status
        if status in (401, 403):
            raise AuthError(f"{self.where}: the server refused the request (HTTP {status})")
        if 400 <= status < 500:
            raise UsageError(f"{self.where}: HTTP {status} {response.reason or ''}".rstrip())
        if status >= 300:
            raise ConnectError(f"{self.where}: HTTP {status} {response.reason or ''}".rstrip())
        kind = response.content_type or ""
        if kind.startswith("text/"):
            raise UsageError(f"{self.where}: the server sent a {kind} page, not audio")
        self.length = response.content_length

    async def _copy(self, response: Any) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                chunk = await asyncio.wait_for(response.content.readany(), self.stall)
            except TimeoutError:
                raise ConnectError(
                    f"{self.where}: the stream stalled: nothing came for {self.stall:g} s"
                ) from None
            if not chunk:
                if self.length is not None and self.received < self.length:
                    raise self._dropped("the body ended early")
                return
            self.received += len(chunk)
            try:  # a full pipe blocks this thread only: the decoder's pace
                await loop.run_in_executor(None, _write_all, self._write_end, chunk)
            except OSError:
                return  # the decoder went away (the run ended)

    def _dropped(self, reason: str) -> ConnectError:
        return ConnectError(
            f"{self.where}: the connection dropped after {self.received} bytes ({reason})"
        )

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """End the body now (Ctrl-C, ``--duration``): the decoder drains what it has."""
        self._stopping.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.pipe.close()
        self._thread.join(5)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class LiveMediaSource(MediaSource):
    """A live stream piped into FFmpeg as it arrives: paced by its own arrival."""

    live = True

    def __init__(self, reader: HttpReader, audio_stream: int | None) -> None:
        self.reader = reader
        try:
            super().__init__(reader.pipe, reader.where, audio_stream)
        except UsageError:
            reader.close()
            if reader.error is not None:
                raise reader.error from None
            raise
        self.duration = None

    def iter_sync(self, block_frames: int = 4096) -> Iterator[np.ndarray]:
        yield from super().iter_sync(block_frames)
        if self.reader.error is not None and not self.reader.stopped:
            raise self.reader.error

    def stop(self) -> None:
        self.reader.stop()

    def close(self) -> None:
        self.reader.close()
        super().close()


def open_url(
    url: str, wire: WireOptions, stall: float, audio_stream: int | None = None
) -> AudioSource:
    """The URL as an audio source (see the module docstring)."""
    from streamcli.audio.sources import open_file

    reader = HttpReader(url, wire, stall)
    if reader.length is None:  # live: no end in sight
        if import_av() is None:
            reader.close()
            raise UsageError(f"{reader.where}: a live stream needs FFmpeg: {INSTALL_HINT}")
        return LiveMediaSource(reader, audio_stream)
    with tempfile.NamedTemporaryFile(prefix="streamcli-url-", delete=False) as spool:
        try:
            shutil.copyfileobj(reader.pipe, spool, CHUNK_BYTES)
        finally:
            reader.close()
    try:
        if reader.error is not None:
            raise reader.error
        return open_file(spool.name, reader.where, audio_stream)
    finally:
        os.unlink(spool.name)  # the open file keeps the data readable on POSIX
