"""The microphone source without hardware: a fake ``sounddevice`` module stands in for
PortAudio, and a real second thread plays PortAudio's callback thread."""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import os
import subprocess
import sys
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from streamcli.audio import mic
from streamcli.exit import ExitStatus, UsageError

INVALID_SAMPLE_RATE = -9997
DEVICE_UNAVAILABLE = -9985


class PortAudioError(Exception):
    pass


class FakeStream:
    def __init__(self, sd: FakeSoundDevice, **kwargs: Any) -> None:
        self.sd = sd
        self.kwargs = kwargs
        self.callback = kwargs["callback"]
        self.finished_callback = kwargs.get("finished_callback")
        self.started = threading.Event()
        self.aborted = False
        self.closed = False

    def start(self) -> None:
        self.started.set()

    def abort(self, ignore_errors: bool = True) -> None:
        self.aborted = True

    def close(self, ignore_errors: bool = True) -> None:
        self.closed = True

    def deliver(self, block: np.ndarray, overflow: bool = False) -> None:
        """What PortAudio does on its thread for each captured block: a raw stream's callback
        gets a buffer of the samples' bytes (PortAudio's own memory, reused afterwards)."""
        status = SimpleNamespace(input_overflow=overflow)
        self.callback(memoryview(np.ascontiguousarray(block)).cast("B"), len(block), None, status)


class FakeSoundDevice:
    """The parts of the sounddevice module that mic.py uses."""

    PortAudioError = PortAudioError

    def __init__(
        self,
        devices: list[tuple[str, int, float]] | None = None,
        default: int = 0,
        refused_rates: tuple[int, ...] = (),
        open_error: PortAudioError | None = None,
    ) -> None:
        if devices is None:
            devices = [("Built-in Mic", 2, 48000.0), ("HDMI Out", 0, 48000.0)]
        self.devices = [
            {
                "index": i,
                "name": name,
                "hostapi": 0,
                "max_input_channels": channels,
                "max_output_channels": 2,
                "default_samplerate": rate,
            }
            for i, (name, channels, rate) in enumerate(devices)
        ]
        self.default = SimpleNamespace(device=[default, default])
        self.refused_rates = refused_rates
        self.open_error = open_error
        self.checked: list[int] = []
        self.streams: list[FakeStream] = []

    def query_devices(self) -> list[dict[str, Any]]:
        return self.devices

    def query_hostapis(self) -> list[dict[str, Any]]:
        return [{"name": "ALSA"}]

    def check_input_settings(self, device: int, channels: int, dtype: str, samplerate: int) -> None:
        self.checked.append(samplerate)
        if samplerate in self.refused_rates:
            raise PortAudioError("Invalid sample rate", INVALID_SAMPLE_RATE)

    def RawInputStream(self, **kwargs: Any) -> FakeStream:
        if self.open_error is not None:
            raise self.open_error
        stream = FakeStream(self, **kwargs)
        self.streams.append(stream)
        return stream


def usb_mics() -> FakeSoundDevice:
    return FakeSoundDevice(
        devices=[
            ("default", 32, 44100.0),
            ("sysdefault", 32, 44100.0),
            ("Speakers", 0, 48000.0),
            ("USB Mic A", 1, 48000.0),
            ("HDMI", 0, 48000.0),
            ("Webcam", 2, 16000.0),
            ("Line", 2, 44100.0),
            ("usb mic b", 1, 48000.0),
        ],
        default=0,
    )


# ---- devices -------------------------------------------------------------------------------


def test_list_input_devices_keeps_inputs_only_and_marks_the_default() -> None:
    devices = mic.list_input_devices(usb_mics())
    assert [d.describe() for d in devices] == [
        "0: default",
        "1: sysdefault",
        "3: USB Mic A",
        "5: Webcam",
        "6: Line",
        "7: usb mic b",
    ]
    assert [d.index for d in devices if d.is_default] == [0]
    assert devices[2] == mic.InputDevice(3, "USB Mic A", "ALSA", 48000.0, 1, False)


def test_devices_table_rows_and_json_describe_every_input_device() -> None:
    devices = mic.list_input_devices(FakeSoundDevice())
    assert mic.devices_table_rows(devices) == [("*", "0", "Built-in Mic", "ALSA", "2", "48000 Hz")]
    assert devices[0].to_json() == {
        "index": 0,
        "name": "Built-in Mic",
        "hostapi": "ALSA",
        "default_samplerate": 48000.0,
        "max_input_channels": 2,
        "is_default": True,
    }


def test_no_device_spec_selects_the_default_input() -> None:
    assert mic.select_device(None, usb_mics()).name == "default"


def test_without_a_default_the_first_input_device_is_used() -> None:
    sd = usb_mics()
    sd.default.device = [-1, -1]
    assert mic.select_device(None, sd).index == 0


def test_an_integer_selects_the_device_by_index() -> None:
    assert mic.select_device("5", usb_mics()).name == "Webcam"


def test_an_index_without_input_channels_is_refused() -> None:
    with pytest.raises(UsageError, match=r"--device 2 \(Speakers\) has no input channels"):
        mic.select_device("2", usb_mics())


def test_an_unknown_index_lists_the_input_devices() -> None:
    with pytest.raises(UsageError) as e:
        mic.select_device("42", usb_mics())
    assert e.value.message == (
        "--device 42: no such device; input devices: 0: default, 1: sysdefault, "
        "3: USB Mic A, 5: Webcam, 6: Line, 7: usb mic b"
    )
    assert e.value.status == ExitStatus.USAGE


def test_a_name_substring_matching_one_device_selects_it_ignoring_case() -> None:
    assert mic.select_device("webCAM", usb_mics()).index == 5


def test_an_exact_name_wins_over_longer_names_containing_it() -> None:
    assert mic.select_device("DEFAULT", usb_mics()).index == 0


def test_an_ambiguous_name_lists_the_candidates() -> None:
    with pytest.raises(UsageError) as e:
        mic.select_device("USB", usb_mics())
    assert e.value.message == "--device 'USB' is ambiguous: 3: USB Mic A, 7: usb mic b"


def test_an_unknown_name_lists_the_input_devices() -> None:
    with pytest.raises(UsageError) as e:
        mic.select_device("Studio", FakeSoundDevice())
    assert e.value.message == (
        "--device 'Studio' matches no input device; input devices: 0: Built-in Mic"
    )


def test_no_input_device_at_all_is_a_usage_error() -> None:
    sd = FakeSoundDevice(devices=[("HDMI Out", 0, 48000.0)], default=-1)
    with pytest.raises(UsageError, match="no microphone found"):
        mic.select_device(None, sd)
    with pytest.raises(UsageError, match="no microphone found"):
        mic.MicSource(sd=sd)


# ---- PortAudio missing ---------------------------------------------------------------------


class _PortAudioMissing(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import sounddevice`` fail the way it does on Linux without libportaudio2."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == "sounddevice":
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        raise OSError("PortAudio library not found")


def test_portaudio_missing_becomes_one_line_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_PortAudioMissing(), *sys.meta_path])
    with pytest.raises(UsageError) as e:
        mic.MicSource()
    assert e.value.message == (
        "the microphone needs PortAudio: install the system package libportaudio2"
        " (apt-get install libportaudio2)"
    )
    assert e.value.status == ExitStatus.USAGE
    with pytest.raises(UsageError, match="PortAudio"):
        mic.list_input_devices()


def test_importing_the_mic_module_does_not_import_sounddevice() -> None:
    code = "import sys, streamcli.audio.mic; print('sounddevice' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


FAKE_SOUNDDEVICE = """
class PortAudioError(Exception):
    pass
class _Stream:
    def __init__(self, **kwargs):
        self.callback = kwargs["callback"]
    def start(self):
        pass
default = type("default", (), {"device": [0, 0]})
def query_devices():
    return [{"index": 0, "name": "Mic", "hostapi": 0, "max_input_channels": 1,
             "default_samplerate": 16000.0}]
def query_hostapis():
    return [{"name": "ALSA"}]
def check_input_settings(**kwargs):
    pass
RawInputStream = _Stream
"""


def test_capture_from_launch_does_not_wait_for_numpy(tmp_path) -> None:
    # numpy's import is about 60-100 ms of the time before capture runs: the microphone is
    # opened, started and fed before anything imports it.
    (tmp_path / "sounddevice.py").write_text(FAKE_SOUNDDEVICE)
    code = (
        "import sys; from streamcli.audio import mic; mic.prestart(None, None); "
        "source = mic._prestarted[1]; status = type('s', (), {'input_overflow': False}); "
        "source._stream.callback(memoryview(bytes(640)), 160, None, status); "
        "print('numpy' in sys.modules, source._early_frames)"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["False", "160"]


# ---- opening -------------------------------------------------------------------------------


def test_the_wanted_rate_is_opened_when_the_device_takes_it() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(want_rate=16000, sd=sd)
    assert (source.rate, source.channels) == (16000, 1)
    (stream,) = sd.streams
    assert stream.kwargs["samplerate"] == 16000
    assert stream.kwargs["dtype"] == "float32"
    assert stream.kwargs["blocksize"] == 800  # 50 ms
    assert source.live is True and source.duration is None
    assert source.label == "microphone 0: Built-in Mic"


def test_a_device_chosen_by_select_device_is_opened_as_is() -> None:
    sd = usb_mics()
    device = mic.select_device("webcam", sd)
    source = mic.MicSource(device=device, sd=sd)
    assert source.device is device
    assert sd.streams[0].kwargs["device"] == 5


def test_a_refused_rate_falls_back_to_the_device_default_rate() -> None:
    sd = FakeSoundDevice(refused_rates=(16000,))
    source = mic.MicSource(want_rate=16000, sd=sd)
    assert sd.checked == [16000, 48000]
    assert source.rate == 48000
    assert sd.streams[0].kwargs["samplerate"] == 48000


def test_a_device_refusing_every_rate_is_one_clear_line() -> None:
    sd = FakeSoundDevice(refused_rates=(16000, 48000))
    with pytest.raises(UsageError) as e:
        mic.MicSource(want_rate=16000, sd=sd)
    assert "Invalid sample rate" not in e.value.message
    assert e.value.message.startswith(
        "the microphone 0: Built-in Mic records at none of 16000 Hz or 48000 Hz"
    )


def test_channels_are_capped_by_the_device() -> None:
    assert mic.MicSource(channels=8, sd=FakeSoundDevice()).channels == 2
    assert mic.MicSource(channels=None, sd=FakeSoundDevice()).channels == 1
    assert mic.MicSource(channels=0, sd=FakeSoundDevice()).channels == 1


def test_a_busy_device_is_a_usage_error() -> None:
    busy = PortAudioError("Error opening InputStream: Device unavailable", DEVICE_UNAVAILABLE)
    with pytest.raises(UsageError) as e:
        mic.MicSource(sd=FakeSoundDevice(open_error=busy))
    assert e.value.message == (
        "cannot open the microphone 0: Built-in Mic: Device unavailable"
        " (in use by another program?)"
    )


# ---- the callback → asyncio bridge ---------------------------------------------------------


async def started(source: mic.MicSource, sd: FakeSoundDevice) -> tuple[asyncio.Task, FakeStream]:
    """Start consuming ``source.blocks()``; return once the stream is started."""

    async def collect() -> list[np.ndarray]:
        return [block async for block in source.blocks()]

    task = asyncio.create_task(collect())
    stream = sd.streams[-1]
    while not stream.started.is_set():
        await asyncio.sleep(0)
    return task, stream


def numbered(n: int, frames: int = 160) -> np.ndarray:
    return np.full((frames, 1), n, dtype=np.float32)


async def test_every_block_from_the_callback_thread_arrives_in_order() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd)
    task, stream = await started(source, sd)
    buffer = np.zeros((160, 1), dtype=np.float32)

    def portaudio_thread() -> None:
        for n in range(5000):
            buffer[:] = n  # PortAudio reuses one buffer: the source must copy
            stream.deliver(buffer)

    await asyncio.to_thread(portaudio_thread)
    source.stop()
    blocks = await task
    assert [int(b[0, 0]) for b in blocks] == list(range(5000))
    assert all(b.shape == (160, 1) and b.dtype == np.float32 for b in blocks)
    assert all((b == b[0, 0]).all() for b in blocks)
    assert source.frames_captured == 5000 * 160
    assert source.take_warnings() == []
    assert stream.aborted


async def test_blocks_are_consumed_while_the_callback_thread_is_still_delivering() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd)
    received: list[int] = []

    async def consume() -> None:
        gen = source.blocks()
        first = await anext(gen)
        received.append(int(first[0, 0]))
        async for block in gen:
            received.append(int(block[0, 0]))

    task = asyncio.create_task(consume())
    while not sd.streams or not sd.streams[0].started.is_set():
        await asyncio.sleep(0)
    thread = threading.Thread(
        target=lambda: [sd.streams[0].deliver(numbered(n)) for n in range(2000)]
    )
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.001)  # the consumer runs between deliveries
    source.stop()
    await task
    assert received == list(range(2000))


async def test_stop_drains_what_was_captured_and_ignores_later_blocks() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd)
    task, stream = await started(source, sd)
    await asyncio.to_thread(lambda: [stream.deliver(numbered(n)) for n in range(5)])
    source.stop()
    stream.deliver(numbered(99))  # after stop(): not captured
    blocks = await task
    assert [int(b[0, 0]) for b in blocks] == [0, 1, 2, 3, 4]


async def test_stop_before_blocks_yields_nothing() -> None:
    source = mic.MicSource(sd=FakeSoundDevice())
    source.stop()
    assert [b async for b in source.blocks()] == []


async def test_overflows_are_counted_and_reported_once() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd)
    task, stream = await started(source, sd)

    def portaudio_thread() -> None:
        for n in range(10):
            stream.deliver(numbered(n), overflow=n in (2, 5, 7))

    await asyncio.to_thread(portaudio_thread)
    source.stop()
    assert len(await task) == 10  # an overflow flag loses audio before us, not the block
    assert source.take_warnings() == [
        "input overflow: the system dropped microphone audio (3 times)"
    ]
    assert source.take_warnings() == []


async def test_a_stuck_consumer_bounds_the_queue_and_reports_the_drop() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd, want_rate=16000, queue_limit_seconds=1.0)
    gen = source.blocks()
    first = asyncio.ensure_future(anext(gen))
    while not sd.streams[0].started.is_set():
        await asyncio.sleep(0)
    stream = sd.streams[0]
    stream.deliver(numbered(0, 1600))
    blocks = [await first]  # then the consumer stops reading
    await asyncio.to_thread(lambda: [stream.deliver(numbered(n, 1600)) for n in range(1, 15)])
    source.stop()
    blocks += [b async for b in gen]
    # 1 s at 16 kHz holds 10 blocks of 0.1 s: blocks 11 to 14 did not fit.
    assert [int(b[0, 0]) for b in blocks] == list(range(11))
    assert source.take_warnings() == ["fell behind: dropped 0.4 s of microphone audio (4 times)"]


async def test_a_stream_that_ends_on_its_own_ends_blocks_with_a_warning() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd)
    task, stream = await started(source, sd)
    await asyncio.to_thread(lambda: [stream.deliver(numbered(n)) for n in range(3)])
    await asyncio.to_thread(stream.finished_callback)  # PortAudio: the device went away
    assert len(await task) == 3
    assert source.take_warnings() == [
        "the microphone 0: Built-in Mic stopped delivering audio (unplugged?)"
    ]


async def test_a_silent_device_is_reported_instead_of_hanging() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd, stall_seconds=0.05)
    with pytest.raises(UsageError, match=r"delivered no audio for 0\.05 s"):
        async for _ in source.blocks():
            pass


async def test_level_is_the_rms_of_the_last_block_in_dbfs() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd)
    assert source.level is None
    task, stream = await started(source, sd)
    t = np.arange(1600) / 16000
    stream.deliver((np.sin(2 * np.pi * 1000 * t)[:, None] * 0.5).astype(np.float32))
    await asyncio.sleep(0)
    assert source.level == pytest.approx(-9.03, abs=0.01)  # 0.5 amplitude sine: -6 - 3 dB
    stream.deliver(np.zeros((160, 1), dtype=np.float32))
    await asyncio.sleep(0)
    assert source.level == mic.SILENCE_DB
    source.stop()
    await task


def test_close_stops_and_closes_the_stream() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd)
    source.close()
    source.close()
    assert sd.streams[0].aborted and sd.streams[0].closed


async def test_audio_captured_before_the_session_reads_is_delivered_first_in_order() -> None:
    """``start()`` right after opening (before connecting, before the loop reads): a user who
    talks right after Enter loses nothing, and blocks racing the hand-over keep their order."""
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd)
    source.start()
    stream = sd.streams[0]
    assert stream.started.is_set()
    early = threading.Thread(target=lambda: [stream.deliver(numbered(n)) for n in range(300)])
    early.start()
    early.join()  # all before anyone reads: kept, not dropped
    racing = threading.Thread(
        target=lambda: [stream.deliver(numbered(n)) for n in range(300, 3000)]
    )
    received: list[int] = []

    async def consume() -> None:
        async for block in source.blocks():
            received.append(int(block[0, 0]))

    task = asyncio.create_task(consume())
    racing.start()  # delivers while blocks() attaches to the loop
    while racing.is_alive():
        await asyncio.sleep(0.001)
    source.stop()
    await task
    assert received == list(range(3000))


async def test_early_capture_is_bounded_like_the_queue() -> None:
    sd = FakeSoundDevice()
    source = mic.MicSource(sd=sd, want_rate=16000, block_ms=50, queue_limit_seconds=1.0)
    source.start()
    for n in range(30):  # 1.5 s of 50 ms blocks, nobody reading yet
        sd.streams[0].deliver(numbered(n, frames=800))
    received = []

    async def consume() -> None:
        async for block in source.blocks():
            received.append(int(block[0, 0]))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    source.stop()
    await task
    assert received == list(range(20))  # 1 s kept; the rest dropped, and reported
    assert any("dropped" in w for w in source.take_warnings())


def test_the_command_line_says_when_to_capture_from_launch() -> None:
    assert mic.wants_prestart(["melvin", "--mic"]) == (None, None)
    assert mic.wants_prestart(["vosk", "--mic", "--device", "USB", "--url", "ws://x"]) == (
        "USB",
        None,
    )
    assert mic.wants_prestart(["bodhi", "--mic", "--device=2", "--split-channels"]) == ("2", 2)
    split = [
        "phebi",
        "--mic",
        "--split-channels",
        "--speaker",
        "a",
        "--speaker=b",
        "--speaker",
        "c",
    ]
    assert mic.wants_prestart(split) == (None, 3)
    assert mic.wants_prestart(["melvin", "talk.wav"]) is None
    assert mic.wants_prestart(["melvin", "--mic", "--help"]) is None
    assert mic.wants_prestart(["serve", "melvin", "--mic"]) is None


def test_a_prestarted_source_is_adopted_only_for_the_same_request(monkeypatch) -> None:
    sd = FakeSoundDevice()
    monkeypatch.setattr(mic, "import_sounddevice", lambda: sd)
    mic.prestart(None, None)
    (stream,) = sd.streams
    assert stream.started.is_set()  # capturing before any command code ran
    source = mic.adopt(None, None)
    assert source is not None and source._stream is stream
    assert mic.adopt(None, None) is None  # handed over once
    mic.prestart(None, None)
    assert mic.adopt("Built-in", None) is None  # another device asked for: closed
    assert sd.streams[1].closed
    source.close()


def test_a_failed_prestart_is_left_for_the_command_to_report(monkeypatch) -> None:
    sd = FakeSoundDevice(devices=[("HDMI Out", 0, 48000.0)])  # no input at all
    monkeypatch.setattr(mic, "import_sounddevice", lambda: sd)
    mic.prestart(None, None)
    assert mic.adopt(None, None) is None
