"""Run the real Melvin-ASR server code with only the Whisper model replaced.

Usage (inside the server's venv): ``python melvin_standin.py SERVER_ROOT WORKDIR ws|rest PORT``.
``WORKDIR`` holds ``config.local.yml``; the server writes its exports below it. The stand-in
``_transcribe`` decodes the coded words (``coded_words.py``) and returns faster-whisper-shaped
segments; it blocks for a moment like a real model does. Modules the code paths under test never
call (faster_whisper's model, torch, transformers, langchain, stable_whisper, nltk) are stubbed.
One observation hook, which changes nothing: the bytes the handler received are saved beside the
export as ``received/<id>.raw`` so a test can compare them with what the client sent.
"""

from __future__ import annotations

import os
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coded_words import decode

LANGUAGE_CODES = ("de", "en", "es", "fr", "it", "nl", "pt")


class _Anything:
    """Stands in for any class or function of a stubbed module that is imported, never used."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything


@dataclass
class Word:  # faster_whisper.transcribe.Word
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:  # faster_whisper.transcribe.Segment
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list | None
    temperature: float | None


def install_stubs() -> None:
    for name in (
        "faster_whisper",
        "faster_whisper.transcribe",
        "faster_whisper.tokenizer",
        "faster_whisper.utils",
        "faster_whisper.audio",
        "torch",
        "transformers",
        "langchain",
        "langchain.text_splitter",
        "stable_whisper",
        "nltk",
        "nltk.downloader",
    ):
        sys.modules[name] = _StubModule(name)
    sys.modules["faster_whisper.transcribe"].Word = Word
    sys.modules["faster_whisper.transcribe"].Segment = Segment
    sys.modules["faster_whisper.tokenizer"]._LANGUAGE_CODES = LANGUAGE_CODES
    sys.modules["faster_whisper.utils"].logging = __import__("logging")


def standin_transcribe(audio_chunk: bytes) -> list[Segment]:
    # A real model blocks the event loop for a while; so does this one, deterministically.
    time.sleep(0.03 + 0.01 * len(audio_chunk) / 32000)
    words = [
        Word(start=round(s, 2), end=round(e, 2), word=" " + text, probability=0.9)
        for text, s, e in decode(audio_chunk)
    ]
    if not words:
        return []
    text = "".join(w.word for w in words)
    return [Segment(0, 0, words[0].start, words[-1].end, text, [], -0.1, 1.0, 0.01, words, 0.0)]


def patch_model(returns_info: bool) -> None:
    from src.websocket import stream_transcriber

    def _transcribe(self, audio_chunk, prompt=""):
        segments = standin_transcribe(audio_chunk)
        return (segments, None) if returns_info else segments

    stream_transcriber.Transcriber._load_model = lambda self: None
    stream_transcriber.Transcriber._transcribe = _transcribe


def observe_received_audio(workdir: Path) -> None:
    from src.websocket.stream import Stream

    original = Stream.export_transcription_and_wav
    received = workdir / "received"
    received.mkdir(exist_ok=True)

    def export_transcription_and_wav(self):
        name = original(self)
        (received / f"{name}.raw").write_bytes(self.total_bytes)
        return name

    Stream.export_transcription_and_wav = export_transcription_and_wav


def main() -> None:
    root, workdir, which, port = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    # The server runs from its checkout: it reads config.local.yml, data/ and (REST) files under
    # src/ relative to the working directory. A scratch folder with src/ linked in stands in.
    os.chdir(workdir)
    if not (workdir / "src").exists():
        (workdir / "src").symlink_to(Path(root) / "src")
    sys.path.insert(0, root)
    install_stubs()
    import uvicorn

    if which == "ws":
        stream_source = (Path(root) / "src" / "websocket" / "stream.py").read_text()
        patch_model(returns_info="segments, _ = self.transcriber._transcribe" in stream_source)
        observe_received_audio(workdir)
        from src.websocket.websockets_server import app
    else:
        from src.rest.app import app
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


if __name__ == "__main__":
    main()
