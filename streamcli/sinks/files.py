"""Output files (``-o FILE``): plain text, JSON Lines, SRT and WebVTT, written as events arrive.

Every write is flushed at once, so an interrupted or failed run keeps everything received so
far -- captions included: a final becomes its cues the moment it arrives.

Theory of cue building. A final becomes a list of timed tokens: its words with their own times;
or, without word times, its text spread over ``start``..``end`` by character count; or, without
any time (an unconfirmed tail), its text placed after the previous cue at reading speed. Tokens
are then grouped greedily into cues; a cue ends before the token that would make it

- longer than ``MAX_LINES`` lines of ``MAX_LINE_CHARS`` characters (wrapped at word boundaries),
- last longer than ``MAX_CUE_MS`` from its first word's start to its last word's end, or
- span a pause longer than ``MAX_PAUSE_MS`` between two words.

A cue runs from its first token's start to its last token's end, then is moved to start no
earlier than the previous cue of the same speaker ended (cues of one speaker never overlap) and
stretched to last at least ``MIN_CUE_MS``. Times are whole milliseconds, so end > start holds in
the file as well.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import ClassVar, TextIO

from streamcli import events as ev
from streamcli.exit import OutputError, UsageError

FORMATS = ("txt", "jsonl", "srt", "vtt")
_EXTENSIONS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".srt": "srt", ".vtt": "vtt"}

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_MS = 6000
MAX_PAUSE_MS = 1500
MIN_CUE_MS = 500
MIN_UNTIMED_CUE_MS = 1000  # a guessed time: give the reader at least a second
READING_CHARS_PER_S = 15  # nominal speed for text without any time
UNCONFIRMED_MARK = "[unconfirmed]"


def format_for(path: str, fmt: str | None = None) -> str:
    """The output format: ``fmt`` when given, else from the extension of ``path``."""
    if fmt is not None:
        name = fmt.lower().lstrip(".")
        if name not in FORMATS:
            raise UsageError(f"unknown output format {fmt!r}: use --format {'|'.join(FORMATS)}")
        return name
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXTENSIONS:
        raise UsageError(
            f"cannot tell the format of {os.path.basename(path) or path}: "
            f"use --format {'|'.join(FORMATS)}"
        )
    return _EXTENSIONS[ext]


def open_output(path: str, fmt: str | None = None) -> OutputFile:
    """Open ``path`` for writing in the format named by ``fmt`` or by its extension."""
    writer = _WRITERS[format_for(path, fmt)]
    file = _open_for_writing(path)
    try:
        return writer(path, file)
    except OutputError:  # its first bytes (a VTT header) did not fit
        with contextlib.suppress(OSError):
            file.close()
        raise


def _open_for_writing(path: str) -> TextIO:
    parent = os.path.dirname(path) or "."
    try:
        return open(path, "w", encoding="utf-8", newline="\n")  # closed by OutputFile.close()
    except FileNotFoundError:
        raise UsageError(f"cannot write {path}: directory {parent} does not exist") from None
    except NotADirectoryError:
        raise UsageError(f"cannot write {path}: {parent} is not a directory") from None
    except IsADirectoryError:
        raise UsageError(f"cannot write {path}: it is a directory") from None
    except PermissionError:
        raise UsageError(f"cannot write {path}: permission denied") from None
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


class OutputFile:
    """One output file. ``handle`` writes what an event adds, and flushes it."""

    format: ClassVar[str]

    def __init__(self, path: str, file: TextIO) -> None:
        self.path = path
        self._file = file
        self.failed = False

    def handle(self, event: ev.Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.close()  # closes the file even when its last flush fails
        except OSError as e:
            if not self.failed:  # already reported: what failed then fails again here
                self.failed = True
                raise self._error(e) from None

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, text: str) -> None:
        if self.failed:
            return
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as e:  # disk full, device gone: a one-line failure, not a traceback
            self.failed = True
            raise self._error(e) from None

    def _error(self, e: OSError) -> OutputError:
        return OutputError(f"cannot write {self.path}: {e.strerror or e}")


class TextFile(OutputFile):
    """One final per line: ``speaker: text``; a tail the server never confirmed is marked."""

    format = "txt"

    def handle(self, event: ev.Event) -> None:
        if not isinstance(event, ev.Final):
            return
        text = " ".join(event.text.split())  # a line break in the text must not start a line
        if not text:
            return
        self._write(_prefix(event, with_speaker=True) + text + "\n")


class JsonLinesFile(OutputFile):
    """Every event as its JSON line (the schema in events.py)."""

    format = "jsonl"

    def handle(self, event: ev.Event) -> None:
        self._write(event.to_json() + "\n")


class _CaptionFile(OutputFile):
    speaker_in_text: ClassVar[bool]

    def __init__(self, path: str, file: TextIO) -> None:
        super().__init__(path, file)
        self._builder = CueBuilder(speaker_in_text=self.speaker_in_text)
        self._count = 0

    def handle(self, event: ev.Event) -> None:
        if not isinstance(event, ev.Final):
            return
        for cue in self._builder.cues(event):
            self._count += 1
            self._write(self._render(self._count, cue))

    def _render(self, number: int, cue: Cue) -> str:
        raise NotImplementedError


class SrtFile(_CaptionFile):
    """SubRip: numbered cues; the speaker is a ``speaker: `` prefix (SRT has no voice tag)."""

    format = "srt"
    speaker_in_text = True

    def _render(self, number: int, cue: Cue) -> str:
        times = f"{srt_time(cue.start)} --> {srt_time(cue.end)}"
        return f"{number}\n{times}\n" + "\n".join(cue.lines) + "\n\n"


class VttFile(_CaptionFile):
    """WebVTT: the speaker is a ``<v speaker>`` voice tag; ``&``, ``<``, ``>`` are escaped."""

    format = "vtt"
    speaker_in_text = False

    def __init__(self, path: str, file: TextIO) -> None:
        super().__init__(path, file)
        self._write("WEBVTT\n\n")

    def _render(self, number: int, cue: Cue) -> str:
        times = f"{vtt_time(cue.start)} --> {vtt_time(cue.end)}"
        voice = f"<v {vtt_escape(cue.speaker)}>" if cue.speaker else ""
        return f"{times}\n{voice}" + "\n".join(vtt_escape(line) for line in cue.lines) + "\n\n"


_WRITERS: dict[str, type[OutputFile]] = {
    w.format: w for w in (TextFile, JsonLinesFile, SrtFile, VttFile)
}


def srt_time(ms: int) -> str:
    return _clock(ms, ",")


def vtt_time(ms: int) -> str:
    return _clock(ms, ".")


def _clock(ms: int, separator: str) -> str:
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def vtt_escape(text: str) -> str:
    """Cue text as WebVTT needs it: ``&``, ``<`` and ``>`` become character references."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _prefix(final: ev.Final, *, with_speaker: bool) -> str:
    speaker = " ".join(final.speaker.split()) if with_speaker and final.speaker else ""
    mark = f"{UNCONFIRMED_MARK} " if final.unconfirmed else ""
    return (f"{speaker}: " if speaker else "") + mark


@dataclass(frozen=True)
class Cue:
    """A caption cue: times in milliseconds and the lines as shown (prefix included)."""

    start: int
    end: int
    lines: tuple[str, ...]
    speaker: str | None = None


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int


class CueBuilder:
    """Turns finals into cues, remembering where each speaker's last cue ended."""

    def __init__(self, *, speaker_in_text: bool) -> None:
        self._speaker_in_text = speaker_in_text
        self._last_end: dict[str | None, int] = {}  # per speaker
        self._latest_end = 0  # over all speakers: where untimed text goes

    def cues(self, final: ev.Final) -> list[Cue]:
        tokens = self._tokens(final)
        if not tokens:
            return []
        untimed = _ms(final.start) is None and _ms(final.end) is None and not _word_times(final)
        prefix = _prefix(final, with_speaker=self._speaker_in_text).split()
        speaker = " ".join(final.speaker.split()) if final.speaker else None
        out = []
        for group in _group(tokens, prefix):
            start = max(group[0].start, self._last_end.get(speaker, 0))
            end = max(group[-1].end, start + (MIN_UNTIMED_CUE_MS if untimed else MIN_CUE_MS))
            self._last_end[speaker] = end
            self._latest_end = max(self._latest_end, end)
            lines = _wrap(prefix + [t.text for t in group])
            out.append(Cue(start, end, tuple(lines), speaker))
        return out

    def _tokens(self, final: ev.Final) -> list[_Token]:
        texts = final.text.split()
        words = _word_times(final)
        if words:
            # The text keeps punctuation and case that word lists often lose: use it when it
            # lines up word for word with the timings.
            if len(texts) != len(words):
                texts = [w.word.strip() for w in final.words]
            return [_Token(text, s, e) for text, (s, e) in zip(texts, words, strict=True) if text]
        start, end = _ms(final.start), _ms(final.end)
        if start is None and end is None:  # no time at all: after the last cue, at reading speed
            start = self._latest_end
            end = start + _reading_ms(texts)
        elif start is None:
            assert end is not None
            start = max(0, end - _reading_ms(texts))
        elif end is None:
            end = start + _reading_ms(texts)
        assert start is not None and end is not None
        return _spread(texts, start, max(start, end))


def _ms(seconds: float | None) -> int | None:
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(0, round(seconds * 1000))


def _word_times(final: ev.Final) -> list[tuple[int, int]]:
    """Word times in ms, made monotonic; empty when any word lacks a usable time."""
    out: list[tuple[int, int]] = []
    previous_start = 0
    for w in final.words:
        start, end = _ms(w.start), _ms(w.end)
        if start is None or end is None:
            return []
        start = max(start, previous_start)
        out.append((start, max(start, end)))
        previous_start = start
    return out


def _reading_ms(texts: list[str]) -> int:
    chars = sum(len(t) + 1 for t in texts)
    return round(chars * 1000 / READING_CHARS_PER_S)


def _spread(texts: list[str], start: int, end: int) -> list[_Token]:
    """Tokens sharing ``start``..``end`` in proportion to their length (space included)."""
    total = sum(len(t) + 1 for t in texts)
    out, done = [], 0
    for text in texts:
        t0 = start + (end - start) * done // total
        done += len(text) + 1
        out.append(_Token(text, t0, start + (end - start) * done // total))
    return out


def _group(tokens: list[_Token], prefix: list[str]) -> list[list[_Token]]:
    groups: list[list[_Token]] = []
    current: list[_Token] = []
    for token in tokens:
        if current and (
            len(_wrap(prefix + [t.text for t in current] + [token.text])) > MAX_LINES
            or token.end - current[0].start > MAX_CUE_MS
            or token.start - current[-1].end > MAX_PAUSE_MS
        ):
            groups.append(current)
            current = []
        current.append(token)
    if current:
        groups.append(current)
    return groups


def _wrap(words: list[str]) -> list[str]:
    """Lines of at most ``MAX_LINE_CHARS`` (a longer word gets a line of its own).

    One line when the text fits; two lines split where they are most even, which reads better
    than a full line over a stub; more lines only to report that the text does not fit.
    """
    one = " ".join(words)
    if len(one) <= MAX_LINE_CHARS:
        return [one]
    pairs = [(" ".join(words[:i]), " ".join(words[i:])) for i in range(1, len(words))]
    fitting = [p for p in pairs if max(len(p[0]), len(p[1])) <= MAX_LINE_CHARS]
    if fitting:
        top, bottom = min(fitting, key=lambda p: (max(len(p[0]), len(p[1])), len(p[0])))
        return [top, bottom]
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= MAX_LINE_CHARS:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines
