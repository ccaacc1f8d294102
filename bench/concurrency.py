"""Load-test mode at scale: N real-time sessions in one streamcli process, on this machine.

    python bench/concurrency.py [--sessions 200] [--seconds 60] [--ramp 10] [--server melvin]

The server runs as its own process: ``streamcli serve melvin --seats N`` (partials and finals
flow back, so latency figures exist), or ``--server sink``, a recording server that only
answers eof (the cheapest possible server, to isolate the client). The client is
``streamcli melvin FILE --no-auth --concurrency N --ramp R --json``; its JSON summary gives the
pacing lateness, and the reaped processes give CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    PY,
    RecordingServer,
    free_port,
    machine,
    ms,
    script_file,
    speech_like_wav,
    streamcli_command,
    wait_listening,
    wait_rusage,
)


def sink_server(port: int) -> None:
    """``--sink-server PORT``: the recording server as a process, until SIGINT/SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with RecordingServer(port=port):  # its thread inherits the blocked signals
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ramp", type=float, default=10.0)
    parser.add_argument("--server", choices=("melvin", "sink"), default="melvin")
    parser.add_argument("--sink-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink_server is not None:
        sink_server(args.sink_server)
        return

    wav = str(speech_like_wav(args.seconds))
    port = free_port()
    if args.server == "melvin":
        server_cmd = [*streamcli_command(), "serve", "melvin", "--port", str(port)]
        server_cmd += ["--rest-port", "0", "--seats", str(args.sessions)]
        server_cmd += ["--script", str(script_file())]
    else:
        server_cmd = [PY, os.path.abspath(__file__), "--sink-server", str(port)]
    print(f"machine: {machine()}")
    print(
        f"{args.sessions} sessions x {args.seconds:g} s of 16 kHz audio at --speed 1, "
        f"ramp {args.ramp:g} s, server: {args.server} (own process)"
    )
    server = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        client_cmd = [*streamcli_command(), "melvin", wav, "--url", f"ws://127.0.0.1:{port}"]
        client_cmd += ["--no-auth", "--concurrency", str(args.sessions), "--ramp", str(args.ramp)]
        client_cmd += ["--json", "--timeout", "60"]
        t = time.monotonic()
        client = subprocess.Popen(client_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = client.stdout.read(), client.stderr.read()  # type: ignore[union-attr]
        code, user, system, maxrss = wait_rusage(client.pid)
        wall = time.monotonic() - t
    finally:
        server.send_signal(signal.SIGINT)
        _, s_user, s_system, _ = wait_rusage(server.pid)
    if not out.strip():
        raise SystemExit(f"no summary (exit {code}): {err.decode()[-800:]}")
    summary = json.loads(out)
    pacing = summary["pacing_lateness"]
    print(f"client exit code {code}; sessions ok {summary['ok']}, failed {summary['failed']}")
    for f in summary["failures"]:
        print(f"  {f['count']} x {f['kind']}: {f['message']}")
    print(
        f"client pacing lateness over {pacing['count']} frames: p50 {ms(pacing['p50'])}, "
        f"p95 {ms(pacing['p95'])}, max {ms(pacing['max'])}"
    )
    for key in ("connect", "first_final", "final_latency"):
        s = summary[key]
        if s["count"]:
            print(f"{key}: p50 {ms(s['p50'])}, p95 {ms(s['p95'])}, max {ms(s['max'])}")
    bp = summary["backpressure"]
    print(f"backpressure: {bp['sends']} blocked sends, {bp['seconds']:.2f} s")
    audio_hours = summary["ok"] * summary["audio_seconds"] / 3600
    cpu = user + system
    print(
        f"client: {cpu:.1f} CPU-s in {wall:.1f} s wall = {cpu / wall * 100:.0f} % of one core; "
        f"peak RSS {maxrss / 1024:.0f} MiB; "
        f"{cpu / audio_hours if audio_hours else float('nan'):.1f} CPU-s per audio hour"
    )
    print(f"server: {s_user + s_system:.1f} CPU-s")
    ok = code == 0 and pacing["max"] is not None and pacing["max"] < 0.020
    print(
        f"target {args.sessions} sessions with max lateness < 20 ms: {'met' if ok else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
