"""Option types shared by every backend command (the CLI contract), grouped in help panels.

Only typer is imported here: ``streamcli --help`` must stay fast.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from streamcli.engine.session import SessionOptions
    from streamcli.specs import BatchSpec, InputSpec, LoadSpec, OutputSpec

INPUT = "Input"
OUTPUT = "Output"
CONNECTION = "Connection"
BACKEND = "Backend"

InputArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Audio files (WAV, FLAC, OGG, MP3; M4A, MP4, WebM, ... with the media extra), "
        "directories of them, or '-' for stdin. Several inputs make a batch run: each file its "
        "own session.",
        show_default=False,
        metavar="INPUT",
    ),
]
SingleInputArg = Annotated[
    str | None,
    typer.Argument(
        help="Audio file (WAV, FLAC, OGG, MP3; M4A, MP4, WebM, ... with the media extra) or '-' "
        "for stdin.",
        show_default=False,
        metavar="INPUT",
    ),
]
Mic = Annotated[
    bool, typer.Option("--mic", help="Capture from the microphone.", rich_help_panel=INPUT)
]


def complete_device(incomplete: str) -> list[tuple[str, str]]:
    """``--device`` on TAB: input device names. sounddevice is imported only here, and any
    failure (no PortAudio, no sound server) offers nothing rather than breaking the shell."""
    from streamcli import helpcache

    helpcache.mark_dynamic()  # the devices change: this answer is never replayed
    try:
        devices = _input_devices_quietly()
    except Exception:
        return []
    # Typer keeps only the values that start with what was typed (case and all).
    return [(d.name, f"device {d.index}") for d in devices if d.name.startswith(incomplete)]


def _input_devices_quietly() -> list[Any]:
    import os

    from streamcli.audio.mic import list_input_devices

    saved = os.dup(2)  # PortAudio's ALSA probing writes to fd 2: keep it off the prompt
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return list_input_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


Device = Annotated[
    str | None,
    typer.Option(
        help="Input device: index or name substring.",
        rich_help_panel=INPUT,
        autocompletion=complete_device,
    ),
]
Duration = Annotated[
    float | None,
    typer.Option(help="Stop after this many seconds of audio.", rich_help_panel=INPUT, min=0.01),
]
AudioStream = Annotated[
    int | None,
    typer.Option(
        help="Which audio stream of a media file (MP4, MKV, WebM) to stream, from 0 (default: "
        "the first).",
        rich_help_panel=INPUT,
        min=0,
        metavar="N",
    ),
]
SaveAudio = Annotated[
    str | None,
    typer.Option(
        help="Also write the captured input audio to this WAV file.", rich_help_panel=INPUT
    ),
]
Speed = Annotated[
    float,
    typer.Option(
        help="Pacing: 1 = real time, 2 = twice as fast, 0 = as fast as the server takes it.",
        rich_help_panel=INPUT,
        min=0.0,
        max=1000.0,
    ),
]
ChunkMs = Annotated[
    int,
    typer.Option(help="Audio per frame, in milliseconds.", rich_help_panel=INPUT, min=10, max=5000),
]
SplitChannels = Annotated[
    bool,
    typer.Option(
        "--split-channels",
        help="Send each input channel to its own stream (one per speaker).",
        rich_help_panel=INPUT,
    ),
]
Speakers = Annotated[
    list[str] | None,
    typer.Option(
        "--speaker",
        help="Speaker name; repeat for --split-channels in channel order.",
        rich_help_panel=INPUT,
    ),
]
Json = Annotated[
    bool, typer.Option("--json", help="JSON Lines events on stdout.", rich_help_panel=OUTPUT)
]
Raw = Annotated[
    bool,
    typer.Option(
        "--raw", help="The server's messages verbatim, one JSON line each.", rich_help_panel=OUTPUT
    ),
]
Outputs = Annotated[
    list[str] | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Write results to FILE (.txt .jsonl .srt .vtt); repeatable.",
        rich_help_panel=OUTPUT,
    ),
]
Format = Annotated[
    str | None,
    typer.Option(
        "--format", help="Format of --output files: txt, jsonl, srt, vtt.", rich_help_panel=OUTPUT
    ),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="No status lines on stderr.", rich_help_panel=OUTPUT)
]
NoColor = Annotated[bool, typer.Option("--no-color", help="No colors.", rich_help_panel=OUTPUT)]
Debug = Annotated[
    bool,
    typer.Option("--debug", help="Wire trace on stderr (secrets masked).", rich_help_panel=OUTPUT),
]
Timeout = Annotated[
    float,
    typer.Option(
        help="Max seconds to wait for the end of the session after the audio ends.",
        rich_help_panel=CONNECTION,
        min=0.1,
    ),
]
ConnectTimeout = Annotated[
    float,
    typer.Option(help="Max seconds to open the connection.", rich_help_panel=CONNECTION, min=0.1),
]


def recognizer_kind(value: str, script: str | None) -> str:
    """The recognizer an emulator runs, or one line (exit 2) saying what is missing."""
    from streamcli.emulators.recognition import resolve_kind
    from streamcli.exit import UsageError

    try:
        return resolve_kind(value, script)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"--recognizer {value}: {e}") from None


Recognizer = Annotated[
    str,
    typer.Option(
        help="Where the words come from: pocketsphinx (recognized from the audio; pip install "
        "'streamcli\\[asr]'), script (--script FILE, else placeholders), or auto (pocketsphinx "
        "when installed and no --script).",
        metavar="NAME",
    ),
]


CaFile = Annotated[
    str | None,
    typer.Option(
        help="Trust this CA certificate (PEM) for wss:// and https://.", rich_help_panel=CONNECTION
    ),
]
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Skip TLS certificate checks (prints a warning).",
        rich_help_panel=CONNECTION,
    ),
]
Heartbeat = Annotated[
    float,
    typer.Option(
        help="Seconds between WebSocket pings; a peer that misses a pong is dead (0 = off).",
        rich_help_panel=CONNECTION,
        min=0.0,
    ),
]
Reconnect = Annotated[
    int,
    typer.Option(
        help="Reconnect up to N times after a transient failure, resuming the audio.",
        rich_help_panel=CONNECTION,
        min=0,
        max=100,
    ),
]
LOAD = "Load test"
Concurrency = Annotated[
    int,
    typer.Option(
        help="Run N concurrent sessions of the input (load test).",
        rich_help_panel=LOAD,
        min=0,
        max=10000,
    ),
]
Ramp = Annotated[
    float,
    typer.Option(
        help="Spread the session starts over this many seconds.", rich_help_panel=LOAD, min=0.0
    ),
]
Repeat = Annotated[
    int,
    typer.Option(
        help="Each session streams the input M times in a row.", rich_help_panel=LOAD, min=1
    ),
]
MaxP95Latency = Annotated[
    float | None,
    typer.Option(
        help="Fail when the p95 final latency exceeds this (seconds): exit 5 in a load test, "
        "8 in a batch run.",
        rich_help_panel=LOAD,
        min=0.0,
    ),
]
BATCH = "Batch runs & CI"
Jobs = Annotated[
    int,
    typer.Option(
        help="Batch run: stream up to N inputs at once.", rich_help_panel=BATCH, min=1, max=1000
    ),
]
Reference = Annotated[
    str | None,
    typer.Option(
        help="Reference transcript (text file) to score the one input against (WER, CER).",
        metavar="FILE",
        rich_help_panel=BATCH,
        show_default=False,
    ),
]
ReferenceDir = Annotated[
    str | None,
    typer.Option(
        help="Directory of reference transcripts: {stem}.txt for each input.",
        metavar="DIR",
        rich_help_panel=BATCH,
        show_default=False,
    ),
]
NoNormalize = Annotated[
    bool,
    typer.Option(
        "--no-normalize",
        help="Score raw words (keep case and punctuation).",
        rich_help_panel=BATCH,
    ),
]
MaxWer = Annotated[
    float | None,
    typer.Option(
        help="Exit 8 when a file's word error rate exceeds this (0.15 = 15 %).",
        rich_help_panel=BATCH,
        min=0.0,
    ),
]
Junit = Annotated[
    str | None,
    typer.Option(
        help="Write a JUnit XML report: one test case per input.",
        metavar="FILE",
        rich_help_panel=BATCH,
        show_default=False,
    ),
]
Report = Annotated[
    str | None,
    typer.Option(
        help="Write an HTML report with charts of a batch run or a load test (--concurrency): "
        "one self-contained file, readable offline (needs streamcli\\[report]).",
        metavar="FILE",
        rich_help_panel=BATCH,
        show_default=False,
    ),
]
SummaryMd = Annotated[
    str | None,
    typer.Option(
        help="Write a Markdown summary (e.g. to $GITHUB_STEP_SUMMARY).",
        metavar="FILE",
        rich_help_panel=BATCH,
        show_default=False,
    ),
]
Profile = Annotated[
    str | None,
    typer.Option(help="Use the named profile of the config file.", rich_help_panel=CONNECTION),
]
ConfigPath = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Config file (default: ~/.config/streamcli/config.toml).",
        rich_help_panel=CONNECTION,
    ),
]


@dataclass
class Common:
    """The options every backend command shares, as the runner sees them."""

    inputs: list[str] = field(default_factory=list)
    mic: bool = False
    device: str | None = None
    duration: float | None = None
    audio_stream: int | None = None
    save_audio: str | None = None
    speed: float = 1.0
    chunk_ms: int = 100
    split_channels: bool = False
    speakers: list[str] = field(default_factory=list)
    json: bool = False
    raw: bool = False
    outputs: list[str] = field(default_factory=list)
    format: str | None = None
    quiet: bool = False
    no_color: bool = False
    debug: bool = False
    timeout: float = 30.0
    connect_timeout: float = 10.0
    ca_file: str | None = None
    insecure: bool = False
    heartbeat: float = 30.0
    reconnect: int = 0
    concurrency: int = 0
    ramp: float = 0.0
    repeat: int = 1
    max_p95_latency: float | None = None
    jobs: int = 1
    reference: str | None = None
    reference_dir: str | None = None
    no_normalize: bool = False
    max_wer: float | None = None
    junit: str | None = None
    summary_md: str | None = None
    report: str | None = None
    profile: str | None = None
    config: str | None = None
    given: frozenset[str] = frozenset()  # options the user typed (vs. left at their default)

    @classmethod
    def from_values(cls, values: dict[str, Any], ctx: Any = None) -> Common:
        """The shared options from a command's values; ``ctx`` tells which ones were typed."""
        fields = cls.__dataclass_fields__
        picked = {k: v for k, v in values.items() if k in fields and k != "given"}
        picked["speakers"] = list(values.get("speakers") or [])
        picked["outputs"] = list(values.get("outputs") or [])
        given_input = values.get("input")
        if isinstance(given_input, str):
            given_input = [given_input]
        picked["inputs"] = list(given_input or [])
        if ctx is not None:
            picked["given"] = frozenset(
                name
                for name in ctx.params
                if getattr(ctx.get_parameter_source(name), "name", "DEFAULT")
                not in ("DEFAULT", "DEFAULT_MAP")
            )
        return cls(**picked)

    # ---- the typed configs everything below ``commands/`` works on ----------------------------
    def input_spec(self) -> InputSpec:
        from streamcli.specs import InputSpec

        return InputSpec(
            path=self.inputs[0] if self.inputs else None,
            mic=self.mic,
            device=self.device,
            split_channels=self.split_channels,
            speakers=tuple(self.speakers),
            save_audio=self.save_audio,
            audio_stream=self.audio_stream,
            ca_file=self.ca_file,
            insecure=self.insecure,
            stall=self.timeout,
        )

    def output_spec(self) -> OutputSpec:
        from streamcli.specs import OutputSpec

        return OutputSpec(
            json=self.json,
            raw=self.raw,
            quiet=self.quiet,
            no_color=self.no_color,
            files=tuple(self.outputs),
            format=self.format,
            label_speakers=self.split_channels,
        )

    def session_options(self) -> SessionOptions:
        from streamcli.engine.session import SessionOptions
        from streamcli.transport.websocket import WireOptions

        return SessionOptions(
            speed=self.speed,
            chunk_ms=self.chunk_ms,
            timeout=self.timeout,
            wire=WireOptions(
                connect_timeout=self.connect_timeout,
                heartbeat=self.heartbeat or None,
                ca_file=self.ca_file,
                insecure=self.insecure,
            ),
            raw=self.raw,
            debug=self.debug,
            duration=self.duration,
            reconnect=self.reconnect,
        )

    @property
    def batch(self) -> bool:
        """Several inputs, a directory, or an option only batch runs have: a batch run."""
        import os

        return (
            len(self.inputs) > 1
            or any(p != "-" and os.path.isdir(p) for p in self.inputs)
            or self.jobs > 1
            or (self.max_p95_latency is not None and not self.concurrency)
            or any(
                v is not None
                for v in (
                    self.reference,
                    self.reference_dir,
                    self.max_wer,
                    self.junit,
                    self.summary_md,
                    None if self.concurrency else self.report,
                )
            )
        )

    def batch_spec(self) -> BatchSpec:
        from streamcli.specs import BatchSpec

        return BatchSpec(
            jobs=self.jobs,
            reference=self.reference,
            reference_dir=self.reference_dir,
            normalize=not self.no_normalize,
            max_wer=self.max_wer,
            max_p95_latency=self.max_p95_latency,
            junit=self.junit,
            summary_md=self.summary_md,
            report=self.report,
        )

    def load_spec(self) -> LoadSpec:
        from streamcli.specs import LoadSpec

        return LoadSpec(
            concurrency=self.concurrency,
            ramp=self.ramp,
            repeat=self.repeat,
            max_p95_latency=self.max_p95_latency,
            report=self.report,
        )


# Every streaming command takes these (name, annotated type, default), in this order.
SHARED_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("mic", Mic, False),
    ("device", Device, None),
    ("duration", Duration, None),
    ("audio_stream", AudioStream, None),
    ("save_audio", SaveAudio, None),
    ("speed", Speed, 1.0),
    ("chunk_ms", ChunkMs, 100),
    ("split_channels", SplitChannels, False),
    ("speakers", Speakers, None),
    ("json", Json, False),
    ("raw", Raw, False),
    ("outputs", Outputs, None),
    ("format", Format, None),
    ("quiet", Quiet, False),
    ("no_color", NoColor, False),
    ("debug", Debug, False),
    ("timeout", Timeout, 30.0),
    ("connect_timeout", ConnectTimeout, 10.0),
    ("ca_file", CaFile, None),
    ("insecure", Insecure, False),
    ("heartbeat", Heartbeat, 30.0),
    ("reconnect", Reconnect, 0),
    ("concurrency", Concurrency, 0),
    ("ramp", Ramp, 0.0),
    ("repeat", Repeat, 1),
    ("max_p95_latency", MaxP95Latency, None),
    ("jobs", Jobs, 1),
    ("reference", Reference, None),
    ("reference_dir", ReferenceDir, None),
    ("no_normalize", NoNormalize, False),
    ("max_wer", MaxWer, None),
    ("junit", Junit, None),
    ("summary_md", SummaryMd, None),
    ("report", Report, None),
    ("profile", Profile, None),
    ("config", ConfigPath, None),
)


def _signature_with(
    fn: Callable[..., Any], shared: Sequence[tuple[str, Any, Any]]
) -> tuple[inspect.Signature, list[inspect.Parameter], set[str]]:
    """``fn``'s own parameters (not ``common`` or ``**kwargs``), then the ``shared`` options it
    does not declare itself (a command may declare a shared option its own way)."""
    own = inspect.signature(fn, eval_str=True)
    params = [
        p
        for p in own.parameters.values()
        if p.name != "common" and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    names = {p.name for p in params}
    extra = [
        inspect.Parameter(
            name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation
        )
        for name, annotation, default in shared
        if name not in names
    ]
    return own, params + extra, names


def with_options(shared: Sequence[tuple[str, Any, Any]]) -> Callable[..., Any]:
    """Add ``shared`` options (name, annotated type, default) to a command after its own; the
    command receives them as keyword arguments (``**options``)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own, params, _ = _signature_with(fn, shared)

        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            return fn(**values)

        command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        return command

    return decorate


def streaming_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a backend command every shared option (after its own): it receives them as one
    ``common: Common`` argument. Typer reads the combined ``__signature__``."""
    own, params, own_names = _signature_with(fn, SHARED_OPTIONS)
    wants_ctx = "ctx" in own_names
    if not wants_ctx:
        ctx = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        params.insert(0, ctx)

    @functools.wraps(fn)
    def command(**values: Any) -> Any:
        ctx = values["ctx"] if wants_ctx else values.pop("ctx")
        shared_values = {
            n: values[n] if n in own_names else values.pop(n) for n, _, _ in SHARED_OPTIONS
        }
        common = Common.from_values({**values, **shared_values}, ctx)  # INPUT is a Common field
        return fn(common=common, **values)

    command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    return command
