"""The Melvin-ASR state machine, byte for byte against shared/protocols/melvin.md."""

from __future__ import annotations

import json

from streamcli import events as ev
from streamcli.backends.melvin import MelvinBackend

KEY = "secret-key-123456"
FINAL = {
    "result": [
        {"conf": 0.93, "start": 6.79, "end": 7.45, "word": "Das"},
        {"conf": 0.99, "start": 7.45, "end": 24.496937000000003, "word": "ist"},
    ],
    "text": "Das ist",
}


def started(key: str | None = KEY) -> MelvinBackend:
    b = MelvinBackend("ws://h:8394", key)
    b.start(0.0)
    return b


def test_melvin_sends_the_auth_frame_first_as_compact_text():
    b = started()
    assert b.frames_to_send() == ['{"Authorization":"secret-key-123456"}']


def test_melvin_without_auth_sends_nothing_first():
    b = started(None)
    assert b.frames_to_send() == []


def test_melvin_url_gets_the_root_path_and_the_key_is_a_secret():
    req = MelvinBackend("ws://h:8394", KEY).connect_request()
    assert req.url == "ws://h:8394/"
    assert req.headers == {}
    assert req.secrets == (KEY,)


def test_melvin_sends_audio_as_binary_frames_unchanged_one_frame_behind():
    # The latest frame is held back for the end of the stream (see the eof tests).
    b = started()
    b.frames_to_send()
    b.send_audio(b"\x01\x02" * 1600, 0.0)
    assert b.frames_to_send() == []
    assert b.audio_seconds_sent == 0.1
    b.send_audio(b"\x03\x04" * 1600, 0.1)
    assert b.frames_to_send() == [b"\x01\x02" * 1600]


def test_melvin_refuses_odd_length_frames():
    b = started()
    try:
        b.send_audio(b"\x00\x01\x02", 0.0)
    except ValueError:
        pass
    else:
        raise AssertionError("an odd frame must never reach the wire")


LAST = b"\x07\x00" * 1600


def real_time_stream(b: MelvinBackend) -> None:
    b.frames_to_send()
    for i in range(9):
        b.send_audio(b"\0\0" * 1600, i * 0.1)
    b.send_audio(LAST, 0.9)
    assert LAST not in b.frames_to_send()


def test_melvin_after_the_audio_sends_a_sync_probe_not_eof():
    # Real server, src/websocket/stream.py echo(): eof while a transcription task is in flight
    # crashes the handler and loses the export id. echo() answers any other text with
    # "control message unknown" once it has read the audio before it.
    b = started()
    real_time_stream(b)
    b.end_audio(1.0)
    assert b.frames_to_send() == ["sync"]
    assert b.next_deadline() == 11.0
    b.send_audio(b"\0\0" * 1600, 1.1)  # nothing more may start a transcription
    assert b.frames_to_send() == []


def test_melvin_the_end_of_a_stream_step_by_step():
    b = started()
    real_time_stream(b)
    b.end_audio(1.0)
    assert b.frames_to_send() == ["sync"]
    b.receive_text(json.dumps({"partial": " a"}, indent=2), 1.05)  # sent before the answer
    b.receive_text("control message unknown", 1.1)  # the server has read all the audio
    assert b.events_received() == [ev.Partial(backend="melvin", text="a")]  # no warning
    assert b.frames_to_send() == [] and b.next_deadline() == 3.1
    b.receive_text(json.dumps({"partial": " a b"}, indent=2), 1.3)  # the last task is done
    assert b.frames_to_send() == [] and b.next_deadline() == 2.3
    b.tick(2.3)  # the server's time trigger will fire for the held frame
    assert b.frames_to_send() == [LAST, "sync"]
    b.receive_text("control message unknown", 2.35)
    b.receive_text(json.dumps({"partial": " a b c"}, indent=2), 2.5)  # it transcribed the end
    assert b.frames_to_send() == ["eof"]
    assert b.next_deadline() is None


def test_melvin_without_a_partial_the_grace_ends_each_wait():
    b = started()
    real_time_stream(b)
    b.end_audio(1.0)
    b.frames_to_send()
    b.receive_text("control message unknown", 1.1)
    b.tick(3.0)
    assert b.frames_to_send() == []
    b.tick(3.1)
    assert b.frames_to_send() == [LAST, "sync"]
    b.receive_text("control message unknown", 3.2)
    b.tick(5.2)
    assert b.frames_to_send() == ["eof"]


def test_melvin_a_final_or_a_seat_reminder_does_not_end_a_wait():
    # Finals come from the receive loop, not from a transcription task: they prove nothing.
    b = started()
    real_time_stream(b)
    b.end_audio(1.0)
    b.frames_to_send()
    b.receive_text("control message unknown", 1.1)
    b.receive_text(json.dumps(FINAL, indent=2), 1.2)
    b.receive_text("No transcription workers available. Retrying in 10 seconds", 1.3)
    assert b.frames_to_send() == [] and b.next_deadline() == 3.1


def test_melvin_a_server_that_never_answers_the_probe_gets_the_rest_after_the_timeout():
    b = started()
    b.frames_to_send()
    for _ in range(50):  # 5 s of audio in no time
        b.send_audio(b"\0\0" * 1600, 0.0)
    b.send_audio(LAST, 0.0)
    b.frames_to_send()
    b.end_audio(0.01)
    assert b.frames_to_send() == ["sync"]
    b.receive_text(json.dumps({"partial": " a"}, indent=2), 0.5)  # still reading the backlog
    b.tick(5.0)
    assert b.frames_to_send() == []
    b.tick(10.01)
    assert b.frames_to_send() == []  # the timeout counts from the last result
    b.tick(10.5)
    assert b.frames_to_send() == [LAST, "eof"]


def test_melvin_a_server_working_through_a_backlog_is_not_cut_short():
    # A slow model: results keep coming for longer than the probe's timeout before the probe
    # is answered. eof then would meet a running transcription and lose the export.
    b = started()
    b.frames_to_send()
    b.send_audio(LAST, 0.0)
    b.end_audio(0.01)
    assert b.frames_to_send() == ["sync"]
    for t in range(1, 30):
        b.receive_text(json.dumps({"partial": f" a{t}"}, indent=2), float(t))
        b.tick(float(t))
        assert b.frames_to_send() == []
    b.receive_text("control message unknown", 30.0)
    b.tick(32.0)  # idle: the grace, then the held frame and the probe again
    assert b.frames_to_send() == [LAST, "sync"]


def test_melvin_without_audio_sends_eof_at_once():
    b = started()
    b.frames_to_send()
    b.end_audio(0.5)
    assert b.frames_to_send() == ["eof"]


def test_melvin_parses_multiline_partials_and_normalizes_spaces():
    b = started()
    b.receive_text('{\n  "partial": " Das  ist  ein..."\n}', 1.0)
    assert b.events_received() == [ev.Partial(backend="melvin", text="Das ist ein...")]


def test_melvin_empty_partial_is_not_a_clear():
    b = started()
    b.receive_text('{"partial": " Das"}', 1.0)
    b.receive_text('{\n  "partial": ""\n}', 2.0)
    assert [e.text for e in b.events_received()] == ["Das"]
    b.receive_text("5180f28a539642448fb56e9db7d8eaa3", 3.0)
    tail = b.events_received()[0]
    assert tail == ev.Final(backend="melvin", text="Das", unconfirmed=True)


def test_melvin_final_becomes_words_with_times():
    b = started()
    b.receive_text(json.dumps(FINAL, indent=2), 1.0)
    (final,) = b.events_received()
    assert final == ev.Final(
        backend="melvin",
        text="Das ist",
        start=6.79,
        end=24.496937,
        words=(ev.Word("Das", 6.79, 7.45, 0.93), ev.Word("ist", 7.45, 24.496937, 0.99)),
    )


def test_melvin_export_id_ends_the_session_with_the_unconfirmed_tail():
    b = started()
    b.receive_text(json.dumps(FINAL), 1.0)
    b.receive_text('{"partial": " und  noch"}', 2.0)
    b.events_received()
    b.receive_text("5180f28a539642448fb56e9db7d8eaa3", 3.0)
    assert b.events_received() == [
        ev.Final(backend="melvin", text="und noch", unconfirmed=True),
        ev.End(
            backend="melvin", reason="eof", extra={"export_id": "5180f28a539642448fb56e9db7d8eaa3"}
        ),
    ]
    assert b.finished


def test_melvin_final_clears_the_tail():
    b = started()
    b.receive_text('{"partial": " Das ist"}', 1.0)
    b.receive_text(json.dumps(FINAL), 2.0)
    b.events_received()
    b.receive_text("5180f28a539642448fb56e9db7d8eaa3", 3.0)
    assert [type(e) for e in b.events_received()] == [ev.End]


def test_melvin_each_rejection_string_is_an_auth_error():
    for text in (
        "Initial message was not text and therefore did not match the expected auth format",
        "Initial websocket message contained invalid json",
        "Provided api key is invalid",
    ):
        b = started()
        b.receive_text(text, 0.1)
        (error,) = b.events_received()
        assert error.kind == ev.AUTH and text in error.message
        assert b.finished


WAITING = "No transcription workers available. Retrying in 10 seconds"


def test_melvin_waiting_reminder_is_a_status_event():
    b = started()
    b.receive_text(WAITING, 0.1)
    assert b.events_received() == [
        ev.Status(backend="melvin", state="waiting", message=WAITING, seconds=0.0)
    ]


def test_melvin_told_to_wait_holds_its_audio_and_probes_for_the_seat():
    # melvin.md, "No free worker seat": nothing is read while the client waits; only a
    # seated handler answers a text that is not eof, after the frames sent before it.
    b = started()
    b.frames_to_send()
    b.send_audio(b"\x01\x02" * 1600, 0.0)
    b.send_audio(b"\x03\x04" * 1600, 0.1)
    assert b.frames_to_send() == [b"\x01\x02" * 1600]
    b.receive_text(WAITING, 0.15)
    assert b.holding
    assert b.frames_to_send() == ["seat"]
    assert b.next_deadline() == 0.15 + 300.0  # the seat timeout
    b.receive_text(WAITING, 10.15)  # the reminder: the wait so far
    (first, second) = b.events_received()
    assert (first.seconds, second.seconds) == (0.0, 10.0)
    assert b.frames_to_send() == []  # one probe only
    b.receive_text("control message unknown", 20.2)
    assert not b.holding
    assert b.events_received() == [
        ev.Status(
            backend="melvin",
            state="seated",
            message="a worker seat is free after 20.1 s of waiting",
            seconds=20.05,
        )
    ]
    assert b.next_deadline() is None
    b.send_audio(b"\x05\x06" * 1600, 20.2)  # the held frame goes first, as always
    assert b.frames_to_send() == [b"\x03\x04" * 1600]


def test_melvin_an_end_while_waiting_waits_for_the_seat():
    b = started()
    b.frames_to_send()
    b.send_audio(LAST, 0.0)
    b.receive_text(WAITING, 0.1)
    b.end_audio(0.2)
    assert b.frames_to_send() == ["seat"]
    b.tick(15.0)
    assert b.frames_to_send() == []  # no sync timeout, no eof while waiting
    b.receive_text("control message unknown", 20.0)
    b.events_received()
    assert b.frames_to_send() == ["sync"]
    assert b.next_deadline() == 30.0
    b.receive_text("control message unknown", 20.1)
    assert b.next_deadline() == 22.1  # idle: the grace, as for any session
    b.tick(22.1)
    assert b.frames_to_send() == [LAST, "sync"]


def test_melvin_a_probe_sent_before_the_waiting_notice_is_answered_in_order():
    # A short input: the end phase's sync left before the notice came. Both are answered once
    # seated, sync first; the first answer is the seat.
    b = started()
    b.frames_to_send()
    b.send_audio(LAST, 0.0)
    b.end_audio(0.05)
    assert b.frames_to_send() == ["sync"]
    b.receive_text(WAITING, 0.1)
    assert b.frames_to_send() == ["seat"]
    b.receive_text("control message unknown", 10.1)
    assert not b.holding
    assert [e.state for e in b.events_received()] == ["waiting", "seated"]
    assert b.next_deadline() == 12.1  # the sync answer: idle, the grace
    b.receive_text("control message unknown", 10.2)  # the seat probe's: nothing more
    assert b.events_received() == [] and b.next_deadline() == 12.1


def test_melvin_no_seat_within_the_seat_timeout_is_a_timeout():
    b = MelvinBackend("ws://h:8394", KEY, seat_timeout=30.0)
    b.start(0.0)
    b.receive_text(WAITING, 1.0)
    b.events_received()
    b.tick(30.9)
    assert not b.finished
    b.tick(31.0)
    (error,) = b.events_received()
    assert error.kind == ev.TIMEOUT and b.finished
    assert error.message.startswith("no worker seat within 30 s: the server is busy")
    assert "--seat-timeout" in error.message


def test_melvin_a_waiting_notice_after_results_holds_nothing():
    b = started()
    b.receive_text(json.dumps({"partial": " a"}, indent=2), 0.5)
    b.receive_text(WAITING, 0.6)
    assert not b.holding and "seat" not in b.frames_to_send()


def test_melvin_close_without_id_after_eof_is_an_explained_server_error():
    b = started()
    b.end_audio(0.0)
    b.receive_text('{"partial": " last words"}', 0.5)
    b.events_received()
    b.receive_close(1000, "", 1.0)
    tail, error = b.events_received()
    assert tail == ev.Final(backend="melvin", text="last words", unconfirmed=True)
    assert error.kind == ev.SERVER and "without an export id" in error.message


def test_melvin_close_before_eof_is_a_lost_connection():
    b = started()
    b.receive_close(1011, "", 1.0)
    (error,) = b.events_received()
    assert error.kind == ev.CONNECTION


def test_melvin_never_raises_on_garbage():
    garbage = [
        "",
        "{",
        "[1,2]",
        "null",
        '{"partial": 5}',
        '{"result": "x"}',
        '{"result": [1, {"word": 2}]}',
        '{"text": null}',
        "\x00\xff",
        '{"other": 1}',
        "control message unknown",
    ]
    b = started()
    for g in garbage:
        b.receive_text(g, 0.0)
    b.receive_binary(b"\x00\x01", 0.0)
    events = b.events_received()
    assert all(isinstance(e, ev.Warning | ev.Error) for e in events)


def test_an_unchanged_partial_is_reported_once():
    b = started()
    for _ in range(3):
        b.receive_text('{"partial": " Das ist"}', 1.0)
    b.receive_text(json.dumps(FINAL), 2.0)
    b.receive_text('{"partial": " Das ist"}', 3.0)
    assert [type(e).__name__ for e in b.events_received()] == ["Partial", "Final", "Partial"]


def finals_at_eof(b: MelvinBackend, now: float) -> list[tuple[str, bool | None]]:
    """The server's export id (the end of the session): every final, the tail's included."""
    b.receive_text("0123456789abcdef0123456789abcdef", now)
    return [(e.text, e.unconfirmed) for e in b.events_received() if isinstance(e, ev.Final)]


def final_of(*words: tuple[str, float, float]) -> str:
    result = [{"conf": 0.9, "start": s, "end": e, "word": w} for w, s, e in words]
    return json.dumps({"result": result, "text": " ".join(w for w, _, _ in words)}, indent=2)


def finals(b: MelvinBackend) -> list[tuple[str, list[tuple[str, float, float]]]]:
    return [
        (e.text, [(w.word, w.start, w.end) for w in e.words])
        for e in b.events_received()
        if isinstance(e, ev.Final)
    ]


def test_melvin_drops_a_word_that_the_next_final_re_sends_with_the_same_start():
    # Real server: a word cut at the window edge is confirmed twice (12.0-12.3, then 12.0-12.4).
    b = started()
    b.receive_text(final_of(("w", 11.5, 11.9), ("cut", 12.0, 12.3)), 1.0)
    b.receive_text(final_of(("cut", 12.0, 12.4), ("next", 12.5, 12.8)), 2.0)
    assert finals(b) == [
        ("w cut", [("w", 11.5, 11.9), ("cut", 12.0, 12.3)]),
        ("next", [("next", 12.5, 12.8)]),
    ]


def test_melvin_drops_a_run_a_window_cut_made_the_server_confirm_again():
    # Real server: the window is cut while a transcription runs; that pass's word times are
    # shifted by the cut, the cutoff misses, and confirmed words come again, later in time.
    b = started()
    b.receive_text(final_of(("a", 1.0, 1.2), ("b", 1.3, 1.5), ("c", 1.6, 1.8)), 1.0)
    b.receive_text(final_of(("b", 4.3, 4.5), ("c", 4.6, 4.8), ("d", 4.9, 5.1)), 2.0)
    b.receive_text(final_of(("c", 7.6, 7.8), ("d", 7.9, 8.1)), 3.0)
    assert finals(b) == [
        ("a b c", [("a", 1.0, 1.2), ("b", 1.3, 1.5), ("c", 1.6, 1.8)]),
        ("d", [("d", 4.9, 5.1)]),
    ]


def test_melvin_a_final_that_only_repeats_the_cut_word_is_not_reported():
    b = started()
    b.receive_text(final_of(("cut", 12.0, 12.3)), 1.0)
    b.receive_text(final_of(("cut", 12.0, 12.4)), 2.0)
    assert [text for text, _ in finals(b)] == ["cut"]


def test_melvin_keeps_a_real_repetition_with_another_start():
    b = started()
    b.receive_text(final_of(("no", 1.0, 1.2)), 1.0)
    b.receive_text(final_of(("no", 1.3, 1.5)), 2.0)
    assert [text for text, _ in finals(b)] == ["no", "no"]


def test_melvin_tail_keeps_the_words_of_the_last_partial_that_no_final_confirmed():
    # The last partial lists every word after the previous final; a final that confirms its
    # first words leaves the others unconfirmed, and they must still reach the transcript.
    b = started()
    b.receive_text(json.dumps({"partial": " a b c d"}, indent=2), 1.0)
    b.receive_text(final_of(("a", 0.1, 0.2), ("b", 0.3, 0.4)), 1.1)
    assert finals_at_eof(b, 1.2) == [("a b", None), ("c d", True)]


def test_melvin_tail_drops_the_cut_word_the_partials_repeat():
    b = started()
    b.receive_text(final_of(("a", 0.1, 0.2), ("cut", 0.3, 0.4)), 1.0)
    b.receive_text(json.dumps({"partial": " cut next"}, indent=2), 1.1)
    assert finals_at_eof(b, 1.2) == [("a cut", None), ("next", True)]


def test_melvin_pre_auth_server_answer_to_the_auth_frame_hints_no_auth():
    b = started()
    b.receive_text("control message unknown", 0.1)
    (warning,) = b.events_received()
    assert isinstance(warning, ev.Warning)
    assert "--no-auth" in warning.message and "v1.1.0-dev.2" in warning.message
    assert b.pre_auth_hint_given


def test_melvin_tail_drops_a_run_of_words_the_finals_already_hold():
    # Real server, unpaced: a window cut during a transcription shifts its word times, and the
    # next partial lists words that are already final.
    b = started()
    b.receive_text(final_of(("a", 0.1, 0.2), ("b", 0.3, 0.4), ("c", 0.5, 0.6)), 1.0)
    b.receive_text(json.dumps({"partial": " b  c  d  e"}, indent=2), 1.1)
    assert finals_at_eof(b, 1.2) == [("a b c", None), ("d e", True)]


def test_melvin_tail_keeps_words_a_later_partial_dropped():
    # Real server, unpaced: after a window cut during a transcription its cutoff moves too far
    # and the next partial starts later, without words that no final holds.
    b = started()
    b.receive_text(json.dumps({"partial": " a b c d e f"}, indent=2), 1.0)
    b.receive_text(json.dumps({"partial": " d e f g h"}, indent=2), 1.1)
    assert finals_at_eof(b, 1.2) == [("a b c d e f g h", True)]


def test_melvin_tail_follows_a_final_found_inside_the_partial():
    b = started()
    b.receive_text(json.dumps({"partial": " x y a b c d"}, indent=2), 1.0)
    b.receive_text(final_of(("a", 0.1, 0.2), ("b", 0.3, 0.4)), 1.1)
    assert finals_at_eof(b, 1.2) == [("a b", None), ("c d", True)]


def test_melvin_a_revised_partial_replaces_the_tail():
    b = started()
    b.receive_text(json.dumps({"partial": " a b see"}, indent=2), 1.0)
    b.receive_text(json.dumps({"partial": " a b c d"}, indent=2), 1.1)
    b.receive_text("0123456789abcdef0123456789abcdef", 1.2)
    out = [e for e in b.events_received() if isinstance(e, ev.Final)]
    assert [e.text for e in out] == ["a b c d"]


def test_melvin_tail_drops_the_held_words_even_when_a_final_left_one_out():
    # Real server, unpaced (CI, 2026-11-29): a final lacked "y" that the partial still had, so
    # no exact run ended the finals; the tail repeated eleven final words.
    b = started()
    b.receive_text(final_of(("p", 0.1, 0.2), ("q", 0.3, 0.4)), 1.0)
    b.receive_text(final_of(("r", 0.5, 0.6), ("s", 0.7, 0.8), ("z", 0.9, 1.0)), 1.1)
    b.receive_text(json.dumps({"partial": " q r s y z t u"}), 1.2)
    assert finals_at_eof(b, 1.3) == [("p q", None), ("r s z", None), ("t u", True)]


def test_melvin_tail_keeps_new_words_that_only_resemble_the_finals():
    b = started()
    b.receive_text(final_of(("a", 0.1, 0.2), ("b", 0.3, 0.4)), 1.0)
    b.receive_text(json.dumps({"partial": " x y w b v"}), 1.1)  # "b" again, but new words before
    assert finals_at_eof(b, 1.2) == [("a b", None), ("x y w b v", True)]


def test_melvin_tail_keeps_a_short_head_that_ends_with_the_last_final_word():
    b = started()
    b.receive_text(final_of(("a", 0.1, 0.2), ("b", 0.3, 0.4)), 1.0)
    b.receive_text(json.dumps({"partial": " x b t"}), 1.1)  # said "x b" again: new words
    assert finals_at_eof(b, 1.2) == [("a b", None), ("x b t", True)]


def test_melvin_garbage_while_the_probe_waits_does_not_re_arm_its_timeout():
    b = started()
    b.frames_to_send()
    b.send_audio(LAST, 0.0)
    b.end_audio(0.01)
    b.frames_to_send()
    b.receive_text("<html>502</html>", 9.0)  # not a result: proves nothing
    b.tick(10.01)
    assert b.frames_to_send() == [LAST, "eof"]
