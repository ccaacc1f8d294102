"""Sinks that write events to the process's streams: JSON Lines, raw, plain text, status.

stdout carries only results; status, warnings and progress go to stderr. Every line is flushed
as it is written so ``jq`` and CI logs see events live. A closed stdout (``| head -1``) stops
output quietly instead of raising ``BrokenPipeError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from streamcli import events as ev
from streamcli.exit import OutputError


class StdoutError(OutputError):
    """Standard output failed (not a closed pipe: a full disk, a device error)."""


class Sink(Protocol):
    def handle(self, event: ev.Event) -> None: ...

    def close(self) -> None: ...


class LineWriter:
    """Writes lines to a stream; on a broken pipe it goes quiet and calls ``on_broken``."""

    def __init__(self, out: TextIO, on_broken: Callable[[], None] | None = None) -> None:
        self.out = out
        self.on_broken = on_broken
        self.broken = False

    def write(self, line: str) -> None:
        if self.broken:
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except BrokenPipeError:
            self.broken = True
            _silence(self.out)
            if self.on_broken is not None:
                self.on_broken()
        except OSError as e:  # stdout on a full disk: say so; the output files go on
            self.broken = True
            _silence(self.out)
            raise StdoutError(f"cannot write to standard output: {e.strerror or e}") from None


def _silence(out: TextIO) -> None:
    """Point the broken stream at /dev/null so the interpreter's final flush stays quiet."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


class JsonLinesSink:
    """``--json``: every event (except raw messages) as one JSON object per line."""

    def __init__(self, writer: LineWriter, extra: dict[str, Any] | None = None) -> None:
        self.writer = writer
        self.extra = extra  # fields added to every line (a batch run's ``input``)

    def handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.Raw):
            return
        if self.extra:
            line = {**event.to_dict(), **self.extra}
            self.writer.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
        else:
            self.writer.write(event.to_json())

    def close(self) -> None:
        pass


class RawSink:
    """``--raw``: the server's own messages, one JSON line each."""

    def __init__(self, writer: LineWriter) -> None:
        self.writer = writer

    def handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.Raw):
            self.writer.write(raw_line(event))

    def close(self) -> None:
        pass


class PlainTextSink:
    """stdout is not a terminal and no --json: one line of plain text per final."""

    def __init__(self, writer: LineWriter, label_speakers: bool = False) -> None:
        self.writer = writer
        self.label_speakers = label_speakers

    def handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.Final):
            prefix = f"{event.speaker}: " if self.label_speakers and event.speaker else ""
            suffix = " [unconfirmed]" if event.unconfirmed else ""
            self.writer.write(prefix + event.text + suffix)

    def close(self) -> None:
        pass


class StatusSink:
    """Plain status lines on stderr (when there is no live view): state changes and warnings."""

    def __init__(self, err: TextIO | None = None, quiet: bool = False) -> None:
        self.err = err or sys.stderr
        self.quiet = quiet
        self._last_state: dict[str | None, str] = {}

    def _say(self, text: str) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            print(text, file=self.err, flush=True)

    def handle(self, event: ev.Event) -> None:
        if self.quiet:
            return
        who = f"[{event.speaker}] " if event.speaker else ""
        if isinstance(event, ev.SessionStarted):
            self._say(f"streamcli: {who}connected to {event.info.get('url', event.backend)}")
        elif isinstance(event, ev.Status):
            if self._last_state.get(event.speaker) != event.message:
                self._last_state[event.speaker] = event.message
                self._say(f"streamcli: {who}{event.message or event.state}")
        elif isinstance(event, ev.Warning):
            self._say(f"streamcli: warning: {who}{event.message}")

    def close(self) -> None:
        pass


class Fanout:
    """Every event to every sink. A sink that cannot write (``OutputError``: disk full, stdout
    gone) is reported to ``on_failure`` once and dropped; the others go on."""

    def __init__(
        self, sinks: list[Sink], on_failure: Callable[[OutputError], None] | None = None
    ) -> None:
        self.sinks = sinks
        self.on_failure = on_failure

    def handle(self, event: ev.Event) -> None:
        for sink in list(self.sinks):
            try:
                sink.handle(event)
            except OutputError as e:
                self._drop(sink, e)

    def close(self) -> None:
        for sink in list(self.sinks):
            try:
                sink.close()
            except OutputError as e:
                self._drop(sink, e)

    def _drop(self, sink: Sink, error: OutputError) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
        if self.on_failure is None:
            raise error
        self.on_failure(error)


def raw_line(event: ev.Raw) -> str:
    """``--raw``: the server's message as one JSON line (compacted when it is JSON)."""
    if event.message is None:
        return json.dumps({"binary_length": event.binary_length})
    try:
        value = json.loads(event.message)
    except ValueError:
        value = event.message
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
