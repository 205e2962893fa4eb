"""Verify AWS Signature Version 4 on requests reaching the lab gateway.

The lab hands out per-run credentials; checking only the access key id would let anyone who
saw it (it appears in logs and URLs) drive the lab, so the signature is verified with the secret,
exactly as AWS does. The canonical request is recomputed with botocore's own signer so the client
and the lab can never disagree on canonicalisation.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]+)\s*$"
)


@dataclass(frozen=True)
class Scope:
    """The credential scope a request was signed for."""

    access_key: str
    date: str
    region: str
    service: str


@dataclass(frozen=True)
class Verdict:
    """Outcome of a signature check: ``code`` is empty when the request is authentic."""

    code: str
    message: str
    scope: Scope | None = None

    @property
    def ok(self) -> bool:
        return not self.code


def parse_scope(authorization: str) -> Scope | None:
    """Return the credential scope of a SigV4 ``Authorization`` header, or None."""
    match = _AUTH_RE.match(authorization.strip())
    if not match:
        return None
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return None
    return Scope(access_key=parts[0], date=parts[1], region=parts[2], service=parts[3])


def verify(environ: dict, body: bytes, *, access_key: str, secret_key: str) -> Verdict:
    """Check that a WSGI request carries a valid SigV4 signature made with the lab's credentials."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    if not authorization:
        return Verdict("MissingAuthenticationToken", "Request is missing Authentication Token")
    match = _AUTH_RE.match(authorization.strip())
    scope = parse_scope(authorization)
    if match is None or scope is None:
        return Verdict(
            "IncompleteSignature",
            "Authorization header requires AWS4-HMAC-SHA256 with Credential, SignedHeaders "
            "and Signature",
        )
    if scope.access_key != access_key:
        return Verdict(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
            scope,
        )
    amz_date = environ.get("HTTP_X_AMZ_DATE", "")
    if not amz_date.startswith(scope.date):
        return Verdict("IncompleteSignature", "X-Amz-Date does not match the credential scope")

    signed = match["signed"].split(";")
    headers: dict[str, str] = {}
    for name in signed:
        value = _header(environ, name)
        if value is None:
            return Verdict("IncompleteSignature", f"signed header {name!r} is missing", scope)
        headers[name] = value
    raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    path = raw_path.split("?", 1)[0]
    query = environ.get("QUERY_STRING", "")
    url = f"http://{headers.get('host', environ.get('HTTP_HOST', 'localhost'))}{path}"
    request = AWSRequest(method=environ["REQUEST_METHOD"], url=url, headers=headers, data=body)
    if query:
        request.params = dict(parse_qsl(query, keep_blank_values=True))
        # Keep duplicate keys and their order exactly as sent: sign the raw query instead.
        request.url = f"{url}?{query}"
        request.params = {}
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret_key), scope.service, scope.region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return Verdict(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
            scope,
        )
    return Verdict("", "", scope)


def _header(environ: dict, name: str) -> str | None:
    if name == "content-type":
        return environ.get("CONTENT_TYPE")
    if name == "content-length":
        return environ.get("CONTENT_LENGTH")
    return environ.get("HTTP_" + name.upper().replace("-", "_"))
