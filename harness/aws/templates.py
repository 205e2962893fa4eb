"""Render the regiondrill CloudFormation stack set for N regions and wire its parameters.

The sources live in ``deploy/``: Jinja2 templates for the stacks whose shape depends on the region
list (``network``, ``peering``, ``routes``, ``dns``) and plain YAML for the one that does not
(``api``). Rendering takes only structure as input (the ordered region names and which region a
stack is for); every value (CIDRs, ids, names) is a CloudFormation parameter filled by
:func:`parameters` from the configuration and the outputs of earlier stacks. So the template for
a given region list is byte-for-byte the same for every deployment, and what ``cfn-lint`` checks
is exactly what the harness deploys, to AWS or to the lab.

Stacks are deployed in :data:`STACK_KINDS` order, regions in parallel within a kind:

1. ``network`` in every region;
2. ``peering`` in every region but the last: region *i* requests a Transit Gateway peering
   attachment to every region *j > i*. CloudFormation cannot accept one, so the harness accepts
   each attachment in region *j* (EC2 ``AcceptTransitGatewayPeeringAttachment``) before phase 3;
3. ``routes`` in every region: associate each peering attachment with the region's TGW route
   table and route every peer CIDR through it, and from the VPC to the TGW;
4. ``api`` in every region;
5. ``dns`` once, in the first region (Route 53 is global).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from harness.config import MAX_REGIONS, MIN_REGIONS, HarnessConfig
from harness.errors import ProvisioningError

try:  # libyaml's parser when PyYAML was built with it: several times faster, same constructors
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = [
    "API_OUTPUTS",
    "DEPLOY_DIR",
    "DEPLOY_DIR_ENV",
    "NETWORK_OUTPUTS",
    "ROUTES_OUTPUTS",
    "STACK_KINDS",
    "Template",
    "deploy_dir",
    "has_stack",
    "load_template",
    "parameters",
    "region_key",
    "render",
    "render_stack_set",
    "required_outputs",
    "stack_name",
    "stack_region",
    "verify_outputs",
]

STACK_KINDS: tuple[str, ...] = ("network", "peering", "routes", "api", "dns")
PER_REGION_KINDS: frozenset[str] = frozenset(("network", "peering", "routes", "api"))

DEPLOY_DIR: Path = Path(__file__).resolve().parents[2] / "deploy"
DEPLOY_DIR_ENV = "REGIONDRILL_DEPLOY_DIR"

_SOURCES: Mapping[str, str] = {
    "network": "network.yaml.j2",
    "peering": "peering.yaml.j2",
    "routes": "routes.yaml.j2",
    "api": "api.yaml",
    "dns": "dns.yaml.j2",
}

NETWORK_OUTPUTS: tuple[str, ...] = (
    "VpcId",
    "VpcCidr",
    "SubnetAId",
    "SubnetBId",
    "RouteTableId",
    "EndpointSecurityGroupId",
    "BastionSecurityGroupId",
    "TransitGatewayId",
    "TransitGatewayRouteTableId",
    "TransitGatewayVpcAttachmentId",
    "ExecuteApiEndpointId",
    "BastionAId",
    "BastionBId",
)
API_OUTPUTS: tuple[str, ...] = (
    "ApiId",
    "StageName",
    "FunctionName",
    "FunctionArn",
    "LoadBalancerArn",
    "LoadBalancerDnsName",
    "LoadBalancerCanonicalHostedZoneId",
    "LoadBalancerFullName",
    "TargetGroupArn",
    "TargetGroupFullName",
    "ListenerArn",
    "AlarmName",
    "AlarmArn",
    "CertificateArn",
    "CustomDomainName",
)
ROUTES_OUTPUTS: tuple[str, ...] = ("PeerRegions", "RoutedPeerCidrs")

# Private ASNs start at 64512; region i (1-based) gets 64511 + i so every TGW's ASN is unique.
_ASN_BASE = 64511
_REGION_NAME = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")
_STACK_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_STACK_SET = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
_MAX_STACK_NAME = 128


@dataclass(frozen=True)
class Template:
    """One rendered, deployable template: ``body`` is exactly what is linted and deployed."""

    kind: str
    region: str | None
    body: str
    sha256: str

    @property
    def filename(self) -> str:
        """Return the file name of this template in a rendered stack set."""
        return f"{self.kind}.yaml" if self.region is None else f"{self.kind}-{self.region}.yaml"


@dataclass(frozen=True)
class _Region:
    """A region as the Jinja sources see it."""

    name: str
    key: str
    index: int


def deploy_dir() -> Path:
    """Return the directory holding the template sources.

    ``REGIONDRILL_DEPLOY_DIR`` overrides :data:`DEPLOY_DIR` (read at call time, empty = unset) so
    an installed harness can render a checked-out ``deploy/``.

    Raises:
        ProvisioningError: the directory does not exist.
    """
    override = os.environ.get(DEPLOY_DIR_ENV, "")
    path = Path(override) if override else DEPLOY_DIR
    if not path.is_dir():
        origin = f" (from {DEPLOY_DIR_ENV})" if override else ""
        raise ProvisioningError(f"template directory {str(path)!r}{origin} does not exist")
    return path


def region_key(region: str) -> str:
    """Return the CamelCase form of a region name used in logical ids (us-east-1 -> UsEast1).

    Raises:
        ProvisioningError: ``region`` is not shaped like an AWS region name.
    """
    if not isinstance(region, str) or not _REGION_NAME.fullmatch(region):
        raise ProvisioningError(f"region {region!r} is not an AWS region name (like 'us-east-1')")
    return "".join(part.capitalize() for part in region.split("-"))


def _check_kind(kind: str) -> None:
    if kind not in STACK_KINDS:
        raise ProvisioningError(
            f"unknown stack kind {kind!r} (expected one of: {', '.join(STACK_KINDS)})"
        )


def _regions(regions: Sequence[str]) -> tuple[_Region, ...]:
    if isinstance(regions, str) or not isinstance(regions, Sequence):
        raise ProvisioningError(f"regions must be a sequence of region names, got {regions!r}")
    names = tuple(regions)
    if not MIN_REGIONS <= len(names) <= MAX_REGIONS:
        raise ProvisioningError(
            f"the stack set needs {MIN_REGIONS} to {MAX_REGIONS} regions, got {len(names)}: "
            f"{', '.join(map(str, names)) or '(none)'}"
        )
    seen: set[str] = set()
    result = []
    for index, name in enumerate(names, start=1):
        key = region_key(name)
        if name in seen:
            raise ProvisioningError(f"region {name!r} is listed twice in {', '.join(names)}")
        seen.add(name)
        result.append(_Region(name=name, key=key, index=index))
    return tuple(result)


def _find(regions: tuple[_Region, ...], region: str) -> _Region:
    for candidate in regions:
        if candidate.name == region:
            return candidate
    raise ProvisioningError(
        f"region {region!r} is not in the stack set ({', '.join(r.name for r in regions)})"
    )


def has_stack(kind: str, regions: Sequence[str], region: str | None = None) -> bool:
    """Return whether the stack set has a ``kind`` stack for ``region`` (None: the global one).

    Per-region kinds exist for every region except ``peering`` for the last one (it only
    accepts); ``dns`` exists once, for ``region=None``.

    Raises:
        ProvisioningError: ``kind``, ``regions`` or ``region`` is invalid.
    """
    _check_kind(kind)
    plan = _regions(regions)
    if region is None:
        return kind not in PER_REGION_KINDS
    target = _find(plan, region)
    if kind == "dns":
        return False
    return kind != "peering" or target.index < len(plan)


def stack_region(kind: str, regions: Sequence[str], region: str | None = None) -> str:
    """Return the region a ``kind`` stack is deployed in (``dns``: the first region).

    Raises:
        ProvisioningError: the stack set has no such stack.
    """
    if not has_stack(kind, regions, region):
        raise ProvisioningError(_no_stack_message(kind, _regions(regions), region))
    return region if region is not None else regions[0]


def _no_stack_message(kind: str, regions: tuple[_Region, ...], region: str | None) -> str:
    if kind == "dns":
        return f"the dns stack is global and is rendered without a region, got region {region!r}"
    if region is None:
        return f"the {kind} stack is per region; give one of: {', '.join(r.name for r in regions)}"
    return (
        f"region {region!r} is the last of the stack set and has no peering stack "
        "(it accepts the attachments its peers request)"
    )


@functools.cache
def _environment(directory: Path) -> jinja2.Environment:
    # Cached per directory: compiling the sources dominates rendering, and the loader's
    # auto_reload still picks up edited files by their modification time.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(kind: str, regions: Sequence[str], region: str | None = None) -> Template:
    """Render the ``kind`` template for ``region`` (None for ``dns``) of the ordered ``regions``.

    The result depends only on the arguments and the sources, never on configuration values,
    so it can be linted once and deployed anywhere.

    Raises:
        ProvisioningError: bad kind or region, no such stack (peering of the last region, a
            region for dns), or a missing or broken source file.
    """
    plan = _regions(regions)
    if not has_stack(kind, regions, region):
        raise ProvisioningError(_no_stack_message(kind, plan, region))
    directory = deploy_dir()
    source = _SOURCES[kind]
    path = directory / source
    if kind == "api":
        try:
            body = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProvisioningError(f"cannot read template source {str(path)!r}: {exc}") from exc
    else:
        target = _find(plan, region) if region is not None else None
        context: dict[str, Any] = {"regions": plan, "region": target}
        if target is not None:
            context["peers"] = plan[target.index :]
            context["others"] = tuple(r for r in plan if r is not target)
        try:
            body = _environment(directory).get_template(source).render(context)
        except jinja2.TemplateNotFound as exc:
            raise ProvisioningError(f"template source {str(path)!r} does not exist") from exc
        except jinja2.TemplateError as exc:
            raise ProvisioningError(f"cannot render template source {str(path)!r}: {exc}") from exc
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return Template(kind=kind, region=region, body=body, sha256=digest)


def render_stack_set(regions: Sequence[str]) -> dict[str, Template]:
    """Render every template of the stack set, keyed by file name, in deployment order.

    Per-region stacks get one file per region even where bodies are identical, so the rendered
    directory is the complete deployable set.

    Raises:
        ProvisioningError: as :func:`render`.
    """
    rendered: dict[str, Template] = {}
    for kind in STACK_KINDS:
        targets: Sequence[str | None] = (None,) if kind not in PER_REGION_KINDS else regions
        for region in targets:
            if has_stack(kind, regions, region):
                template = render(kind, regions, region)
                rendered[template.filename] = template
    return rendered


def stack_name(prefix: str, kind: str, region: str | None = None) -> str:
    """Return the CloudFormation stack name: ``{prefix}-{kind}-{region}`` or ``{prefix}-dns``.

    Raises:
        ProvisioningError: bad prefix, kind or region, or the name exceeds 128 characters.
    """
    _check_kind(kind)
    if not isinstance(prefix, str) or not _STACK_PREFIX.fullmatch(prefix):
        raise ProvisioningError(
            f"stack prefix {prefix!r} must start with a letter and contain only letters, "
            "digits and hyphens"
        )
    if kind in PER_REGION_KINDS:
        if region is None:
            raise ProvisioningError(f"the {kind} stack is per region; no region given")
        region_key(region)
        name = f"{prefix}-{kind}-{region}"
    else:
        if region is not None:
            raise ProvisioningError(f"the {kind} stack is global, got region {region!r}")
        name = f"{prefix}-{kind}"
    if len(name) > _MAX_STACK_NAME:
        raise ProvisioningError(f"stack name {name!r} is longer than {_MAX_STACK_NAME} characters")
    return name


def required_outputs(
    kind: str, regions: Sequence[str], region: str | None = None
) -> tuple[str, ...]:
    """Return the Outputs keys a deployed ``kind`` stack must have (to vet reused stacks).

    ``region`` is needed for ``peering`` only (its outputs name the region's higher peers).

    Raises:
        ProvisioningError: bad arguments, or ``peering`` without a region that has the stack.
    """
    _check_kind(kind)
    plan = _regions(regions)
    if kind == "network":
        return NETWORK_OUTPUTS
    if kind == "api":
        return API_OUTPUTS
    if kind == "routes":
        return ROUTES_OUTPUTS
    if kind == "dns":
        return ("HostedZoneId", *(f"HealthCheck{r.key}Id" for r in plan))
    if region is None or not has_stack(kind, regions, region):
        raise ProvisioningError(_no_stack_message(kind, plan, region))
    target = _find(plan, region)
    return tuple(f"PeeringAttachment{peer.key}Id" for peer in plan[target.index :])


def verify_outputs(
    kind: str, regions: Sequence[str], region: str | None, outputs: Mapping[str, str]
) -> None:
    """Check that a deployed stack has every output the harness relies on.

    Raises:
        ProvisioningError: outputs are missing; the message names the stack kind, region and keys.
    """
    missing = [key for key in required_outputs(kind, regions, region) if key not in outputs]
    if missing:
        where = f"{kind} stack of {region}" if region is not None else f"{kind} stack"
        raise ProvisioningError(f"{where} lacks outputs: {', '.join(missing)}")


def parameters(
    kind: str,
    config: HarnessConfig,
    region: str | None,
    outputs: Mapping[tuple[str, str | None], Mapping[str, str]],
    *,
    endpoint_ips: Mapping[str, tuple[str, str]] | None = None,
    stack_set: str,
) -> dict[str, str]:
    """Return the CloudFormation parameters of the ``kind`` stack of ``region``.

    ``outputs`` maps ``(kind, region)`` (``region`` None for dns) to a deployed stack's outputs.
    A region's stacks only read that region's outputs, except where the wiring crosses regions
    by design: peering (peer TGW ids), routes (each pair's attachment id, from the peering stack
    of the lower-indexed region, which requested it) and dns (every region's VPC, alarm, NLB).
    Optional parameters with defaults (``BastionImageId``, ``BastionInstanceType``, ``KeyName``)
    are left to the caller.
    ``endpoint_ips`` maps a region to the private IPs of its execute-api endpoint ENIs in
    (subnet A, subnet B) order; only the api stack needs it.

    Raises:
        ProvisioningError: no such stack, a needed output or endpoint IP is missing (the
            message names the stack and key), or an endpoint IP is outside its subnet.
    """
    names = config.region_names
    plan = _regions(names)
    if not has_stack(kind, names, region):
        raise ProvisioningError(_no_stack_message(kind, plan, region))
    if not isinstance(stack_set, str) or not _STACK_SET.fullmatch(stack_set):
        raise ProvisioningError(
            f"stack set name {stack_set!r} must start with a letter and contain only letters, "
            "digits and hyphens, at most 64 characters"
        )

    def output(of_kind: str, of_region: str | None, key: str) -> str:
        name = stack_name(config.stack_prefix, of_kind, of_region)
        stack_outputs = outputs.get((of_kind, of_region))
        if stack_outputs is None:
            raise ProvisioningError(
                f"{kind} stack needs outputs of stack {name!r}, which has none recorded"
            )
        if key not in stack_outputs:
            raise ProvisioningError(f"{kind} stack needs output {key!r} of stack {name!r}")
        return stack_outputs[key]

    result: dict[str, str] = {}
    if kind == "dns":
        result["StackSetName"] = stack_set
        result["ZoneName"] = config.zone
        result["DomainName"] = config.domain
        for r in plan:
            result[f"Vpc{r.key}Id"] = output("network", r.name, "VpcId")
            result[f"Alarm{r.key}Name"] = output("api", r.name, "AlarmName")
            result[f"Nlb{r.key}DnsName"] = output("api", r.name, "LoadBalancerDnsName")
            result[f"Nlb{r.key}HostedZoneId"] = output(
                "api", r.name, "LoadBalancerCanonicalHostedZoneId"
            )
        return result

    assert region is not None  # has_stack() guarantees a region for per-region kinds
    target = _find(plan, region)
    region_plan = config.region(region)
    if kind == "network":
        subnet_a, subnet_b = region_plan.subnet_cidrs
        result["StackSetName"] = stack_set
        result["VpcCidr"] = str(region_plan.vpc_cidr)
        result["SubnetACidr"] = str(subnet_a)
        result["SubnetBCidr"] = str(subnet_b)
        for other in config.regions:
            result[f"ClientCidr{other.index}"] = str(other.vpc_cidr)
        result["TransitGatewayAsn"] = str(_ASN_BASE + target.index)
    elif kind == "peering":
        result["StackSetName"] = stack_set
        result["TransitGatewayId"] = output("network", region, "TransitGatewayId")
        for peer in plan[target.index :]:
            result[f"Peer{peer.key}TransitGatewayId"] = output(
                "network", peer.name, "TransitGatewayId"
            )
    elif kind == "routes":
        result["TransitGatewayId"] = output("network", region, "TransitGatewayId")
        result["TransitGatewayRouteTableId"] = output(
            "network", region, "TransitGatewayRouteTableId"
        )
        result["VpcRouteTableId"] = output("network", region, "RouteTableId")
        for peer in plan:
            if peer is target:
                continue
            # The lower-indexed region of a pair requested the attachment; both sides use its id.
            requester, accepter = (target, peer) if target.index < peer.index else (peer, target)
            result[f"Peer{peer.key}Cidr"] = str(config.region(peer.name).vpc_cidr)
            result[f"Peer{peer.key}AttachmentId"] = output(
                "peering", requester.name, f"PeeringAttachment{accepter.key}Id"
            )
    else:  # api
        ip_a, ip_b = _endpoint_ips(endpoint_ips, region, region_plan.subnet_cidrs)
        result["StackSetName"] = stack_set
        result["VpcId"] = output("network", region, "VpcId")
        result["SubnetAId"] = output("network", region, "SubnetAId")
        result["SubnetBId"] = output("network", region, "SubnetBId")
        result["ExecuteApiEndpointId"] = output("network", region, "ExecuteApiEndpointId")
        result["EndpointIpA"] = ip_a
        result["EndpointIpB"] = ip_b
        result["DomainName"] = config.domain
        result["StageName"] = config.stage
        result["CertificateArn"] = region_plan.certificate_arn or ""
    return result


def _endpoint_ips(
    endpoint_ips: Mapping[str, tuple[str, str]] | None,
    region: str,
    subnets: tuple[ipaddress.IPv4Network, ipaddress.IPv4Network],
) -> tuple[str, str]:
    """Return the region's endpoint ENI IPs, checked against the subnet each must be in."""
    if endpoint_ips is None or region not in endpoint_ips:
        raise ProvisioningError(
            f"api stack of {region} needs the private IPs of its execute-api endpoint ENIs "
            "(look them up with DescribeNetworkInterfaces after the network stack)"
        )
    pair = tuple(endpoint_ips[region])
    if len(pair) != 2:
        raise ProvisioningError(
            f"api stack of {region} needs 2 endpoint IPs (subnet A, subnet B), got {pair!r}"
        )
    for value, subnet, label in zip(pair, subnets, "AB", strict=True):
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError as exc:
            raise ProvisioningError(
                f"endpoint IP {value!r} of {region} is not an IPv4 address"
            ) from exc
        if address not in subnet:
            raise ProvisioningError(
                f"endpoint IP {value} of {region} is not in subnet {label} ({subnet})"
            )
    return pair[0], pair[1]


class _CfnLoader(_BaseLoader):
    """A safe YAML loader that turns CloudFormation short tags into their long form."""


def _construct_short_tag(loader: _BaseLoader, tag_suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - PyYAML has only these three node kinds
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_short_tag)


def load_template(body: str) -> dict[str, Any]:
    """Parse a template, with short tags (``!Ref``, ``!Sub`` ...) in their long form.

    Raises:
        ProvisioningError: the body is not YAML or not a mapping.
    """
    try:
        document = yaml.load(body, Loader=_CfnLoader)
    except yaml.YAMLError as exc:
        raise ProvisioningError(f"template is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ProvisioningError(f"template is not a YAML mapping: {type(document).__name__}")
    return document
