"""Unpaced throughput: audio-seconds per wall-second at --speed 0.

    python bench/throughput.py [--minutes 10]

Input: a 44.1 kHz stereo float WAV; streamcli downmixes and resamples it to 16 kHz mono s16le
and sends it to a local recording server (``streamcli melvin FILE --no-auth --speed 0``).
Printed: the streaming rate (audio sent / time from the first frame to the last frame of the
stream at the server; the Melvin client holds its very last frame back for the end phase, so
that frame is left out), the end phase (last stream frame to the held frame: the server's
sync answer and idle wait), the whole-process rate (launch to exit, start-up and end phase
included), and, for comparison, the read + convert pipeline alone in this process (no socket).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import RecordingServer, machine, speech_like_wav, streamcli_command


def pipeline_only(path: str) -> float:
    """Read + downmix + resample + encode + chunk, as ``session.feed`` does, without a socket."""
    from streamcli.audio.convert import Chunker, Converter, chunk_bytes_for
    from streamcli.audio.sources import SoundFileSource

    source = SoundFileSource(path)
    converter = Converter(source.rate, 16000, "s16le")
    chunker = Chunker(chunk_bytes_for(16000, "s16le", 100))
    t = time.perf_counter()
    n = 0
    for block in source.iter_sync():
        n += len(chunker.push(converter.process(block)))
    n += len(chunker.push(converter.flush()))
    wall = time.perf_counter() - t
    source.close()
    return n * 0.1 / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    wav = str(speech_like_wav(args.minutes * 60, rate=44100, channels=2, subtype="FLOAT"))
    print(f"machine: {machine()}")
    print(f"input: {args.minutes:g} min, 44.1 kHz stereo float WAV -> 16 kHz mono s16le")
    stream_rates, process_rates = [], []
    with RecordingServer() as server:
        cmd = [*streamcli_command(), "melvin", wav, "--url", server.url, "--no-auth"]
        cmd += ["--speed", "0", "--json"]
        for _ in range(args.runs):
            server.reset()
            t = time.monotonic()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            wall = time.monotonic() - t
            conn = server.connections[0]
            audio = conn.audio_bytes / 2 / 16000
            streamed = (conn.audio_bytes - conn.sizes[-1]) / 2 / 16000  # without the held frame
            span = conn.arrivals[-2] - conn.arrivals[0]
            end_phase = conn.arrivals[-1] - conn.arrivals[-2]
            stream_rates.append(streamed / span)
            process_rates.append(audio / wall)
            print(
                f"  run: {audio:.1f} audio-s; first->last stream frame {span:.2f} s = "
                f"{streamed / span:.0f}x; end phase {end_phase:.2f} s; "
                f"launch->exit {wall:.2f} s = {audio / wall:.0f}x"
            )
    best_stream, best_process = max(stream_rates), max(process_rates)
    print(f"streaming rate (best of {args.runs}): {best_stream:.0f}x real time")
    print(f"whole process (best of {args.runs}): {best_process:.0f}x real time")
    print(f"read + convert only, in process: {pipeline_only(wav):.0f}x real time")
    print(f"target > 500x: {'met' if best_stream > 500 else 'NOT met'} (streaming rate)")


if __name__ == "__main__":
    main()
