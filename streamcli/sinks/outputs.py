"""All outputs of one run: stdout (live view, JSON Lines, raw or plain text), the status lines on
stderr, the ``-o`` files and ``--save-audio``. Built from an ``OutputSpec``, never CLI options.
An output that stops working mid-run is reported once and dropped (exit 7 at the end); the
others go on."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

from streamcli import events as ev
from streamcli.audio.sources import AudioSource
from streamcli.exit import ExitStatus, OutputError, StreamcliError, UsageError
from streamcli.sinks.stream import (
    Fanout,
    JsonLinesSink,
    LineWriter,
    PlainTextSink,
    RawSink,
    Sink,
    StatusSink,
    StdoutError,
)
from streamcli.specs import OutputSpec


class Outputs:
    """All sinks of a run: stdout, stderr status, the live view, output files."""

    def __init__(
        self, spec: OutputSpec, backend: str, source: AudioSource, on_broken: Callable[[], None]
    ):
        self.sinks: list[Sink] = []
        self.live: Any = None
        stdout_tty = sys.stdout.isatty()
        writer = LineWriter(sys.stdout, on_broken)
        if spec.raw:
            self.sinks.append(RawSink(writer))
        elif spec.json:
            self.sinks.append(JsonLinesSink(writer))
        elif stdout_tty and not spec.quiet:
            from rich.console import Console

            from streamcli.sinks.live import LiveView

            no_color = spec.no_color or "NO_COLOR" in os.environ
            console = Console(file=sys.stdout, no_color=no_color, highlight=False, markup=False)
            self.live = LiveView(console, backend, duration=source.duration)
            self.sinks.append(self.live)
        else:
            self.sinks.append(PlainTextSink(writer, label_speakers=spec.label_speakers))
        if self.live is None:
            self.sinks.append(StatusSink(quiet=spec.quiet or spec.json or spec.raw))
        self.first_error: ev.Error | None = None
        self.output_failures: list[str] = []
        for path in spec.files:
            from streamcli.sinks.files import open_output

            try:
                self.sinks.append(open_output(path, spec.format))
            except OutputError as e:  # opened, but its first bytes (a VTT header) did not fit
                self.output_failed(e)
        self.fanout = Fanout(self.sinks, on_failure=self.output_failed)

    def output_failed(self, error: StreamcliError) -> None:
        """An output stopped working mid-run: one line now, exit 7 at the end, the rest goes on."""
        from streamcli.sinks.files import OutputFile

        rest = " (the results go on to stdout)"
        if isinstance(error, StdoutError):
            files = any(isinstance(s, OutputFile) for s in self.sinks)
            rest = " (the output files go on)" if files else ""
        self.output_failures.append(error.message)
        print(f"streamcli: error: {error.message}{rest}", file=sys.stderr, flush=True)

    def status(self, outcome_status: ExitStatus) -> ExitStatus:
        """The run's exit status: an output that failed turns a success into 7."""
        if outcome_status == ExitStatus.OK and self.output_failures:
            return ExitStatus.OUTPUT
        return outcome_status

    def handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.Error) and self.first_error is None:
            self.first_error = event
        self.fanout.handle(event)

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
        self.fanout.close()


class AudioSaver:
    """``--save-audio``: exactly what was read/captured, flushed as it goes."""

    def __init__(self, path: str, source: AudioSource) -> None:
        import soundfile as sf

        self.path = path
        try:
            self.file = sf.SoundFile(
                path,
                "w",
                samplerate=source.rate,
                channels=source.channels,
                subtype="PCM_16",
                format="WAV",
            )
        except (OSError, RuntimeError, sf.LibsndfileError) as e:
            raise UsageError(f"--save-audio {path}: cannot write it ({_reason(e)})") from None

    def write(self, block: Any) -> None:
        import soundfile as sf

        try:
            self.file.write(block)
            self.file.flush()
        except (OSError, RuntimeError, sf.LibsndfileError) as e:
            with contextlib.suppress(OSError, RuntimeError, sf.LibsndfileError):
                self.file.close()
            raise self._error(e) from None

    def close(self) -> None:
        import soundfile as sf

        try:
            self.file.close()
        except (OSError, RuntimeError, sf.LibsndfileError) as e:
            raise self._error(e) from None

    def _error(self, e: BaseException) -> OutputError:
        return OutputError(f"--save-audio {self.path}: cannot write it ({_reason(e)})")


def _reason(e: BaseException) -> str:
    """libsndfile says "System error."; errno, when the OS has one, says more."""
    import soundfile as sf

    code = getattr(e, "errno", None) or getattr(getattr(sf, "_ffi", None), "errno", 0)
    if isinstance(e, sf.LibsndfileError) and code:
        return os.strerror(code)
    return getattr(e, "strerror", None) or str(e).rstrip(".") or type(e).__name__
