"""Navana Bodhi backend: every client byte and every event, checked against bodhi.md."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcli import events as ev
from streamcli.backends.bodhi import BodhiBackend, check_customer_id, parse_hotword
from streamcli.backends.vosk import EOF_FRAME as VOSK_EOF
from streamcli.exit import AuthError, ConnectError, ExitStatus, ServerError, UsageError

API_KEY = "sk-bodhi-0123456789abcdef"
CUSTOMER = "123e4567-e89b-12d3-a456-426614174000"
TXN = "9b2f6c1e-3c4d-4e5f-8a7b-1c2d3e4f5a6b"


def make(**kwargs) -> BodhiBackend:
    kwargs.setdefault("transaction_id", TXN)
    return BodhiBackend(api_key=API_KEY, customer_id=CUSTOMER, **kwargs)


def started(now: float = 0.0, **kwargs) -> BodhiBackend:
    backend = make(**kwargs)
    backend.start(now)
    backend.frames_to_send()
    backend.events_received()
    return backend


def feed(backend: BodhiBackend, message: object) -> list[ev.Event]:
    backend.receive_text(message if isinstance(message, str) else json.dumps(message), 1.0)
    return backend.events_received()


# ---- customer id and hotwords ---------------------------------------------------------------
def test_bodhi_accepts_a_uuid_customer_id_and_strips_blanks():
    assert check_customer_id(f"  {CUSTOMER}\n") == CUSTOMER
    assert check_customer_id(CUSTOMER.upper()) == CUSTOMER.upper()


@pytest.mark.parametrize(
    "value",
    ["", "acme", "123e4567e89b12d3a456426614174000", f"{{{CUSTOMER}}}", f"urn:uuid:{CUSTOMER}"],
)
def test_bodhi_refuses_a_customer_id_that_is_not_a_canonical_uuid(value):
    with pytest.raises(UsageError) as info:
        check_customer_id(value)
    assert info.value.status == ExitStatus.USAGE
    assert "UUID" in info.value.message


def test_bodhi_checks_the_customer_id_before_connecting():
    with pytest.raises(UsageError):
        BodhiBackend(api_key=API_KEY, customer_id="not-a-uuid")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("Navana", {"phrase": "Navana", "score": 1.5}),
        ("Navana:2.5", {"phrase": "Navana", "score": 2.5}),
        ("home loan : 3", {"phrase": "home loan", "score": 3.0}),
        ("EMI:.5", {"phrase": "EMI", "score": 0.5}),
        ("boost:1e1", {"phrase": "boost", "score": 10.0}),
        ("ratio:x", {"phrase": "ratio:x", "score": 1.5}),
        ("a:b:3", {"phrase": "a:b", "score": 3.0}),
        ("10:30:1.5", {"phrase": "10:30", "score": 1.5}),
        ("10:30", {"phrase": "10", "score": 30.0}),
        ("word:nan", {"phrase": "word:nan", "score": 1.5}),
        ("नमस्ते:2", {"phrase": "नमस्ते", "score": 2.0}),
    ],
)
def test_bodhi_parses_phrase_and_optional_score_after_the_last_colon(spec, expected):
    assert parse_hotword(spec) == expected


@pytest.mark.parametrize("spec", ["loan:0", "loan:-1", "loan:1e999", "loan:", "loan: ", ":2", ""])
def test_bodhi_refuses_a_bad_hotword_score_or_an_empty_phrase(spec):
    with pytest.raises(UsageError):
        parse_hotword(spec)


def test_bodhi_refuses_a_malformed_hotword_value():
    with pytest.raises(UsageError):
        make(hotwords=[{"phrase": "", "score": 2}])
    with pytest.raises(UsageError):
        make(hotwords=[42])


# ---- connection -----------------------------------------------------------------------------
def test_bodhi_connects_to_the_default_url_with_both_headers_and_masks_only_the_key():
    request = make().connect_request()
    assert request.url == "wss://bodhi.navana.ai"
    assert request.headers == {"x-api-key": API_KEY, "x-customer-id": CUSTOMER}
    assert request.secrets == (API_KEY,)


def test_bodhi_uses_a_given_url():
    assert make(url="ws://127.0.0.1:9000").connect_request().url == "ws://127.0.0.1:9000"


def test_bodhi_reports_transaction_id_and_model_in_the_session_info():
    assert make(model="ta-general-v2-8khz").session_info == {
        "transaction_id": TXN,
        "model": "ta-general-v2-8khz",
    }


def test_bodhi_makes_a_fresh_uuid4_transaction_id_by_default():
    first = BodhiBackend(api_key=API_KEY, customer_id=CUSTOMER).transaction_id
    second = BodhiBackend(api_key=API_KEY, customer_id=CUSTOMER).transaction_id
    assert first != second
    assert uuid.UUID(first).version == 4 and str(uuid.UUID(first)) == first


def test_bodhi_refuses_a_transaction_id_that_is_not_a_uuid():
    with pytest.raises(UsageError):
        make(transaction_id="order-42")


def test_bodhi_handshake_401_names_the_bad_credentials():
    error = make().handshake_error(401, "Unauthorized")
    assert isinstance(error, AuthError) and error.status == ExitStatus.AUTH
    assert error.message == (
        "Navana Bodhi rejected the credentials: invalid API key or customer ID (HTTP 401)"
    )


def test_bodhi_handshake_402_is_an_auth_error_about_the_balance():
    error = make().handshake_error(402, "Payment Required")
    assert isinstance(error, AuthError) and "insufficient balance" in error.message


def test_bodhi_handshake_403_is_an_auth_error_about_the_deactivated_customer():
    error = make().handshake_error(403, "Forbidden")
    assert isinstance(error, AuthError) and "customer has been deactivated" in error.message


def test_bodhi_handshake_400_is_a_usage_error_with_the_server_message():
    error = make().handshake_error(400, "Bad Request")
    assert isinstance(error, UsageError) and error.status == ExitStatus.USAGE
    assert error.message.endswith("(HTTP 400): Bad Request")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_bodhi_handshake_5xx_is_a_connection_error(status):
    error = make().handshake_error(status, "")
    assert isinstance(error, ConnectError) and error.status == ExitStatus.CONNECTION


def test_bodhi_handshake_other_4xx_is_a_server_error():
    assert type(make().handshake_error(404, "Not Found")) is ServerError


# ---- client frames --------------------------------------------------------------------------
def test_bodhi_sends_config_before_audio():
    backend = make()
    backend.start(0.0)
    backend.send_audio(b"\x01\x02\x03\x04", 0.1)
    assert backend.frames_to_send() == [
        '{"config": {"sample_rate": 8000, "transaction_id": "' + TXN + '", '
        '"model": "hi-banking-v2-8khz"}}',
        b"\x01\x02\x03\x04",
    ]


def test_bodhi_config_carries_every_option_that_is_set_in_a_fixed_order():
    backend = make(
        model="en-general-v2-8khz",
        sample_rate=16000,
        parse_number=True,
        exclude_partial=False,
        hotwords=["Navana", "Bodhi:2.5", {"phrase": "EMI", "score": 3}],
        aux=True,
        endpoint_silence=0.8,
        at_start_lid=True,
        transliterate=False,
    )
    backend.start(0.0)
    assert backend.frames_to_send() == [
        '{"config": {"sample_rate": 16000, "transaction_id": "' + TXN + '", '
        '"model": "en-general-v2-8khz", "parse_number": true, "exclude_partial": false, '
        '"hotwords": [{"phrase": "Navana", "score": 1.5}, {"phrase": "Bodhi", "score": 2.5}, '
        '{"phrase": "EMI", "score": 3.0}], "aux": true, "endpoint_silence_duration": 0.8, '
        '"at_start_lid": true, "transliterate": false}}'
    ]


def test_bodhi_escapes_non_ascii_hotwords_like_the_vendor_sdk():
    backend = make(hotwords=["नमस्ते"])
    backend.start(0.0)
    (config,) = backend.frames_to_send()
    assert (
        '"hotwords": [{"phrase": "\\u0928\\u092e\\u0938\\u094d\\u0924\\u0947", "score": 1.5}]'
        in (config)
    )
    assert json.loads(config)["config"]["hotwords"] == [{"phrase": "नमस्ते", "score": 1.5}]


def test_bodhi_sends_exactly_one_config():
    backend = make()
    backend.start(0.0)
    backend.start(0.5)
    assert len(backend.frames_to_send()) == 1


def test_bodhi_warns_that_the_server_clamps_the_endpoint_silence():
    backend = make(endpoint_silence=2.0)
    backend.start(0.0)
    (warning,) = backend.events_received()
    assert isinstance(warning, ev.Warning) and "0.44–1.2 s" in warning.message


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf")])
def test_bodhi_refuses_an_endpoint_silence_that_is_not_positive(value):
    with pytest.raises(UsageError):
        make(endpoint_silence=value)


def test_bodhi_sends_raw_pcm_at_its_sample_rate_without_a_wav_header():
    backend = started(sample_rate=8000)
    chunk = b"\x10\x00" * 800  # 100 ms at 8 kHz
    backend.send_audio(chunk, 0.1)
    assert backend.frames_to_send() == [chunk]
    assert backend.sample_rate == 8000 and backend.encoding == "s16le"
    assert backend.audio_seconds_sent == pytest.approx(0.1)


def test_bodhi_ends_with_the_exact_eof_text():
    backend = started()
    backend.end_audio(3.0)
    assert backend.frames_to_send() == ['{"eof": 1}']


def test_bodhi_eof_differs_from_vosks_by_its_spaces():
    assert VOSK_EOF == '{"eof" : 1}' != '{"eof": 1}'


def test_bodhi_sends_eof_once_and_no_audio_after_it():
    backend = started()
    backend.end_audio(3.0)
    backend.end_audio(3.1)
    backend.send_audio(b"\x00\x00", 3.2)
    assert backend.frames_to_send() == ['{"eof": 1}']


# ---- keepalive ------------------------------------------------------------------------------
def test_bodhi_has_no_deadline_before_start():
    assert make().next_deadline() is None


def test_bodhi_keepalive_is_due_three_seconds_after_the_last_frame():
    backend = started(now=100.0)
    assert backend.next_deadline() == 103.0
    backend.send_audio(b"\x00\x00" * 800, 102.0)
    assert backend.next_deadline() == 105.0


def test_bodhi_sends_100ms_of_silence_when_quiet_for_the_keepalive_time():
    backend = started(now=100.0)
    backend.tick(102.9)
    assert backend.frames_to_send() == []
    backend.tick(103.0)
    assert backend.frames_to_send() == [bytes(1600)]
    assert backend.next_deadline() == 106.0
    backend.tick(106.5)
    assert backend.frames_to_send() == [bytes(1600)]
    assert backend.next_deadline() == 109.5


def test_bodhi_keepalive_silence_follows_the_sample_rate():
    backend = started(now=0.0, sample_rate=16000, keepalive_after=1.0)
    backend.tick(1.0)
    assert backend.frames_to_send() == [bytes(3200)]


def test_bodhi_keepalive_does_not_count_as_audio_sent():
    backend = started(now=0.0)
    backend.tick(3.0)
    assert backend.audio_seconds_sent == 0.0


def test_bodhi_stops_the_keepalive_after_eof():
    backend = started(now=0.0)
    backend.end_audio(1.0)
    backend.frames_to_send()
    assert backend.next_deadline() is None
    backend.tick(60.0)
    assert backend.frames_to_send() == []


def test_bodhi_keepalive_can_be_switched_off():
    backend = started(now=0.0, keepalive_after=None)
    assert backend.next_deadline() is None
    backend.tick(60.0)
    assert backend.frames_to_send() == []


# ---- server messages ------------------------------------------------------------------------
def test_bodhi_turns_a_partial_into_a_partial_event():
    message = {
        "call_id": "c1",
        "segment_id": 3,
        "eos": False,
        "type": "partial",
        "text": "मुझे लोन",
        "language_code": "hi",
        "segment_meta": {"tokens": [], "timestamps": [], "start_time": 4.2},
    }
    assert feed(started(), message) == [ev.Partial(backend="bodhi", text="मुझे लोन")]


def test_bodhi_turns_a_complete_into_a_final_with_words_on_the_stream_timeline():
    message = {
        "call_id": "c1",
        "segment_id": 3,
        "eos": False,
        "type": "complete",
        "text": "loan chahiye",
        "language_code": "hi",
        "segment_meta": {
            "tokens": ["▁loan", "▁chahiye"],
            "timestamps": [0.32, 0.6],
            "start_time": 4.2,
            "confidence": 0.91,
            "words": [
                {"word": "loan", "confidence": 0.87, "start_time": 0.32, "end_time": 0.48},
                {"word": "chahiye", "confidence": 0.95, "start_time": 0.6, "end_time": 1.1},
            ],
        },
        "aux_info": {"request_time": 0.1, "eot_wait_time": 0.2, "processed_audio_duration": 5.3},
    }
    assert feed(started(), message) == [
        ev.Final(
            backend="bodhi",
            text="loan chahiye",
            start=4.52,
            end=5.3,
            words=(
                ev.Word(word="loan", start=4.52, end=4.68, confidence=0.87),
                ev.Word(word="chahiye", start=4.8, end=5.3, confidence=0.95),
            ),
        )
    ]


def test_bodhi_final_without_word_times_spans_the_segment_tokens():
    message = {
        "type": "complete",
        "text": "haan",
        "segment_meta": {"timestamps": [0.1, 0.3], "start_time": 2.0, "words": [{"word": "haan"}]},
    }
    assert feed(started(), message) == [ev.Final(backend="bodhi", text="haan", start=2.0, end=2.3)]


@pytest.mark.parametrize("segment_id", [3, "0x3", "3f", "a1b2"])
def test_bodhi_accepts_an_int_or_hex_string_segment_id(segment_id):
    message = {"segment_id": segment_id, "type": "complete", "text": "ok", "eos": False}
    assert feed(started(), message) == [ev.Final(backend="bodhi", text="ok")]


@pytest.mark.parametrize("kind", ["partial", "complete"])
def test_bodhi_skips_empty_texts(kind):
    assert feed(started(), {"type": kind, "text": "", "segment_id": 1, "eos": False}) == []


def test_bodhi_labels_events_with_the_stream_speaker():
    backend = started(speaker="caller")
    assert feed(backend, {"type": "partial", "text": "hello"}) == [
        ev.Partial(backend="bodhi", speaker="caller", text="hello")
    ]


def test_bodhi_finishes_on_eos_with_the_transaction_and_call_ids():
    backend = started()
    backend.end_audio(5.0)
    message = {"call_id": "call-9", "segment_id": 7, "eos": True, "type": "complete", "text": ""}
    assert feed(backend, message) == [
        ev.End(backend="bodhi", reason="eos", extra={"transaction_id": TXN, "call_id": "call-9"})
    ]
    assert backend.finished


def test_bodhi_reports_the_last_complete_before_the_end_of_an_eos_message():
    backend = started()
    events = feed(backend, {"eos": True, "type": "complete", "text": "bas"})
    assert events == [
        ev.Final(backend="bodhi", text="bas"),
        ev.End(backend="bodhi", reason="eos", extra={"transaction_id": TXN}),
    ]


def test_bodhi_session_closing_after_eos_is_not_an_error():
    backend = started()
    feed(backend, {"eos": True})
    backend.receive_close(1000, "", 6.0)
    assert backend.events_received() == []


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (401, "invalid API key or customer ID"),
        (402, "insufficient balance"),
        (403, "the customer has been deactivated"),
        ("402", "insufficient balance"),
    ],
)
def test_bodhi_auth_error_messages_become_auth_errors(code, meaning):
    backend = started()
    message = {
        "error": "auth_error",
        "message": "denied",
        "code": code,
        "timestamp": "2025-01-01T00:00:00Z",
    }
    (error,) = feed(backend, message)
    assert error == ev.Error(
        backend="bodhi",
        message=f"Navana Bodhi refused the session: {meaning} (code {int(code)}) (denied)",
        kind=ev.AUTH,
        code=int(code),
    )
    assert backend.finished


def test_bodhi_bad_request_error_is_a_usage_error_with_the_server_message():
    message = {"error": "bad_request", "message": "Model xx-v2 is not available", "code": 400}
    assert feed(started(), message) == [
        ev.Error(
            backend="bodhi",
            message="Navana Bodhi rejected the request: Model xx-v2 is not available (code 400)",
            kind=ev.USAGE,
            code=400,
        )
    ]


@pytest.mark.parametrize("code", [500, 503, None, "E42"])
def test_bodhi_other_errors_are_server_errors(code):
    (error,) = feed(started(), {"error": "internal", "message": "overloaded", "code": code})
    assert error.kind == ev.SERVER and error.code == code
    assert error.message.startswith("Navana Bodhi reported internal")
    assert error.message.endswith(": overloaded")


# ---- garbage never raises -------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "42",
        '{"type": "partial", "text": 5}',
        '{"type": "complete", "text": null}',
        '{"type": "final", "text": "x"}',
        '{"type": ["partial"]}',
        '{"call_id": "c", "segment_id": 1}',
        '{"type": "complete", "text": "x", "segment_meta": {"words": "loan"}}',
        '{"type": "complete", "text": "x", "segment_meta": {"words": [1, {"word": 2}]}}',
        '{"type": "complete", "text": "x", "segment_meta": {"words": '
        '[{"word": "w", "start_time": "0", "end_time": 1}]}}',
    ],
)
def test_bodhi_turns_garbage_into_warnings(text):
    backend = started()
    events = feed(backend, text)
    assert any(isinstance(e, ev.Warning) for e in events)
    assert all(isinstance(e, ev.Warning | ev.Final) for e in events)
    assert not backend.finished


def test_bodhi_survives_a_segment_meta_of_the_wrong_shape():
    message = {"type": "complete", "text": "x", "segment_meta": [1, 2]}
    assert feed(started(), message) == [ev.Final(backend="bodhi", text="x")]


def test_bodhi_treats_a_binary_frame_from_the_server_as_a_protocol_error():
    backend = started()
    backend.receive_binary(b"\x00", 1.0)
    (error,) = backend.events_received()
    assert isinstance(error, ev.Error) and error.kind == ev.PROTOCOL


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)
bodhi_keys = st.sampled_from(
    ["type", "text", "eos", "segment_meta", "segment_id", "call_id", "error", "code", "message"]
)
meta_keys = st.sampled_from(["start_time", "words", "timestamps", "confidence"])
word_items = st.dictionaries(
    st.sampled_from(["word", "start_time", "end_time", "confidence"]), json_values
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(bodhi_keys, json_values, max_size=5),
    st.dictionaries(meta_keys, json_values | st.lists(word_items, max_size=3), max_size=4),
    st.sampled_from(["partial", "complete", None]),
)
def test_bodhi_never_raises_on_any_json_object(message, meta, kind):
    backend = started()
    if kind is not None:
        message = {**message, "type": kind, "segment_meta": meta}
    backend.receive_text(json.dumps(message), 1.0)
    backend.events_received()


# ---- the end --------------------------------------------------------------------------------
def test_bodhi_close_before_eof_is_a_connection_error():
    backend = started()
    backend.receive_close(1000, "idle", 16.0)
    (error,) = backend.events_received()
    assert error.kind == ev.CONNECTION and "before the end of the audio" in error.message


def test_bodhi_close_after_eof_without_eos_is_a_connection_error():
    backend = started()
    backend.end_audio(5.0)
    backend.receive_close(1000, "", 6.0)
    (error,) = backend.events_received()
    assert error.kind == ev.CONNECTION and "without its last message" in error.message


def test_bodhi_reports_an_unconfirmed_partial_when_the_session_gives_up():
    backend = started()
    feed(backend, {"type": "partial", "text": "aadha"})
    backend.give_up(30.0)
    assert backend.events_received() == [ev.Final(backend="bodhi", text="aadha", unconfirmed=True)]


def test_bodhi_forgets_the_partial_once_its_segment_completes():
    backend = started()
    feed(backend, {"type": "partial", "text": "aadha"})
    feed(backend, {"type": "complete", "text": ""})
    backend.give_up(30.0)
    assert backend.events_received() == []
