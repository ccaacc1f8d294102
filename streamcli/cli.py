"""The Typer app: one command per backend, plus serve, demo, devices and config.

Start-up matters: this module imports only typer and the small option module; each command
imports what it needs when it runs. ``commands.guard.guarded`` is the one place where failures
become exit codes and one clear stderr line (the model: httpie's ``main()``/``program()`` split).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from streamcli import __version__
from streamcli.commands import helpstyle
from streamcli.commands import options as o
from streamcli.commands.guard import common_from, guarded, run_server

helpstyle.install()  # what to type, ranges in words, option names never cut

app = typer.Typer(
    name="streamcli",
    help="Stream audio to speech services and watch the results live.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
serve_app = typer.Typer(
    name="serve",
    help="Run a local protocol emulator (offline, no credentials).",
    no_args_is_help=True,
)
app.add_typer(serve_app)


def _version(value: bool) -> None:
    if value:
        print(f"streamcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Stream audio to speech services and watch the results live.

    Exit codes: 0 ok, 1 internal error, 2 bad usage or input, 3 credentials rejected,
    4 cannot connect / connection lost, 5 server or protocol error, 6 timed out, 7 an output
    could not be written, 130 interrupted.
    """


# ---- melvin -------------------------------------------------------------------------------------
@app.command(
    epilog="Example: streamcli melvin talk.wav --url ws://asr.example.org:8394 --json | jq -r "
    "'select(.type==\"final\").text'",
)
@o.streaming_command
def melvin(
    common: o.Common,
    input: o.InputArg = None,
    url: Annotated[
        str, typer.Option(help="Melvin-ASR WebSocket URL.", rich_help_panel=o.CONNECTION)
    ] = "ws://localhost:8394",
    api_key: Annotated[
        str | None,
        typer.Option(
            help="API key (better: the MELVIN_API_KEY environment variable).",
            rich_help_panel=o.CONNECTION,
            show_default=False,
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Send no auth frame (servers <= v1.1.0-dev.0).",
            rich_help_panel=o.BACKEND,
        ),
    ] = False,
    export: Annotated[
        str | None,
        typer.Option(
            help="After the session, download exports: transcript,audio.", rich_help_panel=o.BACKEND
        ),
    ] = None,
    export_dir: Annotated[
        str, typer.Option(help="Where --export writes its files.", rich_help_panel=o.BACKEND)
    ] = ".",
    rest_url: Annotated[
        str | None,
        typer.Option(
            help="Melvin REST URL (default: same host, port 8393).", rich_help_panel=o.BACKEND
        ),
    ] = None,
    seat_timeout: Annotated[
        float,
        typer.Option(
            help="Max seconds to wait for a worker seat on a busy server (the audio is held "
            "meanwhile), then exit 6.",
            rich_help_panel=o.CONNECTION,
            min=1.0,
        ),
    ] = 300.0,
) -> None:
    """Stream to a Melvin-ASR server (open-source Whisper streaming)."""

    def body() -> int:
        from streamcli.commands.melvin import run_melvin
        from streamcli.commands.settings import resolve_settings

        s = resolve_settings(
            "melvin", common, url=url, api_key=api_key, rest_url=rest_url, export_dir=export_dir
        )
        # --no-auth drops only the WebSocket auth frame: even servers without it (v1.1.0-dev.0)
        # want the key on their REST exports.
        key = None if no_auth else s["api_key"]
        return run_melvin(
            common,
            s["url"],
            key,
            export,
            s["export_dir"],
            s["rest_url"],
            rest_key=s["api_key"],
            seat_timeout=seat_timeout,
        )

    guarded(body, common.debug)


# ---- serve --------------------------------------------------------------------------------------
@serve_app.command(
    "melvin", epilog="Example: streamcli serve melvin --api-key test --script talk.txt --seats 2"
)
def serve_melvin(
    port: Annotated[int, typer.Option(help="WebSocket port.", min=0, max=65535)] = 8394,
    rest_port: Annotated[int, typer.Option(help="REST export port.", min=0, max=65535)] = 8393,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    api_key: Annotated[
        list[str] | None,
        typer.Option(help="Accepted API key (repeatable; none = an old server without auth)."),
    ] = None,
    seats: Annotated[int, typer.Option(help="Worker seats.", min=1)] = 1,
    script: Annotated[
        str | None, typer.Option(help="Transcript whose sentences become the words.")
    ] = None,
    recognizer: o.Recognizer = "auto",
    reminder_interval: Annotated[
        float, typer.Option(help="Seconds between 'waiting' reminders.")
    ] = 10.0,
    fault: Annotated[
        str | None,
        typer.Option(help="close-without-id | silent-after-eof | drop-after | reset-after"),
    ] = None,
    fault_after: Annotated[
        float, typer.Option(help="Audio seconds before drop/reset faults.")
    ] = 1.0,
    quirks: Annotated[
        bool,
        typer.Option(
            "--quirks/--no-quirks",
            help="The real server's bugs: eof during a transcription loses the export id; "
            "a word cut at the window edge is sent twice.",
        ),
    ] = True,
) -> None:
    """Melvin-ASR emulator: WebSocket + REST export, faithful to the real server (v1.1.0-dev.2)."""

    def body() -> int:

        from streamcli.emulators.common import serve_forever
        from streamcli.emulators.melvin import FAULTS, MelvinEmulator
        from streamcli.exit import UsageError

        if fault is not None and fault not in FAULTS:
            raise UsageError(f"--fault must be one of: {', '.join(FAULTS)}")
        emu = MelvinEmulator(
            host=host,
            port=port,
            rest_port=rest_port,
            api_keys=api_key or [],
            seats=seats,
            script=script,
            reminder_interval=reminder_interval,
            fault=fault,
            fault_after=fault_after,
            quirks=quirks,
            recognizer=o.recognizer_kind(recognizer, script),
        )
        return run_server(lambda: serve_forever(emu, []))

    guarded(body)


# ---- devices ------------------------------------------------------------------------------------
@app.command(epilog="Example: streamcli devices --json | jq -r '.[].name'")
def devices(json: o.Json = False) -> None:
    """List the audio input devices (for --mic --device)."""

    def body() -> int:
        from streamcli.audio.mic import DEVICE_COLUMNS, devices_table_rows, list_input_devices

        found = list_input_devices()
        if json:
            import json as json_module

            print(json_module.dumps([d.to_json() for d in found]))
            return 0
        if not found:
            print("streamcli: no input device found", file=sys.stderr)
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table(*DEVICE_COLUMNS, box=None)
        for row in devices_table_rows(found):
            table.add_row(*[str(cell) for cell in row])
        Console(highlight=False).print(table)
        return 0

    guarded(body)


# ---- demo ---------------------------------------------------------------------------------------
@app.command(
    epilog="Example: streamcli demo --speed 2 --json | jq -r 'select(.type==\"final\").text'"
)
def demo(
    speed: o.Speed = 1.0,
    json: o.Json = False,
    quiet: o.Quiet = False,
    no_color: o.NoColor = False,
    mic: o.Mic = False,
    device: o.Device = None,
    duration: o.Duration = None,
    recognizer: o.Recognizer = "auto",
) -> None:
    """Stream the bundled human speech sample (or --mic) to an in-process Melvin emulator that
    recognizes it (offline); then what was read beside what was heard."""
    common = common_from(locals())

    def body() -> int:
        from streamcli.commands.melvin import run_demo

        return run_demo(common, recognizer)

    guarded(body)


# ---- locustfile ---------------------------------------------------------------------------------
@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Example: streamcli locustfile melvin talk.wav --url ws://asr.example.org:8394 "
    "-o locustfile.py && locust -f locustfile.py --headless -u 2000 -r 50 --processes 2",
)
def locustfile(
    ctx: typer.Context,
    backend: Annotated[
        str,
        typer.Argument(
            help="melvin, phebi, bodhi or vosk; then the audio file and the options, as that "
            "command takes them.",
            metavar="BACKEND ARGS...",
            autocompletion=lambda incomplete: [
                b for b in ("melvin", "phebi", "bodhi", "vosk") if b.startswith(incomplete)
            ],
            show_default=False,
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Write the locustfile here (default: stdout).", metavar="FILE"
        ),
    ] = None,
) -> None:
    """Print a ready locustfile that runs this command's session as Locust users
    (pip install 'streamcli\\[locust]')."""

    def body() -> int:
        from streamcli.commands.locustfile import write

        return write(app, backend, list(ctx.args), output)

    guarded(body)


def _register_more_commands() -> None:
    """Backend commands kept in their own modules (each imports only typer at load time)."""
    from streamcli.commands import backends, config_cmd
    from streamcli.commands.veridas import app as veridas_app
    from streamcli.commands.veridas import serve_command as serve_veridas

    backends.register(app, serve_app)
    app.add_typer(veridas_app)
    serve_app.command(
        "veridas", epilog="Example: streamcli serve veridas --client-id cid --client-secret s3cret"
    )(serve_veridas)
    config_cmd.register(app)


_register_more_commands()


def run() -> None:
    """Run the app; a usage error (bad option value, unknown option) is one line and exit 2."""
    # prog_name: also under `python -m streamcli` (completion keys on the name)
    try:
        code = app(prog_name="streamcli", standalone_mode=False)
    except Exception as e:
        names = {cls.__name__ for cls in type(e).__mro__}
        if "NoArgsIsHelpError" in names:
            app(prog_name="streamcli", args=[*sys.argv[1:], "--help"])
        if "UsageError" not in names:
            raise
        command = getattr(getattr(e, "ctx", None), "command_path", "streamcli")
        message = e.format_message()  # type: ignore[attr-defined]
        print(f"streamcli: error: {message} (see '{command} --help')", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
