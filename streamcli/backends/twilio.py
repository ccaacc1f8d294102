"""A Twilio-Media-Streams audio channel, client side (``protocols/veridas.md`` §3a), sans-I/O.

das-Peak's consumer reads a subset (``start.callSid`` and ``media.payload``), but a real
Twilio-compatible consumer (pipecat's telephony runner, for one) recognizes a stream by the
full message set, so we send what Twilio sends (the extra fields do not bother a subset reader):

- ``connected``: ``{"event": "connected", "protocol": "Call", "version": "1.0.0"}``;
- ``start`` (``sequenceNumber`` "1"): ``streamSid`` and ``start {accountSid, streamSid, callSid,
  tracks: ["inbound"], customParameters, mediaFormat {encoding: "audio/x-mulaw", sampleRate:
  8000, channels: 1}}``;
- ``media`` per chunk: ``media {track: "inbound", chunk, timestamp, payload}``, ``chunk`` counting
  from "1" and ``timestamp`` the chunk's start in milliseconds since the stream began;
- ``stop`` at the end of our audio: ``stop {accountSid, callSid}``; then we close the socket.

``sequenceNumber`` (a string, as Twilio sends it) counts every message after ``connected``.
The consumer sends nothing back; it closes the WebSocket when it has enough audio.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any, ClassVar

from streamcli import events as ev
from streamcli.backends.base import Backend, ConnectRequest
from streamcli.exit import StreamcliError, handshake_refusal
from streamcli.redact import public_url

SAMPLE_RATE = 8000
TRACK = "inbound"
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1}
# Twilio's account SIDs are "AC" + 32 hex digits; we have no Twilio account: all zeros says so.
ACCOUNT_SID = "AC" + "0" * 32


def _json(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def new_stream_sid() -> str:
    """A Twilio-shaped stream SID: "MZ" + 32 hex digits."""
    return "MZ" + uuid.uuid4().hex


def connected_message() -> str:
    return _json({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_message(
    call_sid: str,
    stream_sid: str,
    *,
    account_sid: str = ACCOUNT_SID,
    custom_parameters: dict[str, str] | None = None,
    sequence: int = 1,
) -> str:
    start = {
        "accountSid": account_sid,
        "streamSid": stream_sid,
        "callSid": call_sid,
        "tracks": [TRACK],
        "customParameters": dict(custom_parameters or {}),
        "mediaFormat": MEDIA_FORMAT,
    }
    return _json(
        {"event": "start", "sequenceNumber": str(sequence), "start": start, "streamSid": stream_sid}
    )


def media_message(
    mulaw: bytes, stream_sid: str, *, sequence: int, chunk: int, timestamp_ms: int
) -> str:
    media = {
        "track": TRACK,
        "chunk": str(chunk),
        "timestamp": str(timestamp_ms),
        "payload": base64.b64encode(mulaw).decode("ascii"),
    }
    return _json(
        {"event": "media", "sequenceNumber": str(sequence), "media": media, "streamSid": stream_sid}
    )


def stop_message(
    call_sid: str, stream_sid: str, *, sequence: int, account_sid: str = ACCOUNT_SID
) -> str:
    stop = {"accountSid": account_sid, "callSid": call_sid}
    return _json(
        {"event": "stop", "sequenceNumber": str(sequence), "stop": stop, "streamSid": stream_sid}
    )


class TwilioMediaClient(Backend):
    name: ClassVar[str] = "twilio"
    sample_rate = SAMPLE_RATE
    encoding: ClassVar[str] = "mulaw"

    def __init__(
        self,
        url: str,
        call_sid: str,
        *,
        speaker: str | None = None,
        stream_sid: str | None = None,
        custom_parameters: dict[str, str] | None = None,
    ) -> None:
        super().__init__(speaker=speaker)
        self.url = url
        self.call_sid = call_sid  # must equal the signalling call_id (veridas.md §3a)
        self.stream_sid = stream_sid or new_stream_sid()
        self.custom_parameters = dict(custom_parameters or {})
        self.started = False
        self.samples_sent = 0
        self.sequence = 0  # the last sequenceNumber sent
        self.chunks = 0
        self._ignored: set[str] = set()

    def connect_request(self) -> ConnectRequest:
        return ConnectRequest(url=self.url)

    def handshake_error(self, status: int, message: str) -> StreamcliError:
        return handshake_refusal(status, message, f"the audio consumer {public_url(self.url)}")

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def start(self, now: float) -> None:
        if not self.started:
            self.started = True
            self._send(connected_message())
            self._send(
                start_message(
                    self.call_sid,
                    self.stream_sid,
                    custom_parameters=self.custom_parameters,
                    sequence=self._next(),
                )
            )

    def send_audio(self, data: bytes, now: float) -> None:
        if self.finished or not data:
            return
        self.chunks += 1
        timestamp_ms = self.samples_sent * 1000 // self.sample_rate
        self._send(
            media_message(
                data,
                self.stream_sid,
                sequence=self._next(),
                chunk=self.chunks,
                timestamp_ms=timestamp_ms,
            )
        )
        self.samples_sent += len(data)
        self.audio_seconds_sent = self.samples_sent / self.sample_rate

    def end_audio(self, now: float) -> None:
        if not self.finished:
            self._send(stop_message(self.call_sid, self.stream_sid, sequence=self._next()))
            self._emit(
                ev.Status, state="audio-sent", message="all audio sent: closing the audio channel"
            )
            self.finished = True  # the session then closes the WebSocket normally

    def receive_text(self, text: str, now: float) -> None:
        msg = self._parse_json_object(text)
        kind = str(msg.get("event")) if msg is not None else None
        if msg is not None and kind not in self._ignored:
            self._ignored.add(kind or "")
            self._emit(ev.Warning, message=f"ignored a {kind!r} message from the audio consumer")

    def receive_binary(self, data: bytes, now: float) -> None:
        if "binary" not in self._ignored:
            self._ignored.add("binary")
            self._emit(ev.Warning, message="ignored binary data from the audio consumer")

    def receive_close(self, code: int | None, reason: str, now: float) -> None:
        if self.finished:
            return
        if code in (1000, 1001):
            # "When enough audio is captured by das-Peak Streaming, it closes the websocket."
            self._emit(
                ev.Status, state="audio-closed", message="the audio consumer closed the connection"
            )
            self.finished = True
            return
        detail = (
            f"code {code}{', ' + reason if reason else ''}" if code else reason or "no close frame"
        )
        self._fail(f"the audio consumer closed the connection ({detail})", ev.CONNECTION)
