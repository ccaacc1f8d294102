"""The live terminal view (Rich): finals appended, the current partial rewritten in place.

Finals are printed above a small live region that is redrawn a few times a second::

     melvin   ws://localhost:8394  transaction_id=4f2a            <- header: backend, host, ids
    alice: the current partial, dimmed                            <- one lane per stream
    alice: strong ███▌ calm ▏··· anxious ···· happy ██▊· sad ····  <- backend extras
    bob:   waiting for a seat
     streaming  elapsed 00:05.0  audio 00:04.0  ███░░ 40% ETA 00:07.5  1.25× real time  mic ▮▮▯▯

Every line of the region is cut to the console width (ending in "…"), and the status bar
drops its least useful parts first, so a narrow terminal never wraps the region. Transcript
text is always a ``rich.text.Text``, never markup, so ``[laughs]`` prints as typed. On a
console that is not a terminal (or a dumb one) there is no live region: finals and state
changes are printed as plain lines instead.

The runner calls ``start()``, feeds every event to ``handle()``, reports audio with
``add_audio()`` (and the microphone level in ``level_db``), calls ``audio_finished()`` once the
last audio is sent, and ``close()`` at the end. Rich redraws from its own thread, so the view's
state is guarded by a lock that is never held while printing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rich.cells import cell_len, get_character_cell_size
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from streamcli import events as ev

EMOTIONS = ("strong", "calm", "anxious", "happy", "sad")
SPEAKER_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "red")

# Connection states, in the order a stream goes through them; a Status event whose ``state``
# is one of these moves its lane, any other Status is a notice printed once.
STATE_LABELS = {
    "connecting": "connecting",
    "waiting": "waiting for a seat",
    "streaming": "streaming",
    "finishing": "finishing",
    "done": "done",
    "failed": "failed",
}
STATE_STYLES = {
    "connecting": "yellow",
    "waiting": "yellow",
    "streaming": "green",
    "finishing": "cyan",
    "done": "green",
    "failed": "red",
}
_ORDER = list(STATE_LABELS)
_EIGHTHS = " ▏▎▍▌▋▊▉"


@dataclass
class _Lane:
    """What the view knows about one stream (one speaker)."""

    state: str = "connecting"
    since: float = 0.0  # when ``state`` began (clock time)
    shown: str = "connecting"  # the state last announced as a plain line
    partial: str = ""
    emotions: dict[str, float] | None = None
    progress: ev.Progress | None = None
    ids: dict[str, str] = field(default_factory=dict)
    notice: str = ""


class LiveView:
    def __init__(
        self,
        console: Console,
        backend: str,
        duration: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        auto_refresh: bool = True,
    ) -> None:
        self.console = console
        self.backend = backend
        self.duration = duration
        self.clock = clock
        self.started = clock()
        self.audio_seconds = 0.0
        self.level_db: float | None = None
        self.host = ""
        self.lanes: dict[str | None, _Lane] = {}
        self.audio_done = False
        self.plain = False
        self._live: Live | None = None
        self._auto_refresh = auto_refresh
        self._lock = threading.RLock()
        self._sending_time = 0.0  # from the start to the latest audio

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Show the live region, or choose plain lines when the console is not a terminal."""
        if not self.console.is_terminal or self.console.is_dumb_terminal:
            self.plain = True
            return
        self._live = Live(
            console=self.console,
            auto_refresh=self._auto_refresh,
            refresh_per_second=4,  # 8 Hz cost ≈ 0.3 % of a core more (bench/cpu_memory.py)
            transient=True,
            get_renderable=self.render,
        )
        self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def add_audio(self, seconds: float) -> None:
        with self._lock:
            self.audio_seconds += seconds
            self._sending_time = self.clock() - self.started

    def audio_finished(self) -> None:
        """All audio is sent: streaming lanes show "finishing" until their session ends."""
        with self._lock:
            self.audio_done = True
            lines = self._announcements()
        self._emit(lines)

    @property
    def state(self) -> str:
        """The state of the run as a whole: failed if any stream failed, else the earliest."""
        with self._lock:
            shown = [self._shown_state(lane) for lane in self.lanes.values()]
        if not shown:
            return "connecting"
        if "failed" in shown:
            return "failed"
        return min(shown, key=_ORDER.index)

    # ---- events ---------------------------------------------------------------------------------
    def handle(self, event: ev.Event) -> None:
        with self._lock:
            printed = self._apply(event)
            lines = self._announcements() + printed  # a state change reads before its cause
        self._emit(lines)

    def _apply(self, event: ev.Event) -> list[Text]:
        """Update the state from one event; returns the lines to print above the region."""
        lane = self._lane(event.speaker)
        if isinstance(event, ev.SessionStarted):
            self.host = _host(str(event.info.get("url", ""))) or self.host
            lane.ids.update(_ids(event.info))
            self._move(lane, "streaming")
            lane.shown = "streaming"
            if self.plain:
                return [self._label(event.speaker) + self._session_line(lane)]
        elif isinstance(event, ev.Partial):
            self._move(lane, "streaming")
            lane.partial = event.text
        elif isinstance(event, ev.Final):
            self._move(lane, "streaming")
            lane.partial = ""
            return [self._final_line(event)]
        elif isinstance(event, ev.Status):
            if event.state in STATE_LABELS:
                self._move(lane, event.state)
            elif event.state == "seated":  # the wait is over: said once, then streaming
                self._move(lane, "streaming")
                lane.notice = event.message
                return [self._label(event.speaker) + Text(event.message, style="dim")]
            elif (event.message or event.state) != lane.notice:
                lane.notice = event.message or event.state
                return [self._label(event.speaker) + Text(lane.notice, style="dim")]
        elif isinstance(event, ev.Emotion):
            self._move(lane, "streaming")
            lane.emotions = dict(event.scores)
        elif isinstance(event, ev.Progress):
            lane.progress = event
        elif isinstance(event, ev.Warning):
            return [self._label(event.speaker) + Text(f"warning: {event.message}", style="yellow")]
        elif isinstance(event, ev.Error):
            # The runner prints the error itself once the view is closed.
            for failed in self.lanes.values() if event.speaker is None else [lane]:
                self._move(failed, "failed")
                failed.shown = "failed"
        elif isinstance(event, ev.End):
            lane.ids.update(_ids(event.extra))
            lane.partial = ""
            self._move(lane, "done")
            lane.shown = "done"
            if event.extra or self.plain:
                ids = "  ".join(f"{k}={v}" for k, v in _ids(event.extra).items())
                line = f"session ended ({event.reason})" + (f"  {ids}" if ids else "")
                return [self._label(event.speaker) + Text(line, style="dim")]
        return []

    def _lane(self, speaker: str | None) -> _Lane:
        if speaker not in self.lanes:
            self.lanes[speaker] = _Lane(since=self.clock())
        return self.lanes[speaker]

    def _move(self, lane: _Lane, state: str) -> None:
        if lane.state in ("done", "failed") or lane.state == state:
            return
        # Results move a lane to "streaming" only out of connecting or waiting: a server may
        # send no word when a seat frees up (melvin.md), its first result is the sign.
        if state == "streaming" and lane.state not in ("connecting", "waiting"):
            return
        lane.state, lane.since = state, self.clock()

    def _shown_state(self, lane: _Lane) -> str:
        if lane.state == "streaming" and self.audio_done:
            return "finishing"
        return lane.state

    def _announcements(self) -> list[Text]:
        """Plain mode only: one line per state change (the live region shows them otherwise)."""
        if not self.plain:
            return []
        lines = []
        for who, lane in self.lanes.items():
            state = self._shown_state(lane)
            if state != lane.shown:
                lane.shown = state
                lines.append(self._label(who) + Text(STATE_LABELS[state], style="dim"))
        return lines

    def _emit(self, lines: list[Text]) -> None:
        # Never under the lock: printing takes Rich's lock, and its refresh thread, holding
        # that one, calls render(), which takes ours.
        for line in lines:
            self.console.print(line)
        if self._live is not None and not self._auto_refresh:
            self._live.refresh()

    # ---- pieces of text -------------------------------------------------------------------------
    def _named(self) -> list[str]:
        return [who for who in self.lanes if who is not None]

    def _label(self, speaker: str | None) -> Text:
        named = self._named()
        if speaker is None or not named:
            return Text("")
        width = max(cell_len(who) for who in named) + 2
        style = SPEAKER_STYLES[named.index(speaker) % len(SPEAKER_STYLES)]
        return Text(f"{speaker}:".ljust(width), style=f"bold {style}")

    def _final_line(self, event: ev.Final) -> Text:
        line = self._label(event.speaker)
        if event.start is not None:
            line.append(f"[{_clock(event.start)}] ", style="dim")
        line.append(event.text)  # appended as plain text: never parsed as markup
        if event.unconfirmed:
            line.append("  (unconfirmed: the server never confirmed this tail)", style="italic dim")
        return line

    def _session_line(self, lane: _Lane) -> Text:
        line = Text(f"connected to {self.host or self.backend}", style="dim")
        for key, value in lane.ids.items():
            line.append(f"  {key}={value}", style="dim")
        return line

    # ---- rendering ------------------------------------------------------------------------------
    def render(self) -> Group:
        """The live region: header, one lane per stream, status bar; each cut to the width."""
        with self._lock:
            width = max(10, self.console.width)
            rows = [self._header()]
            several = len(self.lanes) > 1
            for who, lane in self.lanes.items():
                label = self._label(who)
                room = width - label.cell_len
                if lane.partial:
                    rows.append(label + Text(_tail(lane.partial, room), style="dim italic"))
                elif several and self._shown_state(lane) != "streaming":
                    rows.append(label + Text(STATE_LABELS[self._shown_state(lane)], style="dim"))
                if lane.emotions is not None:
                    rows.append(label + _emotion_bars(lane.emotions, room))
                if lane.progress is not None:
                    rows.append(label + _progress_line(lane.progress, room))
            rows.append(self._status_bar(width))
            return Group(*(_fit(row, width) for row in rows))

    def _header(self) -> Text:
        header = Text()
        header.append(f" {self.backend} ", style="bold reverse")
        if self.host:
            header.append(f"  {self.host}", style="dim")
        several = len(self.lanes) > 1
        for who, lane in self.lanes.items():
            if not lane.ids:
                continue
            if several and who is not None:
                header.append(f"  {who}:", style="bold")
            header.append(" " if several and who is not None else "  ")
            header.append("  ".join(f"{key}={value}" for key, value in lane.ids.items()))
        return header

    def _status_bar(self, width: int) -> Text:
        """State first; then, as room allows, audio sent, file progress, elapsed, speed, mic.

        A narrow terminal drops the least useful parts instead of wrapping; the progress bar
        takes whatever room is left (none: just the percentage and the ETA).
        """
        now = self.clock()
        elapsed = now - self.started
        state = self.state
        label = STATE_LABELS[state]
        if state == "waiting":
            since = min(lane.since for lane in self.lanes.values() if lane.state == "waiting")
            label += f" {_clock(now - since)}"
        parts: dict[str, Text] = {"audio": Text(f"  audio {_clock(self.audio_seconds)}")}
        if self.duration:
            parts["progress"] = self._file_progress()
        parts["elapsed"] = Text(f"  elapsed {_clock(elapsed)}")
        if self._sending_time > 0.5 and self.audio_seconds > 0:
            # While the audio is sent: the wait for the last results is not the pace.
            parts["speed"] = Text(f"  {self.audio_seconds / self._sending_time:.2f}× real time")
        if self.level_db is not None:
            level = round(max(0.0, min(1.0, (self.level_db + 60) / 60)) * 10)
            parts["mic"] = Text("  mic ") + Text("▮" * level, style="green")
            parts["mic"].append("▯" * (10 - level), style="dim")
        bar = Text(f" {label} ", style=f"bold reverse {STATE_STYLES[state]}")
        room = width - bar.cell_len
        shown = set()
        for name, part in parts.items():  # in order of usefulness
            if part.cell_len <= room:
                shown.add(name)
                room -= part.cell_len
        for name in ("elapsed", "audio", "progress", "speed", "mic"):  # in reading order
            if name not in shown:
                continue
            if name == "progress" and room >= 6:
                cells = min(20, room - 1)
                bar.append("  ")
                bar.append_text(_block_bar(self._fraction(), cells))
                bar.append_text(parts[name][1:])  # the bar's space replaces one of the two
            else:
                bar.append_text(parts[name])
        return bar

    def _fraction(self) -> float:
        assert self.duration
        return 1.0 if self.audio_done else min(1.0, self.audio_seconds / self.duration)

    def _file_progress(self) -> Text:
        """``  40% ETA 00:07.5``: how much of the file is sent, and when it will be."""
        frac = self._fraction()
        text = Text(f"  {frac:4.0%}")
        if 0 < frac < 1:
            assert self.duration
            eta = (self.duration - self.audio_seconds) * self._sending_time / self.audio_seconds
            text.append(f" ETA {_clock(eta)}")
        return text


def _host(url: str) -> str:
    """``wss://host:port`` of a URL: the part every stream of a run shares."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url


def _ids(info: dict[str, Any]) -> dict[str, str]:
    """Session ids and settings worth showing: everything but the URL and empty values."""
    return {k: str(v) for k, v in info.items() if k != "url" and v not in (None, "")}


def _fit(text: Text, width: int) -> Text:
    """One line, cut to ``width`` cells with a trailing "…" when it is longer."""
    text.no_wrap = True
    text.overflow = "ellipsis"
    text.truncate(width, overflow="ellipsis")
    return text


def _tail(text: str, cells: int) -> str:
    """The end of ``text`` in at most ``cells`` cells, with a leading "…" when cut."""
    text = " ".join(text.split())
    if cell_len(text) <= cells:
        return text
    kept: list[str] = []
    used = 1  # the "…"
    for char in reversed(text):
        used += get_character_cell_size(char)
        if used > cells:
            break
        kept.append(char)
    return "…" + "".join(reversed(kept)).lstrip()


def _block_bar(frac: float, cells: int) -> Text:
    filled = int(frac * cells)
    return Text("█" * filled, style="cyan") + Text("░" * (cells - filled), style="dim")


def _eighths_bar(frac: float, cells: int) -> Text:
    """A bar with eighth-cell resolution: a few cells still tell 0.30 from 0.40."""
    eighths = round(max(0.0, min(1.0, frac)) * cells * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_EIGHTHS[part] if part else "")
    return Text(bar, style="cyan") + Text("·" * (cells - cell_len(bar)), style="dim")


def _emotion_bars(scores: dict[str, float], room: int) -> Text:
    """Phebi's five emotions on one line; the bars shrink to fit ``room`` cells."""
    fixed = sum(len(name) + 1 for name in EMOTIONS) + 2 * (len(EMOTIONS) - 1)
    cells = max(1, min(8, (room - fixed) // len(EMOTIONS)))
    text = Text()
    for i, name in enumerate(EMOTIONS):
        if i:
            text.append("  ")
        text.append(f"{name} ")
        text.append_text(_eighths_bar(float(scores.get(name, 0.0)), cells))
    return text


def _progress_line(p: ev.Progress, room: int) -> Text:
    """Veridas voice collection: ``voice 3.0/10.0 s ███░░░ 30%``."""
    goal = p.goal or 0.0
    frac = _fraction_of(p.value, goal) if p.percent is None else p.percent / 100.0
    frac = max(0.0, min(1.0, frac))
    head = f"voice {p.value:.1f}/{goal:.1f}" + (f" {p.unit}" if p.unit else "")
    text = Text(head + " ")
    cells = min(24, room - len(head) - 6)
    if cells >= 5:
        text.append_text(_block_bar(frac, cells))
        text.append(" ")
    text.append(f"{frac:4.0%}")
    return text


def _fraction_of(value: float, goal: float) -> float:
    return value / goal if goal else 0.0


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m:02d}:{s:04.1f}"
