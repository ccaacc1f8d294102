"""The Veridas das-Peak session: two channels, one flow (``shared/protocols/veridas.md``).

Theory of operation. (1) An OAuth2 token (or a ready one). (2) The signalling channel
(Socket.IO) connects and emits ``initialize``; its events go through the sans-I/O
``VeridasSignalling`` machine. (3) On ``info-consumer-ready`` only, the audio channel opens:
a plain WebSocket run by an ``engine.session.Session`` around the Twilio or AudioHook client, fed by
``engine.feed`` (8 kHz μ-law, paced). (4) The audio stops when the result arrives, when the
consumer closes, or when the source ends; then the session waits for the result, at most
``timeout`` seconds. A result-success writes the credential to its file (mode 0600) before
the ``end`` event goes out; the credential itself never reaches an event, a trace or a log.

Errors never raise out of ``run``: they become ``Error`` events and the first one decides the
exit status. The audio channel dropping is not fatal at once: the consumer may drop the
socket because it has enough audio, and the result follows on the signalling channel, so
such an error waits ``AUDIO_GRACE`` seconds for a result before it counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcli import events as ev
from streamcli.audio.pacer import Pacer
from streamcli.audio.sources import AudioSource
from streamcli.backends.audiohook import AudiohookClient
from streamcli.backends.base import Backend
from streamcli.backends.twilio import TwilioMediaClient
from streamcli.backends.veridas import (
    REGISTER_NAMESPACE,
    SOCKETIO_PATH,
    RequestSettings,
    Token,
    TokenFailure,
    VeridasSignalling,
    parse_token_response,
    raw_message,
    redact,
    token_form,
)
from streamcli.engine.feed import feed, stop_feed
from streamcli.engine.interrupts import Interrupts
from streamcli.engine.run import Outcome, run_alone
from streamcli.engine.session import Session, SessionOptions, Tracer
from streamcli.exit import (
    ConnectError,
    ExitStatus,
    StreamcliError,
    UsageError,
    kind_for_status,
    status_for_error_kind,
)
from streamcli.redact import mask, public_url, redact_url, url_secrets
from streamcli.transport.socketio import SignallingConnection

EventHandler = Callable[[ev.Event], None]
AUDIO_GRACE = 2.0  # seconds an audio-channel failure waits for a result before it counts
AUDIO_CLOSE_WAIT = 3.0  # seconds to let the audio channel close cleanly after the result
BACKEND = "veridas"


@dataclass
class AudiohookSettings:
    api_key: str | None = None
    secret: str | None = None  # base64 client secret: signs the upgrade request
    organization_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class VeridasConfig:
    """Everything the session needs; the CLI builds it from options and environment."""

    url: str
    audio_url: str
    request: RequestSettings
    token_url: str
    client_id: str | None = None
    client_secret: str | None = None
    token: Token | None = None  # a ready token: no token request
    namespace: str = REGISTER_NAMESPACE
    socketio_path: str = SOCKETIO_PATH
    credential_out: str | None = None
    collected_audio_out: str | None = None  # result-success's second argument, as received
    audiohook: AudiohookSettings = field(default_factory=AudiohookSettings)

    def secrets(self) -> tuple[str, ...]:
        values = [self.client_secret, self.audiohook.api_key, self.audiohook.secret]
        if self.token is not None:
            values.append(self.token.access_token)
        values += credential_secrets(self.request.credential)
        for url in (self.url, self.audio_url, self.token_url):
            values += url_secrets(url)
        return tuple(dict.fromkeys(v for v in values if v))


# ---- token -------------------------------------------------------------------------------------
async def fetch_token(
    config: VeridasConfig, options: SessionOptions, trace: Tracer | None = None
) -> Token:
    """POST the client credentials (form body) to the token endpoint. ``trace`` shows the
    request and the answer, the secret and the token masked."""
    import aiohttp

    from streamcli.transport.websocket import tls_failure, tls_reason

    if config.token is not None:
        return config.token
    if not config.client_id or not config.client_secret:
        raise UsageError(
            "no credentials: set VERIDAS_CLIENT_ID and VERIDAS_CLIENT_SECRET, or VERIDAS_TOKEN"
        )
    where = public_url(config.token_url)  # no password, no query in a message
    wire = options.wire
    timeout = aiohttp.ClientTimeout(total=wire.connect_timeout * 3, connect=wire.connect_timeout)
    form = token_form(config.client_id, config.client_secret)
    if trace:
        shown = {k: (mask(v) if k == "client_secret" else v) for k, v in form.items()}
        fields = " ".join(f"{k}={v}" for k, v in shown.items())
        trace(BACKEND, "→", None, f"POST {redact_url(config.token_url)} form {fields}")
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(config.token_url, data=form, ssl=wire.ssl_context()) as resp,
        ):
            body = await resp.text(errors="replace")
            status = resp.status
    except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as e:
        # First: a certificate error is a ValueError too (ssl.CertificateError).
        raise tls_failure(where, tls_reason(e)) from None
    except (aiohttp.InvalidURL, ValueError):
        raise UsageError(f"invalid token URL {redact_url(config.token_url)!r}") from None
    except TimeoutError:
        raise ConnectError(f"cannot get a token from {where}: no answer in time") from None
    except (aiohttp.ClientError, OSError) as e:
        reason = getattr(getattr(e, "os_error", None), "strerror", None) or str(e)
        raise ConnectError(f"cannot get a token from {where}: {reason}") from None
    result = parse_token_response(status, body)
    if trace:
        if isinstance(result, Token):
            trace.secrets = (*trace.secrets, result.access_token)
        trace(BACKEND, "←", None, f"HTTP {status} {' '.join(body.split())[:500]}")
    if isinstance(result, TokenFailure):
        message = result.message
        if len(config.client_secret) >= 6:
            message = message.replace(config.client_secret, "…")  # never echo it back
        raise StreamcliError(message, status_for_error_kind(result.kind))
    return result


# ---- the credential file -----------------------------------------------------------------------
def check_credential_out(path: str, option: str = "--credential-out") -> None:
    """Fail before streaming when the file (a credential, the collected voice: both private)
    could not be written."""
    if path == "-":
        raise UsageError(f"{option}: give a file name (it is private: never printed)")
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    if target.exists() and not target.is_file():
        # /dev/stdout, /dev/full, a FIFO: the file is replaced atomically, never a device.
        raise UsageError(f"{option} {path}: not a regular file")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: no such directory {str(parent)!r}")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{option} {path}: cannot write in {str(parent)!r}")


def credential_secrets(credential: Any) -> list[str]:
    """What of a credential to mask: the string itself, or every string inside an object."""
    import json

    if isinstance(credential, str):
        return [credential]
    if isinstance(credential, dict | list):
        values = credential.values() if isinstance(credential, dict) else credential
        inner = [s for v in values for s in credential_secrets(v) if len(s) >= 8]
        return [json.dumps(credential), *inner]
    return []


def write_credential(path: str, credential: Any) -> None:
    """The credential to ``path``, mode 0600, as received (``as_bytes``)."""
    write_private(path, as_bytes(credential))


def write_private(path: str, data: bytes) -> None:
    """``data`` to ``path`` atomically, the file created with mode 0600."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".streamcli-", dir=target.parent or Path("."))
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_credential(path: str) -> Any:
    """The stored credential: a JSON object or array as that object (it was one when
    das-Peak sent it), anything else as the text."""
    import json

    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UsageError(f"--credential {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--credential {path}: cannot read it ({e})") from None
    if not text:
        raise UsageError(f"--credential {path}: the file is empty")
    if text[0] in "[{":
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        if isinstance(parsed, dict | list):
            return parsed
    return text


def as_bytes(value: Any) -> bytes:
    """A value das-Peak sent, to keep in a file as received: bytes as they are (the collected
    audio: raw 8 kHz μ-law), text as UTF-8, an object (a credential) as its JSON, which
    ``read_credential`` reads back as the object."""
    import json

    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


# ---- the session -------------------------------------------------------------------------------
class VeridasSession:
    def __init__(
        self,
        source: AudioSource,
        config: VeridasConfig,
        options: SessionOptions,
        emit: EventHandler,
        interrupts: Interrupts | None = None,
        on_audio: Callable[[object], None] | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.options = options
        self._emit_out = emit
        self.interrupts = interrupts or Interrupts()
        self.on_audio = on_audio
        self.signalling = VeridasSignalling(config.request, credential_file=config.credential_out)
        self.trace = Tracer(config.secrets()) if options.debug else None
        self.conn: SignallingConnection | None = None
        self.stream: Session | None = None
        self.errors: list[ev.Error] = []
        self.result_event = asyncio.Event()  # the signalling machine finished (result or error)
        self.ready_event = asyncio.Event()  # info-consumer-ready
        self.audio_error: ev.Error | None = None
        self.audio_failed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._audio_cut = False  # the feed was stopped before the end of the audio
        self._emit_tasks: set[asyncio.Task[None]] = set()

    # ---- events out --------------------------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        if isinstance(event, ev.Error):
            if self.errors:
                return  # the first error decides; the rest would only repeat it
            self.errors.append(event)
        self._emit_out(event)

    def _error(self, message: str, kind: str) -> None:
        self.emit(ev.Error(backend=BACKEND, message=message, kind=kind))

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # ---- signalling --------------------------------------------------------------------------
    def _on_sio_event(self, name: str, args: tuple[Any, ...]) -> None:
        if self.trace:
            self.trace(BACKEND, "←", raw_message(name, args))
        if self.options.raw:
            self.emit(ev.Raw(backend=BACKEND, message=raw_message(name, args)))
        self.signalling.receive_event(name, args, self._now())
        self._pump()

    def _on_sio_disconnect(self, reason: str | None) -> None:
        if self.trace:
            self.trace(BACKEND, "←", None, f"disconnect {reason or ''}".strip())
        self.signalling.receive_disconnect(reason, self._now())
        self._pump()

    def _pump(self) -> None:
        for name, data in self.signalling.emits_to_send():
            task = asyncio.ensure_future(self._send_emit(name, data))
            self._emit_tasks.add(task)
            task.add_done_callback(self._emit_tasks.discard)
        for event in self.signalling.events_received():
            failures: list[ev.Error] = []
            if isinstance(event, ev.End):
                event, failures = self._save_files(event)
            self.emit(event)
            for failure in failures:
                self.emit(failure)
        if self.signalling.consumer_ready:
            self.ready_event.set()
        if self.signalling.finished:
            self.result_event.set()

    def _save_files(self, end: ev.End) -> tuple[ev.End, list[ev.Error]]:
        """The credential and the collected audio; the result reports only what was saved, and
        a file that could not be written is exit 7, reported after the result."""
        failures, extra = [], dict(end.extra)
        if self.signalling.credential is not None:
            failure = self._save_credential()
            if failure is not None:
                failures.append(failure)
                extra.pop("credential_file", None)
        path, audio = self.config.collected_audio_out, self.signalling.collected_audio
        if path is not None and audio is None:
            self.emit(
                ev.Warning(
                    backend=BACKEND,
                    message=f"das-Peak sent no collected audio with its result: {path} "
                    "was not written",
                )
            )
        elif path is not None:
            data = as_bytes(audio)
            try:
                write_private(path, data)
            except OSError as e:
                failures.append(
                    ev.Error(
                        backend=BACKEND,
                        message=f"cannot write the collected audio to {path}: {e.strerror or e}",
                        kind=ev.OUTPUT,
                    )
                )
            else:
                extra |= {"collected_audio_file": path, "collected_audio_bytes": len(data)}
        return dataclasses.replace(end, extra=extra), failures

    def _save_credential(self) -> ev.Error | None:
        """Write the credential; a failure is exit 7, reported after the result."""
        path = self.config.credential_out
        if path is None:
            return None
        try:
            write_credential(path, self.signalling.credential)
        except OSError as e:
            return ev.Error(
                backend=BACKEND,
                message=f"cannot write the credential to {path}: {e.strerror or e} (the voice "
                "was registered, but its credential is lost: register again)",
                kind=ev.OUTPUT,
            )
        return None

    async def _send_emit(self, name: str, data: Any) -> None:
        assert self.conn is not None
        if self.trace:
            self.trace(BACKEND, "→", raw_message(name, (redact(data),)))
        try:
            await self.conn.emit(name, data)
        except StreamcliError as e:
            self.signalling.receive_disconnect(e.message, self._now())
            self._pump()

    # ---- audio -------------------------------------------------------------------------------
    def _make_audio_backend(self) -> Backend:
        c = self.config
        if c.request.audio_protocol == "twilio":
            return TwilioMediaClient(c.audio_url, c.request.call_id)
        return AudiohookClient(
            c.audio_url,
            conversation_id=c.request.call_id,
            organization_id=c.audiohook.organization_id,
            api_key=c.audiohook.api_key,
            client_secret=c.audiohook.secret,
            created=int(time.time()) if c.audiohook.secret else None,
        )

    def _on_audio_event(self, event: ev.Event) -> None:
        """Audio-channel events, told as this backend's; its session start is a status."""
        if isinstance(event, ev.Status) and event.state == "audio-sent" and self._audio_cut:
            return
        if isinstance(event, ev.SessionStarted):
            url = event.info.get("url", "")
            event = ev.Status(
                backend=BACKEND,
                state="audio-connected",
                message=f"audio channel connected to {url}",
            )
        event = dataclasses.replace(event, backend=BACKEND)
        if isinstance(event, ev.Error):
            if self.signalling.finished:
                return  # the result is in: the audio channel no longer matters
            if event.kind == ev.CONNECTION:
                self.audio_error = self.audio_error or event
                self.audio_failed.set()
                return
            self.emit(event)
            self.audio_failed.set()
            return
        self.emit(event)

    async def _stream_audio(self) -> None:
        """Open the audio channel and feed it until the source ends or something stops it."""
        backend = self._make_audio_backend()
        stream = Session(backend, self._on_audio_event, self.options)
        self.stream = stream
        if not await stream.connect():
            if self.audio_error is not None:
                self.emit(self.audio_error)  # the consumer is unreachable: no reason to wait
            return
        self._runner = asyncio.create_task(stream.run())
        cut = asyncio.Event()
        feeder = asyncio.create_task(
            feed(
                self.source,
                [stream],
                Pacer(0.0 if self.source.live else self.options.speed),
                self.options.chunk_ms,
                self.options.duration,
                cut,
                self.on_audio,
            )
        )
        others = [
            asyncio.create_task(e.wait())
            for e in (self.result_event, self.audio_failed, self.interrupts.graceful)
        ]
        try:
            await asyncio.wait({feeder, self._runner, *others}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in others:
                t.cancel()
            if not feeder.done():
                self._audio_cut = True  # not "all audio sent": the rest is never sent
                cut.set()
                await stop_feed(self.source, feeder, drain=1.0)
        if not feeder.cancelled() and feeder.exception() is not None:
            exc = feeder.exception()
            self._error(str(exc), ev.USAGE if isinstance(exc, StreamcliError) else ev.SERVER)
        if not backend.finished:
            stream.end_audio()  # twilio: close the socket; audiohook: close -> closed

    async def _close_audio(self) -> None:
        """Let the audio channel close cleanly for a moment, then drop it."""
        stream, runner = self.stream, self._runner
        if stream is None or runner is None:
            return
        if not self.interrupts.abort.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(runner), AUDIO_CLOSE_WAIT)
        if not runner.done():
            # Whatever this reports is dropped: the session has its result or its error.
            stream.fail("the session is over", ev.CONNECTION)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(runner, AUDIO_CLOSE_WAIT)

    # ---- the flow ----------------------------------------------------------------------------
    async def _wait_for(self, *events: asyncio.Event, timeout: float) -> bool:
        """Wait until any of ``events`` is set; False on timeout."""
        tasks = [asyncio.create_task(e.wait()) for e in events]
        try:
            done, _ = await asyncio.wait(
                tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for t in tasks:
                t.cancel()
        return bool(done)

    async def _connect(self) -> None:
        """The token and the Socket.IO connection. ``--reconnect N`` retries a transient failure
        here (no connection, HTTP 5xx): no das-Peak session exists yet. Once ``initialize`` is
        out, a lost connection ends the run (exit 4): das-Peak cannot resume a session on a new
        connection, and its audio and ``call_id`` belong to the first one."""
        from streamcli.transport.websocket import PermanentConnectError

        c, attempt = self.config, 0
        while True:
            try:
                token = await fetch_token(c, self.options, self.trace)
                if not token.type_given:
                    message = "the token endpoint sent no token_type: sending a Bearer token"
                    self.emit(ev.Warning(backend=BACKEND, message=message))
                if self.trace:  # the token is masked already (fetch_token, config.secrets())
                    where = f"connect {redact_url(c.url)} namespace {c.namespace}"
                    self.trace(BACKEND, "→", None, where)
                self.conn = await SignallingConnection.open(
                    c.url,
                    namespace=c.namespace,
                    headers={"Authorization": token.authorization},
                    on_event=self._on_sio_event,
                    on_disconnect=self._on_sio_disconnect,
                    options=self.options.wire,
                    socketio_path=c.socketio_path,
                )
                return
            except StreamcliError as e:
                transient = e.status == ExitStatus.CONNECTION and not isinstance(
                    e, PermanentConnectError
                )
                if not transient or attempt >= self.options.reconnect:
                    raise
                delay = self.options.backoff_delay(attempt)
                attempt += 1
                self.emit(
                    ev.Status(
                        backend=BACKEND,
                        state="reconnecting",
                        message=f"{e.message}: retrying in {delay:.1f} s "
                        f"({attempt} of {self.options.reconnect})",
                    )
                )
                await asyncio.sleep(delay)

    async def _main(self) -> None:
        c = self.config
        await self._connect()
        self.emit(
            ev.SessionStarted(
                backend=BACKEND,
                info={
                    "url": public_url(c.url),
                    "namespace": c.namespace,
                    "call_id": c.request.call_id,
                    "audio_protocol": c.request.audio_protocol,
                },
            )
        )
        self.signalling.start(self._now())
        self._pump()
        timeout = self.options.timeout
        waiting = (self.ready_event, self.result_event, self.interrupts.graceful)
        if not await self._wait_for(*waiting, timeout=timeout):
            self._error(f"no info-consumer-ready from das-Peak within {timeout:g} s", ev.TIMEOUT)
            return
        if self.signalling.finished or self.interrupts.graceful.is_set():
            return
        await self._stream_audio()
        if self.errors or self.signalling.finished:
            return
        # The audio is over (sent, or the consumer closed): now the result, or a timeout.
        grace = min(AUDIO_GRACE, timeout) if self.audio_error is not None else timeout
        if await self._wait_for(self.result_event, timeout=grace) or self.errors:
            return
        if self.audio_error is not None:
            self.emit(self.audio_error)
        else:
            self._error(
                f"no result from das-Peak within {timeout:g} s after the audio ended", ev.TIMEOUT
            )

    # ---- as an engine job (``engine.run.run_sessions``) ---------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """The whole flow; ``stop`` (the first Ctrl-C) is ``interrupts.graceful``, which the
        flow watches itself. Never raises StreamcliError."""
        await self._guarded_main()

    def abort(self) -> None:
        """Cancelled (a second Ctrl-C): the audio channel was dropped without its close wait."""

    def outcome(self, interrupted: bool) -> Outcome:
        status = ExitStatus.OK
        if self.errors:
            status = status_for_error_kind(self.errors[0].kind)
        if interrupted and status == ExitStatus.OK and not self.signalling.finished:
            status = ExitStatus.INTERRUPTED
        return Outcome(status, interrupted=interrupted)

    async def _guarded_main(self) -> None:
        try:
            await self._main()
        except StreamcliError as e:
            self._error(e.message, kind_for_status(e.status))
        finally:
            await self._close_audio()
            await self._close()

    async def _close(self) -> None:
        for t in list(self._emit_tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(t, 1.0)
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await conn.close()


async def run_veridas(
    source: AudioSource,
    config: VeridasConfig,
    options: SessionOptions,
    emit: EventHandler,
    interrupts: Interrupts | None = None,
    on_audio: Callable[[object], None] | None = None,
) -> Outcome:
    """One register/verify run: the Veridas flow as the one job of ``engine.run.run_alone``."""
    interrupts = interrupts or Interrupts()
    session = VeridasSession(source, config, options, emit, interrupts, on_audio)
    report = await run_alone(session, interrupts)
    if report.aborted:
        return Outcome.aborted(interrupts)
    return session.outcome(report.interrupted)
