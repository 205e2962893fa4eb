"""The SSH key pair bastions are launched with, so the harness can log in over SSH.

The harness generates one Ed25519 key per run directory, keeps the private half in a 0600 file
and imports the public half into every region as an EC2 key pair (``ImportKeyPair``), whose
name the network stacks take as their ``KeyName`` parameter. AWS never sees the private key.
Running it again reuses the file and the imported key pairs; a key pair of that name holding a
different public key is an error, never overwritten (it may be someone else's).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.aws.session import SessionFactory, aws_call
from harness.errors import CloudError, ConfigError, ProvisioningError

__all__ = ["KEY_NAME_PATTERN", "ensure_key_pair", "public_key_line"]

KEY_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:/=+@-][A-Za-z0-9 _.:/=+@-]{0,254}\Z")


def bastion_key(directory: str | Path, prefix: str) -> tuple[str, Path]:
    """Return (key pair name, private key file) for the bastions of a stack set.

    The file ``directory/<prefix>-bastions.pem`` is created once and reused; the key pair name
    carries the key's fingerprint, so two machines (or report directories) sharing one lab or
    account never fight over a key pair of the same name.
    """
    path = Path(directory) / f"{prefix}-bastions.pem"
    private = _load_or_create(path)
    digest = hashlib.sha256(public_key_line(private).split()[1].encode()).hexdigest()[:10]
    return f"{prefix}-bastions-{digest}", path


def ensure_key_pair(
    sessions: SessionFactory,
    regions: Sequence[str],
    name: str,
    directory: str | Path,
    *,
    key_file: str | Path | None = None,
) -> Path:
    """Make sure EC2 key pair ``name`` exists in every region; return the private key file.

    The private key lives at ``directory/<name>.pem`` (OpenSSH format, mode 0600); it is
    created when missing and reused otherwise.

    Raises:
        ConfigError: ``name`` is not a valid key pair name, or the key file is unreadable.
        ProvisioningError: a region holds a key pair ``name`` with another public key, or
            one whose private key is not in ``directory``.
        CloudError: an EC2 call failed (names the call and region).
    """
    if not isinstance(name, str) or not KEY_NAME_PATTERN.match(name) or "/" in name:
        raise ConfigError(
            f"key pair name {name!r} must be 1-255 printable ASCII characters without '/'"
        )
    path = Path(key_file) if key_file is not None else Path(directory) / f"{name}.pem"
    private = _load_or_create(path)
    public_line = public_key_line(private)
    for region in regions:
        _import(sessions, region, name, public_line, path)
    return path


def public_key_line(private: Ed25519PrivateKey) -> str:
    """Return the OpenSSH public key line (``ssh-ed25519 AAAA...``) of a private key."""
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def _load_or_create(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        try:
            loaded = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"SSH private key {path} cannot be read: {exc}") from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"SSH private key {path} is not an Ed25519 key")
        return loaded
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    # O_EXCL: two runs sharing a report directory must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_or_create(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return private


def _import(sessions: SessionFactory, region: str, name: str, public_line: str, path: Path) -> None:
    ec2 = sessions.client("ec2", region)
    existing = _describe(ec2, region, name)
    if existing is None:
        try:
            with aws_call(f"ImportKeyPair {name}", region):
                ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public_line.encode())
            return
        except CloudError as exc:
            if exc.code != "InvalidKeyPair.Duplicate":
                raise
            existing = _describe(ec2, region, name)  # a concurrent run imported it first
            if existing is None:
                raise
    deployed = (existing.get("PublicKey") or "").split()[:2]
    if deployed != public_line.split()[:2]:
        raise ProvisioningError(
            f"EC2 key pair {name!r} in {region} already exists with a different public key "
            f"than {path}; delete it (aws ec2 delete-key-pair --key-name {name} --region "
            f"{region}) or choose another key name"
        )


def _describe(ec2: Any, region: str, name: str) -> dict[str, Any] | None:
    try:
        with aws_call(f"DescribeKeyPairs {name}", region):
            pairs = ec2.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"]
    except CloudError as exc:
        if exc.code == "InvalidKeyPair.NotFound":
            return None
        raise
    return dict(pairs[0]) if pairs else None
