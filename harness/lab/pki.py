"""Issue the lab's TLS certificates from a private certificate authority.

On AWS the NLB TLS listener presents an ACM certificate that public roots vouch for. In the lab,
``AWS::CertificateManager::Certificate`` is issued by this CA instead, the NLB listeners serve it,
and clients on lab bastions trust this CA and nothing else. Verification therefore stays real: a
client asking for the wrong host name, or one that does not trust the lab CA, fails the handshake
exactly as it would against ACM.

The CA key lives only in memory: the lab CA exists for one lab run, and only its certificate (the
trust bundle) is written to disk.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import ssl
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["IssuedCertificate", "LabCA", "check_domain_name"]

_CLOCK_SKEW = dt.timedelta(hours=1)
_CA_LIFETIME = dt.timedelta(days=30)
# ACM issues certificates valid for 395 days (13 months).
_LEAF_LIFETIME = dt.timedelta(days=395)
# ACM's limits: a domain name is at most 253 characters, a certificate carries at most 100 names.
_MAX_NAME_LENGTH = 253
_MAX_NAMES = 100
# X.509 upper bound for a common name (RFC 5280 ub-common-name).
_MAX_CN_LENGTH = 64
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(rf"(?:\*\.)?(?:{_LABEL}\.)+{_LABEL}")


def check_domain_name(name: str) -> str:
    """Return ``name`` normalised to lower case if ACM would accept it in a certificate request.

    ACM takes fully qualified names of letters, digits and hyphens, at most 253 characters, with an
    optional ``*`` as the whole leftmost label; an address or a bare top-level domain is refused.

    Raises:
        ValueError: naming the bad name and what is wrong with it.
    """
    if not isinstance(name, str):
        raise ValueError(f"domain name {name!r} is not a string")
    if not name.isascii():
        raise ValueError(f"domain name {name!r} is not ASCII; use its punycode (xn--) form")
    normalised = name.lower()
    if not normalised or len(normalised) > _MAX_NAME_LENGTH:
        raise ValueError(f"domain name {name!r} must be 1 to {_MAX_NAME_LENGTH} characters long")
    if normalised.endswith("."):
        raise ValueError(f"domain name {name!r} must not end with a dot")
    if not _NAME_RE.fullmatch(normalised):
        raise ValueError(
            f"domain name {name!r} is not a fully qualified name of letters, digits and hyphens "
            "(with at most one leading '*.' label, labels of 1 to 63 characters)"
        )
    if normalised.rsplit(".", 1)[1].isdigit():
        raise ValueError(
            f"domain name {name!r} looks like an IP address; ACM issues only for names"
        )
    return normalised


@dataclass(frozen=True)
class IssuedCertificate:
    """A leaf certificate the lab CA issued, as ACM would hold it for a listener.

    ``serial`` is formatted as ACM's ``DescribeCertificate`` shows it (colon-separated lower-case
    hex pairs); ``fingerprint_sha256`` is the lower-case hex SHA-256 of the DER certificate.
    """

    domain_names: tuple[str, ...]
    cert_pem: str
    key_pem: str = field(repr=False)
    chain_pem: str = field(repr=False)
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str


class LabCA:
    """Hold the lab's certificate authority and issue server certificates from it.

    Build one with :meth:`create`. Safe to share between threads.
    """

    def __init__(
        self,
        directory: Path,
        *,
        key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
    ) -> None:
        self._directory = directory
        self._key = key
        self._certificate = certificate
        self._ca_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        self._ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, ...], IssuedCertificate] = {}

    @classmethod
    def create(cls, directory: Path, *, name: str = "regiondrill lab CA") -> LabCA:
        """Generate a new CA key and self-signed certificate, and write the trust bundle.

        Only ``ca.pem`` (the certificate) is written to ``directory``; the key never touches disk,
        so a lab run's CA cannot outlive it.

        Raises:
            ValueError: if ``name`` is empty or longer than 64 characters (X.509 common name limit).
        """
        if not name or len(name) > _MAX_CN_LENGTH:
            raise ValueError(f"CA name {name!r} must be 1 to {_MAX_CN_LENGTH} characters long")
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "regiondrill lab"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory, key=key, certificate=certificate)
        ca.bundle_path.write_text(ca.ca_pem, encoding="ascii")
        return ca

    @property
    def bundle_path(self) -> Path:
        """Return the path of ``ca.pem``, the only certificate lab clients trust."""
        return self._directory / "ca.pem"

    @property
    def ca_pem(self) -> str:
        """Return the CA certificate in PEM form."""
        return self._ca_pem

    @property
    def certificate(self) -> x509.Certificate:
        """Return the CA certificate, for callers that inspect it with ``cryptography``."""
        return self._certificate

    def issue(self, domain_names: Sequence[str]) -> IssuedCertificate:
        """Issue (or return the already issued) server certificate for ``domain_names``.

        The first name becomes the common name, every name a DNS subject alternative name, as ACM
        does. Issuing the same names again returns the same certificate: ACM renewal and re-issue
        are not modelled, and listeners must keep serving one certificate per request.

        Raises:
            ValueError: if there are no names, too many, a duplicate, or a name ACM would refuse.
        """
        if isinstance(domain_names, str):
            raise ValueError(
                f"domain_names must be a sequence of names, not the string {domain_names!r}"
            )
        names = tuple(check_domain_name(name) for name in domain_names)
        if not names:
            raise ValueError("a certificate needs at least one domain name")
        if len(names) > _MAX_NAMES:
            raise ValueError(
                f"{len(names)} domain names requested; ACM allows at most {_MAX_NAMES}"
            )
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"domain name {name!r} is listed more than once")
            seen.add(name)
        with self._lock:
            issued = self._issued.get(names)
            if issued is None:
                issued = self._sign(names)
                self._issued[names] = issued
            return issued

    def _sign(self, names: tuple[str, ...]) -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        # RFC 5280 4.2.1.6: a first name too long for a CN leaves the subject empty, SAN critical.
        cn_fits = len(names[0]) <= _MAX_CN_LENGTH
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if cn_fits else [])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _LEAF_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in names]),
                critical=not cn_fits,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        serial_hex = format(certificate.serial_number, "x")
        serial_hex = serial_hex.zfill(len(serial_hex) + len(serial_hex) % 2)
        return IssuedCertificate(
            domain_names=names,
            cert_pem=cert_pem,
            key_pem=key_pem,
            chain_pem=cert_pem + self._ca_pem,
            serial=":".join(serial_hex[i : i + 2] for i in range(0, len(serial_hex), 2)),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        )

    def server_context(self, cert: IssuedCertificate) -> ssl.SSLContext:
        """Return a TLS server context (TLS 1.2 or later) presenting ``cert`` and the CA chain.

        ``ssl`` only loads keys from files, so the key and chain go through a temporary file that
        only this user can read and that is removed as soon as they are loaded.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # mkstemp creates the file with mode 0600.
        fd, path = tempfile.mkstemp(prefix="regiondrill-lab-tls-", suffix=".pem")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(cert.key_pem)
                handle.write(cert.chain_pem)
            context.load_cert_chain(path)
        finally:
            os.unlink(path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Return a TLS client context that trusts the lab CA only and checks host names.

        No system roots are loaded: a lab client must not trust anything the lab did not issue.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=self._ca_pem)
        return context
