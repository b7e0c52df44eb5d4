"""One delivery attempt over HTTP: to the address that was checked, never redirected.

The host is resolved here and every address checked (``endpoint_urls``)
right before connecting, and the connection goes to the checked address
itself, with the URL's host name kept for TLS (SNI and certificate) and
the Host header: a name that resolves to a public address when the endpoint
is added and to a private one later (DNS rebinding) is refused at send
time too. Redirects are not followed (a 3xx is an answer like any other
non-2xx), connect and read each have a timeout, and at most
``MAX_RESPONSE_BYTES`` of the answer are read and kept.

urllib3 (the HTTP library under requests; pools, timeouts, TLS) does the
HTTP; connections are kept per address and host name, so a busy endpoint
does not pay a handshake per request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import threading
import time
import urllib.parse
from collections.abc import Callable

import urllib3

from eventflo import endpoint_urls, webhooks

MAX_RESPONSE_BYTES = 1024
MAX_ERROR_CHARS = 1000
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt got: an answer (status code, its start) or an error, and how long."""

    status_code: int | None
    response_body: str | None
    error: str | None
    duration_ms: float
    retry_after_seconds: float | None = None  # from a 429's or a 503's Retry-After
    gone: bool = False  # nothing could be sent, and nothing ever will (its event is purged)
    ours: bool = False  # failed on this side (no event, a bug): says nothing of the endpoint

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    """Sends requests; thread-safe; keeps a pool of connections per address and host name."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        allow_private: bool,
        resolver: Callable[[str, int], list[str]] = endpoint_urls.resolve,
        connections_per_host: int = 4,
        ca_certs: str | None = None,
    ) -> None:
        self._timeout = urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds)
        self._allow_private = allow_private
        self._resolve = resolver
        self._per_host = connections_per_host
        self._ca_certs = ca_certs  # None: the system's trusted authorities
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def send(self, url: str, request: webhooks.Request) -> Outcome:
        started = time.perf_counter()
        try:
            return self._send(url, request, started)
        except endpoint_urls.EndpointUrlError as exc:
            return _error(str(exc), started)
        except urllib3.exceptions.NewConnectionError as exc:  # a TimeoutError subclass in 2.x
            return _error(f"cannot connect: {_reason(exc)}", started)
        except urllib3.exceptions.TimeoutError as exc:
            return _error(f"timed out: {_reason(exc)}", started)
        except urllib3.exceptions.HTTPError as exc:
            return _error(f"{type(exc).__name__}: {_reason(exc)}", started)
        except OSError as exc:
            return _error(f"{type(exc).__name__}: {exc}", started)

    def _send(self, url: str, request: webhooks.Request, started: float) -> Outcome:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" and not self._allow_private:
            # Added while plain http:// was allowed; it is not any more.
            raise endpoint_urls.EndpointUrlError(
                "the URL is plain http://, allowed only with EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on"
            )
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = self._resolve(host, port)
        for address in addresses:  # every one: a name must not hide a private address
            endpoint_urls.check_address(address, allow_private=self._allow_private)
        if not addresses:
            raise endpoint_urls.EndpointUrlError(f"the host {host!r} resolves to no address")
        pool = self._pool(parts.scheme, addresses[0], port, host)
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        response = pool.urlopen(
            "POST",
            target,
            body=request.body,
            headers={**request.headers, "host": parts.netloc.rpartition("@")[2]},
            redirect=False,
            retries=False,
            timeout=self._timeout,
            preload_content=False,
            assert_same_host=False,
        )
        start = b""
        try:
            start = response.read(MAX_RESPONSE_BYTES, decode_content=False)
        finally:
            if len(start) < MAX_RESPONSE_BYTES:
                response.release_conn()  # the whole answer was read: the connection is reusable
            else:
                response.close()  # more may follow: never read it, never reuse the connection
        retry_after = None
        if response.status in (429, 503):
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
        return Outcome(
            status_code=response.status,
            response_body=storable_text(start),
            error=None,
            duration_ms=_ms(started),
            retry_after_seconds=retry_after,
        )

    def _pool(self, scheme: str, address: str, port: int, host: str) -> urllib3.HTTPConnectionPool:
        key = (scheme, address, port, host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                if scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        address,
                        port,
                        maxsize=self._per_host,
                        block=False,
                        server_hostname=host,  # SNI, and the name the certificate must carry
                        assert_hostname=host,
                        cert_reqs="CERT_REQUIRED",
                        ca_certs=self._ca_certs,
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(address, port, maxsize=self._per_host)
                self._pools[key] = pool
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def storable_text(raw: bytes, limit: int = MAX_RESPONSE_BYTES) -> str:
    """An answer's start as text PostgreSQL stores: no NUL, at most ``limit`` bytes of UTF-8.

    Receivers answer anything, binary included; what is kept is for people
    to read (and is rendered escaped wherever it is shown).
    """
    text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return text.encode()[:limit].decode("utf-8", errors="ignore")


def retry_after_seconds(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """A Retry-After header in seconds (a number, or an HTTP date); None when absent or odd."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def _error(message: str, started: float) -> Outcome:
    return Outcome(None, None, message[:MAX_ERROR_CHARS], _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
