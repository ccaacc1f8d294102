"""The emulators' PocketSphinx recognizer (issue 23): how fast it decodes, how many real-time
streams one core recognizes, and the WER the CLI's finals score through each emulator.

    python bench/recognizers.py            # all three parts (about 3 minutes)
    python bench/recognizers.py --part rtf|streams|wer

Audio: the bundled LibriVox reading (29 s of a person reading, streamcli/data/sample.flac),
scored against its transcript with jiwer (streamcli's normalisation). Needs the [asr] extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, streamcli_command

from streamcli.commands.melvin import sample_paths
from streamcli.emulators.bodhi import BodhiEmulator
from streamcli.emulators.melvin import MelvinEmulator
from streamcli.emulators.phebi import PhebiEmulator
from streamcli.emulators.recognition import PooledRecognition, RecognizerPool
from streamcli.emulators.sphinx import SphinxRecognizer
from streamcli.emulators.vosk import VoskEmulator

SAMPLE, TRANSCRIPT = sample_paths()
CHUNK = 0.1
CUSTOMER = "123e4567-e89b-12d3-a456-426614174000"  # Bodhi's customer id is a UUID


def speech(rate: int) -> np.ndarray:
    pcm, _ = sf.read(str(SAMPLE), dtype="int16")
    if rate == 16000:
        return pcm
    out = soxr.resample(pcm.astype(np.float32) / 32768, 16000, rate)
    return (np.clip(out, -1, 1) * 32767).astype(np.int16)


def rtf() -> None:
    print("\n## Real-time factor of one stream (CPU seconds per audio second, in-process)")
    print("| input | audio s | CPU s | real-time factor | streams a core can keep up with |")
    print("|---|---|---|---|---|")
    for rate in (16000, 8000):
        pcm = speech(rate)
        recognizer = SphinxRecognizer(rate)
        step = int(rate * CHUNK)
        start = time.process_time()
        for i in range(0, len(pcm), step):
            recognizer.feed(pcm[i : i + step])
        recognizer.flush()
        cpu = time.process_time() - start
        seconds = len(pcm) / rate
        print(
            f"| {rate // 1000} kHz | {seconds:.1f} | {cpu:.1f} | {cpu / seconds:.2f} | "
            f"{seconds / cpu:.1f} |"
        )


async def real_time_streams(count: int, pcm: np.ndarray) -> tuple[float, float]:
    """``count`` streams fed in real time to one worker: the worst lag of a feed behind its
    schedule, and of the last result behind the end of the audio."""
    pool = RecognizerPool(workers=1)
    await pool.start()
    lag = 0.0

    async def one() -> float:
        nonlocal lag
        recognition = PooledRecognition(pool, 16000)
        step = int(16000 * CHUNK)
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), step)):
            due = t0 + k * CHUNK
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await recognition.feed(pcm[i : i + step])
            lag = max(lag, time.monotonic() - (due + CHUNK))
        await recognition.flush()
        recognition.close()
        return time.monotonic() - (t0 + len(pcm) / 16000)

    try:
        tails = await asyncio.gather(*(one() for _ in range(count)))
    finally:
        await pool.close()
    return lag, max(tails)


def streams() -> None:
    print("\n## Real-time streams on one worker process (one core): 12 s of the reading each")
    print("| streams | worst feed lag behind real time | last final after the audio ended |")
    print("|---|---|---|")
    pcm = speech(16000)[: 12 * 16000]
    for count in (1, 2, 3, 4, 5, 6):
        lag, tail = asyncio.run(real_time_streams(count, pcm))
        print(f"| {count} | {lag:.2f} s | {tail:.2f} s |")


async def wer_through(name: str, cli_args: list[str], make) -> dict:  # type: ignore[no-untyped-def]
    emu = make()
    await emu.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            *streamcli_command(), name, str(SAMPLE), "--url", emu.url, *cli_args,
            "--speed", "0", "--reference", str(TRANSCRIPT), "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"MELVIN_API_KEY": "bench-key-0123456789", "PATH": "/usr/bin:/bin",
                 "BODHI_API_KEY": "bench", "BODHI_CUSTOMER_ID": CUSTOMER,
                 "PHEBI_SUBSCRIPTION_KEY": "bench"},
        )  # fmt: skip
        out, err = await proc.communicate()
    finally:
        await emu.stop()
    results = [e for e in map(json.loads, out.decode().splitlines()) if e["type"] == "result"]
    if not results:
        raise RuntimeError(err.decode())
    return results[0]


def wer() -> None:
    print("\n## WER of the CLI's finals through each emulator (--recognizer pocketsphinx)")
    print("| backend | rate on the wire | WER | substitutions / deletions / insertions |")
    print("|---|---|---|---|")
    key = "bench-key-0123456789"
    cases = [
        ("melvin", "16 kHz", [], lambda: MelvinEmulator(api_keys=[key], rest_port=None,
                                                        recognizer="pocketsphinx")),
        ("phebi", "16 kHz", ["--project", "p", "--session", "s"],
         lambda: PhebiEmulator(recognizer="pocketsphinx")),
        ("vosk", "16 kHz", ["--sample-rate", "16000"],
         lambda: VoskEmulator(sample_rate=16000, recognizer="pocketsphinx")),
        ("vosk", "8 kHz", ["--sample-rate", "8000"],
         lambda: VoskEmulator(sample_rate=8000, recognizer="pocketsphinx")),
        ("bodhi", "8 kHz", ["--model", "en-general-v2-8khz"],
         lambda: BodhiEmulator(recognizer="pocketsphinx")),
    ]  # fmt: skip
    for name, rate, args, make in cases:
        result = asyncio.run(wer_through(name, args, make))
        a = result["accuracy"]
        print(
            f"| {name} | {rate} | {a['wer']:.1%} | {a['substitutions']} / {a['deletions']} / "
            f"{a['insertions']} of {a['reference_words']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("rtf", "streams", "wer"))
    args = parser.parse_args()
    print(f"# {machine()}")
    for part, run in (("rtf", rtf), ("streams", streams), ("wer", wer)):
        if args.part in (None, part):
            run()


if __name__ == "__main__":
    main()
