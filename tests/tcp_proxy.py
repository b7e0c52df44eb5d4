"""A small TCP forwarder on loopback, for tests that take the database away and give it back.

``cut()`` closes every forwarded connection and stops listening (new connects
are refused); ``restore()`` listens again on the same port. The upstream is a
``(host, port)`` pair or the path of a Unix socket (the embedded server).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import urllib.parse
from types import TracebackType

import psycopg

Upstream = tuple[str, int] | str

_CHUNK = 65536
_JOIN_TIMEOUT = 5.0


def upstream_of(url: str) -> Upstream:
    """Where a libpq URL connects: its TCP address, or its Unix socket file."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    host = str(params.get("host") or "/tmp")
    port = int(params.get("port") or 5432)
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return (host, port)


def url_through(url: str, proxy_port: int) -> str:
    """The same database, user and password as ``url``, reached through 127.0.0.1:``proxy_port``."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    user = urllib.parse.quote(str(params.get("user") or ""), safe="")
    password = params.get("password")
    auth = user + (":" + urllib.parse.quote(str(password), safe="") if password else "")
    dbname = urllib.parse.quote(str(params.get("dbname") or ""), safe="")
    return f"postgresql://{auth}@127.0.0.1:{proxy_port}/{dbname}"


class TcpProxy:
    """Forwards connections from 127.0.0.1:``port`` to ``upstream``, ``max_connections`` at once."""

    def __init__(self, upstream: Upstream, *, max_connections: int = 32) -> None:
        self.upstream = upstream
        self.max_connections = max_connections
        self.port = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._pipes: dict[threading.Thread, tuple[socket.socket, socket.socket]] = {}

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cut()

    def restore(self) -> None:
        """Listen (again, on the same port once one was chosen) and forward new connections."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(16)
            self.port = listener.getsockname()[1]
            self._listener = listener
            self._accepting = threading.Thread(
                target=self._accept_loop, args=(listener,), name="tcp-proxy-accept", daemon=True
            )
            self._accepting.start()

    def cut(self) -> None:
        """Refuse new connections and break every open one; returns once all are closed."""
        with self._lock:
            listener, self._listener = self._listener, None
            accepting, self._accepting = self._accepting, None
            pipes = dict(self._pipes)
        if listener is not None:
            _shutdown(listener)  # wakes the blocked accept()
        if accepting is not None:
            accepting.join(_JOIN_TIMEOUT)
            assert not accepting.is_alive(), "the proxy's accept thread did not stop"
        if listener is not None:
            listener.close()
        for thread, (client, server) in pipes.items():
            _shutdown(client)
            _shutdown(server)
            thread.join(_JOIN_TIMEOUT)
            assert not thread.is_alive(), "a proxied connection did not close"

    def connection_count(self) -> int:
        with self._lock:
            return len(self._pipes)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut() shut the listener down
            try:
                server = self._connect_upstream()
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener or len(self._pipes) >= self.max_connections:
                    client.close()
                    server.close()
                    continue
                thread = threading.Thread(
                    target=self._pipe, args=(client, server), name="tcp-proxy-pipe", daemon=True
                )
                self._pipes[thread] = (client, server)
                thread.start()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(_JOIN_TIMEOUT)
        try:
            sock.connect(self.upstream)
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        return sock

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        """Copy bytes both ways until either side closes or errs, then close both."""
        peer = {client: server, server: client}
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(client, selectors.EVENT_READ)
                selector.register(server, selectors.EVENT_READ)
                while True:
                    for key, _ in selector.select():
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = source.recv(_CHUNK)
                        if not data:
                            return
                        peer[source].sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._pipes.pop(threading.current_thread(), None)
            client.close()
            server.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed or never connected
        sock.shutdown(socket.SHUT_RDWR)
