"""Audio sources: a file (through soundfile, else FFmpeg: ``media.py``) or stdin (streaming
WAV, else spooled).

A source yields float32 blocks of shape (frames, channels) at its own rate. Reading is in
blocks, so memory stays flat however long the input is. Every way an input can be unusable
becomes a ``UsageError`` with one clear line (exit 2).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from streamcli.exit import UsageError

BLOCK_FRAMES = 4096


class AudioSource(Protocol):
    rate: int
    channels: int
    duration: float | None  # seconds, when known
    live: bool  # True when the source is paced by a device clock (microphone)
    label: str

    def blocks(self) -> AsyncGenerator[np.ndarray, None]: ...

    def close(self) -> None: ...


class NotSoundFile(UsageError):
    """libsndfile cannot read the file's format (another decoder may: ``media.py``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SoundFileSource:
    """Any file libsndfile reads: WAV (every subtype), FLAC, OGG, AIFF, ..."""

    live = False

    def __init__(self, path: str | os.PathLike[str], label: str | None = None) -> None:
        import soundfile as sf

        p = Path(path)
        self.label = label or str(path)
        if not p.exists():
            raise UsageError(f"{self.label}: no such file")
        if p.is_dir():
            raise UsageError(f"{self.label}: is a directory, not an audio file")
        if p.stat().st_size == 0:
            raise UsageError(f"{self.label}: the file is empty")
        try:
            with _quiet_stderr():  # libmpg123 prints its own warnings while libsndfile probes
                self._file = sf.SoundFile(str(p))
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            reason = _sf_reason(e)
            message = f"{self.label}: not a readable audio file ({reason})"
            raise NotSoundFile(message, reason) from None
        if self._file.channels < 1 or self._file.samplerate < 1:
            self._file.close()
            raise UsageError(f"{self.label}: the audio has no channels or no sample rate")
        self.rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        frames = self._file.frames
        self.duration = frames / self.rate if frames and frames > 0 else None

    def iter_sync(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        import soundfile as sf

        try:
            while True:
                block = self._file.read(block_frames, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield block
        except (sf.LibsndfileError, RuntimeError) as e:
            raise UsageError(f"{self.label}: cannot decode the audio ({_sf_reason(e)})") from None

    async def blocks(self) -> AsyncGenerator[np.ndarray, None]:
        for block in self.iter_sync():
            yield block

    def close(self) -> None:
        self._file.close()


class WavStreamSource:
    """A WAV stream on a pipe: parsed as it arrives (sox ... -t wav - | streamcli melvin -)."""

    live = False
    duration: float | None = None

    def __init__(self, stream: BinaryIO, label: str = "stdin") -> None:
        from streamcli.audio import wav

        self.label = label
        self._stream = stream
        try:
            self._fmt = wav.read_header(stream)
        except wav.WavFormatError as e:
            raise UsageError(f"{label}: {e}") from None
        self.rate, self.channels = self._fmt.rate, self._fmt.channels
        if self._fmt.data_size is not None:
            self.duration = self._fmt.data_size / self._fmt.frame_bytes / self.rate

    def iter_sync(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        from streamcli.audio import wav

        yield from wav.iter_blocks(self._stream, self._fmt, block_frames)

    def blocks(self) -> AsyncGenerator[np.ndarray, None]:
        # A pipe may stall (a live producer): read in a thread so the session keeps running.
        from streamcli.audio.threaded import threaded_blocks

        return threaded_blocks(self.iter_sync())

    def close(self) -> None:
        pass


def open_source(
    spec: str, stdin: BinaryIO | None = None, audio_stream: int | None = None
) -> AudioSource:
    """A file: libsndfile, else FFmpeg (PyAV, ``media.py``) for M4A, MP4, WebM and the like.
    ``-`` reads stdin: WAV streams as it arrives; other formats (FLAC, OGG, M4A, ...) are
    spooled to a temporary file first, because their decoders need to seek in them.
    ``audio_stream`` picks an audio stream of a media file (0 first)."""
    if spec != "-":
        return open_file(spec, spec, audio_stream)
    stream = stdin if stdin is not None else sys.stdin.buffer
    head = stream.peek(12)[:12] if hasattr(stream, "peek") else b""
    if not head:
        raise UsageError("stdin: no audio on standard input (it is empty)")
    if head[:4] in (b"RIFF", b"RF64") and audio_stream is None:
        return WavStreamSource(stream)
    return _spooled(stream, audio_stream)


def open_file(path: str, label: str, audio_stream: int | None = None) -> AudioSource:
    """A local file: libsndfile, else FFmpeg (PyAV); ``label`` names it in errors."""
    from streamcli.audio import media

    if audio_stream is not None:  # a choice of streams: a container only FFmpeg reads
        if not Path(path).is_file():
            SoundFileSource(path, label)  # says why: no such file, a directory, empty
        if media.import_av() is None:
            raise UsageError(f"--audio-stream needs PyAV: {media.INSTALL_HINT}")
        return media.MediaSource(path, label, audio_stream)
    try:
        return SoundFileSource(path, label)
    except NotSoundFile as e:
        if media.import_av() is None:
            raise media.missing_extra(label, e.reason) from None
        return media.MediaSource(path, label, sndfile_reason=e.reason)


def _spooled(stream: BinaryIO, audio_stream: int | None) -> AudioSource:
    with tempfile.NamedTemporaryFile(prefix="streamcli-stdin-", delete=False) as tmp:
        shutil.copyfileobj(stream, tmp, 1 << 16)
    try:
        source = open_file(tmp.name, "stdin", audio_stream)
    finally:
        os.unlink(tmp.name)  # the open file keeps the data readable on POSIX
    return source


_QUIET_LOCK = threading.Lock()
_quiet_depth = 0
_quiet_saved: int | None = None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (C libraries write there).

    Nested or concurrent uses share one redirection (the first saves fd 2, the last restores
    it): two threads each saving and restoring would leave stderr pointing at /dev/null."""
    global _quiet_depth, _quiet_saved
    with _QUIET_LOCK:
        if _quiet_depth == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _quiet_saved = saved
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_saved is not None:
                os.dup2(_quiet_saved, 2)
                os.close(_quiet_saved)
                _quiet_saved = None


def _sf_reason(e: Exception) -> str:
    text = str(e)
    # libsndfile says "Error opening '<path>': <reason>"; keep the reason only.
    return text.split(": ", 1)[1] if ": " in text else text
