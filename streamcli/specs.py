"""Typed configs: what a run reads, how it shows results, how a load test runs.

``commands/`` turns the CLI's options (with the config file, profile and environment) into these
at the edge; everything below works on them and never sees the option bag or imports Typer.
``engine.session.SessionOptions`` is the fourth: how each session streams.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    path: str | None = None  # an audio file, or "-" for stdin
    mic: bool = False
    device: str | None = None  # --mic: a device index or a part of its name
    split_channels: bool = False  # one session per channel
    speakers: tuple[str, ...] = ()
    save_audio: str | None = None  # --save-audio: a WAV of what was read
    audio_stream: int | None = None  # --audio-stream: which audio stream of a media file
    # An http(s) URL as the input: the TLS options of the session, and how long its stream
    # may stall (--timeout).
    ca_file: str | None = None
    insecure: bool = False
    stall: float = 30.0

    def speaker_names(self, channels: int) -> list[str | None]:
        """One name per session: the one --speaker, or one per channel (--split-channels)."""
        from streamcli.exit import UsageError

        if not self.split_channels:
            if len(self.speakers) > 1:
                raise UsageError("several --speaker names need --split-channels (one per channel)")
            return [self.speakers[0] if self.speakers else None]
        if self.speakers and len(self.speakers) != channels:
            raise UsageError(
                f"--split-channels: the input has {channels} channel(s) but "
                f"{len(self.speakers)} --speaker name(s) were given"
            )
        return list(self.speakers) or [f"channel{i + 1}" for i in range(channels)]


@dataclass(frozen=True)
class OutputSpec:
    json: bool = False
    raw: bool = False
    quiet: bool = False
    no_color: bool = False
    files: tuple[str, ...] = ()  # -o paths
    format: str | None = None  # of the files (else from each suffix)
    label_speakers: bool = False  # plain text: prefix each line with its speaker


@dataclass(frozen=True)
class LoadSpec:
    concurrency: int
    ramp: float = 0.0
    repeat: int = 1
    max_p95_latency: float | None = None
    report: str | None = None  # HTML report path


@dataclass(frozen=True)
class BatchSpec:
    jobs: int = 1  # at most this many inputs at once
    reference: str | None = None  # one reference text (one input)
    reference_dir: str | None = None  # {stem}.txt per input
    normalize: bool = True  # lower case, no punctuation, collapsed whitespace before scoring
    max_wer: float | None = None
    max_p95_latency: float | None = None
    junit: str | None = None  # JUnit XML report path
    summary_md: str | None = None  # Markdown summary path
    report: str | None = None  # HTML report path
