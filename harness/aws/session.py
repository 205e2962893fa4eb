"""boto3 sessions and clients for a target, and conversion of AWS errors at the boundary.

The same factory serves AWS (standard credential chain, ``AWS_PROFILE``, adaptive retries) and
the lab (its endpoint and per-run credentials). Nothing else in the harness knows which it is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError

from harness import __version__
from harness.errors import CloudError

GLOBAL_REGION = "us-east-1"  # where global services (Route 53) are called on AWS


@dataclass
class SessionFactory:
    """Create (and cache) boto3 clients for one target."""

    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    profile: str | None = None
    max_attempts: int = 10
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _sessions: dict[str, boto3.Session] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_lab(self) -> bool:
        return self.endpoint_url is not None

    def session(self, region: str) -> boto3.Session:
        """Return a boto3 session for ``region`` (sessions are not thread-safe: one per region)."""
        with self._lock:
            session = self._sessions.get(region)
            if session is None:
                kwargs: dict[str, Any] = {"region_name": region}
                if self.access_key:
                    kwargs["aws_access_key_id"] = self.access_key
                    kwargs["aws_secret_access_key"] = self.secret_key
                elif self.profile:
                    kwargs["profile_name"] = self.profile
                session = boto3.Session(**kwargs)
                self._sessions[region] = session
            return session

    def client(self, service: str, region: str) -> Any:
        """Return a cached client; clients are thread-safe once created."""
        key = (service, region)
        with self._lock:
            cached = self._clients.get(key)
        if cached is not None:
            return cached
        session = self.session(region)
        config = botocore.config.Config(
            retries={"mode": "adaptive", "max_attempts": self.max_attempts},
            user_agent_extra=f"regiondrill/{__version__}",
            connect_timeout=10,
            read_timeout=60,
        )
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = session.client(service, endpoint_url=self.endpoint_url, config=config)
                self._clients[key] = client
            return client

    def global_client(self, service: str) -> Any:
        """Return a client for a global service (Route 53)."""
        return self.client(service, GLOBAL_REGION)


def error_code(exc: BaseException) -> str:
    """Return the AWS error code of a botocore ClientError (or our CloudError), else ''."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    if isinstance(exc, CloudError):
        return exc.code
    return ""


@contextmanager
def aws_call(what: str, region: str = "") -> Iterator[None]:
    """Convert botocore errors raised inside the block into a CloudError naming ``what``.

    ``what`` says which operation on which resource, e.g. "DescribeStacks regiondrill-network".
    """
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", exc))
        where = f" in {region}" if region else ""
        raise CloudError(
            f"{what}{where} failed: {code}: {message}",
            code=code,
            operation=exc.operation_name,
            region=region,
        ) from exc
    except BotoCoreError as exc:
        where = f" in {region}" if region else ""
        raise CloudError(f"{what}{where} failed: {exc}", region=region) from exc
