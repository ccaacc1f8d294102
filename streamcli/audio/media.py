"""Any recording FFmpeg reads, through PyAV (``pip install 'streamcli[media]'``): M4A and MP4
(AAC), WebM and MKV (Opus, Vorbis), MOV, AAC, video files (the audio stream is taken, the
video ignored). libsndfile stays the path for what it reads (``sources.SoundFileSource``);
this one is tried when it cannot.

``MediaSource`` is one more ``AudioSource``: float32 blocks of shape (frames, channels) at the
stream's own rate and channel count (the converter downmixes and resamples, as for a WAV).
Decoding is streamed, a few frames at a time, so memory stays flat for any length; it runs in
a worker thread (``asyncio.to_thread``), so the event loop keeps its pace while FFmpeg works.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from streamcli.exit import UsageError

INSTALL_HINT = "pip install 'streamcli[media]'"
BLOCK_FRAMES = 4096
MEDIA_SUFFIXES = frozenset(
    {".m4a", ".mp4", ".m4v", ".mov", ".3gp", ".aac", ".webm", ".mkv", ".mka", ".opus", ".wma"}
    | {".amr", ".ac3", ".avi", ".flv", ".ts"}
)


def import_av() -> Any:
    """PyAV, or None when the ``media`` extra is not installed."""
    try:
        import av
    except ImportError:
        return None
    return av


def missing_extra(label: str, reason: str) -> UsageError:
    return UsageError(
        f"{label}: not a format libsndfile reads ({reason}); M4A, MP4, WebM, AAC, Opus and "
        f"video files need PyAV: {INSTALL_HINT}"
    )


class MediaSource:
    """The audio stream of a media file, decoded by FFmpeg (PyAV)."""

    live = False

    def __init__(
        self,
        path: str | os.PathLike[str] | BinaryIO,
        label: str,
        audio_stream: int | None = None,
        sndfile_reason: str | None = None,
    ) -> None:
        av = import_av()
        if av is None:
            raise missing_extra(label, sndfile_reason or "unknown format")
        self.label = label
        try:
            # A path, or a file object (a pipe: ``url.py``) read as it comes.
            self._container = av.open(path if hasattr(path, "read") else str(path), mode="r")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            said = (sndfile_reason or "").rstrip(".")  # libsndfile ends its sentences
            reasons = "; ".join(r for r in (said, f"FFmpeg: {_reason(e)}") if r)
            raise UsageError(
                f"{label}: not a readable audio file, nor a media file ({reasons})"
            ) from None
        streams = list(self._container.streams.audio)
        if not streams:
            what = "video only" if self._container.streams.video else "no streams"
            self._container.close()
            raise UsageError(f"{label}: the file has no audio stream ({what})")
        index = 0 if audio_stream is None else audio_stream
        if not 0 <= index < len(streams):
            self._container.close()
            raise UsageError(
                f"--audio-stream {index}: {label} has {len(streams)} audio stream(s), "
                f"numbered from 0 to {len(streams) - 1}"
            )
        self._stream = streams[index]
        codec = self._stream.codec_context
        self.rate = int(codec.sample_rate or 0)
        self.channels = int(codec.channels or (codec.layout.nb_channels if codec.layout else 0))
        if self.rate < 1 or self.channels < 1:
            self._container.close()
            raise UsageError(f"{label}: the audio has no channels or no sample rate")
        self.duration = _duration(self._stream, self._container)
        self.codec = codec.name
        # Packed float32 at the stream's own rate and layout: one call per frame, no resampling.
        self._resampler = av.AudioResampler(format="flt", layout=codec.layout, rate=self.rate)
        self._av = av

    def iter_sync(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Blocks of about ``block_frames`` frames (the codec's frames, gathered)."""
        pending: list[np.ndarray] = []
        held = decoded = 0
        for frame in self._frames():
            decoded += frame.samples
            for out in self._resampler.resample(frame):
                block = out.to_ndarray().reshape(-1, self.channels)
                pending.append(block)
                held += len(block)
            if held >= block_frames:
                yield np.concatenate(pending)
                pending, held = [], 0
        for out in self._resampler.resample(None):  # what the resampler still holds
            pending.append(out.to_ndarray().reshape(-1, self.channels))
        if pending:
            block = np.concatenate(pending)
            if len(block):
                yield block
        seconds = decoded / self.rate
        if self.duration is not None and seconds < self.duration - max(0.5, self.duration / 50):
            # FFmpeg stops quietly where a cut file ends: say so (what was sent was streamed).
            raise UsageError(
                f"{self.label}: the file ends after {seconds:.1f} s of its {self.duration:.1f} s "
                "(truncated?)"
            )

    def _frames(self) -> Iterator[Any]:
        av = self._av
        try:
            for packet in self._container.demux(self._stream):
                yield from packet.decode()
        except av.error.EOFError:
            return
        except (av.error.FFmpegError, ValueError) as e:
            raise UsageError(f"{self.label}: cannot decode the audio ({_reason(e)})") from None

    def blocks(self) -> AsyncGenerator[np.ndarray, None]:
        from streamcli.audio.threaded import threaded_blocks

        # FFmpeg decodes in a worker thread: the pacing of the sessions never waits for it.
        return threaded_blocks(self.iter_sync())

    def close(self) -> None:
        self._container.close()


def _duration(stream: Any, container: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)
    # PyAV says "[Errno 1094995529] Invalid data found when processing input: 'path'".
    text = text.split("] ", 1)[-1]
    return text.split(": '", 1)[0].strip() or type(e).__name__


def is_media_name(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in MEDIA_SUFFIXES
