"""Commands for the Phebi-Live, Navana Bodhi and Vosk backends and their emulators."""

from __future__ import annotations

import typer


def register(app: typer.Typer, serve_app: typer.Typer) -> None:
    """Add the backend commands to ``app`` and their emulators to ``serve_app``."""
