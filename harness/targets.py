"""Targets: what the harness runs against — a real AWS account or the lab.

A target provides a boto3 session factory, a clock, and facts about how bastions are reached.
Nothing else in the harness branches on the target.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from harness.aws.session import SessionFactory
from harness.clock import REAL_TIME, Clock
from harness.config import HarnessConfig
from harness.errors import ConfigError, LabError

LAB_STATE_ENV = "REGIONDRILL_LAB_STATE"


@dataclass
class Target:
    """An opened target; ``close()`` releases what opening it started (an in-process lab)."""

    name: str
    sessions: SessionFactory
    clock: Clock
    lab: Any = None  # harness.lab.lab.Lab when the lab runs in this process
    lab_info: Any = None  # harness.lab.lab.LabInfo for any lab target
    _closed: bool = field(default=False, repr=False)

    @property
    def is_lab(self) -> bool:
        return self.name == "lab"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.lab is not None:
            self.lab.stop()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_target(config: HarnessConfig) -> Target:
    """Open the configured target: AWS, an attached lab (--lab-url) or a new in-process lab."""
    if config.target == "aws":
        return Target(
            name="aws",
            sessions=SessionFactory(profile=os.environ.get("AWS_PROFILE")),
            clock=REAL_TIME,
        )
    if config.lab_url:
        info = attach_lab(config.lab_url)
        return Target(name="lab", sessions=lab_sessions(info), clock=info.clock, lab_info=info)
    from harness.lab.lab import Lab

    lab = Lab(config.region_names, speed=config.lab_speed).start()
    info = lab.info
    return Target(name="lab", sessions=lab_sessions(info), clock=info.clock, lab=lab, lab_info=info)


def lab_sessions(info: Any) -> SessionFactory:
    return SessionFactory(
        endpoint_url=info.endpoint,
        access_key=info.aws_access_key_id,
        secret_key=info.aws_secret_access_key,
    )


def lab_credentials(lab_url: str) -> tuple[str, str]:
    """Find the credentials of a running lab: its state file, else the AWS_* variables."""
    state_file = os.environ.get(LAB_STATE_ENV)
    if state_file:
        try:
            state = json.loads(Path(state_file).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{LAB_STATE_ENV}: cannot read lab state file {state_file}: {exc}"
            ) from exc
        if state.get("endpoint", "").rstrip("/") != lab_url.rstrip("/"):
            raise ConfigError(
                f"{LAB_STATE_ENV}: state file {state_file} describes the lab at "
                f"{state.get('endpoint')!r}, not --lab-url {lab_url!r}"
            )
        return state["aws_access_key_id"], state["aws_secret_access_key"]
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return key, secret
    raise ConfigError(
        f"--lab-url {lab_url}: the lab's credentials are needed; set {LAB_STATE_ENV} to the "
        "file written by `regiondrill lab serve --state-file`, or export AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY as printed by it"
    )


def attach_lab(lab_url: str) -> Any:
    """Fetch a running lab's facts (endpoint, ports, clock) through its admin API."""
    from harness.lab.lab import LabInfo

    key, secret = lab_credentials(lab_url)
    url = lab_url.rstrip("/") + "/_lab/info"
    try:
        response = requests.get(url, auth=(key, secret), timeout=10)
    except requests.RequestException as exc:
        raise LabError(f"cannot reach the lab at {lab_url}: {exc}") from exc
    if response.status_code == 401:
        raise LabError(f"the lab at {lab_url} rejected the credentials (wrong state file or keys?)")
    if response.status_code != 200:
        raise LabError(f"the lab at {lab_url} answered {response.status_code} to /_lab/info")
    data = response.json()
    data.pop("ca_pem", None)
    return LabInfo.from_dict(data)
