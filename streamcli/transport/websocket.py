"""The WebSocket wire: thin aiohttp glue that opens a connection and moves messages.

Every connect failure becomes a ``StreamcliError`` with one clear line; the backend decides
what an HTTP status at the handshake means (``handshake_error``). Failures that a reconnect
cannot repair (TLS, an unknown host) are ``PermanentConnectError``. Nothing here ever puts a
header value in a message: they carry credentials. Messages name the URL without its user
info or query (``redact.public_url``).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from streamcli.backends.base import ConnectRequest, Frame
from streamcli.exit import (
    ConnectError,
    StreamcliError,
    UsageError,
    handshake_refusal,
)
from streamcli.redact import public_url

DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024
MESSAGE_TOO_BIG = 1009  # RFC 6455 close code: a message over the size limit
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class PermanentConnectError(ConnectError):
    """A connect failure that trying again will not repair (TLS, unknown host)."""


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
    code: int | None = None  # the close code; for "error", 1009 = a message over the limit
    reason: str = ""


def check_headers(headers: dict[str, str]) -> None:
    """Refuse header names or values with line breaks (header injection) before connecting.

    The message names the header, never its value: header values are often credentials.
    """
    for name, value in headers.items():
        if any(c in name for c in "\r\n\0:") or not name.strip():
            raise UsageError(f"refusing to send a header with an invalid name {name!r}")
        if any(c in str(value) for c in "\r\n\0"):
            raise UsageError(
                f"refusing to send the {name} header: its value contains a line break "
                "or a NUL character"
            )


def plaintext_credentials_warning(request: ConnectRequest) -> str | None:
    """A warning when credentials would cross the network unencrypted (ws:// or http:// to
    a host that is not this machine); None otherwise."""
    if not any(request.secrets):
        return None
    p = urlsplit(request.url)
    if p.scheme not in ("ws", "http"):
        return None
    host = (p.hostname or "").lower()
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    return (
        f"credentials are sent unencrypted to {host} ({p.scheme}://): "
        f"use {'wss' if p.scheme == 'ws' else 'https'}:// unless this network is trusted"
    )


def handshake_error(status: int, message: str) -> StreamcliError:
    """Default meaning of an HTTP status at the WebSocket handshake."""
    return handshake_refusal(status, message)


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
        check_headers(request.headers)
        ssl = options.ssl_context()
        timeout = aiohttp.ClientTimeout(total=None, connect=options.connect_timeout)
        session = aiohttp.ClientSession(timeout=timeout)
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(
                    request.url,
                    headers=request.headers,
                    heartbeat=options.heartbeat or None,
                    max_msg_size=options.max_msg_size,
                    ssl=ssl,
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
            code = getattr(msg.data, "code", None)
            return Incoming(
                "error",
                code=code if code == MESSAGE_TOO_BIG else None,
                reason=_error_text(msg.data, self._ws),
            )
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
    if isinstance(exc, aiohttp.WebSocketError) and exc.code == MESSAGE_TOO_BIG:
        return message_too_big(str(exc))
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer to WebSocket pings: the server is gone"
    return str(exc) or type(exc).__name__


def _connect_failure(
    e: BaseException, url: str, options: WireOptions, handshake: Any
) -> BaseException:
    where = public_url(url)
    if isinstance(e, StreamcliError):
        return e
    if isinstance(e, aiohttp.WSServerHandshakeError):
        return handshake(e.status, status_text(e.status, e.message or ""))
    if isinstance(e, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return tls_failure(where, tls_reason(e))
    if isinstance(e, aiohttp.ClientConnectorDNSError):
        return unknown_host(url, short_reason(e))
    if isinstance(e, aiohttp.ClientConnectorError):
        return ConnectError(f"cannot connect to {where}: {short_reason(e)}")
    if isinstance(e, TimeoutError):
        return no_handshake(where, options)
    if isinstance(e, aiohttp.InvalidURL | ValueError):
        return UsageError(f"invalid URL {where!r}")
    if isinstance(e, aiohttp.ClientError | OSError):
        return ConnectError(f"cannot connect to {where}: {short_reason(e)}")
    return e


# ---- the failures' words, shared with the blocking transport (``transport.blocking``) ----------
def message_too_big(detail: str) -> str:
    return f"the server sent a message larger than the limit ({detail})"


def tls_failure(where: str, reason: str) -> PermanentConnectError:
    return PermanentConnectError(
        f"TLS failure connecting to {where}: {reason} "
        "(trust the server's certificate with --ca-file PATH, or skip checks with --insecure)"
    )


def unknown_host(url: str, reason: str) -> PermanentConnectError:
    host = urlsplit(url).hostname or public_url(url)
    return PermanentConnectError(
        f"cannot connect to {public_url(url)}: unknown host {host} ({reason})"
    )


def no_handshake(where: str, options: WireOptions) -> ConnectError:
    seconds = f"{options.connect_timeout:g}"
    return ConnectError(f"cannot connect to {where}: no WebSocket handshake within {seconds} s")


def status_text(status: int, message: str) -> str:
    """aiohttp says "Invalid response status" for any refusal: name the status instead."""
    if message and message != "Invalid response status":
        return message
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def tls_reason(e: BaseException) -> str:
    """Why TLS failed, from aiohttp's wrapper (``certificate_error``, ``os_error``) or from
    the ``ssl`` error itself (websocket-client raises those as they are)."""
    cert_error = getattr(e, "certificate_error", None) or e
    verify = getattr(cert_error, "verify_message", None)
    if verify:
        return f"certificate verify failed: {verify}"
    reason = getattr(getattr(e, "os_error", None), "reason", None) or getattr(e, "reason", None)
    return str(reason).replace("_", " ").lower() if reason else short_reason(e)


def short_reason(e: BaseException) -> str:
    """An OS error's own words (aiohttp's wrapped one's), else the text after any "[...] "."""
    error = getattr(e, "os_error", None) or e
    strerror = getattr(error, "strerror", None)
    if strerror:
        return str(strerror)
    text = str(e)
    return text.split("] ", 1)[-1] if text else type(e).__name__
