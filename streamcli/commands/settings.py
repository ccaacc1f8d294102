"""Effective settings of a backend command: option > environment > profile > config > default.

An option counts as given only when the user typed it (``Common.given``, from the command's
context), so a command keeps its visible defaults in ``--help`` and the config file still fills
what was not typed.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from streamcli.commands.options import Common
from streamcli.exit import UsageError


def resolve_settings(backend: str, common: Common, **options: Any) -> dict[str, Any]:
    """Resolve the backend's settings and apply the connection ones to ``common``.

    ``options`` are the command's values for the backend's settings (secrets already include
    their environment variable only through the config layer, not here).
    """
    from streamcli.commands.config_cmd import builtin_defaults, env_names
    from streamcli.config import load_config, resolve

    options = {**options, "timeout": common.timeout, "connect_timeout": common.connect_timeout}
    given = {key: value if key in common.given else None for key, value in options.items()}
    config = load_config(common.config)
    settings = resolve(
        config,
        backend,
        common.profile,
        given,
        os.environ,
        env_names(backend),
        builtin_defaults(backend),
    )
    if not common.quiet:
        for warning in (*config.warnings, *settings.warnings):
            print(f"streamcli: warning: {warning}", file=sys.stderr)
    for key in ("timeout", "connect_timeout"):
        if not float(settings.values[key]) > 0:
            origin = settings.origins[key]
            raise UsageError(
                f"{key} must be more than 0 seconds (got {settings.values[key]!r} from {origin})"
            )
    common.timeout = float(settings.values["timeout"])
    common.connect_timeout = float(settings.values["connect_timeout"])
    return settings.values
