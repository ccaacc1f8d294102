"""``streamcli melvin`` and ``streamcli demo``: the session, then the REST exports."""

from __future__ import annotations

import asyncio
import secrets
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from streamcli.backends.base import Backend
from streamcli.backends.melvin import DEFAULT_SEAT_TIMEOUT, MelvinBackend
from streamcli.commands.options import Common, recognizer_kind
from streamcli.commands.run import run_streaming
from streamcli.exit import AuthError, ConnectError, ExitStatus, ServerError, UsageError
from streamcli.redact import mask_all, public_url, redact_url, url_secrets

if TYPE_CHECKING:  # aiohttp loads only when a session runs
    from streamcli.transport.websocket import WireOptions

EXPORT_KINDS = ("transcript", "audio")


def parse_exports(value: str | None) -> list[str]:
    if not value:
        return []
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    bad = [k for k in kinds if k not in EXPORT_KINDS]
    if bad:
        raise UsageError(f"--export: unknown kind {bad[0]!r} (choose from transcript,audio)")
    return kinds


def default_rest_url(ws_url: str) -> str:
    p = urlsplit(ws_url)
    scheme = "https" if p.scheme == "wss" else "http"
    return urlunsplit((scheme, f"{p.hostname}:8393", "", "", ""))


def check_ws_url(url: str) -> None:
    p = urlsplit(url)
    if p.scheme not in ("ws", "wss") or not p.hostname:
        raise UsageError(
            f"--url {redact_url(url)!r}: expected ws://HOST[:PORT] or wss://HOST[:PORT]"
        )
    try:
        p.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise UsageError(f"--url {redact_url(url)!r}: bad port") from None


def run_melvin(
    common: Common,
    url: str,
    api_key: str | None,
    export: str | None,
    export_dir: str,
    rest_url: str | None,
    rest_key: str | None = None,
    seat_timeout: float = DEFAULT_SEAT_TIMEOUT,
) -> int:
    check_ws_url(url)
    kinds = parse_exports(export)
    if kinds and common.concurrency:
        raise UsageError(
            "--export does not combine with --concurrency (a load test keeps no exports)"
        )
    if kinds and common.batch:
        raise UsageError("--export takes one input, not a batch run")
    status, backends = run_streaming(
        common,
        "melvin",
        lambda speaker: MelvinBackend(url, api_key, speaker=speaker, seat_timeout=seat_timeout),
    )
    if status != ExitStatus.OK or not kinds:
        return status
    melvins = [b for b in backends if isinstance(b, MelvinBackend) and b.export_id]
    ids = [b.export_id for b in melvins if b.export_id]
    for b in melvins:
        if b.resumed_at and not common.quiet:
            # Only the connection that ended with eof has an export: Melvin keeps nothing of
            # a connection that dropped (melvin.md: "client disconnect without eof").
            print(
                f"streamcli: the export {b.export_id} holds the last connection only: the input "
                f"from {b.resumed_at:g} s on (Melvin keeps nothing of a connection that dropped)",
                file=sys.stderr,
                flush=True,
            )
    base = rest_url or default_rest_url(url)
    key = rest_key if rest_key is not None else api_key
    wire = common.session_options().wire  # the session's --ca-file / --insecure hold here too
    asyncio.run(fetch_exports(base, key, ids, kinds, Path(export_dir), common.quiet, wire))
    return status


async def fetch_exports(
    rest_url: str,
    api_key: str | None,
    ids: list[str],
    kinds: list[str],
    out_dir: Path,
    quiet: bool,
    wire: WireOptions,
) -> None:
    import aiohttp

    from streamcli.transport.websocket import tls_failure, tls_reason

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--export-dir {out_dir}: {e.strerror}") from None
    headers = {"Authorization": api_key} if api_key else {}
    timeout = aiohttp.ClientTimeout(total=60)
    failures: list[str] = []
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        for export_id in ids:
            for kind in kinds:
                target = out_dir / f"{export_id}.{'json' if kind == 'transcript' else 'wav'}"
                url = f"{rest_url.rstrip('/')}/export/{kind}/{export_id}"
                try:
                    async with http.get(url, ssl=wire.ssl_context()) as resp:
                        body = await resp.read()
                        status = resp.status
                except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as e:
                    raise tls_failure(public_url(rest_url), tls_reason(e)) from None
                except aiohttp.ClientError as e:
                    reason = mask_all(str(e), url_secrets(rest_url))
                    raise ConnectError(
                        f"cannot fetch the export from {public_url(rest_url)}: {reason}"
                    ) from None
                if status == 401:
                    raise AuthError(f"the Melvin REST API rejected the key ({public_url(url)})")
                if status == 404 and kind == "transcript":
                    # The real server writes "[]" when the session had no final, and its REST
                    # app answers 404 for an empty export (melvin.md, REST): not a failure.
                    print(
                        f"streamcli: warning: the server kept no transcript for {export_id} (the "
                        "session produced no final; the words above are an unconfirmed tail)",
                        file=sys.stderr,
                    )
                    continue
                if status != 200:
                    failures.append(f"export {kind} failed: HTTP {status} {_detail(body)}")
                    continue
                target.write_bytes(body)
                if not quiet:
                    print(f"streamcli: saved {kind} export to {target}", file=sys.stderr)
    if failures:
        raise ServerError("; ".join(failures))


def _detail(body: bytes) -> str:
    import json

    try:
        return str(json.loads(body).get("detail", ""))
    except (ValueError, AttributeError):
        return body[:80].decode("utf-8", "replace")


def sample_paths() -> tuple[Path, Path]:
    """The demo's human speech (LibriVox, public domain) and its transcript (data/README.md)."""
    data = resources.files("streamcli") / "data"
    return Path(str(data / "sample.flac")), Path(str(data / "sample.txt"))


def run_demo(common: Common, recognizer: str = "auto") -> int:
    """Start the Melvin emulator on a free loopback port and stream the bundled sample (or the
    microphone) to it; with a recognizer, show what was heard beside what was read."""
    import tempfile
    import threading

    from streamcli.emulators.melvin import MelvinEmulator

    sample, transcript = sample_paths()
    kind = recognizer_kind(recognizer, None)
    key = secrets.token_hex(16)
    ready = threading.Event()
    holder: dict[str, object] = {}

    def serve() -> None:
        async def main() -> None:
            emu = MelvinEmulator(
                port=0,
                rest_port=None,
                api_keys=[key],
                script=transcript if kind == "script" else None,
                recognizer=kind,
            )
            await emu.start()
            holder["url"] = emu.url
            holder["stop"] = stop = asyncio.Event()
            holder["loop"] = asyncio.get_running_loop()
            ready.set()
            await stop.wait()
            await emu.stop()

        asyncio.run(main())

    thread = threading.Thread(target=serve, name="melvin-emulator", daemon=True)
    thread.start()
    ready.wait(30)
    if "url" not in holder:
        raise ConnectError("the demo emulator did not start")
    url = str(holder["url"])
    heard = "PocketSphinx recognizes the audio" if kind != "script" else DEMO_SCRIPTED
    what = "the microphone (Ctrl-C ends)" if common.mic else f"{sample.name}, read by a person"
    say = not common.quiet and not common.json
    if say:
        print(
            f"streamcli demo: Melvin emulator on {url} ({heard}); streaming {what}",
            file=sys.stderr,
        )
    folder = tempfile.TemporaryDirectory(prefix="streamcli-demo-")
    hypothesis = Path(folder.name) / "heard.txt"
    if not common.mic:
        common.inputs = [str(sample)]
        common.outputs = [*common.outputs, str(hypothesis)]

    def make(speaker: str | None) -> Backend:
        return MelvinBackend(url, key, speaker=speaker)

    try:
        status, _ = run_streaming(common, "melvin", make)
        if say and not common.mic and hypothesis.exists():
            compare(transcript.read_text("utf-8"), hypothesis.read_text("utf-8"))
    finally:
        loop = holder["loop"]
        loop.call_soon_threadsafe(holder["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)
        folder.cleanup()
    return status


DEMO_SCRIPTED = (
    "no recognizer: the words are the sample's transcript; for recognized words, "
    "pip install 'streamcli[asr]'"
)


def compare(reference: str, hypothesis: str) -> None:
    """What was read, what was heard, and the word error rate (stderr)."""
    lines = [f"read:  {' '.join(reference.split())}", f"heard: {' '.join(hypothesis.split())}"]
    try:
        from streamcli.accuracy import score

        result = score(reference, hypothesis)
        lines.append(
            f"word error rate {result.wer:.0%}: {result.substitutions} substituted, "
            f"{result.deletions} missed, {result.insertions} inserted of "
            f"{result.reference_words} words"
        )
    except UsageError:
        pass  # jiwer is not installed: the two texts speak for themselves
    print("\n".join(lines), file=sys.stderr)
