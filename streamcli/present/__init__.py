"""Presentation: tables, summaries and progress lines that render results (never CLI options)."""

from __future__ import annotations

import sys
from typing import Any


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


class StatusLine:
    """A transient one-line status on a terminal's stderr, redrawn on request (no thread)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.live = Live(
            "",
            console=Console(stderr=True, highlight=False),
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()

    @staticmethod
    def wanted(quiet: bool) -> bool:
        return sys.stderr.isatty() and not quiet

    def show(self, text: Any) -> None:
        self.live.update(text, refresh=True)

    def print(self, text: str) -> None:
        """A line above the status line."""
        self.live.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.live.stop()
