"""HTTPS to the checked address: the URL's host name for SNI and the certificate, a test CA."""

from __future__ import annotations

import pathlib
import shutil
import ssl
import subprocess

import pytest

from eventflo import sender, webhooks
from tests.receiver import Receiver

REQUEST = webhooks.Request(b"{}", {"content-type": "application/json"})


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> pathlib.Path:
    """A CA, and a certificate it signed for hooks.test (the names are the test's own)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed (apt-get install openssl; .ci/run installs it)")
    where = tmp_path_factory.mktemp("tls")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
        "-keyout", "ca.key", "-out", "ca.pem", cwd=where,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hooks.test",
        "-keyout", "server.key", "-out", "server.csr", cwd=where,
    )  # fmt: skip
    (where / "san.ext").write_text("subjectAltName=DNS:hooks.test\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=where,
    )  # fmt: skip
    return where


@pytest.fixture
def tls_receiver(certificates):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "server.pem", certificates / "server.key")
    with Receiver(tls=context).running() as receiver:
        yield receiver


def _sender(certificates, **kwargs) -> sender.Sender:
    return sender.Sender(
        timeout_seconds=5.0,
        allow_private=True,  # the receiver is on loopback
        resolver=lambda host, port: ["127.0.0.1"],
        **kwargs,
    )


def test_https_goes_to_the_checked_address_with_the_urls_name(certificates, tls_receiver):
    send = _sender(certificates, ca_certs=str(certificates / "ca.pem"))
    outcome = send.send(f"https://hooks.test:{tls_receiver.port}/hook", REQUEST)
    assert outcome.delivered, outcome.error
    assert tls_receiver.server_names == ["hooks.test"]  # SNI: the name, not the address
    assert tls_receiver.requests[0].headers["host"] == f"hooks.test:{tls_receiver.port}"


def test_a_certificate_for_another_name_is_refused(certificates, tls_receiver):
    send = _sender(certificates, ca_certs=str(certificates / "ca.pem"))
    outcome = send.send(f"https://other.test:{tls_receiver.port}/hook", REQUEST)
    assert outcome.status_code is None
    assert "hostname 'other.test' doesn't match 'hooks.test'" in outcome.error
    assert tls_receiver.requests == []


def test_a_certificate_from_an_unknown_authority_is_refused(certificates, tls_receiver):
    send = _sender(certificates)  # the system's authorities, which never signed the test CA
    outcome = send.send(f"https://hooks.test:{tls_receiver.port}/hook", REQUEST)
    assert outcome.status_code is None and "certificate" in outcome.error.lower()
    assert tls_receiver.requests == []
