"""A Twilio Media Streams consumer built from pipecat 1.14's own telephony runner code.

pipecat's development runner answers a telephony WebSocket with ``parse_telephony_websocket``
(which recognizes the provider from the first messages) and ``_create_telephony_transport``
(which builds the provider's serializer, or raises "Unsupported telephony provider"); its
``TwilioFrameSerializer`` then turns each message into a frame. This app runs exactly those,
unmodified, and prints one JSON report per connection on stdout instead of running a bot.

    python pipecat_twilio.py PORT ENOUGH_SECONDS

After ENOUGH_SECONDS of audio (0 = never) it closes the socket normally, as a consumer that has
what it needs does.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from types import SimpleNamespace

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.runner.utils import _create_telephony_transport, parse_telephony_websocket
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

RATE = 8000
ENOUGH = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
app = FastAPI()


def report(**fields: object) -> None:
    print(json.dumps({"report": fields}), flush=True)


@app.websocket("/ws")
async def consumer(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        transport_type, call_data = await parse_telephony_websocket(websocket)
        params = FastAPIWebsocketParams(audio_in_enabled=True)
        await _create_telephony_transport(websocket, params, transport_type, call_data)
    except (ValueError, KeyError) as e:
        report(error=str(e))
        await websocket.close(code=1011, reason=str(e)[:100])
        return
    serializer = params.serializer
    await serializer.setup(SimpleNamespace(audio_in_sample_rate=RATE))
    events, samples, squares, enough = [], 0, 0.0, False
    try:
        async for text in websocket.iter_text():
            message = json.loads(text)
            events.append(message.get("event"))
            frame = await serializer.deserialize(text)
            if isinstance(frame, InputAudioRawFrame):
                pcm = struct.unpack(f"<{len(frame.audio) // 2}h", frame.audio)
                samples += len(pcm)
                squares += sum(x * x for x in pcm)
                if ENOUGH and samples >= ENOUGH * RATE:
                    enough = True
                    break
            if message.get("event") == "stop":
                break
    except WebSocketDisconnect:
        pass
    report(
        transport=transport_type,
        call_id=call_data["call_id"],
        stream_id=call_data["stream_id"],
        body=call_data["body"],
        events=events,
        samples=samples,
        rms=math.sqrt(squares / samples) if samples else 0.0,
        enough=enough,
    )
    if enough:
        await websocket.close(code=1000)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
