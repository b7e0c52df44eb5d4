"""The deliver mode's receiver: answers every POST with 204, in a process of its own.

Fast enough not to be what the bench measures: asyncio, keep-alive, no
parsing beyond finding each request's end (its headers' blank line and its
``content-length``; a chunked body, as deliverers never send, closes the
connection). A threaded ``http.server`` in the bench process, the
first receiver, topped out below the deliverers on a slow day (565 against
1,390 deliveries/s the same day with this one; see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from collections.abc import Iterator

ANSWER = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
MAX_HEADER_BYTES = 65536
MAX_BODY_BYTES = 1 << 20


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self.transport.close()
                return
            length = _content_length(bytes(self.buffer[:end]))
            if length is None:  # chunked, or a length it cannot read: not for this receiver
                self.transport.close()
                return
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(ANSWER)


def _content_length(head: bytes) -> int | None:
    """The body's length; None for a body it does not take (chunked, or too large)."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return None
    return length if 0 <= length <= MAX_BODY_BYTES else None


def _serve(ready: multiprocessing.connection.Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops it with SIGTERM

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Connection, "127.0.0.1", 0)
        ready.send(server.sockets[0].getsockname()[1])
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


@contextlib.contextmanager
def running() -> Iterator[str]:
    """A receiver process on loopback; its URL while the block runs."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(child,), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the bench's receiver did not start")
        port = parent.recv()
        yield f"http://127.0.0.1:{port}/eventflo-bench"
    finally:
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
