"""Tests for harness.aws.templates: the rendered stack set lints clean and is wired correctly.

Structural tests resolve each rendered template's ``Ref``s with the parameters the harness would
pass (built from region-tagged fake outputs), so they check the templates and the wiring
together: what the harness deploys, not just what the sources say.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.aws import templates
from harness.aws.templates import (
    API_OUTPUTS,
    NETWORK_OUTPUTS,
    STACK_KINDS,
    Template,
    has_stack,
    load_template,
    parameters,
    region_key,
    render,
    render_stack_set,
    required_outputs,
    stack_name,
    stack_region,
    verify_outputs,
)
from harness.config import HarnessConfig, RegionPlan, default_cidrs, known_regions
from harness.errors import ProvisioningError

REGION_SETS: Mapping[int, tuple[str, ...]] = {
    2: ("us-east-1", "us-west-2"),
    3: ("us-east-1", "eu-west-1", "ap-southeast-2"),
    5: ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1"),
}
SIZES = sorted(REGION_SETS)
STACK_SET = "drill-test"
# Regions cfn-lint and the CloudFormation schema know well; hypothesis draws orderings of them.
LINTED_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-northeast-1",
    "ap-southeast-2",
    "sa-east-1",
)
TAG_PROPERTIES = ("Tags", "HostedZoneTags", "HealthCheckTags")


def make_config(regions: Sequence[str], *, aws: bool = False) -> HarnessConfig:
    plans = []
    for index, name in enumerate(regions, start=1):
        vpc, subnets = default_cidrs(index)
        arn = f"arn:aws:acm:{name}:123456789012:certificate/cert-{index}" if aws else None
        plans.append(RegionPlan(name, index, vpc, subnets, certificate_arn=arn))
    return HarnessConfig(target="aws" if aws else "lab", regions=tuple(plans))


def endpoint_ips(config: HarnessConfig) -> dict[str, tuple[str, str]]:
    return {
        plan.name: (str(plan.subnet_cidrs[0][10]), str(plan.subnet_cidrs[1][20]))
        for plan in config.regions
    }


StackId = tuple[str, str | None]


def fake_outputs(
    config: HarnessConfig,
) -> tuple[dict[StackId, dict[str, str]], dict[str, tuple[StackId, str]]]:
    """Return outputs of every stack with globally unique values, and value -> (stack, key)."""
    names = config.region_names
    counter = itertools.count(1)
    prefixes = {
        "VpcId": "vpc",
        "SubnetAId": "subnet",
        "SubnetBId": "subnet",
        "RouteTableId": "rtb",
        "EndpointSecurityGroupId": "sg",
        "BastionSecurityGroupId": "sg",
        "TransitGatewayId": "tgw",
        "TransitGatewayRouteTableId": "tgw-rtb",
        "TransitGatewayVpcAttachmentId": "tgw-attach",
        "ExecuteApiEndpointId": "vpce",
        "BastionAId": "i",
        "BastionBId": "i",
    }

    def value(key: str, region: str | None) -> str:
        n = next(counter)
        if key in prefixes:
            return f"{prefixes[key]}-{n:017x}"
        if key.startswith("PeeringAttachment"):
            return f"tgw-attach-{n:017x}"
        if key == "LoadBalancerDnsName":
            return f"nlb-{n:x}.elb.{region}.amazonaws.com"
        if key == "LoadBalancerCanonicalHostedZoneId":
            return f"Z{n:013X}"
        return f"{key}-{n}"

    outputs: dict[StackId, dict[str, str]] = {}
    for kind in STACK_KINDS:
        for region in (None, *names):
            if has_stack(kind, names, region):
                keys = required_outputs(kind, names, region)
                outputs[(kind, region)] = {key: value(key, region) for key in keys}
    source = {v: (stack, k) for stack, out in outputs.items() for k, v in out.items()}
    return outputs, source


def all_parameters(config: HarnessConfig) -> dict[StackId, dict[str, str]]:
    outputs, _ = fake_outputs(config)
    names = config.region_names
    return {
        (kind, region): parameters(
            kind,
            config,
            region,
            outputs,
            endpoint_ips=endpoint_ips(config),
            stack_set=STACK_SET,
        )
        for kind in STACK_KINDS
        for region in (None, *names)
        if has_stack(kind, names, region)
    }


def resolve(node: Any, params: Mapping[str, str]) -> Any:
    """Replace every ``Ref`` to a parameter by its value (other intrinsics are kept)."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in params:
            return params[node["Ref"]]
        return {key: resolve(value, params) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item, params) for item in node]
    return node


def resources_of(doc: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in doc["Resources"].items()
        if resource["Type"] == resource_type
    }


@functools.cache
def deployed(regions: tuple[str, ...]) -> dict[StackId, dict[str, Any]]:
    """Return every template of the set, parsed and resolved with the harness's parameters."""
    config = make_config(regions)
    params = all_parameters(config)
    return {
        stack: resolve(load_template(render(stack[0], regions, stack[1]).body), values)
        for stack, values in params.items()
    }


# --- cfn-lint ---------------------------------------------------------------------------------


@functools.cache
def lint_runner(regions: tuple[str, ...]) -> Any:
    from cfnlint.api import ManualArgs
    from cfnlint.config import ConfigMixIn
    from cfnlint.runner import Runner

    # Informational rules too; experimental ones (e.g. I4010, architecture context metadata)
    # are opt-in in cfn-lint itself and not part of the bar. One runner per region list: loading
    # the rules costs more than linting a template.
    return Runner(ConfigMixIn(**ManualArgs(regions=list(regions), include_checks=["I"])))


@functools.cache
def lint(body: str, regions: tuple[str, ...]) -> tuple[str, ...]:
    """Return cfn-lint's findings (any level) on ``body`` for ``regions``, as readable lines."""
    from cfnlint.decode.decode import decode_str

    template, matches = decode_str(body)
    if not matches:
        matches = list(lint_runner(regions).validate_template(template))
    return tuple(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches)


@pytest.mark.gate
@pytest.mark.parametrize("size", SIZES)
def test_every_rendered_template_lints_clean(size: int) -> None:
    regions = REGION_SETS[size]
    problems = []
    for filename, template in render_stack_set(regions).items():
        # Identical bodies (network and api in every region) are linted once per region set.
        problems.extend(f"{filename}: {problem}" for problem in lint(template.body, regions))
    assert problems == []


@pytest.mark.gate  # a lint that finds nothing would make the gate's lint meaningless
def test_lint_reports_a_broken_template() -> None:
    body = render("network", REGION_SETS[2], "us-east-1").body.replace(
        "EnableDnsHostnames: true", "EnableDnsHostnames: sometimes"
    )
    problems = lint(body, REGION_SETS[2])
    assert any(problem.startswith("E3012") for problem in problems), problems


# --- moto -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_moto_parses_every_template_as_we_do(size: int) -> None:
    from moto.cloudformation.models import Stack

    for filename, template in render_stack_set(REGION_SETS[size]).items():
        assert Stack.parse_template(template.body) == load_template(template.body), filename


# --- structure and wiring ---------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_every_region_has_a_health_check_on_its_own_alarm(size: int) -> None:
    regions = REGION_SETS[size]
    outputs, _ = fake_outputs(make_config(regions))
    dns = deployed(regions)[("dns", None)]
    checks = resources_of(dns, "AWS::Route53::HealthCheck")
    assert len(checks) == size
    for region in regions:
        config = checks[f"HealthCheck{region_key(region)}"]["Properties"]["HealthCheckConfig"]
        assert config["Type"] == "CLOUDWATCH_METRIC"
        assert config["AlarmIdentifier"] == {
            "Name": outputs[("api", region)]["AlarmName"],
            "Region": region,
        }
        assert config["InsufficientDataHealthStatus"] == "LastKnownStatus"


@pytest.mark.parametrize("size", SIZES)
def test_every_region_has_a_latency_alias_to_its_own_nlb(size: int) -> None:
    regions = REGION_SETS[size]
    config = make_config(regions)
    outputs, _ = fake_outputs(config)
    dns = deployed(regions)[("dns", None)]
    records = resources_of(dns, "AWS::Route53::RecordSet")
    assert len(records) == size
    for region in regions:
        key = region_key(region)
        props = records[f"LatencyRecord{key}"]["Properties"]
        assert props["Name"] == config.domain
        assert props["Type"] == "A"
        assert props["Region"] == props["SetIdentifier"] == region
        assert props["HostedZoneId"] == {"Ref": "PrivateHostedZone"}
        assert props["HealthCheckId"] == {"Ref": f"HealthCheck{key}"}
        assert props["AliasTarget"] == {
            "DNSName": outputs[("api", region)]["LoadBalancerDnsName"],
            "HostedZoneId": outputs[("api", region)]["LoadBalancerCanonicalHostedZoneId"],
            "EvaluateTargetHealth": True,
        }
    zone = dns["Resources"]["PrivateHostedZone"]["Properties"]
    assert zone["Name"] == config.zone
    assert sorted((vpc["VPCId"], vpc["VPCRegion"]) for vpc in zone["VPCs"]) == sorted(
        (outputs[("network", region)]["VpcId"], region) for region in regions
    )


@pytest.mark.parametrize("size", SIZES)
def test_tgw_and_vpc_routes_cover_every_peer_cidr(size: int) -> None:
    regions = REGION_SETS[size]
    config = make_config(regions)
    outputs, _ = fake_outputs(config)
    stacks = deployed(regions)
    for region in regions:
        network = outputs[("network", region)]
        peers = {p.name: str(p.vpc_cidr) for p in config.regions if p.name != region}
        routes = stacks[("routes", region)]
        tgw_routes = resources_of(routes, "AWS::EC2::TransitGatewayRoute")
        vpc_routes = resources_of(routes, "AWS::EC2::Route")
        associations = resources_of(routes, "AWS::EC2::TransitGatewayRouteTableAssociation")
        assert len(tgw_routes) == len(vpc_routes) == len(associations) == size - 1
        for peer, cidr in peers.items():
            attachment = pair_attachment(outputs, regions, region, peer)
            key = region_key(peer)
            tgw_route = tgw_routes[f"PeeringRoute{key}"]
            assert tgw_route["DependsOn"] == f"PeeringAssociation{key}"
            assert tgw_route["Properties"] == {
                "DestinationCidrBlock": cidr,
                "TransitGatewayAttachmentId": attachment,
                "TransitGatewayRouteTableId": network["TransitGatewayRouteTableId"],
            }
            assert associations[f"PeeringAssociation{key}"]["Properties"] == {
                "TransitGatewayAttachmentId": attachment,
                "TransitGatewayRouteTableId": network["TransitGatewayRouteTableId"],
            }
            assert vpc_routes[f"VpcRoute{key}"]["Properties"] == {
                "RouteTableId": network["RouteTableId"],
                "DestinationCidrBlock": cidr,
                "TransitGatewayId": network["TransitGatewayId"],
            }
        # With the network stack's route to its own VPC, the TGW table reaches every VPC.
        own = stacks[("network", region)]["Resources"]["TransitGatewayVpcRoute"]["Properties"]
        routed = {own["DestinationCidrBlock"]} | {
            r["Properties"]["DestinationCidrBlock"] for r in tgw_routes.values()
        }
        assert routed == {str(p.vpc_cidr) for p in config.regions}


def pair_attachment(
    outputs: Mapping[StackId, Mapping[str, str]], regions: Sequence[str], a: str, b: str
) -> str:
    """Return the peering attachment id of the pair, from the lower-indexed region's stack."""
    requester, accepter = sorted((a, b), key=regions.index)
    return outputs[("peering", requester)][f"PeeringAttachment{region_key(accepter)}Id"]


@pytest.mark.parametrize("size", SIZES)
def test_peering_attachments_cover_every_pair_exactly_once(size: int) -> None:
    regions = REGION_SETS[size]
    outputs, _ = fake_outputs(make_config(regions))
    pairs = []
    for region in regions:
        if not has_stack("peering", regions, region):
            continue
        peering = deployed(regions)[("peering", region)]
        for props in (
            r["Properties"]
            for r in resources_of(peering, "AWS::EC2::TransitGatewayPeeringAttachment").values()
        ):
            peer = props["PeerRegion"]
            assert regions.index(peer) > regions.index(region)
            assert props["TransitGatewayId"] == outputs[("network", region)]["TransitGatewayId"]
            assert props["PeerTransitGatewayId"] == outputs[("network", peer)]["TransitGatewayId"]
            assert props["PeerAccountId"] == {"Ref": "AWS::AccountId"}
            pairs.append(frozenset((region, peer)))
    assert sorted(map(sorted, pairs)) == sorted(
        map(sorted, map(frozenset, itertools.combinations(regions, 2)))
    )
    assert len(set(pairs)) == len(pairs)
    assert not has_stack("peering", regions, regions[-1])


@pytest.mark.parametrize("size", SIZES)
def test_endpoint_security_group_admits_every_vpc_cidr(size: int) -> None:
    regions = REGION_SETS[size]
    config = make_config(regions)
    every_cidr = sorted(str(plan.vpc_cidr) for plan in config.regions)
    for region in regions:
        resources = deployed(regions)[("network", region)]["Resources"]
        rules = resources["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
        assert all(
            (r["IpProtocol"], r["FromPort"], r["ToPort"]) == ("tcp", 443, 443) for r in rules
        )
        assert sorted(rule["CidrIp"] for rule in rules) == every_cidr
        for endpoint in ("ExecuteApiEndpoint", "SsmEndpoint", "SsmMessagesEndpoint"):
            props = resources[endpoint]["Properties"]
            assert props["SecurityGroupIds"] == [
                {"Fn::GetAtt": ["EndpointSecurityGroup", "GroupId"]}
            ]
            assert props["PrivateDnsEnabled"] is True
        bastion_rules = resources["BastionSecurityGroup"]["Properties"]["SecurityGroupIngress"]
        assert [rule["CidrIp"] for rule in bastion_rules] == [str(config.region(region).vpc_cidr)]


# Which stack each parameter may come from, written from the design, independently of the code.
def expected_source(kind: str, region: str | None, param: str, regions: Sequence[str]) -> StackId:
    by_key = {region_key(name): name for name in regions}
    if kind == "api":
        return ("network", region)
    if kind == "peering":
        match = re.fullmatch(r"Peer(\w+?)TransitGatewayId", param)
        return ("network", by_key[match[1]] if match else region)
    if kind == "routes":
        match = re.fullmatch(r"Peer(\w+?)AttachmentId", param)
        if match is None:
            return ("network", region)
        assert region is not None
        return ("peering", min(region, by_key[match[1]], key=regions.index))
    match = re.fullmatch(r"(Vpc|Alarm|Nlb)(\w+?)(Id|Name|DnsName|HostedZoneId)", param)
    assert kind == "dns"
    assert match is not None, param
    return ("network" if match[1] == "Vpc" else "api", by_key[match[2]])


@pytest.mark.parametrize("size", SIZES)
def test_parameters_only_take_outputs_from_the_right_stacks(size: int) -> None:
    regions = REGION_SETS[size]
    config = make_config(regions)
    _, source = fake_outputs(config)
    used_other_region = set()
    for (kind, region), values in all_parameters(config).items():
        for param, value in values.items():
            if value not in source:
                continue  # from the configuration, not from a stack
            stack, _ = source[value]
            assert stack == expected_source(kind, region, param, regions), (kind, region, param)
            if kind in ("network", "api"):
                assert stack[1] == region, (kind, region, param)
            if stack[1] != region:
                used_other_region.add(kind)
    # The cross-region wiring is exercised, not vacuously absent.
    assert used_other_region == {"peering", "routes", "dns"}


@pytest.mark.parametrize("size", SIZES)
def test_parameters_satisfy_every_template_parameter(size: int) -> None:
    regions = REGION_SETS[size]
    lab, aws = make_config(regions), make_config(regions, aws=True)
    for (kind, region), values in [*all_parameters(lab).items(), *all_parameters(aws).items()]:
        declared = load_template(render(kind, regions, region).body)["Parameters"]
        required = {name for name, spec in declared.items() if "Default" not in spec}
        assert required <= set(values) <= set(declared), (kind, region)
        for name, value in values.items():
            spec = declared[name]
            assert isinstance(value, str)
            if "AllowedPattern" in spec:
                assert re.fullmatch(spec["AllowedPattern"], value), (kind, region, name, value)
            if spec["Type"] == "Number":
                assert spec["MinValue"] <= int(value) <= spec["MaxValue"], (kind, name, value)
            if "MinLength" in spec:
                assert spec["MinLength"] <= len(value) <= spec["MaxLength"], (kind, name, value)


def test_network_parameters_come_from_the_region_plan() -> None:
    config = make_config(REGION_SETS[3])
    values = parameters("network", config, "eu-west-1", {}, stack_set=STACK_SET)
    assert values == {
        "StackSetName": STACK_SET,
        "VpcCidr": "10.2.0.0/16",
        "SubnetACidr": "10.2.1.0/24",
        "SubnetBCidr": "10.2.2.0/24",
        "ClientCidr1": "10.1.0.0/16",
        "ClientCidr2": "10.2.0.0/16",
        "ClientCidr3": "10.3.0.0/16",
        "TransitGatewayAsn": "64513",
    }


def test_api_parameters_pass_certificate_arns_on_aws() -> None:
    regions = REGION_SETS[2]
    lab, aws = make_config(regions), make_config(regions, aws=True)
    outputs, _ = fake_outputs(lab)
    for config, expected in ((lab, ""), (aws, aws.region("us-west-2").certificate_arn)):
        values = parameters(
            "api",
            config,
            "us-west-2",
            outputs,
            endpoint_ips=endpoint_ips(config),
            stack_set=STACK_SET,
        )
        assert values["CertificateArn"] == expected
        assert (values["EndpointIpA"], values["EndpointIpB"]) == endpoint_ips(config)["us-west-2"]
        assert values["DomainName"] == config.domain
        assert values["StageName"] == config.stage


def test_api_stack_matches_the_reference_health_settings() -> None:
    resources = deployed(REGION_SETS[2])[("api", "us-east-1")]["Resources"]
    group = resources["TargetGroup"]["Properties"]
    assert (group["Protocol"], group["Port"], group["TargetType"]) == ("TLS", 443, "ip")
    assert (
        group["HealthCheckProtocol"],
        group["HealthCheckIntervalSeconds"],
        group["HealthyThresholdCount"],
        group["UnhealthyThresholdCount"],
    ) == ("TCP", 10, 3, 3)
    ip_a, ip_b = endpoint_ips(make_config(REGION_SETS[2]))["us-east-1"]
    assert group["Targets"] == [{"Id": ip_a, "Port": 443}, {"Id": ip_b, "Port": 443}]
    alarm = resources["HealthyHostsAlarm"]["Properties"]
    assert {k: alarm[k] for k in alarm if k not in ("AlarmName", "AlarmDescription", "Tags")} == {
        "Namespace": "AWS/NetworkELB",
        "MetricName": "HealthyHostCount",
        "Dimensions": [
            {
                "Name": "LoadBalancer",
                "Value": {"Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]},
            },
            {
                "Name": "TargetGroup",
                "Value": {"Fn::GetAtt": ["TargetGroup", "TargetGroupFullName"]},
            },
        ],
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1,
        "ComparisonOperator": "LessThanOrEqualToThreshold",
        "TreatMissingData": "missing",
    }
    listener = resources["Listener"]["Properties"]
    assert (listener["Protocol"], listener["Port"]) == ("TLS", 443)
    assert listener["DefaultActions"] == [
        {"Type": "forward", "TargetGroupArn": {"Ref": "TargetGroup"}}
    ]
    assert resources["BasePathMapping"]["Properties"]["BasePath"] == "demo"
    api = resources["RestApi"]["Properties"]
    outputs, _ = fake_outputs(make_config(REGION_SETS[2]))
    vpce = outputs[("network", "us-east-1")]["ExecuteApiEndpointId"]
    assert api["EndpointConfiguration"] == {"Types": ["PRIVATE"], "VpcEndpointIds": [vpce]}
    deny = [s for s in api["Policy"]["Statement"] if s["Effect"] == "Deny"]
    assert deny[0]["Condition"] == {"StringNotEquals": {"aws:SourceVpce": vpce}}


def test_echo_function_returns_its_region_and_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    code = load_template(render("api", REGION_SETS[2], "us-west-2").body)["Resources"][
        "EchoFunction"
    ]["Properties"]["Code"]["ZipFile"]
    namespace: dict[str, Any] = {}
    exec(compile(code, "index.py", "exec"), namespace)
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    event = {"path": "/demo/x", "httpMethod": "GET"}
    response = namespace["handler"](event, None)
    assert response["statusCode"] == 200
    assert response["headers"] == {"Content-Type": "application/json"}
    assert json.loads(response["body"]) == {"region": "us-west-2", "event": event}


def test_bastions_are_tagged_for_the_harness() -> None:
    resources = deployed(REGION_SETS[2])[("network", "us-west-2")]["Resources"]
    for logical_id, subnet, az in (("BastionA", "SubnetA", "a"), ("BastionB", "SubnetB", "b")):
        props = resources[logical_id]["Properties"]
        assert props["SubnetId"] == {"Ref": subnet}
        assert props["IamInstanceProfile"] == {"Ref": "BastionInstanceProfile"}
        tags = {tag["Key"]: tag["Value"] for tag in props["Tags"]}
        assert tags["regiondrill:role"] == "bastion"
        assert tags["regiondrill:az"] == az
        assert "Name" in tags
    role = resources["BastionRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    ]


@pytest.mark.parametrize("size", SIZES)
def test_every_taggable_resource_carries_the_stack_set_tag(size: int) -> None:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    regions = REGION_SETS[size]
    for (kind, region), doc in deployed(regions).items():
        for logical_id, resource in doc["Resources"].items():
            schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource["Type"])
            tag_props = [p for p in TAG_PROPERTIES if p in schema.schema["properties"]]
            if not tag_props:
                continue
            tags = resource["Properties"][tag_props[0]]
            values = {tag["Key"]: tag["Value"] for tag in tags}
            assert values.get("regiondrill:stack-set") == STACK_SET, (kind, region, logical_id)


@pytest.mark.parametrize("size", SIZES)
def test_required_outputs_match_every_template(size: int) -> None:
    regions = REGION_SETS[size]
    for filename, template in render_stack_set(regions).items():
        declared = load_template(template.body)["Outputs"]
        expected = required_outputs(template.kind, regions, template.region)
        assert sorted(declared) == sorted(expected), filename
        assert len(set(expected)) == len(expected)


def test_required_outputs_of_the_fixed_stacks_are_the_contract() -> None:
    # The keys the lead's harness and the lab read (the exact lists).
    assert set(NETWORK_OUTPUTS) == {
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
    }
    assert set(API_OUTPUTS) == {
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
    }
    regions = REGION_SETS[3]
    assert required_outputs("peering", regions, "us-east-1") == (
        "PeeringAttachmentEuWest1Id",
        "PeeringAttachmentApSoutheast2Id",
    )
    assert required_outputs("dns", regions) == (
        "HostedZoneId",
        "HealthCheckUsEast1Id",
        "HealthCheckEuWest1Id",
        "HealthCheckApSoutheast2Id",
    )
    with pytest.raises(ProvisioningError, match="per region"):
        required_outputs("peering", regions)


def test_verify_outputs_names_missing_keys() -> None:
    regions = REGION_SETS[2]
    outputs = dict.fromkeys(NETWORK_OUTPUTS, "x")
    verify_outputs("network", regions, "us-east-1", outputs)
    del outputs["BastionBId"], outputs["VpcId"]
    with pytest.raises(
        ProvisioningError, match=r"network stack of us-east-1 lacks outputs: VpcId, BastionBId"
    ):
        verify_outputs("network", regions, "us-east-1", outputs)


# --- rendering --------------------------------------------------------------------------------


def test_stack_set_files_are_in_deployment_order() -> None:
    regions = REGION_SETS[3]
    rendered = render_stack_set(regions)
    assert list(rendered) == [
        "network-us-east-1.yaml",
        "network-eu-west-1.yaml",
        "network-ap-southeast-2.yaml",
        "peering-us-east-1.yaml",
        "peering-eu-west-1.yaml",
        "routes-us-east-1.yaml",
        "routes-eu-west-1.yaml",
        "routes-ap-southeast-2.yaml",
        "api-us-east-1.yaml",
        "api-eu-west-1.yaml",
        "api-ap-southeast-2.yaml",
        "dns.yaml",
    ]
    for filename, template in rendered.items():
        assert template.filename == filename
        assert template.sha256 == hashlib.sha256(template.body.encode()).hexdigest()


def test_bodies_depend_only_on_structure() -> None:
    three, five = render_stack_set(REGION_SETS[3]), render_stack_set(REGION_SETS[5])
    assert len({t.body for name, t in three.items() if name.startswith("network-")}) == 1
    assert len({t.body for name, t in five.items() if name.startswith("network-")}) == 1
    assert three["network-us-east-1.yaml"].body != five["network-us-east-1.yaml"].body
    api_bodies = {t.body for s in (three, five) for n, t in s.items() if n.startswith("api-")}
    assert api_bodies == {(templates.DEPLOY_DIR / "api.yaml").read_text(encoding="utf-8")}
    # Region-independent stacks cannot name (so cannot reach into) any region.
    for name, template in five.items():
        if name.startswith(("network-", "api-")):
            assert not any(region in template.body for region in known_regions()), name


def test_rendering_is_deterministic_across_processes() -> None:
    regions = REGION_SETS[5]
    local = {name: t.sha256 for name, t in render_stack_set(regions).items()}
    script = (
        "import json, sys; from harness.aws.templates import render_stack_set; "
        "print(json.dumps({n: t.sha256 for n, t in render_stack_set(sys.argv[1:]).items()}))"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", script, *regions],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=60,
        )
        assert json.loads(run.stdout) == local
    assert render_stack_set(regions) == render_stack_set(regions)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(LINTED_REGIONS), min_size=2, max_size=5, unique=True))
def test_any_region_list_renders_a_complete_mesh(regions: list[str]) -> None:
    rendered = render_stack_set(regions)
    peerings = [
        (t.region, props["PeerRegion"])
        for t in rendered.values()
        if t.kind == "peering"
        for props in (
            r["Properties"]
            for r in resources_of(
                load_template(t.body), "AWS::EC2::TransitGatewayPeeringAttachment"
            ).values()
        )
    ]
    # Requester is always the lower-indexed region, so pairs come out in combinations() order.
    assert sorted(peerings) == sorted(itertools.combinations(regions, 2))
    for region in regions:
        routes = load_template(rendered[f"routes-{region}.yaml"].body)
        cidr_params = {
            r["Properties"]["DestinationCidrBlock"]["Ref"]
            for r in resources_of(routes, "AWS::EC2::TransitGatewayRoute").values()
        }
        assert cidr_params == {f"Peer{region_key(p)}Cidr" for p in regions if p != region}
    dns = load_template(rendered["dns.yaml"].body)
    assert {
        r["Properties"]["Region"] for r in resources_of(dns, "AWS::Route53::RecordSet").values()
    } == set(regions)


def test_region_keys_are_unique_logical_id_fragments() -> None:
    keys = {region_key(name) for name in known_regions()}
    assert len(keys) == len(known_regions())
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]+", key) for key in keys)
    assert region_key("us-east-1") == "UsEast1"
    assert region_key("ap-southeast-2") == "ApSoutheast2"


def test_deploy_dir_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for source in templates.DEPLOY_DIR.iterdir():
        if source.suffix in (".j2", ".yaml"):
            (tmp_path / source.name).write_text(
                source.read_text(encoding="utf-8"), encoding="utf-8"
            )
    (tmp_path / "api.yaml").write_text("AWSTemplateFormatVersion: '2010-09-09'\n", encoding="utf-8")
    monkeypatch.setenv(templates.DEPLOY_DIR_ENV, str(tmp_path))
    assert render("api", REGION_SETS[2], "us-east-1").body.startswith("AWSTemplateFormatVersion")
    monkeypatch.setenv(templates.DEPLOY_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(ProvisioningError, match="missing"):
        render("network", REGION_SETS[2], "us-east-1")


def test_a_broken_source_fails_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dns.yaml.j2").write_text("Value: {{ no_such_variable }}\n", encoding="utf-8")
    monkeypatch.setenv(templates.DEPLOY_DIR_ENV, str(tmp_path))
    with pytest.raises(ProvisioningError, match=r"dns\.yaml\.j2.*no_such_variable"):
        render("dns", REGION_SETS[2])
    with pytest.raises(ProvisioningError, match=r"network\.yaml\.j2' does not exist"):
        render("network", REGION_SETS[2], "us-east-1")


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: render("nework", REGION_SETS[2], "us-east-1"), "'nework'"),
        (lambda: render("network", REGION_SETS[2], "eu-west-1"), "'eu-west-1' is not in"),
        (lambda: render("network", REGION_SETS[2]), "network stack is per region"),
        (lambda: render("dns", REGION_SETS[2], "us-east-1"), "global.*'us-east-1'"),
        (lambda: render("peering", REGION_SETS[2], "us-west-2"), "'us-west-2' is the last"),
        (lambda: render("api", ("us-east-1",), "us-east-1"), "2 to 5 regions, got 1"),
        (lambda: render("api", REGION_SETS[5] + ("sa-east-1",), "us-east-1"), "got 6"),
        (lambda: render("api", ("us-east-1", "us-east-1"), "us-east-1"), "listed twice"),
        (lambda: render("api", ("us-east-1", "US_EAST"), "us-east-1"), "'US_EAST'"),
        (lambda: render("api", "us-east-1", "us-east-1"), "sequence of region names"),
        (lambda: region_key("useast1"), "'useast1' is not an AWS region name"),
        (lambda: stack_name("rd", "dns", "us-east-1"), "global, got region 'us-east-1'"),
        (lambda: stack_name("rd", "api"), "per region"),
        (lambda: stack_name("1rd", "api", "us-east-1"), "'1rd'"),
        (lambda: stack_name("rd" * 70, "api", "us-east-1"), "longer than 128"),
        (lambda: stack_region("peering", REGION_SETS[2], "us-west-2"), "last"),
    ],
)
def test_bad_input_errors_name_the_value(call: Any, message: str) -> None:
    with pytest.raises(ProvisioningError, match=message):
        call()


def test_stack_names_and_regions() -> None:
    assert stack_name("regiondrill", "network", "us-east-1") == "regiondrill-network-us-east-1"
    assert stack_name("regiondrill", "dns") == "regiondrill-dns"
    assert stack_region("dns", REGION_SETS[3]) == "us-east-1"
    assert stack_region("routes", REGION_SETS[3], "eu-west-1") == "eu-west-1"
    assert has_stack("peering", REGION_SETS[3], "eu-west-1")
    assert not has_stack("dns", REGION_SETS[3], "eu-west-1")
    assert not has_stack("api", REGION_SETS[3])


def test_parameters_name_the_missing_output_and_stack() -> None:
    config = make_config(REGION_SETS[2])
    outputs, _ = fake_outputs(config)
    del outputs[("peering", "us-east-1")]
    with pytest.raises(
        ProvisioningError, match="stack 'regiondrill-peering-us-east-1', which has none"
    ):
        parameters("routes", config, "us-west-2", outputs, stack_set=STACK_SET)
    del outputs[("network", "us-west-2")]["TransitGatewayId"]
    with pytest.raises(
        ProvisioningError,
        match="output 'TransitGatewayId' of stack 'regiondrill-network-us-west-2'",
    ):
        parameters("peering", config, "us-east-1", outputs, stack_set=STACK_SET)


def test_api_parameters_check_the_endpoint_ips() -> None:
    config = make_config(REGION_SETS[2])
    outputs, _ = fake_outputs(config)
    ips = endpoint_ips(config)

    def api(ips: Mapping[str, tuple[str, str]] | None) -> dict[str, str]:
        return parameters(
            "api", config, "us-east-1", outputs, endpoint_ips=ips, stack_set=STACK_SET
        )

    with pytest.raises(ProvisioningError, match="api stack of us-east-1 needs the private IPs"):
        api(None)
    swapped = {"us-east-1": (ips["us-east-1"][1], ips["us-east-1"][0])}
    with pytest.raises(ProvisioningError, match=r"10\.1\.2\.20 of us-east-1 is not in subnet A"):
        api(swapped)
    with pytest.raises(ProvisioningError, match="'not-an-ip'"):
        api({"us-east-1": ("not-an-ip", ips["us-east-1"][1])})
    with pytest.raises(ProvisioningError, match="stack set name 'bad name'"):
        parameters("network", config, "us-east-1", outputs, stack_set="bad name")
    assert ipaddress.IPv4Address(api(ips)["EndpointIpA"]) in config.regions[0].subnet_cidrs[0]


def test_load_template_converts_short_tags() -> None:
    doc = load_template(
        "A: !GetAtt X.Y\nB: !Sub ['${a}', {a: !Ref P}]\nC: !If [Cond, !Ref AWS::NoValue, 1]\n"
    )
    assert doc == {
        "A": {"Fn::GetAtt": ["X", "Y"]},
        "B": {"Fn::Sub": ["${a}", {"a": {"Ref": "P"}}]},
        "C": {"Fn::If": ["Cond", {"Ref": "AWS::NoValue"}, 1]},
    }
    with pytest.raises(ProvisioningError, match="not a YAML mapping"):
        load_template("- 1\n")
    assert isinstance(render("dns", REGION_SETS[2]), Template)
