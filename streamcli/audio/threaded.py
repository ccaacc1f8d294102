"""Blocks of audio read in a worker thread, for the sources whose reads may take a while."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator

import numpy as np


async def threaded_blocks(blocks: Iterator[np.ndarray]) -> AsyncGenerator[np.ndarray, None]:
    """``blocks`` read in a worker thread, one at a time: a slow read (a stalled pipe, a
    decoder at work) never holds up the event loop."""
    import asyncio

    while True:
        block = await asyncio.to_thread(next, blocks, None)
        if block is None:
            return
        yield block
