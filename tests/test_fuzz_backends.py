"""Server input never makes a backend raise: random frames, random JSON of roughly the right
shape, random closes and random timings go into every sans-I/O backend, and only events come out
(property tests with hypothesis; example counts stay modest so the suite stays fast)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamcli import events as ev
from streamcli.backends.base import Backend
from streamcli.backends.bodhi import BodhiBackend
from streamcli.backends.melvin import MelvinBackend
from streamcli.backends.phebi import PhebiBackend
from streamcli.backends.vosk import VoskBackend

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _audiohook() -> Backend:
    from streamcli.backends.audiohook import AudiohookClient

    return AudiohookClient(
        "ws://127.0.0.1:9/audiohook",
        conversation_id=str(uuid.uuid4()),
        organization_id=str(uuid.uuid4()),
        api_key="k" * 16,
        client_secret="c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
        created=1_700_000_000,
    )


def _twilio() -> Backend:
    from streamcli.backends.twilio import TwilioMediaClient

    return TwilioMediaClient("ws://127.0.0.1:9/twilio", "CA" + "0" * 32)


FACTORIES = [
    pytest.param(lambda: MelvinBackend("ws://127.0.0.1:9", "k" * 16), id="melvin"),
    pytest.param(lambda: MelvinBackend("ws://127.0.0.1:9", None), id="melvin-no-auth"),
    pytest.param(
        lambda: PhebiBackend("ws://127.0.0.1:9", "p", "s", "respondent", "k" * 16), id="phebi"
    ),
    pytest.param(
        lambda: BodhiBackend("ws://127.0.0.1:9", api_key="k" * 16, customer_id=str(uuid.uuid4())),
        id="bodhi",
    ),
    pytest.param(lambda: VoskBackend("ws://127.0.0.1:9"), id="vosk"),
    pytest.param(_audiohook, id="audiohook"),
    pytest.param(_twilio, id="twilio"),
]

# ---- random server messages of roughly the right shape ------------------------------------------
KEYS = [
    # melvin / vosk
    "partial",
    "result",
    "text",
    "word",
    "start",
    "end",
    "conf",
    # phebi
    "Transcription",
    "InterimTranscription",
    "Emotions",
    "Error",
    "Text",
    "Position",
    "Duration",
    "Scores",
    "Confidence",
    "Speaker",
    "ByteLength",
    # bodhi
    "type",
    "eos",
    "error",
    "message",
    "code",
    "call_id",
    "segment_id",
    "segment_meta",
    "start_time",
    "end_time",
    "words",
    "timestamps",
    "confidence",
    # audiohook
    "version",
    "id",
    "seq",
    "clientseq",
    "serverseq",
    "parameters",
    "position",
    "reason",
    "startPaused",
    "media",
    "discardTo",
    "entities",
    "language",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "partial",
            "complete",
            "opened",
            "closed",
            "pong",
            "disconnect",
            "event",
            "error",
            "2",
            "PT1.5S",
            "PT-1S",
            "",
            " ",
            "eof",
            "a" * 32,
            "0" * 32,
            "No transcription workers available. Retrying in 10 seconds",
            "Provided api key is invalid",
            "control message unknown",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=6),
    ),
    max_leaves=25,
)
OBJECTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8)


@st.composite
def server_text(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["object", "value", "text", "broken"]))
    if kind == "object":
        indent = draw(st.sampled_from([None, 2]))
        return json.dumps(draw(OBJECTS), indent=indent)
    if kind == "value":
        return json.dumps(draw(VALUES))
    if kind == "text":
        return draw(st.text(max_size=200))
    whole = json.dumps(draw(OBJECTS))
    return whole[: draw(st.integers(0, max(0, len(whole) - 1)))]


INPUTS = st.lists(
    st.one_of(
        st.tuples(st.just("text"), server_text()),
        st.tuples(st.just("binary"), st.binary(max_size=64)),
        st.tuples(
            st.just("close"),
            st.tuples(st.one_of(st.none(), st.integers(0, 5000)), st.text(max_size=20)),
        ),
        st.tuples(st.just("audio"), st.integers(0, 800)),
        st.tuples(st.just("end"), st.none()),
        st.tuples(st.just("tick"), st.floats(0, 30)),
        st.tuples(st.just("give_up"), st.none()),
    ),
    max_size=25,
)


def drive(backend: Backend, inputs: list[tuple[str, Any]]) -> tuple[list[Any], list[Any]]:
    """Play ``inputs`` into a started backend; return everything it queued."""
    frames: list[Any] = []
    out: list[Any] = []
    now = 1000.0
    backend.start(now)
    for kind, value in inputs:
        now += 0.05
        if kind == "text":
            backend.receive_text(value, now)
        elif kind == "binary":
            backend.receive_binary(value, now)
        elif kind == "close":
            backend.receive_close(value[0], value[1], now)
        elif kind == "audio":
            width = 1 if backend.encoding == "mulaw" else 2
            backend.send_audio(bytes(value * width), now)
        elif kind == "end":
            backend.end_audio(now)
        elif kind == "tick":
            now += value
            deadline = backend.next_deadline()
            assert deadline is None or isinstance(deadline, float | int)
            backend.tick(now)
        else:
            backend.give_up(now)
        frames += backend.frames_to_send()
        out += backend.events_received()
    return frames, out


@pytest.mark.parametrize("make", FACTORIES)
@SETTINGS
@given(inputs=INPUTS)
def test_server_input_never_raises_and_only_events_come_out(make, inputs):
    backend = make()
    frames, out = drive(backend, inputs)
    assert all(isinstance(f, str | bytes) for f in frames)
    assert all(isinstance(e, ev.Event) for e in out)
    for e in out:
        e.to_json()  # every event serializes (no NaN surprises that crash a sink)
    errors = [e for e in out if isinstance(e, ev.Error)]
    assert len(errors) <= 1, errors  # one fatal error at most: the backend is finished after it
    if errors:
        assert backend.finished
        assert errors[0].kind in (
            ev.AUTH,
            ev.CONNECTION,
            ev.SERVER,
            ev.PROTOCOL,
            ev.TIMEOUT,
            ev.USAGE,
        )


@pytest.mark.parametrize("make", FACTORIES)
@settings(SETTINGS, max_examples=20)
@given(texts=st.lists(server_text(), max_size=4))
def test_nothing_comes_out_after_the_end(make, texts):
    backend = make()
    drive(backend, [("close", (1000, "")), ("close", (1011, "again"))])
    assert backend.finished
    _, out = drive(backend, [("text", t) for t in texts] + [("binary", b"\x00")])
    assert not [e for e in out if isinstance(e, ev.Final | ev.Partial | ev.Error | ev.End)]


def _signalling() -> Any:
    from streamcli.backends.veridas import RequestSettings, VeridasSignalling

    return VeridasSignalling(
        RequestSettings(audio_protocol="twilio", call_id="c" * 8, model_hash="m")
    )


EVENT_NAMES = st.one_of(
    st.sampled_from(
        [
            "info-consumer-ready",
            "info-vad-status",
            "result-success",
            "result-failure",
            "error-internal",
            "info-other",
            "unknown",
            "",
        ]
    ),
    st.text(max_size=20),
)


@settings(SETTINGS, max_examples=40)
@given(
    calls=st.lists(st.tuples(EVENT_NAMES, st.lists(VALUES, max_size=3).map(tuple)), max_size=15),
    disconnect=st.booleans(),
)
def test_veridas_signalling_never_raises_on_server_events(calls, disconnect):
    machine = _signalling()
    machine.start(0.0)
    out: list[Any] = []
    for i, (name, arguments) in enumerate(calls):
        machine.receive_event(name, arguments, float(i))
        out += machine.events_received()
        machine.emits_to_send()
    if disconnect:
        machine.receive_disconnect("transport close", 99.0)
        out += machine.events_received()
    assert all(isinstance(e, ev.Event) for e in out)
    for e in out:
        e.to_json()
