"""The PocketSphinx recognizer on human speech: the bundled LibriVox reading (streamcli/data),
its transcript as the reference. Thresholds are loose enough for PocketSphinx (about a third of
the words wrong) and tight enough to fail when the audio is corrupted, resampled wrong or cut.
"""

from __future__ import annotations

from itertools import pairwise

import jiwer
import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import require_asr

from streamcli.commands.melvin import sample_paths
from streamcli.emulators.sphinx import SphinxRecognizer, spoken

require_asr()

SAMPLE, TRANSCRIPT = sample_paths()
READ = " ".join(TRANSCRIPT.read_text("utf-8").split())
CHUNK = 0.1  # seconds a feed, as a client sends


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    pcm, rate = sf.read(str(SAMPLE), dtype="int16")
    assert rate == 16000 and pcm.ndim == 1
    return pcm


def at_rate(pcm: np.ndarray, rate: int) -> np.ndarray:
    out = soxr.resample(pcm.astype(np.float32) / 32768, 16000, rate)
    return (np.clip(out, -1, 1) * 32767).astype(np.int16)


def recognize(pcm: np.ndarray, rate: int) -> tuple[list, list[list[str]]]:
    """The finals, and every partial seen while feeding chunk by chunk."""
    recognizer = SphinxRecognizer(rate)
    step = int(rate * CHUNK)
    partials: list[list[str]] = []
    for i in range(0, len(pcm), step):
        recognizer.feed(pcm[i : i + step])
        partial = recognizer.current_partial()
        if partial and (not partials or partial != partials[-1]):
            partials.append(partial)
    recognizer.flush()
    return recognizer.finals, partials


def words_of(finals: list) -> str:
    return " ".join(w.word for segment in finals for w in segment)


@pytest.fixture(scope="module")
def wideband(speech):
    return recognize(speech, 16000)


def test_a_reading_at_16khz_is_recognized_with_timed_words(wideband, speech):
    finals, partials = wideband
    assert jiwer.wer(READ, words_of(finals)) < 0.45
    # One final per utterance: five readings with 0.8 s pauses between them.
    assert len(finals) == 5
    seconds = len(speech) / 16000
    for segment in finals:
        assert all(0 <= w.start < w.end <= seconds for w in segment)
        assert all(a.end <= b.start + 1e-6 for a, b in pairwise(segment))
    assert all(0 < w.conf <= 1 for segment in finals for w in segment)
    # Partials grow while someone speaks: the longest of each utterance runs to many words.
    assert max(len(p) for p in partials) >= 10
    assert any(len(b) > len(a) and b[: len(a) - 1] == a[:-1] for a, b in pairwise(partials))


def test_the_same_reading_at_8khz_is_recognized_too(speech):
    finals, _ = recognize(at_rate(speech, 8000), 8000)
    # Telephone bandwidth: the 16 kHz model hears it worse, but it hears it.
    assert jiwer.wer(READ, words_of(finals)) < 0.6
    assert len(finals) == 5


def test_audio_resampled_wrong_is_not_recognized(speech):
    # The first two readings (12 s), then the same samples played as 11.025 kHz: slower and
    # lower, as a wrong header makes them.
    first_two = speech[: 12 * 16000]
    reference = " ".join(TRANSCRIPT.read_text("utf-8").splitlines()[:2])
    assert jiwer.wer(reference, words_of(recognize(first_two, 16000)[0])) < 0.45
    assert jiwer.wer(reference, words_of(recognize(first_two, 11025)[0])) > 0.7


def test_a_cut_recording_misses_its_second_half(wideband, speech):
    finals, _ = recognize(speech[: len(speech) // 2], 16000)
    assert jiwer.wer(READ, words_of(finals)) > 0.5
    # What ended before the cut is what the whole recording gave.
    assert finals[:-1] == wideband[0][: len(finals) - 1]


def test_fillers_and_alternative_pronunciations_are_not_words():
    assert [spoken(w) for w in ("<s>", "<sil>", "[NOISE]", "was(2)", "man")] == [
        None,
        None,
        None,
        "was",
        "man",
    ]
