"""The live view rendered to a fixed-width Rich console: exact snapshots of what a user sees."""

from __future__ import annotations

import io

from rich.console import Console
from rich.text import Text

from streamcli import events as ev
from streamcli.sinks.live import LiveView

PHEBI = "phebi"
MELVIN = "melvin"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recording_console(width: int = 60, terminal: bool = False) -> Console:
    return Console(
        file=io.StringIO(),
        width=width,
        force_terminal=terminal,
        color_system=None,
        record=True,
        highlight=False,
    )


def snapshot(console: Console, view: LiveView) -> str:
    """What was printed so far, then the live region as it would be drawn now."""
    console.print(view.render())
    return console.export_text()


def two_speakers(width: int = 60) -> tuple[Console, LiveView, FakeClock]:
    """A scripted Phebi run: alice streams and laughs, bob waits for a seat then streams."""
    clock = FakeClock()
    console = recording_console(width)
    view = LiveView(console, PHEBI, duration=20.0, clock=clock, auto_refresh=False)
    url = "wss://dev.phebi.ai/sockets/live/proj/sess/"
    view.handle(
        ev.SessionStarted(
            backend=PHEBI, speaker="alice", info={"url": url + "alice", "call_id": "c-1"}
        )
    )
    view.handle(ev.SessionStarted(backend=PHEBI, speaker="bob", info={"url": url + "bob"}))
    view.handle(ev.Status(backend=PHEBI, speaker="bob", state="waiting", message="no seat"))
    clock.now += 2.0
    view.add_audio(2.0)
    view.handle(
        ev.Final(backend=PHEBI, speaker="alice", text="[laughs] [bold]x[/bold]", start=0.4, end=1.9)
    )
    view.handle(ev.Partial(backend=PHEBI, speaker="alice", text="and then :smile: she said"))
    view.handle(
        ev.Emotion(
            backend=PHEBI,
            speaker="alice",
            scores={"strong": 0.75, "calm": 0.3, "anxious": 0.05, "happy": 0.6, "sad": 0.0},
        )
    )
    view.handle(ev.Progress(backend=PHEBI, speaker="bob", value=3.0, goal=10.0, unit="s"))
    clock.now += 3.0
    view.add_audio(3.0)
    return console, view, clock


def test_two_speakers_render_as_lanes_with_markup_like_text_printed_as_typed():
    console, view, _ = two_speakers()
    assert snapshot(console, view) == (
        "alice: [00:00.4] [laughs] [bold]x[/bold]\n"
        " phebi   wss://dev.phebi.ai  alice: call_id=c-1\n"
        "alice: and then :smile: she said\n"
        "alice: strong ██▎  calm ▉··  anxious ▏··  happy █▊·  sad ···\n"
        "bob:   waiting for a seat\n"
        "bob:   voice 3.0/10.0 s ███████░░░░░░░░░░░░░░░░░  30%\n"
        " waiting for a seat 00:05.0   elapsed 00:05.0  audio 00:05.0\n"
    )


def test_the_seat_ends_with_the_first_result_and_the_run_finishes_after_the_audio():
    console, view, clock = two_speakers()
    view.handle(ev.Partial(backend=PHEBI, speaker="bob", text="hello"))
    assert view.state == "streaming"
    view.audio_finished()
    assert view.state == "finishing"
    clock.now += 1.0
    assert snapshot(console, view) == (
        "alice: [00:00.4] [laughs] [bold]x[/bold]\n"
        " phebi   wss://dev.phebi.ai  alice: call_id=c-1\n"
        "alice: and then :smile: she said\n"
        "alice: strong ██▎  calm ▉··  anxious ▏··  happy █▊·  sad ···\n"
        "bob:   hello\n"
        "bob:   voice 3.0/10.0 s ███████░░░░░░░░░░░░░░░░░  30%\n"
        " finishing   elapsed 00:06.0  audio 00:05.0  ██████████ 100%\n"
    )


def test_a_partial_of_an_unnamed_stream_needs_no_label_and_the_least_useful_parts_give_way():
    clock = FakeClock()
    console = recording_console(72)
    view = LiveView(console, MELVIN, duration=10.0, clock=clock, auto_refresh=False)
    view.handle(ev.SessionStarted(backend=MELVIN, info={"url": "ws://asr.example.org:8394/"}))
    clock.now += 4.0
    view.add_audio(4.0)
    view.level_db = -30.0
    view.handle(ev.Partial(backend=MELVIN, text="the partial [is] rewritten"))
    assert snapshot(console, view) == (
        " melvin   ws://asr.example.org:8394\n"
        "the partial [is] rewritten\n"
        " streaming   elapsed 00:04.0  audio 00:04.0  ████░░░░░░  40% ETA 00:06.0\n"
    )


def test_a_single_unnamed_stream_has_no_labels_and_fits_a_wide_terminal():
    clock = FakeClock()
    console = recording_console(100)
    view = LiveView(console, MELVIN, duration=10.0, clock=clock, auto_refresh=False)
    view.handle(ev.SessionStarted(backend=MELVIN, info={"url": "ws://asr.example.org:8394"}))
    clock.now += 4.0
    view.add_audio(4.0)
    view.level_db = -30.0
    view.handle(ev.Final(backend=MELVIN, text="first sentence.", start=0.0, end=1.5))
    view.handle(ev.Partial(backend=MELVIN, text="the partial [is] rewritten"))
    view.handle(ev.End(backend=MELVIN, reason="eof", extra={"export_id": "a1b2c3"}))
    clock.now += 6.0  # the pace and the ETA are those of the sending, not of the wait after
    assert snapshot(console, view) == (
        "[00:00.0] first sentence.\n"
        "session ended (eof)  export_id=a1b2c3\n"
        " melvin   ws://asr.example.org:8394  export_id=a1b2c3\n"
        " done   elapsed 00:10.0  audio 00:04.0  ████░░░░░░  40% ETA 00:06.0  1.00× real time  mic "
        "▮▮▮▮▮▯▯▯▯▯\n"
    )


def test_a_narrow_terminal_cuts_every_line_instead_of_wrapping():
    console, view, _ = two_speakers(width=24)
    view.handle(ev.Partial(backend=PHEBI, speaker="bob", text="a partial far longer than 24 cells"))
    console.print(view.render())
    region = console.export_text().splitlines()[2:]  # after the final, which wraps
    assert region == [
        " phebi   wss://dev.pheb…",
        "alice: …:smile: she said",  # a partial keeps its end: the words that change
        "alice: strong ▊  calm ▎…",
        "bob:   …er than 24 cells",
        "bob:   voice 3.0/10.0 s…",
        " streaming ",
    ]


def test_transcript_text_is_never_markup_even_in_a_styled_console():
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system="truecolor")
    view = LiveView(console, MELVIN, clock=FakeClock(), auto_refresh=False)
    view.handle(ev.Final(backend=MELVIN, text="[red]not red[/red] [laughs]"))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[red]not red[/red] [laughs]" in out


def test_an_error_fails_every_lane_when_it_names_no_speaker():
    _, view, _ = two_speakers()
    view.handle(ev.Error(backend=PHEBI, message="boom", kind=ev.CONNECTION))
    assert view.state == "failed"
    assert {lane.state for lane in view.lanes.values()} == {"failed"}


def test_off_a_terminal_the_view_prints_plain_lines_instead_of_a_live_region():
    clock = FakeClock()
    console = recording_console(60)
    view = LiveView(console, MELVIN, duration=10.0, clock=clock)
    view.start()
    assert view.plain
    info = {"url": "ws://localhost:8394", "transaction_id": "t-9"}
    view.handle(ev.SessionStarted(backend=MELVIN, info=info))
    view.handle(ev.Status(backend=MELVIN, state="waiting", message="No transcription workers"))
    view.handle(ev.Status(backend=MELVIN, state="waiting", message="No transcription workers"))
    view.handle(ev.Final(backend=MELVIN, text="hello [world]"))
    view.handle(ev.Status(backend=MELVIN, state="consumer-ready", message="consumer ready"))
    view.handle(ev.Warning(backend=MELVIN, message="ignored a [frame]"))
    view.audio_finished()
    view.handle(ev.End(backend=MELVIN, reason="eof"))
    view.close()
    assert console.export_text() == (
        "connected to ws://localhost:8394  transaction_id=t-9\n"
        "waiting for a seat\n"
        "streaming\n"
        "hello [world]\n"
        "consumer ready\n"
        "warning: ignored a [frame]\n"
        "finishing\n"
        "session ended (eof)\n"
    )


def test_on_a_terminal_the_live_region_is_drawn_and_cleared_and_finals_stay():
    console = recording_console(60, terminal=True)
    view = LiveView(console, MELVIN, clock=FakeClock(), auto_refresh=False)
    view.start()
    assert not view.plain
    view.handle(ev.SessionStarted(backend=MELVIN, info={"url": "ws://localhost:8394"}))
    view.handle(ev.Partial(backend=MELVIN, text="partial words"))
    view.handle(ev.Final(backend=MELVIN, text="final [words]"))
    view.close()
    raw = console.file.getvalue()  # type: ignore[attr-defined]
    assert "partial words" in raw  # drawn in place while streaming
    assert "final [words]\n" in raw
    assert raw.endswith("\x1b[2K")  # the region is erased on close: only the final stays


def test_rendered_rows_are_text_objects_never_strings():
    _, view, _ = two_speakers()
    assert all(isinstance(row, Text) for row in view.render().renderables)
