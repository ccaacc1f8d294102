"""The runner behind every WebSocket backend command: options -> source, streams, sinks ->
session -> exit status. Heavy imports live here, not in cli.py, so --help stays fast."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from streamcli import events as ev
from streamcli.audio.sources import AudioSource, open_source
from streamcli.backends.base import Backend, ConnectRequest
from streamcli.commands.options import Common
from streamcli.exit import ExitStatus, OutputError, StreamcliError, UsageError
from streamcli.session import Interrupts, Outcome, SessionOptions, Stream, run_session
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
from streamcli.transport.websocket import WireOptions, plaintext_credentials_warning

BackendFactory = Callable[[str | None], Backend]


def open_input(common: Common) -> AudioSource:
    if common.mic and common.input is not None:
        raise UsageError("give either INPUT or --mic, not both")
    if common.mic:
        from streamcli.audio.mic import MicSource, select_device

        device = select_device(common.device)
        channels = max(2, len(common.speakers)) if common.split_channels else None
        return MicSource(device=device, want_rate=16000, channels=channels)
    if common.input is None:
        raise UsageError("missing INPUT: give an audio file, '-' for stdin, or --mic")
    return open_source(common.input)


def speaker_names(common: Common, channels: int) -> list[str | None]:
    if not common.split_channels:
        if len(common.speakers) > 1:
            raise UsageError("several --speaker names need --split-channels (one per channel)")
        return [common.speakers[0] if common.speakers else None]
    if common.speakers and len(common.speakers) != channels:
        raise UsageError(
            f"--split-channels: the input has {channels} channel(s) but "
            f"{len(common.speakers)} --speaker name(s) were given"
        )
    return list(common.speakers) or [f"channel{i + 1}" for i in range(channels)]


class Outputs:
    """All sinks of a run: stdout, stderr status, the live view, output files."""

    def __init__(
        self, common: Common, backend: str, source: AudioSource, on_broken: Callable[[], None]
    ):
        self.sinks: list[Sink] = []
        self.live: Any = None
        stdout_tty = sys.stdout.isatty()
        writer = LineWriter(sys.stdout, on_broken)
        if common.raw:
            self.sinks.append(RawSink(writer))
        elif common.json:
            self.sinks.append(JsonLinesSink(writer))
        elif stdout_tty and not common.quiet:
            from rich.console import Console

            from streamcli.sinks.live import LiveView

            no_color = common.no_color or "NO_COLOR" in os.environ
            console = Console(file=sys.stdout, no_color=no_color, highlight=False, markup=False)
            self.live = LiveView(console, backend, duration=source.duration)
            self.sinks.append(self.live)
        else:
            self.sinks.append(PlainTextSink(writer, label_speakers=common.split_channels))
        if self.live is None:
            self.sinks.append(StatusSink(quiet=common.quiet or common.json or common.raw))
        self.first_error: ev.Error | None = None
        self.output_failures: list[str] = []
        for path in common.outputs:
            from streamcli.sinks.files import open_output

            try:
                self.sinks.append(open_output(path, common.format))
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


def run_streaming(
    common: Common, backend_name: str, make_backend: BackendFactory
) -> tuple[int, list[Backend]]:
    """Run one session; returns the exit status and the backends (for post-session work)."""
    check_numbers(common)
    if common.concurrency:
        from streamcli.loadtest import run_load_test

        return run_load_test(common, backend_name, make_backend), []
    source = open_input(common)
    try:
        names = speaker_names(common, source.channels)
        backends = [make_backend(name) for name in names]
        warn_plaintext_credentials(b.connect_request() for b in backends)
        interrupts = Interrupts()
        outputs = Outputs(common, backend_name, source, on_broken=interrupts.trigger_abort)
        options = SessionOptions(
            speed=common.speed,
            chunk_ms=common.chunk_ms,
            timeout=common.timeout,
            wire=WireOptions(
                connect_timeout=common.connect_timeout,
                heartbeat=common.heartbeat or None,
                ca_file=common.ca_file,
                insecure=common.insecure,
            ),
            raw=common.raw,
            debug=common.debug,
            duration=common.duration,
            reconnect=common.reconnect,
        )
        if common.insecure:
            print(
                "streamcli: warning: --insecure: TLS certificates are not checked", file=sys.stderr
            )
        outcome = _run(source, backends, names, outputs, options, interrupts, common, make_backend)
    finally:
        source.close()
    if outputs.first_error is not None:
        print(f"streamcli: error: {outputs.first_error.message}", file=sys.stderr, flush=True)
    elif outcome.status == ExitStatus.INTERRUPTED:
        print("streamcli: interrupted", file=sys.stderr, flush=True)
    return int(outputs.status(outcome.status)), backends


def check_numbers(common: Common) -> None:
    """Typer checks ranges, but ``nan`` passes every comparison: refuse it here."""
    for option, value in (
        ("--speed", common.speed),
        ("--timeout", common.timeout),
        ("--connect-timeout", common.connect_timeout),
        ("--heartbeat", common.heartbeat),
        ("--duration", common.duration),
    ):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{option} {value}: expected a finite number")


def warn_plaintext_credentials(requests: Iterable[ConnectRequest]) -> None:
    """One stderr line per host and scheme when credentials would travel unencrypted off this
    machine."""
    seen: set[str] = set()
    for request in requests:
        warning = plaintext_credentials_warning(request)
        if warning and warning not in seen:
            seen.add(warning)
            print(f"streamcli: warning: {warning}", file=sys.stderr, flush=True)


def _run(
    source: AudioSource,
    backends: list[Backend],
    names: list[str | None],
    outputs: Outputs,
    options: SessionOptions,
    interrupts: Interrupts,
    common: Common,
    make_backend: BackendFactory,
) -> Outcome:
    saver = _AudioSaver(common.save_audio, source) if common.save_audio else None
    level = getattr(source, "level", None)

    take_warnings = getattr(source, "take_warnings", None)

    def on_audio(block: Any) -> None:
        if take_warnings is not None:  # microphone overflows and drops
            for message in take_warnings():
                outputs.handle(ev.Warning(backend=backends[0].name, message=message))
        if outputs.live is not None:
            outputs.live.add_audio(len(block) / source.rate)
            if level is not None:
                outputs.live.level_db = source.level  # type: ignore[attr-defined]
        nonlocal saver
        if saver is not None:
            try:
                saver.write(block)
            except StreamcliError as e:
                saver = None
                outputs.output_failed(e)

    def factory_for(name: str | None) -> Callable[[], Backend]:
        def make() -> Backend:
            return make_backend(name)  # a fresh backend per reconnect

        return make

    async def main() -> Outcome:
        streams = [
            Stream(
                b,
                outputs.handle,
                options,
                channel=i if common.split_channels else None,
                factory=factory_for(name),
            )
            for i, (b, name) in enumerate(zip(backends, names, strict=True))
        ]
        try:
            finished = outputs.live.audio_finished if outputs.live is not None else None
            return await run_session(
                source, streams, options, interrupts, on_audio=on_audio, on_audio_end=finished
            )
        finally:
            backends[:] = [s.backend for s in streams]  # after reconnects: the last sessions

    if outputs.live is not None:
        outputs.live.start()
    try:
        return asyncio.run(main())
    finally:
        outputs.close()
        if saver is not None:
            try:
                saver.close()
            except StreamcliError as e:
                outputs.output_failed(e)


class _AudioSaver:
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
