"""Start-up: wall time of ``streamcli --help`` and of a shell completion, and launch to first frame.

    python bench/startup.py [--runs 20]

Prints the median (and min/max) of N runs of each command, the modules ``--help`` imports that
take the most time (``python -X importtime``), and the time from launching
``streamcli melvin FILE --speed 0`` to its first audio frame arriving at a local server.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    CACHE,
    PY,
    RecordingServer,
    machine,
    median,
    ms,
    speech_like_wav,
    streamcli_command,
)

HEAVY = ("aiohttp", "socketio", "numpy", "soundfile", "sounddevice", "soxr")


def wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - t


def timed(label: str, cmd: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    wall(cmd, env)  # warm the page cache
    times = [wall(cmd, env) for _ in range(runs)]
    print(
        f"  {label:<44} median {ms(median(times)):>10}   min {ms(min(times)):>10}   "
        f"max {ms(max(times)):>10}"
    )
    return median(times)


def import_profile(cmd: list[str]) -> None:
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and len(m.group(3)) <= 2:  # top-level imports only
            rows.append((int(m.group(2)), m.group(4)))
    loaded = {name.split(".")[0] for _, name in rows}
    print("  slowest top-level imports of `streamcli --help` (cumulative):")
    for us, name in sorted(rows, reverse=True)[:6]:
        print(f"    {us / 1000:7.1f} ms  {name}")
    heavy = sorted(loaded & set(HEAVY))
    print(f"  heavy libraries imported by --help: {', '.join(heavy) if heavy else 'none'}")


def launch_to_first_frame(runs: int) -> float:
    wav = speech_like_wav(2.0)
    times = []
    with RecordingServer() as server:
        cmd = [*streamcli_command(), "melvin", str(wav), "--url", server.url, "--no-auth"]
        cmd += ["--speed", "0", "--json"]
        for _ in range(runs + 1):
            server.reset()
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not server.first_frame.wait(30):
                proc.kill()
                raise RuntimeError("no frame arrived")
            times.append(server.connections[0].arrivals[0] - t0)
            proc.wait(30)
    times = times[1:]  # the first run warms the page cache
    print(
        f"  {'launch to first audio frame on the wire':<44} median {ms(median(times)):>10}   "
        f"min {ms(min(times)):>10}   max {ms(max(times)):>10}"
    )
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    cli = streamcli_command()
    print(f"machine: {machine()}")
    print(f"command: {' '.join(cli)}   runs: {args.runs}")
    envs = [("as this environment runs it", dict(os.environ))]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # An editable install under PYTHONDONTWRITEBYTECODE compiles streamcli's own modules at
        # every start; a normal install has their bytecode. Measure both.
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(CACHE / "pycache")
        envs.append(("with cached bytecode (as a normal install)", cached))
    help_median = complete_median = 0.0
    for title, env in envs:
        print(f"{title}:")
        timed("python -c pass (interpreter alone)", [PY, "-c", "pass"], args.runs, env)
        help_median = timed("streamcli --help", [*cli, "--help"], args.runs, env)
        timed("streamcli melvin --help", [*cli, "melvin", "--help"], args.runs, env)
        completion = {
            **env,
            "_STREAMCLI_COMPLETE": "complete_bash",
            "COMP_WORDS": "streamcli melvin --sp",
            "COMP_CWORD": "2",
        }
        complete_median = timed(
            "bash completion (streamcli melvin --sp<TAB>)", cli, args.runs, completion
        )
    first_frame = launch_to_first_frame(max(5, args.runs // 2))
    import_profile([*cli, "--help"])
    print()
    print(f"target --help median < 150 ms: {'met' if help_median < 0.150 else 'NOT met'}")
    print(f"target completion median < 150 ms: {'met' if complete_median < 0.150 else 'NOT met'}")
    print(f"target launch to first frame < 500 ms: {'met' if first_frame < 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
