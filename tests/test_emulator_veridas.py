"""The das-Peak emulator, driven by plain clients (aiohttp, python-socketio) over loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
import warnings

import aiohttp
import numpy as np
import pytest
import socketio

from streamcli.emulators.veridas import ULAW_TABLE, VeridasEmulator, verify_signature

NS = "/socket.io/register"
SECRET_B64 = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
MEDIA = [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}]
LOUD = bytes([0x80, 0x00] * 400)  # μ-law full scale, alternating sign: surely voiced
SILENT = b"\xff" * 800


@pytest.fixture
async def emu():
    e = VeridasEmulator(client_id="the-client", client_secret="the-client-secret")
    await e.start()
    yield e
    await e.stop()


async def token_for(e: VeridasEmulator) -> str:
    async with aiohttp.ClientSession() as http:
        form = {
            "client_id": "the-client",
            "client_secret": "the-client-secret",
            "grant_type": "client_credentials",
        }
        async with http.post(e.url + "/socket.io/oauth2/token", data=form) as resp:
            return (await resp.json())["access_token"]


class Signalling:
    """A bare python-socketio client that queues every event with all its arguments."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self.events: asyncio.Queue = asyncio.Queue()

        async def catch_all(event, *args):
            await self.events.put((event, args))

        self.sio.on("*", catch_all, namespace=NS)

    async def connect(self, e: VeridasEmulator, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        await self.sio.connect(e.url, headers=headers, transports=["websocket"], namespaces=[NS])

    async def next(self, name: str | None = None) -> tuple[str, tuple]:
        while True:
            event, args = await asyncio.wait_for(self.events.get(), 5)
            if name is None or event == name:
                return event, args


def initialize(call_id: str, protocol: str, duration: float = 1.0) -> dict:
    return {
        "metadata": {
            "audio_protocol": protocol,
            "audio_format": "raw",
            "audio_codec": "mulaw",
            "sample_format": "",
            "sample_rate": "8000",
            "channels": "1",
            "call_id": call_id,
        },
        "register_request": {
            "authenticity_threshold": 0.8,
            "audio_total_duration": duration,
            "model_hash": "h",
        },
    }


async def started(e: VeridasEmulator, protocol: str, duration: float = 1.0):
    sig = Signalling()
    await sig.connect(e, await token_for(e))
    call_id = str(uuid.uuid4())
    await sig.sio.emit("initialize", initialize(call_id, protocol, duration), namespace=NS)
    event, args = await sig.next()
    assert event == "info-consumer-ready"
    assert json.loads(args[0])["content"] == "Audio consumer for provided audio protocol is ready"
    return sig, call_id


# ---- token and signalling ------------------------------------------------------------------------
async def test_the_token_endpoint_checks_the_client_credentials(emu):
    async with aiohttp.ClientSession() as http:
        url = emu.url + "/socket.io/oauth2/token"
        bad = {
            "client_id": "the-client",
            "client_secret": "wrong",
            "grant_type": "client_credentials",
        }
        async with http.post(url, data=bad) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "invalid_client"
        async with http.post(url, data={**bad, "grant_type": "password"}) as resp:
            assert resp.status == 400
    token = await token_for(emu)
    assert token in emu.issued_tokens
    assert emu.token_requests[-1]["grant_type"] == "client_credentials"


async def test_signalling_refuses_a_connection_without_an_issued_bearer_token(emu):
    sig = Signalling()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sig.connect(emu, "not-issued")
    sig = Signalling()
    await sig.connect(emu, await token_for(emu))
    assert emu.connections[-1]["transport"] == "websocket"
    assert emu.connections[-1]["namespace"] == NS
    await sig.sio.disconnect()


async def test_initialize_with_numbers_in_the_metadata_is_refused(emu):
    sig = Signalling()
    await sig.connect(emu, await token_for(emu))
    data = initialize(str(uuid.uuid4()), "twilio")
    data["metadata"]["sample_rate"] = 8000
    await sig.sio.emit("initialize", data, namespace=NS)
    event, args = await sig.next()
    assert event == "error-invalid-request"
    assert "strings" in json.loads(args[0])["content"]
    assert emu.violations and not emu.sessions
    await sig.sio.disconnect()


# ---- twilio consumer -----------------------------------------------------------------------------
async def test_twilio_consumer_reports_progress_then_closes_and_sends_the_credential(emu):
    sig, call_id = await started(emu, "twilio")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(emu.url + "/twilio")
        await ws.send_str(json.dumps({"event": "start", "start": {"callSid": call_id}}))
        payload = base64.b64encode(LOUD).decode()
        for _ in range(12):  # 1.2 s of voice for a 1.0 s goal
            if ws.closed:
                break
            await ws.send_str(json.dumps({"event": "media", "media": {"payload": payload}}))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1000
    progress = json.loads((await sig.next("info-vad-status"))[1][0])
    assert progress["audio_seconds"] == 0.5 and progress["vad_percentage"] == 50
    _, args = await sig.next("result-success")
    result = json.loads(args[0])
    assert result["content"] == "Registration: approved"
    assert result["credential"] in emu.credentials
    assert args[1] == LOUD * 10  # the collected audio rides along as a second argument
    assert emu.violations == []
    await sig.sio.disconnect()


async def test_twilio_media_before_start_is_a_violation(emu):
    sig, _ = await started(emu, "twilio")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(emu.url + "/twilio")
        payload = base64.b64encode(SILENT).decode()
        await ws.send_str(json.dumps({"event": "media", "media": {"payload": payload}}))
        await ws.close()
    await asyncio.sleep(0.1)
    assert emu.violations == ["twilio: media before start"]
    await sig.sio.disconnect()


async def test_the_full_twilio_message_set_is_accepted_and_its_bookkeeping_checked(emu):
    from streamcli.backends.twilio import (
        connected_message,
        media_message,
        start_message,
        stop_message,
    )

    sig, call_id = await started(emu, "twilio", duration=5.0)
    sid = "MZ" + "1" * 32
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(emu.url + "/twilio")
        await ws.send_str(connected_message())
        await ws.send_str(start_message(call_id, sid))
        await ws.send_str(media_message(SILENT, sid, sequence=2, chunk=1, timestamp_ms=0))
        await ws.send_str(stop_message(call_id, sid, sequence=3))
        await ws.close()
    await asyncio.sleep(0.1)
    assert emu.violations == []
    assert emu.consumers[-1].ended == "stop"
    await sig.sio.disconnect()

    sig, call_id = await started(emu, "twilio", duration=5.0)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(emu.url + "/twilio")
        await ws.send_str(start_message(call_id, sid))
        await ws.send_str(connected_message())
        await ws.send_str(media_message(SILENT, sid, sequence=3, chunk=2, timestamp_ms=5))
        await ws.send_str(stop_message(call_id, "MZ" + "2" * 32, sequence=3))
        await ws.send_str(media_message(SILENT, sid, sequence=4, chunk=2, timestamp_ms=100))
        await ws.close()
    await asyncio.sleep(0.1)
    assert emu.violations == [
        "twilio: connected after the stream began",
        "twilio: sequenceNumber '3', expected 2",
        "twilio: media chunk '2', expected 1",
        "twilio: media timestamp '5' for 0 samples",
        "twilio: streamSid missing or changed within the stream",  # the stop
        "twilio: streamSid missing or changed within the stream",  # the media after it
        "twilio: 'media' after stop",
    ]
    await sig.sio.disconnect()


async def test_silence_makes_no_voice_progress(emu):
    sig, call_id = await started(emu, "twilio")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(emu.url + "/twilio")
        await ws.send_str(json.dumps({"event": "start", "start": {"callSid": call_id}}))
        payload = base64.b64encode(SILENT).decode()
        for _ in range(5):
            await ws.send_str(json.dumps({"event": "media", "media": {"payload": payload}}))
        progress = json.loads((await sig.next("info-vad-status"))[1][0])
        assert progress["audio_seconds"] == 0.0 and progress["vad_percentage"] == 0
        await ws.close()
    await sig.sio.disconnect()


async def test_a_rejecting_emulator_answers_result_failure():
    e = VeridasEmulator(reject=True)
    await e.start()
    try:
        sig, call_id = await started(e, "twilio", duration=0.2)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(e.url + "/twilio")
            await ws.send_str(json.dumps({"event": "start", "start": {"callSid": call_id}}))
            payload = base64.b64encode(LOUD).decode()
            for _ in range(3):
                await ws.send_str(json.dumps({"event": "media", "media": {"payload": payload}}))
            await asyncio.wait_for(ws.receive(), 5)
        _, args = await sig.next("result-failure")
        assert json.loads(args[0])["content"] == "Registration: rejected"
        await sig.sio.disconnect()
    finally:
        await e.stop()


# ---- audiohook consumer --------------------------------------------------------------------------
def hook_headers(**extra: str) -> dict[str, str]:
    return {
        "Audiohook-Organization-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": str(uuid.uuid4()),
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        **extra,
    }


def client_msg(headers: dict, type_: str, seq: int, serverseq: int, position: str, **params) -> str:
    return json.dumps(
        {
            "version": "2",
            "type": type_,
            "seq": seq,
            "serverseq": serverseq,
            "id": headers["Audiohook-Session-Id"],
            "position": position,
            "parameters": params,
        }
    )


def open_params(headers: dict, call_id: str) -> dict:
    return {
        "organizationId": headers["Audiohook-Organization-Id"],
        "conversationId": call_id,
        "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
        "media": MEDIA,
    }


async def test_audiohook_consumer_opens_takes_audio_and_disconnects_when_complete(emu):
    sig, call_id = await started(emu, "audiohook", duration=0.2)
    headers = hook_headers()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(emu.url + "/audiohook", headers=headers)
        await ws.send_str(
            client_msg(headers, "open", 1, 0, "PT0S", **open_params(headers, call_id))
        )
        opened = json.loads((await ws.receive()).data)
        assert opened["type"] == "opened" and opened["parameters"]["media"] == MEDIA
        assert (opened["seq"], opened["clientseq"]) == (1, 1)
        for _ in range(3):
            await ws.send_bytes(LOUD)
        disconnect = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
        assert disconnect["type"] == "disconnect"
        assert disconnect["parameters"] == {"reason": "completed"}
        await ws.send_str(client_msg(headers, "close", 2, 2, "PT0.3S", reason="disconnect"))
        closed = json.loads((await ws.receive()).data)
        assert closed["type"] == "closed" and closed["clientseq"] == 2
    await sig.next("result-success")
    assert emu.violations == []
    assert emu.consumers[-1].close_reason == "disconnect"
    await sig.sio.disconnect()


async def test_audiohook_audio_before_opened_and_bad_bookkeeping_are_violations(emu):
    sig, _ = await started(emu, "audiohook")
    headers = hook_headers()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(emu.url + "/audiohook", headers=headers)
        await ws.send_bytes(SILENT)
        disconnect = json.loads((await ws.receive()).data)
        assert disconnect["parameters"] == {"reason": "error", "info": "audio before opened"}
        await ws.send_str(client_msg(headers, "close", 3, 0, "PT0S", reason="error"))
        await ws.receive()
    assert emu.violations == [
        "audiohook: audio before opened",
        "audiohook: seq 3 after 0",
        "audiohook: serverseq 0, expected 1",
        "audiohook: position PT0S but 0.1 s of audio received",
    ]
    await sig.sio.disconnect()


async def test_audiohook_upgrade_needs_uuid_headers_and_the_api_key():
    e = VeridasEmulator(audiohook_api_key="the-key")
    await e.start()
    try:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as bad:
                await http.ws_connect(e.url + "/audiohook", headers={"X-API-KEY": "the-key"})
            assert bad.value.status == 400
            with pytest.raises(aiohttp.WSServerHandshakeError) as unauthorized:
                await http.ws_connect(
                    e.url + "/audiohook", headers=hook_headers(**{"X-API-KEY": "x"})
                )
            assert unauthorized.value.status == 401
    finally:
        await e.stop()


async def test_audiohook_with_a_secret_disconnects_an_unsigned_client_as_unauthorized():
    e = VeridasEmulator(audiohook_api_key="the-key", audiohook_secret=SECRET_B64)
    await e.start()
    try:
        sig, call_id = await started(e, "audiohook")
        headers = hook_headers(**{"X-API-KEY": "the-key"})
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(e.url + "/audiohook", headers=headers)
            await ws.send_str(
                client_msg(headers, "open", 1, 0, "PT0S", **open_params(headers, call_id))
            )
            reply = json.loads((await ws.receive()).data)
            assert reply["type"] == "disconnect" and reply["parameters"]["reason"] == "unauthorized"
            await ws.close()
        assert e.consumers[-1].signature_ok is False
        await sig.sio.disconnect()
    finally:
        await e.stop()


# ---- its own signature check and μ-law table ----------------------------------------------------
VECTOR_HEADERS = {
    "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05",
    "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "X-API-KEY": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
    "Signature-Input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" '
    '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");'
    'keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";'
    'alg="hmac-sha256";created=1641013200;expires=3282026430',
    "Signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
}


def test_the_emulator_accepts_the_public_test_vector_and_nothing_else():
    check = {
        "target": "/api/v1/voicebiometrics/ws",
        "host": "audiohook.example.com",
        "secret_b64": SECRET_B64,
        "now": 1641013205,
    }
    assert verify_signature(headers=VECTOR_HEADERS, **check) is None
    assert verify_signature(headers=VECTOR_HEADERS, **{**check, "target": "/other"}) == (
        "signature mismatch"
    )
    swapped = {**VECTOR_HEADERS, "X-API-KEY": "other"}
    assert verify_signature(headers=swapped, **check) == "keyid differs from X-API-KEY"
    unsigned = {k: v for k, v in VECTOR_HEADERS.items() if not k.startswith("Signature")}
    assert verify_signature(headers=unsigned, **check) is not None


def test_the_emulators_mulaw_table_matches_the_reference_decoder():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    reference = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), "<i2")
    assert list(ULAW_TABLE) == list(reference)
