"""The AudioHook v2 client state machine and its HTTP Message Signature, without sockets."""

from __future__ import annotations

import json

import pytest

from streamcli import events as ev
from streamcli.backends.audiohook import (
    CLOSED,
    CLOSING,
    OPEN,
    OPENING,
    AudiohookClient,
    authority,
    format_position,
    request_target,
    sign_request,
)

# The public test vector (veridas.md §3b, from the AudioHook spec).
VECTOR = {
    "url": "wss://audiohook.example.com/api/v1/voicebiometrics/ws",
    "organization_id": "d7934305-0972-4844-938e-9060eef73d05",
    "session_id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "correlation_id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "api_key": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
    "client_secret": "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU=",
    "nonce": "VGhpc0lzQVVuaXF1ZU5vbmNl",
    "created": 1641013200,
    "expires": 3282026430,
}
SESSION = "6d5e0e0c-8f3b-4a51-9d0c-5a3d0c8e9a11"
ORG = "d7934305-0972-4844-938e-9060eef73d05"
CALL = "888806c3-3391-4d73-bb86-e5874e6ed5b4"


def test_signature_matches_the_public_test_vector():
    headers = sign_request(**VECTOR)
    assert headers["Signature"] == "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"
    assert headers["Signature-Input"] == (
        'sig1=("@request-target" "@authority" "audiohook-organization-id" '
        '"audiohook-session-id" "audiohook-correlation-id" "x-api-key")'
        ';keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";nonce="VGhpc0lzQVVuaXF1ZU5vbmNl"'
        ';alg="hmac-sha256";created=1641013200;expires=3282026430'
    )


def test_signature_changes_with_any_signed_component():
    base = sign_request(**VECTOR)["Signature"]
    for key, value in [
        ("session_id", VECTOR["correlation_id"]),
        ("url", "wss://audiohook.example.com/api/v1/voicebiometrics/ws?x=1"),
        ("url", "wss://audiohook.example.com:8443/api/v1/voicebiometrics/ws"),
        ("nonce", "b3RoZXI="),
    ]:
        assert sign_request(**{**VECTOR, key: value})["Signature"] != base


def test_signature_expires_thirty_seconds_after_creation_by_default():
    headers = sign_request(**{**VECTOR, "expires": None})
    assert headers["Signature-Input"].endswith(";created=1641013200;expires=1641013230")


def test_authority_drops_the_default_port_and_keeps_others():
    assert authority("wss://Hook.Example.com:443/x") == "hook.example.com"
    assert authority("ws://127.0.0.1:80/x") == "127.0.0.1"
    assert authority("ws://127.0.0.1:8080/x") == "127.0.0.1:8080"
    assert authority("wss://[::1]:9000/x") == "[::1]:9000"
    assert request_target("wss://h/a/b?c=1&d=2") == "/a/b?c=1&d=2"
    assert request_target("wss://h") == "/"


def test_positions_are_iso_durations_without_trailing_zeros():
    assert format_position(0) == "PT0S"
    assert format_position(8000) == "PT1S"
    assert format_position(12000) == "PT1.5S"
    assert format_position(1) == "PT0.000125S"


def client(**kw) -> AudiohookClient:
    args = {
        "conversation_id": CALL,
        "organization_id": ORG,
        "session_id": SESSION,
        "correlation_id": VECTOR["correlation_id"],
        "api_key": "the-api-key",
    }
    args.update(kw)
    return AudiohookClient("ws://127.0.0.1:9/audiohook", **args)


def sent(c: AudiohookClient) -> list:
    return [json.loads(f) if isinstance(f, str) else f for f in c.frames_to_send()]


def server(type_: str, seq: int, clientseq: int = 1, **parameters) -> str:
    return json.dumps(
        {
            "version": "2",
            "type": type_,
            "seq": seq,
            "clientseq": clientseq,
            "id": SESSION,
            "parameters": parameters,
        }
    )


def opened(c: AudiohookClient, now: float = 0.0) -> None:
    c.start(now)
    c.frames_to_send()
    media = [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}]
    c.receive_text(server("opened", 1, media=media, startPaused=False), now)
    c.events_received()


def test_connect_request_carries_the_audiohook_headers_and_no_signature_without_secret():
    req = client().connect_request()
    assert req.headers == {
        "Audiohook-Organization-Id": ORG,
        "Audiohook-Session-Id": SESSION,
        "Audiohook-Correlation-Id": VECTOR["correlation_id"],
        "X-API-KEY": "the-api-key",
    }
    assert req.secrets == ("the-api-key",)


def test_connect_request_is_signed_when_a_secret_is_given():
    c = client(
        api_key=VECTOR["api_key"],
        client_secret=VECTOR["client_secret"],
        created=VECTOR["created"],
        nonce=VECTOR["nonce"],
        session_id=VECTOR["session_id"],
    )
    c.url = VECTOR["url"]
    req = c.connect_request()
    expected = sign_request(**{**VECTOR, "expires": None})
    assert req.headers["Signature"] == expected["Signature"]
    assert req.headers["Signature-Input"] == expected["Signature-Input"]
    assert VECTOR["client_secret"] in req.secrets and VECTOR["api_key"] in req.secrets


def test_the_signed_request_target_is_the_one_aiohttp_sends():
    from yarl import URL

    c = client(api_key="k", client_secret=VECTOR["client_secret"], created=VECTOR["created"])
    c.url = "ws://Example.org:80/api/v1/ws?tok=abc%2Fdef%2B%3D&x=%7e"
    req = c.connect_request()
    assert req.url == "ws://example.org/api/v1/ws?tok=abc/def%2B%3D&x=~"
    assert URL(req.url).raw_path_qs == request_target(req.url)  # what goes on the wire
    assert str(URL(req.url)) == req.url  # sent unchanged
    signed = sign_request(
        url=req.url,
        organization_id=c.organization_id,
        session_id=c.session_id,
        correlation_id=c.correlation_id,
        api_key="k",
        client_secret=VECTOR["client_secret"],
        nonce=c.nonce,
        created=VECTOR["created"],
    )
    assert req.headers["Signature"] == signed["Signature"]


def test_a_secret_that_is_not_base64_or_has_no_key_is_refused_up_front():
    with pytest.raises(ValueError, match="base64"):
        client(client_secret="not base64 !!", created=1)
    with pytest.raises(ValueError, match="API key"):
        client(api_key=None, client_secret=VECTOR["client_secret"], created=1)


def test_start_sends_open_with_the_call_id_and_the_offered_media():
    c = client()
    c.start(10.0)
    [msg] = sent(c)
    assert msg == {
        "version": "2",
        "type": "open",
        "seq": 1,
        "serverseq": 0,
        "id": SESSION,
        "position": "PT0S",
        "parameters": {
            "organizationId": ORG,
            "conversationId": CALL,
            "participant": c.participant,
            "media": [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}],
        },
    }
    assert set(c.participant) == {"id", "ani", "aniName", "dnis"}
    assert c.state == OPENING


def test_no_audio_leaves_before_opened():
    c = client()
    c.start(0.0)
    c.frames_to_send()
    assert not c.ready_for_audio
    c.send_audio(b"\xff" * 800, 0.1)
    assert c.frames_to_send() == []
    opened(c)
    assert c.ready_for_audio
    c.send_audio(b"\xff" * 800, 0.2)
    assert c.frames_to_send() == [b"\xff" * 800]


def test_opened_then_audio_then_end_closes_with_positions_and_serverseq():
    c = client()
    opened(c)
    assert c.state == OPEN
    for _ in range(3):
        c.send_audio(b"\x7f" * 1600, 1.0)
    assert c.frames_to_send() == [b"\x7f" * 1600] * 3
    c.end_audio(1.0)
    [close] = sent(c)
    assert close["type"] == "close"
    assert close["parameters"] == {"reason": "end"}
    assert (close["seq"], close["serverseq"], close["position"]) == (2, 1, "PT0.6S")
    assert c.state == CLOSING and not c.finished
    c.receive_text(server("closed", 2, clientseq=2), 1.1)
    assert c.finished and c.state == CLOSED
    assert [e.state for e in c.events_received()] == ["audio-closed"]


def test_pings_every_five_seconds_with_the_current_position():
    c = client()
    opened(c, now=100.0)
    assert c.next_deadline() == 105.0
    c.send_audio(b"\x00" * 8000, 101.0)
    c.frames_to_send()
    c.tick(105.0)
    [ping] = sent(c)
    assert ping["type"] == "ping" and ping["seq"] == 2 and ping["position"] == "PT1S"
    c.receive_text(server("pong", 2, clientseq=2), 105.1)
    assert c.events_received() == []
    assert c.next_deadline() == 110.0


def test_a_missing_pong_is_reported_once_as_a_warning():
    c = client()
    opened(c)
    c.tick(5.0)
    c.tick(10.0)
    c.tick(15.0)
    warnings = [e for e in c.events_received() if isinstance(e, ev.Warning)]
    assert [w.message for w in warnings] == ["the audio consumer does not answer pings"]


def test_server_disconnect_completed_is_answered_with_close_disconnect():
    c = client()
    opened(c)
    c.send_audio(b"\x00" * 800, 1.0)
    c.frames_to_send()
    c.receive_text(server("disconnect", 2, reason="completed"), 1.2)
    [close] = sent(c)
    assert close["type"] == "close" and close["parameters"] == {"reason": "disconnect"}
    assert close["serverseq"] == 2 and close["position"] == "PT0.1S"
    assert not c.ready_for_audio
    c.send_audio(b"\x00" * 800, 1.3)  # late audio is dropped, not sent
    assert c.frames_to_send() == []
    c.receive_text(server("closed", 3, clientseq=2), 1.4)
    states = [e.state for e in c.events_received()]
    assert states == ["audio-complete", "audio-closed"]
    assert c.finished


def test_server_disconnect_unauthorized_is_an_auth_error():
    c = client()
    opened(c)
    c.receive_text(server("disconnect", 2, reason="unauthorized", info="bad signature"), 1.0)
    [close] = sent(c)
    assert close["parameters"] == {"reason": "disconnect"}
    [error] = c.events_received()
    assert isinstance(error, ev.Error) and error.kind == ev.AUTH
    assert "unauthorized: bad signature" in error.message


def test_server_disconnect_error_is_a_server_error():
    c = client()
    opened(c)
    c.receive_text(server("disconnect", 2, reason="error", info="boom"), 1.0)
    [error] = c.events_received()
    assert error.kind == ev.SERVER and error.code == "error"


def test_a_server_seq_out_of_order_is_a_protocol_error_answered_with_error_and_close():
    c = client()
    opened(c)
    c.receive_text(server("pong", 5, clientseq=1), 1.0)
    error_msg, close = sent(c)
    assert error_msg["type"] == "error" and error_msg["parameters"]["code"] == 400
    assert close["parameters"] == {"reason": "error"}
    [error] = c.events_received()
    assert error.kind == ev.PROTOCOL and c.finished


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        json.dumps({"version": "1", "type": "pong", "seq": 1, "parameters": {}}),
        json.dumps({"version": "2", "seq": 1}),
    ],
)
def test_garbage_from_the_server_never_raises(text):
    c = client()
    c.start(0.0)
    c.receive_text(text, 0.1)
    [error] = c.events_received()
    assert error.kind == ev.PROTOCOL


def test_opened_with_media_that_was_not_offered_is_a_protocol_error():
    c = client()
    c.start(0.0)
    c.frames_to_send()
    media = [{"type": "audio", "format": "L16", "channels": ["external"], "rate": 16000}]
    c.receive_text(server("opened", 1, media=media), 0.1)
    assert [e.kind for e in c.events_received()] == [ev.PROTOCOL]


def test_no_opened_within_five_seconds_is_a_timeout():
    c = client()
    c.start(0.0)
    assert c.next_deadline() == 5.0
    c.tick(4.9)
    assert c.events_received() == []
    c.tick(5.0)
    [error] = c.events_received()
    assert error.kind == ev.TIMEOUT and c.finished


def test_no_closed_after_close_ends_anyway_with_a_warning():
    c = client()
    opened(c)
    c.end_audio(1.0)
    c.tick(6.0)
    events = c.events_received()
    assert [type(e) for e in events] == [ev.Warning, ev.Status]
    assert c.finished


def test_pause_holds_the_audio_and_resume_reports_nothing_discarded():
    c = client()
    opened(c)
    c.receive_text(server("pause", 2), 1.0)
    [paused] = sent(c)
    assert paused["type"] == "paused"
    assert not c.ready_for_audio
    c.receive_text(server("resume", 3), 2.0)
    [resumed] = sent(c)
    assert resumed["type"] == "resumed"
    assert resumed["parameters"] == {"start": "PT0S", "discarded": "PT0S"}
    assert c.ready_for_audio


def test_a_repeated_pause_or_resume_is_answered_each_time_a_state_query():
    c = client()
    opened(c)
    for seq, now in ((2, 1.0), (3, 1.1)):
        c.receive_text(server("pause", seq), now)
        [paused] = sent(c)
        assert paused["type"] == "paused" and not c.ready_for_audio
    assert [e.state for e in c.events_received()] == ["audio-paused"]  # one change of state
    for seq, now in ((4, 2.0), (5, 2.1)):
        c.receive_text(server("resume", seq), now)
        [resumed] = sent(c)
        assert resumed["type"] == "resumed" and c.ready_for_audio
        assert resumed["parameters"] == {"start": "PT0S", "discarded": "PT0S"}
    assert [e.state for e in c.events_received()] == ["audio-open"]


def test_opened_with_start_paused_is_answered_with_paused_and_holds_the_audio():
    c = client()
    c.start(0.0)
    c.frames_to_send()
    media = [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}]
    c.receive_text(server("opened", 1, media=media, startPaused=True), 0.1)
    [paused] = sent(c)
    assert (paused["type"], paused["seq"], paused["serverseq"]) == ("paused", 2, 1)
    assert not c.ready_for_audio
    assert [e.state for e in c.events_received()] == ["audio-open", "audio-paused"]
    c.receive_text(server("resume", 2), 0.5)
    assert sent(c)[0]["type"] == "resumed" and c.ready_for_audio


def test_a_clean_close_of_the_socket_ends_quietly_and_an_abrupt_one_is_a_connection_error():
    c = client()
    opened(c)
    c.receive_close(1000, "", 1.0)
    assert [e.state for e in c.events_received()] == ["audio-closed"]
    c = client()
    opened(c)
    c.receive_close(1006, "", 1.0)
    [error] = c.events_received()
    assert error.kind == ev.CONNECTION
