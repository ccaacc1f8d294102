"""``streamcli config show|path``: the effective settings per backend and where each came from.

``BACKEND_SETTINGS`` is the one table of what each backend can read from the config file: the
built-in default and the environment variable of every setting. The backend commands feed
``builtin_defaults()`` and ``env_names()`` to ``streamcli.config.resolve``, so ``config show``
and a real run agree. Only typer is imported at load time; the rest when a command runs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, NamedTuple

import typer


class Known(NamedTuple):
    """A setting a backend knows: its built-in default and the variable that overrides it."""

    default: Any
    env: str | None = None


_CONNECTION = {"timeout": Known(30.0), "connect_timeout": Known(10.0)}

# Keep the defaults in step with the backends (tests/test_config_cmd.py compares them).
BACKEND_SETTINGS: dict[str, dict[str, Known]] = {
    "melvin": {
        "url": Known("ws://localhost:8394"),
        "api_key": Known(None, "MELVIN_API_KEY"),
        "rest_url": Known(None),
        "export_dir": Known("."),
        **_CONNECTION,
    },
    "phebi": {
        "url": Known(None, "PHEBI_URL"),
        "project": Known(None),
        "session": Known(None),
        "subscription_key": Known(None, "PHEBI_SUBSCRIPTION_KEY"),
        **_CONNECTION,
    },
    "bodhi": {
        "url": Known("wss://bodhi.navana.ai"),
        "model": Known("hi-banking-v2-8khz"),
        "sample_rate": Known(8000),
        "api_key": Known(None, "BODHI_API_KEY"),
        "customer_id": Known(None, "BODHI_CUSTOMER_ID"),
        **_CONNECTION,
    },
    "vosk": {
        "url": Known("ws://localhost:2700"),
        "sample_rate": Known(16000),
        **_CONNECTION,
    },
    "veridas": {
        "url": Known("https://api.eu.veri-das.com"),
        "client_id": Known(None, "VERIDAS_CLIENT_ID"),
        "client_secret": Known(None, "VERIDAS_CLIENT_SECRET"),
        "token": Known(None, "VERIDAS_TOKEN"),
        "audio_url": Known(None, "VERIDAS_AUDIO_URL"),
        "model_hash": Known(None, "VERIDAS_MODEL_HASH"),
        "audiohook_api_key": Known(None, "VERIDAS_AUDIOHOOK_API_KEY"),
        "audiohook_secret": Known(None, "VERIDAS_AUDIOHOOK_SECRET"),
        **_CONNECTION,
    },
}


def builtin_defaults(backend: str) -> dict[str, Any]:
    """``{setting: built-in default}`` for ``config.resolve(builtin=...)``."""
    return {key: known.default for key, known in BACKEND_SETTINGS[backend].items()}


def env_names(backend: str) -> dict[str, str]:
    """``{setting: environment variable}`` for ``config.resolve(env_names=...)``."""
    return {key: k.env for key, k in BACKEND_SETTINGS[backend].items() if k.env is not None}


def _complete_backend(incomplete: str) -> list[str]:
    return [name for name in BACKEND_SETTINGS if name.startswith(incomplete)]


BackendArg = Annotated[
    str | None,
    typer.Argument(
        help=f"One backend ({', '.join(BACKEND_SETTINGS)}); all of them when left out.",
        autocompletion=_complete_backend,
        show_default=False,
        metavar="BACKEND",
    ),
]
ProfileOpt = Annotated[
    str | None, typer.Option(help="Show the settings as the named profile makes them.")
]
ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Config file (default: $XDG_CONFIG_HOME/streamcli/config.toml, else "
        "~/.config/streamcli/config.toml).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
NoColorOpt = Annotated[bool, typer.Option("--no-color", help="No colors.")]


def register(app: typer.Typer) -> None:
    """Add the ``config`` command group to ``app``."""
    config_app = typer.Typer(
        name="config",
        help="Show the configuration file's effective settings.",
        no_args_is_help=True,
    )
    config_app.command(
        "show",
        epilog="Example: streamcli config show melvin --profile lab",
    )(show_command)
    config_app.command("path", epilog='Example: $EDITOR "$(streamcli config path)"')(path_command)
    app.add_typer(config_app)


def show_command(
    backend: BackendArg = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    no_color: NoColorOpt = False,
) -> None:
    """Print the effective settings, secrets masked, and where each one came from.

    Precedence, first wins: option > environment > profile > config file > built-in default.
    """
    from streamcli.commands.guard import guarded

    guarded(lambda: _show(backend, profile, config, as_json, no_color))


def path_command(config: ConfigOpt = None) -> None:
    """Print the path of the configuration file (whether or not it exists)."""
    from streamcli.commands.guard import guarded

    def body() -> int:
        from streamcli.config import default_path

        print(config if config is not None else default_path())
        return 0

    guarded(body)


# ---- show ---------------------------------------------------------------------------------------
Rows = list[tuple[str, str, str]]


def _show(
    backend: str | None, profile: str | None, path: str | None, as_json: bool, no_color: bool
) -> int:
    from streamcli.config import default_path, load_config
    from streamcli.exit import UsageError

    if backend is not None and backend not in BACKEND_SETTINGS:
        raise UsageError(f"unknown backend {backend!r}: one of {', '.join(BACKEND_SETTINGS)}")
    config = load_config(path)
    warnings = list(config.warnings) + _unknown_tables(config)
    backends = [backend] if backend is not None else list(BACKEND_SETTINGS)
    settings = {name: _resolve(config, name, profile) for name in backends}
    for each in settings.values():
        warnings += [w for w in each.warnings if w not in warnings]
    for warning in warnings:
        print(f"streamcli: warning: {warning}", file=sys.stderr, flush=True)
    file = config.path or f"{default_path()} (not found)"
    if as_json:
        print(_json(config.path, profile, settings))
    elif sys.stdout.isatty():
        from rich.console import Console

        colorless = no_color or "NO_COLOR" in os.environ
        console = Console(no_color=colorless, highlight=False, markup=False, emoji=False)
        for name, each in settings.items():
            console.print(settings_table(name, each, file, profile))
    else:
        for line in plain_lines(settings, file, profile):
            print(line)
    return 0


def _resolve(config: Any, backend: str, profile: str | None) -> Any:
    from streamcli.config import resolve

    return resolve(
        config, backend, profile, {}, os.environ, env_names(backend), builtin_defaults(backend)
    )


def _unknown_tables(config: Any) -> list[str]:
    """A misspelt ``[melvn]`` would otherwise be ignored without a word."""
    known = {*BACKEND_SETTINGS, "profiles"}
    found = [
        f"config file {config.path}: ignoring [{name}]: not a backend "
        f"({', '.join(BACKEND_SETTINGS)})"
        for name, value in config.data.items()
        if isinstance(value, dict) and name not in known
    ]
    for profile, tables in config.profiles().items():
        found += [
            f"config file {config.path}: ignoring [profiles.{profile}.{name}]: not a backend"
            for name, value in tables.items()
            if isinstance(value, dict) and name not in BACKEND_SETTINGS
        ]
    return found


def _rows(settings: Any) -> Rows:
    from streamcli.config import show

    return show(settings)


def settings_table(backend: str, settings: Any, file: str, profile: str | None) -> Any:
    """A Rich table for a terminal; every cell is a Text, so no value is read as markup."""
    from rich.table import Table
    from rich.text import Text

    title = f"{backend} · {file}" + (f" · profile {profile}" if profile else "")
    table = Table(title=Text(title), title_justify="left", show_edge=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    table.add_column("from", style="dim")
    for key, value, origin in _rows(settings):
        table.add_row(Text(key), Text(value), Text(origin))
    return table


def plain_lines(settings: dict[str, Any], file: str, profile: str | None) -> list[str]:
    """``backend.setting  value  origin`` in aligned columns, after a line naming the file."""
    rows = [
        (f"{name}.{key}", value, origin)
        for name, s in settings.items()
        for key, value, origin in _rows(s)
    ]
    lines = [f"config file: {file}" + (f"  profile: {profile}" if profile else "")]
    first = max(len(r[0]) for r in rows)
    second = max(len(r[1]) for r in rows)
    lines += [f"{k.ljust(first)}  {v.ljust(second)}  {o}".rstrip() for k, v, o in rows]
    return lines


def _json(path: str | None, profile: str | None, settings: dict[str, Any]) -> str:
    """Values keep their JSON types, except secrets, which are the masked strings."""
    from streamcli.config import shown_value

    out: dict[str, Any] = {"config_file": path, "profile": profile, "backends": {}}
    for name, each in settings.items():
        table = {}
        for key, value in each.values.items():
            table[key] = {"value": shown_value(key, value), "origin": each.origins[key]}
        out["backends"][name] = table
    return json.dumps(out, ensure_ascii=False, indent=2)
