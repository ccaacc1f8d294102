"""Veridas das-Peak Streaming, the signalling side (``shared/protocols/veridas.md``), sans-I/O.

Theory of operation. das-Peak has two channels. This module is the Socket.IO one, without
the socket: it builds the OAuth2 token request and reads its answer, builds ``initialize``,
and turns the server's events (each an event name plus one or more arguments) into normalized
events. The audio travels on a separate WebSocket (``twilio.py`` or ``audiohook.py``), which
the session opens when this machine reports ``consumer_ready``.

Events in -> out:
- ``info-consumer-ready`` -> ``Status("consumer-ready")`` and ``consumer_ready = True``
- ``info-vad-status``     -> ``Progress`` (voiced seconds toward ``audio_total_duration``)
- ``result-success``      -> ``End`` (register: the credential is kept in ``credential`` for
  the session to write to a file; it never goes into an event)
- other ``result-*`` and ``error-*`` -> ``Error`` with the payload verbatim (credential removed)

The verification flow is not publicly documented: its namespace, its request key and the field
that carries the stored credential are settings, not constants.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from streamcli import events as ev
from streamcli.backends.base import as_float

DEFAULT_URL = "https://api.eu.veri-das.com"
TOKEN_PATH = "/socket.io/oauth2/token"
SOCKETIO_PATH = "socket.io"
REGISTER_NAMESPACE = "/socket.io/register"
VERIFY_NAMESPACE = "/socket.io/verify"  # unconfirmed (veridas.md §2)
REGISTER_REQUEST_KEY = "register_request"
VERIFY_REQUEST_KEY = "verify_request"  # unconfirmed
CREDENTIAL_FIELD = "credential"
AUDIO_PROTOCOLS = ("twilio", "audiohook")
REGISTER, VERIFY = "register", "verify"
REDACTED = "<redacted>"

# A result-success whose words say otherwise is not a success (e.g. "Verification: rejected").
_NEGATIVE = re.compile(
    r"\b(reject\w*|denied|deny|fail\w*|not (approved|verified|accepted))\b", re.I
)
_VERDICT_FLAGS = ("verified", "accepted", "approved", "match", "success")
_AUTH_ERRORS = {"invalid_client", "invalid_grant", "unauthorized_client", "access_denied"}


# ---- token (OAuth 2.0 client credentials) ------------------------------------------------------
@dataclass(frozen=True)
class Token:
    access_token: str
    token_type: str = "Bearer"
    expires_in: float | None = None
    type_given: bool = True  # False: the endpoint sent no token_type and Bearer is assumed

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value: ``<token_type> <access_token>`` (veridas.md §1)."""
        return f"{self.token_type} {self.access_token}"


@dataclass(frozen=True)
class TokenFailure:
    message: str
    kind: str


def default_token_url(service_url: str) -> str:
    """The token endpoint on the service's host: ``https://HOST/socket.io/oauth2/token``."""
    p = urlsplit(service_url)
    scheme = {"ws": "http", "wss": "https"}.get(p.scheme, p.scheme)
    return urlunsplit((scheme, p.netloc, TOKEN_PATH, "", ""))


def token_form(client_id: str, client_secret: str) -> dict[str, str]:
    return {
        "client_id": client_id,
        "client_secret": client_secret,
        "grant_type": "client_credentials",
    }


def token_from_value(value: str) -> Token:
    """A ready token (``VERIDAS_TOKEN``): ``<type> <token>``, or a bare token (Bearer)."""
    value = value.strip()
    if " " in value:
        token_type, access_token = value.split(None, 1)
        return Token(access_token=access_token.strip(), token_type=token_type)
    return Token(access_token=value)


def parse_token_response(status: int, body: str) -> Token | TokenFailure:
    """Read the token endpoint's answer. Never raises: a bad answer is a ``TokenFailure``."""
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        data = None
    if 200 <= status < 300:
        if isinstance(data, dict) and isinstance(data.get("access_token"), str):
            token_type = data.get("token_type")
            given = token_type.strip() if isinstance(token_type, str) else ""
            return Token(
                access_token=data["access_token"],
                token_type=given or "Bearer",
                expires_in=as_float(data.get("expires_in")),
                type_given=bool(given),
            )
        if data is None:
            text = " ".join(body.split())[:80]
            return TokenFailure(
                "the token endpoint answered without an access_token: its answer is not JSON "
                f"({text or 'empty'}); check --token-url",
                ev.PROTOCOL,
            )
        return TokenFailure("the token endpoint answered without an access_token", ev.PROTOCOL)
    reason = _token_error_reason(data, body)
    text = f"the token endpoint refused the client credentials: HTTP {status}{reason}"
    error = data.get("error") if isinstance(data, dict) else None
    if status in (401, 403) or (status == 400 and error in _AUTH_ERRORS):
        return TokenFailure(text, ev.AUTH)
    if status == 404:
        return TokenFailure(
            f"no token endpoint there: HTTP 404 (check --token-url){reason}", ev.USAGE
        )
    if status >= 500:
        return TokenFailure(f"the token endpoint failed: HTTP {status}{reason}", ev.CONNECTION)
    return TokenFailure(f"the token request failed: HTTP {status}{reason}", ev.SERVER)


def _token_error_reason(data: Any, body: str) -> str:
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("error", "error_description", "message") if data.get(k)]
        if parts:
            return " (" + ": ".join(parts) + ")"
    text = " ".join(body.split())
    return f" ({text[:120]})" if text else ""


# ---- signalling --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestSettings:
    """What ``initialize`` asks for. ``credential`` is the stored voiceprint (verify only)."""

    audio_protocol: str
    call_id: str
    model_hash: str
    mode: str = REGISTER
    threshold: float = 0.8
    duration: float = 5.0
    request_key: str = REGISTER_REQUEST_KEY
    credential: Any = None
    credential_field: str = CREDENTIAL_FIELD


class VeridasSignalling:
    """The signalling state machine. Drain style: ``emits_to_send()`` / ``events_received()``."""

    name: ClassVar[str] = "veridas"

    def __init__(self, settings: RequestSettings, *, credential_file: str | None = None) -> None:
        if settings.audio_protocol not in AUDIO_PROTOCOLS:
            raise ValueError(f"audio protocol must be one of {', '.join(AUDIO_PROTOCOLS)}")
        if settings.mode not in (REGISTER, VERIFY):
            raise ValueError("mode must be register or verify")
        self.settings = settings
        self.credential_file = credential_file
        self._emits: list[tuple[str, Any]] = []
        self._events: list[ev.Event] = []
        self.started = False
        self.consumer_ready = False
        self.finished = False
        self.credential: Any = None  # from result-success; never put into an event
        self.collected_audio: Any = None  # result-success's second argument, when it has one
        self.result: dict[str, Any] | None = None

    # ---- out ---------------------------------------------------------------------------------
    def initialize_payload(self) -> dict[str, Any]:
        s = self.settings
        request: dict[str, Any] = {
            "authenticity_threshold": s.threshold,
            "audio_total_duration": s.duration,
            "model_hash": s.model_hash,
        }
        if s.mode == VERIFY:
            request[s.credential_field] = s.credential
        # Metadata values are strings (veridas.md §2), the sample rate and channels included.
        metadata = {
            "audio_protocol": s.audio_protocol,
            "audio_format": "raw",
            "audio_codec": "mulaw",
            "sample_format": "",
            "sample_rate": "8000",
            "channels": "1",
            "call_id": s.call_id,
        }
        return {"metadata": metadata, s.request_key: request}

    def start(self, now: float) -> None:
        if not self.started:
            self.started = True
            self._emits.append(("initialize", self.initialize_payload()))

    def emits_to_send(self) -> list[tuple[str, Any]]:
        out, self._emits = self._emits, []
        return out

    def events_received(self) -> list[ev.Event]:
        out, self._events = self._events, []
        return out

    # ---- in ----------------------------------------------------------------------------------
    def receive_event(self, name: str, args: tuple[Any, ...], now: float) -> None:
        """One server event. ``result-success`` may carry the collected audio as a second
        argument: it is kept in ``collected_audio``; other extra arguments are ignored."""
        if self.finished:
            return
        payload = event_payload(args)
        if name == "info-consumer-ready":
            self.consumer_ready = True
            self._emit(ev.Status, state="consumer-ready", message=_content(payload) or name)
        elif name == "info-vad-status":
            self._on_vad(payload)
        elif name == "result-success":
            if len(args) > 1:
                self.collected_audio = args[1]
            self._on_success(name, payload)
        elif name.startswith("result-") and not args:
            self._fail(f"das-Peak answered {name} without a payload", ev.SERVER, name)
        elif name.startswith("result-"):
            self._fail(f"das-Peak answered {name}: {describe_payload(payload)}", ev.SERVER, name)
        elif name.startswith("error-"):
            self._fail(f"das-Peak reported {name}: {describe_payload(payload)}", ev.SERVER, name)
        elif name.startswith("info-"):
            self._emit(ev.Status, state=name, message=_content(payload) or name)
        else:
            self._emit(ev.Warning, message=f"ignored an unknown event {name!r}")

    def receive_disconnect(self, reason: str | None, now: float) -> None:
        if not self.finished:
            detail = f" ({reason})" if reason else ""
            self._fail(
                f"das-Peak closed the signalling connection before a result{detail}", ev.CONNECTION
            )

    def give_up(self, now: float) -> None:
        """The session stops waiting; nothing is pending here."""

    def _on_vad(self, payload: dict[str, Any]) -> None:
        goal = self.settings.duration
        percent = as_float(payload.get("vad_percentage"))
        value = as_float(payload.get("audio_seconds"))
        if value is None and percent is not None:
            value = round(goal * percent / 100.0, 3)
        if value is None:
            self._emit(ev.Warning, message="ignored an info-vad-status without figures")
            return
        self._emit(ev.Progress, value=value, goal=goal, unit="s", percent=percent)

    def _on_success(self, name: str, payload: dict[str, Any]) -> None:
        self.result = public_payload(payload)
        if self.settings.mode == REGISTER:
            self._on_registered(name, payload)
        else:
            self._on_verified(name, payload)

    def _on_registered(self, name: str, payload: dict[str, Any]) -> None:
        public = public_payload(payload)
        if _says_no(payload):
            self._fail(
                f"das-Peak refused the registration: {describe_payload(payload)}", ev.SERVER, name
            )
            return
        credential = payload.get(CREDENTIAL_FIELD)
        if credential in (None, "", {}, []):
            self._fail("das-Peak answered result-success without a credential", ev.PROTOCOL, name)
            return
        self.credential = credential
        if self.credential_file is None:
            self._emit(
                ev.Warning,
                message="the credential was not saved: give --credential-out FILE to keep it "
                "(das-Peak does not store it)",
            )
        else:
            public["credential_file"] = self.credential_file
        self._finish("registered", public)

    def _on_verified(self, name: str, payload: dict[str, Any]) -> None:
        public = public_payload(payload)
        score = _score(payload)
        if _says_no(payload):
            detail = f" (score {score:g})" if score is not None else ""
            verdict = _content(payload) or describe_payload(payload)
            self._fail(f"das-Peak rejected the verification: {verdict}{detail}", ev.SERVER, name)
            return
        extra = {"verdict": _content(payload) or "accepted", "score": score, **public}
        self._finish("verified", {k: v for k, v in extra.items() if v is not None})

    # ---- helpers -----------------------------------------------------------------------------
    def _emit(self, event_cls: type[ev.Event], **fields: Any) -> None:
        self._events.append(event_cls(backend=self.name, **fields))

    def _fail(self, message: str, kind: str, code: str | None = None) -> None:
        if not self.finished:
            self._emit(ev.Error, message=message, kind=kind, code=code)
            self.finished = True

    def _finish(self, reason: str, extra: dict[str, Any]) -> None:
        if not self.finished:
            self._emit(ev.End, reason=reason, extra=extra)
            self.finished = True


def event_payload(args: tuple[Any, ...]) -> dict[str, Any]:
    """The first argument of a server event as a dict: the real server sends JSON *strings*
    (the seed's output prints them with double quotes); a dict is taken as it is."""
    if not args:
        return {}
    data = args[0]
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            return {"content": text}
    if isinstance(data, dict):
        return data
    return {"content": data}


def public_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without the credential and without the redundant ``event`` key."""
    return {k: v for k, v in payload.items() if k not in (CREDENTIAL_FIELD, "event")}


def describe_payload(payload: dict[str, Any]) -> str:
    """The payload verbatim for a message, without ``event`` (the message names it) and with
    any credential redacted."""
    body = {k: v for k, v in payload.items() if k != "event"}
    return json.dumps(redact(body), ensure_ascii=False, separators=(",", ":"), default=str)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every ``credential`` replaced (for --raw and --debug)."""
    if isinstance(value, dict):
        return {k: (REDACTED if k == CREDENTIAL_FIELD else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return {"binary_length": len(value)}
    if isinstance(value, str) and CREDENTIAL_FIELD in value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, dict | list):
            return json.dumps(redact(parsed), ensure_ascii=False)
    return value


def raw_message(name: str, args: tuple[Any, ...]) -> str:
    """A server event as its Socket.IO array ``[name, arg, ...]``, credential redacted."""
    return json.dumps([name, *redact(list(args))], ensure_ascii=False, default=str)


def _content(payload: dict[str, Any]) -> str:
    content = payload.get("content")
    return content if isinstance(content, str) else ""


def _says_no(payload: dict[str, Any]) -> bool:
    if any(payload.get(flag) is False for flag in _VERDICT_FLAGS):
        return True
    return bool(_NEGATIVE.search(_content(payload)))


def _score(payload: dict[str, Any]) -> float | None:
    for key in ("score", "authenticity", "similarity"):
        value = as_float(payload.get(key))
        if value is not None:
            return value
    return None
