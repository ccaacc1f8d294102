"""Batch runs: files per minute unpaced with --jobs 1/2/4, and memory against the number of files.

    python bench/batch.py [--files 20] [--seconds 10] [--memory-files 100]

The real CLI (``streamcli vosk DIR --speed 0 --jobs J --json``) against the Vosk emulator in its
own process (``streamcli serve vosk``: it answers at once, so the figure is the client's and the
loopback's, not a model's). Each input is a copy of one speech-like 16 kHz WAV (tone bursts and
pauses). Printed per --jobs: wall time, files per minute, audio-seconds per wall-second, the
client's CPU and peak RSS; then peak RSS for 10 files against ``--memory-files`` files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    free_port,
    machine,
    script_file,
    speech_like_wav,
    streamcli_command,
    wait_listening,
    wait_rusage,
)


def folder(n: int, seconds: float) -> str:
    wav = speech_like_wav(seconds)
    path = tempfile.mkdtemp(prefix=f"streamcli-batch-{n}-")
    for i in range(n):
        os.link(wav, os.path.join(path, f"file{i:04d}.wav"))
    return path


def run(url: str, path: str, jobs: int) -> dict:
    cmd = [*streamcli_command(), "vosk", path, "--url", url, "--speed", "0"]
    cmd += ["--jobs", str(jobs), "--json"]
    t = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    code, user, system, maxrss = wait_rusage(proc.pid)
    wall = time.monotonic() - t
    summary = [json.loads(line) for line in out.splitlines() if b'"summary"' in line]
    if code != 0 or not summary:
        raise SystemExit(f"exit {code}: {err.decode()[-500:]}")
    return {"wall": wall, "cpu": user + system, "rss_mib": maxrss / 1024, **summary[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--memory-files", type=int, default=100)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [
            *streamcli_command(),
            "serve",
            "vosk",
            "--port",
            str(port),
            "--script",
            str(script_file()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"ws://127.0.0.1:{port}"
    made = []
    try:
        wait_listening(port)
        print(f"machine: {machine()}")
        print(f"{args.files} files x {args.seconds:g} s of 16 kHz audio, --speed 0, Vosk emulator")
        path = folder(args.files, args.seconds)
        made.append(path)
        for jobs in (1, 2, 4):
            r = run(url, path, jobs)
            assert r["ok"] == args.files, r
            print(
                f"  --jobs {jobs}: {r['wall']:.2f} s wall (launch to exit), "
                f"{args.files / r['wall'] * 60:.0f} files/min, "
                f"{r['audio_seconds'] / r['wall']:.0f}x real time; "
                f"client {r['cpu']:.2f} CPU-s, peak RSS {r['rss_mib']:.1f} MiB"
            )
        print("memory against the number of files (--jobs 4):")
        for n in (10, args.memory_files):
            path = folder(n, args.seconds)
            made.append(path)
            r = run(url, path, 4)
            assert r["ok"] == n, r
            print(f"  {n:4d} files: peak RSS {r['rss_mib']:.1f} MiB, {r['wall']:.1f} s wall")
    finally:
        server.terminate()
        server.wait()
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
