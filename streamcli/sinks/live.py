"""The live terminal view (Rich): finals appended, the current partial rewritten in place.

Finals are printed above a small live region that shows, per speaker, the current partial
(dimmed) and backend extras (emotion bars, progress), plus a status bar: connection state,
elapsed time, audio sent and a progress bar with ETA for files. Transcript text is always a
``rich.text.Text``, never markup, so ``[laughs]`` prints as typed.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from streamcli import events as ev

EMOTIONS = ("strong", "calm", "anxious", "happy", "sad")
SPEAKER_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "red")


class LiveView:
    def __init__(
        self,
        console: Console,
        backend: str,
        duration: float | None = None,
        clock: Any = time.monotonic,
        auto_refresh: bool = True,
    ) -> None:
        self.console = console
        self.backend = backend
        self.duration = duration
        self.clock = clock
        self.started = clock()
        self.audio_seconds = 0.0
        self.level_db: float | None = None
        self.state = "connecting"
        self.host = ""
        self.ids: dict[str, str] = {}
        self.partials: dict[str | None, str] = {}
        self.emotions: dict[str | None, dict[str, float]] = {}
        self.progress: dict[str | None, ev.Progress] = {}
        self.speakers: list[str | None] = []
        self._live: Live | None = None
        self._auto_refresh = auto_refresh

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._live = Live(
            self.render(),
            console=self.console,
            auto_refresh=self._auto_refresh,
            refresh_per_second=8,
            transient=True,
            get_renderable=self.render,
        )
        self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def add_audio(self, seconds: float) -> None:
        self.audio_seconds += seconds

    # ---- events ---------------------------------------------------------------------------------
    def _speaker(self, who: str | None) -> None:
        if who not in self.speakers:
            self.speakers.append(who)

    def handle(self, event: ev.Event) -> None:
        self._speaker(event.speaker)
        if isinstance(event, ev.SessionStarted):
            self.state = "streaming"
            self.host = str(event.info.get("url", ""))
            self.ids.update({k: str(v) for k, v in event.info.items() if k != "url"})
        elif isinstance(event, ev.Partial):
            self.partials[event.speaker] = event.text
        elif isinstance(event, ev.Final):
            self.partials[event.speaker] = ""
            self._print(self._final_line(event))
        elif isinstance(event, ev.Status):
            self.state = event.state
        elif isinstance(event, ev.Emotion):
            self.emotions[event.speaker] = event.scores
        elif isinstance(event, ev.Progress):
            self.progress[event.speaker] = event
        elif isinstance(event, ev.Warning):
            self._print(Text(f"warning: {event.message}", style="yellow"))
        elif isinstance(event, ev.Error):
            self.state = "failed"
        elif isinstance(event, ev.End):
            self.state = "done"
        if self._live is not None and not self._auto_refresh:
            self._live.refresh()

    def _print(self, renderable: Any) -> None:
        if self._live is not None:
            self._live.console.print(renderable)
        else:
            self.console.print(renderable)

    def _label(self, speaker: str | None) -> Text:
        if speaker is None or len([s for s in self.speakers if s is not None]) == 0:
            return Text("")
        style = SPEAKER_STYLES[self.speakers.index(speaker) % len(SPEAKER_STYLES)]
        return Text(f"{speaker}: ", style=f"bold {style}")

    def _final_line(self, event: ev.Final) -> Text:
        line = self._label(event.speaker)
        if event.start is not None:
            line.append(f"[{_clock(event.start)}] ", style="dim")
        line.append(event.text)  # appended as plain text: never parsed as markup
        if event.unconfirmed:
            line.append("  (unconfirmed: the server never confirmed this tail)", style="italic dim")
        return line

    # ---- rendering ------------------------------------------------------------------------------
    def render(self) -> Group:
        rows: list[Any] = []
        for who in self.speakers:
            partial = self.partials.get(who)
            if partial:
                rows.append(self._label(who) + Text(partial, style="dim italic"))
            if who in self.emotions:
                rows.append(self._label(who) + _emotion_bars(self.emotions[who]))
            if who in self.progress:
                rows.append(self._label(who) + _progress_line(self.progress[who]))
        rows.append(self._status_bar())
        return Group(*rows)

    def _status_bar(self) -> Text:
        elapsed = self.clock() - self.started
        bar = Text()
        bar.append(f" {self.backend} ", style="reverse")
        bar.append(f" {self.state} ", style="bold")
        if self.host:
            bar.append(f"{self.host} ", style="dim")
        for key, value in self.ids.items():
            bar.append(f"{key}={value} ", style="dim")
        bar.append(f"⏱ {_clock(elapsed)}  audio {_clock(self.audio_seconds)}")
        if elapsed > 0.5 and self.audio_seconds > 0:
            bar.append(f"  ×{self.audio_seconds / elapsed:.1f}")
        if self.duration:
            frac = min(1.0, self.audio_seconds / self.duration)
            width = 20
            filled = int(frac * width)
            bar.append("  " + "█" * filled + "░" * (width - filled) + f" {frac:4.0%}")
            if 0 < frac < 1 and self.audio_seconds > 0:
                eta = (self.duration - self.audio_seconds) * elapsed / self.audio_seconds
                bar.append(f" ETA {_clock(eta)}")
        if self.level_db is not None:
            level = max(0.0, min(1.0, (self.level_db + 60) / 60))
            bar.append("  🎙 " + "▮" * int(level * 10) + "▯" * (10 - int(level * 10)))
        return bar


def _emotion_bars(scores: dict[str, float]) -> Text:
    text = Text()
    for name in EMOTIONS:
        value = max(0.0, min(1.0, float(scores.get(name, 0.0))))
        text.append(f"{name} ")
        text.append("█" * round(value * 8) + "·" * (8 - round(value * 8)), style="cyan")
        text.append(f" {value:.2f}  ")
    return text


def _progress_line(p: ev.Progress) -> Text:
    goal = p.goal or 0.0
    frac = min(
        1.0, (p.percent / 100.0) if p.percent is not None else (p.value / goal if goal else 0)
    )
    width = 24
    return Text(
        f"voice {p.value:.1f}/{goal:.1f} {p.unit} "
        + "█" * int(frac * width)
        + "░" * (width - int(frac * width))
        + f" {frac:4.0%}"
    )


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m:02d}:{s:04.1f}"
