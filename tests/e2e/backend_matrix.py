"""How to run each WebSocket backend's CLI command against its emulator, for the tests that
cover every backend (faults, secrets, reconnect, soak). Secrets are recognizable strings, so a
test can grep every output for them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamcli.emulators.bodhi import BodhiEmulator
from streamcli.emulators.melvin import MelvinEmulator
from streamcli.emulators.phebi import PhebiEmulator
from streamcli.emulators.vosk import VoskEmulator

WEBSOCKET_BACKENDS = ("melvin", "phebi", "bodhi", "vosk")
SECRETS = {
    "melvin": {"MELVIN_API_KEY": "MELVIN-SECRET-7d1f3a9c5e2b4f60"},
    "phebi": {"PHEBI_SUBSCRIPTION_KEY": "PHEBI-SECRET-2c8e6a4b1d9f7e35"},
    "bodhi": {
        "BODHI_API_KEY": "BODHI-SECRET-9a7c5e3b1f2d4c68",
        "BODHI_CUSTOMER_ID": "123e4567-e89b-12d3-a456-426614174000",
    },
    "vosk": {},
}
SECRET_VALUES = [
    v for env in SECRETS.values() for k, v in env.items() if not k.endswith("CUSTOMER_ID")
]


def emulator(name: str, script: Path | None = None, **switches: Any) -> Any:
    """A (not yet started) emulator that accepts exactly the test credentials."""
    if name == "melvin":
        return MelvinEmulator(
            api_keys=[SECRETS["melvin"]["MELVIN_API_KEY"]],
            script=script,
            **{"rest_port": None, **switches},
        )
    if name == "phebi":
        key = SECRETS["phebi"]["PHEBI_SUBSCRIPTION_KEY"]
        return PhebiEmulator(subscription_key=key, script=script, **switches)
    if name == "bodhi":
        env = SECRETS["bodhi"]
        return BodhiEmulator(
            api_key=env["BODHI_API_KEY"],
            customer_id=env["BODHI_CUSTOMER_ID"],
            script=script,
            **switches,
        )
    return VoskEmulator(script=script, **switches)


def args(name: str, url: str, *more: str) -> list[str]:
    """The CLI arguments after the input file."""
    extra = ["--project", "p", "--session", "s"] if name == "phebi" else []
    return ["--url", url, *extra, *more]


def env(name: str, **overrides: str) -> dict[str, str]:
    return {**SECRETS[name], **overrides}


def finals_sent(name: str, emu: Any) -> int:
    """How many non-empty final transcripts the emulator sent, over all its connections."""
    if name == "melvin":
        return sum(len(finals) for finals, _ in emu.exports.values())
    count = 0
    for conn in emu.connections:
        for msg in conn.sent:
            if name == "phebi":
                items = msg.get("Transcription") or []
                count += any(str(i.get("Text", "")).strip() for i in items)
            elif name == "bodhi":
                count += msg.get("type") == "complete" and bool(str(msg.get("text", "")).strip())
            else:
                count += "result" in msg and bool(str(msg.get("text", "")).strip())
    return count


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def of_type(evs: list[dict], kind: str) -> list[dict]:
    return [e for e in evs if e["type"] == kind]
