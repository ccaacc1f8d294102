"""The deterministic "speech" the model stand-ins hear: every word is a run of one sample value.

Shared by the stand-ins (they run inside the real servers' venvs, stdlib only) and the tests.
A word is ``WORD_SECONDS`` of the constant sample value ``BASE + STEP * id`` followed by
``GAP_SECONDS`` of silence, so any part of a word names it (a word cut at a window edge is still
that word, with a shorter span) and its times follow from sample positions alone.
"""

from __future__ import annotations

import array
import string

RATE = 16000
BASE, STEP = 1200, 173
WORD_SECONDS, GAP_SECONDS = 0.30, 0.20
LEAD_SECONDS = 0.25
LETTERS = string.ascii_lowercase


def word_text(index: int) -> str:
    """Letters only (Melvin's LocalAgreement compares words with digits stripped); every ninth
    word ends a sentence, which makes Melvin flush a final there."""
    first, rest = divmod(index, 26)
    return LETTERS[first % 26] + LETTERS[rest] + "o" + ("." if index % 9 == 8 else "")


def encode(count: int, tail_silence: float = 0.4) -> bytes:
    """``count`` words as s16le mono 16 kHz."""
    samples = array.array("h", [0] * int(LEAD_SECONDS * RATE))
    for i in range(count):
        samples.extend([BASE + STEP * i] * int(WORD_SECONDS * RATE))
        samples.extend([0] * int(GAP_SECONDS * RATE))
    samples.extend([0] * int(tail_silence * RATE))
    return samples.tobytes()


def decode(pcm: bytes, rate: int = RATE) -> list[tuple[str, float, float]]:
    """(word, start, end) for every run of non-zero samples, times in seconds from the start."""
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    words: list[tuple[str, float, float]] = []
    start = None
    for i, value in enumerate([*samples, 0]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            index = round((samples[start] - BASE) / STEP)
            if index >= 0:
                words.append((word_text(index), start / rate, i / rate))
            start = None
    return words
