"""Tests for the lab certificate authority: real handshakes and the certificate fields ACM sets."""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import stat
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.lab.pki import IssuedCertificate, LabCA, check_domain_name


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.create(tmp_path_factory.mktemp("pki"))


class _TLSServer:
    """Accept TLS connections on 127.0.0.1 and answer each with one line."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopping = False
        self._thread.start()

    def _serve(self) -> None:
        # A short accept timeout lets close() stop the loop: closing a socket does not wake a
        # thread blocked in accept() on Linux.
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self._context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello from the lab\n")
            except (ssl.SSLError, OSError) as exc:
                # A client that rejects our certificate aborts the handshake; record, keep serving.
                self.errors.append(exc)

    def close(self) -> None:
        self._stopping = True
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def server(ca: LabCA) -> Iterator[_TLSServer]:
    cert = ca.issue(["api.example.com", "*.demo.example.com"])
    srv = _TLSServer(ca.server_context(cert))
    yield srv
    srv.close()


def _fetch(port: int, context: ssl.SSLContext, host: str) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        return tls.recv(100)


@pytest.mark.parametrize("host", ["api.example.com", "x.demo.example.com", "API.EXAMPLE.COM"])
def test_handshake_succeeds_for_a_name_on_the_certificate(
    ca: LabCA, server: _TLSServer, host: str
) -> None:
    assert _fetch(server.port, ca.client_context(), host) == b"hello from the lab\n"


@pytest.mark.parametrize(
    "host", ["other.example.com", "example.com", "a.b.demo.example.com", "demo.example.com"]
)
def test_handshake_fails_verification_for_a_wrong_name(
    ca: LabCA, server: _TLSServer, host: str
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _fetch(server.port, ca.client_context(), host)


def test_client_that_does_not_trust_the_lab_ca_fails(server: _TLSServer, tmp_path: Path) -> None:
    stranger = LabCA.create(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _fetch(server.port, stranger.client_context(), "api.example.com")
    # The system trust store must not vouch for the lab either.
    with pytest.raises(ssl.SSLCertVerificationError):
        _fetch(server.port, ssl.create_default_context(), "api.example.com")


def test_server_speaks_tls_1_2_and_nothing_older(ca: LabCA, server: _TLSServer) -> None:
    assert ca.server_context(ca.issue(["api.example.com"])).minimum_version == (
        ssl.TLSVersion.TLSv1_2
    )
    context = ca.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="api.example.com") as tls,
    ):
        assert tls.version() == "TLSv1.2"


def test_bundle_holds_the_ca_certificate_only(ca: LabCA) -> None:
    text = ca.bundle_path.read_text()
    assert text == ca.ca_pem
    assert "PRIVATE KEY" not in text
    assert [p.name for p in ca.bundle_path.parent.iterdir()] == ["ca.pem"]
    assert x509.load_pem_x509_certificates(text.encode()) == [ca.certificate]


def test_ca_certificate_fields(ca: LabCA) -> None:
    cert = x509.load_pem_x509_certificate(ca.ca_pem.encode())
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "regiondrill lab CA"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    now = dt.datetime.now(dt.UTC)
    assert now - dt.timedelta(hours=2) < cert.not_valid_before_utc < now
    assert cert.not_valid_after_utc - now == pytest.approx(
        dt.timedelta(days=30), abs=dt.timedelta(minutes=1)
    )


def test_leaf_certificate_fields(ca: LabCA) -> None:
    issued = ca.issue(["api.example.com", "*.example.com"])
    leaf = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    assert leaf.issuer == ca.certificate.subject
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "api.example.com"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["api.example.com", "*.example.com"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.public_key().curve.name == "secp256r1"
    leaf.verify_directly_issued_by(ca.certificate)

    assert issued.not_before == leaf.not_valid_before_utc
    assert issued.not_after == leaf.not_valid_after_utc
    assert issued.not_before.tzinfo is not None
    assert (issued.not_after - issued.not_before).days == 395  # 13 months, as ACM issues
    assert int(issued.serial.replace(":", ""), 16) == leaf.serial_number
    assert all(len(pair) == 2 for pair in issued.serial.split(":"))
    assert issued.fingerprint_sha256 == leaf.fingerprint(hashes.SHA256()).hex()
    assert x509.load_pem_x509_certificates(issued.chain_pem.encode()) == [leaf, ca.certificate]
    assert "PRIVATE KEY" in issued.key_pem
    assert "PRIVATE KEY" not in repr(issued)


def test_long_first_name_goes_to_a_critical_san_with_an_empty_subject(ca: LabCA) -> None:
    name = ("a" * 60 + ".") * 2 + "example.com"
    leaf = x509.load_pem_x509_certificate(ca.issue([name]).cert_pem.encode())
    assert len(leaf.subject) == 0
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == [name]


def test_issuing_the_same_names_returns_the_cached_certificate(ca: LabCA) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ca.issue(["cache.example.com"]), range(16)))
    assert all(result is results[0] for result in results)
    assert ca.issue(["CACHE.example.com"]) is results[0]
    assert ca.issue(["cache.example.com", "www.example.com"]).serial != results[0].serial


def test_server_context_leaves_no_key_on_disk(
    ca: LabCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    written: list[int] = []
    real_mkstemp = tempfile.mkstemp

    def spying_mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, path = real_mkstemp(*args, **kwargs)  # type: ignore[call-overload]
        written.append(stat.S_IMODE(Path(path).stat().st_mode))
        return fd, path

    monkeypatch.setattr("tempfile.mkstemp", spying_mkstemp)
    ca.server_context(ca.issue(["api.example.com"]))
    assert written == [0o600]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("names", "bad"),
    [
        (["api.example.com", "bad name.example.com"], "bad name.example.com"),
        (["localhost"], "localhost"),
        (["example.com."], "example.com."),
        (["10.0.0.1"], "10.0.0.1"),
        (["*.com"], r"\*\.com"),
        (["api.*.example.com"], r"api\.\*\.example\.com"),
        (["-api.example.com"], "-api.example.com"),
        (["api-.example.com"], "api-.example.com"),
        (["a" * 64 + ".example.com"], "a" * 64),
        (["ex_ample.com"], "ex_ample.com"),
        (["bücher.example"], "bücher.example"),
        (["api.example.com", "API.example.com"], "api.example.com"),
        ([""], "''"),
    ],
)
def test_bad_names_are_rejected_naming_the_name(ca: LabCA, names: list[str], bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        ca.issue(names)


def test_empty_or_string_name_list_is_rejected(ca: LabCA) -> None:
    with pytest.raises(ValueError, match="at least one"):
        ca.issue([])
    with pytest.raises(ValueError, match="sequence of names"):
        ca.issue("api.example.com")


def test_too_long_name_is_rejected() -> None:
    name = ".".join(["a" * 63] * 4)  # 255 characters
    with pytest.raises(ValueError, match="1 to 253 characters"):
        check_domain_name(name)


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True)
_tld = st.from_regex(r"[a-z]{2,6}", fullmatch=True)
_names = st.builds(
    lambda wildcard, labels, tld: ("*." if wildcard else "") + ".".join([*labels, tld]),
    st.booleans(),
    st.lists(_label, min_size=1, max_size=3),
    _tld,
)


@settings(max_examples=40, deadline=None)
@given(names=st.lists(_names, min_size=1, max_size=4, unique=True))
def test_valid_names_all_land_in_the_san(ca: LabCA, names: list[str]) -> None:
    issued: IssuedCertificate = ca.issue(names)
    leaf = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == names
    assert issued.domain_names == tuple(names)


@settings(max_examples=60, deadline=None)
@given(name=st.text(min_size=1, max_size=30))
def test_check_domain_name_accepts_only_the_acm_alphabet(name: str) -> None:
    if set(name.lower()) <= set("abcdefghijklmnopqrstuvwxyz0123456789-.*") and "." in name:
        # In the alphabet: accepted or refused by the structure rules, never a crash.
        try:
            check_domain_name(name)
        except ValueError as exc:
            assert repr(name) in str(exc)  # noqa: PT017
    else:
        with pytest.raises(ValueError, match=re.escape(repr(name))):
            check_domain_name(name)
