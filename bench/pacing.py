"""Pacing at --speed 1: when do frames reach the server, compared with the ideal schedule?

    python bench/pacing.py [--minutes 10] [--chunk-ms 100] [--media m4a|webm]

A recording server (in this process, its own thread) timestamps every binary frame. Two clients
stream the same 16 kHz mono file to it at the same time, each as its own process:

- ours: the real CLI, ``streamcli melvin FILE --no-auth --speed 1 --json``;
- naive: a minimal aiohttp client that sends a chunk, then sleeps one chunk (``--naive-client``).

A third process, the floor, runs only ``Pacer.wait_until`` on the same schedule, without a
socket, and reports its own wake-up lateness: what the machine's scheduler allows at best.

Frame k should arrive at ``a + k * chunk``; ``a`` is the earliest anchor consistent with all
arrivals (the minimum of ``arrival_k - k * chunk``), so lateness is never negative and a client
that drifts shows lateness growing with k. Printed per client: median / p99 / max lateness over
the first minute, the last minute and the whole stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    PY,
    RecordingServer,
    machine,
    median,
    ms,
    quantile,
    speech_like_wav,
    streamcli_command,
)


async def naive_client(url: str, path: str, chunk_ms: int) -> None:
    """The comparison: send, then sleep one chunk. Each sleep and send adds to the schedule."""
    import aiohttp

    with wave.open(path, "rb") as w:
        frames_per_chunk = w.getframerate() * chunk_ms // 1000
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            while True:
                chunk = w.readframes(frames_per_chunk)
                if not chunk:
                    break
                await ws.send_bytes(chunk)
                await asyncio.sleep(chunk_ms / 1000)
            await ws.send_str("eof")
            await ws.receive()


async def floor_client(seconds: float, chunk_ms: int) -> None:
    """The machine's floor: the pacer alone, no socket, no audio; prints its lateness."""
    from streamcli.audio.pacer import Pacer

    pacer = Pacer(1.0)
    pacer.start()
    late = [
        await pacer.wait_until(k * chunk_ms / 1000) for k in range(int(seconds * 1000 / chunk_ms))
    ]
    print(json.dumps(late))


def lateness(arrivals: list[float], chunk: float) -> list[float]:
    offsets = [t - k * chunk for k, t in enumerate(arrivals)]
    anchor = min(offsets)
    return [o - anchor for o in offsets]


def report(label: str, late: list[float], per_minute: int) -> dict[str, float]:
    parts = {
        "first minute": late[:per_minute],
        "last minute": late[-per_minute:],
        "whole stream": late,
    }
    print(f"  {label}: {len(late)} frames")
    for name, values in parts.items():
        print(
            f"    {name:<13} median {ms(median(values)):>11}   p99 {ms(quantile(values, 0.99)):>11}"
            f"   max {ms(max(values)):>11}"
        )
    growth = median(parts["last minute"]) - median(parts["first minute"])
    print(f"    growth of the median, first to last minute: {ms(growth)}")
    return {"median": median(late), "max": max(late), "growth": growth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--chunk-ms", type=int, default=100)
    parser.add_argument("--naive-client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--floor-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--media",
        choices=("m4a", "webm"),
        help="our client streams this container of the same length (FFmpeg decoding in its "
        "worker thread; needs streamcli[media]); the naive one keeps the WAV",
    )
    args = parser.parse_args()
    if args.naive_client:
        asyncio.run(naive_client(args.naive_client, args.file, args.chunk_ms))
        return
    if args.floor_client:
        asyncio.run(floor_client(args.minutes * 60, args.chunk_ms))
        return

    wav = speech_like_wav(args.minutes * 60)
    chunk = args.chunk_ms / 1000
    print(f"machine: {machine()}")
    print(f"input: {args.minutes:g} min, 16 kHz mono, {args.chunk_ms} ms chunks, --speed 1")
    ours_input = str(wav)
    if args.media:
        from media import make  # bench/media.py: tone bursts at 48 kHz in that container

        ours_input = str(make(args.media, args.minutes))
        print(f"our client streams {ours_input} ({args.media}, 48 kHz: decoded and resampled)")
    with RecordingServer() as server:
        ours = [*streamcli_command(), "melvin", ours_input, "--url", f"{server.url}/ours"]
        ours += ["--no-auth", "--speed", "1", "--chunk-ms", str(args.chunk_ms), "--json"]
        naive = [PY, os.path.abspath(__file__), "--naive-client", f"{server.url}/naive"]
        naive += ["--file", str(wav), "--chunk-ms", str(args.chunk_ms)]
        floor = [PY, os.path.abspath(__file__), "--floor-client", "--minutes", str(args.minutes)]
        floor += ["--chunk-ms", str(args.chunk_ms)]
        t0 = time.monotonic()
        procs = [
            subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE if cmd is floor else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for cmd in (ours, naive, floor)
        ]
        outputs = []
        for p in procs:
            out, err = p.communicate()
            outputs.append(out)
            if p.returncode:
                raise SystemExit(f"a client failed ({p.returncode}): {err.decode()[-500:]}")
        print(f"the three clients ran concurrently, done in {time.monotonic() - t0:.1f} s")
        by_path = {c.path: list(c.arrivals) for c in server.connections}
    per_minute = round(60 / chunk)
    results = {}
    print("lateness of frame arrival at the server vs the ideal schedule:")
    for label, path in (("streamcli (absolute schedule)", "/ours"), ("naive send+sleep", "/naive")):
        results[label] = report(label, lateness(by_path[path], chunk), per_minute)
    print("floor: the pacer alone in its own process (wake-up lateness, no socket):")
    report("floor", json.loads(outputs[2]), per_minute)
    ours_r = results["streamcli (absolute schedule)"]
    print()
    print(
        f"target median < 1 ms: {'met' if ours_r['median'] < 0.001 else 'NOT met'}; "
        f"max < 5 ms: {'met' if ours_r['max'] < 0.005 else 'NOT met'}; "
        f"no growth (< 1 ms): {'met' if abs(ours_r['growth']) < 0.001 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
