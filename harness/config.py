"""Build the one frozen, validated ``HarnessConfig`` a run uses, from options, environment and file.

Every setting can come from four places, highest precedence first:

1. a command-line option (``pytest --regions ...`` or the ``regiondrill`` CLI);
2. a ``REGIONDRILL_*`` environment variable (see ``ENV_VARS``; an empty value counts as unset so
   ``export REGIONDRILL_LAB_URL=`` clears a variable);
3. the config file: ``regiondrill.toml`` in the rootdir (top-level keys) if it exists, otherwise
   the ``[tool.regiondrill]`` table of the rootdir's ``pyproject.toml``;
4. the built-in default.

Each setting is taken whole from the first place that gives it (``--certificate-arn`` replaces
the file's ``certificate_arns`` table, it is not merged into it). The per-region CIDR plan can only
be overridden in the file (``[cidrs.<region>]`` with ``vpc`` and ``subnets``); region *i* (1-based,
in ``--regions`` order) otherwise gets ``10.i.0.0/16`` with subnets ``10.i.1.0/24`` and
``10.i.2.0/24``.

Unknown ``REGIONDRILL_*`` environment variables are ignored on purpose: the lab and other tools
share the prefix. Unknown config-file keys are errors, because a typo there would otherwise be
silently dropped.

All validation happens here, before any AWS or lab call, and every failure is a one-line
``ConfigError`` that names the offending value and where it came from, e.g.
``--regions: unknown region 'us-esat-1' (did you mean 'us-east-1'?)``. The pytest plugin turns it
into a usage error. Nothing is read at import time.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import ipaddress
import itertools
import math
import os
import pathlib
import re
import tomllib
import types
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import dns.exception
import dns.name

from harness.errors import ConfigError

if TYPE_CHECKING:
    import pytest

__all__ = [
    "DEFAULT_CHAOS_EXAMPLES",
    "DEFAULT_CHAOS_STEPS",
    "DEFAULT_DOMAIN",
    "DEFAULT_LAB_SPEED",
    "DEFAULT_PROBE_INTERVAL",
    "DEFAULT_REGIONS",
    "DEFAULT_REPORT_DIR",
    "DEFAULT_RTO",
    "DEFAULT_STACK_PREFIX",
    "DEFAULT_STAGE",
    "DEFAULT_ZONE",
    "ENV_VARS",
    "MAX_REGIONS",
    "MIN_REGIONS",
    "TARGETS",
    "HarnessConfig",
    "RegionPlan",
    "add_pytest_options",
    "default_cidrs",
    "from_pytest",
    "known_regions",
    "load_config",
]

DEFAULT_REGIONS: tuple[str, ...] = ("us-east-1", "us-west-2")
# Lab time = real time x speed. At 20 a 5-minute modelled failover (60 s alias TTL plus alarm
# periods) takes 15 s of wall time, with every modelled delay kept in proportion.
DEFAULT_LAB_SPEED: float = 20.0
MIN_REGIONS, MAX_REGIONS = 2, 5
TARGETS: tuple[str, ...] = ("lab", "aws")
DEFAULT_DOMAIN = "private.internal.example.com"
DEFAULT_ZONE = "internal.example.com"
DEFAULT_STAGE = "dev"
DEFAULT_STACK_PREFIX = "regiondrill"
DEFAULT_RTO = 300.0
DEFAULT_PROBE_INTERVAL = 1.0
DEFAULT_REPORT_DIR = "reports"
# The randomised chaos run (scenarios/test_chaos.py) is part of the default test command, so its
# default size is what CI affords: a few fault sequences of a few steps each.
DEFAULT_CHAOS_EXAMPLES = 2
DEFAULT_CHAOS_STEPS = 4

# Field name -> environment variable. Only these are read; other REGIONDRILL_* names are ignored.
ENV_VARS: Mapping[str, str] = types.MappingProxyType(
    {
        "target": "REGIONDRILL_TARGET",
        "regions": "REGIONDRILL_REGIONS",
        "domain": "REGIONDRILL_DOMAIN",
        "zone": "REGIONDRILL_ZONE",
        "stage": "REGIONDRILL_STAGE",
        "certificate_arns": "REGIONDRILL_CERTIFICATE_ARNS",
        "stack_prefix": "REGIONDRILL_STACK_PREFIX",
        "keep_stacks": "REGIONDRILL_KEEP_STACKS",
        "reuse_stacks": "REGIONDRILL_REUSE_STACKS",
        "allow_destructive": "REGIONDRILL_ALLOW_DESTRUCTIVE",
        "rto": "REGIONDRILL_RTO",
        "probe_interval": "REGIONDRILL_PROBE_INTERVAL",
        "lab_speed": "REGIONDRILL_LAB_SPEED",
        "lab_url": "REGIONDRILL_LAB_URL",
        "report_dir": "REGIONDRILL_REPORT_DIR",
        "chaos_seed": "REGIONDRILL_CHAOS_SEED",
        "chaos_examples": "REGIONDRILL_CHAOS_EXAMPLES",
        "chaos_steps": "REGIONDRILL_CHAOS_STEPS",
    }
)

# Settings that options, environment and file share (the file adds ``cidrs``).
_SETTINGS: tuple[str, ...] = tuple(ENV_VARS)
_FILE_KEYS: frozenset[str] = frozenset((*_SETTINGS, "cidrs"))
_CIDR_KEYS: frozenset[str] = frozenset(("vpc", "subnets"))
_BOOL_FIELDS = frozenset(("keep_stacks", "reuse_stacks", "allow_destructive"))
_OPTION_NAMES: Mapping[str, str] = types.MappingProxyType(
    {
        name: "--certificate-arn" if name == "certificate_arns" else "--" + name.replace("_", "-")
        for name in _SETTINGS
    }
)
_DEFAULTS: Mapping[str, object] = types.MappingProxyType(
    {
        "target": "lab",
        "regions": DEFAULT_REGIONS,
        "domain": DEFAULT_DOMAIN,
        "zone": DEFAULT_ZONE,
        "stage": DEFAULT_STAGE,
        "certificate_arns": {},
        "stack_prefix": DEFAULT_STACK_PREFIX,
        "keep_stacks": False,
        "reuse_stacks": False,
        "allow_destructive": False,
        "rto": DEFAULT_RTO,
        "probe_interval": DEFAULT_PROBE_INTERVAL,
        "lab_speed": DEFAULT_LAB_SPEED,
        "lab_url": None,
        "report_dir": DEFAULT_REPORT_DIR,
        "chaos_seed": None,
        "chaos_examples": DEFAULT_CHAOS_EXAMPLES,
        "chaos_steps": DEFAULT_CHAOS_STEPS,
    }
)

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))
_LAB_NETWORK = ipaddress.IPv4Network("10.0.0.0/8")
# AWS limits for VPC and subnet IPv4 blocks.
_MIN_PREFIX, _MAX_PREFIX = 16, 28
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_STACK_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
_STAGE = re.compile(r"[A-Za-z0-9_]{1,128}")
_CERT_ARN = re.compile(
    r"arn:aws:acm:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):certificate/(?P<id>[A-Za-z0-9-]+)"
)


@functools.cache
def known_regions() -> frozenset[str]:
    """Return the commercial AWS regions botocore knows, from its bundled (offline) endpoint data.

    Validating against botocore's own list means a region the installed SDK cannot address is
    rejected at startup instead of failing later inside a stack deployment.
    """
    import botocore.session  # deferred: importing botocore costs ~0.1 s and no import-time work

    return frozenset(botocore.session.Session().get_available_regions("ec2", "aws"))


def default_cidrs(
    index: int,
) -> tuple[ipaddress.IPv4Network, tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]]:
    """Return the default VPC and subnet CIDRs of the region at 1-based position ``index``.

    Raises:
        ConfigError: ``index`` is outside 1..255, where ``10.index.0.0/16`` would not exist.
    """
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= 255:
        raise ConfigError(f"region index {index!r} has no default CIDR plan (need 1..255)")
    vpc = ipaddress.IPv4Network(f"10.{index}.0.0/16")
    return vpc, (
        ipaddress.IPv4Network(f"10.{index}.1.0/24"),
        ipaddress.IPv4Network(f"10.{index}.2.0/24"),
    )


@dataclass(frozen=True)
class RegionPlan:
    """One region of the run: its position and network plan.

    Validated as part of ``HarnessConfig``, which knows where each value came from.
    """

    name: str
    index: int
    vpc_cidr: ipaddress.IPv4Network
    subnet_cidrs: tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]
    certificate_arn: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-serialisable data."""
        return {
            "name": self.name,
            "index": self.index,
            "vpc_cidr": str(self.vpc_cidr),
            "subnet_cidrs": [str(subnet) for subnet in self.subnet_cidrs],
            "certificate_arn": self.certificate_arn,
        }


@dataclass(frozen=True)
class HarnessConfig:
    """The validated configuration of one run; every other module is built from it.

    Construction validates every field (also when built directly, e.g. in tests), so an instance
    is always consistent. ``_origins`` maps a field (or ``cidrs.<region>.vpc``,
    ``certificate_arns.<region>`` ...) to where its value came from, for error messages only.

    Raises:
        ConfigError: a value is invalid; the message names it and its origin.
    """

    target: str
    regions: tuple[RegionPlan, ...]
    domain: str = DEFAULT_DOMAIN
    zone: str = DEFAULT_ZONE
    stage: str = DEFAULT_STAGE
    stack_prefix: str = DEFAULT_STACK_PREFIX
    keep_stacks: bool = False
    reuse_stacks: bool = False
    allow_destructive: bool = False
    rto: float = DEFAULT_RTO
    probe_interval: float = DEFAULT_PROBE_INTERVAL
    lab_speed: float = DEFAULT_LAB_SPEED
    lab_url: str | None = None
    report_dir: pathlib.Path = pathlib.Path(DEFAULT_REPORT_DIR)
    chaos_seed: int | None = None  # None: the chaos run picks a seed and prints it
    chaos_examples: int = DEFAULT_CHAOS_EXAMPLES
    chaos_steps: int = DEFAULT_CHAOS_STEPS
    _origins: Mapping[str, str] = field(
        default_factory=dict, repr=False, compare=False, kw_only=True
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_origins", types.MappingProxyType(dict(self._origins)))
        _validate(self)

    @property
    def region_names(self) -> tuple[str, ...]:
        """Return the region names in ``--regions`` order."""
        return tuple(plan.name for plan in self.regions)

    @property
    def is_lab(self) -> bool:
        """Return whether the run targets the offline lab."""
        return self.target == "lab"

    def region(self, name: str) -> RegionPlan:
        """Return the plan of region ``name``.

        Raises:
            ConfigError: the region is not part of this run.
        """
        for plan in self.regions:
            if plan.name == name:
                return plan
        raise ConfigError(
            f"region {name!r} is not configured for this run "
            f"(configured: {', '.join(self.region_names)})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as JSON-serialisable data, keyed like the config file.

        Regions keep their order; ``cidrs`` and ``certificate_arns`` are keyed by region, so the
        output (minus ``null`` values) is itself a valid ``regiondrill.toml``.
        """
        return {
            "target": self.target,
            "regions": list(self.region_names),
            "cidrs": {
                plan.name: {
                    "vpc": str(plan.vpc_cidr),
                    "subnets": [str(subnet) for subnet in plan.subnet_cidrs],
                }
                for plan in self.regions
            },
            "certificate_arns": {
                plan.name: plan.certificate_arn
                for plan in self.regions
                if plan.certificate_arn is not None
            },
            "domain": self.domain,
            "zone": self.zone,
            "stage": self.stage,
            "stack_prefix": self.stack_prefix,
            "keep_stacks": self.keep_stacks,
            "reuse_stacks": self.reuse_stacks,
            "allow_destructive": self.allow_destructive,
            "rto": self.rto,
            "probe_interval": self.probe_interval,
            "lab_speed": self.lab_speed,
            "lab_url": self.lab_url,
            "report_dir": str(self.report_dir),
            "chaos_seed": self.chaos_seed,
            "chaos_examples": self.chaos_examples,
            "chaos_steps": self.chaos_steps,
        }

    def _where(self, *keys: str) -> str:
        """Return the origin of the first key that has one, else the last key itself."""
        for key in keys:
            if key in self._origins:
                return self._origins[key]
        return keys[-1]


# --------------------------------------------------------------------------- validation


def _fail(where: str, problem: str) -> NoReturn:
    raise ConfigError(f"{where}: {problem}")


def _suggest(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, sorted(choices), n=5, cutoff=0.6)
    if not close:
        return ""
    # Typos are mostly swapped letters, which difflib scores no better than a different word
    # ('us-esat-1' is as close to 'us-west-1' as to 'us-east-1'); prefer a same-letters match.
    best = max(close, key=lambda choice: sorted(choice) == sorted(value))
    return f" (did you mean {best!r}?)"


def _check_region_names(names: Sequence[str], where: str) -> None:
    known = known_regions()
    seen: set[str] = set()
    for name in names:
        if name not in known:
            _fail(where, f"unknown region {name!r}{_suggest(name, tuple(known))}")
        if name in seen:
            _fail(where, f"duplicate region {name!r}")
        seen.add(name)
    if not MIN_REGIONS <= len(names) <= MAX_REGIONS:
        listed = ", ".join(names) or "none"
        _fail(
            where,
            f"{len(names)} region(s) given ({listed}); need {MIN_REGIONS} to {MAX_REGIONS}",
        )


def _check_dns_name(value: object, where: str, what: str) -> None:
    if not isinstance(value, str):
        _fail(where, f"{what} must be a string, got {value!r}")
    if value != value.lower() or value.endswith(".") or value != value.strip():
        _fail(where, f"{what} {value!r} must be lower-case without a trailing dot")
    try:
        name = dns.name.from_text(value)
    except dns.exception.DNSException as exc:
        _fail(where, f"{what} {value!r} is not a valid DNS name ({exc})")
    labels = [label.decode("ascii", "replace") for label in name.labels if label]
    for label in labels:
        if not _DNS_LABEL.fullmatch(label):
            _fail(
                where,
                f"{what} {value!r} is not a valid DNS name (label {label!r} must be 1-63 "
                "letters, digits or inner hyphens)",
            )
    if not labels or labels[-1].isdigit():
        _fail(where, f"{what} {value!r} is not a valid DNS name (needs a non-numeric last label)")


def _check_positive(value: object, where: str, what: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        _fail(where, f"{what} {value!r} must be a positive finite number")


def _check_integer(value: object, where: str, what: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"{what} {value!r} must be a whole number")
    if value < minimum:
        _fail(where, f"{what} {value!r} must be at least {minimum}")


def _check_network(value: object, where: str, what: str) -> ipaddress.IPv4Network:
    if not isinstance(value, ipaddress.IPv4Network):
        _fail(where, f"{what} {value!r} must be an IPv4 network")
    if not _MIN_PREFIX <= value.prefixlen <= _MAX_PREFIX:
        _fail(where, f"{what} {value} must be between /{_MIN_PREFIX} and /{_MAX_PREFIX}")
    return value


def _check_plan(config: HarnessConfig, position: int, plan: RegionPlan) -> None:
    name = plan.name
    vpc_where = config._where(f"cidrs.{name}.vpc", f"cidrs.{name}")
    subnets_where = config._where(f"cidrs.{name}.subnets", f"cidrs.{name}")
    if plan.index != position:
        _fail(
            config._where("regions"),
            f"region {name!r} has index {plan.index!r} but is number {position} in the list",
        )
    vpc = _check_network(plan.vpc_cidr, vpc_where, f"VPC CIDR of {name}")
    subnets = plan.subnet_cidrs
    if not isinstance(subnets, tuple) or len(subnets) != 2:
        _fail(
            subnets_where, f"region {name} needs exactly two subnets (AZ a, AZ b), got {subnets!r}"
        )
    for subnet in subnets:
        _check_network(subnet, subnets_where, f"subnet of {name}")
        if not subnet.subnet_of(vpc):
            _fail(subnets_where, f"subnet {subnet} of {name} is outside its VPC {vpc}")
    if subnets[0].overlaps(subnets[1]):
        _fail(subnets_where, f"subnets {subnets[0]} and {subnets[1]} of {name} overlap")
    if config.target == "lab" and not vpc.subnet_of(_LAB_NETWORK):
        _fail(
            vpc_where,
            f"VPC {vpc} of {name} is outside 10.0.0.0/8; the lab serves VPC address 10.a.b.c on "
            "loopback 127.a.b.c, so target lab needs every CIDR inside 10.0.0.0/8",
        )
    arn = plan.certificate_arn
    if arn is not None:
        arn_where = config._where(f"certificate_arns.{name}", "certificate_arns")
        match = _CERT_ARN.fullmatch(arn) if isinstance(arn, str) else None
        if match is None:
            _fail(
                arn_where,
                f"certificate ARN {arn!r} for {name} is malformed "
                "(expected arn:aws:acm:<region>:<12 digits>:certificate/<id>)",
            )
        if match["region"] != name:
            _fail(
                arn_where,
                f"certificate ARN {arn!r} is in region {match['region']!r}, not {name!r} "
                "(ACM certificates are regional; an NLB can only use one from its own region)",
            )


def _check_lab_url(value: str, where: str) -> None:
    parts = urllib.parse.urlsplit(value)
    problem = ""
    try:
        port = parts.port
    except ValueError:
        port = None
        problem = "has an invalid port"
    host = parts.hostname or ""
    if not problem:
        if parts.scheme not in ("http", "https"):
            problem = "must start with http:// or https://"
        elif not host:
            problem = "has no host"
        elif port is None:
            problem = "has no port (expected http(s)://host:port)"
        elif parts.username is not None or parts.password is not None:
            problem = "must not carry credentials"
        elif parts.path not in ("", "/") or parts.query or parts.fragment:
            problem = "must not have a path, query or fragment"
        elif not _is_loopback(host):
            problem = f"host {host!r} is not loopback; the lab only listens on 127.0.0.0/8"
    if problem:
        _fail(where, f"lab URL {value!r} {problem}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate(config: HarnessConfig) -> None:
    where = config._where
    if config.target not in TARGETS:
        _fail(where("target"), f"target {config.target!r} must be one of: {', '.join(TARGETS)}")
    if not isinstance(config.regions, tuple) or not all(
        isinstance(plan, RegionPlan) for plan in config.regions
    ):
        _fail(where("regions"), f"regions must be a tuple of RegionPlan, got {config.regions!r}")
    _check_region_names(config.region_names, where("regions"))
    for position, plan in enumerate(config.regions, start=1):
        _check_plan(config, position, plan)
    for first, second in itertools.combinations(config.regions, 2):
        if first.vpc_cidr.overlaps(second.vpc_cidr):
            first_where = where(f"cidrs.{first.name}.vpc", f"cidrs.{first.name}")
            _fail(
                where(f"cidrs.{second.name}.vpc", f"cidrs.{second.name}"),
                f"VPC {second.vpc_cidr} of {second.name} overlaps VPC {first.vpc_cidr} of "
                f"{first.name} (from {first_where})",
            )
    if config.target == "aws":
        missing = [plan.name for plan in config.regions if plan.certificate_arn is None]
        if missing:
            arns_where = where("certificate_arns")
            _fail(
                where("target") if arns_where.startswith("default ") else arns_where,
                f"target aws needs a certificate ARN for every region; missing for "
                f"{', '.join(missing)} (give --certificate-arn REGION=ARN)",
            )
        if config.lab_url is not None:
            _fail(
                where("lab_url"),
                f"lab URL {config.lab_url!r} only applies to target lab, but the target is aws "
                f"(from {where('target')})",
            )
    _check_dns_name(config.zone, where("zone"), "zone")
    _check_dns_name(config.domain, where("domain"), "domain")
    if not dns.name.from_text(config.domain).is_subdomain(dns.name.from_text(config.zone)):
        _fail(
            where("domain"),
            f"domain {config.domain!r} is not inside zone {config.zone!r} (from {where('zone')})",
        )
    _check_positive(config.rto, where("rto"), "RTO")
    _check_positive(config.probe_interval, where("probe_interval"), "probe interval")
    _check_positive(config.lab_speed, where("lab_speed"), "lab speed")
    if config.probe_interval >= config.rto:
        _fail(
            where("probe_interval"),
            f"probe interval {config.probe_interval:g} s must be less than the RTO "
            f"{config.rto:g} s (from {where('rto')})",
        )
    if not isinstance(config.stack_prefix, str) or not _STACK_PREFIX.fullmatch(config.stack_prefix):
        _fail(
            where("stack_prefix"),
            f"stack prefix {config.stack_prefix!r} must start with a letter and contain only "
            "letters, digits and hyphens, at most 64 characters (CloudFormation stack names)",
        )
    if not isinstance(config.stage, str) or not _STAGE.fullmatch(config.stage):
        _fail(
            where("stage"),
            f"stage {config.stage!r} must be 1-128 letters, digits or underscores "
            "(API Gateway stage names)",
        )
    if config.lab_url is not None:
        if not isinstance(config.lab_url, str):
            _fail(where("lab_url"), f"lab URL {config.lab_url!r} must be a string")
        _check_lab_url(config.lab_url, where("lab_url"))
    for flag in ("keep_stacks", "reuse_stacks", "allow_destructive"):
        if not isinstance(getattr(config, flag), bool):
            _fail(where(flag), f"{flag} must be true or false, got {getattr(config, flag)!r}")
    if not isinstance(config.report_dir, pathlib.Path):
        _fail(where("report_dir"), f"report dir {config.report_dir!r} must be a pathlib.Path")
    if config.chaos_seed is not None:
        _check_integer(config.chaos_seed, where("chaos_seed"), "chaos seed", minimum=0)
    _check_integer(config.chaos_examples, where("chaos_examples"), "chaos examples", minimum=1)
    _check_integer(config.chaos_steps, where("chaos_steps"), "chaos steps", minimum=1)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Given:
    """A raw setting, where it came from (for messages) and which kind of source that was."""

    value: object
    where: str
    source: str  # "cli" | "env" | "file" | "default"

    @property
    def explicit(self) -> bool:
        return self.source != "default"

    @property
    def textual(self) -> bool:
        """Return whether the value may be text to parse, not a typed TOML value."""
        return self.source in ("cli", "env")


@dataclass(frozen=True)
class _FileConfig:
    """The config file's table, with how to name its keys in messages."""

    table: Mapping[str, object]
    path: pathlib.Path | None
    prefix: str  # "" for regiondrill.toml, "tool.regiondrill." for pyproject.toml

    def where(self, key: str) -> str:
        return f"{self.prefix}{key} in {self.path}"


def _type_error(where: str, value: object, expected: str) -> NoReturn:
    _fail(where, f"expected {expected}, got {value!r} ({type(value).__name__})")


def _read_file_config(rootdir: pathlib.Path, config_file: pathlib.Path | None) -> _FileConfig:
    if config_file is not None:
        path = config_file if config_file.is_absolute() else rootdir / config_file
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        in_pyproject = path.name == "pyproject.toml"
    else:
        path = rootdir / "regiondrill.toml"
        in_pyproject = not path.is_file()
        if in_pyproject:
            path = rootdir / "pyproject.toml"
            if not path.is_file():
                return _FileConfig({}, None, "")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    if not in_pyproject:
        return _FileConfig(data, path, "")
    table = data.get("tool", {}).get("regiondrill", {})
    if not isinstance(table, dict):
        _type_error(f"tool.regiondrill in {path}", table, "a table")
    return _FileConfig(table, path, "tool.regiondrill.")


def _check_file_keys(file: _FileConfig) -> None:
    for key in file.table:
        if key not in _FILE_KEYS:
            raise ConfigError(
                f"unknown key {file.prefix + key!r} in {file.path}"
                f"{_suggest(key, tuple(_FILE_KEYS))}; known keys: {', '.join(sorted(_FILE_KEYS))}"
            )


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")]


def _parse_regions(given: _Given) -> tuple[str, ...]:
    value = given.value
    if isinstance(value, str):
        items = _split_list(value)
    elif isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        _type_error(given.where, value, "a list of region names or a comma-separated string")
    names = tuple(item.lower() for item in items)
    if any(not name for name in names):
        _fail(given.where, f"empty region name in {value!r}")
    return names


def _parse_certificate_arns(given: _Given) -> dict[str, str]:
    value = given.value
    pairs: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for region, arn in value.items():
            if not isinstance(arn, str):
                _type_error(f"{given.where} ({region})", arn, "an ARN string")
            pairs.append((str(region), arn))
    else:
        if isinstance(value, str):
            items = _split_list(value)
        elif isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
            items = [item.strip() for item in value]
        else:
            _type_error(given.where, value, "REGION=ARN pairs")
        for item in items:
            region, sep, arn = item.partition("=")
            if not sep or not region.strip() or not arn.strip():
                _fail(given.where, f"{item!r} is not REGION=ARN")
            pairs.append((region, arn))
    arns: dict[str, str] = {}
    for region, arn in pairs:
        key = region.strip().lower()
        if key in arns:
            _fail(given.where, f"duplicate certificate ARN for region {key!r}")
        arns[key] = arn.strip()
    return arns


def _parse_bool(given: _Given) -> bool:
    value = given.value
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and given.textual:
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        _fail(given.where, f"{value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")
    _type_error(given.where, value, "a boolean")


def _parse_number(given: _Given) -> float:
    value = given.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and given.textual:
        try:
            return float(value.strip())
        except ValueError:
            _fail(given.where, f"{value!r} is not a number")
    _type_error(given.where, value, "a number")


def _parse_integer(given: _Given) -> int:
    value = given.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and given.textual:
        try:
            return int(value.strip())
        except ValueError:
            _fail(given.where, f"{value!r} is not a whole number")
    _type_error(given.where, value, "a whole number")


def _parse_string(given: _Given) -> str:
    value = given.value
    if given.source == "cli" and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        _type_error(given.where, value, "a string")
    return value.strip()


def _parse_network(value: object, where: str, what: str) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        _type_error(where, value, f"{what} as a string like '10.1.0.0/16'")
    try:
        return ipaddress.IPv4Network(value.strip())
    except ValueError as exc:
        _fail(where, f"malformed {what} {value!r} ({exc})")


def _resolve(
    cli: Mapping[str, object], environ: Mapping[str, str], file: _FileConfig
) -> dict[str, _Given]:
    resolved: dict[str, _Given] = {}
    for name in _SETTINGS:
        if cli.get(name) is not None:
            resolved[name] = _Given(cli[name], _OPTION_NAMES[name], "cli")
        elif environ.get(ENV_VARS[name], "").strip():
            resolved[name] = _Given(environ[ENV_VARS[name]], ENV_VARS[name], "env")
        elif name in file.table:
            resolved[name] = _Given(file.table[name], file.where(name), "file")
        else:
            resolved[name] = _Given(_DEFAULTS[name], f"default {name}", "default")
    return resolved


_Cidrs = tuple[ipaddress.IPv4Network, tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]]


def _file_cidrs(
    file: _FileConfig, regions: tuple[str, ...], origins: dict[str, str]
) -> dict[str, _Cidrs]:
    raw = file.table.get("cidrs", {})
    if not isinstance(raw, Mapping):
        _type_error(file.where("cidrs"), raw, "a table of region tables")
    plans: dict[str, _Cidrs] = {}
    for index, region in enumerate(regions, start=1):
        vpc, subnets = default_cidrs(index)
        origins[f"cidrs.{region}"] = f"default CIDR plan for {region} (region {index})"
        plans[region] = (vpc, subnets)
    for key, entry in raw.items():
        region = key.strip().lower()
        where = file.where(f"cidrs.{key}")
        if region not in plans:
            _fail(
                where,
                f"CIDR plan for region {key!r}, which is not configured "
                f"(regions: {', '.join(regions)})",
            )
        if not isinstance(entry, Mapping):
            _type_error(where, entry, "a table with 'vpc' and 'subnets'")
        for sub in entry:
            if sub not in _CIDR_KEYS:
                raise ConfigError(
                    f"unknown key {f'{file.prefix}cidrs.{key}.{sub}'!r} in {file.path}"
                    f"{_suggest(sub, tuple(_CIDR_KEYS))}; known keys: subnets, vpc"
                )
        vpc, subnets = plans[region]
        if "vpc" in entry:
            vpc_where = file.where(f"cidrs.{key}.vpc")
            if "subnets" not in entry:
                _fail(vpc_where, f"VPC overridden for {region} without 'subnets'; give both")
            vpc = _parse_network(entry["vpc"], vpc_where, "VPC CIDR")
            origins[f"cidrs.{region}.vpc"] = vpc_where
        if "subnets" in entry:
            subnets_where = file.where(f"cidrs.{key}.subnets")
            raw_subnets = entry["subnets"]
            if not isinstance(raw_subnets, list):
                _type_error(subnets_where, raw_subnets, "a list of two subnet CIDRs")
            if len(raw_subnets) != 2:
                _fail(
                    subnets_where,
                    f"region {region} needs exactly two subnets (AZ a, AZ b), got {raw_subnets!r}",
                )
            subnets = (
                _parse_network(raw_subnets[0], subnets_where, "subnet CIDR"),
                _parse_network(raw_subnets[1], subnets_where, "subnet CIDR"),
            )
            origins[f"cidrs.{region}.subnets"] = subnets_where
        plans[region] = (vpc, subnets)
    return plans


def _build(
    resolved: Mapping[str, _Given], file: _FileConfig, rootdir: pathlib.Path
) -> HarnessConfig:
    origins = {name: given.where for name, given in resolved.items()}
    target = _parse_string(resolved["target"]).lower()
    if target not in TARGETS:
        _fail(origins["target"], f"target {target!r} must be one of: {', '.join(TARGETS)}")
    regions = _parse_regions(resolved["regions"])
    _check_region_names(regions, origins["regions"])
    arns = _parse_certificate_arns(resolved["certificate_arns"])
    for region in arns:
        origins[f"certificate_arns.{region}"] = (
            file.where(f"certificate_arns.{region}")
            if resolved["certificate_arns"].source == "file"
            else origins["certificate_arns"]
        )
        if region not in regions:
            _fail(
                origins[f"certificate_arns.{region}"],
                f"certificate ARN for region {region!r}, which is not configured "
                f"(regions: {', '.join(regions)})",
            )
    cidrs = _file_cidrs(file, regions, origins)
    if target == "aws":
        for name in ("lab_speed", "lab_url"):
            if resolved[name].explicit:
                _fail(
                    origins[name],
                    f"{name.replace('_', ' ')} {resolved[name].value!r} only applies to "
                    f"target lab, but the target is aws (from {origins['target']})",
                )
    plans = tuple(
        RegionPlan(
            name=region,
            index=index,
            vpc_cidr=cidrs[region][0],
            subnet_cidrs=cidrs[region][1],
            certificate_arn=arns.get(region),
        )
        for index, region in enumerate(regions, start=1)
    )
    lab_url = None
    if resolved["lab_url"].value is not None:
        lab_url = _parse_string(resolved["lab_url"]).rstrip("/")
    report_text = _parse_string(resolved["report_dir"])
    if not report_text:
        _fail(origins["report_dir"], "report dir must not be empty")
    report_dir = pathlib.Path(report_text).expanduser()
    if not report_dir.is_absolute():
        report_dir = rootdir / report_dir
    return HarnessConfig(
        target=target,
        regions=plans,
        domain=_parse_string(resolved["domain"]).lower().rstrip("."),
        zone=_parse_string(resolved["zone"]).lower().rstrip("."),
        stage=_parse_string(resolved["stage"]),
        stack_prefix=_parse_string(resolved["stack_prefix"]),
        keep_stacks=_parse_bool(resolved["keep_stacks"]),
        reuse_stacks=_parse_bool(resolved["reuse_stacks"]),
        allow_destructive=_parse_bool(resolved["allow_destructive"]),
        rto=_parse_number(resolved["rto"]),
        probe_interval=_parse_number(resolved["probe_interval"]),
        lab_speed=_parse_number(resolved["lab_speed"]),
        lab_url=lab_url,
        report_dir=report_dir,
        chaos_seed=(
            None if resolved["chaos_seed"].value is None else _parse_integer(resolved["chaos_seed"])
        ),
        chaos_examples=_parse_integer(resolved["chaos_examples"]),
        chaos_steps=_parse_integer(resolved["chaos_steps"]),
        _origins=origins,
    )


def load_config(
    cli: Mapping[str, object] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    rootdir: pathlib.Path | None = None,
    config_file: pathlib.Path | None = None,
) -> HarnessConfig:
    """Build the validated configuration from options, environment, config file and defaults.

    ``cli`` holds option values by field name (``regions``, ``certificate_arns`` ...); ``None``
    or absent means not given. Strings are accepted everywhere an option is typed, so the pytest
    plugin and the CLI can pass raw option text and get this module's one-line errors.
    ``environ`` defaults to ``os.environ`` as it is now; ``rootdir`` to the current directory;
    ``config_file`` overrides the file discovery (a ``pyproject.toml`` is read from its
    ``[tool.regiondrill]`` table, any other file from its top level).

    Raises:
        ConfigError: any value is invalid; the message names it and where it came from.
    """
    cli = dict(cli or {})
    for key in cli:
        if key not in _SETTINGS:
            raise ConfigError(
                f"unknown option {key!r}{_suggest(key, _SETTINGS)}; known: {', '.join(_SETTINGS)}"
            )
    environ = os.environ if environ is None else environ
    root = (rootdir if rootdir is not None else pathlib.Path.cwd()).absolute()
    file = _read_file_config(root, config_file)
    _check_file_keys(file)
    return _build(_resolve(cli, environ, file), file, root)


# --------------------------------------------------------------------------- pytest


_HELP: Mapping[str, tuple[str, str]] = types.MappingProxyType(
    {
        "target": ("{lab,aws}", "where to run: the offline lab twin or a real AWS account"),
        "regions": (
            "R1,R2,...",
            f"ordered regions, {MIN_REGIONS} to {MAX_REGIONS}; region i "
            "gets VPC 10.i.0.0/16 unless the config file says otherwise",
        ),
        "domain": ("NAME", "API custom domain; must be the zone or inside it"),
        "zone": ("NAME", "Route 53 private hosted zone"),
        "stage": ("NAME", "API Gateway stage name"),
        "certificate_arns": (
            "REGION=ARN",
            "ACM certificate for a region's NLB listener; "
            "repeat per region; required for every region with --target aws",
        ),
        "stack_prefix": ("PREFIX", "prefix of every CloudFormation stack name"),
        "keep_stacks": ("", "keep the stacks this run created instead of deleting them"),
        "reuse_stacks": ("", "attach to existing stacks instead of deploying"),
        "allow_destructive": ("", "allow destructive faults on --target aws"),
        "rto": ("SECONDS", "recovery-time objective (modelled seconds on the lab)"),
        "probe_interval": ("SECONDS", "time between probe samples on each bastion"),
        "lab_speed": ("FACTOR", "lab time = real time x FACTOR; lab only"),
        "lab_url": (
            "URL",
            "attach to a running lab (http(s)://127.x.y.z:port) instead of starting one; lab only",
        ),
        "report_dir": ("DIR", "where reports go, relative to the rootdir"),
        "chaos_seed": (
            "N",
            "seed of the randomised chaos run, to replay one exactly; without it a seed is "
            "picked and printed",
        ),
        "chaos_examples": ("N", "fault sequences the randomised chaos run tries"),
        "chaos_steps": ("N", "fault steps per sequence in the randomised chaos run"),
    }
)


def add_pytest_options(parser: pytest.Parser) -> None:
    """Register the ``regiondrill`` option group; values stay raw so ``load_config`` judges them.

    Every option defaults to ``None`` (not given) so the environment and config file can supply
    it; the help text states the built-in default and the environment variable.
    """
    group = parser.getgroup("regiondrill", "regiondrill: multi-region DR validation")
    for name in _SETTINGS:
        metavar, text = _HELP[name]
        default = _DEFAULTS[name]
        if name == "regions":
            shown = ",".join(DEFAULT_REGIONS)
        elif name == "certificate_arns":
            shown = "none"
        elif name == "lab_url":
            shown = "start a lab"
        elif name == "chaos_seed":
            shown = "random"
        elif isinstance(default, bool):
            shown = "off"
        elif isinstance(default, float):
            shown = f"{default:g}"
        else:
            shown = str(default)
        help_text = f"{text} (default: {shown}; env {ENV_VARS[name]})"
        dest = f"regiondrill_{name}"
        if name in _BOOL_FIELDS:
            # BooleanOptionalAction adds --no-<flag>, so a command line can switch off what the
            # environment or config file switched on.
            group.addoption(
                _OPTION_NAMES[name],
                action=argparse.BooleanOptionalAction,
                default=None,
                dest=dest,
                help=help_text,
            )
        elif name == "certificate_arns":
            group.addoption(
                _OPTION_NAMES[name],
                action="append",
                default=None,
                dest=dest,
                metavar=metavar,
                help=help_text,
            )
        else:
            group.addoption(
                _OPTION_NAMES[name], default=None, dest=dest, metavar=metavar, help=help_text
            )


def from_pytest(config: pytest.Config) -> HarnessConfig:
    """Build the configuration from pytest's parsed options, the environment and the rootdir file.

    Raises:
        ConfigError: any value is invalid.
    """
    getoption: Callable[[str], object] = config.getoption
    cli = {name: getoption(f"regiondrill_{name}") for name in _SETTINGS}
    return load_config(cli, rootdir=config.rootpath)
