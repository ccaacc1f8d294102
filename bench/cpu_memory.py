"""CPU per real-time stream, and peak memory against input length.

    python bench/cpu_memory.py [--seconds 75] [--skip-cpu] [--skip-memory]

CPU: ``streamcli melvin FILE --speed 1`` (44.1 kHz stereo WAV, resampled to 16 kHz mono) streams
to the Melvin emulator (running in this process, with a script, so partials and finals flow
back). The client's utime+stime is read from /proc at 5 s and at 65 s of audio received by
the server: 60 s of steady streaming, start-up excluded (reported apart). Two output modes:
JSON Lines to a pipe, and the live view on a pseudo-terminal.

Memory: peak RSS (``ru_maxrss`` of the reaped child) of ``streamcli melvin FILE --speed 0``
for a 20-second and a 20-minute 44.1 kHz stereo float WAV, sent to a recording server.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    EmulatorThread,
    RecordingServer,
    cpu_seconds,
    machine,
    script_file,
    speech_like_wav,
    streamcli_command,
    wait_rusage,
)

WARMUP_AUDIO = 5.0
MEASURE_AUDIO = 60.0


def drain(fd: int) -> threading.Thread:
    def run() -> None:
        try:
            while os.read(fd, 65536):
                pass
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def cpu_run(wav: str, mode: str) -> dict[str, float]:
    from streamcli.emulators.melvin import MelvinEmulator

    script = script_file()
    with EmulatorThread(lambda: MelvinEmulator(script=script, rest_port=None)) as emu:
        cmd = [*streamcli_command(), "melvin", wav, "--url", emu.url, "--no-auth", "--speed", "1"]
        env = {**os.environ, "COLUMNS": "100", "LINES": "30"}
        if mode == "json":
            read_fd, write_fd = os.pipe()
            cmd.append("--json")
        else:  # the live view, on a pseudo-terminal
            read_fd, write_fd = os.openpty()
            env["TERM"] = "xterm-256color"
        t_launch = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=write_fd, stderr=subprocess.DEVNULL, env=env)
        os.close(write_fd)
        drain(read_fd)

        def audio() -> float:
            return emu.connections[0].audio_seconds if emu.connections else 0.0

        while audio() < WARMUP_AUDIO:
            time.sleep(0.01)
        cpu_start, t_start = cpu_seconds(proc.pid), time.monotonic()
        while audio() < WARMUP_AUDIO + MEASURE_AUDIO:
            time.sleep(0.01)
        cpu_end, t_end = cpu_seconds(proc.pid), time.monotonic()
        code, user, system, _ = wait_rusage(proc.pid)
        total_wall = time.monotonic() - t_launch
    if code != 0:
        raise SystemExit(f"streamcli failed with exit code {code}")
    steady = (cpu_end - cpu_start) / MEASURE_AUDIO
    return {
        "steady_fraction": steady,
        "cpu_s_per_audio_hour": steady * 3600,
        "startup_cpu": cpu_start - steady * (t_start - t_launch),
        "total_cpu": user + system,
        "total_wall": total_wall,
        "measured_wall": t_end - t_start,
    }


def memory_run(wav: str) -> tuple[int, float]:
    with RecordingServer() as server:
        cmd = [*streamcli_command(), "melvin", wav, "--url", server.url, "--no-auth"]
        cmd += ["--speed", "0", "--json"]
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        code, _, _, maxrss_kib = wait_rusage(proc.pid)
        if code != 0:
            raise SystemExit(f"streamcli failed with exit code {code}")
        return maxrss_kib, time.monotonic() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=WARMUP_AUDIO + MEASURE_AUDIO + 10)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if not args.skip_cpu:
        wav = str(speech_like_wav(args.seconds, rate=44100, channels=2))
        print(
            f"CPU: {args.seconds:g} s 44.1 kHz stereo WAV at --speed 1 to the Melvin emulator; "
            f"measured over {MEASURE_AUDIO:g} s of audio after {WARMUP_AUDIO:g} s"
        )
        for mode, label in (("json", "--json to a pipe"), ("live", "live view on a pty")):
            r = cpu_run(wav, mode)
            print(
                f"  {label:<20} {r['cpu_s_per_audio_hour']:6.1f} CPU-s per audio hour = "
                f"{r['steady_fraction'] * 100:5.2f} % of one core   (start-up "
                f"{r['startup_cpu']:.2f} CPU-s; whole run {r['total_cpu']:.2f} CPU-s in "
                f"{r['total_wall']:.1f} s)"
            )
            verdict = "met" if r["steady_fraction"] < 0.01 else "NOT met"
            print(f"    target < 1 % of a core: {verdict}")
    if not args.skip_memory:
        print("Memory: peak RSS at --speed 0, 44.1 kHz stereo float WAV, to a recording server")
        peaks = {}
        for seconds, label in ((20, "20 seconds"), (1200, "20 minutes")):
            wav = str(speech_like_wav(seconds, rate=44100, channels=2, subtype="FLOAT"))
            kib, wall = memory_run(wav)
            peaks[label] = kib
            print(f"  {label:<11} peak RSS {kib / 1024:7.1f} MiB   ({wall:.1f} s)")
        diff = (peaks["20 minutes"] - peaks["20 seconds"]) / 1024
        print(
            f"  difference {diff:+.1f} MiB; target within 5 MB: {'met' if diff < 5 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
