"""Provisioning the stack set through CloudFormation, tested through boto3 against the lab.

Relationships, not just existence: ENIs inside their subnets, every peering pair available with
routes both ways, the zone associated with every VPC, each region's health check bound to its
own alarm and each latency record aliasing its own NLB; failures are loud; teardown leaves
nothing; --reuse-stacks attaches without creating.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from harness.aws.session import SessionFactory
from harness.aws.stacks import StackSetDeployer, find_stacks
from harness.config import HarnessConfig, load_config
from harness.errors import ProvisioningError
from harness.lab.lab import Lab
from harness.targets import lab_sessions

REGIONS_5 = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2", "eu-central-1")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(REGIONS_5) as running:
        yield running


@pytest.fixture(scope="module")
def sessions(lab: Lab) -> SessionFactory:
    return lab_sessions(lab.info)


def configure(count: int, **overrides: Any) -> HarnessConfig:
    values: dict[str, Any] = {"regions": ",".join(REGIONS_5[:count])}
    values.update(overrides)
    return load_config(values, environ={})


def inventory(sessions: SessionFactory, regions: tuple[str, ...]) -> dict[str, set[str]]:
    """Everything a deployment creates, by kind, that still exists (AWS's 'deleted' states don't)."""
    found: dict[str, set[str]] = {}

    def add(kind: str, ids: Any) -> None:
        found.setdefault(kind, set()).update(ids)

    for region in regions:
        ec2 = sessions.client("ec2", region)
        add("vpc", (v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")))
        add(
            "subnet",
            (s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if not s.get("DefaultForAz")),
        )
        add(
            "eni",
            (
                e["NetworkInterfaceId"]
                for e in ec2.describe_network_interfaces()["NetworkInterfaces"]
            ),
        )
        add(
            "endpoint",
            (
                e["VpcEndpointId"]
                for e in ec2.describe_vpc_endpoints()["VpcEndpoints"]
                if e["State"] != "deleted"
            ),
        )
        add(
            "tgw",
            (
                t["TransitGatewayId"]
                for t in ec2.describe_transit_gateways()["TransitGateways"]
                if t["State"] != "deleted"
            ),
        )
        add(
            "tgw-attachment",
            (
                a["TransitGatewayAttachmentId"]
                for a in ec2.describe_transit_gateway_attachments()["TransitGatewayAttachments"]
                if a["State"] not in ("deleted", "rejected")
            ),
        )
        add(
            "instance",
            (
                i["InstanceId"]
                for r in ec2.describe_instances()["Reservations"]
                for i in r["Instances"]
                if i["State"]["Name"] not in ("terminated", "shutting-down")
            ),
        )
        elb = sessions.client("elbv2", region)
        add(
            "load-balancer",
            (lb["LoadBalancerArn"] for lb in elb.describe_load_balancers()["LoadBalancers"]),
        )
        add(
            "target-group",
            (tg["TargetGroupArn"] for tg in elb.describe_target_groups()["TargetGroups"]),
        )
        add(
            "alarm",
            (
                a["AlarmName"]
                for a in sessions.client("cloudwatch", region).describe_alarms()["MetricAlarms"]
            ),
        )
        add(
            "rest-api",
            (a["id"] for a in sessions.client("apigateway", region).get_rest_apis()["items"]),
        )
        add(
            "function",
            (
                f["FunctionName"]
                for f in sessions.client("lambda", region).list_functions()["Functions"]
            ),
        )
        add(
            "certificate",
            (
                c["CertificateArn"]
                for c in sessions.client("acm", region).list_certificates()[
                    "CertificateSummaryList"
                ]
            ),
        )
    route53 = sessions.global_client("route53")
    add("zone", (z["Id"] for z in route53.list_hosted_zones()["HostedZones"]))
    add("health-check", (h["Id"] for h in route53.list_health_checks()["HealthChecks"]))
    iam = sessions.global_client("iam")
    add("role", (r["RoleName"] for r in iam.list_roles()["Roles"]))
    add(
        "instance-profile",
        (p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]),
    )
    return found


@pytest.mark.parametrize("count", [2, 3, 5])
def test_deploys_n_regions_with_correct_wiring_and_teardown_leaves_nothing(
    count: int, lab: Lab, sessions: SessionFactory
) -> None:
    config = configure(count)
    regions = config.region_names
    before = inventory(sessions, REGIONS_5)
    lines: list[str] = []
    deployer = StackSetDeployer(config, sessions, progress=lines.append)
    try:
        deployment = deployer.deploy()
        assert [r.name for r in deployment.regions] == list(regions)
        assert any("CREATE_COMPLETE" in line for line in lines), "stack events stream as progress"

        for region in deployment.regions:
            ec2 = sessions.client("ec2", region.name)
            plan = config.region(region.name)
            # Endpoint ENIs (and every other ENI) sit inside their subnets, one per subnet.
            subnets = {
                s["SubnetId"]: ipaddress.ip_network(s["CidrBlock"])
                for s in ec2.describe_subnets(SubnetIds=list(region.subnet_ids))["Subnets"]
            }
            assert sorted(map(str, subnets.values())) == sorted(map(str, plan.subnet_cidrs))
            endpoint = ec2.describe_vpc_endpoints(VpcEndpointIds=[region.endpoint_id])[
                "VpcEndpoints"
            ][0]
            enis = ec2.describe_network_interfaces(
                NetworkInterfaceIds=endpoint["NetworkInterfaceIds"]
            )["NetworkInterfaces"]
            assert sorted(e["SubnetId"] for e in enis) == sorted(region.subnet_ids)
            for eni in enis:
                assert ipaddress.ip_address(eni["PrivateIpAddress"]) in subnets[eni["SubnetId"]]
                assert eni["Description"] == f"VPC Endpoint Interface {region.endpoint_id}"
            assert set(region.endpoint_ips) == {e["PrivateIpAddress"] for e in enis}
            vpc_enis = ec2.describe_network_interfaces(
                Filters=[{"Name": "vpc-id", "Values": [region.vpc_id]}]
            )["NetworkInterfaces"]
            addresses = [e["PrivateIpAddress"] for e in vpc_enis]
            assert len(addresses) == len(set(addresses)), "no two ENIs share an address"
            for eni in vpc_enis:
                assert ipaddress.ip_address(eni["PrivateIpAddress"]) in plan.vpc_cidr
            # The NLB is a network LB with one node ENI per subnet, in that subnet.
            elb = sessions.client("elbv2", region.name)
            lb = elb.describe_load_balancers(LoadBalancerArns=[region.load_balancer_arn])[
                "LoadBalancers"
            ][0]
            assert lb["Type"] == "network"
            assert lb["Scheme"] == "internal"
            assert ":loadbalancer/net/" in lb["LoadBalancerArn"]
            nodes = [
                e for e in vpc_enis if e["Description"] == f"ELB {region.load_balancer_full_name}"
            ]
            assert sorted(e["SubnetId"] for e in nodes) == sorted(region.subnet_ids)
            targets = elb.describe_target_groups(TargetGroupArns=[region.target_group_arn])[
                "TargetGroups"
            ][0]
            assert targets["HealthCheckIntervalSeconds"] == 10
            assert targets["HealthyThresholdCount"] == 3
            assert targets["UnhealthyThresholdCount"] == 3
            # Bastions: two, one per subnet, tagged for the harness.
            instances = [
                i
                for r in ec2.describe_instances(InstanceIds=list(region.bastion_ids))[
                    "Reservations"
                ]
                for i in r["Instances"]
            ]
            assert sorted(i["SubnetId"] for i in instances) == sorted(region.subnet_ids)
            for instance in instances:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                assert tags.get("regiondrill:role") == "bastion"
                assert (
                    ipaddress.ip_address(instance["PrivateIpAddress"])
                    in subnets[instance["SubnetId"]]
                )
            # The VPC routes every peer CIDR to this region's transit gateway...
            table = ec2.describe_route_tables(RouteTableIds=[region.route_table_id])["RouteTables"][
                0
            ]
            assert {a.get("SubnetId") for a in table["Associations"]} >= set(region.subnet_ids)
            tgw_routes = {
                r.get("DestinationCidrBlock"): r.get("TransitGatewayId") for r in table["Routes"]
            }
            # ...and the TGW route table sends every peer CIDR to that pair's peering attachment.
            searched = ec2.search_transit_gateway_routes(
                TransitGatewayRouteTableId=region.transit_gateway_route_table_id,
                Filters=[{"Name": "state", "Values": ["active"]}],
            )["Routes"]
            by_cidr = {
                r["DestinationCidrBlock"]: r["TransitGatewayAttachments"][0][
                    "TransitGatewayAttachmentId"
                ]
                for r in searched
            }
            assert by_cidr[str(plan.vpc_cidr)] == region.transit_gateway_vpc_attachment_id
            for peer in config.regions:
                if peer.name == region.name:
                    continue
                assert tgw_routes[str(peer.vpc_cidr)] == region.transit_gateway_id
                assert by_cidr[str(peer.vpc_cidr)] == region.peering_attachments[peer.name]

        # Every pair of regions is peered exactly once, and the attachment is available.
        for first, second in itertools.combinations(deployment.regions, 2):
            attachment = first.peering_attachments[second.name]
            assert attachment == second.peering_attachments[first.name]
            found = sessions.client(
                "ec2", second.name
            ).describe_transit_gateway_peering_attachments(
                TransitGatewayAttachmentIds=[attachment]
            )["TransitGatewayPeeringAttachments"]
            assert found[0]["State"] == "available"
            assert {
                found[0]["RequesterTgwInfo"]["Region"],
                found[0]["AccepterTgwInfo"]["Region"],
            } == {first.name, second.name}

        route53 = sessions.global_client("route53")
        zone = route53.get_hosted_zone(Id=deployment.zone_id)
        assert zone["HostedZone"]["Config"]["PrivateZone"] is True
        assert sorted((v["VPCId"], v["VPCRegion"]) for v in zone["VPCs"]) == sorted(
            (r.vpc_id, r.name) for r in deployment.regions
        )
        records = route53.list_resource_record_sets(HostedZoneId=deployment.zone_id)[
            "ResourceRecordSets"
        ]
        latency = {r["Region"]: r for r in records if r.get("Region")}
        assert set(latency) == set(regions)
        for region in deployment.regions:
            record = latency[region.name]
            assert record["Name"].rstrip(".") == config.domain
            assert record["Type"] == "A"
            assert record["SetIdentifier"] == region.name
            assert (
                record["AliasTarget"]["DNSName"].rstrip(".").lower()
                == region.load_balancer_dns_name.lower()
            )
            assert record["AliasTarget"]["EvaluateTargetHealth"] is True
            assert record["HealthCheckId"] == region.health_check_id
            check = route53.get_health_check(HealthCheckId=region.health_check_id)["HealthCheck"]
            assert check["HealthCheckConfig"]["Type"] == "CLOUDWATCH_METRIC"
            assert check["HealthCheckConfig"]["AlarmIdentifier"] == {
                "Region": region.name,
                "Name": region.alarm_name,
            }
            alarm = sessions.client("cloudwatch", region.name).describe_alarms(
                AlarmNames=[region.alarm_name]
            )["MetricAlarms"][0]
            assert alarm["MetricName"] == "HealthyHostCount"
            assert alarm["Namespace"] == "AWS/NetworkELB"
            dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
            assert dimensions["LoadBalancer"] == region.load_balancer_full_name
            assert region.target_group_arn.endswith(dimensions["TargetGroup"])
            assert (
                alarm["Statistic"],
                alarm["Period"],
                alarm["EvaluationPeriods"],
                alarm["Threshold"],
            ) == ("Sum", 60, 1, 1.0)
            assert alarm["ComparisonOperator"] == "LessThanOrEqualToThreshold"
        # Stacks are tagged so orphans can be found.
        tagged = find_stacks(sessions, regions, run_id=deployer.run_id)
        assert {s.name for s in tagged} == {s.name for s in deployment.stacks}
    finally:
        deployer.teardown()
    assert inventory(sessions, REGIONS_5) == before


def test_unsupported_resource_type_fails_the_stack_loudly(sessions: SessionFactory) -> None:
    cfn = sessions.client("cloudformation", "us-east-1")
    template = """
Resources:
  Topic:
    Type: AWS::EC2::VPC
    Properties: {CidrBlock: 10.9.0.0/16}
  Exotic:
    Type: AWS::GameLift::Fleet
    Properties: {Name: nope}
"""
    deployer = StackSetDeployer(configure(2), sessions)
    cfn.create_stack(StackName="regiondrill-unsupported", TemplateBody=template)
    with pytest.raises(ProvisioningError) as raised:
        deployer._wait(
            cfn, "regiondrill-unsupported", "regiondrill-unsupported", "us-east-1", "CREATE"
        )
    assert "AWS::GameLift::Fleet" in str(raised.value)
    assert "Exotic" in str(raised.value)
    stack = cfn.describe_stacks(StackName="regiondrill-unsupported")["Stacks"][0]
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName="regiondrill-unsupported")["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed
    assert "AWS::GameLift::Fleet" in failed[0]["ResourceStatusReason"]
    vpcs = sessions.client("ec2", "us-east-1").describe_vpcs(
        Filters=[{"Name": "cidr", "Values": ["10.9.0.0/16"]}]
    )["Vpcs"]
    assert vpcs == [], "the rollback removed what was created before the failure"
    deployer.delete_stack("regiondrill-unsupported", "us-east-1")


def test_failed_stack_reports_resource_and_reason(sessions: SessionFactory) -> None:
    cfn = sessions.client("cloudformation", "us-east-1")
    template = """
Resources:
  Bad:
    Type: AWS::EC2::Subnet
    Properties: {VpcId: vpc-00000000000000000, CidrBlock: 10.9.1.0/24}
"""
    cfn.create_stack(StackName="regiondrill-bad", TemplateBody=template)
    deployer = StackSetDeployer(configure(2), sessions)
    with pytest.raises(
        ProvisioningError, match=r"resource Bad \(AWS::EC2::Subnet\) CREATE_FAILED: .*vpc-0+"
    ):
        deployer._wait(cfn, "regiondrill-bad", "regiondrill-bad", "us-east-1", "CREATE")
    deployer.delete_stack("regiondrill-bad", "us-east-1")


def test_wrong_credentials_are_rejected(lab: Lab) -> None:
    for key, secret in (
        (lab.info.aws_access_key_id, "not-the-secret"),
        ("AKIAIOSFODNN7EXAMPLE", lab.info.aws_secret_access_key),
    ):
        client = boto3.client(
            "cloudformation",
            endpoint_url=lab.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        with pytest.raises(ClientError) as raised:
            client.list_stacks()
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert raised.value.response["Error"]["Code"] in (
            "SignatureDoesNotMatch",
            "InvalidClientTokenId",
        )


def test_reuse_stacks_attaches_without_creating_and_checks_the_config(
    sessions: SessionFactory,
) -> None:
    first = StackSetDeployer(configure(2), sessions)
    created = first.deploy()
    try:
        calls: list[str] = []
        reuse = StackSetDeployer(configure(2, reuse_stacks=True), sessions, progress=calls.append)
        attached = reuse.deploy()
        assert not any("creating" in line for line in calls)
        assert attached.created_stacks == ()
        assert [r.__dict__ for r in attached.regions] == [r.__dict__ for r in created.regions]
        reuse.teardown()  # created nothing, so deletes nothing
        assert (
            sessions.client("cloudformation", "us-east-1").describe_stacks(
                StackName="regiondrill-dns"
            )["Stacks"][0]["StackStatus"]
            == "CREATE_COMPLETE"
        )
        mismatch = StackSetDeployer(
            configure(2, reuse_stacks=True, domain="api.internal.example.com"), sessions
        )
        with pytest.raises(ProvisioningError, match="parameters differ"):
            mismatch.deploy()
        duplicate = StackSetDeployer(configure(2), sessions)
        with pytest.raises(ProvisioningError, match=r"already exists.*--reuse-stacks"):
            duplicate.deploy()
    finally:
        first.teardown()
