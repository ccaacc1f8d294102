"""The WebSocket wire: thin aiohttp glue that opens a connection and moves messages.

Every connect failure becomes a ``StreamcliError`` with one clear line; the backend decides
what an HTTP status at the handshake means (``handshake_error``).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from dataclasses import dataclass
from typing import Any

import aiohttp

from streamcli.backends.base import ConnectRequest, Frame
from streamcli.exit import AuthError, ConnectError, ServerError, StreamcliError, UsageError

DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024


@dataclass(frozen=True)
class WireOptions:
    connect_timeout: float = 10.0
    heartbeat: float | None = 30.0  # WebSocket ping interval; a dead peer is dropped after it
    max_msg_size: int = DEFAULT_MAX_MESSAGE
    ca_file: str | None = None
    insecure: bool = False

    def ssl_context(self) -> ssl_module.SSLContext | bool:
        if self.insecure:
            return False
        if self.ca_file:
            try:
                return ssl_module.create_default_context(cafile=self.ca_file)
            except (OSError, ssl_module.SSLError) as e:
                raise UsageError(f"--ca-file {self.ca_file}: cannot load it ({e})") from None
        return True


@dataclass(frozen=True)
class Incoming:
    kind: str  # "text" | "binary" | "close" | "error"
    data: str | bytes | None = None
    code: int | None = None
    reason: str = ""


def describe_status(status: int) -> str:
    return f"HTTP {status}"


def handshake_error(status: int, message: str) -> StreamcliError:
    """Default meaning of an HTTP status at the WebSocket handshake."""
    text = f"the server refused the connection: HTTP {status}{' ' + message if message else ''}"
    if status in (401, 403):
        return AuthError(text)
    if status >= 500:
        return ConnectError(text)
    return ServerError(text)


class WebSocketConnection:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws

    @classmethod
    async def open(
        cls,
        request: ConnectRequest,
        options: WireOptions,
        handshake: Any = handshake_error,
    ) -> WebSocketConnection:
        timeout = aiohttp.ClientTimeout(total=None, connect=options.connect_timeout)
        session = aiohttp.ClientSession(timeout=timeout)
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(
                    request.url,
                    headers=request.headers,
                    heartbeat=options.heartbeat,
                    max_msg_size=options.max_msg_size,
                    ssl=options.ssl_context(),
                    autoping=True,
                ),
                timeout=options.connect_timeout,
            )
        except BaseException as e:
            await session.close()
            raise _connect_failure(e, request.url, options, handshake) from None
        return cls(session, ws)

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, str):
            await self._ws.send_str(frame)
        else:
            await self._ws.send_bytes(frame)

    async def receive(self) -> Incoming:
        msg = await self._ws.receive()
        t = msg.type
        if t == aiohttp.WSMsgType.TEXT:
            return Incoming("text", msg.data)
        if t == aiohttp.WSMsgType.BINARY:
            return Incoming("binary", msg.data)
        if t == aiohttp.WSMsgType.CLOSE:
            return Incoming("close", code=msg.data, reason=msg.extra or "")
        if t == aiohttp.WSMsgType.ERROR:
            return Incoming("error", reason=_error_text(msg.data, self._ws))
        # CLOSING / CLOSED: the transport is gone (TCP reset, heartbeat timeout)
        code = self._ws.close_code
        return Incoming(
            "close", code=code, reason="connection lost" if code in (None, 1006) else ""
        )

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def close(self) -> None:
        try:
            if not self._ws.closed:
                await asyncio.wait_for(self._ws.close(), timeout=2.0)
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        finally:
            await self._session.close()


def _error_text(exc: Any, ws: aiohttp.ClientWebSocketResponse) -> str:
    if isinstance(exc, aiohttp.WebSocketError) and exc.code == 1009:
        return f"the server sent a message larger than the limit ({exc})"
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer to WebSocket pings: the server is gone"
    return str(exc) or type(exc).__name__


def _connect_failure(
    e: BaseException, url: str, options: WireOptions, handshake: Any
) -> BaseException:
    if isinstance(e, StreamcliError):
        return e
    if isinstance(e, aiohttp.WSServerHandshakeError):
        return handshake(e.status, e.message or "")
    if isinstance(e, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return ConnectError(
            f"TLS failure connecting to {url}: {_short(e)} "
            "(trust the server's certificate with --ca-file PATH, or skip checks with --insecure)"
        )
    if isinstance(e, aiohttp.ClientConnectorError):
        return ConnectError(f"cannot connect to {url}: {_short(e)}")
    if isinstance(e, TimeoutError):
        return ConnectError(
            f"cannot connect to {url}: no WebSocket handshake within {options.connect_timeout:g} s"
        )
    if isinstance(e, aiohttp.InvalidURL | ValueError):
        return UsageError(f"invalid URL {url!r}")
    if isinstance(e, aiohttp.ClientError | OSError):
        return ConnectError(f"cannot connect to {url}: {_short(e)}")
    return e


def _short(e: BaseException) -> str:
    os_error = getattr(e, "os_error", None)
    if os_error is not None and getattr(os_error, "strerror", None):
        return str(os_error.strerror)
    text = str(e)
    return text.split("] ", 1)[-1] if text else type(e).__name__
