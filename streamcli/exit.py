"""Exit codes and the one place where failures become them (the model: httpie's ExitStatus)."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from streamcli import kinds as ev


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1  # unexpected internal error
    USAGE = 2  # bad usage or unusable input
    AUTH = 3  # credentials rejected
    CONNECTION = 4  # cannot connect / connection lost
    SERVER = 5  # server or protocol error
    TIMEOUT = 6  # timed out
    OUTPUT = 7  # an output file (or stdout) could not be written; the rest went on
    QUALITY = 8  # batch run: every file ran, but one or more missed --max-wer/--max-p95-latency
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


class StreamcliError(Exception):
    """A failure with a one-line message for the user and an exit status."""

    status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, status: ExitStatus | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(StreamcliError):
    status = ExitStatus.USAGE


class AuthError(StreamcliError):
    status = ExitStatus.AUTH


class ConnectError(StreamcliError):
    status = ExitStatus.CONNECTION


class ServerError(StreamcliError):
    status = ExitStatus.SERVER


class OutputError(StreamcliError):
    """An output (``-o``, ``--save-audio``, ``--credential-out``, stdout) failed mid-run."""

    status = ExitStatus.OUTPUT


def handshake_refusal(status: int, message: str, who: str = "the server") -> StreamcliError:
    """What an HTTP status at a WebSocket handshake means: 401/403 credentials, 5xx a
    (transient) connection failure, anything else a server error."""
    text = f"{who} refused the connection: HTTP {status}{' ' + message if message else ''}"
    if status in (401, 403):
        return AuthError(text)
    if status >= 500:
        return ConnectError(text)
    return ServerError(text)


_KIND_TO_STATUS = {
    ev.AUTH: ExitStatus.AUTH,
    ev.CONNECTION: ExitStatus.CONNECTION,
    ev.SERVER: ExitStatus.SERVER,
    ev.PROTOCOL: ExitStatus.SERVER,
    ev.TIMEOUT: ExitStatus.TIMEOUT,
    ev.USAGE: ExitStatus.USAGE,
    ev.OUTPUT: ExitStatus.OUTPUT,
}


def status_for_error_kind(kind: str) -> ExitStatus:
    return _KIND_TO_STATUS.get(kind, ExitStatus.SERVER)


def kind_for_status(status: ExitStatus) -> str:
    return {
        ExitStatus.AUTH: ev.AUTH,
        ExitStatus.CONNECTION: ev.CONNECTION,
        ExitStatus.TIMEOUT: ev.TIMEOUT,
        ExitStatus.USAGE: ev.USAGE,
    }.get(status, ev.SERVER)


# When several sessions fail differently, the exit code names the most specific cause (last).
SEVERITY = (
    ExitStatus.TIMEOUT,
    ExitStatus.SERVER,
    ExitStatus.CONNECTION,
    ExitStatus.AUTH,
    ExitStatus.USAGE,
)


def worst_status(statuses: Iterable[ExitStatus], default: ExitStatus = ExitStatus.OK) -> ExitStatus:
    """The status that explains a run best: the most specific of the failures."""
    return max(statuses, key=lambda s: SEVERITY.index(s) if s in SEVERITY else -1, default=default)
