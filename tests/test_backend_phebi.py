"""Phebi-Live backend: every client byte and every event, checked against phebi.md."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcli import events as ev
from streamcli.backends.phebi import PhebiBackend
from streamcli.exit import AuthError, ConnectError, ExitStatus, ServerError, UsageError

KEY = "b97076b5-faf4-4c66-8123-1deb12db9817"  # the seed's example key


def make(speaker: str = "respondent", **kwargs) -> PhebiBackend:
    return PhebiBackend("ws://dev.phebi.ai", "Test_Project", "python", speaker, KEY, **kwargs)


def started(**kwargs) -> PhebiBackend:
    backend = make(**kwargs)
    backend.start(0.0)
    backend.frames_to_send()
    return backend


def feed(backend: PhebiBackend, message: object) -> list[ev.Event]:
    backend.receive_text(message if isinstance(message, str) else json.dumps(message), 1.0)
    return backend.events_received()


# ---- connection -----------------------------------------------------------------------------
def test_phebi_url_is_host_then_project_session_speaker():
    request = make().connect_request()
    assert request.url == "ws://dev.phebi.ai/sockets/live/Test_Project/python/respondent"


def test_phebi_percent_encodes_each_segment_so_a_slash_stays_in_its_segment():
    backend = PhebiBackend("wss://h.example", "My Project/2025", "resp #1?", "mod%erator", KEY)
    assert backend.connect_request().url == (
        "wss://h.example/sockets/live/My%20Project%2F2025/resp%20%231%3F/mod%25erator"
    )


def test_phebi_does_not_double_a_trailing_slash_of_the_host_url():
    with_slash = PhebiBackend("ws://h:8080/", "p", "s", "r", KEY).connect_request().url
    assert with_slash == "ws://h:8080/sockets/live/p/s/r"


def test_phebi_keeps_a_path_prefix_of_the_host_url():
    url = PhebiBackend("wss://h/tenant/", "p", "s", "r", KEY).connect_request().url
    assert url == "wss://h/tenant/sockets/live/p/s/r"


def test_phebi_sends_the_subscription_header_and_masks_the_key():
    request = make().connect_request()
    assert request.headers == {"Subscription": KEY}
    assert request.secrets == (KEY,)


@pytest.mark.parametrize("missing", ["project", "session", "speaker", "subscription_key"])
def test_phebi_refuses_an_empty_path_segment_or_key(missing):
    args = {"project": "p", "session": "s", "speaker": "r", "subscription_key": KEY}
    args[missing] = ""
    with pytest.raises(UsageError):
        PhebiBackend("ws://h", **args)


@pytest.mark.parametrize("status", [401, 403])
def test_phebi_handshake_refusal_401_or_403_is_an_auth_error_about_the_key(status):
    error = make().handshake_error(status, "Forbidden")
    assert isinstance(error, AuthError)
    assert error.status == ExitStatus.AUTH
    assert "Subscription key" in error.message
    assert f"HTTP {status}" in error.message


@pytest.mark.parametrize("status", [400, 404, 409])
def test_phebi_handshake_refusal_with_another_4xx_is_a_server_error(status):
    error = make().handshake_error(status, "")
    assert type(error) is ServerError
    assert error.status == ExitStatus.SERVER


def test_phebi_handshake_404_points_at_the_path_segments():
    assert "project, session and speaker" in make().handshake_error(404, "").message


def test_phebi_handshake_refusal_with_5xx_is_a_connection_error():
    assert type(make().handshake_error(503, "")) is ConnectError


# ---- client frames --------------------------------------------------------------------------
def test_phebi_sends_a_riff_header_for_16k_16bit_mono_as_the_first_frame():
    backend = make()
    backend.start(0.0)
    (header,) = backend.frames_to_send()
    assert isinstance(header, bytes) and len(header) == 44
    riff, riff_size, wave = struct.unpack("<4sI4s", header[:12])
    assert (riff, riff_size, wave) == (b"RIFF", 0xFFFFFFFF, b"WAVE")
    fmt_id, fmt_size, tag, channels, rate, byte_rate, block_align, bits = struct.unpack(
        "<4sIHHIIHH", header[12:36]
    )
    assert (fmt_id, fmt_size, tag) == (b"fmt ", 16, 1)
    assert (channels, rate, bits) == (1, 16000, 16)
    assert (byte_rate, block_align) == (32000, 2)
    assert struct.unpack("<4sI", header[36:44]) == (b"data", 0xFFFFFFFF)


def test_phebi_sends_audio_unchanged_after_the_header():
    backend = make()
    backend.start(0.0)
    backend.send_audio(b"\x01\x00\xff\x7f", 0.1)
    backend.send_audio(b"\x00\x80" * 8000, 0.2)
    frames = backend.frames_to_send()
    assert [len(f) for f in frames] == [44, 4, 16000]
    assert frames[1:] == [b"\x01\x00\xff\x7f", b"\x00\x80" * 8000]
    assert backend.audio_seconds_sent == pytest.approx(8002 / 16000)


def test_phebi_declares_16k_s16le_audio():
    assert (make().sample_rate, make().encoding) == (16000, "s16le")


def test_phebi_ends_with_the_single_binary_byte_one():
    backend = started()
    backend.end_audio(5.0)
    assert backend.frames_to_send() == [b"\x01"]


def test_phebi_sends_the_end_once_and_no_audio_after_it():
    backend = started()
    backend.end_audio(5.0)
    backend.end_audio(5.1)
    backend.send_audio(b"\x00\x00", 5.2)
    assert backend.frames_to_send() == [b"\x01"]


def test_phebi_skips_empty_audio_chunks():
    backend = started()
    backend.send_audio(b"", 0.1)
    assert backend.frames_to_send() == []


# ---- server messages ------------------------------------------------------------------------
def test_phebi_turns_a_transcription_into_one_final_with_timed_words():
    message = {
        "Transcription": [
            {"Position": 0.1, "Duration": 1.13, "Text": "This", "Speaker": 0},
            {"Position": 1.3, "Duration": 0.2, "Text": "is", "Speaker": 0},
        ]
    }
    assert feed(started(), message) == [
        ev.Final(
            backend="phebi",
            speaker="respondent",
            text="This is",
            start=0.1,
            end=1.5,
            words=(
                ev.Word(word="This", start=0.1, end=1.23, confidence=None),
                ev.Word(word="is", start=1.3, end=1.5, confidence=None),
            ),
        )
    ]


def test_phebi_keeps_words_without_times_in_the_text_only():
    events = feed(started(), {"Transcription": [{"Text": "hello"}, {"Text": " "}]})
    assert events == [
        ev.Final(backend="phebi", speaker="respondent", text="hello", start=None, end=None)
    ]


def test_phebi_turns_an_interim_transcription_into_a_partial():
    events = feed(started(), {"InterimTranscription": "this is a number 15,476,521"})
    assert events == [
        ev.Partial(backend="phebi", speaker="respondent", text="this is a number 15,476,521")
    ]


@pytest.mark.parametrize(
    "message",
    [
        {"InterimTranscription": ""},
        {"InterimTranscription": "  "},
        {"InterimTranscription": None},
        {"Transcription": []},
        {"Transcription": None},
        {"Emotions": []},
        {"Error": ""},
        {"Error": None},
        {},
        {"ByteLength": 32000},
    ],
)
def test_phebi_says_nothing_about_absent_or_empty_fields(message):
    assert feed(started(), message) == []


def test_phebi_turns_each_emotion_into_scores_multiplied_by_confidence():
    message = {
        "Emotions": [
            {
                "Confidence": 0.608,
                "Scores": [0.78, 0.0, 0.0, 0.22, 0.0],
                "Speaker": 0,
                "Position": 0,
            },
            {"Confidence": 0.5, "Scores": [0, 1, 0, 0, 0], "Speaker": 0, "Position": 2.5},
        ]
    }
    assert feed(started(), message) == [
        ev.Emotion(
            backend="phebi",
            speaker="respondent",
            scores={"strong": 0.47424, "calm": 0.0, "anxious": 0.0, "happy": 0.13376, "sad": 0.0},
            position=0.0,
            confidence=0.608,
        ),
        ev.Emotion(
            backend="phebi",
            speaker="respondent",
            scores={"strong": 0.0, "calm": 0.5, "anxious": 0.0, "happy": 0.0, "sad": 0.0},
            position=2.5,
            confidence=0.5,
        ),
    ]


def test_phebi_labels_events_with_the_speaker_label_but_keeps_the_role_in_the_url():
    backend = started(speaker="moderator", speaker_label="Anna")
    assert backend.connect_request().url.endswith("/python/moderator")
    message = {
        "InterimTranscription": "hi",
        "Emotions": [{"Confidence": 1, "Scores": [0, 0, 0, 1, 0], "Speaker": 3}],
    }
    assert [e.speaker for e in feed(backend, message)] == ["Anna", "Anna"]


def test_phebi_emotion_falls_back_to_the_numeric_speaker_for_an_unlabelled_stream():
    backend = started(speaker_label="")
    message = {"Emotions": [{"Confidence": 1, "Scores": [0, 0, 0, 1, 0], "Speaker": 3}]}
    (emotion,) = feed(backend, message)
    assert emotion.speaker == "3"
    assert emotion.position is None


def test_phebi_reports_a_server_error_and_stops():
    backend = started()
    assert feed(backend, {"Error": "Invalid audio format"}) == [
        ev.Error(
            backend="phebi",
            speaker="respondent",
            message="Phebi-Live reported an error: Invalid audio format",
            kind=ev.SERVER,
        )
    ]
    assert backend.finished
    assert feed(backend, {"InterimTranscription": "late"}) == []


def test_phebi_handles_every_field_of_one_message_final_first_error_last():
    message = {
        "Error": "boom",
        "Emotions": [{"Confidence": 1, "Scores": [1, 0, 0, 0, 0], "Position": 1}],
        "InterimTranscription": "number",
        "Transcription": [{"Position": 0, "Duration": 0.5, "Text": "A"}],
    }
    events = feed(started(), message)
    assert [type(e) for e in events] == [ev.Final, ev.Partial, ev.Emotion, ev.Error]


# ---- garbage never raises -------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "",
        "[1, 2]",
        '"Transcription"',
        "null",
        '{"Transcription": "This"}',
        '{"Transcription": [1, "x", {"Text": 5}]}',
        '{"InterimTranscription": 7}',
        '{"InterimTranscription": ["a"]}',
        '{"Emotions": {"Confidence": 1}}',
        '{"Emotions": [{"Confidence": 1, "Scores": [1, 0, 0]}]}',
        '{"Emotions": [{"Confidence": "high", "Scores": [1, 0, 0, 0, 0]}]}',
        '{"Emotions": [{"Scores": [1, 0, 0, 0, 0]}]}',
        '{"Emotions": [{"Confidence": 1, "Scores": [true, 0, 0, 0, 0]}]}',
        '{"Emotions": [null]}',
        '{"Unknown": 1}',
    ],
)
def test_phebi_turns_garbage_into_warnings(text):
    backend = started()
    events = feed(backend, text)
    assert events and all(isinstance(e, ev.Warning) for e in events)
    assert not backend.finished


def test_phebi_keeps_the_good_words_of_a_transcription_with_bad_items():
    message = {"Transcription": [{"Text": "ok", "Position": 1, "Duration": 1}, {"Text": None}]}
    events = feed(started(), message)
    assert [type(e) for e in events] == [ev.Warning, ev.Final]
    assert events[1].text == "ok"


def test_phebi_warns_about_times_of_the_wrong_type_and_keeps_the_word_untimed():
    message = {"Transcription": [{"Text": "a", "Position": "0", "Duration": 1}]}
    assert feed(started(), message) == [
        ev.Warning(
            backend="phebi",
            speaker="respondent",
            message="ignored bad parts of 1 Transcription item(s)",
        ),
        ev.Final(backend="phebi", speaker="respondent", text="a"),
    ]


def test_phebi_reports_a_non_string_error_value_as_an_error():
    (error,) = feed(started(), {"Error": {"code": 7}})
    assert isinstance(error, ev.Error) and '{"code": 7}' in error.message


def test_phebi_treats_a_binary_frame_from_the_server_as_a_protocol_error():
    backend = started()
    backend.receive_binary(b"\x00\x01", 1.0)
    (error,) = backend.events_received()
    assert isinstance(error, ev.Error) and error.kind == ev.PROTOCOL


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)
phebi_keys = st.sampled_from(
    ["Transcription", "InterimTranscription", "Emotions", "Error", "Text", "Scores"]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(phebi_keys, json_values, max_size=4))
def test_phebi_never_raises_on_any_json_object(message):
    backend = started()
    backend.receive_text(json.dumps(message), 1.0)
    backend.events_received()


# ---- the end --------------------------------------------------------------------------------
def test_phebi_finishes_when_the_server_closes_after_the_end_byte():
    backend = started()
    backend.end_audio(5.0)
    feed(backend, {"Transcription": [{"Position": 4.0, "Duration": 0.5, "Text": "Done"}]})
    backend.receive_close(1000, "", 6.0)
    assert backend.events_received() == [
        ev.End(backend="phebi", speaker="respondent", reason="closed")
    ]
    assert backend.finished


def test_phebi_close_before_the_end_byte_is_a_connection_error():
    backend = started()
    backend.receive_close(1006, "connection lost", 2.0)
    (error,) = backend.events_received()
    assert isinstance(error, ev.Error) and error.kind == ev.CONNECTION
    assert "code 1006, connection lost" in error.message
    assert backend.finished


def test_phebi_close_with_an_internal_error_after_the_end_is_a_server_error():
    backend = started()
    backend.end_audio(5.0)
    backend.receive_close(1011, "", 6.0)
    (error,) = backend.events_received()
    assert isinstance(error, ev.Error) and error.kind == ev.SERVER


def test_phebi_reports_an_unconfirmed_interim_when_the_connection_drops():
    backend = started()
    feed(backend, {"InterimTranscription": "half a sen"})
    backend.receive_close(1006, "", 2.0)
    events = backend.events_received()
    assert events[0] == ev.Final(
        backend="phebi", speaker="respondent", text="half a sen", unconfirmed=True
    )
    assert isinstance(events[1], ev.Error)


def test_phebi_reports_an_unconfirmed_interim_when_the_session_gives_up():
    backend = started()
    feed(backend, {"InterimTranscription": "waiting for"})
    backend.give_up(40.0)
    assert backend.events_received() == [
        ev.Final(backend="phebi", speaker="respondent", text="waiting for", unconfirmed=True)
    ]


def test_phebi_forgets_the_interim_once_a_transcription_confirms_it():
    backend = started()
    feed(backend, {"InterimTranscription": "hello"})
    feed(backend, {"Transcription": [{"Position": 0, "Duration": 0.4, "Text": "hello"}]})
    backend.give_up(40.0)
    assert backend.events_received() == []


def test_phebi_ignores_a_close_after_a_fatal_error():
    backend = started()
    feed(backend, {"Error": "bad"})
    backend.receive_close(1000, "", 2.0)
    assert backend.events_received() == []
