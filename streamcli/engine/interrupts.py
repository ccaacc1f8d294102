"""Ctrl-C and SIGTERM for a run: the first asks for a graceful end, the second aborts."""

from __future__ import annotations

import asyncio
import contextlib
import signal


class Interrupts:
    """Ctrl-C / SIGTERM: the first asks for a graceful end, the second aborts."""

    def __init__(self) -> None:
        self.count = 0
        self.graceful = asyncio.Event()
        self.abort = asyncio.Event()
        self.output_closed = False  # stdout went away (``| head -1``): stop quietly

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.trigger)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    def trigger(self) -> None:
        self.count += 1
        self.graceful.set()
        if self.count >= 2:
            self.abort.set()

    def trigger_abort(self) -> None:
        """The reader of stdout is gone: nobody wants more results."""
        self.output_closed = True
        self.graceful.set()
        self.abort.set()
