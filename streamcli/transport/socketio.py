"""The Socket.IO wire: thin python-socketio ``AsyncClient`` glue (websocket transport only).

It connects one namespace with an ``Authorization`` header, hands every server event to one
callback through a catch-all handler (which takes any number of arguments), and turns every
way the connection can fail into a ``StreamcliError`` with one clear line. python-socketio
keeps the upgrade's HTTP status to itself ("Connection error"), so an aiohttp trace records it:
a 401/403 at the handshake is then told apart from a host that does not answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

import aiohttp
import socketio

from streamcli.exit import (
    AuthError,
    ConnectError,
    ServerError,
    StreamcliError,
    UsageError,
    handshake_refusal,
)
from streamcli.redact import public_url
from streamcli.transport.websocket import (
    WireOptions,
    check_headers,
    short_reason,
    tls_failure,
    tls_reason,
)

EventCallback = Callable[[str, tuple[Any, ...]], None]
DisconnectCallback = Callable[[str | None], None]
# A namespace refusal that reads like a credentials problem is an auth failure (exit 3).
_AUTH_WORDS = re.compile(r"auth|token|credential|forbidden|denied|401|403", re.I)


def _quiet_logger(name: str) -> logging.Logger:
    """python-socketio logs "fatal" errors even with logger=False: route them nowhere."""
    logger = logging.getLogger(name)
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    logger.setLevel(logging.CRITICAL)
    return logger


class SignallingConnection:
    def __init__(self, sio: Any, http: aiohttp.ClientSession, namespace: str) -> None:
        self._sio = sio
        self._http = http
        self.namespace = namespace
        self._closing = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        namespace: str,
        headers: dict[str, str],
        on_event: EventCallback,
        on_disconnect: DisconnectCallback,
        options: WireOptions,
        socketio_path: str = "socket.io",
    ) -> SignallingConnection:
        check_headers(headers)  # a token with a line break must not inject a header
        handshake: dict[str, Any] = {}
        trace = aiohttp.TraceConfig()

        async def on_request_end(_s: Any, _c: Any, params: Any) -> None:
            handshake["status"] = params.response.status
            handshake["reason"] = params.response.reason or ""

        async def on_request_exception(_s: Any, _c: Any, params: Any) -> None:
            handshake["exception"] = params.exception

        trace.on_request_end.append(on_request_end)
        trace.on_request_exception.append(on_request_exception)
        connector = aiohttp.TCPConnector(ssl=options.ssl_context())
        http = aiohttp.ClientSession(connector=connector, trace_configs=[trace])
        sio = socketio.AsyncClient(
            reconnection=False,
            handle_sigint=False,
            logger=_quiet_logger("streamcli.socketio"),
            engineio_logger=_quiet_logger("streamcli.engineio"),
            http_session=http,
            request_timeout=options.connect_timeout,
            ssl_verify=not options.insecure,
            # --heartbeat: WebSocket pings under Engine.IO's own, so a dead peer is found
            # within seconds rather than Engine.IO's ping interval + timeout (45 s).
            websocket_extra_options={"heartbeat": options.heartbeat} if options.heartbeat else {},
        )
        conn = cls(sio, http, namespace)
        refusals: list[Any] = []

        async def catch_all(event: str, *args: Any) -> None:
            on_event(event, args)

        async def connect_error(*args: Any) -> None:
            refusals.append(args[0] if args else None)

        async def disconnect(*args: Any) -> None:
            if not conn._closing:
                on_disconnect(str(args[0]) if args else None)

        sio.on("*", catch_all, namespace=namespace)
        sio.on("connect_error", connect_error, namespace=namespace)
        sio.on("disconnect", disconnect, namespace=namespace)
        try:
            await asyncio.wait_for(
                sio.connect(
                    url,
                    headers=dict(headers),
                    transports=["websocket"],
                    namespaces=[namespace],
                    socketio_path=socketio_path,
                    wait_timeout=options.connect_timeout,
                ),
                timeout=options.connect_timeout + 2.0,
            )
        except BaseException as e:
            conn._closing = True
            await conn._shutdown()
            if isinstance(e, asyncio.CancelledError):
                raise
            raise _failure(e, url, namespace, refusals, handshake, options, socketio_path) from None
        return conn

    async def emit(self, event: str, data: Any) -> None:
        try:
            await self._sio.emit(event, data, namespace=self.namespace)
        except socketio.exceptions.SocketIOError as e:
            raise ConnectError(f"the signalling connection is closed ({e})") from None

    @property
    def connected(self) -> bool:
        return bool(self._sio.connected)

    async def close(self) -> None:
        self._closing = True
        await self._shutdown()

    async def _shutdown(self) -> None:
        try:
            if self._sio.connected or self._sio.eio.state == "connected":
                await asyncio.wait_for(self._sio.disconnect(), timeout=2.0)
        except (TimeoutError, aiohttp.ClientError, OSError, socketio.exceptions.SocketIOError):
            pass
        finally:
            await self._http.close()


def _failure(
    e: BaseException,
    url: str,
    namespace: str,
    refusals: list[Any],
    handshake: dict[str, Any],
    options: WireOptions,
    socketio_path: str = "socket.io",
) -> BaseException:
    if isinstance(e, StreamcliError):
        return e
    url = public_url(url)  # no password, no query (a token) in a message
    # python-socketio calls connect_error for a transport failure too; only a namespace
    # refusal ends in "One or more namespaces failed to connect".
    if refusals and "namespaces failed" in str(e):
        return refusal_error(namespace, refusals[-1])
    status = handshake.get("status")
    if isinstance(status, int) and status != 101:
        error = handshake_refusal(
            status, handshake.get("reason", ""), f"the Socket.IO server {url}"
        )
        if status == 404:  # no Socket.IO there: most often the path
            error.args = (f"{error.message} (check --socketio-path, now {socketio_path!r})",)
        return error
    cause = handshake.get("exception") or e
    tls_errors = (
        aiohttp.ClientConnectorCertificateError,
        aiohttp.ClientSSLError,
        ssl_module.SSLError,
    )
    if isinstance(cause, tls_errors):
        return tls_failure(url, tls_reason(cause))
    if isinstance(cause, aiohttp.InvalidURL) or isinstance(e, ValueError):
        return UsageError(f"invalid URL {url!r}")
    if isinstance(cause, TimeoutError) or isinstance(e, TimeoutError):
        return ConnectError(
            f"cannot connect to {url}: no Socket.IO connection within {options.connect_timeout:g} s"
        )
    if isinstance(cause, aiohttp.ClientError | OSError):
        return ConnectError(f"cannot connect to {url}: {short_reason(cause)}")
    return ConnectError(f"cannot connect to {url}: {short_reason(e)}")


def refusal_error(namespace: str, data: Any) -> StreamcliError:
    """The server refused the namespace (a CONNECT_ERROR packet)."""
    message = data.get("message") if isinstance(data, dict) else data
    text = str(message) if message not in (None, "") else "no reason given"
    line = f"the server refused the connection to namespace {namespace}: {text}"
    if _AUTH_WORDS.search(text):
        return AuthError(line)
    return ServerError(line + " (check --namespace)")
