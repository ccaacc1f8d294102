"""A backend command line turned into what one session needs, without running it.

``plan_session(app, "melvin", ["talk.wav", "--url", ...])`` parses the arguments with the very
command a user runs (the same options, config file, profile, environment variables and checks)
and returns a ``SessionPlan``: the backend factory, the ``SessionOptions`` and the input. The
Locust users (``streamcli.locust``) and ``streamcli locustfile`` use it, so a locustfile holds
the command line a user already runs and nothing of its own.

How: ``commands.capture.PLANS`` is set while the command parses, so ``run_streaming`` hands
what it was given to the plan instead of running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamcli.commands.capture import PLANS, Captured
from streamcli.exit import UsageError

if TYPE_CHECKING:
    from streamcli.backends.base import Backend
    from streamcli.commands.options import Common
    from streamcli.engine.session import SessionOptions
    from streamcli.specs import InputSpec

# The transcription backends (Veridas das-Peak is voice biometrics over two channels).
STREAMING_BACKENDS = ("melvin", "phebi", "bodhi", "vosk")


@dataclass(frozen=True)
class SessionPlan:
    """One session of a backend command, ready to run as many times as wanted."""

    backend: str
    make_backend: Callable[[], Backend]  # a fresh backend per session (and per reconnect)
    options: SessionOptions
    input: InputSpec
    args: tuple[str, ...]  # the command's arguments, as given


def plan_session(app: Any, backend: str, args: Sequence[str]) -> SessionPlan:
    """Parse ``streamcli BACKEND ARGS`` into a plan; bad arguments raise ``UsageError`` (or the
    ``StreamcliError`` the command would have exited with)."""
    import typer

    if backend not in STREAMING_BACKENDS:
        raise UsageError(
            f"{backend!r}: a session plan needs a transcription backend "
            f"({', '.join(STREAMING_BACKENDS)})"
        )
    captured: list[Captured] = []
    token = PLANS.set(captured)
    try:
        code = app([backend, *args], prog_name="streamcli", standalone_mode=False)
    except typer.Exit as e:
        code = e.exit_code
    except Exception as e:
        explain = getattr(e, "format_message", None)  # click's usage errors (in Typer or not)
        if explain is None:
            raise
        raise UsageError(f"streamcli {backend}: {explain()}") from None
    finally:
        PLANS.reset(token)
    if not captured:
        raise UsageError(f"streamcli {backend}: the arguments make no session (exit {code})")
    common, name, make = captured[0]
    check_plan_options(common)
    speaker = common.speakers[0] if common.speakers else None

    def make_backend() -> Backend:
        return make(speaker)

    make_backend()  # the backend's own checks (URL, model, credentials present), now
    return SessionPlan(
        name, make_backend, common.session_options(), common.input_spec(), tuple(args)
    )


def check_plan_options(common: Common) -> None:
    from streamcli.commands.run import _refuse, check_numbers

    check_numbers(common)
    mode = "a Locust user (one file, one session at a time)"
    _refuse(
        mode,
        [
            ("--mic", common.mic),
            ("--split-channels", common.split_channels),
            ("--raw", common.raw),
            ("--output", bool(common.outputs)),
            ("--save-audio", common.save_audio is not None),
            ("--concurrency", bool(common.concurrency)),
            ("--repeat", common.repeat != 1),
            ("--reconnect", bool(common.reconnect)),  # a drop is a failure of the load test
            ("--debug", common.debug),
            ("--ramp", bool(common.ramp)),
            ("several inputs or a batch option", common.batch),
        ],
    )
    if len(common.inputs) != 1:
        raise UsageError("missing INPUT: a Locust user streams one audio file")
    if common.inputs[0] == "-":
        raise UsageError("'-' (stdin): a Locust user streams a file, read once per worker")


def check_audio(path: str, audio_stream: int | None = None) -> None:
    """The input opens as audio (else the CLI's error naming it)."""
    from streamcli.audio.sources import open_source

    open_source(path, audio_stream=audio_stream).close()


def public_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """``args`` without the values of secret options (``config.is_secret``, as ``config show``
    masks them): (kept, the secret options dropped)."""
    from streamcli.config import is_secret

    kept: list[str] = []
    dropped: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name.startswith("--") and is_secret(name[2:].replace("-", "_")):
            dropped.append(name)
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept, dropped
