"""While a session is being planned (``commands.plan``), a command hands what it was given to
the plan instead of running: ``commands.run.run_streaming`` appends to ``PLANS`` and returns,
and ``guarded`` raises a failure for the planner to report instead of printing it."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamcli.exit import StreamcliError

# (the shared options, the backend's name, its factory by speaker)
Captured = tuple[Any, str, Callable[[str | None], Any]]
PLANS: ContextVar[list[Captured] | None] = ContextVar("streamcli_plans", default=None)


def raise_in_plan(error: StreamcliError) -> None:
    if PLANS.get() is not None:
        raise error
