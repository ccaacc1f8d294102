"""Real-time streams per worker core: Locust users against ``--concurrency`` in one process.

    python bench/locust_workers.py [--sessions 200,400,700,1000] [--seconds 30] [--ramp 10]
                                   [--clients concurrency,locust]

For each number of sessions and each client, the client process is pinned to one core and the
server (the recording sink of ``bench/common.py``, its own process, answering only ``eof``) to
the other, so the figures are per client core. Each session streams the same WAV once, real
time (--speed 1), the starts spread over --ramp seconds. Clients:
- ``concurrency``: ``streamcli melvin FILE --concurrency N`` (one process, asyncio);
- ``locust``: one Locust process (headless: one worker) of ``streamcli.locust.StreamcliUser``
  (``bench/locust_users.py``: greenlets over websocket-client), N users, one session each.
Both record each frame's pacing lateness the same way (the time a frame went out after its
due time). A client holds N streams when the p95 stays within 20 ms (the max is printed too).
Needs ``pip install 'streamcli[locust]'``. The candidate that was measured and not shipped (the
engine's asyncio sessions on one event loop per worker, in a native thread) is commit 54e8f46.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PY, free_port, machine, speech_like_wav, streamcli_command, wait_listening

HERE = os.path.dirname(os.path.abspath(__file__))
LINE = re.compile(
    r"pacing lateness over (\d+) frames: p50 ([\d.]+) ms, p95 ([\d.]+) ms, max ([\d.]+)"
)


def pinned(core: int):  # type: ignore[no-untyped-def]
    if (os.cpu_count() or 1) < 2:
        return None
    return lambda: os.sched_setaffinity(0, {core})


def run_client(kind: str, n: int, wav: str, url: str, seconds: float, ramp: float) -> dict:
    env = dict(os.environ)
    if kind == "concurrency":
        cmd = [*streamcli_command(), "melvin", wav, "--url", url, "--no-auth", "--json"]
        cmd += ["--concurrency", str(n), "--ramp", str(ramp), "--timeout", "60"]
    else:
        env.update(BENCH_WAV=wav, BENCH_URL=url)
        run_time = int(ramp + seconds + 12)
        cmd = [PY, "-m", "locust", "-f", os.path.join(HERE, "locust_users.py"), "--headless"]
        cmd += ["-u", str(n), "-r", f"{n / ramp if ramp else n:g}", "--run-time", f"{run_time}s"]
        cmd += ["--only-summary", "--loglevel", "WARNING", "--stop-timeout", "1"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=pinned(1),
    )
    out, err = proc.communicate()
    if kind == "concurrency":
        summary = json.loads(out)
        p = summary["pacing_lateness"]
        return {
            "frames": p["count"],
            "p50": p["p50"] * 1000,
            "p95": p["p95"] * 1000,
            "max": p["max"] * 1000,
        }
    m = LINE.search(err.decode())
    if not m:
        raise SystemExit(f"{kind}: no pacing line (exit {proc.returncode}): {err.decode()[-800:]}")
    frames, p50, p95, mx = m.groups()
    return {"frames": int(frames), "p50": float(p50), "p95": float(p95), "max": float(mx)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", default="200,400,700,1000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--ramp", type=float, default=10.0)
    parser.add_argument("--clients", default="concurrency,locust")
    args = parser.parse_args()
    wav = str(speech_like_wav(args.seconds))
    frames_per_session = round(args.seconds * 10) - 1  # 100 ms chunks; the first is not timed
    print(f"machine: {machine()}")
    print(
        f"each session: {args.seconds:g} s of 16 kHz audio at --speed 1 in 100 ms frames; "
        f"starts over {args.ramp:g} s; client pinned to core 1, sink server to core 0"
    )
    print(f"{'client':<12} {'sessions':>8} {'frames':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for n in (int(x) for x in args.sessions.split(",")):
        for kind in args.clients.split(","):
            port = free_port()
            server = subprocess.Popen(
                [PY, os.path.join(HERE, "concurrency.py"), "--sink-server", str(port)],
                preexec_fn=pinned(0),
            )
            try:
                wait_listening(port)
                r = run_client(kind, n, wav, f"ws://127.0.0.1:{port}", args.seconds, args.ramp)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait()
            streamed = r["frames"] / frames_per_session
            verdict = "holds" if r["p95"] <= 20.0 and streamed >= 0.99 * n else "DOES NOT hold"
            print(
                f"{kind:<12} {n:>8} {r['frames']:>8} {r['p50']:>8.1f} {r['p95']:>8.1f} "
                f"{r['max']:>8.1f}  ({streamed:.0f} sessions' frames; {verdict})",
                flush=True,
            )
    print(f"streamcli {' '.join(streamcli_command())}")


if __name__ == "__main__":
    main()
