"""A real speech recognizer for the emulators: PocketSphinx (``pip install 'streamcli[asr]'``).

The same interface as ``scripted.ScriptedRecognizer`` -- int16 PCM in (``feed``), the segments
that ended out, ``current_partial()`` while someone speaks, ``flush()`` at the end -- with the
words heard instead of a script's. PocketSphinx's endpointer (a voice activity detector over
30 ms frames, ``min_pause`` of window) cuts the stream into utterances: an utterance starts the
decoder, each frame of speech goes to it (so the partial hypothesis grows while it lasts) and
its end is a final, with each word's start and end from the decoder's segmentation, on the
stream's own timeline. The model is PocketSphinx's US English one (shipped in its wheel), a
16 kHz model: other rates are resampled to 16 kHz first (8 kHz telephony audio has no energy
above 4 kHz and is recognized worse).

Pure computation: no sockets, no asyncio. Decoding is CPU work (about 0.3x real time a stream)
that holds the GIL, so the emulators run it in worker processes (``recognition.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamcli.emulators.scripted import ScriptWord

MODEL_RATE = 16000
FRAMES_PER_SECOND = 100  # the decoder's segmentation unit
MISSING = "real recognition needs PocketSphinx: pip install 'streamcli[asr]'"


def available() -> bool:
    """True when PocketSphinx can be imported (the ``asr`` extra is installed)."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


def new_decoder() -> Any:
    """A decoder with the bundled US English model (about 0.4 s and 90 MB to make)."""
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise RuntimeError(MISSING) from None
    return Decoder(samprate=MODEL_RATE, loglevel="FATAL")


def spoken(word: str) -> str | None:
    """A dictionary word as said: fillers (``<s>``, ``<sil>``, ``[NOISE]``) are None, an
    alternative pronunciation's ``(2)`` is dropped."""
    if word.startswith(("<", "[", "+")):
        return None
    return word.split("(", 1)[0]


class SphinxRecognizer:
    """One stream's recognizer. ``decoder`` may be reused from a finished stream."""

    def __init__(self, rate: int = MODEL_RATE, min_pause: float = 0.3, decoder: Any = None):
        from pocketsphinx import Endpointer

        self.rate = rate
        self.min_pause = min_pause
        self.decoder = decoder if decoder is not None else new_decoder()
        # The window is the pause that ends an utterance (Bodhi's endpoint silence, say).
        self._endpointer = Endpointer(window=max(0.09, min_pause), sample_rate=MODEL_RATE)
        self._frame = self._endpointer.frame_bytes // 2
        self._resampler: Any = None
        if rate != MODEL_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(rate, MODEL_RATE, 1, dtype="float32")
        self._carry = np.zeros(0, np.int16)
        self._t = 0.0  # input seconds taken
        self._utterance_start: float | None = None
        self._partial: list[str] = []
        self._last_voice = 0.0
        self.finals: list[list[ScriptWord]] = []

    @property
    def seconds(self) -> float:
        return self._t

    def feed(self, pcm: np.ndarray) -> list[list[ScriptWord]]:
        """Take int16 mono samples at ``rate``; return the utterances that just ended."""
        self._t += len(pcm) / self.rate
        samples = self._to_model_rate(pcm, last=False)
        return self._frames(samples)

    def flush(self) -> list[ScriptWord]:
        """The end of the stream: the utterance still open ends here."""
        samples = self._to_model_rate(np.zeros(0, np.int16), last=True)
        done = self._frames(samples)
        if self._utterance_start is not None:
            last = np.zeros(self._frame, np.int16)  # a whole frame: the carry, then silence
            last[: len(self._carry)] = self._carry
            rest = self._endpointer.end_stream(last.tobytes())
            if rest:
                self.decoder.process_raw(rest, False, False)
            done.append(self._end_utterance())
        self._carry = np.zeros(0, np.int16)
        words = [w for segment in done for w in segment]
        return words

    def current_partial(self) -> list[str]:
        """The words of the utterance still being spoken (the decoder's best so far)."""
        return list(self._partial)

    def open_span(self) -> tuple[float, float] | None:
        """(start, last voiced time) of the utterance still being spoken, if any."""
        if self._utterance_start is None:
            return None
        return (self._utterance_start, self._last_voice)

    # ---- inside -----------------------------------------------------------------------------
    def _to_model_rate(self, pcm: np.ndarray, last: bool) -> np.ndarray:
        if self._resampler is None:
            return pcm.astype(np.int16, copy=False)
        out = self._resampler.resample_chunk(pcm.astype(np.float32) / 32768.0, last=last)
        return (np.clip(out, -1.0, 1.0) * 32767.0).astype(np.int16)

    def _frames(self, samples: np.ndarray) -> list[list[ScriptWord]]:
        samples = np.concatenate([self._carry, samples])
        n = self._frame
        whole = len(samples) // n * n
        self._carry = samples[whole:]
        done: list[list[ScriptWord]] = []
        decoder, endpointer = self.decoder, self._endpointer
        for i in range(0, whole, n):
            was_speech = endpointer.in_speech
            speech = endpointer.process(samples[i : i + n].tobytes())
            if speech is None:
                continue
            if not was_speech:
                decoder.start_utt()
                self._utterance_start = endpointer.speech_start
            decoder.process_raw(speech, False, False)
            self._last_voice = endpointer.speech_end if not endpointer.in_speech else self._t
            if not endpointer.in_speech:
                done.append(self._end_utterance())
            else:
                hyp = decoder.hyp()
                self._partial = hyp.hypstr.split() if hyp is not None else []
        return [segment for segment in done if segment]

    def _end_utterance(self) -> list[ScriptWord]:
        decoder = self.decoder
        decoder.end_utt()
        start = self._utterance_start or 0.0
        self._utterance_start, self._partial = None, []
        logmath = decoder.get_logmath()
        words = []
        for seg in decoder.seg():
            word = spoken(seg.word)
            if word is None:
                continue
            words.append(
                ScriptWord(
                    word,
                    round(start + seg.start_frame / FRAMES_PER_SECOND, 3),
                    round(start + (seg.end_frame + 1) / FRAMES_PER_SECOND, 3),
                    round(min(1.0, logmath.exp(seg.prob)), 3),
                )
            )
        if words:
            self.finals.append(words)
        return words
