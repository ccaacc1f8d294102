"""``--help`` as a well-made CLI shows it: what to type, not type names; ranges in words; option
names never cut, however narrow the terminal.

Typer's rich help (0.2x) prints a Python type beside each option (``<str>``, ``<float range>``,
``<list[str]>``), ``[x>=0.1]`` for ranges and, at 80 columns, cuts long option names
(``--reminder-interv…``). ``install()`` adjusts three of its hooks, each only if it is there:
- an option's metavar: its own, else one named after what it takes (``METAVARS``: URL, KEY,
  SECONDS, FILE, ...), else one after its type (N, NUMBER, TEXT); a flag shows none;
- a range reads "0 to 65535", "at least 1";
- the options table keeps the name columns whole (no wrap, no ellipsis): the help text wraps.
Only Typer is imported here: ``streamcli --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import typer

METAVARS = {
    # where
    "url": "URL",
    "rest_url": "URL",
    "audio_url": "URL",
    "token_url": "URL",
    "host": "HOST",
    "port": "PORT",
    "rest_port": "PORT",
    "socketio_path": "PATH",
    "namespace": "NAMESPACE",
    # credentials (better in the environment: see each option's help)
    "api_key": "KEY",
    "subscription_key": "KEY",
    "audiohook_api_key": "KEY",
    "request_key": "KEY",
    "client_secret": "SECRET",
    "audiohook_secret": "SECRET",
    "token": "TOKEN",
    "client_id": "ID",
    "customer_id": "ID",
    "call_id": "ID",
    "audiohook_org_id": "ID",
    "session": "ID",
    "model_hash": "HASH",
    # files and folders
    "ca_file": "FILE",
    "config": "FILE",
    "credential": "FILE",
    "credential_out": "FILE",
    "save_audio": "FILE",
    "script": "FILE",
    "export_dir": "DIR",
    # names
    "device": "DEVICE",
    "model": "MODEL",
    "models": "MODEL",
    "profile": "NAME",
    "project": "NAME",
    "speakers": "NAME",
    "fault": "NAME",
    "recognizer": "NAME",
    "audio_protocol": "NAME",
    "credential_field": "FIELD",
    "format": "FORMAT",
    "export": "KINDS",
    "hotwords": "PHRASE[:SCORE]",
    "error_message": "TEXT",
    "reject": "STATUS",
    "backend": "BACKEND",
    # time
    "timeout": "SECONDS",
    "connect_timeout": "SECONDS",
    "seat_timeout": "SECONDS",
    "duration": "SECONDS",
    "heartbeat": "SECONDS",
    "keepalive": "SECONDS",
    "ramp": "SECONDS",
    "consumer_delay": "SECONDS",
    "eos_close_after": "SECONDS",
    "error_after": "SECONDS",
    "error_at": "SECONDS",
    "fail_after": "SECONDS",
    "fault_after": "SECONDS",
    "idle_timeout": "SECONDS",
    "reminder_interval": "SECONDS",
    "endpoint_silence": "SECONDS",
    "goal_duration": "SECONDS",
    "max_p95_latency": "SECONDS",
    "chunk_ms": "MS",
    # amounts
    "speed": "FACTOR",
    "goal_scale": "FACTOR",
    "sample_rate": "HZ",
    "max_wer": "FRACTION",
    "threshold": "SCORE",
    "concurrency": "N",
    "jobs": "N",
    "repeat": "N",
    "reconnect": "N",
    "seats": "N",
    "audio_stream": "N",
}
BY_TYPE = {"integer": "N", "integer range": "N", "float": "NUMBER", "float range": "NUMBER"}


def metavar_of(param: Any) -> str | None:
    """What to type after the option (None for a flag)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if getattr(param, "metavar", None):
        return str(param.metavar)
    named = METAVARS.get(getattr(param, "name", "") or "")
    if named:
        return named
    kind = getattr(getattr(param, "type", None), "name", "") or ""
    return BY_TYPE.get(kind, "TEXT")


def _plain(cell: Any) -> str:
    return str(getattr(cell, "plain", cell) or "")


def range_in_words(low: float | None, high: float | None) -> str | None:
    if low is None and high is None:
        return None
    if low is None:
        return f"at most {high:g}"
    if high is None:
        return f"at least {low:g}"
    return f"{low:g} to {high:g}"


def install() -> None:
    """Adjust Typer's rich help (idempotent; a Typer without these hooks is left as it is)."""
    core = getattr(typer, "core", None)
    option = getattr(core, "TyperOption", None)
    if option is None or getattr(option, "_streamcli_help", False):
        return
    option._streamcli_help = True
    if hasattr(option, "display_type_rich"):
        option.display_type_rich = lambda self, ctx: metavar_of(self)
    argument = getattr(core, "TyperArgument", None)
    if argument is not None and hasattr(argument, "display_type_rich"):
        argument.display_type_rich = lambda self, ctx: None  # its metavar names it already
    if hasattr(option, "_get_number_range_help_str"):
        option._get_number_range_help_str = lambda self: (
            None if self.count else range_in_words(getattr(self, "min", None), self.max)
        )
    # The table is patched when a help page is rendered: importing Rich's tables costs about
    # 100 ms that a run which shows no help should not pay.
    for command in (getattr(core, "TyperCommand", None), getattr(core, "TyperGroup", None)):
        render = getattr(command, "format_help", None)
        if command is not None and render is not None:
            command.format_help = _patched_first(render)


def _patched_first(render: Any) -> Any:
    def format_help(self: Any, ctx: Any, formatter: Any) -> Any:
        _keep_option_names_whole()
        return render(self, ctx, formatter)

    return format_help


def _keep_option_names_whole() -> None:
    try:
        from typer import rich_utils
    except ImportError:  # Typer without Rich: Click's plain help never cuts names
        return
    base = getattr(rich_utils, "Table", None)
    if base is None or getattr(base, "_streamcli", False):
        return

    from rich.text import Text

    class OptionsTable(base):  # type: ignore[misc, valid-type]
        """Typer's help tables. An option's row comes as its names (long, short, and the
        negative forms), its metavar and its help: the names go in one column that never
        wraps (``--quirks / --no-quirks``, ``--output, -o``); the metavar and the help wrap."""

        _streamcli = True

        def add_row(self, *cells: Any, **kwargs: Any) -> None:
            if len(cells) in (6, 7):  # [required,] long, short, no-long, no-short, type, help
                lead, names, rest = cells[:-6], cells[-6:-2], cells[-2:]
                long, short, no_long, no_short = (_plain(c) for c in names)
                name = Text(long or short, style=getattr(names[0], "style", ""))
                if long and short:
                    name.append(f", {short}")
                if no_long or no_short:
                    name.append(f" / {no_long or no_short}", style="dim")
                cells = (*lead, name, *rest)
            for part in getattr(cells[-1], "renderables", [cells[-1]]):
                if isinstance(part, Text):
                    part.overflow = "fold"  # a long default (a URL) folds, never cut
            super().add_row(*cells, **kwargs)
            self.columns[len(cells) - 3 if len(cells) >= 3 else 0].no_wrap = True

    setattr(rich_utils, "Table", OptionsTable)  # noqa: B010 - a module attribute, patched
