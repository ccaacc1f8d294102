"""The configuration file and its profiles, and where each effective setting came from.

``~/.config/streamcli/config.toml`` (``$XDG_CONFIG_HOME/streamcli/config.toml``) holds a table
of defaults per backend and ``[profiles.NAME.BACKEND]`` tables. Precedence, first wins:
option > environment > profile > config file > built-in default.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcli.exit import UsageError
from streamcli.redact import mask, redact_url

SECRET_NAMES = frozenset({"api_key", "subscription_key", "client_secret", "token"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
NOT_SET = "(not set)"


def is_secret(key: str) -> bool:
    return key in SECRET_NAMES or key.endswith(("_secret", "_key"))


@dataclass(frozen=True)
class Config:
    """A parsed configuration file; ``path`` is None when there was none."""

    path: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def defaults(self, backend: str) -> dict[str, Any]:
        table = self.data.get(backend)
        return table if isinstance(table, dict) else {}

    def profiles(self) -> dict[str, dict[str, Any]]:
        table = self.data.get("profiles")
        if not isinstance(table, dict):
            return {}
        return {name: p for name, p in table.items() if isinstance(p, dict)}


@dataclass(frozen=True)
class Settings:
    """Effective settings for one backend, each with its origin ("option", "env VAR", ...)."""

    values: dict[str, Any]
    origins: dict[str, str]
    warnings: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def default_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the configuration file lives unless ``--config`` says otherwise."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "streamcli" / "config.toml"


def load_config(path: str | None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (``--config``) or the default file; a missing default file is empty."""
    explicit = path is not None
    file = Path(path) if path is not None else default_path(env)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise UsageError(f"config file {file} does not exist") from None
        return Config()
    except OSError as e:
        raise UsageError(f"cannot read config file {file}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"config file {file} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:  # its message ends "(at line L, column C)"
        raise UsageError(f"config file {file}: {e}") from None
    _check_layout(file, data)
    warnings = _layout_warnings(file, data)
    secrets = sorted(_secret_keys(data))
    if secrets and _readable_by_others(file):
        warnings.append(
            f"config file {file} holds secrets ({', '.join(secrets)}) but others can read it: "
            f"chmod 600 {file}"
        )
    return Config(str(file), data, tuple(warnings))


def _check_layout(file: Path, data: dict[str, Any]) -> None:
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise UsageError(f"config file {file}: 'profiles' must be a table ([profiles.NAME])")
    for name, profile in profiles.items():
        if not isinstance(profile, dict):
            raise UsageError(f"config file {file}: profile {name!r} must be a table")


def _layout_warnings(file: Path, data: dict[str, Any]) -> list[str]:
    return [
        f"config file {file}: ignoring {key!r}: settings belong in a [backend] table"
        for key, value in data.items()
        if not isinstance(value, dict)
    ]


def _secret_keys(table: Mapping[str, Any]) -> set[str]:
    found = set()
    for key, value in table.items():
        if isinstance(value, dict):
            found |= _secret_keys(value)
        elif is_secret(key):
            found.add(key)
    return found


def _readable_by_others(file: Path) -> bool:
    if os.name != "posix":  # Windows permissions are ACLs, not mode bits
        return False
    return bool(file.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def resolve(
    config: Config,
    backend: str,
    profile: str | None,
    options: dict[str, Any],
    env: Mapping[str, str],
    env_names: dict[str, str],
    builtin: dict[str, Any],
) -> Settings:
    """Each setting's effective value and origin: option > env > profile > file > default.

    An option that is None was not given; an empty environment variable counts as unset.
    Environment values are converted to the type of the built-in default (bool, int, float).
    """
    file_table = config.defaults(backend)
    profile_table = _profile_table(config, backend, profile)
    known = [*builtin, *(k for k in env_names if k not in builtin)]
    known += [k for k in options if k not in known]
    tables = {f"[{backend}]": file_table, f"[profiles.{profile}.{backend}]": profile_table}
    warnings = tuple(
        f"config file {where}: unknown setting {key!r}"
        for where, table in tables.items()
        for key in table
        if key not in known
    )
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key in known:
        like = builtin.get(key)
        var = env_names.get(key)
        if options.get(key) is not None:
            values[key], origins[key] = options[key], "option"
        elif var is not None and env.get(var, "") != "":
            values[key], origins[key] = _from_env(var, env[var], like), f"env {var}"
        elif key in profile_table:
            values[key] = _checked(profile_table[key], like, f"[profiles.{profile}.{backend}]", key)
            origins[key] = f"profile {profile}"
        elif key in file_table:
            values[key] = _checked(file_table[key], like, f"[{backend}]", key)
            origins[key] = "config file"
        else:
            values[key], origins[key] = like, "default"
    return Settings(values, origins, warnings)


def _profile_table(config: Config, backend: str, profile: str | None) -> dict[str, Any]:
    if profile is None:
        return {}
    profiles = config.profiles()
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        where = f" in {config.path}" if config.path else ""
        raise UsageError(f"unknown profile {profile!r}: known profiles{where}: {known}")
    table = profiles[profile].get(backend, {})
    return table if isinstance(table, dict) else {}


def _from_env(var: str, text: str, like: Any) -> Any:
    if isinstance(like, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UsageError(f"{var}={text!r}: expected true or false")
    if isinstance(like, int | float):
        try:
            return type(like)(text)
        except ValueError:
            kind = "a whole number" if isinstance(like, int) else "a number"
            raise UsageError(f"{var}={text!r}: expected {kind}") from None
    return text


def _checked(value: Any, like: Any, table: str, key: str) -> Any:
    """A file value of the built-in default's type (an int is accepted for a float)."""
    if type(like) not in (bool, int, float, str) or type(value) is type(like):
        return value
    if type(like) is float and type(value) is int:
        return float(value)
    raise UsageError(
        f"config file {table} {key} = {value!r}: expected {type(like).__name__}, "
        f"got {type(value).__name__}"
    )


def show(settings: Settings) -> list[tuple[str, str, str]]:
    """``(key, value as shown, origin)`` for ``streamcli config show``; secrets are masked."""
    return [
        (key, _display(key, value), settings.origins[key]) for key, value in settings.values.items()
    ]


def _display(key: str, value: Any) -> str:
    if value is None:
        return NOT_SET
    value = shown_value(key, value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def shown_value(key: str, value: Any) -> Any:
    """``value`` fit to show: a secret masked, a URL's password and ``?token=`` masked."""
    if value is None:
        return None
    if is_secret(key):
        return mask(str(value))
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value
