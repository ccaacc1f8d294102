"""The recognizer pool: PocketSphinx in worker processes, so the emulator's event loop stays
free for the protocol while it decodes; the same words as the recognizer in-process."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import require_asr

from streamcli.commands.melvin import sample_paths
from streamcli.emulators.recognition import (
    PooledRecognition,
    RecognizerHost,
    RecognizerPool,
    resolve_kind,
)
from streamcli.emulators.sphinx import SphinxRecognizer

require_asr()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    pcm, _ = sf.read(str(sample_paths()[0]), dtype="int16")
    return pcm[: 12 * 16000]  # the first two readings


async def feed_all(recognition, pcm: np.ndarray) -> list:
    for i in range(0, len(pcm), 1600):
        await recognition.feed(pcm[i : i + 1600])
    await recognition.flush()
    return recognition.finals


async def test_a_pooled_stream_hears_what_the_recognizer_hears_in_process(speech):
    local = SphinxRecognizer(16000)
    for i in range(0, len(speech), 1600):
        local.feed(speech[i : i + 1600])
    local.flush()
    pool = RecognizerPool(workers=1)
    await pool.start()
    try:
        recognition = PooledRecognition(pool, 16000)
        finals = await feed_all(recognition, speech)
        recognition.close()
    finally:
        await pool.close()
    assert finals == local.finals and len(finals) == 2
    assert recognition.seconds == pytest.approx(len(speech) / 16000)


async def test_the_event_loop_stays_free_while_streams_are_decoded(speech):
    # Decoding holds the GIL; in a thread it would stall the loop for the length of a chunk's
    # decode, in one call for a whole utterance. In the worker processes the loop's 10 ms
    # ticks go on (the bound is loose: a busy CI machine).
    pool = RecognizerPool(workers=2)
    await pool.start()
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        streams = [PooledRecognition(pool, 16000) for _ in range(3)]
        results = await asyncio.gather(*(feed_all(s, speech) for s in streams))
    finally:
        done.set()
        await ticker
        await pool.close()
    assert all(r == results[0] and len(r) == 2 for r in results)
    assert len(gaps) > 50 and max(gaps) < 0.5


async def test_more_streams_than_the_workers_recognize_in_real_time_are_announced(capsys):
    pool = RecognizerPool(workers=1)
    await pool.start()
    try:
        streams = [PooledRecognition(pool, 16000) for _ in range(4)]
        for s in streams:
            await s.feed(np.zeros(1600, np.int16))
        for s in streams:
            s.close()
    finally:
        await pool.close()
    err = capsys.readouterr().err
    assert err.count("recognizer: 4 streams on 1 worker processes") == 1
    assert "results will lag behind the audio" in err


async def test_a_closed_stream_gives_its_decoder_to_the_next(speech):
    host = RecognizerHost("pocketsphinx", None)
    await host.start()
    try:
        first = host.new(16000, [])
        await feed_all(first, speech[: 16000 * 8])
        first.close()
        second = host.new(16000, [])
        finals = await feed_all(second, speech)  # a fresh state on a reused decoder
        second.close()
    finally:
        await host.stop()
    assert len(finals) == 2 and finals[0][0].start < 1.0


def test_auto_is_pocketsphinx_unless_a_script_asks_for_exact_words():
    assert resolve_kind("auto", None) == "pocketsphinx"
    assert resolve_kind("auto", "talk.txt") == "script"
    assert resolve_kind("script", None) == "script"
    with pytest.raises(ValueError, match="unknown recognizer 'whisper'"):
        resolve_kind("whisper", None)
