"""Genesys AudioHook protocol v2, client role (``shared/protocols/veridas.md`` §3b), sans-I/O.

Theory of operation. The client plays what Genesys Cloud plays: it opens the WebSocket with
the ``Audiohook-*`` headers (and, with a client secret, an HTTP Message Signature), sends
``open`` and waits for ``opened`` before any audio, streams headerless PCMU as binary frames,
pings every few seconds, and ends with ``close`` -> ``closed``. Every text message carries
``version``, ``id`` (the session id), ``type``, ``seq`` (1, 2, ... per sender) and
``parameters``; client messages add ``serverseq`` (the last server seq seen) and ``position``
(the audio sent so far, ``PT<seconds>S``). The states::

    CONNECTING --start--> OPENING --opened--> OPEN --end_audio / disconnect--> CLOSING
    CLOSING --closed / socket closed--> CLOSED (finished)

A server ``disconnect`` (``completed`` once the consumer has enough audio, ``unauthorized``,
``error``) is answered with ``close {reason: "disconnect"}``. A broken server message (not
JSON, wrong version, a seq out of order) is answered as the reference client does: an
``error`` message and ``close {reason: "error"}``, reported as a protocol error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

from streamcli import events as ev
from streamcli.backends.base import Backend, ConnectRequest
from streamcli.exit import StreamcliError, handshake_refusal
from streamcli.redact import public_url

PROTOCOL_VERSION = "2"
MAX_MESSAGE_CHARS = 64 * 1024  # text messages are at most 64 KB (the spec)
OPEN_TIMEOUT = 5.0  # give up waiting for "opened" (veridas.md: "give up after ~5 s")
PING_INTERVAL = 5.0
CLOSE_TIMEOUT = 5.0  # wait this long for "closed" after our "close"
SIGNATURE_LIFETIME = 30  # seconds between "created" and "expires" (the reference client's)
SAMPLE_RATE = 8000
OFFERED_MEDIA = (
    {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": SAMPLE_RATE},
)
# The signed components, in this order (veridas.md §3b).
SIGNED_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)

CONNECTING, OPENING, OPEN, CLOSING, CLOSED = "connecting", "opening", "open", "closing", "closed"


# ---- HTTP Message Signature (hmac-sha256) ------------------------------------------------------
def sign_request(
    *,
    url: str,
    organization_id: str,
    session_id: str,
    correlation_id: str,
    api_key: str,
    client_secret: str,
    nonce: str,
    created: int,
    expires: int | None = None,
    label: str = "sig1",
) -> dict[str, str]:
    """The ``Signature-Input`` and ``Signature`` headers for the AudioHook upgrade request.

    ``client_secret`` is base64; its decoded bytes are the HMAC key. ``@request-target`` is the
    path and query of ``url``; ``@authority`` its host, with the port only when it is not the
    scheme's default (as the reference client normalizes it).
    """
    key = decode_client_secret(client_secret)
    values = {
        "@request-target": request_target(url),
        "@authority": authority(url),
        "audiohook-organization-id": organization_id,
        "audiohook-session-id": session_id,
        "audiohook-correlation-id": correlation_id,
        "x-api-key": api_key,
    }
    expires = created + SIGNATURE_LIFETIME if expires is None else expires
    params = (
        "(" + " ".join(_sf_string(c) for c in SIGNED_COMPONENTS) + ")"
        f';keyid={_sf_string(api_key)};nonce={_sf_string(nonce)};alg="hmac-sha256"'
        f";created={created};expires={expires}"
    )
    lines = [f"{_sf_string(c)}: {values[c].strip()}" for c in SIGNED_COMPONENTS]
    lines.append(f'"@signature-params": {params}')
    digest = hmac.new(key, "\n".join(lines).encode("utf-8"), hashlib.sha256).digest()
    return {
        "Signature-Input": f"{label}={params}",
        "Signature": f"{label}=:{base64.b64encode(digest).decode('ascii')}:",
    }


def decode_client_secret(client_secret: str) -> bytes:
    """The HMAC key: the base64-decoded client secret. ValueError when it is not base64."""
    try:
        key = base64.b64decode(client_secret.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the AudioHook client secret must be base64") from None
    if not key:
        raise ValueError("the AudioHook client secret is empty")
    return key


def wire_url(url: str) -> str:
    """``url`` as the WebSocket client sends it. aiohttp hands URLs to yarl, which normalizes
    percent-escapes (``%2F`` -> ``/`` in a query, ``%7e`` -> ``~``); a signature over
    the typed URL would not match the request target the server receives. yarl's form is a
    fixed point, so the transport sends this string unchanged."""
    from yarl import URL  # aiohttp's own URL library (a dependency of aiohttp)

    try:
        return str(URL(url))
    except (ValueError, TypeError):
        return url  # the transport reports the invalid URL


def request_target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def authority(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"ws": 80, "http": 80, "wss": 443, "https": 443}.get(parts.scheme)
    port = parts.port
    return host if port is None or port == default else f"{host}:{port}"


def _sf_string(value: str) -> str:
    """An RFC 8941 structured-field string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_position(samples: int, rate: int = SAMPLE_RATE) -> str:
    """``PT<seconds>S`` with no trailing zeros: 0 -> ``PT0S``, 12000 samples -> ``PT1.5S``."""
    seconds = f"{samples / rate:.6f}".rstrip("0").rstrip(".")
    return f"PT{seconds}S"


# ---- the client state machine ------------------------------------------------------------------
class AudiohookClient(Backend):
    """The AudioHook client side of one session (one WebSocket)."""

    name: ClassVar[str] = "audiohook"
    sample_rate = SAMPLE_RATE
    encoding: ClassVar[str] = "mulaw"

    def __init__(
        self,
        url: str,
        *,
        conversation_id: str,
        organization_id: str,
        api_key: str | None = None,
        client_secret: str | None = None,
        created: int | None = None,
        nonce: str | None = None,
        session_id: str | None = None,
        correlation_id: str | None = None,
        participant: dict[str, str] | None = None,
        open_timeout: float = OPEN_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
        close_timeout: float = CLOSE_TIMEOUT,
        speaker: str | None = None,
    ) -> None:
        super().__init__(speaker=speaker)
        if client_secret is not None:
            if not api_key:
                raise ValueError("an AudioHook signature needs the API key (its keyid)")
            if created is None:
                raise ValueError("an AudioHook signature needs its creation time")
            decode_client_secret(client_secret)  # fail early on a secret that is not base64
        self.url = url
        self.conversation_id = conversation_id
        self.organization_id = organization_id
        self.api_key = api_key
        self.client_secret = client_secret
        self.created = created
        self.nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode("ascii")
        self.session_id = session_id or str(uuid.uuid4())
        self.correlation_id = correlation_id or str(uuid.uuid4())
        self.participant = participant or {
            "id": str(uuid.uuid4()),
            "ani": "",
            "aniName": "",
            "dnis": "",
        }
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.close_timeout = close_timeout
        self.state = CONNECTING
        self.paused = False
        self.seq = 0  # our last seq
        self.serverseq = 0  # the last seq the server sent
        self.samples_sent = 0
        self.close_reason: str | None = None
        self.disconnect_reason: str | None = None
        self._open_due: float | None = None
        self._ping_due: float | None = None
        self._close_due: float | None = None
        self._pending_ping: int | None = None
        self._pong_warned = False
        self._handlers: dict[str, Callable[[dict[str, Any], float], None]] = {
            "opened": self._on_opened,
            "closed": self._on_closed,
            "pong": self._on_pong,
            "pause": self._on_pause,
            "resume": self._on_resume,
            "disconnect": self._on_disconnect,
            "event": self._on_ignored,
            "updated": self._on_ignored,
            "reconnect": self._on_reconnect,
        }

    # ---- what the session calls -------------------------------------------------------------
    @property
    def position(self) -> str:
        return format_position(self.samples_sent, self.sample_rate)

    def connect_request(self) -> ConnectRequest:
        url = wire_url(self.url)  # sign exactly the request target that goes on the wire
        headers = {
            "Audiohook-Organization-Id": self.organization_id,
            "Audiohook-Session-Id": self.session_id,
            "Audiohook-Correlation-Id": self.correlation_id,
        }
        secrets_: list[str] = []
        if self.api_key:
            headers["X-API-KEY"] = self.api_key
            secrets_.append(self.api_key)
        if self.client_secret is not None and self.api_key and self.created is not None:
            signature = sign_request(
                url=url,
                organization_id=self.organization_id,
                session_id=self.session_id,
                correlation_id=self.correlation_id,
                api_key=self.api_key,
                client_secret=self.client_secret,
                nonce=self.nonce,
                created=self.created,
            )
            headers.update(signature)
            secrets_ += [self.client_secret, signature["Signature"]]
        return ConnectRequest(url=url, headers=headers, secrets=tuple(secrets_))

    def handshake_error(self, status: int, message: str) -> StreamcliError:
        return handshake_refusal(status, message, f"the audio consumer {public_url(self.url)}")

    def start(self, now: float) -> None:
        if self.state != CONNECTING:
            return
        self._send_message(
            "open",
            {
                "organizationId": self.organization_id,
                "conversationId": self.conversation_id,
                "participant": dict(self.participant),
                "media": [dict(m) for m in OFFERED_MEDIA],
            },
        )
        self.state = OPENING
        self._open_due = now + self.open_timeout

    @property
    def ready_for_audio(self) -> bool:
        # Audio before "opened" is a protocol error (veridas.md §3b).
        return self.state == OPEN and not self.paused

    def send_audio(self, data: bytes, now: float) -> None:
        if not self.ready_for_audio or not data:
            return
        self._send(data)
        self.samples_sent += len(data)  # one byte per PCMU sample
        self.audio_seconds_sent = self.samples_sent / self.sample_rate

    def end_audio(self, now: float) -> None:
        """No more audio (or the caller has what it needs): ``close {reason: "end"}``."""
        if self.state in (OPENING, OPEN):
            self._begin_close("end", now)
        elif self.state == CONNECTING and not self.finished:
            self.state = CLOSED
            self.finished = True

    def receive_text(self, text: str, now: float) -> None:
        if self.finished:
            return
        if len(text) > MAX_MESSAGE_CHARS:
            self._protocol_error(413, "message larger than 64 KB", now)
            return
        try:
            msg = json.loads(text)
        except ValueError:
            self._protocol_error(400, "message not well-formed JSON", now)
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self._protocol_error(400, "not an AudioHook server message", now)
            return
        if msg.get("version") != PROTOCOL_VERSION:
            self._protocol_error(400, f"unsupported version {msg.get('version')!r}", now)
            return
        seq = msg.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq != self.serverseq + 1:
            self._protocol_error(400, f"seq {seq!r} after serverseq {self.serverseq}", now)
            return
        self.serverseq = seq
        params = msg.get("parameters")
        params = params if isinstance(params, dict) else {}
        handler = self._handlers.get(msg["type"])
        if handler is None:
            self._emit(ev.Warning, message=f"ignored an unknown AudioHook message {msg['type']!r}")
            return
        handler(params, now)

    def receive_binary(self, data: bytes, now: float) -> None:
        self._emit(
            ev.Warning, message=f"ignored {len(data)} bytes of binary data from the consumer"
        )

    def receive_close(self, code: int | None, reason: str, now: float) -> None:
        if self.finished:
            return
        if self.state == CLOSING or code in (1000, 1001):
            # Closing anyway, or the consumer ended the stream cleanly.
            self._done("audio-closed", "the audio consumer closed the connection")
            return
        detail = (
            f"code {code}{', ' + reason if reason else ''}" if code else reason or "no close frame"
        )
        self._fail(f"the audio consumer closed the connection ({detail})", ev.CONNECTION)

    def next_deadline(self) -> float | None:
        due = [t for t in (self._open_due, self._ping_due, self._close_due) if t is not None]
        return min(due) if due else None

    def tick(self, now: float) -> None:
        if self.finished:
            return
        if self._open_due is not None and now >= self._open_due and self.state == OPENING:
            self._open_due = None
            self._fail(
                f"the audio consumer did not answer 'open' within {self.open_timeout:g} s",
                ev.TIMEOUT,
            )
            return
        if self._close_due is not None and now >= self._close_due and self.state == CLOSING:
            self._close_due = None
            self._emit(ev.Warning, message="no 'closed' from the audio consumer: closing anyway")
            self._done("audio-closed", "the audio channel is closed")
            return
        if self._ping_due is not None and now >= self._ping_due and self.state == OPEN:
            self._ping(now)

    # ---- server messages --------------------------------------------------------------------
    def _on_opened(self, params: dict[str, Any], now: float) -> None:
        if self.state != OPENING:
            self._protocol_error(409, f"unexpected 'opened' in state {self.state}", now)
            return
        media = params.get("media")
        if not isinstance(media, list) or len(media) != 1:
            self._protocol_error(400, "'opened' must select exactly one of the offered media", now)
            return
        if media[0] not in OFFERED_MEDIA:
            self._protocol_error(
                400, f"'opened' selected media that was not offered: {media[0]}", now
            )
            return
        self.state = OPEN
        self._open_due = None
        self._ping_due = now + self.ping_interval
        self._emit(ev.Status, state="audio-open", message="the audio consumer opened the stream")
        if params.get("startPaused") is True:
            self._pause()  # the stream begins paused: say so, hold the audio until "resume"

    def _on_closed(self, params: dict[str, Any], now: float) -> None:
        if self.state != CLOSING:
            self._protocol_error(409, f"unexpected 'closed' in state {self.state}", now)
            return
        self._done("audio-closed", "the audio channel is closed")

    def _on_pong(self, params: dict[str, Any], now: float) -> None:
        self._pending_ping = None

    # A server may send "pause" or "resume" again to ask for the state: every one is answered.
    def _on_pause(self, params: dict[str, Any], now: float) -> None:
        if self.state == OPEN:
            self._pause()

    def _pause(self) -> None:
        self._send_message("paused", {})
        if not self.paused:
            self.paused = True
            self._emit(
                ev.Status, state="audio-paused", message="the audio consumer paused the stream"
            )

    def _on_resume(self, params: dict[str, Any], now: float) -> None:
        if self.state != OPEN:
            return
        # Audio is held, not dropped, while paused: nothing was discarded.
        self._send_message("resumed", {"start": self.position, "discarded": "PT0S"})
        if self.paused:
            self.paused = False
            self._emit(
                ev.Status, state="audio-open", message="the audio consumer resumed the stream"
            )

    def _on_disconnect(self, params: dict[str, Any], now: float) -> None:
        reason = params.get("reason")
        info = params.get("info")
        detail = f": {info}" if isinstance(info, str) and info else ""
        self.disconnect_reason = reason if isinstance(reason, str) else None
        if self.state in (OPENING, OPEN):
            self._begin_close("disconnect", now)
        if reason == "completed":
            self._emit(
                ev.Status,
                state="audio-complete",
                message=f"the audio consumer has the audio it needs{detail}",
            )
        elif reason == "unauthorized":
            self._fail(
                f"the audio consumer refused the credentials (unauthorized{detail})", ev.AUTH
            )
        else:
            self._fail(
                f"the audio consumer disconnected ({reason}{detail})", ev.SERVER, code=reason
            )

    def _on_reconnect(self, params: dict[str, Any], now: float) -> None:
        self._emit(ev.Warning, message="the audio consumer asked for a reconnect: not supported")

    def _on_ignored(self, params: dict[str, Any], now: float) -> None:
        pass

    # ---- helpers ----------------------------------------------------------------------------
    def _send_message(self, type_: str, parameters: dict[str, Any]) -> None:
        self.seq += 1
        message = {
            "version": PROTOCOL_VERSION,
            "type": type_,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "id": self.session_id,
            "position": self.position,
            "parameters": parameters,
        }
        self._send(json.dumps(message, separators=(",", ":")))

    def _ping(self, now: float) -> None:
        if self._pending_ping is not None and not self._pong_warned:
            self._pong_warned = True
            self._emit(ev.Warning, message="the audio consumer does not answer pings")
        self._send_message("ping", {})
        self._pending_ping = self.seq
        self._ping_due = now + self.ping_interval

    def _begin_close(self, reason: str, now: float) -> None:
        self.close_reason = reason
        self._send_message("close", {"reason": reason})
        self.state = CLOSING
        self._open_due = self._ping_due = None
        self._close_due = now + self.close_timeout

    def _protocol_error(self, code: int, message: str, now: float) -> None:
        if self.state in (OPENING, OPEN):
            self._send_message("error", {"code": code, "message": message})
            self._begin_close("error", now)
        self._fail(f"the audio consumer broke the AudioHook protocol: {message}", ev.PROTOCOL)

    def _done(self, state: str, message: str) -> None:
        self.state = CLOSED
        self._open_due = self._ping_due = self._close_due = None
        self._emit(ev.Status, state=state, message=message)
        self.finished = True
