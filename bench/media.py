"""Media decoding (issue 24): how fast FFmpeg (PyAV) decodes an M4A (AAC) and a WebM (Opus)
against libsndfile on the WAV, and the CLI's peak memory streaming a long recording of each.

    python bench/media.py [--minutes 60]

Decode: ``MediaSource`` / ``SoundFileSource`` blocks read in-process (``iter_sync``), audio
seconds per wall second. Memory: peak RSS of ``streamcli melvin FILE --speed 0 --json`` sending
to a recording server (as ``cpu_memory.py`` does for WAVs), for a 1-minute and a
``--minutes`` file: flat memory means the same peak for both. Needs ``streamcli[media]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CACHE, RecordingServer, machine, streamcli_command, wait_rusage

RATE = 48000


def make(kind: str, minutes: float) -> Path:
    """A cached recording of tone bursts (1.6 s on, 0.6 s off), 48 kHz mono."""
    import av
    import soundfile as sf

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"media-{minutes:g}min.{kind}"
    if path.exists():
        return path
    total = int(minutes * 60 * RATE)
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    if kind == "wav":
        with sf.SoundFile(str(tmp), "w", RATE, 1, subtype="PCM_16") as f:
            for block in _blocks(total):
                f.write(block)
    else:
        container, codec = {"m4a": ("mp4", "aac"), "webm": ("webm", "libopus")}[kind]
        out = av.open(str(tmp), "w", format=container)
        stream = out.add_stream(codec, rate=RATE)
        stream.layout = "mono"
        done = 0
        for block in _blocks(total):
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate, frame.pts = RATE, done
            done += len(block)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        out.close()
    tmp.rename(path)
    return path


def _blocks(total: int, size: int = 48000):  # type: ignore[no-untyped-def]
    for start in range(0, total, size):
        t = np.arange(start, min(total, start + size)) / RATE
        yield (0.4 * np.sin(2 * np.pi * 300 * t) * ((t % 2.2) < 1.6)).astype(np.float32)


def decode_speed(path: Path) -> tuple[float, float]:
    from streamcli.audio.sources import open_source

    source = open_source(str(path))
    frames, start = 0, time.perf_counter()
    for block in source.iter_sync():  # type: ignore[attr-defined]
        frames += len(block)
    wall = time.perf_counter() - start
    source.close()
    seconds = frames / source.rate
    return seconds, seconds / wall


def peak_memory(path: Path) -> tuple[float, float]:
    with RecordingServer() as server:
        cmd = [*streamcli_command(), "melvin", str(path), "--url", server.url, "--no-auth"]
        start = time.monotonic()
        proc = subprocess.Popen(
            [*cmd, "--speed", "0", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        code, _, _, maxrss_kib = wait_rusage(proc.pid)
        if code != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"streamcli failed with exit code {code}: {err}")
        return maxrss_kib / 1024, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    print(f"# {machine()}")
    print(f"\n## Decoding {args.minutes:g} minutes (in-process, blocks read)")
    print("| input | decoder | audio s | × real time |")
    print("|---|---|---|---|")
    for kind, decoder in (("wav", "libsndfile"), ("m4a", "FFmpeg AAC"), ("webm", "FFmpeg Opus")):
        seconds, speed = decode_speed(make(kind, args.minutes))
        print(f"| {kind} | {decoder} | {seconds:.0f} | {speed:.0f}× |")
    print("\n## Peak memory of `streamcli melvin FILE --speed 0` to a recording server")
    print(f"| input | 1 minute: peak RSS, wall | {args.minutes:g} minutes: peak RSS, wall |")
    print("|---|---|---|")
    for kind in ("wav", "m4a", "webm"):
        short = peak_memory(make(kind, 1))
        long = peak_memory(make(kind, args.minutes))
        print(
            f"| {kind} | {short[0]:.0f} MiB, {short[1]:.1f} s | {long[0]:.0f} MiB, "
            f"{long[1]:.1f} s |"
        )


if __name__ == "__main__":
    main()
