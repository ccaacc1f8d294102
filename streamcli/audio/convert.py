"""Convert source blocks to a backend's wire format: downmix (or pick a channel), resample with
soxr's streaming resampler, encode (s16le or μ-law), and cut into fixed-length chunks.

Everything is streaming: state lives in the resampler and the chunker, so memory is flat.
"""

from __future__ import annotations

import numpy as np

ENCODINGS = {"s16le": 2, "mulaw": 1}  # bytes per sample


class Converter:
    """float32 blocks (frames, channels) at ``in_rate`` -> encoded mono bytes at ``out_rate``."""

    def __init__(
        self,
        in_rate: int,
        out_rate: int,
        encoding: str = "s16le",
        channel: int | None = None,
        quality: str = "HQ",
    ) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}")
        self.in_rate, self.out_rate, self.encoding, self.channel = (
            in_rate,
            out_rate,
            encoding,
            channel,
        )
        self._resampler = None
        if in_rate != out_rate:
            import soxr

            self._resampler = soxr.ResampleStream(
                in_rate, out_rate, 1, dtype="float32", quality=quality
            )

    def mono(self, block: np.ndarray) -> np.ndarray:
        if block.ndim == 1:
            return block.astype(np.float32, copy=False)
        if self.channel is not None:
            return np.ascontiguousarray(block[:, self.channel], dtype=np.float32)
        if block.shape[1] == 1:
            return np.ascontiguousarray(block[:, 0], dtype=np.float32)
        # Adding the columns is ~20x faster than block.mean(axis=1), whose reduction runs along
        # the short, strided axis (bench/README.md, "CPU and memory"); for stereo float32 the
        # result is bit-identical, with more channels within one float32 ulp.
        out = block[:, 0].astype(np.float32)
        for c in range(1, block.shape[1]):
            out += block[:, c]
        out /= np.float32(block.shape[1])
        return out

    def process(self, block: np.ndarray, last: bool = False) -> bytes:
        x = self.mono(block)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        return self.encode(x)

    def flush(self) -> bytes:
        """The resampler's tail, at the end of the input."""
        if self._resampler is None:
            return b""
        return self.encode(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))

    def encode(self, x: np.ndarray) -> bytes:
        pcm = np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2")
        if self.encoding == "s16le":
            return pcm.tobytes()
        from streamcli.audio.mulaw import mulaw_encode_int16

        return mulaw_encode_int16(pcm)


class Chunker:
    """Cut a byte stream into chunks of whole samples of ``chunk_bytes`` each."""

    def __init__(self, chunk_bytes: int, sample_bytes: int = 2) -> None:
        if chunk_bytes < sample_bytes or chunk_bytes % sample_bytes:
            raise ValueError("chunk size must be a positive whole number of samples")
        self.chunk_bytes = chunk_bytes
        self._buf = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buf += data
        n = len(self._buf) // self.chunk_bytes
        out = [
            bytes(self._buf[i * self.chunk_bytes : (i + 1) * self.chunk_bytes]) for i in range(n)
        ]
        del self._buf[: n * self.chunk_bytes]
        return out

    def rest(self) -> bytes:
        """What is left at the end (always whole samples, possibly shorter than a chunk)."""
        out, self._buf = bytes(self._buf), bytearray()
        return out


def chunk_bytes_for(rate: int, encoding: str, chunk_ms: int) -> int:
    return max(1, rate * chunk_ms // 1000) * ENCODINGS[encoding]
