"""Commands for the Phebi-Live, Navana Bodhi and Vosk backends and their emulators.

Only typer and the option module are imported here (``streamcli --help`` must stay fast); each
command imports its backend, the runner or its emulator when it runs. The settings listed in
``config_cmd.BACKEND_SETTINGS`` come from the option, then the environment, then ``--profile``,
then the config file, then the built-in default (``commands.settings.resolve_settings``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamcli.commands import options as o

if TYPE_CHECKING:
    from streamcli.backends.base import Backend

PHEBI_DEFAULT_SPEAKER = "respondent"
BODHI_DEFAULT_URL = "wss://bodhi.navana.ai"
BODHI_DEFAULT_MODEL = "hi-banking-v2-8khz"
BODHI_SAMPLE_RATES = (8000, 16000)
BODHI_REJECTIONS = (401, 402, 403)
VOSK_DEFAULT_URL = "ws://localhost:2700"


def register(app: typer.Typer, serve_app: typer.Typer) -> None:
    """Add the backend commands to ``app`` and their emulators to ``serve_app``."""
    app.command(
        epilog="Example: streamcli phebi interview.wav --url wss://dev.phebi.ai --project Study "
        "--session r42 --split-channels --speaker moderator --speaker respondent",
    )(phebi)
    app.command(
        epilog="Example: streamcli bodhi call.wav --model hi-banking-v2-8khz "
        "--hotword 'EMI:2.5' --json | jq -r 'select(.type==\"final\").text'",
    )(bodhi)
    app.command(
        epilog="Example: streamcli vosk talk.wav --url ws://localhost:2700 --sample-rate 16000",
    )(vosk)
    serve_app.command("phebi", epilog="Example: streamcli serve phebi --script talk.txt")(
        serve_phebi
    )
    serve_app.command("bodhi", epilog="Example: streamcli serve bodhi --reject 402")(serve_bodhi)
    serve_app.command("vosk", epilog="Example: streamcli serve vosk --sample-rate 16000")(
        serve_vosk
    )


# ---- shared helpers -----------------------------------------------------------------------------
def _require(settings: dict[str, Any], needs: dict[str, str]) -> None:
    from streamcli.exit import UsageError

    missing = [how for key, how in needs.items() if not settings.get(key)]
    if missing:
        raise UsageError("missing " + "; missing ".join(missing))


def _run(common: o.Common, backend_name: str, make: Callable[[str | None], Backend]) -> int:
    from streamcli.commands.run import run_streaming

    status, _ = run_streaming(common, backend_name, make)
    return status


# ---- phebi --------------------------------------------------------------------------------------
PhebiSpeakers = Annotated[
    list[str] | None,
    typer.Option(
        "--speaker",
        help="Speaker role, in the socket URL and on every event (default: respondent); "
        "with --split-channels repeat it, one per channel in order.",
        rich_help_panel=o.INPUT,
        show_default=False,
    ),
]


@o.streaming_command
def phebi(
    common: o.Common,
    input: o.InputArg = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="Phebi-Live host, wss://HOST (per customer; or the PHEBI_URL variable).",
            rich_help_panel=o.CONNECTION,
            show_default=False,
        ),
    ] = None,
    subscription_key: Annotated[
        str | None,
        typer.Option(
            help="Subscription key (better: the PHEBI_SUBSCRIPTION_KEY environment variable).",
            rich_help_panel=o.CONNECTION,
            show_default=False,
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(help="Phebi project (required).", rich_help_panel=o.BACKEND),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            help="Phebi session: the respondent id in the portal (required).",
            rich_help_panel=o.BACKEND,
        ),
    ] = None,
    speakers: PhebiSpeakers = None,
) -> None:
    """Stream to Phebi-Live: live transcription and emotions, one socket per speaker."""
    from streamcli.commands.guard import guarded

    def body() -> int:
        from streamcli.backends.phebi import PhebiBackend
        from streamcli.commands.melvin import check_ws_url
        from streamcli.commands.settings import resolve_settings

        # The Subscription key comes from the option, PHEBI_SUBSCRIPTION_KEY or the config.
        s = resolve_settings(
            "phebi",
            common,
            url=url,
            project=project,
            session=session,
            subscription_key=subscription_key,
        )
        _require(
            s,
            {
                "url": "--url: the Phebi-Live host (wss://HOST); give --url or set PHEBI_URL",
                "subscription_key": "Phebi-Live subscription key: set PHEBI_SUBSCRIPTION_KEY "
                "(or give --subscription-key)",
                "project": "--project: Phebi-Live needs a project name "
                "(--project or 'project' in the config file)",
                "session": "--session: Phebi-Live needs a session (respondent id) "
                "(--session or 'session' in the config file)",
            },
        )
        check_ws_url(s["url"])
        if not common.split_channels and not common.speakers:
            common.speakers = [PHEBI_DEFAULT_SPEAKER]

        def make(speaker: str | None) -> Backend:
            role = speaker or PHEBI_DEFAULT_SPEAKER
            return PhebiBackend(s["url"], s["project"], s["session"], role, s["subscription_key"])

        return _run(common, "phebi", make)

    guarded(body, common.debug)


# ---- bodhi --------------------------------------------------------------------------------------
@o.streaming_command
def bodhi(
    common: o.Common,
    input: o.InputArg = None,
    url: Annotated[
        str, typer.Option(help="Navana Bodhi WebSocket URL.", rich_help_panel=o.CONNECTION)
    ] = BODHI_DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="API key (better: the BODHI_API_KEY environment variable).",
            rich_help_panel=o.CONNECTION,
            show_default=False,
        ),
    ] = None,
    customer_id: Annotated[
        str | None,
        typer.Option(
            help="Customer id, a UUID (better: the BODHI_CUSTOMER_ID environment variable).",
            rich_help_panel=o.CONNECTION,
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="Recognition model.", rich_help_panel=o.BACKEND)
    ] = BODHI_DEFAULT_MODEL,
    sample_rate: Annotated[
        int,
        typer.Option(
            help="Audio rate on the wire: 8000 (the v2-8khz models) or 16000.",
            rich_help_panel=o.BACKEND,
        ),
    ] = 8000,
    parse_number: Annotated[
        bool | None,
        typer.Option(
            "--parse-number/--no-parse-number",
            help="Write numbers as digits (unset: the server's default).",
            rich_help_panel=o.BACKEND,
            show_default=False,
        ),
    ] = None,
    exclude_partial: Annotated[
        bool | None,
        typer.Option(
            "--exclude-partial/--no-exclude-partial",
            help="Ask for complete segments only, no partials.",
            rich_help_panel=o.BACKEND,
            show_default=False,
        ),
    ] = None,
    hotwords: Annotated[
        list[str] | None,
        typer.Option(
            "--hotword",
            help="Boost PHRASE[:SCORE] (score default 1.5); repeatable.",
            rich_help_panel=o.BACKEND,
            show_default=False,
        ),
    ] = None,
    aux: Annotated[
        bool | None,
        typer.Option(
            "--aux/--no-aux",
            help="Ask for timing details (aux_info) with each message (see --raw).",
            rich_help_panel=o.BACKEND,
            show_default=False,
        ),
    ] = None,
    endpoint_silence: Annotated[
        float | None,
        typer.Option(
            help="Silence that ends a segment, in seconds (the server clamps it to 0.44-1.2).",
            rich_help_panel=o.BACKEND,
            show_default=False,
        ),
    ] = None,
    at_start_lid: Annotated[
        bool | None,
        typer.Option(
            "--at-start-lid/--no-at-start-lid",
            help="Identify the spoken language at the start (the event's language).",
            rich_help_panel=o.BACKEND,
            show_default=False,
        ),
    ] = None,
    transliterate: Annotated[
        bool | None,
        typer.Option(
            "--transliterate/--no-transliterate",
            help="Ask for transliterated text.",
            rich_help_panel=o.BACKEND,
            show_default=False,
        ),
    ] = None,
    keepalive: Annotated[
        float,
        typer.Option(
            help="Send 100 ms of silence after this many seconds without audio, so the "
            "server's 15 s idle close never hits a slow input (0 = off).",
            rich_help_panel=o.CONNECTION,
            min=0.0,
        ),
    ] = 3.0,
) -> None:
    """Stream to Navana Bodhi (streaming ASR for Indian languages; 8 kHz telephony models)."""
    from streamcli.commands.guard import guarded

    def body() -> int:
        from streamcli.backends.bodhi import BodhiBackend, check_customer_id
        from streamcli.commands.melvin import check_ws_url
        from streamcli.commands.settings import resolve_settings
        from streamcli.exit import UsageError

        # The credentials come from the option, BODHI_API_KEY/BODHI_CUSTOMER_ID or the config.
        s = resolve_settings(
            "bodhi",
            common,
            url=url,
            model=model,
            sample_rate=sample_rate,
            api_key=api_key,
            customer_id=customer_id,
        )
        _require(
            s,
            {
                "api_key": "Navana Bodhi API key: set BODHI_API_KEY (or give --api-key)",
                "customer_id": "Navana Bodhi customer id: set BODHI_CUSTOMER_ID "
                "(or give --customer-id)",
            },
        )
        # The SDK refuses a customer id that is not a UUID before connecting (bodhi.md).
        customer = check_customer_id(s["customer_id"])
        check_ws_url(s["url"])
        if s["sample_rate"] not in BODHI_SAMPLE_RATES:
            raise UsageError(f"--sample-rate {s['sample_rate']}: Navana Bodhi takes 8000 or 16000")
        settings = {
            "api_key": s["api_key"],
            "customer_id": customer,
            "model": s["model"],
            "sample_rate": s["sample_rate"],
            "parse_number": parse_number,
            "exclude_partial": exclude_partial,
            "hotwords": list(hotwords or []),
            "aux": aux,
            "endpoint_silence": endpoint_silence,
            "at_start_lid": at_start_lid,
            "transliterate": transliterate,
            "keepalive_after": keepalive or None,
        }
        BodhiBackend(s["url"], **settings)  # refuses a bad hotword or silence before connecting

        def make(speaker: str | None) -> Backend:
            # A fresh transaction_id (uuid4) per stream; the session event reports it.
            return BodhiBackend(s["url"], speaker=speaker, **settings)

        return _run(common, "bodhi", make)

    guarded(body, common.debug)


# ---- vosk ---------------------------------------------------------------------------------------
@o.streaming_command
def vosk(
    common: o.Common,
    input: o.InputArg = None,
    url: Annotated[
        str, typer.Option(help="Vosk server WebSocket URL.", rich_help_panel=o.CONNECTION)
    ] = VOSK_DEFAULT_URL,
    sample_rate: Annotated[
        int,
        typer.Option(
            help="Audio rate on the wire (the server's model resamples).",
            rich_help_panel=o.BACKEND,
            min=8000,
            max=48000,
        ),
    ] = 16000,
) -> None:
    """Stream to a Vosk server (alphacep/vosk-server, open source, offline)."""
    from streamcli.commands.guard import guarded

    def body() -> int:
        from streamcli.backends.vosk import VoskBackend
        from streamcli.commands.melvin import check_ws_url
        from streamcli.commands.settings import resolve_settings

        s = resolve_settings("vosk", common, url=url, sample_rate=sample_rate)
        check_ws_url(s["url"])
        return _run(
            common, "vosk", lambda speaker: VoskBackend(s["url"], s["sample_rate"], speaker=speaker)
        )

    guarded(body, common.debug)


# ---- serve --------------------------------------------------------------------------------------
Host = Annotated[str, typer.Option(help="Address to listen on.")]
Script = Annotated[str | None, typer.Option(help="Transcript whose sentences become the words.")]


def _serve_emulator(make: Callable[[], Any], banner: list[str]) -> int:
    from streamcli.commands.guard import run_server
    from streamcli.emulators.common import serve_forever

    emulator = make()
    return run_server(lambda: serve_forever(emulator, banner))


def serve_phebi(
    port: Annotated[int, typer.Option(help="WebSocket port (0 = any free).", min=0, max=65535)] = (
        8080
    ),
    host: Host = "127.0.0.1",
    script: Script = None,
    recognizer: o.Recognizer = "auto",
    subscription_key: Annotated[
        str | None,
        typer.Option(help="The Subscription key to accept (none = any; a wrong one gets 403)."),
    ] = None,
    fail_after: Annotated[
        float | None,
        typer.Option(help="Crash (close 1011, no message) after this many seconds of audio."),
    ] = None,
    error_message: Annotated[
        str | None, typer.Option(help='Send {"Error": MESSAGE} mid-stream, then close 1011.')
    ] = None,
    error_at: Annotated[
        float, typer.Option(help="Seconds of audio before --error-message.", min=0.0)
    ] = 1.0,
    error_fatal: Annotated[
        bool,
        typer.Option(
            "--error-fatal/--error-keep-going",
            help="Close the socket after --error-message, or keep transcribing.",
        ),
    ] = True,
) -> None:
    """Phebi-Live emulator: /sockets/live/{project}/{session}/{speaker}, strict about the WAV
    header and the 0x01 end byte; transcription, interim text and emotions."""
    from streamcli.commands.guard import guarded

    def body() -> int:
        from streamcli.emulators.phebi import PhebiEmulator

        return _serve_emulator(
            lambda: PhebiEmulator(
                host=host,
                port=port,
                script=script,
                recognizer=o.recognizer_kind(recognizer, script),
                subscription_key=subscription_key,
                fail_after=fail_after,
                error_message=error_message,
                error_at=error_at,
                error_fatal=error_fatal,
            ),
            ["clients connect to /sockets/live/PROJECT/SESSION/SPEAKER"],
        )

    guarded(body)


def serve_bodhi(
    port: Annotated[int, typer.Option(help="WebSocket port (0 = any free).", min=0, max=65535)] = (
        8081
    ),
    host: Host = "127.0.0.1",
    script: Script = None,
    recognizer: o.Recognizer = "auto",
    api_key: Annotated[
        str | None, typer.Option(help="The x-api-key to accept (none = any; wrong gets 401).")
    ] = None,
    customer_id: Annotated[
        str | None,
        typer.Option(help="The x-customer-id to accept (none = any; wrong gets 401)."),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="A model to offer (repeatable; default: the {lang}-{general,banking}-v2-8khz "
            "and {lang}-general-v2-16khz families).",
            show_default=False,
        ),
    ] = None,
    idle_timeout: Annotated[
        float, typer.Option(help="Close after this many seconds without a client message.", min=0.1)
    ] = 15.0,
    eos_close_after: Annotated[
        float, typer.Option(help="After eos, close if the client has not within this.", min=0.0)
    ] = 3.0,
    reject: Annotated[
        int | None,
        typer.Option(
            help="Refuse every handshake: 401 (bad credentials), 402 (insufficient balance) "
            "or 403 (customer deactivated).",
            show_default=False,
        ),
    ] = None,
    error_after: Annotated[
        float | None,
        typer.Option(help="Send an internal_error (code 500) after this many seconds of audio."),
    ] = None,
    hex_segment_ids: Annotated[
        bool, typer.Option("--hex-segment-ids", help="Send segment_id as an opaque hex string.")
    ] = False,
) -> None:
    """Navana Bodhi emulator: x-api-key/x-customer-id headers, one JSON config, raw PCM,
    {"eof": 1}; partial/complete segments, eos, and the idle close."""
    from streamcli.commands.guard import guarded

    def body() -> int:
        from streamcli.emulators.bodhi import BodhiEmulator
        from streamcli.exit import UsageError

        if reject is not None and reject not in BODHI_REJECTIONS:
            raise UsageError(f"--reject {reject}: choose 401, 402 or 403")
        banner = [f"fault: every handshake is refused with HTTP {reject}"] if reject else []
        return _serve_emulator(
            lambda: BodhiEmulator(
                host=host,
                port=port,
                script=script,
                recognizer=o.recognizer_kind(recognizer, script),
                api_key=api_key,
                customer_id=customer_id,
                models=models or None,
                idle_timeout=idle_timeout,
                eos_close_after=eos_close_after,
                reject=reject,
                error_after=error_after,
                hex_segment_ids=hex_segment_ids,
            ),
            banner,
        )

    guarded(body)


def serve_vosk(
    port: Annotated[int, typer.Option(help="WebSocket port (0 = any free).", min=0, max=65535)] = (
        2700
    ),
    host: Host = "127.0.0.1",
    script: Script = None,
    recognizer: o.Recognizer = "auto",
    sample_rate: Annotated[
        int, typer.Option(help="Rate assumed when a client sends no config.", min=1)
    ] = 8000,
    words: Annotated[
        bool, typer.Option("--words/--no-words", help="Include the word list in results.")
    ] = True,
    reply_to_config: Annotated[
        bool,
        typer.Option(
            "--reply-to-config", help='Answer each config with {"partial": ""} (real: silent).'
        ),
    ] = False,
) -> None:
    """Vosk server emulator (alphacep/vosk-server): optional config, raw PCM, EOF exactly
    {"eof" : 1}; one reply per audio message."""
    from streamcli.commands.guard import guarded

    def body() -> int:
        from streamcli.emulators.vosk import VoskEmulator

        return _serve_emulator(
            lambda: VoskEmulator(
                host=host,
                port=port,
                script=script,
                recognizer=o.recognizer_kind(recognizer, script),
                sample_rate=sample_rate,
                words=words,
                reply_to_config=reply_to_config,
            ),
            [],
        )

    guarded(body)
