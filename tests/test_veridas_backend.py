"""The das-Peak signalling machine, the token exchange and the credential file, without sockets."""

from __future__ import annotations

import json
import os
import stat

import pytest

from streamcli import events as ev
from streamcli.backends.veridas import (
    REDACTED,
    RequestSettings,
    Token,
    TokenFailure,
    VeridasSignalling,
    default_token_url,
    event_payload,
    parse_token_response,
    raw_message,
    redact,
    token_form,
    token_from_value,
)
from streamcli.exit import AuthError, ServerError, UsageError
from streamcli.transport.socketio import refusal_error
from streamcli.veridas_session import check_credential_out, read_credential, write_credential

CALL = "888806c3-3391-4d73-bb86-e5874e6ed5b4"
SECRET_CREDENTIAL = "Q1JFREVOVElBTC1kby1ub3QtcHJpbnQ="


def register(**kw) -> VeridasSignalling:
    settings = RequestSettings(audio_protocol="audiohook", call_id=CALL, model_hash="<HASH>")
    return VeridasSignalling(settings, **kw)


def verify(**kw) -> VeridasSignalling:
    settings = RequestSettings(
        audio_protocol="twilio",
        call_id=CALL,
        model_hash="<HASH>",
        mode="verify",
        request_key="verify_request",
        credential=SECRET_CREDENTIAL,
        **kw,
    )
    return VeridasSignalling(settings)


def as_server(payload: dict) -> str:
    """The real server sends its payloads as JSON strings."""
    return json.dumps(payload)


# ---- initialize ----------------------------------------------------------------------------------
def test_initialize_carries_string_metadata_and_the_register_request():
    s = register()
    s.start(0.0)
    [(name, data)] = s.emits_to_send()
    assert name == "initialize"
    assert data == {
        "metadata": {
            "audio_protocol": "audiohook",
            "audio_format": "raw",
            "audio_codec": "mulaw",
            "sample_format": "",
            "sample_rate": "8000",
            "channels": "1",
            "call_id": CALL,
        },
        "register_request": {
            "authenticity_threshold": 0.8,
            "audio_total_duration": 5.0,
            "model_hash": "<HASH>",
        },
    }
    assert all(isinstance(v, str) for v in data["metadata"].values())
    s.start(1.0)
    assert s.emits_to_send() == []


def test_verify_sends_the_stored_credential_under_the_configured_key_and_field():
    s = verify(credential_field="voiceprint")
    s.start(0.0)
    [(_, data)] = s.emits_to_send()
    assert data["verify_request"]["voiceprint"] == SECRET_CREDENTIAL
    assert "register_request" not in data


# ---- server events -------------------------------------------------------------------------------
def test_consumer_ready_is_reported_and_flags_the_audio_channel():
    s = register()
    s.receive_event(
        "info-consumer-ready",
        (as_server({"event": "info-consumer-ready", "content": "Audio consumer ... ready"}),),
        0.0,
    )
    assert s.consumer_ready
    [status] = s.events_received()
    assert status == ev.Status(
        backend="veridas", state="consumer-ready", message="Audio consumer ... ready"
    )


def test_vad_status_becomes_progress_toward_the_goal():
    s = register()
    payload = {
        "event": "info-vad-status",
        "content": "Voice activity detection percentage",
        "audio_seconds": 2.57,
        "vad_percentage": 51,
    }
    s.receive_event("info-vad-status", (as_server(payload),), 0.0)
    s.receive_event("info-vad-status", ({"vad_percentage": 102},), 0.1)  # an object works too
    assert s.events_received() == [
        ev.Progress(backend="veridas", value=2.57, goal=5.0, unit="s", percent=51.0),
        ev.Progress(backend="veridas", value=5.1, goal=5.0, unit="s", percent=102.0),
    ]


def test_result_success_ends_with_the_figures_and_keeps_the_credential_out_of_events():
    s = register(credential_file="me.cred")
    payload = {
        "event": "result-success",
        "authenticity": 0.99,
        "voice_audio_collected": 5.13,
        "content": "Registration: approved",
        "credential": SECRET_CREDENTIAL,
    }
    s.receive_event("result-success", (as_server(payload), b"\x00" * 4000), 0.0)
    [end] = s.events_received()
    assert end == ev.End(
        backend="veridas",
        reason="registered",
        extra={
            "authenticity": 0.99,
            "voice_audio_collected": 5.13,
            "content": "Registration: approved",
            "credential_file": "me.cred",
        },
    )
    assert SECRET_CREDENTIAL not in end.to_json()
    assert s.credential == SECRET_CREDENTIAL
    assert s.finished


def test_result_success_without_a_credential_file_warns_that_it_was_not_saved():
    s = register()
    s.receive_event("result-success", ({"content": "ok", "credential": "c"},), 0.0)
    warning, end = s.events_received()
    assert isinstance(warning, ev.Warning) and "not saved" in warning.message
    assert "credential_file" not in end.extra and "c" not in end.extra.values()


def test_result_success_without_a_credential_is_a_protocol_error():
    s = register()
    s.receive_event("result-success", ({"content": "Registration: approved"},), 0.0)
    [error] = s.events_received()
    assert error.kind == ev.PROTOCOL and s.credential is None


def test_any_other_result_is_a_server_error_with_the_payload_verbatim():
    s = register()
    payload = {"event": "result-failure", "content": "Registration: rejected", "authenticity": 0.4}
    s.receive_event("result-failure", (as_server(payload),), 0.0)
    [error] = s.events_received()
    assert error.kind == ev.SERVER and error.code == "result-failure"
    assert error.message == (
        'das-Peak answered result-failure: {"content":"Registration: rejected","authenticity":0.4}'
    )
    s.receive_event("result-success", ({"credential": "late"},), 0.1)
    assert s.events_received() == [] and s.credential is None


def test_error_events_are_server_errors_and_never_echo_a_credential():
    s = register()
    s.receive_event("error-bad-request", ({"content": "nope", "credential": "leak"},), 0.0)
    [error] = s.events_received()
    assert error.kind == ev.SERVER and "leak" not in error.message and REDACTED in error.message


def test_other_info_events_are_statuses_and_unknown_events_warnings():
    s = register()
    s.receive_event("info-something", ({"content": "hello"}, "extra", 3), 0.0)
    s.receive_event("surprise", (), 0.1)
    status, warning = s.events_received()
    assert status == ev.Status(backend="veridas", state="info-something", message="hello")
    assert isinstance(warning, ev.Warning)


def test_a_disconnect_before_the_result_is_a_connection_error():
    s = register()
    s.receive_disconnect("transport close", 0.0)
    [error] = s.events_received()
    assert error.kind == ev.CONNECTION and "transport close" in error.message


def test_verification_accepted_reports_the_verdict_and_score():
    s = verify()
    payload = {"event": "result-success", "authenticity": 0.97, "content": "Verification: approved"}
    s.receive_event("result-success", (as_server(payload),), 0.0)
    [end] = s.events_received()
    assert end.reason == "verified"
    assert end.extra["verdict"] == "Verification: approved" and end.extra["score"] == 0.97


@pytest.mark.parametrize(
    "payload",
    [
        {"content": "Verification: rejected", "authenticity": 0.12},
        {"content": "done", "verified": False, "score": 0.3},
    ],
)
def test_a_success_event_whose_verdict_says_no_is_a_rejection(payload):
    s = verify()
    s.receive_event("result-success", (payload,), 0.0)
    [error] = s.events_received()
    assert error.kind == ev.SERVER and "rejected the verification" in error.message


def test_payloads_may_be_json_strings_objects_or_plain_text():
    assert event_payload(('{"a": 1}',)) == {"a": 1}
    assert event_payload(({"a": 1},)) == {"a": 1}
    assert event_payload(("plain words",)) == {"content": "plain words"}
    assert event_payload(()) == {}


def test_raw_messages_keep_the_socketio_array_with_the_credential_redacted():
    payload = json.dumps({"event": "result-success", "credential": SECRET_CREDENTIAL})
    line = raw_message("result-success", (payload, b"\x00\x01"))
    assert SECRET_CREDENTIAL not in line
    name, data, audio = json.loads(line)
    assert name == "result-success" and json.loads(data)["credential"] == REDACTED
    assert audio == {"binary_length": 2}
    assert redact({"a": [{"credential": "x"}]}) == {"a": [{"credential": REDACTED}]}


# ---- token ---------------------------------------------------------------------------------------
def test_token_request_is_the_client_credentials_form():
    assert token_form("id", "secret") == {
        "client_id": "id",
        "client_secret": "secret",
        "grant_type": "client_credentials",
    }
    assert default_token_url("https://api.eu.veri-das.com") == (
        "https://api.eu.veri-das.com/socket.io/oauth2/token"
    )
    assert default_token_url("wss://h:8443/socket.io") == "https://h:8443/socket.io/oauth2/token"


def test_token_response_gives_the_authorization_header():
    token = parse_token_response(
        200, '{"token_type": "Bearer", "access_token": "abc", "expires_in": 300}'
    )
    assert token == Token(access_token="abc", token_type="Bearer", expires_in=300.0)
    assert token.authorization == "Bearer abc"


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (
            401,
            '{"error": "invalid_client", "error_description": "Bad creds"}',
            ev.AUTH,
            "HTTP 401 (invalid_client: Bad creds)",
        ),
        (400, '{"error": "invalid_client"}', ev.AUTH, "invalid_client"),
        (400, '{"error": "unsupported_grant_type"}', ev.SERVER, "unsupported_grant_type"),
        (404, "Not Found", ev.USAGE, "--token-url"),
        (503, "", ev.CONNECTION, "HTTP 503"),
        (200, "<html>", ev.PROTOCOL, "without an access_token"),
    ],
)
def test_token_failures_carry_the_servers_reason_and_their_kind(status, body, kind, words):
    failure = parse_token_response(status, body)
    assert isinstance(failure, TokenFailure)
    assert failure.kind == kind and words in failure.message


def test_a_ready_token_may_name_its_type():
    assert token_from_value("abc").authorization == "Bearer abc"
    assert token_from_value("  Bearer abc ").authorization == "Bearer abc"
    assert token_from_value("MAC xyz").authorization == "MAC xyz"


def test_a_namespace_refusal_about_credentials_is_an_auth_error():
    assert isinstance(refusal_error("/ns", {"message": "unauthorized"}), AuthError)
    assert isinstance(refusal_error("/ns", "invalid token"), AuthError)
    err = refusal_error("/ns", {"message": "Unable to connect"})
    assert isinstance(err, ServerError) and "--namespace" in err.message


# ---- the credential file -------------------------------------------------------------------------
def test_the_credential_file_is_written_with_mode_0600(tmp_path):
    path = tmp_path / "me.cred"
    path.write_text("old")
    path.chmod(0o644)
    write_credential(str(path), SECRET_CREDENTIAL)
    assert path.read_text() == SECRET_CREDENTIAL
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_credential(str(path)) == SECRET_CREDENTIAL
    assert [p.name for p in tmp_path.iterdir()] == ["me.cred"]


def test_credential_paths_are_checked_before_streaming(tmp_path):
    check_credential_out(str(tmp_path / "ok.cred"))
    with pytest.raises(UsageError, match="never printed"):
        check_credential_out("-")
    with pytest.raises(UsageError, match="no such directory"):
        check_credential_out(str(tmp_path / "missing" / "x.cred"))
    with pytest.raises(UsageError, match="is a directory"):
        check_credential_out(str(tmp_path))
    with pytest.raises(UsageError, match="no such file"):
        read_credential(str(tmp_path / "none.cred"))
    empty = tmp_path / "empty.cred"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        read_credential(str(empty))
    assert os.access(tmp_path, os.W_OK)
