"""Inputs, conversion and chunking: formats, resampling that keeps duration and pitch."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from conftest import dominant_frequency, tone

from streamcli.audio import wav
from streamcli.audio.convert import Chunker, Converter, chunk_bytes_for
from streamcli.audio.sources import SoundFileSource, WavStreamSource, open_source
from streamcli.exit import UsageError


def convert_all(source, out_rate: int = 16000, encoding: str = "s16le") -> np.ndarray:
    conv = Converter(source.rate, out_rate, encoding)
    data = b"".join(conv.process(b) for b in source.iter_sync(1000)) + conv.flush()
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


SUBTYPES = [
    ("PCM_U8", "WAV"),
    ("PCM_16", "WAV"),
    ("PCM_24", "WAV"),
    ("PCM_32", "WAV"),
    ("FLOAT", "WAV"),
    ("DOUBLE", "WAV"),
    ("ULAW", "WAV"),
    ("ALAW", "WAV"),
    ("PCM_16", "FLAC"),
    ("VORBIS", "OGG"),
]


@pytest.mark.parametrize(("subtype", "fmt"), SUBTYPES)
@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_every_format_resamples_to_16k_with_the_same_duration_and_pitch(
    make_wav, subtype, fmt, rate
):
    data = np.stack([tone(440, 1.5, rate), tone(440, 1.5, rate)], axis=1)  # stereo
    path = make_wav(f"t.{fmt.lower()}", data, rate, subtype=subtype, fmt=fmt)
    source = SoundFileSource(path)
    out = convert_all(source)
    assert abs(len(out) / 16000 - 1.5) < 0.01
    assert abs(dominant_frequency(out, 16000) - 440) < 3


def test_downmix_averages_the_channels(make_wav):
    left, right = tone(440, 1.0, 16000, 0.4), np.zeros(16000, np.float32)
    path = make_wav("lr.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    out = convert_all(SoundFileSource(path))
    assert np.max(np.abs(out)) == pytest.approx(0.2, abs=0.002)


def test_one_channel_can_be_picked_for_split_streams(make_wav):
    data = np.stack([tone(440, 1.0, 16000), tone(1000, 1.0, 16000)], axis=1)
    path = make_wav("two.wav", data, 16000)
    source = SoundFileSource(path)
    conv = Converter(16000, 16000, channel=1)
    out = np.frombuffer(b"".join(conv.process(b) for b in source.iter_sync()), "<i2")
    assert abs(dominant_frequency(out, 16000) - 1000) < 3


def test_mulaw_encoding_is_one_byte_per_sample(make_wav):
    path = make_wav("m.wav", tone(440, 1.0, 16000), 16000)
    conv = Converter(16000, 8000, "mulaw")
    out = b"".join(conv.process(b) for b in SoundFileSource(path).iter_sync()) + conv.flush()
    assert abs(len(out) - 8000) < 40


def test_chunks_keep_whole_samples_and_the_rest_is_kept():
    chunker = Chunker(chunk_bytes_for(16000, "s16le", 100), 2)
    assert chunker.chunk_bytes == 3200
    chunks = chunker.push(b"\x01" * 7000)
    assert [len(c) for c in chunks] == [3200, 3200]
    assert chunker.rest() == b"\x01" * 600


def test_chunk_size_for_odd_milliseconds_is_even():
    assert chunk_bytes_for(16000, "s16le", 33) % 2 == 0
    assert chunk_bytes_for(8000, "mulaw", 20) == 160


def stream_of(path) -> io.BufferedReader:
    """A non-seekable stream, like a pipe."""

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            n = min(len(b), len(self.data) - self.pos, 1000)  # short reads, like a pipe
            b[:n] = self.data[self.pos : self.pos + n]
            self.pos += n
            return n

    return io.BufferedReader(Pipe(path.read_bytes()))


@pytest.mark.parametrize(
    "subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "ULAW", "ALAW"]
)
def test_stdin_wav_streams_without_seeking_and_matches_soundfile(make_wav, subtype):
    data = np.stack([tone(300, 0.7, 22050), tone(600, 0.7, 22050)], axis=1) * 0.8
    path = make_wav("s.wav", data, 22050, subtype=subtype)
    streamed = np.concatenate(list(WavStreamSource(stream_of(path)).iter_sync(777)))
    expected, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert streamed.shape == expected.shape
    assert np.allclose(streamed, expected, atol=1e-4)


def test_stdin_wav_with_unknown_length_reads_to_the_end(make_wav):
    path = make_wav("s.wav", tone(440, 1.0, 16000), 16000)
    raw = bytearray(path.read_bytes())
    raw[40:44] = struct.pack("<I", 0xFFFFFFFF)  # what sox writes on a pipe
    (path.parent / "u.wav").write_bytes(bytes(raw))
    source = WavStreamSource(stream_of(path.parent / "u.wav"))
    assert source.duration is None
    assert sum(len(b) for b in source.iter_sync()) == 16000


def test_stdin_flac_is_spooled_and_read(make_wav):
    path = make_wav("s.flac", tone(440, 1.0, 16000), 16000, fmt="FLAC")
    source = open_source("-", stdin=stream_of(path))
    assert source.rate == 16000 and source.duration == pytest.approx(1.0)


def test_stdin_that_is_not_audio_is_a_usage_error():
    with pytest.raises(UsageError, match="stdin"):
        open_source("-", stdin=io.BufferedReader(io.BytesIO(b"hello, this is text not audio")))


def test_empty_stdin_is_a_usage_error():
    with pytest.raises(UsageError, match="empty"):
        open_source("-", stdin=io.BufferedReader(io.BytesIO(b"")))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "empty"),
        (b"just some text, not audio at all", "not a readable audio file"),
    ],
)
def test_unusable_files_are_usage_errors(tmp_path, content, message):
    path = tmp_path / "in.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        open_source(str(path))


def test_a_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="directory"):
        open_source(str(tmp_path))


def test_wav_header_is_the_canonical_44_bytes():
    h = wav.wav_header(16000)
    assert len(h) == 44
    assert h[:4] == b"RIFF" and h[8:16] == b"WAVEfmt "
    assert struct.unpack("<IHHIIHH", h[16:36]) == (16, 1, 1, 16000, 32000, 2, 16)
    assert h[36:40] == b"data" and struct.unpack("<I", h[40:44])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", h[4:8])[0] == 0xFFFFFFFF


def test_wav_header_with_a_known_length():
    h = wav.wav_header(8000, data_size=1000)
    assert struct.unpack("<I", h[4:8])[0] == 1036
    assert struct.unpack("<I", h[40:44])[0] == 1000


def test_quieting_stderr_from_several_threads_restores_it():
    """Threads that silence C libraries at once must not leave fd 2 at /dev/null."""
    import os
    import threading

    from streamcli.audio.sources import _quiet_stderr

    before = os.fstat(2)
    barrier = threading.Barrier(4)

    def quiet() -> None:
        with _quiet_stderr():
            barrier.wait(timeout=5)  # all four inside at once

    threads = [threading.Thread(target=quiet) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
