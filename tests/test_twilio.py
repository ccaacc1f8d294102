"""The Twilio-media audio channel client, and the μ-law it carries, without sockets."""

from __future__ import annotations

import base64
import json
import warnings

import numpy as np
import pytest

from streamcli import events as ev
from streamcli.audio.convert import Converter
from streamcli.audio.mulaw import mulaw_encode_int16
from streamcli.backends.twilio import (
    ACCOUNT_SID,
    TwilioMediaClient,
    connected_message,
    media_message,
    start_message,
    stop_message,
)

CALL = "888806c3-3391-4d73-bb86-e5874e6ed5b4"
STREAM = "MZ" + "18ad3ab5a668481ce02b83e7395059f0"

# G.711 μ-law reference values (Sun/ITU g711.c ``linear2ulaw`` on 16-bit input).
G711_REFERENCE = {
    0: 0xFF,
    1: 0xFF,
    -1: 0x7E,
    100: 0xF2,
    -100: 0x72,
    1000: 0xCE,
    -1000: 0x4E,
    8158 * 4: 0x80,
    32767: 0x80,
    -32768: 0x00,
}


def test_mulaw_matches_the_g711_reference_values():
    samples = np.array(list(G711_REFERENCE), dtype=np.int16)
    assert list(mulaw_encode_int16(samples)) == list(G711_REFERENCE.values())


def test_mulaw_matches_the_reference_encoder_for_every_16_bit_sample():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # the stdlib's g711.c port (Python < 3.13)
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert mulaw_encode_int16(every) == audioop.lin2ulaw(every.astype("<i2").tobytes(), 2)


def test_connected_is_twilios_first_message_byte_for_byte():
    assert connected_message() == '{"event":"connected","protocol":"Call","version":"1.0.0"}'


def test_start_names_the_call_as_its_call_sid_with_every_field_twilio_sends():
    assert start_message(CALL, STREAM, custom_parameters={"k": "v"}) == (
        '{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC'
        + "0" * 32
        + '","streamSid":"'
        + STREAM
        + '","callSid":"'
        + CALL
        + '","tracks":["inbound"],"customParameters":{"k":"v"},"mediaFormat":'
        '{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},"streamSid":"' + STREAM + '"}'
    )
    # What das-Peak's consumer reads (the protocol page's subset) is where it was.
    assert json.loads(start_message(CALL, STREAM))["start"]["callSid"] == CALL


def test_media_carries_base64_of_the_raw_mulaw_bytes():
    audio = bytes(range(256))
    msg = json.loads(media_message(audio, STREAM, sequence=2, chunk=1, timestamp_ms=0))
    assert msg == {
        "event": "media",
        "sequenceNumber": "2",
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "0",
            "payload": base64.b64encode(audio).decode(),
        },
        "streamSid": STREAM,
    }


def test_stop_closes_the_stream_with_the_call_and_account():
    assert json.loads(stop_message(CALL, STREAM, sequence=9)) == {
        "event": "stop",
        "sequenceNumber": "9",
        "stop": {"accountSid": ACCOUNT_SID, "callSid": CALL},
        "streamSid": STREAM,
    }


def test_the_client_sends_connected_start_then_one_media_message_per_chunk_then_stop():
    c = TwilioMediaClient("ws://127.0.0.1:9/twilio", CALL, stream_sid=STREAM)
    assert (c.sample_rate, c.encoding) == (8000, "mulaw")
    assert c.connect_request().url == "ws://127.0.0.1:9/twilio"
    c.start(0.0)
    c.send_audio(b"\x01" * 160, 0.0)
    c.send_audio(b"\x02" * 160, 0.02)
    c.end_audio(0.04)
    frames = [json.loads(f) for f in c.frames_to_send()]
    assert [f["event"] for f in frames] == ["connected", "start", "media", "media", "stop"]
    assert frames[1]["start"]["callSid"] == CALL
    assert [base64.b64decode(f["media"]["payload"]) for f in frames[2:4]] == [
        b"\x01" * 160,
        b"\x02" * 160,
    ]
    assert [f.get("sequenceNumber") for f in frames] == [None, "1", "2", "3", "4"]
    assert [(f["media"]["chunk"], f["media"]["timestamp"]) for f in frames[2:4]] == [
        ("1", "0"),
        ("2", "20"),
    ]
    assert {f["streamSid"] for f in frames[1:]} == {STREAM}
    assert c.audio_seconds_sent == pytest.approx(0.04)


def test_every_session_gets_its_own_twilio_shaped_stream_sid():
    a, b = TwilioMediaClient("ws://x", CALL), TwilioMediaClient("ws://x", CALL)
    assert a.stream_sid != b.stream_sid
    assert all(len(s) == 34 and s.startswith("MZ") for s in (a.stream_sid, b.stream_sid))


def test_a_tone_goes_out_as_8khz_mulaw_of_the_converter():
    t = np.arange(1600) / 8000
    block = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None]
    encoded = Converter(8000, 8000, "mulaw").process(block)
    pcm = np.clip(np.rint(block[:, 0] * 32768), -32768, 32767).astype(np.int16)
    assert encoded == mulaw_encode_int16(pcm)
    c = TwilioMediaClient("ws://x/twilio", CALL)
    c.send_audio(encoded, 0.0)
    [frame] = c.frames_to_send()
    assert base64.b64decode(json.loads(frame)["media"]["payload"]) == encoded


def test_the_end_of_the_audio_finishes_the_channel_so_the_socket_closes():
    c = TwilioMediaClient("ws://x/twilio", CALL, stream_sid=STREAM)
    c.start(0.0)
    c.end_audio(1.0)
    assert c.finished
    assert [e.state for e in c.events_received()] == ["audio-sent"]
    c.send_audio(b"\x00" * 160, 1.1)
    c.end_audio(1.2)
    assert c.frames_to_send() == [
        connected_message(),
        start_message(CALL, STREAM),
        stop_message(CALL, STREAM, sequence=2),
    ]


def test_the_consumer_closing_normally_means_it_has_enough_audio():
    c = TwilioMediaClient("ws://x/twilio", CALL)
    c.receive_close(1000, "", 1.0)
    [status] = c.events_received()
    assert status.state == "audio-closed" and c.finished


def test_the_consumer_dropping_the_connection_is_a_connection_error():
    c = TwilioMediaClient("ws://x/twilio", CALL)
    c.receive_close(1011, "internal error", 1.0)
    [error] = c.events_received()
    assert error.kind == ev.CONNECTION
    assert "1011, internal error" in error.message


def test_messages_from_the_consumer_are_ignored_with_one_warning_per_kind():
    c = TwilioMediaClient("ws://x/twilio", CALL)
    c.receive_text('{"event": "mark"}', 0.0)
    c.receive_text('{"event": "mark"}', 0.1)
    c.receive_text("garbage", 0.2)
    c.receive_binary(b"\x00", 0.3)
    assert len(c.events_received()) == 3
    assert not c.finished
