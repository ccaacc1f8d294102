"""Vosk server backend: every client byte and every event, checked against bodhi.md ("Vosk")."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcli import events as ev
from streamcli.backends.vosk import VoskBackend
from streamcli.exit import UsageError


def started(**kwargs) -> VoskBackend:
    backend = VoskBackend(**kwargs)
    backend.start(0.0)
    backend.frames_to_send()
    return backend


def feed(backend: VoskBackend, message: object) -> list[ev.Event]:
    backend.receive_text(message if isinstance(message, str) else json.dumps(message), 1.0)
    return backend.events_received()


# ---- connection and client frames -----------------------------------------------------------
def test_vosk_connects_to_port_2700_without_headers_or_secrets():
    request = VoskBackend().connect_request()
    assert request.url == "ws://localhost:2700"
    assert request.headers == {} and request.secrets == ()


def test_vosk_uses_a_given_url_and_sample_rate():
    backend = VoskBackend("ws://asr.lan:2700", 8000)
    assert backend.connect_request().url == "ws://asr.lan:2700"
    assert (backend.sample_rate, backend.encoding) == (8000, "s16le")


@pytest.mark.parametrize("rate", [0, -8000, 16000.0, True])
def test_vosk_refuses_a_sample_rate_that_is_not_a_positive_int(rate):
    with pytest.raises(UsageError):
        VoskBackend(sample_rate=rate)


def test_vosk_sends_config_with_the_sample_rate_first():
    backend = VoskBackend()
    backend.start(0.0)
    assert backend.frames_to_send() == ['{"config": {"sample_rate": 16000}}']


def test_vosk_config_follows_a_different_sample_rate():
    backend = VoskBackend(sample_rate=8000)
    backend.start(0.0)
    assert backend.frames_to_send() == ['{"config": {"sample_rate": 8000}}']


def test_vosk_sends_chunks_back_to_back_without_waiting_for_replies():
    backend = started()
    chunks = [bytes([i]) * 3200 for i in range(3)]
    for i, chunk in enumerate(chunks):
        assert backend.ready_for_audio
        backend.send_audio(chunk, 0.1 * i)
    assert backend.frames_to_send() == chunks
    assert backend.audio_seconds_sent == pytest.approx(0.3)


def test_vosk_ends_with_eof_spelled_with_spaces_around_the_colon():
    backend = started()
    backend.end_audio(2.0)
    assert backend.frames_to_send() == ['{"eof" : 1}']


def test_vosk_sends_eof_once_and_no_audio_after_it():
    backend = started()
    backend.end_audio(2.0)
    backend.end_audio(2.1)
    backend.send_audio(b"\x00\x00", 2.2)
    assert backend.frames_to_send() == ['{"eof" : 1}']


def test_vosk_needs_no_timer():
    backend = started()
    assert backend.next_deadline() is None


# ---- server messages ------------------------------------------------------------------------
def test_vosk_turns_a_partial_into_a_partial_event():
    assert feed(started(), {"partial": "one zero"}) == [ev.Partial(backend="vosk", text="one zero")]


def test_vosk_skips_empty_partials():
    assert feed(started(), {"partial": ""}) == []


def test_vosk_turns_a_result_into_a_final_with_words():
    # vosk-server pretty-prints its replies.
    message = json.dumps(
        {
            "result": [
                {"conf": 1.0, "end": 1.02, "start": 0.51, "word": "one"},
                {"conf": 0.873, "end": 1.5, "start": 1.02, "word": "zero"},
            ],
            "text": "one zero",
        },
        indent=2,
    )
    assert feed(started(), message) == [
        ev.Final(
            backend="vosk",
            text="one zero",
            start=0.51,
            end=1.5,
            words=(
                ev.Word(word="one", start=0.51, end=1.02, confidence=1.0),
                ev.Word(word="zero", start=1.02, end=1.5, confidence=0.873),
            ),
        )
    ]


def test_vosk_says_nothing_for_an_empty_result():
    assert feed(started(), {"text": ""}) == []


def test_vosk_result_without_words_keeps_its_text():
    assert feed(started(), {"text": "one zero"}) == [ev.Final(backend="vosk", text="one zero")]


def test_vosk_labels_events_with_the_stream_speaker():
    backend = started(speaker="left")
    assert feed(backend, {"partial": "hi"}) == [
        ev.Partial(backend="vosk", speaker="left", text="hi")
    ]


# ---- garbage never raises -------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '"partial"',
        '{"partial": 5}',
        '{"text": 5}',
        '{"result": "one", "text": ""}',
        '{"result": [1, {"word": 3, "start": 0, "end": 1}], "text": ""}',
        '{"result": [{"word": "a", "start": "0", "end": 1}], "text": ""}',
        '{"alternatives": []}',
    ],
)
def test_vosk_turns_garbage_into_warnings(text):
    backend = started()
    events = feed(backend, text)
    assert events and all(isinstance(e, ev.Warning) for e in events)
    assert not backend.finished


def test_vosk_keeps_the_text_of_a_result_with_malformed_words():
    message = {"result": [{"word": "a"}], "text": "a"}
    assert feed(started(), message) == [
        ev.Warning(backend="vosk", message="ignored 1 malformed word(s) in a result"),
        ev.Final(backend="vosk", text="a"),
    ]


def test_vosk_treats_a_binary_frame_from_the_server_as_a_protocol_error():
    backend = started()
    backend.receive_binary(b"\x00", 1.0)
    (error,) = backend.events_received()
    assert isinstance(error, ev.Error) and error.kind == ev.PROTOCOL


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)
word_items = st.dictionaries(st.sampled_from(["word", "start", "end", "conf"]), json_values)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["partial", "result", "text"]), json_values, max_size=3),
    st.lists(word_items, max_size=3),
)
def test_vosk_never_raises_on_any_json_object(message, words):
    backend = started()
    backend.receive_text(json.dumps(message), 1.0)
    backend.receive_text(json.dumps({"result": words, "text": ""}), 1.1)
    backend.events_received()


# ---- the end --------------------------------------------------------------------------------
def test_vosk_finishes_when_the_server_closes_after_eof():
    backend = started()
    backend.end_audio(2.0)
    feed(backend, {"result": [], "text": "last words"})
    backend.receive_close(1000, "", 2.5)
    assert backend.events_received() == [ev.End(backend="vosk", reason="eof")]
    assert backend.finished


def test_vosk_close_before_eof_is_a_connection_error():
    backend = started()
    backend.receive_close(1006, "connection lost", 1.0)
    (error,) = backend.events_received()
    assert error.kind == ev.CONNECTION and "before the end of the audio" in error.message


def test_vosk_close_with_an_internal_error_after_eof_is_a_server_error():
    backend = started()
    backend.end_audio(2.0)
    backend.receive_close(1011, "unexpected error", 2.5)
    (error,) = backend.events_received()
    assert error.kind == ev.SERVER and "1011, unexpected error" in error.message


def test_vosk_reports_an_unconfirmed_partial_when_the_connection_drops():
    backend = started()
    feed(backend, {"partial": "one two"})
    backend.receive_close(1006, "", 1.0)
    events = backend.events_received()
    assert events[0] == ev.Final(backend="vosk", text="one two", unconfirmed=True)
    assert isinstance(events[1], ev.Error)


def test_vosk_forgets_the_partial_once_a_result_settles_it():
    backend = started()
    feed(backend, {"partial": "one two"})
    feed(backend, {"text": ""})
    backend.give_up(10.0)
    assert backend.events_received() == []
