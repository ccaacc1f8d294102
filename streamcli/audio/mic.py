"""The microphone as an AudioSource, and the list of input devices (``streamcli devices``).

Theory of operation. PortAudio (through ``sounddevice``) calls ``MicSource._callback`` on its
own thread with each captured block. The callback copies the block (PortAudio reuses its
buffer) and hands it to the asyncio loop with ``call_soon_threadsafe``; everything else —
the queue, the counters, the level — lives on the loop thread, so there are no locks.
``blocks()`` yields from that queue until ``stop()`` puts an end marker behind the blocks
already handed over: what was captured before ``stop()`` is delivered, nothing is lost on the
way. The device clock paces the source (``live = True``); the converter downstream resamples,
so ``rate`` is the rate the device was actually opened at, which may differ from the rate
asked for.

``sounddevice`` is imported lazily: its import loads PortAudio and scans the devices, which
commands that do not use the microphone must never pay for (or fail on). The stream is a raw
one and the callback keeps bytes: numpy is imported only when the loop turns them into arrays,
so a microphone started at launch (``prestart``) does not wait for numpy either.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when the loop attaches: about 100 ms less before capture
    import asyncio

    import numpy as np

from streamcli.exit import UsageError

PORTAUDIO_MISSING = (
    "the microphone needs PortAudio: install the system package libportaudio2"
    " (apt-get install libportaudio2)"
)
SILENCE_DB = -100.0  # the level reported for digital silence (log10(0) has no floor)
DEFAULT_QUEUE_LIMIT_SECONDS = 60.0
DEFAULT_STALL_SECONDS = 5.0

# PortAudio's PaErrorCode values that mean "this device does not take that format": the next
# candidate (another rate, another channel count) is tried instead of failing.
_PA_INVALID_CHANNEL_COUNT = -9998
_PA_INVALID_SAMPLE_RATE = -9997
_FORMAT_REFUSED = {_PA_INVALID_CHANNEL_COUNT, _PA_INVALID_SAMPLE_RATE}
_PA_DEVICE_UNAVAILABLE = -9985  # ALSA: another program holds the device ("Device busy")


def import_sounddevice() -> ModuleType:
    """The ``sounddevice`` module, or a one-line UsageError when PortAudio is missing."""
    try:
        import sounddevice
    except OSError:
        # On Linux the import itself raises "OSError: PortAudio library not found".
        raise UsageError(PORTAUDIO_MISSING) from None
    except ImportError:
        raise UsageError(
            "the microphone needs the Python package sounddevice (pip install sounddevice)"
        ) from None
    return sounddevice


# ---- devices -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    default_samplerate: float
    max_input_channels: int
    is_default: bool

    def describe(self) -> str:
        return f"{self.index}: {self.name}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


DEVICE_COLUMNS = ("", "index", "name", "host API", "channels", "default rate")


def list_input_devices(sd: ModuleType | None = None) -> list[InputDevice]:
    """Every device PortAudio sees that has at least one input channel, in index order."""
    sd = sd or import_sounddevice()
    return [d for d in _all_devices(sd) if d.max_input_channels > 0]


def devices_table_rows(devices: list[InputDevice]) -> list[tuple[str, ...]]:
    """Rows for a table under ``DEVICE_COLUMNS``; ``*`` marks the default device."""
    return [
        (
            "*" if d.is_default else "",
            str(d.index),
            d.name,
            d.hostapi,
            str(d.max_input_channels),
            f"{d.default_samplerate:g} Hz",
        )
        for d in devices
    ]


def select_device(spec: str | None, sd: ModuleType | None = None) -> InputDevice:
    """``--device``: None → the default input; ``"3"`` → index 3; else a name substring.

    A name that equals one device's name exactly (ignoring case) wins over substring matches,
    so ``--device default`` is not ambiguous next to ``sysdefault``.
    """
    sd = sd or import_sounddevice()
    every = _all_devices(sd)
    inputs = [d for d in every if d.max_input_channels > 0]
    if not inputs:
        raise UsageError(
            "no microphone found: PortAudio sees no input device"
            " (none plugged in, or the sound server is not running)"
        )
    available = ", ".join(d.describe() for d in inputs)
    if spec is None or not spec.strip():
        return next((d for d in inputs if d.is_default), inputs[0])
    spec = spec.strip()
    try:
        index = int(spec)
    except ValueError:
        return _by_name(spec, inputs, available)
    found = next((d for d in every if d.index == index), None)
    if found is None:
        raise UsageError(f"--device {index}: no such device; input devices: {available}")
    if found.max_input_channels < 1:
        raise UsageError(
            f"--device {index} ({found.name}) has no input channels; input devices: {available}"
        )
    return found


def _by_name(spec: str, inputs: list[InputDevice], available: str) -> InputDevice:
    wanted = spec.casefold()
    exact = [d for d in inputs if d.name.casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    matches = exact or [d for d in inputs if wanted in d.name.casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        candidates = ", ".join(d.describe() for d in matches)
        raise UsageError(f"--device {spec!r} is ambiguous: {candidates}")
    raise UsageError(f"--device {spec!r} matches no input device; input devices: {available}")


def _all_devices(sd: ModuleType) -> list[InputDevice]:
    try:
        devices = list(sd.query_devices())
        hostapis = list(sd.query_hostapis())
        default_index = _default_input_index(sd)
    except sd.PortAudioError as e:
        raise UsageError(f"cannot list the audio devices: {e}") from None
    out = []
    for info in devices:
        api = info.get("hostapi", -1)
        out.append(
            InputDevice(
                index=int(info["index"]),
                name=str(info["name"]),
                hostapi=str(hostapis[api]["name"]) if 0 <= api < len(hostapis) else "?",
                default_samplerate=float(info["default_samplerate"]),
                max_input_channels=int(info["max_input_channels"]),
                is_default=int(info["index"]) == default_index,
            )
        )
    return out


def _default_input_index(sd: ModuleType) -> int | None:
    # sounddevice resolves an unset default to PortAudio's (Pa_GetDefaultInputDevice); -1 = none.
    index = sd.default.device[0]
    return index if isinstance(index, int) and index >= 0 else None


# ---- the source ----------------------------------------------------------------------------


def rms_dbfs(block: np.ndarray) -> float:
    """RMS level of a block in dB relative to full scale (a full-scale square wave is 0)."""
    import numpy as np

    if not block.size:
        return SILENCE_DB
    rms = math.sqrt(float(np.mean(np.square(block, dtype=np.float64))))
    return max(SILENCE_DB, 20 * math.log10(rms)) if rms > 0 else SILENCE_DB


class MicSource:
    """An input device as an AudioSource: float32 blocks at the rate the device opened."""

    live = True
    duration: float | None = None

    def __init__(
        self,
        device: InputDevice | str | None = None,
        want_rate: int | None = 16000,
        channels: int | None = None,
        block_ms: int = 50,
        queue_limit_seconds: float | None = DEFAULT_QUEUE_LIMIT_SECONDS,
        stall_seconds: float | None = DEFAULT_STALL_SECONDS,
        sd: ModuleType | None = None,
    ) -> None:
        self._sd = sd or import_sounddevice()
        # A device already chosen by select_device() is used as is (no second scan).
        self.device = device if isinstance(device, InputDevice) else select_device(device, self._sd)
        self.label = f"microphone {self.device.describe()}"
        self.level: float | None = None  # dBFS of the last block; None before the first one
        self.frames_captured = 0
        self._block_ms = block_ms
        self._queue_limit = queue_limit_seconds
        self._stall_seconds = stall_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[np.ndarray | None] | None = None  # made by _attach
        self._queued_frames = 0
        self._stopping = False  # set by stop() on any thread; read by the callback
        self._ended = False  # the end marker is queued (loop thread only)
        self._overflows = 0
        self._dropped_blocks = 0
        self._dropped_frames = 0
        self._device_lost = False
        self._started = False
        # Blocks captured before the event loop runs (``start()`` right after opening, while the
        # session still imports and connects): kept here as (samples, frames, overflow), handed
        # to the queue by ``blocks()``.
        self._early: list[tuple[bytes, int, bool]] = []
        self._early_frames = 0
        self._attach_lock = threading.Lock()
        self._stream = self._open(
            want_rate, max(1, min(channels or 1, self.device.max_input_channels))
        )

    # ---- opening ----------------------------------------------------------------------------
    def _open(self, want_rate: int | None, want_channels: int) -> Any:
        """Open at the first (channels, rate) the device takes: the wanted rate, else its own.

        Channels are kept before the rate is given up: resampling is cheap, but an interface
        that only records in stereo is still opened (in stereo) when mono was asked for.
        """
        sd, dev = self._sd, self.device
        rates = _unique([want_rate, round(dev.default_samplerate)])
        counts = _unique([want_channels, min(2, dev.max_input_channels)])
        for channels in counts:
            for rate in rates:
                try:
                    sd.check_input_settings(
                        device=dev.index, channels=channels, dtype="float32", samplerate=rate
                    )
                    stream = sd.RawInputStream(
                        device=dev.index,
                        samplerate=rate,
                        channels=channels,
                        dtype="float32",
                        blocksize=max(1, round(rate * self._block_ms / 1000)),
                        callback=self._callback,
                        finished_callback=self._finished,
                    )
                except ValueError:
                    continue  # sounddevice's own check: e.g. more channels than the device has
                except sd.PortAudioError as e:
                    if _pa_code(e) in _FORMAT_REFUSED:
                        continue
                    raise UsageError(f"cannot open the {self.label}: {_pa_reason(e)}") from None
                self.rate, self.channels = rate, channels
                return stream
        tried = " or ".join(f"{r} Hz" for r in rates)
        raise UsageError(
            f"the {self.label} records at none of {tried} with {' or '.join(map(str, counts))}"
            " channel(s); pick another with --device (see `streamcli devices`)"
        )

    # ---- PortAudio's thread -----------------------------------------------------------------
    def _callback(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        if self._stopping:
            return
        # PortAudio reuses indata's memory for the next block: copy before handing over.
        data, overflow = bytes(indata), bool(status.input_overflow)
        if self._loop is None:
            with self._attach_lock:
                if self._loop is None:  # not attached yet: keep it for blocks()
                    self._keep_early(data, frames, overflow)
                    return
        self._post(self._receive, data, frames, overflow)

    def _keep_early(self, data: bytes, frames: int, overflow: bool) -> None:
        if self._full(self._early_frames, frames):
            return
        self._early.append((data, frames, overflow))
        self._early_frames += frames

    def _finished(self) -> None:
        """The stream went inactive: after close(), or on its own (device unplugged)."""
        self._post(self._end, not self._stopping)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop's thread, after everything posted before."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the session is over
            self._loop.call_soon_threadsafe(fn, *args)

    def _full(self, pending: int, frames: int) -> bool:
        """Past ``queue_limit_seconds`` waiting: the block is dropped (and counted) to bound
        the memory."""
        limit = None if self._queue_limit is None else self._queue_limit * self.rate
        if limit is None or pending + frames <= limit:
            return False
        self._dropped_blocks += 1
        self._dropped_frames += frames
        return True

    # ---- the loop's thread ------------------------------------------------------------------
    @property
    def _q(self) -> asyncio.Queue[np.ndarray | None]:
        assert self._queue is not None, "used before blocks() attached the loop"
        return self._queue

    def _receive(self, data: bytes, frames: int, overflow: bool) -> None:
        if self._ended:
            return
        import numpy as np

        block = np.frombuffer(data, dtype=np.float32).reshape(frames, self.channels)
        if overflow:
            self._overflows += 1
        self.level = rms_dbfs(block)
        self.frames_captured += frames
        if self._full(self._queued_frames, frames):
            return  # the consumer is stuck (e.g. a server that stopped reading)
        self._queued_frames += frames
        self._q.put_nowait(block)

    def _end(self, device_lost: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        self._device_lost = self._device_lost or device_lost
        self._q.put_nowait(None)

    # ---- AudioSource ------------------------------------------------------------------------
    def start(self) -> None:
        """Start capturing now, before the session connects (and before the event loop runs):
        a user who talks right after Enter loses nothing; ``blocks()`` delivers it first."""
        if self._started or self._stopping or self._stream is None:
            return
        try:
            self._stream.start()
        except self._sd.PortAudioError as e:
            raise UsageError(f"cannot start the {self.label}: {_pa_reason(e)}") from None
        self._started = True

    def _attach(self) -> None:
        """From now on the callback posts to this loop; what came before goes first."""
        import asyncio

        with self._attach_lock:
            self._queue = asyncio.Queue()
            self._loop = asyncio.get_running_loop()
            early, self._early, self._early_frames = self._early, [], 0
        for data, frames, overflow in early:
            self._receive(data, frames, overflow)

    async def blocks(self) -> AsyncGenerator[np.ndarray, None]:
        if self._stopping or self._stream is None:
            return
        self._attach()
        self.start()
        try:
            while True:
                block = await self._next_block()
                if block is None:
                    return
                self._queued_frames -= len(block)
                yield block
        finally:
            self._stopping = True
            self._ended = True
            self._abort_stream()

    async def _next_block(self) -> np.ndarray | None:
        if self._stall_seconds is None or not self._q.empty():
            return await self._q.get()
        try:
            import asyncio

            return await asyncio.wait_for(self._q.get(), self._stall_seconds)
        except TimeoutError:
            raise UsageError(
                f"the {self.label} delivered no audio for {self._stall_seconds:g} s"
                " (unplugged, or held by another program?)"
            ) from None

    def stop(self) -> None:
        """End ``blocks()`` after the blocks captured so far. Safe from any thread."""
        if self._stopping:
            return
        self._stopping = True
        # Queued behind every block the callback already handed over: none is lost.
        self._post(self._end)

    def close(self) -> None:
        self.stop()
        self._abort_stream()
        if self._stream is not None:
            self._stream.close(ignore_errors=True)
            self._stream = None

    def _abort_stream(self) -> None:
        if self._stream is not None:
            self._stream.abort(ignore_errors=True)

    def take_warnings(self) -> list[str]:
        """Problems since the last call, one line each (the session makes warning events)."""
        warnings = []
        if self._overflows:
            warnings.append(
                f"input overflow: the system dropped microphone audio ({_times(self._overflows)})"
            )
        if self._dropped_blocks:
            warnings.append(
                f"fell behind: dropped {self._dropped_frames / self.rate:.1f} s of microphone"
                f" audio ({_times(self._dropped_blocks)})"
            )
        if self._device_lost:
            warnings.append(f"the {self.label} stopped delivering audio (unplugged?)")
        self._overflows = self._dropped_blocks = self._dropped_frames = 0
        self._device_lost = False
        return warnings


def _unique(values: list[int | None]) -> list[int]:
    out: list[int] = []
    for v in values:
        if v is not None and v > 0 and v not in out:
            out.append(v)
    return out


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _pa_code(e: Exception) -> int | None:
    return e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else None


def _pa_reason(e: Exception) -> str:
    # "Error opening InputStream: Device unavailable" → "Device unavailable"
    text = str(e.args[0]) if e.args else str(e)
    text = text.split(": ", 1)[1] if text.startswith("Error ") and ": " in text else text
    if _pa_code(e) == _PA_DEVICE_UNAVAILABLE:
        text += " (in use by another program?)"
    return text


# ---- capture from launch ------------------------------------------------------------------------
# Typer, the option checks and the session's libraries take a few hundred milliseconds before a
# command's body runs. ``streamcli … --mic`` starts capturing before all that (``__main__``
# calls ``prestart`` with the device and channel count read off the command line); the command
# then ``adopt``s the running source when it asks for the same device and channels, and
# everything captured since launch is sent once the session is connected. A request that
# differs (or a pre-start that failed) gets a source opened the usual way.
_prestarted: tuple[tuple[str | None, int | None], MicSource] | None = None
STREAMING_COMMANDS = ("melvin", "phebi", "bodhi", "vosk", "veridas")


def wants_prestart(argv: list[str]) -> tuple[str | None, int | None] | None:
    """(device spec, channels) when ``argv`` streams from the microphone, else None."""
    if not argv or argv[0] not in STREAMING_COMMANDS or "--mic" not in argv:
        return None
    if any(a in ("--help", "-h") for a in argv):
        return None
    device: str | None = None
    speakers = 0
    for i, arg in enumerate(argv):
        if arg == "--device" and i + 1 < len(argv):
            device = argv[i + 1]
        elif arg.startswith("--device="):
            device = arg.split("=", 1)[1]
        elif arg == "--speaker" or arg.startswith("--speaker="):
            speakers += 1
    channels = max(2, speakers) if "--split-channels" in argv else None
    return device, channels


def prestart(device: str | None, channels: int | None) -> None:
    """Open and start the microphone now; any failure is left for the command to report."""
    global _prestarted
    try:
        source = MicSource(device=device, want_rate=16000, channels=channels)
        source.start()
    except Exception:
        return
    _prestarted = ((device, channels), source)


def adopt(device: str | None, channels: int | None) -> MicSource | None:
    """The pre-started source, when it was opened for this same request (else it is closed)."""
    global _prestarted
    if _prestarted is None:
        return None
    (request, source), _prestarted = _prestarted, None
    if request == (device, channels):
        return source
    source.close()
    return None
