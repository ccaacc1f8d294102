"""Where a command's failures become exit codes: one clear stderr line, never a traceback
(the model: httpie's ``main()``/``program()`` split). Imported by ``cli.py`` and every command
module, so the commands never import ``cli.py`` (no import cycle)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from streamcli.commands import options as o


def guarded(fn: Callable[[], int | None], debug: bool = False) -> None:
    """Run a command body: StreamcliError -> its exit code and one line; never a traceback."""
    from streamcli.exit import ExitStatus, StreamcliError

    try:
        code = fn() or 0
    except StreamcliError as e:
        from streamcli.commands.capture import raise_in_plan

        raise_in_plan(e)
        print(f"streamcli: error: {e.message}", file=sys.stderr, flush=True)
        code = int(e.status)
    except KeyboardInterrupt:
        print("streamcli: interrupted", file=sys.stderr, flush=True)
        code = int(ExitStatus.INTERRUPTED)
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"streamcli: internal error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        code = int(ExitStatus.ERROR)
    raise typer.Exit(code)


def common_from(values: dict[str, Any]) -> o.Common:
    """The shared options from a command's ``locals()`` (with ``ctx``: which ones were typed)."""
    return o.Common.from_values(values, values.get("ctx"))


def run_server(run: Callable[[], Any]) -> int:
    import asyncio

    from streamcli.exit import ConnectError

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    except OSError as e:
        raise ConnectError(f"cannot listen: {e.strerror or e}") from None
    return 0
