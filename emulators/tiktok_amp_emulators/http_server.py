"""A small threaded HTTP server base shared by the TikTok and Amplitude emulators.

Each emulator subclasses :class:`EmulatorServer`, implements ``handle(request) -> Response`` and is
started with ``with Emulator(...) as emulator: emulator.url``. The server runs in a daemon thread
on 127.0.0.1 (port 0 picks a free port), so tests and the demo talk to it over real sockets.

With ``tls`` (a server-side ``ssl.SSLContext`` holding a certificate) it speaks HTTPS, as the real
APIs do: the project refuses plain ``http://`` to any host but loopback, so a client in a container
(tests/deploy/) reaches an emulator on another address only this way.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from tiktok_amp_emulators.faults import Fault, FaultInjector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        return cls(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm holds the body ~40 ms.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        # BaseHTTPRequestHandler logs the request line to stderr; request lines never carry
        # secrets here, but keep the emulators quiet and route through logging instead.
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if (self.headers.get("Content-Encoding") or "").lower() == "gzip" and body:
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                self._send(Response.json(400, {"code": 400, "error": "Invalid gzip body"}))
                return
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        emulator = self.server.emulator
        fault = emulator.faults.draw(request)
        if fault is Fault.DROP_CONNECTION:
            self._drop()
            return
        if fault is Fault.SLOW:
            time.sleep(emulator.faults.slow_seconds)
            fault = None
        if fault is Fault.HTTP_503:
            # What a load balancer in front of either API sends: not JSON at all.
            html = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
            self._send(Response(503, html, content_type="text/html"))
            return
        if fault is Fault.TRUNCATED_BODY:
            response = emulator.handle(request, None)
            self._send(response, truncate=True)
            return
        response = emulator.handle(request, fault)
        self._send(response)

    def _send(self, response: Response, *, truncate: bool = False) -> None:
        body = response.body
        if truncate:
            body = body[: max(1, len(body) // 2)]
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        # A truncated body keeps the full Content-Length: the client sees a connection that
        # ends early, as with a real proxy dying mid-response.
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
            if truncate:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        tls = self.emulator.tls
        if tls is None:
            super().finish_request(request, client_address)
            return
        # The TLS handshake runs here, in the connection's own thread, not in the accepting one.
        with tls.wrap_socket(request, server_side=True) as tls_request:
            super().finish_request(tls_request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (timed out, killed) is routine for an API server: one debug line,
        # not socketserver's traceback on stderr; so is a TLS handshake the client broke off (it
        # does not trust the certificate). Anything else is an emulator bug: shown in full.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            log.debug("client %s hung up mid-request", client_address)
            return
        super().handle_error(request, client_address)


class EmulatorServer:
    """Base class: a real HTTP server on loopback running in a background thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultInjector | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.faults = faults or FaultInjector()
        self.tls = tls
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.lock = threading.RLock()

    def handle(self, request: Request, fault: Fault | None) -> Response:
        """Answer one request.

        ``fault`` is None (answer normally) or one of RATE_LIMIT, SERVER_ERROR, PAYLOAD_TOO_LARGE,
        ACCEPTED_THEN_ERROR: the emulator renders it the way its API does. Transport faults never
        reach here.
        """
        raise NotImplementedError

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator is not started")
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def start(self) -> Self:
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
