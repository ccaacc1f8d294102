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


def test_melvin_sends_audio_as_binary_frames_unchanged():
    b = started()
    b.frames_to_send()
    b.send_audio(b"\x01\x02" * 1600, 0.0)
    assert b.frames_to_send() == [b"\x01\x02" * 1600]
    assert b.audio_seconds_sent == 0.1


def test_melvin_refuses_odd_length_frames():
    b = started()
    try:
        b.send_audio(b"\x00\x01\x02", 0.0)
    except ValueError:
        pass
    else:
        raise AssertionError("an odd frame must never reach the wire")


def test_melvin_sends_eof_at_once_when_paced_in_real_time():
    b = started()
    b.frames_to_send()
    for i in range(10):
        b.send_audio(b"\0\0" * 1600, i * 0.1)
    b.end_audio(1.0)
    assert b.frames_to_send()[-1] == "eof"


def test_melvin_delays_eof_after_fast_audio_to_avoid_the_server_race():
    b = started()
    b.frames_to_send()
    for _ in range(50):  # 5 s of audio in no time
        b.send_audio(b"\0\0" * 1600, 0.0)
    b.frames_to_send()
    b.end_audio(0.01)
    assert b.frames_to_send() == []
    assert b.next_deadline() == 1.01
    b.tick(0.5)
    assert b.frames_to_send() == []
    b.tick(1.01)
    assert b.frames_to_send() == ["eof"]
    assert b.next_deadline() is None


def test_melvin_keeps_the_eof_grace_even_when_a_server_frame_arrives():
    b = started()
    b.frames_to_send()
    for _ in range(50):
        b.send_audio(b"\0\0" * 1600, 0.0)
    b.end_audio(0.0)
    b.frames_to_send()
    b.receive_text(json.dumps({"partial": " a"}, indent=2), 0.2)
    b.receive_text("No transcription workers available. Retrying in 10 seconds", 0.3)
    assert b.frames_to_send() == []
    b.tick(1.0)
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


def test_melvin_waiting_reminder_is_a_status_event():
    b = started()
    b.receive_text("No transcription workers available. Retrying in 10 seconds", 0.1)
    assert b.events_received() == [
        ev.Status(
            backend="melvin",
            state="waiting",
            message="No transcription workers available. Retrying in 10 seconds",
        )
    ]


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
