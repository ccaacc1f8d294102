"""The runner behind every WebSocket backend command: options -> typed configs (``InputSpec``,
``OutputSpec``, ``SessionOptions``, ``LoadSpec``) -> source, sessions, outputs -> ``engine`` ->
exit status. The heavy libraries (aiohttp, the engine) are imported after the input is open, so a
microphone is already capturing while they load (``MicSource.start``)."""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from streamcli import events as ev
from streamcli.commands.capture import PLANS
from streamcli.commands.options import Common
from streamcli.exit import ExitStatus, StreamcliError, UsageError
from streamcli.specs import InputSpec

if TYPE_CHECKING:
    from streamcli.audio.sources import AudioSource
    from streamcli.backends.base import Backend, ConnectRequest
    from streamcli.engine.interrupts import Interrupts
    from streamcli.engine.run import Outcome
    from streamcli.engine.session import SessionOptions
    from streamcli.sinks.outputs import Outputs

BackendFactory = Callable[[str | None], "Backend"]


def open_input(spec: InputSpec) -> AudioSource:
    """Open the input; a microphone starts capturing at once (what is said while the session
    imports and connects is sent once it is connected)."""
    from streamcli.audio.sources import open_source

    if spec.mic and spec.path is not None:
        raise UsageError("give either INPUT or --mic, not both")
    if spec.mic:
        from streamcli.audio.mic import MicSource, adopt, select_device

        channels = max(2, len(spec.speakers)) if spec.split_channels else None
        running = adopt(spec.device, channels)  # capturing since launch (``__main__``)
        if running is not None:
            return running
        mic = MicSource(device=select_device(spec.device), want_rate=16000, channels=channels)
        try:
            mic.start()
        except UsageError:
            mic.close()
            raise
        return mic
    if spec.path is None:
        raise UsageError("missing INPUT: give an audio file, '-' for stdin, or --mic")
    from streamcli.audio.url import is_url

    if is_url(spec.path):
        from streamcli.audio.url import open_url
        from streamcli.transport.websocket import WireOptions

        wire = WireOptions(ca_file=spec.ca_file, insecure=spec.insecure)
        return open_url(spec.path, wire, spec.stall, spec.audio_stream)
    return open_source(spec.path, audio_stream=spec.audio_stream)


def run_streaming(
    common: Common, backend_name: str, make_backend: BackendFactory
) -> tuple[int, list[Backend]]:
    """Run one session; returns the exit status and the backends (for post-session work)."""
    check_numbers(common)
    plans = PLANS.get()
    if plans is not None:  # planning a session (``commands.plan``), not running one
        plans.append((common, backend_name, make_backend))
        return 0, []
    if common.concurrency:
        return run_load(common, backend_name, make_backend, common.session_options()), []
    if common.batch:
        return run_many(common, backend_name, make_backend, common.session_options()), []
    spec = common.input_spec()
    source = open_input(spec)  # first: a microphone captures while the rest loads
    try:
        from streamcli.engine.interrupts import Interrupts
        from streamcli.sinks.outputs import Outputs

        options = common.session_options()
        names = spec.speaker_names(source.channels)
        backends = [make_backend(name) for name in names]
        warn_plaintext_credentials(b.connect_request() for b in backends)
        interrupts = Interrupts()
        outputs = Outputs(
            common.output_spec(), backend_name, source, on_broken=interrupts.trigger_abort
        )
        warn_insecure(options)
        outcome = _run(source, spec, backends, names, outputs, options, interrupts, make_backend)
    finally:
        source.close()
    if outputs.first_error is not None:
        print(f"streamcli: error: {outputs.first_error.message}", file=sys.stderr, flush=True)
    elif outcome.status == ExitStatus.INTERRUPTED:
        print("streamcli: interrupted", file=sys.stderr, flush=True)
    return int(outputs.status(outcome.status)), backends


def run_load(
    common: Common, backend_name: str, make_backend: BackendFactory, options: SessionOptions
) -> int:
    """``--concurrency N``: the load test (``loadtest.py``) on this command's backend."""
    from streamcli.loadtest import run_load_test

    check_load_options(common)
    speaker = common.speakers[0] if common.speakers else None

    def make() -> Backend:
        return make_backend(speaker)

    warn_plaintext_credentials([make().connect_request()])
    source = open_input(common.input_spec())
    if source.live and common.duration is None:
        source.close()
        raise UsageError("a load test of a live stream needs --duration (the audio it shares)")
    warn_insecure(options)
    return run_load_test(
        source, backend_name, make, options, common.load_spec(), common.output_spec()
    )


def run_many(
    common: Common, backend_name: str, make_backend: BackendFactory, options: SessionOptions
) -> int:
    """Several inputs (or scoring, thresholds, reports): the batch run (``batch.py``)."""
    from streamcli.batch import run_batch

    check_batch_options(common)
    warn_plaintext_credentials([make_backend(None).connect_request()])
    warn_insecure(options)
    return run_batch(
        common.inputs,
        backend_name,
        make_backend,
        options,
        common.batch_spec(),
        common.output_spec(),
        common.input_spec(),
    )


def check_batch_options(common: Common) -> None:
    _refuse(
        "a batch run (several inputs)",
        [
            ("--mic", common.mic),
            ("--raw", common.raw),
            ("--save-audio", common.save_audio is not None),
        ],
    )
    if not common.inputs:
        raise UsageError("missing INPUT: give audio files or directories")
    if common.reference is not None and common.reference_dir is not None:
        raise UsageError("give either --reference or --reference-dir, not both")
    if common.reference is not None and (
        len(common.inputs) > 1 or any(os.path.isdir(p) for p in common.inputs)
    ):
        raise UsageError("--reference scores one input; for several, use --reference-dir")
    if common.max_p95_latency is not None and common.speed == 0:
        raise UsageError("--max-p95-latency needs paced audio (--speed > 0)")
    for option, path in (
        ("--reference", common.reference),
        ("--reference-dir", common.reference_dir),
    ):
        if path is not None and not os.path.exists(path):
            raise UsageError(f"{option} {path}: no such file or directory")


def _refuse(mode: str, options: list[tuple[str, bool]]) -> None:
    """The first of ``options`` that was used, refused for ``mode``."""
    for name, used in options:
        if used:
            raise UsageError(f"{name} cannot be combined with {mode}")


def check_load_options(common: Common) -> None:
    _refuse(
        "--concurrency (load-test mode)",
        [
            ("--mic", common.mic),
            ("--split-channels", common.split_channels),
            ("--raw", common.raw),
            ("--output", bool(common.outputs)),
            ("--save-audio", common.save_audio is not None),
        ],
    )
    if common.max_p95_latency is not None and common.speed == 0:
        raise UsageError("--max-p95-latency needs paced audio (--speed > 0)")


def warn_insecure(options: SessionOptions) -> None:
    if options.wire.insecure:
        print("streamcli: warning: --insecure: TLS certificates are not checked", file=sys.stderr)


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
    from streamcli.transport.websocket import plaintext_credentials_warning

    seen: set[str] = set()
    for request in requests:
        warning = plaintext_credentials_warning(request)
        if warning and warning not in seen:
            seen.add(warning)
            print(f"streamcli: warning: {warning}", file=sys.stderr, flush=True)


def _run(
    source: AudioSource,
    spec: InputSpec,
    backends: list[Backend],
    names: list[str | None],
    outputs: Outputs,
    options: SessionOptions,
    interrupts: Interrupts,
    make_backend: BackendFactory,
) -> Outcome:
    from streamcli.engine.run import run_source
    from streamcli.engine.session import Session
    from streamcli.sinks.outputs import AudioSaver

    saver = AudioSaver(spec.save_audio, source) if spec.save_audio else None
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
        sessions = [
            Session(
                b,
                outputs.handle,
                options,
                channel=i if spec.split_channels else None,
                factory=factory_for(name),
            )
            for i, (b, name) in enumerate(zip(backends, names, strict=True))
        ]
        try:
            finished = outputs.live.audio_finished if outputs.live is not None else None
            return await run_source(
                source, sessions, options, interrupts, on_audio=on_audio, on_audio_end=finished
            )
        finally:
            backends[:] = [s.backend for s in sessions]  # after reconnects: the last sessions

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
