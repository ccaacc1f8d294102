"""Normalized events: what every backend turns server messages into.

Frozen dataclasses (the model: h11's ``_events.py``). A JSON line is
``{"type": ..., "backend": ..., **fields}`` -- one schema for every backend, documented in
the README. ``speaker`` is present only when the stream has a name (``--speaker``,
``--split-channels``); fields that are ``None`` are left out of the JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

# Error kinds (``Error.kind``), defined in ``kinds.py``; ``exit.py`` maps them to exit codes.
from streamcli.kinds import AUTH as AUTH
from streamcli.kinds import CONNECTION as CONNECTION
from streamcli.kinds import OUTPUT as OUTPUT
from streamcli.kinds import PROTOCOL as PROTOCOL
from streamcli.kinds import SERVER as SERVER
from streamcli.kinds import TIMEOUT as TIMEOUT
from streamcli.kinds import USAGE as USAGE


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base class: every event names its backend and, when known, its speaker."""

    type: ClassVar[str] = "event"
    backend: str
    speaker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "words":
                value = [w.to_dict() for w in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "word": self.word,
            "start": self.start,
            "end": self.end,
            "confidence": self.confidence,
        }


@dataclass(frozen=True, kw_only=True)
class SessionStarted(Event):
    """The connection is up. ``info`` carries ids worth reporting (url, transaction_id, call_id)."""

    type: ClassVar[str] = "session"
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Partial(Event):
    type: ClassVar[str] = "partial"
    text: str


@dataclass(frozen=True, kw_only=True)
class Final(Event):
    """Confirmed text. ``unconfirmed`` marks a tail the server never confirmed (see melvin.md)."""

    type: ClassVar[str] = "final"
    text: str
    start: float | None = None
    end: float | None = None
    words: tuple[Word, ...] = ()
    unconfirmed: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Status(Event):
    """Connection state or a server notice: ``state`` is a short machine word, e.g. ``waiting``.
    ``seconds``: how long the state has lasted, where that matters (a seat wait: ``waiting``
    repeats with the time waited so far, ``seated`` says the whole wait)."""

    type: ClassVar[str] = "status"
    state: str
    message: str = ""
    seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    """Progress towards a goal (Veridas voiced audio): ``value`` of ``goal`` ``unit``."""

    type: ClassVar[str] = "progress"
    value: float
    goal: float | None = None
    unit: str = ""
    percent: float | None = None


@dataclass(frozen=True, kw_only=True)
class Emotion(Event):
    """Emotion scores (Phebi), each already multiplied by the server's confidence."""

    type: ClassVar[str] = "emotion"
    scores: dict[str, float]
    position: float | None = None
    confidence: float | None = None


@dataclass(frozen=True, kw_only=True)
class Warning(Event):
    type: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True, kw_only=True)
class Error(Event):
    """Something failed. ``kind`` selects the exit code; ``code`` is the server's own, if any."""

    type: ClassVar[str] = "error"
    message: str
    kind: str = SERVER
    code: int | str | None = None


@dataclass(frozen=True, kw_only=True)
class End(Event):
    """The session ended normally. ``extra`` holds backend fields (``export_id`` for Melvin)."""

    type: ClassVar[str] = "end"
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(out.pop("extra"))
        return out


@dataclass(frozen=True, kw_only=True)
class Raw(Event):
    """A server message verbatim (``--raw``): text as received, binary as its length."""

    type: ClassVar[str] = "raw"
    message: str | None = None
    binary_length: int | None = None
