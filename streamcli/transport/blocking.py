"""A blocking WebSocket (websocket-client) with the same failures as ``transport.websocket``.

For the Locust users (``streamcli.locust``): under Locust's gevent monkey-patching, a blocking
socket yields to the other greenlets, so thousands of sessions run in one thread without an
event loop. websocket-client is what locust-plugins uses for WebSockets; it comes with the
``streamcli[locust]`` extra. Every connect failure becomes the ``StreamcliError`` the aiohttp
transport raises for it, with the same words, so an error kind means the same everywhere.
No header value or URL secret is ever put in a message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from typing import Any
from urllib.parse import urlsplit

import websocket

from streamcli.backends.base import ConnectRequest, Frame
from streamcli.exit import ConnectError, StreamcliError, UsageError
from streamcli.redact import public_url
from streamcli.transport.websocket import (
    MESSAGE_TOO_BIG,
    Incoming,
    WireOptions,
    check_headers,
    handshake_error,
    message_too_big,
    no_handshake,
    short_reason,
    status_text,
    tls_failure,
    tls_reason,
    unknown_host,
)

TEXT, BINARY, CLOSE = (
    websocket.ABNF.OPCODE_TEXT,
    websocket.ABNF.OPCODE_BINARY,
    websocket.ABNF.OPCODE_CLOSE,
)


class BlockingConnection:
    def __init__(self, ws: websocket.WebSocket, max_msg_size: int = 0) -> None:
        self._ws = ws
        self._max_msg_size = max_msg_size  # 0: no limit, as aiohttp's max_msg_size

    @classmethod
    def open(
        cls, request: ConnectRequest, options: WireOptions, handshake: Any = None
    ) -> BlockingConnection:
        """Connect; ``handshake(status, text)`` is the backend's reading of a refusal."""
        handshake = handshake or handshake_error
        check_headers(request.headers)
        where = public_url(request.url)
        try:
            ws = websocket.create_connection(
                request.url,
                timeout=options.connect_timeout,
                header=[f"{k}: {v}" for k, v in request.headers.items()],
                sslopt=_sslopt(options),
                enable_multithread=True,  # its lock keeps two greenlets' frames whole
                skip_utf8_validation=True,
            )
        except websocket.WebSocketBadStatusException as e:
            status = e.status_code
            raise handshake(status, status_text(status, e.status_message or "")) from None
        except (ssl.SSLError, ssl.CertificateError) as e:
            raise tls_failure(where, tls_reason(e)) from None
        except websocket.WebSocketAddressException as e:
            raise unknown_host(request.url, short_reason(e)) from None
        except (TimeoutError, websocket.WebSocketTimeoutException):
            raise no_handshake(where, options) from None
        except ValueError as e:
            raise UsageError(f"invalid URL {where!r} ({e})") from None
        except StreamcliError:
            raise
        except ConnectionRefusedError as e:
            raise ConnectError(f"cannot connect to {where}: {_refused(request.url, e)}") from None
        except (OSError, websocket.WebSocketException) as e:
            raise ConnectError(f"cannot connect to {where}: {short_reason(e)}") from None
        ws.settimeout(None)
        return cls(ws, options.max_msg_size)

    def send(self, frame: Frame) -> None:
        if isinstance(frame, str):
            self._ws.send(frame)
        else:
            self._ws.send_binary(frame)

    def receive(self) -> Incoming:
        """The next message, as the aiohttp transport gives it; pings are answered on the
        way."""
        try:
            opcode, data = self._ws.recv_data()
        except (OSError, websocket.WebSocketException):
            return Incoming("close", reason="connection lost")
        limit = self._max_msg_size
        if opcode in (TEXT, BINARY) and limit and len(data) > limit:
            # websocket-client has no limit of its own: the message is read, then refused with
            # the aiohttp transport's error (aiohttp's words for the detail).
            detail = f"Message size {len(data)} exceeds limit {limit}"
            return Incoming("error", code=MESSAGE_TOO_BIG, reason=message_too_big(detail))
        if opcode == TEXT:
            return Incoming("text", data.decode("utf-8", "replace"))
        if opcode == BINARY:
            return Incoming("binary", bytes(data))
        if opcode == CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
            return Incoming("close", code=code, reason=data[2:].decode("utf-8", "replace"))
        return Incoming("close", reason="connection lost")

    def close(self) -> None:
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self._ws.send_close()
        with contextlib.suppress(OSError):
            self._ws.shutdown()


def _sslopt(options: WireOptions) -> dict[str, Any]:
    if options.insecure:
        return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    if options.ca_file:
        options.ssl_context()  # the same refusal of a file that does not load
        return {"ca_certs": options.ca_file}
    return {}


def _refused(url: str, e: OSError) -> str:
    """asyncio's words for a refused connection (the CLI's), where the address is known."""
    parts = urlsplit(url)
    try:
        ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return short_reason(e)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return f"Connect call failed ({parts.hostname!r}, {port})"
