"""Start-up: ``--help``, shell completion, launch to first frame, and the microphone's capture.

    python bench/startup.py [--runs 20] [--peer PATH/TO/speechmatics] [--mic]

Prints the median (and min/max) of N runs of each command: ``--help`` and a completion as a user
gets them (the page replayed from the help cache) and rendered afresh
(``STREAMCLI_NO_HELP_CACHE=1``); with ``--peer``, the same ``--help`` of another CLI (the
Speechmatics CLI: ``pip install speechmatics-python``) and the ratio; the modules a fresh
``--help`` imports that take the most time (``python -X importtime``); and the time from
launching ``streamcli melvin FILE --speed 0`` to its first audio frame at a local server.

Also timed: the floor under launch to first frame, the import of the libraries every run needs
before its first frame (Typer with the pydantic its option coercion imports, and aiohttp).

``--mic`` (needs an input device; ``.ci/pulse.sh`` makes one): ``streamcli melvin --mic`` against
the recording server. Everything captured is sent once connected, so after the first burst the
audio received trails the wall clock by the capture start: launch → capture running = (arrival
of a frame 1 s after the first) − (audio seconds up to that frame) − launch. Also printed:
launch → first frame on the wire.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    CACHE,
    PY,
    Connection,
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
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "STREAMCLI_NO_HELP_CACHE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and len(m.group(3)) <= 2:  # top-level imports only
            rows.append((int(m.group(2)), m.group(4)))
    loaded = {name.split(".")[0] for _, name in rows}
    print("  slowest top-level imports of `streamcli --help` rendered afresh (cumulative):")
    for us, name in sorted(rows, reverse=True)[:6]:
        print(f"    {us / 1000:7.1f} ms  {name}")
    heavy = sorted(loaded & set(HEAVY))
    print(f"  heavy libraries imported by --help: {', '.join(heavy) if heavy else 'none'}")


def launches(cmd: list[str], runs: int, settle: float = 0.0) -> Iterator[tuple[float, Connection]]:
    """Launch ``cmd`` ``runs + 1`` times against a recording server; yield (launch time, the
    connection) once its first frame arrived (and ``settle`` seconds more). The first run only
    warms the page cache and is not yielded."""
    with RecordingServer() as server:
        for i in range(runs + 1):
            server.reset()
            t0 = time.monotonic()
            argv = [*cmd, "--url", server.url]
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if not server.first_frame.wait(30):
                proc.kill()
                raise RuntimeError(f"no frame arrived: {proc.communicate()[1].decode()[-300:]}")
            time.sleep(settle)
            if i > 0:
                yield t0, server.connections[0]
            proc.communicate(timeout=30)


def report(label: str, values: list[float]) -> float:
    print(
        f"  {label:<44} median {ms(median(values)):>10}   min {ms(min(values)):>10}   "
        f"max {ms(max(values)):>10}"
    )
    return median(values)


def launch_to_first_frame(runs: int) -> float:
    wav = speech_like_wav(2.0)
    cmd = [*streamcli_command(), "melvin", str(wav), "--no-auth", "--speed", "0", "--json"]
    times = [conn.arrivals[0] - t0 for t0, conn in launches(cmd, runs)]
    return report("launch to first audio frame on the wire", times)


def mic_capture_start(runs: int) -> tuple[float, float]:
    """Medians of launch -> capture running and launch -> first frame, ``--mic`` (seconds)."""
    cmd = [*streamcli_command(), "melvin", "--mic", "--no-auth", "--json", "--duration", "3"]
    starts, firsts = [], []
    for t0, conn in launches(cmd, runs, settle=1.5):
        arrivals, sizes = list(conn.arrivals), list(conn.sizes)
        k = next(i for i, t in enumerate(arrivals) if t >= arrivals[0] + 1.0)
        audio = sum(sizes[: k + 1]) / 32000  # 16 kHz s16le mono
        starts.append(arrivals[k] - audio - t0)
        firsts.append(arrivals[0] - t0)
    return (
        report("--mic: launch to capture running", starts),
        report("--mic: launch to first frame on the wire", firsts),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--peer", help="another CLI whose --help to time (e.g. speechmatics)")
    parser.add_argument("--mic", action="store_true", help="also time the microphone start")
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
        fresh = {**env, "STREAMCLI_NO_HELP_CACHE": "1"}
        timed("streamcli --help, rendered afresh", [*cli, "--help"], args.runs, fresh)
        help_median = timed("streamcli --help (help cache)", [*cli, "--help"], args.runs, env)
        timed(
            "streamcli melvin --help, rendered afresh", [*cli, "melvin", "--help"], args.runs, fresh
        )
        timed("streamcli melvin --help (help cache)", [*cli, "melvin", "--help"], args.runs, env)
        completion = {
            **env,
            "_STREAMCLI_COMPLETE": "complete_bash",
            "COMP_WORDS": "streamcli melvin --sp",
            "COMP_CWORD": "2",
        }
        timed(
            "bash completion, computed afresh",
            cli,
            args.runs,
            {**completion, "STREAMCLI_NO_HELP_CACHE": "1"},
        )
        complete_median = timed("bash completion (help cache)", cli, args.runs, completion)
    peer_median = None
    if args.peer:
        peer_median = timed(
            f"peer: {os.path.basename(args.peer)} --help", [args.peer, "--help"], args.runs
        )
    # What no change of this code can go below: a run parses its options with Typer (whose
    # option coercion imports pydantic, ``typer._adapters``) and puts its frames on the wire
    # with aiohttp (whose import builds two TLS contexts from the system's CA bundle).
    wire = timed("floor: import aiohttp", [PY, "-c", "import aiohttp"], args.runs)
    floor = timed(
        "floor: import typer + pydantic + aiohttp",
        [PY, "-c", "import typer, typer._adapters, aiohttp"],
        args.runs,
    )
    first_frame = launch_to_first_frame(max(5, args.runs // 2))
    mic = mic_capture_start(max(5, args.runs // 4)) if args.mic else None
    import_profile([*cli, "--help"])
    print()
    if peer_median:
        ratio = help_median / peer_median
        verdict = "met" if ratio <= 0.8 else "NOT met"
        print(f"target --help <= 0.8x the peer's: {ratio:.2f}x, {verdict}")
        ratio = complete_median / peer_median
        verdict = "met" if ratio <= 0.8 else "NOT met"
        print(f"target completion <= 0.8x the peer's --help: {ratio:.2f}x, {verdict}")
    verdict = "met" if first_frame <= 0.25 else "NOT met"
    print(
        f"target launch to first frame <= 250 ms: {verdict} "
        f"(the libraries' imports alone: {ms(floor).strip()}; aiohttp's alone: {ms(wire).strip()})"
    )
    if mic is not None:
        verdict = "met" if mic[0] <= 0.3 else "NOT met"
        print(f"target --mic capture running within 300 ms of launch: {verdict}")


if __name__ == "__main__":
    main()
