"""Veridas das-Peak Streaming emulator (``shared/protocols/veridas.md``) on one aiohttp app.

- ``POST /socket.io/oauth2/token``: OAuth2 client credentials (form body) -> a bearer token.
- ``/socket.io/`` (Socket.IO, Engine.IO v4): namespaces ``/socket.io/register`` and
  ``/socket.io/verify``; the bearer token is checked at connect, ``initialize`` is validated,
  then ``info-consumer-ready``, ``info-vad-status`` and a ``result-*`` go out. Payloads are JSON
  strings, as the real server's appear in the seed's output; ``result-success`` carries the
  collected audio as a second argument.
- ``/twilio`` and ``/audiohook``: the two audio consumers (WebSocket). Voice is found by the
  energy of the received μ-law audio; once ``duration * goal_scale`` seconds of voice arrived,
  the consumer closes (twilio: the socket; audiohook: ``disconnect {reason: completed}``) and
  the result follows on the signalling channel.

It shares no code with the client (its own μ-law table, its own signature check), so one
misunderstanding cannot hide on both sides. Everything each client sent is recorded
(``token_requests``, ``connections``, ``initializations``, ``consumers``) and every protocol
violation lands in ``violations``, for tests.

Switches (constructor keywords; ``streamcli serve veridas`` options):
- ``client_id`` / ``client_secret``: the accepted client credentials (none: any are accepted).
- ``tokens``: ready bearer tokens accepted besides the issued ones (for ``VERIDAS_TOKEN``).
- ``audiohook_api_key``: the X-API-KEY the AudioHook consumer requires (else HTTP 401).
- ``audiohook_secret``: base64 client secret; the upgrade must carry a valid HTTP Message
  Signature, else the consumer answers ``open`` with ``disconnect {reason: unauthorized}``.
- ``reject``: das-Peak refuses the registration/verification (``result-failure``).
- ``no_result``: never send a result (the consumer keeps taking audio).
- ``goal_scale``: voice needed = ``audio_total_duration * goal_scale``.
- ``consumer_delay``: seconds before ``info-consumer-ready``.
- ``threshold_db``: frame energy (dBFS) above which audio counts as voice (-40).
- ``payload_objects``: send payloads as objects instead of JSON strings.
- ``credential_objects``: the credential is a JSON object (``{"voiceprint", "model_hash"}``),
  and verify must send that object back, not its text.
- ``audiohook_start_paused``: the AudioHook consumer opens paused and then queries the state.
- ``fault``: one misbehaviour (``FAULTS``): the token endpoint answers 500 (always, or
  once), text that is not
  JSON, or JSON without ``token_type``; the namespace refuses the connection; the server
  disconnects the signalling before ``info-consumer-ready`` or in the middle of the audio;
  ``result-failure`` comes without a payload; an audio consumer refuses the upgrade (HTTP 401,
  404) or drops the connection (1011) after the first audio.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import socketio
from aiohttp import WSMsgType, web

TOKEN_PATH = "/socket.io/oauth2/token"
REGISTER_NAMESPACE = "/socket.io/register"
VERIFY_NAMESPACE = "/socket.io/verify"
REGISTER_KEY = "register_request"
VERIFY_KEY = "verify_request"
RATE = 8000
FRAME = RATE // 50  # 20 ms of samples
PROGRESS_EVERY = RATE // 2  # samples of received audio between info-vad-status events
FAULTS = (
    "token-500",
    "token-500-once",
    "token-not-json",
    "token-no-type",
    "refuse-namespace",
    "disconnect-before-ready",
    "disconnect-mid-audio",
    "failure-no-payload",
    "consumer-401",
    "consumer-404",
    "consumer-drop",
)
METADATA_KEYS = (
    "audio_protocol",
    "audio_format",
    "audio_codec",
    "sample_format",
    "sample_rate",
    "channels",
    "call_id",
)
AUDIOHOOK_MEDIA = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
SIGNED = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
SERVE_HELP = (
    "Veridas das-Peak emulator: token endpoint, Socket.IO signalling and the twilio/audiohook "
    "audio consumers, all on one port."
)
_POSITION = re.compile(r"^PT(\d+(?:\.\d*)?|\.\d+)S$")


def _ulaw_to_linear_table() -> np.ndarray:
    """G.711 μ-law expansion, one entry per code (written out here, not shared with the client)."""
    table = np.zeros(256, dtype=np.int32)
    for code in range(256):
        inverted = 0xFF - code
        negative = inverted >= 0x80
        exponent = (inverted >> 4) & 0x07
        mantissa = inverted & 0x0F
        magnitude = ((2 * mantissa + 33) << (exponent + 2)) - 132
        table[code] = -magnitude if negative else magnitude
    return table


ULAW_TABLE = _ulaw_to_linear_table()


# ---- records -----------------------------------------------------------------------------------
@dataclass
class ConsumerRecord:
    """One audio-channel connection, as the emulator saw it."""

    protocol: str
    headers: dict[str, str]
    messages: list[dict[str, Any]] = field(default_factory=list)  # text messages, parsed
    audio: bytearray = field(default_factory=bytearray)
    binary_frames: int = 0
    call_id: str | None = None
    signature_ok: bool | None = None
    close_reason: str | None = None  # audiohook: the client's close reason
    ended: str = ""

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / RATE


@dataclass
class PeakSession:
    """One das-Peak session (one ``initialize``)."""

    sid: str
    namespace: str
    call_id: str
    audio_protocol: str
    mode: str
    goal: float
    credential: Any = None  # verify: the credential the client sent
    consumer: ConsumerRecord | None = None
    received: int = 0  # samples (integers: no drift in the sums)
    voiced_samples: int = 0
    next_progress: int = PROGRESS_EVERY
    finished: bool = False
    collected: bytearray = field(default_factory=bytearray)
    _carry: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def voiced(self) -> float:
        return self.voiced_samples / RATE


def verify_signature(
    *,
    target: str,
    host: str,
    headers: dict[str, str],
    secret_b64: str,
    now: float,
) -> str | None:
    """Check an AudioHook HTTP Message Signature. None when valid, else the reason."""
    lower = {k.lower(): v for k, v in headers.items()}
    sig_input, sig = lower.get("signature-input"), lower.get("signature")
    if not sig_input or not sig:
        return "no Signature / Signature-Input headers"
    m = re.match(r"^\s*([A-Za-z][\w-]*)=(\(([^)]*)\)(.*))$", sig_input)
    if m is None:
        return "malformed Signature-Input"
    label, params_text, covered_text, param_list = m.group(1), m.group(2), m.group(3), m.group(4)
    covered = re.findall(r'"([^"]*)"', covered_text)
    params = dict(re.findall(r';([a-z]+)=("[^"]*"|\d+)', param_list))
    params = {k: v.strip('"') for k, v in params.items()}
    if [c for c in SIGNED if c not in covered]:
        return "the signature does not cover every required component"
    if params.get("alg") != "hmac-sha256":
        return f"unsupported alg {params.get('alg')!r}"
    if params.get("keyid") != lower.get("x-api-key"):
        return "keyid differs from X-API-KEY"
    if not params.get("nonce"):
        return "no nonce"
    try:
        created, expires = int(params["created"]), int(params["expires"])
    except (KeyError, ValueError):
        return "created/expires missing"
    if created > now + 60 or expires < now:
        return "signature expired or not yet valid"
    sm = re.match(rf"^\s*{re.escape(label)}=:([A-Za-z0-9+/=]+):\s*$", sig)
    if sm is None:
        return "malformed Signature"
    values = {"@request-target": target, "@authority": host.lower()}
    lines = []
    for component in covered:
        value = values.get(component, lower.get(component))
        if value is None:
            return f"covered header {component!r} is missing"
        lines.append(f'"{component}": {value.strip()}')
    lines.append(f'"@signature-params": {params_text}')
    try:
        key = base64.b64decode(secret_b64)
        got = base64.b64decode(sm.group(1))
    except (binascii.Error, ValueError):
        return "undecodable key or signature"
    want = hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).digest()
    return None if hmac.compare_digest(want, got) else "signature mismatch"


def _credential_key(credential: Any) -> Any:
    """A credential as the key it is stored under: a string as it is, an object as its JSON."""
    if isinstance(credential, dict | list):
        return json.dumps(credential, sort_keys=True, separators=(",", ":"))
    return credential


class VeridasEmulator:
    name = "veridas"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str | None = None,
        client_secret: str | None = None,
        tokens: tuple[str, ...] | list[str] = (),
        audiohook_api_key: str | None = None,
        audiohook_secret: str | None = None,
        reject: bool = False,
        no_result: bool = False,
        goal_scale: float = 1.0,
        consumer_delay: float = 0.0,
        threshold_db: float = -40.0,
        payload_objects: bool = False,
        audiohook_start_paused: bool = False,
        credential_objects: bool = False,
        fault: str | None = None,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
        self.fault = fault
        self.host, self.port = host, port
        self.client_id, self.client_secret = client_id, client_secret
        self.audiohook_api_key, self.audiohook_secret = audiohook_api_key, audiohook_secret
        self.reject, self.no_result = reject, no_result
        self.goal_scale = goal_scale
        self.consumer_delay = consumer_delay
        self.threshold_db = threshold_db
        self.payload_objects = payload_objects
        # AudioHook: open paused, then ask the state again ("pause" while paused, "resume"
        # twice): the spec lets a server re-send them as queries; each must be answered.
        self.audiohook_start_paused = audiohook_start_paused
        self.credential_objects = credential_objects
        self.collected_audio_argument = True  # result-success carries the audio (2nd argument)
        self.issued_tokens: set[str] = set(tokens)
        self.credentials: dict[str, str] = {}  # credential -> call_id
        self.token_requests: list[dict[str, str]] = []
        self.connections: list[dict[str, Any]] = []  # socket.io connects: namespace, auth, ...
        self.initializations: list[dict[str, Any]] = []
        self.consumers: list[ConsumerRecord] = []
        self.results: list[tuple[str, dict[str, Any]]] = []  # (event, payload) sent
        self.violations: list[str] = []
        self.sessions: dict[str, PeakSession] = {}  # by call_id
        self._runner: web.AppRunner | None = None
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            namespaces=[REGISTER_NAMESPACE, VERIFY_NAMESPACE],
            logger=False,
            engineio_logger=False,
        )
        for ns in (REGISTER_NAMESPACE, VERIFY_NAMESPACE):
            self.sio.on("connect", self._make_connect(ns), namespace=ns)
            self.sio.on("initialize", self._make_initialize(ns), namespace=ns)
            self.sio.on("disconnect", self._sio_disconnect, namespace=ns)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get("/twilio", self._twilio)
        app.router.add_get("/audiohook", self._audiohook)
        self.sio.attach(app, socketio_path="socket.io")
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _violation(self, text: str) -> None:
        self.violations.append(text)

    def _payload(self, value: dict[str, Any]) -> Any:
        return value if self.payload_objects else json.dumps(value)

    # ---- token -------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        fields = {k: str(v) for k, v in form.items()}
        self.token_requests.append(fields)
        once = self.fault == "token-500-once" and len(self.token_requests) == 1
        if self.fault == "token-500" or once:
            return web.Response(status=500, text="upstream identity provider unavailable")
        if self.fault == "token-not-json":
            return web.Response(text="<html><body>Welcome</body></html>", content_type="text/html")
        if fields.get("grant_type") != "client_credentials":
            return web.json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant_type must be client_credentials",
                },
                status=400,
            )
        if not fields.get("client_id") or not fields.get("client_secret"):
            return web.json_response(
                {
                    "error": "invalid_request",
                    "error_description": "client_id and client_secret are required",
                },
                status=400,
            )
        if (self.client_id is not None and fields["client_id"] != self.client_id) or (
            self.client_secret is not None and fields["client_secret"] != self.client_secret
        ):
            return web.json_response(
                {"error": "invalid_client", "error_description": "Invalid client credentials"},
                status=401,
            )
        token = secrets.token_urlsafe(24)
        self.issued_tokens.add(token)
        answer = {"token_type": "Bearer", "access_token": token, "expires_in": 300, "scope": ""}
        if self.fault == "token-no-type":
            del answer["token_type"]
        return web.json_response(answer)

    # ---- signalling --------------------------------------------------------------------------
    def _make_connect(self, namespace: str) -> Any:
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            await self._sio_connect(namespace, sid, environ)

        return connect

    async def _sio_connect(self, namespace: str, sid: str, environ: dict[str, Any]) -> None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        record = {
            "sid": sid,
            "namespace": namespace,
            "authorization": authorization,
            "transport": (query.get("transport") or [""])[0],
        }
        self.connections.append(record)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token not in self.issued_tokens:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized: invalid bearer token")
        if self.fault == "refuse-namespace":
            raise socketio.exceptions.ConnectionRefusedError("namespace closed for maintenance")
        if record["transport"] != "websocket":
            self._violation(f"signalling over {record['transport']!r}, not websocket")

    async def _sio_disconnect(self, sid: str, *args: Any) -> None:
        for session in self.sessions.values():
            if session.sid == sid:
                session.finished = True

    def _make_initialize(self, namespace: str) -> Any:
        async def initialize(sid: str, data: Any = None, *extra: Any) -> None:
            await self._initialize(namespace, sid, data)

        return initialize

    async def _initialize(self, namespace: str, sid: str, data: Any) -> None:
        self.initializations.append({"namespace": namespace, "data": data})
        mode = "register" if namespace == REGISTER_NAMESPACE else "verify"
        problem, request = self._check_initialize(
            data, REGISTER_KEY if mode == "register" else VERIFY_KEY
        )
        credential = request.get("credential") if request is not None else None
        kind = dict if self.credential_objects else str
        if (
            mode == "verify"
            and problem is None
            and (not isinstance(credential, kind) or not credential)
        ):
            what = "an object" if self.credential_objects else "a string"
            problem = f"{VERIFY_KEY}.credential must be the stored credential ({what})"
        if problem is not None or request is None:
            self._violation(f"initialize: {problem}")
            await self._emit(sid, namespace, "error-invalid-request", {"content": problem})
            return
        meta = data["metadata"]
        session = PeakSession(
            sid=sid,
            namespace=namespace,
            call_id=meta["call_id"],
            audio_protocol=meta["audio_protocol"],
            mode=mode,
            goal=float(request["audio_total_duration"]) * self.goal_scale,
            credential=_credential_key(request.get("credential")),
        )
        self.sessions[session.call_id] = session
        if self.consumer_delay:
            await asyncio.sleep(self.consumer_delay)
        if self.fault == "disconnect-before-ready":
            await self.sio.disconnect(sid, namespace=namespace)
            return
        await self._emit(
            sid,
            namespace,
            "info-consumer-ready",
            {"content": "Audio consumer for provided audio protocol is ready"},
        )

    @staticmethod
    def _check_initialize(data: Any, key: str) -> tuple[str | None, dict[str, Any] | None]:
        if isinstance(data, str):
            return "initialize data must be an object, not a string", None
        if not isinstance(data, dict):
            return "initialize data must be an object", None
        meta, request = data.get("metadata"), data.get(key)
        if not isinstance(meta, dict):
            return "metadata is missing", None
        if not isinstance(request, dict):
            return f"{key} is missing", None
        missing = [k for k in METADATA_KEYS if k not in meta]
        if missing:
            return f"metadata lacks {', '.join(missing)}", None
        not_strings = [k for k, v in meta.items() if not isinstance(v, str)]
        if not_strings:
            return f"metadata values must be strings: {', '.join(not_strings)}", None
        expected = {
            "audio_format": "raw",
            "audio_codec": "mulaw",
            "sample_rate": "8000",
            "channels": "1",
            "sample_format": "",
        }
        for k, v in expected.items():
            if meta[k] != v:
                return f"metadata.{k} must be {v!r}, not {meta[k]!r}", None
        if meta["audio_protocol"] not in ("twilio", "audiohook"):
            return f"unknown audio_protocol {meta['audio_protocol']!r}", None
        try:
            uuid.UUID(meta["call_id"])
        except ValueError:
            return "metadata.call_id must be a UUID", None
        threshold = request.get("authenticity_threshold")
        duration = request.get("audio_total_duration")
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 <= threshold <= 1
        ):
            return f"{key}.authenticity_threshold must be a number in [0, 1]", None
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
            return f"{key}.audio_total_duration must be a positive number", None
        if not isinstance(request.get("model_hash"), str) or not request["model_hash"]:
            return f"{key}.model_hash must be a non-empty string", None
        return None, request

    async def _emit(
        self, sid: str, namespace: str, event: str, body: dict[str, Any], *extra: Any
    ) -> None:
        payload = self._payload({"event": event, **body})
        data: Any = (payload, *extra) if extra else payload
        await self.sio.emit(event, data, to=sid, namespace=namespace)

    # ---- audio -> VAD -> progress -> result ------------------------------------------------
    async def _take_audio(self, session: PeakSession, mulaw: bytes) -> bool:
        """Analyse received audio; True once the session has its result (stop the consumer)."""
        if session.finished:
            return True
        samples = np.concatenate([session._carry, ULAW_TABLE[np.frombuffer(mulaw, np.uint8)]])
        whole = len(samples) // FRAME * FRAME
        session._carry = samples[whole:]
        for frame in samples[:whole].reshape(-1, FRAME):
            rms = float(np.sqrt(np.mean((frame / 32768.0) ** 2))) + 1e-12
            if 20 * np.log10(rms) > self.threshold_db:
                session.voiced_samples += FRAME
        session.collected += mulaw
        session.received += len(mulaw)
        if self.fault == "disconnect-mid-audio" and session.received >= RATE // 4:
            session.finished = True
            await self.sio.disconnect(session.sid, namespace=session.namespace)
            return True
        while session.received >= session.next_progress:
            session.next_progress += PROGRESS_EVERY
            await self._emit(
                session.sid,
                session.namespace,
                "info-vad-status",
                {
                    "content": "Voice activity detection percentage",
                    "audio_seconds": round(session.voiced, 2),
                    "vad_percentage": int(session.voiced / session.goal * 100),
                },
            )
        return session.voiced >= session.goal and not self.no_result

    async def _send_result(self, session: PeakSession) -> None:
        if session.finished:
            return
        session.finished = True
        collected = round(session.voiced, 2)
        what = "Registration" if session.mode == "register" else "Verification"
        known = session.mode == "register" or session.credential in self.credentials
        if self.fault == "failure-no-payload":
            self.results.append(("result-failure", {}))
            await self.sio.emit("result-failure", to=session.sid, namespace=session.namespace)
            return
        if self.reject or not known:
            refused = {
                "authenticity": 0.41,
                "voice_audio_collected": collected,
                "content": f"{what}: rejected",
            }
            self.results.append(("result-failure", refused))
            await self._emit(session.sid, session.namespace, "result-failure", refused)
            return
        body: dict[str, Any] = {
            "authenticity": 0.99,
            "voice_audio_collected": collected,
            "content": f"{what}: approved",
        }
        if session.mode == "register":
            credential: Any = base64.b64encode(secrets.token_bytes(48)).decode("ascii")
            if self.credential_objects:
                credential = {"voiceprint": credential, "model_hash": "emulator"}
            self.credentials[_credential_key(credential)] = session.call_id
            body["credential"] = credential
        self.results.append(("result-success", body))
        extra = (bytes(session.collected),) if self.collected_audio_argument else ()
        await self._emit(session.sid, session.namespace, "result-success", body, *extra)

    def _waiting_session(self, call_id: Any, protocol: str) -> PeakSession | None:
        session = self.sessions.get(call_id) if isinstance(call_id, str) else None
        if session is None or session.audio_protocol != protocol or session.consumer is not None:
            return None
        return session

    # ---- twilio consumer ---------------------------------------------------------------------
    async def _twilio(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused_upgrade()
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        record = ConsumerRecord("twilio", dict(request.headers))
        self.consumers.append(record)
        session: PeakSession | None = None
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                record.binary_frames += 1
                self._violation("twilio: binary frame (audio goes in media messages)")
                continue
            if msg.type != WSMsgType.TEXT:
                break
            try:
                obj = json.loads(msg.data)
            except ValueError:
                self._violation("twilio: a text frame that is not JSON")
                continue
            record.messages.append(obj)
            kind = obj.get("event") if isinstance(obj, dict) else None
            if isinstance(obj, dict):
                self._check_twilio_bookkeeping(record, obj)
            if kind == "connected":
                if session is not None or len(record.messages) > 1:
                    self._violation("twilio: connected after the stream began")
                continue
            if kind == "stop":
                if session is None:
                    self._violation("twilio: stop before start")
                record.ended = "stop"
                continue
            if record.ended == "stop":
                self._violation(f"twilio: {kind!r} after stop")
                continue
            if kind == "start":
                if session is not None:
                    self._violation("twilio: a second start")
                    continue
                call_sid = (obj.get("start") or {}).get("callSid")
                session = self._waiting_session(call_sid, "twilio")
                if session is None:
                    self._violation(f"twilio: start for no waiting twilio session ({call_sid!r})")
                    await ws.close(code=1008, message=b"unknown callSid")
                    break
                session.consumer = record
                record.call_id = session.call_id
            elif kind == "media":
                if session is None:
                    self._violation("twilio: media before start")
                    continue
                try:
                    audio = base64.b64decode(obj["media"]["payload"], validate=True)
                except (KeyError, TypeError, binascii.Error, ValueError):
                    self._violation("twilio: media without a base64 payload")
                    continue
                record.audio += audio
                if self.fault == "consumer-drop":
                    record.ended = "dropped"
                    await ws.close(code=1011, message=b"consumer failure")
                    break
                if await self._take_audio(session, audio):
                    # "When enough audio is captured ... it closes the websocket connection."
                    record.ended = "enough audio"
                    await ws.close(code=1000)
                    await self._send_result(session)
                    break
            else:
                self._violation(f"twilio: unexpected event {kind!r}")
        record.ended = record.ended or "client closed"
        return ws

    def _check_twilio_bookkeeping(self, record: ConsumerRecord, msg: dict[str, Any]) -> None:
        """The full Twilio message set numbers what it sends: ``sequenceNumber`` 1, 2, ... after
        ``connected``, one ``streamSid``, media ``chunk`` 1, 2, ... and ``timestamp`` in step
        with the audio. A subset client (no ``sequenceNumber``) is not held to it."""
        if "sequenceNumber" not in msg:
            return
        numbered = [m for m in record.messages if isinstance(m, dict) and "sequenceNumber" in m]
        if msg["sequenceNumber"] != str(len(numbered)):
            self._violation(
                f"twilio: sequenceNumber {msg['sequenceNumber']!r}, expected {len(numbered)}"
            )
        sids = {m.get("streamSid") for m in numbered}
        if len(sids) != 1 or None in sids:
            self._violation("twilio: streamSid missing or changed within the stream")
        media = msg.get("media")
        if msg.get("event") == "media" and isinstance(media, dict):
            chunks = [m for m in numbered if m.get("event") == "media"]
            samples = len(record.audio)  # audio before this message
            if media.get("chunk") != str(len(chunks)):
                self._violation(
                    f"twilio: media chunk {media.get('chunk')!r}, expected {len(chunks)}"
                )
            if media.get("timestamp") != str(samples * 1000 // RATE):
                self._violation(
                    f"twilio: media timestamp {media.get('timestamp')!r} for {samples} samples"
                )

    # ---- audiohook consumer ------------------------------------------------------------------
    def _refused_upgrade(self) -> web.Response | None:
        if self.fault == "consumer-401":
            return web.Response(status=401, text="consumer: invalid credentials")
        if self.fault == "consumer-404":
            return web.Response(status=404, text="consumer: no such path")
        return None

    async def _audiohook(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused_upgrade()
        if refused is not None:
            return refused
        headers = dict(request.headers)
        for name in (
            "Audiohook-Organization-Id",
            "Audiohook-Session-Id",
            "Audiohook-Correlation-Id",
        ):
            try:
                uuid.UUID(request.headers.get(name, ""))
            except ValueError:
                self._violation(f"audiohook: header {name} missing or not a UUID")
                return web.Response(status=400, text=f"{name} required")
        if self.audiohook_api_key is not None and (
            request.headers.get("X-API-KEY") != self.audiohook_api_key
        ):
            return web.Response(status=401, text="invalid X-API-KEY")
        record = ConsumerRecord("audiohook", headers)
        if self.audiohook_secret is not None:
            reason = verify_signature(
                target=request.raw_path,  # as received: what the client signed
                host=request.host,
                headers=headers,
                secret_b64=self.audiohook_secret,
                now=time.time(),
            )
            record.signature_ok = reason is None
            if reason is not None:
                self._violation(f"audiohook: signature rejected: {reason}")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.consumers.append(record)
        await _AudiohookServer(self, ws, record, headers["Audiohook-Session-Id"]).run()
        return ws


class _AudiohookServer:
    """The server side of one AudioHook session."""

    def __init__(
        self,
        emu: VeridasEmulator,
        ws: web.WebSocketResponse,
        record: ConsumerRecord,
        session_id: str,
    ) -> None:
        self.emu, self.ws, self.record, self.session_id = emu, ws, record, session_id
        self.seq = 0  # our last seq
        self.clientseq = 0  # the client's last seq
        self.state = "connected"  # -> open -> (disconnecting) -> closed
        self.session: PeakSession | None = None
        self.paused = False
        self.queries: list[str] = []  # what to send after each paused/resumed answer

    def violation(self, text: str) -> None:
        self.emu._violation(f"audiohook: {text}")

    async def send(self, type_: str, parameters: dict[str, Any]) -> None:
        self.seq += 1
        await self.ws.send_str(
            json.dumps(
                {
                    "version": "2",
                    "type": type_,
                    "seq": self.seq,
                    "clientseq": self.clientseq,
                    "id": self.session_id,
                    "parameters": parameters,
                }
            )
        )

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                if not await self.on_audio(bytes(msg.data)):
                    break
            elif msg.type == WSMsgType.TEXT:
                if not await self.on_text(msg.data):
                    break
            else:
                break
        self.record.ended = self.record.ended or "client closed"

    async def on_audio(self, data: bytes) -> bool:
        self.record.binary_frames += 1
        self.record.audio += data  # positions count every byte received
        if self.state == "connected":
            self.violation("audio before opened")
            await self.send("disconnect", {"reason": "error", "info": "audio before opened"})
            self.state = "disconnecting"
        if self.state != "open" or self.session is None:
            return True  # in flight before our disconnect reached the client
        if self.paused:
            self.violation("audio while paused")
            return True
        if self.emu.fault == "consumer-drop":
            self.record.ended = "dropped"
            await self.ws.close(code=1011, message=b"consumer failure")
            return False
        if await self.emu._take_audio(self.session, data):
            self.record.ended = "enough audio"
            self.state = "disconnecting"
            await self.send("disconnect", {"reason": "completed"})
            await self.emu._send_result(self.session)
        return True

    async def on_text(self, text: str) -> bool:
        try:
            msg = json.loads(text)
        except ValueError:
            self.violation("a text message that is not JSON")
            return True
        if not isinstance(msg, dict):
            self.violation("a text message that is not an object")
            return True
        self.record.messages.append(msg)
        self.check_envelope(msg)
        kind, params = msg.get("type"), msg.get("parameters")
        params = params if isinstance(params, dict) else {}
        if kind == "open":
            await self.on_open(params)
        elif kind == "ping":
            await self.send("pong", {})
        elif kind == "close":
            self.record.close_reason = params.get("reason")
            if params.get("reason") not in ("end", "error", "disconnect", "reconnect"):
                self.violation(f"close with reason {params.get('reason')!r}")
            await self.send("closed", {})
            self.state = "closed"
            await self.ws.close()
            return False
        elif kind in ("paused", "resumed"):
            await self.on_answer(kind)
        elif kind in ("discarded", "update", "error"):
            pass
        else:
            self.violation(f"unknown client message type {kind!r}")
        return True

    def check_envelope(self, msg: dict[str, Any]) -> None:
        seq = msg.get("seq")
        if msg.get("version") != "2":
            self.violation(f"version {msg.get('version')!r}")
        if msg.get("id") != self.session_id:
            self.violation("id differs from Audiohook-Session-Id")
        if seq != self.clientseq + 1:
            self.violation(f"seq {seq!r} after {self.clientseq}")
        if isinstance(seq, int):
            self.clientseq = seq
        if msg.get("serverseq") != self.seq:
            self.violation(f"serverseq {msg.get('serverseq')!r}, expected {self.seq}")
        position = msg.get("position")
        m = _POSITION.match(position) if isinstance(position, str) else None
        if m is None:
            self.violation(f"position {position!r} is not PT<seconds>S")
        elif abs(float(m.group(1)) - self.record.audio_seconds) > 0.0005:
            self.violation(
                f"position {position} but {self.record.audio_seconds:g} s of audio received"
            )

    async def on_open(self, params: dict[str, Any]) -> None:
        if self.state != "connected":
            self.violation("a second open")
            return
        if params.get("organizationId") != self.record.headers.get("Audiohook-Organization-Id"):
            self.violation("open.organizationId differs from the header")
        if self.record.signature_ok is False:
            self.state = "disconnecting"
            await self.send("disconnect", {"reason": "unauthorized", "info": "invalid signature"})
            return
        media = params.get("media")
        if not isinstance(media, list) or AUDIOHOOK_MEDIA not in media:
            self.violation(f"open offers no PCMU 8 kHz external media: {media!r}")
            self.state = "disconnecting"
            await self.send("disconnect", {"reason": "error", "info": "no supported media"})
            return
        self.session = self.emu._waiting_session(params.get("conversationId"), "audiohook")
        if self.session is None:
            self.violation(
                f"open for no waiting audiohook session ({params.get('conversationId')!r})"
            )
            self.state = "disconnecting"
            await self.send("disconnect", {"reason": "error", "info": "unknown conversationId"})
            return
        self.session.consumer = self.record
        self.record.call_id = self.session.call_id
        self.state = "open"
        start_paused = self.emu.audiohook_start_paused
        if start_paused:
            self.paused = True
            self.queries = ["pause", "resume", "resume"]
        await self.send("opened", {"startPaused": start_paused, "media": [AUDIOHOOK_MEDIA]})

    async def on_answer(self, kind: str) -> None:
        """A ``paused``/``resumed``: it must say the state we set; then the next query."""
        if (kind == "paused") != self.paused:
            self.violation(f"{kind} while the stream is {'paused' if self.paused else 'open'}")
        if self.queries and self.state == "open":
            query = self.queries.pop(0)
            self.paused = query == "pause"
            await self.send(query, {})
