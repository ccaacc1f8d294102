"""A cache of rendered ``--help`` pages and shell completions: both without importing Typer.

Rendering the help costs Typer, Rich's help formatting (markdown, pygments) and the click tree:
about 150 ms of a 190 ms ``--help``. The page only changes when one of its inputs changes, so
the first rendering is recorded byte for byte (exactly what Typer wrote) and replayed after:

- which help: the arguments, only ``[COMMAND...] --help|-h`` (or nothing), nothing else;
- the code that defines it: size and mtime of every module of this package, and of the
  ``typer``, ``click`` and ``rich`` packages' files that are found on ``sys.path``;
- how it is rendered: whether stdout is a terminal, the terminal sizes Rich reads (stdin,
  stdout, stderr), the environment variables Rich, Typer and click read (``COLUMNS``,
  ``NO_COLOR``, ``FORCE_COLOR``, ``TERM``, …), the interpreter and the output encoding.

Shell completions (``_STREAMCLI_COMPLETE`` set by the scripts in ``completions/``) are cached the
same way, keyed by the words being completed (``COMP_WORDS``/``COMP_CWORD``,
``_TYPER_COMPLETE_ARGS``, …), except the ones that read the machine (``--device`` lists the
input devices now: ``mark_dynamic``).

A page is stored only when the command exited 0 and wrote nothing to stderr. The cache is
``$XDG_CACHE_HOME/streamcli/help`` (``~/.cache/...``); ``STREAMCLI_NO_HELP_CACHE=1`` turns it off,
and a cache that cannot be read or written is simply not used. Only the standard library here.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

try:  # the built-in module: importing hashlib loads OpenSSL (~5 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import blake2b

HELP_FLAGS = ("--help", "-h")
RENDER_ENV = (
    "COLUMNS",
    "LINES",
    "NO_COLOR",
    "FORCE_COLOR",
    "TERM",
    "COLORTERM",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "JUPYTER_COLUMNS",
    "JUPYTER_LINES",
    "TYPER_USE_RICH",
    "_TYPER_FORCE_DISABLE_TERMINAL",
    "_TYPER_STANDARD_TRACEBACK",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "PYTHONIOENCODING",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
)
LIBRARIES = ("typer", "click", "rich")
COMPLETION_ENV = (
    "_STREAMCLI_COMPLETE",
    "COMP_WORDS",
    "COMP_CWORD",
    "_TYPER_COMPLETE_ARGS",
    "_TYPER_COMPLETE_WORD_TO_COMPLETE",
    "_TYPER_COMPLETE_FISH_ACTION",
)
FORMAT = "1"  # bump when what is stored changes
_dynamic = False


def mark_dynamic() -> None:
    """This answer reads the machine (e.g. the input devices): do not store it."""
    global _dynamic
    _dynamic = True


def wanted(argv: list[str]) -> bool:
    """A help page: nothing, or command words followed by one help flag."""
    if os.environ.get("STREAMCLI_NO_HELP_CACHE"):
        return False
    if os.environ.get("_STREAMCLI_COMPLETE"):  # a shell asks for completions
        return not argv
    if not argv:
        return True
    *words, last = argv
    return last in HELP_FLAGS and all(w and not w.startswith("-") for w in words)


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "streamcli", "help")


def _tree_stamp(root: str, depth: int) -> list[str]:
    """Name, size and mtime of every file under ``root`` (to ``depth`` levels)."""
    out: list[str] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return [f"{root}:missing"]
    for entry in entries:
        if entry.name == "__pycache__":
            continue
        try:
            if entry.is_dir():
                if depth > 0:
                    out += _tree_stamp(entry.path, depth - 1)
            elif entry.name.endswith(".py"):
                st = entry.stat()
                out.append(f"{entry.path}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            continue
    return out


def _library_root(name: str) -> str | None:
    for entry in sys.path:
        candidate = os.path.join(entry or ".", name, "__init__.py")
        if os.path.exists(candidate):
            return os.path.dirname(candidate)
    return None


def _terminal_sizes() -> list[str]:
    sizes = []
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
            sizes.append(f"{size.columns}x{size.lines}")
        except (OSError, ValueError):
            sizes.append("-")
    return sizes


def key(argv: list[str]) -> str:
    own = os.path.dirname(os.path.abspath(__file__))
    parts = [FORMAT, sys.version, sys.executable, repr(argv)]
    parts += _tree_stamp(own, 2)
    for lib in LIBRARIES:
        root = _library_root(lib)
        parts += _tree_stamp(root, 1) if root else [f"{lib}:missing"]
    parts.append(f"tty={_isatty(sys.stdout)}")
    parts.append(f"encoding={getattr(sys.stdout, 'encoding', None)}")
    parts += _terminal_sizes()
    parts += [f"{k}={os.environ.get(k)}" for k in (*RENDER_ENV, *COMPLETION_ENV)]
    return blake2b("\n".join(parts).encode(), digest_size=20).hexdigest()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def replay(argv: list[str]) -> bool:
    """Write the cached page for ``argv`` to stdout; False when there is none."""
    try:
        with open(os.path.join(cache_dir(), key(argv)), "rb") as f:
            data = f.read()
    except OSError:
        return False
    sys.stdout.flush()
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        return False
    out.write(data)
    out.flush()
    return True


class _Recorder:
    """Stands in for ``sys.stdout``: writes through and keeps a copy of every byte."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.data: list[str] = []

    def write(self, text: str) -> int:
        written = self._stream.write(text)  # click probes with b"": the real stream refuses it
        self.data.append(text)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def record(argv: list[str], run: Callable[[], None]) -> None:
    """Run the CLI (it renders the help and exits); store the page when it went cleanly."""
    computed = key(argv)
    out, err = _Recorder(sys.stdout), _Recorder(sys.stderr)
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    code: Any = 0
    try:
        run()
    except SystemExit as e:
        code = e.code
        raise
    finally:
        sys.stdout, sys.stderr = real_out, real_err
        if code in (0, None) and not err.data and out.data and not _dynamic:
            encoding = getattr(real_out, "encoding", None) or "utf-8"
            with contextlib.suppress(OSError, UnicodeError):
                _store(computed, "".join(out.data).encode(encoding))


def _store(name: str, data: bytes) -> None:
    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(folder, name))
