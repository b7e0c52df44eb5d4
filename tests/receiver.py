"""A real HTTP receiver on loopback for delivery tests: scripted answers, every request kept."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the receiver answers one request: a status, headers, a body, after a delay."""

    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int  # the same for requests that reused one connection


class Receiver:
    """Answers requests from ``script`` in turn (the last answer repeats); keeps each request."""

    def __init__(
        self,
        script: list[Answer] | None = None,
        on_request: Callable[[Received], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tls = tls  # a server context: HTTPS, and the names clients asked for (SNI) kept
        self.server_names: list[str | None] = []
        self.script = list(script or [Answer()])
        self.on_request = on_request  # runs before each answer (the sender is waiting)
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _next(self, received: Received) -> Answer:
        with self._lock:
            self.requests.append(received)
            index = min(len(self.requests) - 1, len(self.script) - 1)
            return self.script[index]

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender went away mid-request: nothing arrived
                    self.close_connection = True
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                received = Received(self.path, headers, body, self.client_address[1])
                answer = receiver._next(received)
                if receiver.on_request is not None:
                    receiver.on_request(received)
                time.sleep(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                # A sender that died or gave up mid-answer (the crash tests kill them).
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]

        server = Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            context = self.tls

            def note_name(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
                receiver.server_names.append(name)

            context.sni_callback = note_name  # type: ignore[assignment]
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
