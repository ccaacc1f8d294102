"""End-to-end fixtures: emulators on 127.0.0.1 with free ports."""

from __future__ import annotations

import pytest

from streamcli.emulators.melvin import MelvinEmulator

KEY = "melvin-test-key-0123456789"


@pytest.fixture
async def melvin(script_file):
    emu = MelvinEmulator(api_keys=[KEY], script=script_file)
    await emu.start()
    yield emu
    await emu.stop()
