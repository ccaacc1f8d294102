"""``streamcli veridas register|verify`` and ``streamcli serve veridas``: das-Peak voice biometrics.

Only typer and the option module are imported at the top (start-up time); the session, the
sinks and the network libraries are imported when a command runs.
"""

from __future__ import annotations

import enum
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamcli.commands import options as o

if TYPE_CHECKING:
    from streamcli import events as ev
    from streamcli.backends.veridas import RequestSettings

DEFAULT_URL = "https://api.eu.veri-das.com"
REGISTER_NAMESPACE = "/socket.io/register"
VERIFY_NAMESPACE = "/socket.io/verify"
VERIDAS = "Veridas"
AUDIOHOOK = "AudioHook (--audio-protocol audiohook)"
SERVE_PORT = 8400

app = typer.Typer(
    name="veridas",
    help="Veridas das-Peak voice biometrics: register a voice (get a credential), verify it.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class AudioProtocol(enum.StrEnum):
    twilio = "twilio"
    audiohook = "audiohook"


# ---- options shared by register and verify --------------------------------------------------
Url = Annotated[
    str,
    typer.Option(help="das-Peak service URL (Socket.IO).", rich_help_panel=o.CONNECTION),
]
TokenUrl = Annotated[
    str | None,
    typer.Option(
        help="OAuth2 token endpoint (default: URL's host + /socket.io/oauth2/token).",
        rich_help_panel=o.CONNECTION,
        show_default=False,
    ),
]
SocketioPath = Annotated[
    str, typer.Option(help="Socket.IO path on the server.", rich_help_panel=o.CONNECTION)
]
AudioUrl = Annotated[
    str | None,
    typer.Option(
        help="WebSocket URL of the audio consumer (or VERIDAS_AUDIO_URL).",
        rich_help_panel=o.CONNECTION,
        show_default=False,
    ),
]
Protocol = Annotated[
    AudioProtocol,
    typer.Option(
        "--audio-protocol",
        help="Audio channel protocol: twilio (start + base64 media) or audiohook (Genesys v2).",
        rich_help_panel=VERIDAS,
        case_sensitive=False,
    ),
]
Threshold = Annotated[
    float,
    typer.Option(help="authenticity_threshold.", rich_help_panel=VERIDAS, min=0.0, max=1.0),
]
GoalDuration = Annotated[
    float,
    typer.Option(
        "--duration",
        help="audio_total_duration: seconds of voice das-Peak collects.",
        rich_help_panel=VERIDAS,
        min=0.1,
    ),
]
ModelHash = Annotated[
    str | None,
    typer.Option(
        help="model_hash (or VERIDAS_MODEL_HASH).", rich_help_panel=VERIDAS, show_default=False
    ),
]
CallId = Annotated[
    str | None,
    typer.Option(help="call_id (UUID; default: a fresh one).", rich_help_panel=VERIDAS),
]
ClientId = Annotated[
    str | None,
    typer.Option(
        help="OAuth2 client id (better: VERIDAS_CLIENT_ID).",
        rich_help_panel=o.CONNECTION,
        show_default=False,
    ),
]
ClientSecret = Annotated[
    str | None,
    typer.Option(
        help="OAuth2 client secret (better: VERIDAS_CLIENT_SECRET).",
        rich_help_panel=o.CONNECTION,
        show_default=False,
    ),
]
ReadyToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="A ready access token, skips the token request (better: VERIDAS_TOKEN).",
        rich_help_panel=o.CONNECTION,
        show_default=False,
    ),
]
AudiohookApiKey = Annotated[
    str | None,
    typer.Option(
        help="X-API-KEY of the AudioHook consumer (better: VERIDAS_AUDIOHOOK_API_KEY).",
        rich_help_panel=AUDIOHOOK,
        show_default=False,
    ),
]
AudiohookSecret = Annotated[
    str | None,
    typer.Option(
        help="Base64 client secret: signs the AudioHook upgrade (better: "
        "VERIDAS_AUDIOHOOK_SECRET).",
        rich_help_panel=AUDIOHOOK,
        show_default=False,
    ),
]
AudiohookOrg = Annotated[
    str | None,
    typer.Option(
        help="Audiohook-Organization-Id (UUID; default: a fresh one).",
        rich_help_panel=AUDIOHOOK,
        show_default=False,
    ),
]
CollectedAudioOut = Annotated[
    str | None,
    typer.Option(
        metavar="FILE",
        help="Write the audio das-Peak collected (result-success's second argument, as "
        "received) to FILE, mode 0600.",
        rich_help_panel=VERIDAS,
        show_default=False,
    ),
]


# Options both register and verify take (name, annotated type, default), after their own.
VERIDAS_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("url", Url, DEFAULT_URL),
    ("token_url", TokenUrl, None),
    ("socketio_path", SocketioPath, "socket.io"),
    ("audio_url", AudioUrl, None),
    ("audio_protocol", Protocol, AudioProtocol.twilio),
    ("threshold", Threshold, 0.8),
    ("goal_duration", GoalDuration, 5.0),
    ("model_hash", ModelHash, None),
    ("call_id", CallId, None),
    ("collected_audio_out", CollectedAudioOut, None),
    ("client_id", ClientId, None),
    ("client_secret", ClientSecret, None),
    ("token", ReadyToken, None),
    ("audiohook_api_key", AudiohookApiKey, None),
    ("audiohook_secret", AudiohookSecret, None),
    ("audiohook_org_id", AudiohookOrg, None),
    ("mic", o.Mic, False),
    ("device", o.Device, None),
    ("speed", o.Speed, 1.0),
    ("chunk_ms", o.ChunkMs, 100),
    ("json", o.Json, False),
    ("raw", o.Raw, False),
    ("quiet", o.Quiet, False),
    ("no_color", o.NoColor, False),
    ("debug", o.Debug, False),
    ("timeout", o.Timeout, 30.0),
    ("connect_timeout", o.ConnectTimeout, 10.0),
    ("heartbeat", o.Heartbeat, 30.0),
    ("reconnect", o.Reconnect, 0),
    ("ca_file", o.CaFile, None),
    ("insecure", o.Insecure, False),
)


@app.command(
    epilog="Example: VERIDAS_CLIENT_ID=... VERIDAS_CLIENT_SECRET=... streamcli veridas register "
    "voice.wav --audio-url wss://consumer.example/twilio --model-hash HASH --credential-out "
    "me.cred",
)
@o.with_options(VERIDAS_OPTIONS)
def register(
    input: o.SingleInputArg = None,
    credential_out: Annotated[
        str | None,
        typer.Option(
            help="Write the credential (the voiceprint) to this file, mode 0600. It is never "
            "printed.",
            rich_help_panel=VERIDAS,
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option(help="Socket.IO namespace.", rich_help_panel=o.CONNECTION)
    ] = REGISTER_NAMESPACE,
    **options: Any,
) -> None:
    """Register a voice with das-Peak: stream it, get the credential (the voiceprint)."""
    from streamcli.commands.guard import guarded

    values = {"input": input, "credential_out": credential_out, "namespace": namespace, **options}
    guarded(lambda: run_command("register", values), options["debug"])


@app.command(
    epilog="Example: streamcli veridas verify voice2.wav --credential me.cred --audio-url "
    "wss://consumer.example/twilio. The verification flow is not publicly documented: the "
    "namespace, the request key and the credential field are options.",
)
@o.with_options(VERIDAS_OPTIONS)
def verify(
    input: o.SingleInputArg = None,
    credential: Annotated[
        str | None,
        typer.Option(
            help="File with the credential that register wrote.",
            rich_help_panel=VERIDAS,
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option(help="Socket.IO namespace.", rich_help_panel=o.CONNECTION)
    ] = VERIFY_NAMESPACE,
    request_key: Annotated[
        str, typer.Option(help="Key of the request in initialize.", rich_help_panel=VERIDAS)
    ] = "verify_request",
    credential_field: Annotated[
        str,
        typer.Option(
            help="Field of the request that carries the credential.", rich_help_panel=VERIDAS
        ),
    ] = "credential",
    **options: Any,
) -> None:
    """Verify a voice against a stored credential; exit 0 only when das-Peak accepts."""
    from streamcli.commands.guard import guarded

    values = {
        "input": input,
        "credential": credential,
        "namespace": namespace,
        "request_key": request_key,
        "credential_field": credential_field,
        **options,
    }
    guarded(lambda: run_command("verify", values), options["debug"])


# ---- the runner ----------------------------------------------------------------------------------
def _secret(option: str | None, env: str) -> str | None:
    return option if option is not None else os.environ.get(env) or None


def _check_url(option: str, url: str, schemes: tuple[str, ...]) -> None:
    from urllib.parse import urlsplit

    from streamcli.exit import UsageError
    from streamcli.redact import redact_url

    p = urlsplit(url)
    try:
        p.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise UsageError(f"{option} {redact_url(url)!r}: bad port") from None
    if p.scheme not in schemes or not p.hostname:
        wanted = " or ".join(f"{s}://HOST" for s in schemes)
        raise UsageError(f"{option} {redact_url(url)!r}: expected {wanted}")


def _check_uuid(option: str, value: str) -> str:
    import uuid

    from streamcli.exit import UsageError

    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise UsageError(f"{option} {value!r}: not a UUID") from None
    # What AudioHook servers take (the reference's uuidRegex): versions 1-5 of the RFC 4122
    # variant, or the nil UUID. A version 7 is refused there with "Invalid/missing parameters".
    if parsed.int != 0 and parsed.version not in (1, 2, 3, 4, 5):
        raise UsageError(
            f"{option} {value!r}: a UUID of version 1 to 5 is needed (version "
            f"{parsed.version or 'unknown'} is refused by AudioHook servers); e.g. uuidgen -r"
        )
    return str(parsed)


def build_config(mode: str, v: dict[str, Any]) -> Any:
    """Options and environment -> ``VeridasConfig``; every bad option is a UsageError."""
    import uuid

    from streamcli.backends.audiohook import decode_client_secret
    from streamcli.backends.veridas import (
        REGISTER_REQUEST_KEY,
        RequestSettings,
        default_token_url,
        token_from_value,
    )
    from streamcli.exit import UsageError
    from streamcli.veridas_session import (
        AudiohookSettings,
        VeridasConfig,
        check_credential_out,
        read_credential,
    )

    _check_url("--url", v["url"], ("https", "http", "wss", "ws"))
    token_url = v["token_url"] or default_token_url(v["url"])
    _check_url("--token-url", token_url, ("https", "http"))
    audio_url = v["audio_url"] or os.environ.get("VERIDAS_AUDIO_URL")
    if not audio_url:
        raise UsageError("missing --audio-url: the WebSocket URL of the audio consumer")
    _check_url("--audio-url", audio_url, ("wss", "ws"))
    if not v["namespace"].startswith("/"):
        raise UsageError(f"--namespace {v['namespace']!r}: a namespace starts with '/'")
    model_hash = v["model_hash"] or os.environ.get("VERIDAS_MODEL_HASH")
    if not model_hash:
        raise UsageError("missing --model-hash (or VERIDAS_MODEL_HASH)")
    call_id = _check_uuid("--call-id", v["call_id"]) if v["call_id"] else str(uuid.uuid4())

    ready = _secret(v["token"], "VERIDAS_TOKEN")
    client_id = _secret(v["client_id"], "VERIDAS_CLIENT_ID")
    client_secret = _secret(v["client_secret"], "VERIDAS_CLIENT_SECRET")
    if not ready and not (client_id and client_secret):
        raise UsageError(
            "no credentials: set VERIDAS_CLIENT_ID and VERIDAS_CLIENT_SECRET, or VERIDAS_TOKEN"
        )

    protocol = AudioProtocol(v["audio_protocol"]).value
    hook = AudiohookSettings(
        api_key=_secret(v["audiohook_api_key"], "VERIDAS_AUDIOHOOK_API_KEY"),
        secret=_secret(v["audiohook_secret"], "VERIDAS_AUDIOHOOK_SECRET"),
    )
    if v["audiohook_org_id"]:
        hook.organization_id = _check_uuid("--audiohook-org-id", v["audiohook_org_id"])
    if protocol == "audiohook" and hook.secret is not None:
        if not hook.api_key:
            raise UsageError(
                "an AudioHook signature needs the API key: set VERIDAS_AUDIOHOOK_API_KEY"
            )
        try:
            decode_client_secret(hook.secret)
        except ValueError as e:
            raise UsageError(f"VERIDAS_AUDIOHOOK_SECRET: {e}") from None

    credential_out = None
    collected_audio_out = v["collected_audio_out"]
    if collected_audio_out is not None:
        check_credential_out(collected_audio_out, "--collected-audio-out")
    request: RequestSettings
    common = {
        "audio_protocol": protocol,
        "call_id": call_id,
        "model_hash": model_hash,
        "threshold": v["threshold"],
        "duration": v["goal_duration"],
    }
    if mode == "register":
        credential_out = v["credential_out"]
        if credential_out is not None:
            check_credential_out(credential_out)
        request = RequestSettings(mode="register", request_key=REGISTER_REQUEST_KEY, **common)
    else:
        if not v["credential"]:
            raise UsageError("missing --credential FILE (the file register wrote)")
        request = RequestSettings(
            mode="verify",
            request_key=v["request_key"],
            credential=read_credential(v["credential"]),
            credential_field=v["credential_field"],
            **common,
        )
    return VeridasConfig(
        url=v["url"],
        audio_url=audio_url,
        request=request,
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        token=token_from_value(ready) if ready else None,
        namespace=v["namespace"],
        socketio_path=v["socketio_path"],
        credential_out=credential_out,
        collected_audio_out=collected_audio_out,
        audiohook=hook,
    )


def run_command(mode: str, values: dict[str, Any]) -> int:
    """One register/verify run: options -> config, source, sinks -> session -> exit status."""
    import asyncio
    import dataclasses

    from streamcli import events as ev
    from streamcli.commands.options import Common
    from streamcli.commands.run import open_input, warn_insecure, warn_plaintext_credentials
    from streamcli.engine.interrupts import Interrupts
    from streamcli.exit import ExitStatus
    from streamcli.sinks.outputs import Outputs
    from streamcli.veridas_session import run_veridas

    config = build_config(mode, values)
    warn_plaintext_credentials(credential_requests(config))
    if config.request.audio_protocol == "audiohook" and not config.audiohook.api_key:
        print(
            "streamcli: warning: no AudioHook API key: servers refuse a connection without "
            "X-API-KEY (set VERIDAS_AUDIOHOOK_API_KEY)",
            file=sys.stderr,
            flush=True,
        )
    fields = Common.__dataclass_fields__
    common = Common(**{k: v for k, v in values.items() if k in fields})
    common.inputs = [values["input"]] if values.get("input") is not None else []
    source = open_input(common.input_spec())
    ended: list[ev.End] = []
    try:
        interrupts = Interrupts()
        output = common.output_spec()
        outputs = Outputs(output, "veridas", source, on_broken=interrupts.trigger_abort)
        show_progress = outputs.live is None and not (output.quiet or output.json or output.raw)
        options = dataclasses.replace(common.session_options(), duration=None)
        warn_insecure(options)

        def handle(event: ev.Event) -> None:
            if isinstance(event, ev.End):
                ended.append(event)
            elif isinstance(event, ev.Progress) and show_progress:
                print(f"streamcli: {progress_line(event)}", file=sys.stderr, flush=True)
            outputs.handle(event)

        def on_audio(block: Any) -> None:
            if outputs.live is not None:
                outputs.live.add_audio(len(block) / source.rate)
                level = getattr(source, "level", None)
                if level is not None:
                    outputs.live.level_db = level

        if outputs.live is not None:
            outputs.live.start()
        try:
            outcome = asyncio.run(
                run_veridas(source, config, options, handle, interrupts, on_audio=on_audio)
            )
        finally:
            outputs.close()
    finally:
        source.close()
    if ended and not (common.json or common.raw):
        print(result_line(ended[0]), flush=True)
    if outputs.first_error is not None:
        print(f"streamcli: error: {outputs.first_error.message}", file=sys.stderr, flush=True)
    elif outcome.status == ExitStatus.INTERRUPTED:
        print("streamcli: interrupted", file=sys.stderr, flush=True)
    return int(outputs.status(outcome.status))


def credential_requests(config: Any) -> list[Any]:
    """Where a Veridas run sends credentials: the client secret (token endpoint), the bearer
    token (Socket.IO; always one, fetched or ready), the AudioHook key and signature."""
    from streamcli.backends.base import ConnectRequest

    hook = config.audiohook
    audio = (hook.api_key, hook.secret) if config.request.audio_protocol == "audiohook" else ()
    return [
        ConnectRequest(
            config.token_url, secrets=(config.client_secret,) if not config.token else ()
        ),
        ConnectRequest(config.url, secrets=("bearer token",)),
        ConnectRequest(config.audio_url, secrets=audio),
    ]


def progress_line(p: ev.Progress) -> str:
    percent = f" ({p.percent:g}%)" if p.percent is not None else ""
    goal = f"/{p.goal:g}" if p.goal is not None else ""
    return f"voice {p.value:g}{goal} {p.unit}{percent}"


def result_line(end: ev.End) -> str:
    """The one result line on stdout (plain and live modes). Never the credential."""
    x = end.extra
    parts = [f"{end.reason}:"]
    if x.get("content"):
        parts.append(str(x["content"]))
    figures = []
    if "score" in x and x.get("score") != x.get("authenticity"):
        figures.append(f"score {x['score']}")
    if "authenticity" in x:
        figures.append(f"authenticity {x['authenticity']}")
    if "voice_audio_collected" in x:
        figures.append(f"voice {x['voice_audio_collected']} s")
    if figures:
        parts.append("(" + ", ".join(figures) + ")")
    if x.get("credential_file"):
        parts.append(f"- credential saved to {x['credential_file']}")
    return " ".join(parts)


# ---- streamcli serve veridas --------------------------------------------------------------------
def serve_command(
    port: Annotated[
        int, typer.Option(help="Port (HTTP, Socket.IO and WebSocket).", min=0, max=65535)
    ] = SERVE_PORT,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    client_id: Annotated[
        str | None, typer.Option(help="Accepted client id (none: any).", show_default=False)
    ] = None,
    client_secret: Annotated[
        str | None, typer.Option(help="Accepted client secret (none: any).", show_default=False)
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option("--token", help="Also accept this ready bearer token (repeatable)."),
    ] = None,
    audiohook_api_key: Annotated[
        str | None,
        typer.Option(help="X-API-KEY the AudioHook consumer requires.", show_default=False),
    ] = None,
    audiohook_secret: Annotated[
        str | None,
        typer.Option(
            help="Base64 client secret: require a valid AudioHook signature.", show_default=False
        ),
    ] = None,
    reject: Annotated[bool, typer.Option("--reject", help="Refuse every registration.")] = False,
    no_result: Annotated[
        bool, typer.Option("--no-result", help="Never send a result (client timeouts).")
    ] = False,
    goal_scale: Annotated[
        float, typer.Option(help="Voice needed = audio_total_duration x this.", min=0.01)
    ] = 1.0,
    consumer_delay: Annotated[
        float, typer.Option(help="Seconds before info-consumer-ready.", min=0.0)
    ] = 0.0,
    fault: Annotated[
        str | None,
        typer.Option(
            help="Misbehave: token-500, token-500-once, token-not-json, token-no-type, "
            "refuse-namespace, disconnect-before-ready, disconnect-mid-audio, "
            "failure-no-payload, consumer-401, consumer-404, consumer-drop.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Veridas das-Peak emulator: token endpoint, Socket.IO, twilio and audiohook consumers."""

    def body() -> int:
        from streamcli.commands.guard import run_server
        from streamcli.emulators.veridas import FAULTS, VeridasEmulator
        from streamcli.exit import UsageError

        if fault is not None and fault not in FAULTS:
            raise UsageError(f"--fault {fault!r}: one of {', '.join(FAULTS)}")
        emu = VeridasEmulator(
            host=host,
            port=port,
            client_id=client_id,
            client_secret=client_secret,
            tokens=token or [],
            audiohook_api_key=audiohook_api_key,
            audiohook_secret=audiohook_secret,
            reject=reject,
            no_result=no_result,
            goal_scale=goal_scale,
            consumer_delay=consumer_delay,
            fault=fault,
        )
        return run_server(lambda: serve_emulator(emu))

    from streamcli.commands.guard import guarded

    guarded(body)


async def serve_emulator(emu: Any) -> None:
    """Start, say where everything is (stderr), run until Ctrl-C."""
    import asyncio

    await emu.start()
    ws = emu.url.replace("http://", "ws://", 1)
    for line in (
        f"veridas emulator listening on {emu.url} (Ctrl-C stops it)",
        f"  token endpoint {emu.url}/socket.io/oauth2/token",
        f"  audio consumers {ws}/twilio and {ws}/audiohook",
        "  try: VERIDAS_CLIENT_ID=local VERIDAS_CLIENT_SECRET=local-secret streamcli veridas "
        f"register voice.wav --url {emu.url} --audio-url {ws}/twilio --model-hash test "
        "--credential-out me.cred",
    ):
        print(line, file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emu.stop()
