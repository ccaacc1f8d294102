"""The scripted "recognizer" of the emulators (``--recognizer script``): exact words, by script.

``ScriptedRecognizer`` finds the voiced parts of the received audio by energy (20 ms frames) and
hands out the words of a transcript: one sentence of the script per voiced segment (a pause of
``min_pause`` ends a segment), its words spread evenly over the segment. Without a script it
makes placeholder words, about one per 0.4 s of voice. It knows nothing about any client: it
only sees PCM samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FRAME_SECONDS = 0.02


@dataclass(frozen=True)
class ScriptWord:
    word: str
    start: float
    end: float
    conf: float


def split_sentences(text: str) -> list[list[str]]:
    sentences = [s.split() for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip())]
    return [s for s in sentences if s]


@dataclass
class ScriptedRecognizer:
    rate: int = 16000
    script: list[list[str]] = field(default_factory=list)
    threshold_db: float = -40.0  # frame RMS above this (dBFS) is voice
    min_pause: float = 0.3
    _carry: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    _t: float = 0.0  # audio seconds analysed
    _voice_start: float | None = None
    _last_voice: float = 0.0
    _next_sentence: int = 0
    _placeholder: int = 0
    finals: list[list[ScriptWord]] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: str | Path | None, rate: int = 16000) -> ScriptedRecognizer:
        script = split_sentences(Path(path).read_text(encoding="utf-8")) if path else []
        return cls(rate=rate, script=script)

    @property
    def seconds(self) -> float:
        return self._t

    def feed(self, pcm: np.ndarray) -> list[list[ScriptWord]]:
        """Analyse int16 mono samples; return the segments that just ended, as timed words."""
        samples = np.concatenate([self._carry, pcm.astype(np.int16, copy=False)])
        n = int(self.rate * FRAME_SECONDS)
        whole = len(samples) // n * n
        self._carry = samples[whole:]
        done: list[list[ScriptWord]] = []
        for frame in samples[:whole].reshape(-1, n):
            rms = float(np.sqrt(np.mean((frame.astype(np.float64) / 32768.0) ** 2)) + 1e-12)
            voiced = 20 * np.log10(rms) > self.threshold_db
            if voiced:
                if self._voice_start is None:
                    self._voice_start = self._t
                self._last_voice = self._t + FRAME_SECONDS
            elif self._voice_start is not None and self._t - self._last_voice >= self.min_pause:
                done.append(self._close_segment())
            self._t += FRAME_SECONDS
        self.finals += done
        return done

    def _close_segment(self) -> list[ScriptWord]:
        assert self._voice_start is not None
        start, end = self._voice_start, self._last_voice
        self._voice_start = None
        return self._timed(self._take_sentence(end - start), start, end)

    def _take_sentence(self, seconds: float) -> list[str]:
        if self._next_sentence < len(self.script):
            self._next_sentence += 1
            return self.script[self._next_sentence - 1]
        count = max(1, round(seconds / 0.4))
        words = [f"word{self._placeholder + i + 1}" for i in range(count)]
        self._placeholder += count
        return words

    @staticmethod
    def _timed(words: list[str], start: float, end: float) -> list[ScriptWord]:
        step = (end - start) / len(words)
        return [
            ScriptWord(w, round(start + i * step, 3), round(start + (i + 1) * step, 3), 0.9)
            for i, w in enumerate(words)
        ]

    def flush(self) -> list[ScriptWord]:
        """Close the segment still being spoken: the end of the stream is a pause never seen."""
        if self._voice_start is None:
            return []
        words = self._close_segment()
        self.finals.append(words)
        return words

    def open_span(self) -> tuple[float, float] | None:
        """(start, last voiced time) of the segment still being spoken, if any."""
        return None if self._voice_start is None else (self._voice_start, self._last_voice)

    def current_partial(self) -> list[str]:
        """Words of the segment still being spoken, growing about one per 0.3 s of it."""
        if self._voice_start is None:
            return []
        seconds = self._last_voice - self._voice_start
        if self._next_sentence < len(self.script):
            sentence = self.script[self._next_sentence]
            return sentence[: max(1, min(len(sentence) - 1, int(seconds / 0.3)))]
        return [f"word{self._placeholder + i + 1}" for i in range(max(1, round(seconds / 0.4)))]
