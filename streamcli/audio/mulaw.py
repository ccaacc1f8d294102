"""G.711 μ-law: 16-bit linear PCM <-> 8-bit μ-law (the Sun/ITU g711.c reference algorithm)."""

from __future__ import annotations

import numpy as np

_BIAS = 0x84
# Sun/ITU g711.c works on 14-bit magnitudes; these are the segment end points.
_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)


def mulaw_encode_int16(samples: np.ndarray) -> bytes:
    """int16 samples -> μ-law bytes (one per sample), bit-exact with g711.c ``linear2ulaw``."""
    v = samples.astype(np.int32) >> 2  # arithmetic shift, as the reference does
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), 8159) + (_BIAS >> 2)
    segment = (v[:, None] > _SEG_END[None, :]).sum(axis=1).astype(np.int32)
    ulaw = (segment << 4) | ((v >> (segment + 1)) & 0x0F)
    ulaw = np.where(segment >= 8, 0x7F, ulaw)  # out of range: the loudest code
    return (ulaw ^ mask).astype(np.uint8).tobytes()


def mulaw_decode_int16(data: bytes) -> np.ndarray:
    """μ-law bytes -> int16 samples."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def mulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes -> float32 in [-1, 1]."""
    return mulaw_decode_int16(data).astype(np.float32) / 32768.0
