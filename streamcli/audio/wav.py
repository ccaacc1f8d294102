"""RIFF/WAVE: a streaming reader for pipes (soundfile needs to seek) and a header writer.

The reader parses the header from a non-seekable stream and then yields sample blocks as it
reads, so memory stays flat however long the stream is. It accepts the subtypes soundfile
accepts for WAV files: 8-bit unsigned, 16/24/32-bit signed, 32/64-bit float, μ-law, A-law,
and WAVE_FORMAT_EXTENSIBLE wrapping any of these. A data size of 0 or 0xFFFFFFFF (what
``sox ... -t wav -`` writes when it cannot seek back) means "until the end of the stream".
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

PCM, FLOAT, ALAW, MULAW, EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
STREAMING_SIZE = 0xFFFFFFFF


class WavFormatError(ValueError):
    """The stream is not a WAV we can read."""


@dataclass(frozen=True)
class WavFormat:
    format_tag: int
    channels: int
    rate: int
    bits: int
    data_size: int | None  # None: until end of stream

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.bits // 8


def wav_header(
    rate: int, channels: int = 1, bits: int = 16, data_size: int = STREAMING_SIZE
) -> bytes:
    """A canonical 44-byte PCM RIFF/WAVE header.

    For live input the length is unknown: ``data_size`` 0xFFFFFFFF, and the RIFF size saturates
    at 0xFFFFFFFF too (as phebi.md suggests: "use 0xFFFFFFFF or a large value").
    """
    block_align = channels * bits // 8
    riff_size = min(36 + data_size, STREAMING_SIZE)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, PCM, channels, rate, rate * block_align, block_align, bits)
        + b"data"
        + struct.pack("<I", data_size)
    )


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    while n > 0:
        b = stream.read(n)
        if not b:
            break
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def read_header(stream: BinaryIO) -> WavFormat:
    head = _read_exact(stream, 12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise WavFormatError("not a WAV stream (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int] | None = None
    while True:
        chunk = _read_exact(stream, 8)
        if len(chunk) < 8:
            raise WavFormatError("truncated WAV header (no data chunk)")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            body = _read_exact(stream, size + (size & 1))
            if len(body) < 16:
                raise WavFormatError("truncated WAV fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise WavFormatError("WAV data chunk before the fmt chunk")
            tag, channels, rate, bits = fmt
            if channels < 1 or rate < 1:
                raise WavFormatError("WAV header has no channels or no sample rate")
            _check_supported(tag, bits)
            data_size = None if size in (0, STREAMING_SIZE) else size
            return WavFormat(tag, channels, rate, bits, data_size)
        else:
            skipped = _read_exact(stream, size + (size & 1))
            if len(skipped) < size:
                raise WavFormatError("truncated WAV header")


def _check_supported(tag: int, bits: int) -> None:
    ok = (
        (tag == PCM and bits in (8, 16, 24, 32))
        or (tag == FLOAT and bits in (32, 64))
        or (tag in (MULAW, ALAW) and bits == 8)
    )
    if not ok:
        raise WavFormatError(f"unsupported WAV encoding (format {tag:#x}, {bits} bits)")


def decode(raw: bytes, fmt: WavFormat) -> np.ndarray:
    """Bytes of whole frames -> float32 array of shape (frames, channels) in [-1, 1]."""
    tag, bits = fmt.format_tag, fmt.bits
    if tag == PCM and bits == 8:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == PCM and bits == 16:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif tag == PCM and bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif tag == PCM and bits == 32:
        x = (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif tag == FLOAT:
        x = np.frombuffer(raw, "<f4" if bits == 32 else "<f8").astype(np.float32)
    elif tag == MULAW:
        from streamcli.audio.mulaw import mulaw_decode

        x = mulaw_decode(raw)
    else:  # ALAW
        x = _alaw_decode(np.frombuffer(raw, np.uint8))
    return x.reshape(-1, fmt.channels)


def _alaw_decode(a: np.ndarray) -> np.ndarray:
    a = a ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = (a & 0x0F).astype(np.int32)
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << (exponent.astype(np.int32) - 1),
    )
    return (np.where(sign != 0, magnitude, -magnitude) / 32768.0).astype(np.float32)


def iter_blocks(stream: BinaryIO, fmt: WavFormat, block_frames: int) -> Iterator[np.ndarray]:
    """Yield decoded blocks until the data chunk (or stream) ends; a partial frame is dropped."""
    remaining = fmt.data_size
    want = block_frames * fmt.frame_bytes
    carry = b""
    while remaining is None or remaining > 0:
        n = want if remaining is None else min(want, remaining)
        data = stream.read(n - len(carry)) if n > len(carry) else b""
        if not data and not carry:
            return
        if not data:
            return  # a partial trailing frame: dropped
        if remaining is not None:
            remaining -= len(data)
        data = carry + data
        whole = len(data) - len(data) % fmt.frame_bytes
        carry = data[whole:]
        if whole:
            yield decode(data[:whole], fmt)
