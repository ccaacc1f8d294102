"""A Twilio-Media-Streams audio channel, client side (``protocols/veridas.md`` §3a), sans-I/O.

The subset an audio consumer such as das-Peak's takes: one text frame
``{"event": "start", "start": {"callSid": <call_id>}}``, then text frames
``{"event": "media", "media": {"payload": <base64 of 8 kHz mono μ-law>}}``. The consumer sends
nothing back; it closes the WebSocket when it has enough audio. At the end of our audio we
close the WebSocket ourselves (the subset has no "stop" message).
"""

from __future__ import annotations

import base64
import json
from typing import ClassVar

from streamcli import events as ev
from streamcli.backends.base import Backend, ConnectRequest

SAMPLE_RATE = 8000


def start_message(call_sid: str) -> str:
    return json.dumps({"event": "start", "start": {"callSid": call_sid}}, separators=(",", ":"))


def media_message(mulaw: bytes) -> str:
    payload = base64.b64encode(mulaw).decode("ascii")
    return json.dumps({"event": "media", "media": {"payload": payload}}, separators=(",", ":"))


class TwilioMediaClient(Backend):
    name: ClassVar[str] = "twilio"
    sample_rate = SAMPLE_RATE
    encoding: ClassVar[str] = "mulaw"

    def __init__(self, url: str, call_sid: str, *, speaker: str | None = None) -> None:
        super().__init__(speaker=speaker)
        self.url = url
        self.call_sid = call_sid  # must equal the signalling call_id (veridas.md §3a)
        self.started = False
        self.samples_sent = 0
        self._ignored: set[str] = set()

    def connect_request(self) -> ConnectRequest:
        return ConnectRequest(url=self.url)

    def start(self, now: float) -> None:
        if not self.started:
            self.started = True
            self._send(start_message(self.call_sid))

    def send_audio(self, data: bytes, now: float) -> None:
        if self.finished or not data:
            return
        self._send(media_message(data))
        self.samples_sent += len(data)
        self.audio_seconds_sent = self.samples_sent / self.sample_rate

    def end_audio(self, now: float) -> None:
        if not self.finished:
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
