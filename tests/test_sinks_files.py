"""Output files: text, JSON Lines, SRT and WebVTT, written and flushed as events arrive."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcli import events as ev
from streamcli.exit import ExitStatus, UsageError
from streamcli.sinks import files
from streamcli.sinks.files import (
    MAX_CUE_MS,
    MAX_LINE_CHARS,
    MAX_LINES,
    MIN_CUE_MS,
    CueBuilder,
    format_for,
    open_output,
)

SRT_BLOCK = re.compile(
    r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)\n((?:.+\n)+)\n"
)
VTT_BLOCK = re.compile(
    r"(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)\n((?:.+\n)+)\n"
)


def final(text: str, *, start=None, end=None, words=(), speaker=None, unconfirmed=None):
    return ev.Final(
        backend="melvin",
        text=text,
        start=start,
        end=end,
        words=tuple(words),
        speaker=speaker,
        unconfirmed=unconfirmed,
    )


def timed(text: str, start: float, step: float = 0.4, length: float = 0.3) -> ev.Final:
    """A final whose words are ``step`` seconds apart from ``start``."""
    words = [
        ev.Word(w, round(start + i * step, 3), round(start + i * step + length, 3))
        for i, w in enumerate(text.split())
    ]
    return final(text, start=words[0].start, end=words[-1].end, words=words)


def ms(h: str, m: str, s: str, milli: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(milli)


def parse_srt(text: str) -> list[tuple[int, int, int, list[str]]]:
    """(number, start ms, end ms, lines) per cue; the whole file must be made of cues."""
    blocks = list(SRT_BLOCK.finditer(text))
    assert "".join(b.group(0) for b in blocks) == text
    return [
        (int(b.group(1)), ms(*b.groups()[1:5]), ms(*b.groups()[5:9]), b.group(10).splitlines())
        for b in blocks
    ]


def parse_vtt(text: str) -> list[tuple[int, int, list[str]]]:
    assert text.startswith("WEBVTT\n\n")
    body = text[len("WEBVTT\n\n") :]
    blocks = list(VTT_BLOCK.finditer(body))
    assert "".join(b.group(0) for b in blocks) == body
    return [(ms(*b.groups()[0:4]), ms(*b.groups()[4:8]), b.group(9).splitlines()) for b in blocks]


def write(path: Path, events: list[ev.Event], fmt: str | None = None) -> str:
    out = open_output(str(path), fmt)
    for event in events:
        out.handle(event)
    out.close()
    return path.read_text(encoding="utf-8")


# -- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt", "expected"),
    [
        ("out.txt", None, "txt"),
        ("out.jsonl", None, "jsonl"),
        ("out.ndjson", None, "jsonl"),
        ("dir/OUT.SRT", None, "srt"),
        ("out.vtt", None, "vtt"),
        ("out.xyz", "srt", "srt"),
        ("out.txt", "VTT", "vtt"),
    ],
)
def test_format_comes_from_the_explicit_format_or_the_extension(path, fmt, expected):
    assert format_for(path, fmt) == expected


def test_unknown_extension_asks_for_a_format(tmp_path):
    with pytest.raises(UsageError) as caught:
        open_output(str(tmp_path / "out.xyz"))
    expected = "cannot tell the format of out.xyz: use --format txt|jsonl|srt|vtt"
    assert caught.value.message == expected
    assert caught.value.status == ExitStatus.USAGE
    assert not (tmp_path / "out.xyz").exists()


def test_unknown_explicit_format_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown output format 'doc'"):
        format_for("out.txt", "doc")


def test_missing_directory_is_a_one_line_usage_error(tmp_path):
    path = tmp_path / "nope" / "out.srt"
    with pytest.raises(UsageError) as caught:
        open_output(str(path))
    assert caught.value.message == f"cannot write {path}: directory {path.parent} does not exist"


def test_a_directory_as_output_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="it is a directory"):
        open_output(str(tmp_path), "txt")


def test_unwritable_directory_is_a_usage_error(tmp_path, monkeypatch):
    # Simulated: the tests may run as root, for whom chmod does not forbid anything.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files, "open", refuse, raising=False)
    with pytest.raises(UsageError) as caught:
        open_output(str(tmp_path / "out.txt"))
    assert caught.value.message == f"cannot write {tmp_path / 'out.txt'}: permission denied"


# -- text and JSON Lines ---------------------------------------------------------------------


def test_text_has_one_final_per_line_with_speaker_and_unconfirmed_marks(tmp_path):
    events = [
        ev.Partial(backend="melvin", text="hel"),
        final("hello there"),
        final("line\nbreak  inside", speaker="bob"),
        final("   "),
        final("[laughs] <b> & co"),
        final("a tail", unconfirmed=True, speaker="alice"),
        ev.End(backend="melvin", reason="eof"),
    ]
    assert write(tmp_path / "out.txt", events) == (
        "hello there\nbob: line break inside\n[laughs] <b> & co\nalice: [unconfirmed] a tail\n"
    )


def test_jsonl_writes_every_event_as_its_json_line(tmp_path):
    events = [
        ev.Status(backend="melvin", state="connected"),
        ev.Partial(backend="melvin", text="hel"),
        timed("hello there", 0.5),
        ev.Error(backend="melvin", message="boom"),
        ev.End(backend="melvin", reason="eof", extra={"export_id": "x1"}),
    ]
    text = write(tmp_path / "out.jsonl", events)
    assert text == "".join(e.to_json() + "\n" for e in events)


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "srt", "vtt"])
def test_each_final_is_on_disk_before_close(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    out = open_output(str(path))
    out.handle(timed("first words", 1.0))
    assert "first words" in path.read_text(encoding="utf-8")
    out.handle(timed("second words", 3.0))
    assert "second words" in path.read_text(encoding="utf-8")
    out.close()
    out.close()  # closing twice is harmless


def test_vtt_header_is_on_disk_before_any_cue(tmp_path):
    path = tmp_path / "out.vtt"
    out = open_output(str(path))
    assert path.read_text(encoding="utf-8") == "WEBVTT\n\n"
    out.close()


# -- captions: exact snapshots ---------------------------------------------------------------


def snapshot_events() -> list[ev.Event]:
    return [
        ev.Partial(backend="melvin", text="hello"),
        timed("Hello world.", 0.5),
        final("[laughs] <b> & more", start=2.0, end=3.25, speaker="Ann"),
        final("and a tail", unconfirmed=True),
    ]


def test_srt_snapshot(tmp_path):
    assert write(tmp_path / "out.srt", snapshot_events()) == (
        "1\n"
        "00:00:00,500 --> 00:00:01,200\n"
        "Hello world.\n"
        "\n"
        "2\n"
        "00:00:02,000 --> 00:00:03,250\n"
        "Ann: [laughs] <b> & more\n"
        "\n"
        "3\n"
        "00:00:03,250 --> 00:00:04,250\n"
        "[unconfirmed] and a tail\n"
        "\n"
    )


def test_vtt_snapshot(tmp_path):
    assert write(tmp_path / "out.vtt", snapshot_events()) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.500 --> 00:00:01.200\n"
        "Hello world.\n"
        "\n"
        "00:00:02.000 --> 00:00:03.250\n"
        "<v Ann>[laughs] &lt;b&gt; &amp; more\n"
        "\n"
        "00:00:03.250 --> 00:00:04.250\n"
        "[unconfirmed] and a tail\n"
        "\n"
    )


def test_timestamps_past_an_hour_keep_their_format(tmp_path):
    text = write(tmp_path / "out.srt", [final("late", start=3725.5, end=3726.004)])
    assert "01:02:05,500 --> 01:02:06,004\n" in text


# -- captions: splitting and timing ----------------------------------------------------------

LONG = (
    "the quick brown fox jumps over the lazy dog and then keeps running far away "
    "into the dark forest until the night ends and the morning comes back again"
)


def test_a_long_final_is_split_into_readable_numbered_cues(tmp_path):
    cues = parse_srt(write(tmp_path / "out.srt", [timed(LONG, 10.0)]))
    assert len(cues) > 1
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    for _, start, end, lines in cues:
        assert end > start
        assert end - start <= MAX_CUE_MS
        assert 1 <= len(lines) <= MAX_LINES
        assert all(len(line) <= MAX_LINE_CHARS for line in lines)
    assert " ".join(" ".join(c[3]) for c in cues) == LONG  # every word, in order, once
    starts = [c[1] for c in cues]
    assert starts == sorted(starts)
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(cues))
    assert cues[0][1] == 10_000


def test_cue_times_follow_the_word_times(tmp_path):
    words = [ev.Word("one", 1.0, 1.5), ev.Word("two", 1.6, 2.0), ev.Word("three", 9.0, 9.5)]
    text = write(tmp_path / "out.srt", [final("one two three", start=1.0, end=9.5, words=words)])
    # A pause longer than MAX_PAUSE_MS between words starts a new cue.
    assert parse_srt(text) == [
        (1, 1000, 2000, ["one two"]),
        (2, 9000, 9500, ["three"]),
    ]


def test_cue_text_keeps_the_finals_punctuation_when_it_lines_up_with_the_words(tmp_path):
    words = [ev.Word("hello", 0.0, 0.4), ev.Word("world", 0.5, 0.9)]
    lined_up = final("Hello, world!", start=0.0, end=0.9, words=words)
    not_lined_up = final("Hello world, yes!", start=1.0, end=1.9, words=words)
    cues = parse_srt(write(tmp_path / "out.srt", [lined_up, not_lined_up]))
    assert [c[3] for c in cues] == [["Hello, world!"], ["hello world"]]


def test_a_final_without_word_times_spreads_its_text_over_its_span(tmp_path):
    cues = parse_srt(write(tmp_path / "out.srt", [final(LONG, start=5.0, end=20.0)]))
    assert len(cues) >= 3
    assert cues[0][1] == 5000
    assert cues[-1][2] == 20000
    assert all(end - start <= MAX_CUE_MS for _, start, end, _ in cues)
    assert " ".join(" ".join(c[3]) for c in cues) == LONG


def test_a_short_final_without_word_times_is_one_cue(tmp_path):
    cues = parse_srt(write(tmp_path / "out.srt", [final("just this", start=5.0, end=6.0)]))
    assert cues == [(1, 5000, 6000, ["just this"])]


def test_an_untimed_final_follows_the_previous_cue_and_is_marked(tmp_path):
    text = write(tmp_path / "out.vtt", [timed("some words", 4.0), final("tail", unconfirmed=True)])
    cues = parse_vtt(text)
    assert cues[1][0] == cues[0][1]
    assert cues[1][1] > cues[1][0]
    assert cues[1][2] == ["[unconfirmed] tail"]


def test_an_untimed_final_at_the_start_begins_at_zero(tmp_path):
    cues = parse_srt(write(tmp_path / "out.srt", [final("no time at all")]))
    assert cues[0][1] == 0 and cues[0][2] >= 1000


def test_zero_length_times_get_a_minimum_duration(tmp_path):
    words = [ev.Word("blip", 2.0, 2.0)]
    cues = parse_srt(write(tmp_path / "out.srt", [final("blip", start=2.0, end=2.0, words=words)]))
    assert cues == [(1, 2000, 2000 + MIN_CUE_MS, ["blip"])]


def test_cues_of_one_speaker_never_overlap(tmp_path):
    first = final("first", start=1.0, end=3.0)
    overlapping = final("second", start=2.0, end=4.0)
    assert parse_srt(write(tmp_path / "out.srt", [first, overlapping])) == [
        (1, 1000, 3000, ["first"]),
        (2, 3000, 4000, ["second"]),
    ]


def test_cues_of_different_speakers_may_overlap(tmp_path):
    events = [
        final("from alice", start=1.0, end=3.0, speaker="alice"),
        final("from bob", start=2.0, end=4.0, speaker="bob"),
    ]
    assert parse_vtt(write(tmp_path / "out.vtt", events)) == [
        (1000, 3000, ["<v alice>from alice"]),
        (2000, 4000, ["<v bob>from bob"]),
    ]


def test_speaker_labels_go_on_every_cue(tmp_path):
    long = timed(LONG, 0.0)
    long = ev.Final(backend="melvin", text=long.text, words=long.words, speaker="Dr & Co")
    srt = parse_srt(write(tmp_path / "out.srt", [long]))
    vtt = parse_vtt(write(tmp_path / "out.vtt", [long]))
    assert len(srt) > 1 and len(vtt) > 1
    assert all(c[3][0].startswith("Dr & Co: ") for c in srt)
    assert all(len(line) <= MAX_LINE_CHARS for c in srt for line in c[3])
    assert all(c[2][0].startswith("<v Dr &amp; Co>") for c in vtt)


def test_line_breaks_in_the_text_cannot_end_a_cue_early(tmp_path):
    text = write(tmp_path / "out.srt", [final("one\n\ntwo", start=0.0, end=1.0)])
    assert parse_srt(text) == [(1, 0, 1000, ["one two"])]


def test_vtt_text_cannot_contain_an_arrow(tmp_path):
    text = write(tmp_path / "out.vtt", [final("a --> b", start=0.0, end=1.0)])
    assert "a --&gt; b" in text
    assert text.count("-->") == 1


def test_finals_without_text_make_no_cue(tmp_path):
    text = write(tmp_path / "out.srt", [final("  ", start=0.0, end=1.0), timed("real", 1.0)])
    assert parse_srt(text) == [(1, 1000, 1500, ["real"])]


def test_numbering_continues_across_finals(tmp_path):
    events = [timed(LONG, 0.0), timed("after that", 40.0), timed("and more", 50.0)]
    numbers = [c[0] for c in parse_srt(write(tmp_path / "out.srt", events))]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 4


# -- captions: properties --------------------------------------------------------------------

word_text = st.text(alphabet="abcdefghij<&>[]", min_size=1, max_size=12)
timed_word = st.tuples(word_text, st.floats(0, 30), st.floats(0, 3))
a_final = st.one_of(
    st.lists(timed_word, min_size=1, max_size=40).map(
        lambda ws: final(
            " ".join(w for w, _, _ in ws), words=[ev.Word(w, s, s + d) for w, s, d in ws]
        )
    ),
    st.tuples(st.lists(word_text, min_size=1, max_size=30), st.floats(0, 60), st.floats(0, 20)).map(
        lambda t: final(" ".join(t[0]), start=t[1], end=t[1] + t[2])
    ),
    st.lists(word_text, min_size=1, max_size=10).map(
        lambda ws: final(" ".join(ws), unconfirmed=True)
    ),
)


@given(st.lists(st.tuples(a_final, st.sampled_from([None, "a", "b"])), max_size=6))
def test_cues_are_always_valid(finals):
    builder = CueBuilder(speaker_in_text=True)
    last_end: dict[str | None, int] = {}
    for f, speaker in finals:
        f = ev.Final(
            backend="x",
            text=f.text,
            start=f.start,
            end=f.end,
            words=f.words,
            unconfirmed=f.unconfirmed,
            speaker=speaker,
        )
        for cue in builder.cues(f):
            assert cue.end > cue.start >= last_end.get(speaker, 0)
            assert cue.end - cue.start >= MIN_CUE_MS
            assert 1 <= len(cue.lines) <= MAX_LINES
            last_end[speaker] = cue.end
