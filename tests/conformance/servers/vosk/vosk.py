"""A stand-in ``vosk`` module for the real ``asr_server.py``: the coded words instead of Kaldi.

It answers with the shapes and formatting of vosk-api's JSON (``"key" : value``, indent 2):
``{"partial": ...}`` while an utterance grows, ``{"result": [...], "text": ...}`` when it ends
(``AcceptWaveform`` true after ``UTTERANCE_WORDS`` whole words and a pause), the rest on
``FinalResult``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coded_words import decode

UTTERANCE_WORDS = 4
PAUSE_SECONDS = 0.1


def _dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, separators=(",", " : "))


class Model:
    def __init__(self, path: str) -> None:
        self.path = path


class SpkModel(Model):
    pass


class KaldiRecognizer:
    def __init__(self, model: Model, sample_rate: float, grammar: str | None = None) -> None:
        self.rate = int(sample_rate)
        self.words = True
        self.offset = 0.0  # seconds before the current utterance
        self.buffer = b""

    def SetWords(self, words: bool) -> None:
        self.words = bool(words)

    def SetMaxAlternatives(self, n: int) -> None:
        pass

    def SetSpkModel(self, model: SpkModel) -> None:
        pass

    def _words(self) -> list[tuple[str, float, float]]:
        return [(w, s + self.offset, e + self.offset) for w, s, e in decode(self.buffer, self.rate)]

    def AcceptWaveform(self, data: bytes) -> bool:
        self.buffer += bytes(data)
        words = self._words()
        seconds = len(self.buffer) / 2 / self.rate
        whole = [w for w in words if w[2] <= seconds - PAUSE_SECONDS]
        return len(whole) >= UTTERANCE_WORDS and len(whole) == len(words)

    def _take(self) -> str:
        words = self._words()
        self.offset += len(self.buffer) / 2 / self.rate
        self.buffer = b""
        result = [
            {"conf": 1.0, "end": round(e, 2), "start": round(s, 2), "word": w} for w, s, e in words
        ]
        text = " ".join(w for w, _, _ in words)
        return _dumps({"result": result, "text": text} if result and self.words else {"text": text})

    def Result(self) -> str:
        return self._take()

    def FinalResult(self) -> str:
        return self._take()

    def PartialResult(self) -> str:
        return _dumps({"partial": " ".join(w for w, _, _ in self._words())})
