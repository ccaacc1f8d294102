"""Locust users (``streamcli.locust``): a real Locust master and two worker processes, headless,
against the emulators over loopback; the figures are read back from Locust's CSV.

Locust is never imported in this process (it monkey-patches the standard library with gevent):
only the subprocesses run it.
"""

from __future__ import annotations

import asyncio
import csv
import socket
import sys
from pathlib import Path

import pytest
from conftest import CLEAN_ENV, speechlike

from streamcli.emulators.bodhi import BodhiEmulator
from streamcli.emulators.melvin import MelvinEmulator

from .conftest import KEY

BODHI_KEY, BODHI_CUSTOMER = "bodhi-api-key-0123456789", "123e4567-e89b-12d3-a456-426614174000"
AUDIO_SECONDS = 3.4  # speechlike(16000, [0.6, 0.8]): 0.2 + (0.6 + 0.6) + (0.8 + 0.6) + 0.6
MELVIN_REFUSED = 2  # the emulator refuses the first two handshakes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def locust(*args: str, cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "locust",
        *args,
        cwd=cwd,
        env={**CLEAN_ENV, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def master_and_two_workers(
    cwd: Path, env: dict[str, str], users: int, run_time: str, *more: str
) -> tuple[asyncio.subprocess.Process, list[tuple[bytes, bytes]]]:
    """A headless master (CSV as ``run_*.csv``) and two workers on ``cwd/locustfile.py``,
    run to the end; the master and every process's (stdout, stderr)."""
    port = free_port()
    common = ["-f", "locustfile.py"]
    master = await locust(
        *common, "--master", "--master-bind-port", str(port), "--headless",
        "--expect-workers", "2", "-u", str(users), "-r", str(users), "--run-time", run_time,
        "--csv", "run", "--only-summary", *more, cwd=cwd, env=env,
    )  # fmt: skip
    worker = ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    workers = [await locust(*common, *worker, cwd=cwd, env=env) for _ in range(2)]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in (master, *workers))), 90
    )
    return master, list(outputs)


@pytest.fixture
def talk(make_wav) -> Path:
    import numpy as np

    audio = speechlike(16000, [0.6, 0.8])
    assert abs(len(audio) / 16000 - AUDIO_SECONDS) < 0.05
    return make_wav("talk.wav", audio.astype(np.float32), 16000)


async def test_master_and_two_workers_report_every_figure_and_failures_by_kind(
    tmp_path, talk, script_file, cli, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the locustfile names talk.wav as a user would
    melvin = MelvinEmulator(
        api_keys=[KEY], seats=50, script=script_file, refuse_first=MELVIN_REFUSED
    )
    bodhi = BodhiEmulator(api_key=BODHI_KEY, customer_id=BODHI_CUSTOMER, reject=401)
    await melvin.start()
    await bodhi.start()
    nowhere = free_port()  # nothing listens there
    try:
        # The Melvin class as `streamcli locustfile` writes it; two more by hand.
        made = await cli(
            "locustfile",
            "melvin",
            "talk.wav",
            "--url",
            melvin.url,
            "--api-key",
            KEY,  # not written: the workers read MELVIN_API_KEY
            "-o",
            str(tmp_path / "locustfile.py"),
        )
        assert made.code == 0, made.stderr
        text = (tmp_path / "locustfile.py").read_text()
        assert KEY not in text and "MELVIN_API_KEY" in text
        text += f"""
MelvinUser.weight = 2  # 4 of the 8 users


class BodhiUser(StreamcliUser):
    backend = "bodhi"
    args = ["talk.wav", "--url", "{bodhi.url}", "--model", "hi-banking-v2-8khz"]


class VoskUser(StreamcliUser):
    backend = "vosk"
    args = ["talk.wav", "--url", "ws://127.0.0.1:{nowhere}", "--connect-timeout", "2"]
"""
        (tmp_path / "locustfile.py").write_text(text)
        env = {
            "MELVIN_API_KEY": KEY,
            "BODHI_API_KEY": "wrong-key-0123456789",
            "BODHI_CUSTOMER_ID": BODHI_CUSTOMER,
        }
        master, outputs = await master_and_two_workers(tmp_path, env, users=8, run_time="13s")
    finally:
        await melvin.stop()
        await bodhi.stop()
    master_err = outputs[0][1].decode()
    workers_err = [err.decode() for _, err in outputs[1:]]
    assert master.returncode == 1, master_err  # Locust: 1 when any request failed
    assert "Traceback" not in master_err + "".join(workers_err), master_err + "".join(workers_err)

    stats = {(r["Type"], r["Name"]): r for r in read_csv(tmp_path / "run_stats.csv")}

    def count(backend: str, name: str) -> int:
        row = stats.get((backend, name))
        return int(row["Request Count"]) if row else 0

    def failed(backend: str, name: str) -> int:
        return int(stats[(backend, name)]["Failure Count"])

    # Melvin: every session that ran reported its figures; the two refused ones failed.
    sessions = count("melvin", "session")
    ok = sessions - failed("melvin", "session")
    assert failed("melvin", "session") == MELVIN_REFUSED
    assert ok >= 4  # 4 users x 13 s of 7-8 s sessions (eof waits for Melvin's sync)
    assert count("melvin", "connect") >= ok
    assert count("melvin", "first partial") >= ok and count("melvin", "first final") >= ok
    assert count("melvin", "final latency") >= 2 * ok  # two sentences a session
    assert count("melvin", "pacing lateness") == ok  # the refused ones sent no audio
    assert count("melvin", "seat wait") == 0  # 50 seats: nobody waited
    for name in ("connect", "first partial", "first final", "final latency", "pacing lateness"):
        assert failed("melvin", name) == 0
    ms = {name: stats[("melvin", name)] for name in ("connect", "first final", "final latency")}
    assert float(ms["connect"]["Max Response Time"]) < 2000
    assert 100 < float(ms["first final"]["Median Response Time"]) < AUDIO_SECONDS * 1000
    assert float(ms["final latency"]["Min Response Time"]) >= 0
    assert float(ms["final latency"]["Max Response Time"]) < 5000
    assert float(stats[("melvin", "pacing lateness")]["Max Response Time"]) < 500
    session_max = float(stats[("melvin", "session")]["Max Response Time"])
    assert AUDIO_SECONDS * 1000 <= session_max < (AUDIO_SECONDS + 5) * 1000

    # Failures by kind, as the web UI and run_failures.csv show them.
    failures = read_csv(tmp_path / "run_failures.csv")
    by_backend: dict[str, list[dict[str, str]]] = {}
    for row in failures:
        assert row["Name"] == "session", row
        by_backend.setdefault(row["Method"], []).append(row)
    # HTTP 503 at the handshake: a connection failure (a reconnect may repair it), exit 4
    assert all(r["Error"].startswith("connection: ") for r in by_backend["melvin"]), failures
    assert sum(int(r["Occurrences"]) for r in by_backend["melvin"]) == MELVIN_REFUSED
    assert all(r["Error"].startswith("auth: ") for r in by_backend["bodhi"])
    assert all(r["Error"].startswith("connection: ") for r in by_backend["vosk"])
    for backend in ("bodhi", "vosk"):
        assert count(backend, "session") == failed(backend, "session") >= 2
        assert sum(int(r["Occurrences"]) for r in by_backend[backend]) == count(backend, "session")
        assert count(backend, "connect") == 0 and count(backend, "pacing lateness") == 0
    assert set(by_backend) == {"melvin", "bodhi", "vosk"}
    assert "wrong-key" not in (tmp_path / "run_failures.csv").read_text()

    # Each worker that streamed logs its frames' pacing lateness at the end.
    frames = [
        int(line.split(" over ")[1].split()[0])
        for err in workers_err
        for line in err.splitlines()
        if "pacing lateness over" in line
    ]
    assert frames and sum(frames) >= ok * AUDIO_SECONDS * 10, workers_err  # 100 ms chunks
