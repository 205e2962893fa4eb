"""The fault catalogue: each fault is an inject/restore pair made of real AWS API calls.

Because faults only speak the AWS API, they work unchanged against AWS and the lab. Every fault
reads the state it is about to change (``capture``) and keeps it as its ``prior``; restore puts
back exactly that, and can run from the ledger alone (after a crash there is no deployment
object, only the ids and prior state written down before the injection).

=========================  ======================================  =========================
fault                      injection                               restore
=========================  ======================================  =========================
invert_health_check(r)     UpdateHealthCheck Inverted=true          Inverted back to prior
fail_targets(r)            target-group health check -> a port      the prior health-check
                           nothing listens on (targets fail their   port / protocol
                           checks: the real alarm path)
revoke_endpoint_ingress(r) revoke the execute-api endpoint SG's     re-authorise exactly the
                           ingress rules (NLB -> endpoint blocked)  revoked rules
blackhole_peering(a, b)    both TGW routes between a and b          the routes to their prior
                           replaced by blackholes                   peering attachment
throttle_api(r)            Lambda reserved concurrency 0            prior reserved concurrency
stop_bastion(i)            StopInstances                            StartInstances
=========================  ======================================  =========================
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.aws.session import SessionFactory, aws_call
from harness.aws.stacks import Deployment
from harness.errors import CloudError, FaultError

# A port nothing listens on: health checks to it fail the way a dead target's would.
DEAD_PORT = "1"


@dataclass(frozen=True)
class Fault(ABC):
    """One fault: what it acts on (``target``) and how to inject and restore it."""

    KIND: ClassVar[str] = ""
    DESTRUCTIVE: ClassVar[bool] = True

    @property
    @abstractmethod
    def target(self) -> dict[str, Any]:
        """JSON-serialisable ids restore needs (region, resource ids)."""

    @property
    def takes_down(self) -> frozenset[str]:
        """Regions whose Route 53 health this fault is expected to turn unhealthy."""
        return frozenset()

    def describe(self) -> str:
        return f"{self.KIND}({', '.join(f'{k}={v}' for k, v in sorted(self.target.items()))})"

    @abstractmethod
    def capture(self, sessions: SessionFactory) -> dict[str, Any]:
        """Read the state this fault will change (stored as the ledger's prior)."""

    @abstractmethod
    def inject(self, sessions: SessionFactory, prior: Mapping[str, Any]) -> None:
        """Make the change."""

    @classmethod
    @abstractmethod
    def restore(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> None:
        """Put back ``prior``; idempotent, and works from ledger data alone."""

    @classmethod
    @abstractmethod
    def verify(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> list[str]:
        """Return differences between the current state and ``prior`` (empty = restored)."""


# ---------------------------------------------------------------------- Route 53


@dataclass(frozen=True)
class InvertHealthCheck(Fault):
    """Invert a region's Route 53 health check: the reference way to simulate an outage."""

    KIND: ClassVar[str] = "invert_health_check"
    region: str
    health_check_id: str

    @property
    def target(self) -> dict[str, Any]:
        return {"region": self.region, "health_check_id": self.health_check_id}

    @property
    def takes_down(self) -> frozenset[str]:
        return frozenset({self.region})

    def capture(self, sessions: SessionFactory) -> dict[str, Any]:
        config = _health_check(sessions, self.health_check_id)["HealthCheckConfig"]
        if config.get("Inverted"):
            raise FaultError(
                f"health check {self.health_check_id} of {self.region} is already inverted; "
                "restore it first (regiondrill restore) — injecting again would lose the real prior state"
            )
        return {"inverted": bool(config.get("Inverted"))}

    def inject(self, sessions: SessionFactory, prior: Mapping[str, Any]) -> None:
        _update_health_check(sessions, self.health_check_id, inverted=True)

    @classmethod
    def restore(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> None:
        _update_health_check(sessions, target["health_check_id"], inverted=bool(prior["inverted"]))

    @classmethod
    def verify(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> list[str]:
        inverted = bool(
            _health_check(sessions, target["health_check_id"])["HealthCheckConfig"].get("Inverted")
        )
        if inverted != bool(prior["inverted"]):
            return [
                f"health check {target['health_check_id']} Inverted={inverted}, expected {prior['inverted']}"
            ]
        return []


def _health_check(sessions: SessionFactory, health_check_id: str) -> dict[str, Any]:
    with aws_call(f"GetHealthCheck {health_check_id}"):
        return sessions.global_client("route53").get_health_check(HealthCheckId=health_check_id)[
            "HealthCheck"
        ]


def _update_health_check(sessions: SessionFactory, health_check_id: str, *, inverted: bool) -> None:
    with aws_call(f"UpdateHealthCheck {health_check_id} Inverted={inverted}"):
        sessions.global_client("route53").update_health_check(
            HealthCheckId=health_check_id, Inverted=inverted
        )


# ---------------------------------------------------------------------- ELBv2


@dataclass(frozen=True)
class FailTargets(Fault):
    """Make a region's NLB targets fail their health checks: the real alarm path.

    The target group's health check is pointed at a port nothing listens on, so every target
    turns unhealthy after UnhealthyThreshold x Interval, HealthyHostCount drops, the alarm
    fires, and Route 53's CloudWatch-metric health check follows. (Like a real NLB, the lab
    keeps routing to targets when all are unhealthy, so requests may still succeed: this fault
    tests detection and DNS failover, not the data path.)
    """

    KIND: ClassVar[str] = "fail_targets"
    region: str
    target_group_arn: str

    @property
    def target(self) -> dict[str, Any]:
        return {"region": self.region, "target_group_arn": self.target_group_arn}

    @property
    def takes_down(self) -> frozenset[str]:
        return frozenset({self.region})

    def capture(self, sessions: SessionFactory) -> dict[str, Any]:
        group = _target_group(sessions, self.region, self.target_group_arn)
        if group.get("HealthCheckPort") == DEAD_PORT:
            raise FaultError(
                f"target group {self.target_group_arn} already checks port {DEAD_PORT}; restore it first"
            )
        return {"health_check_port": group.get("HealthCheckPort", "traffic-port")}

    def inject(self, sessions: SessionFactory, prior: Mapping[str, Any]) -> None:
        _modify_target_group(sessions, self.region, self.target_group_arn, DEAD_PORT)

    @classmethod
    def restore(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> None:
        _modify_target_group(
            sessions, target["region"], target["target_group_arn"], str(prior["health_check_port"])
        )

    @classmethod
    def verify(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> list[str]:
        port = _target_group(sessions, target["region"], target["target_group_arn"]).get(
            "HealthCheckPort"
        )
        if str(port) != str(prior["health_check_port"]):
            return [
                f"target group {target['target_group_arn']} checks port {port}, expected {prior['health_check_port']}"
            ]
        return []


def _target_group(sessions: SessionFactory, region: str, arn: str) -> dict[str, Any]:
    with aws_call(f"DescribeTargetGroups {arn}", region):
        return sessions.client("elbv2", region).describe_target_groups(TargetGroupArns=[arn])[
            "TargetGroups"
        ][0]


def _modify_target_group(sessions: SessionFactory, region: str, arn: str, port: str) -> None:
    with aws_call(f"ModifyTargetGroup {arn} HealthCheckPort={port}", region):
        sessions.client("elbv2", region).modify_target_group(
            TargetGroupArn=arn, HealthCheckPort=port
        )


# ---------------------------------------------------------------------- EC2


@dataclass(frozen=True)
class RevokeEndpointIngress(Fault):
    """Revoke every ingress rule of a region's execute-api endpoint security group.

    NLB health checks and forwarded requests can no longer reach the endpoint: targets fail,
    requests through that region's NLB time out, and clients that use the endpoint directly
    lose it too — a real data-path outage.
    """

    KIND: ClassVar[str] = "revoke_endpoint_ingress"
    region: str
    security_group_id: str

    @property
    def target(self) -> dict[str, Any]:
        return {"region": self.region, "security_group_id": self.security_group_id}

    @property
    def takes_down(self) -> frozenset[str]:
        return frozenset({self.region})

    def capture(self, sessions: SessionFactory) -> dict[str, Any]:
        rules = _ingress(sessions, self.region, self.security_group_id)
        if not rules:
            raise FaultError(
                f"security group {self.security_group_id} in {self.region} has no ingress rules to revoke"
            )
        return {"ip_permissions": rules}

    def inject(self, sessions: SessionFactory, prior: Mapping[str, Any]) -> None:
        with aws_call(f"RevokeSecurityGroupIngress {self.security_group_id}", self.region):
            sessions.client("ec2", self.region).revoke_security_group_ingress(
                GroupId=self.security_group_id, IpPermissions=list(prior["ip_permissions"])
            )

    @classmethod
    def restore(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> None:
        region, group = target["region"], target["security_group_id"]
        present = _ingress(sessions, region, group)
        missing = [
            rule
            for rule in prior["ip_permissions"]
            if _rule_key(rule) not in {_rule_key(r) for r in present}
        ]
        if missing:
            with aws_call(f"AuthorizeSecurityGroupIngress {group}", region):
                sessions.client("ec2", region).authorize_security_group_ingress(
                    GroupId=group, IpPermissions=missing
                )

    @classmethod
    def verify(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> list[str]:
        present = {
            _rule_key(r) for r in _ingress(sessions, target["region"], target["security_group_id"])
        }
        wanted = {_rule_key(r) for r in prior["ip_permissions"]}
        if present != wanted:
            return [
                f"security group {target['security_group_id']} ingress differs: missing "
                f"{sorted(wanted - present)}, extra {sorted(present - wanted)}"
            ]
        return []


def _ingress(sessions: SessionFactory, region: str, group_id: str) -> list[dict[str, Any]]:
    with aws_call(f"DescribeSecurityGroups {group_id}", region):
        group = sessions.client("ec2", region).describe_security_groups(GroupIds=[group_id])[
            "SecurityGroups"
        ][0]
    rules = []
    for permission in group.get("IpPermissions", []):
        # Keep only what AuthorizeSecurityGroupIngress accepts, one CIDR per rule, so a
        # partial restore can add exactly what is missing.
        base = {k: permission[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in permission}
        for ip_range in permission.get("IpRanges", []):
            rules.append({**base, "IpRanges": [{"CidrIp": ip_range["CidrIp"]}]})
        for pair in permission.get("UserIdGroupPairs", []):
            rules.append({**base, "UserIdGroupPairs": [{"GroupId": pair["GroupId"]}]})
    return rules


def _rule_key(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    sources = tuple(r.get("CidrIp") for r in rule.get("IpRanges", [])) + tuple(
        p.get("GroupId") for p in rule.get("UserIdGroupPairs", [])
    )
    return (str(rule.get("IpProtocol")), rule.get("FromPort"), rule.get("ToPort"), sources)


@dataclass(frozen=True)
class BlackholePeering(Fault):
    """Blackhole the TGW routes between two regions (both directions).

    Nothing about either region's health changes — Route 53 still answers with the same
    regions — but clients that fail over across the pair can no longer reach their new region:
    the stranded-clients hazard.
    """

    KIND: ClassVar[str] = "blackhole_peering"
    region_a: str
    region_b: str
    route_table_a: str
    route_table_b: str
    cidr_a: str
    cidr_b: str

    @property
    def target(self) -> dict[str, Any]:
        return {
            "region_a": self.region_a,
            "region_b": self.region_b,
            "route_table_a": self.route_table_a,
            "route_table_b": self.route_table_b,
            "cidr_a": self.cidr_a,
            "cidr_b": self.cidr_b,
        }

    def _routes(self) -> list[tuple[str, str, str]]:
        # (region, TGW route table, destination CIDR): a's route to b, and b's route to a.
        return [
            (self.region_a, self.route_table_a, self.cidr_b),
            (self.region_b, self.route_table_b, self.cidr_a),
        ]

    def capture(self, sessions: SessionFactory) -> dict[str, Any]:
        prior = {}
        for region, table, cidr in self._routes():
            route = _tgw_route(sessions, region, table, cidr)
            if route is None or route.get("State") != "active":
                raise FaultError(
                    f"TGW route table {table} in {region} has no active route for {cidr} "
                    f"(found {route.get('State') if route else 'none'}); nothing to blackhole"
                )
            prior[f"{region}|{table}|{cidr}"] = route["TransitGatewayAttachments"][0][
                "TransitGatewayAttachmentId"
            ]
        return {"attachments": prior}

    def inject(self, sessions: SessionFactory, prior: Mapping[str, Any]) -> None:
        for region, table, cidr in self._routes():
            with aws_call(f"ReplaceTransitGatewayRoute {table} {cidr} -> blackhole", region):
                sessions.client("ec2", region).replace_transit_gateway_route(
                    TransitGatewayRouteTableId=table, DestinationCidrBlock=cidr, Blackhole=True
                )

    @classmethod
    def restore(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> None:
        for key, attachment in prior["attachments"].items():
            region, table, cidr = key.split("|")
            with aws_call(f"ReplaceTransitGatewayRoute {table} {cidr} -> {attachment}", region):
                sessions.client("ec2", region).replace_transit_gateway_route(
                    TransitGatewayRouteTableId=table,
                    DestinationCidrBlock=cidr,
                    TransitGatewayAttachmentId=attachment,
                )

    @classmethod
    def verify(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> list[str]:
        problems = []
        for key, attachment in prior["attachments"].items():
            region, table, cidr = key.split("|")
            route = _tgw_route(sessions, region, table, cidr)
            current = (route or {}).get("TransitGatewayAttachments") or [{}]
            if (
                route is None
                or route.get("State") != "active"
                or current[0].get("TransitGatewayAttachmentId") != attachment
            ):
                problems.append(
                    f"TGW route {cidr} in {table} ({region}) is {route}, expected active via {attachment}"
                )
        return problems


def _tgw_route(
    sessions: SessionFactory, region: str, table: str, cidr: str
) -> dict[str, Any] | None:
    with aws_call(f"SearchTransitGatewayRoutes {table} {cidr}", region):
        routes = sessions.client("ec2", region).search_transit_gateway_routes(
            TransitGatewayRouteTableId=table,
            Filters=[{"Name": "route-search.exact-match", "Values": [cidr]}],
        )["Routes"]
    return routes[0] if routes else None


@dataclass(frozen=True)
class StopBastion(Fault):
    """Stop a bastion instance (its SSM agent goes ConnectionLost)."""

    KIND: ClassVar[str] = "stop_bastion"
    region: str
    instance_id: str

    @property
    def target(self) -> dict[str, Any]:
        return {"region": self.region, "instance_id": self.instance_id}

    def capture(self, sessions: SessionFactory) -> dict[str, Any]:
        state = _instance_state(sessions, self.region, self.instance_id)
        if state != "running":
            raise FaultError(
                f"instance {self.instance_id} in {self.region} is {state}, not running"
            )
        return {"state": state}

    def inject(self, sessions: SessionFactory, prior: Mapping[str, Any]) -> None:
        with aws_call(f"StopInstances {self.instance_id}", self.region):
            sessions.client("ec2", self.region).stop_instances(InstanceIds=[self.instance_id])

    @classmethod
    def restore(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> None:
        if (
            prior["state"] == "running"
            and _instance_state(sessions, target["region"], target["instance_id"]) != "running"
        ):
            with aws_call(f"StartInstances {target['instance_id']}", target["region"]):
                sessions.client("ec2", target["region"]).start_instances(
                    InstanceIds=[target["instance_id"]]
                )

    @classmethod
    def verify(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> list[str]:
        state = _instance_state(sessions, target["region"], target["instance_id"])
        if state != prior["state"] and not (prior["state"] == "running" and state == "pending"):
            return [f"instance {target['instance_id']} is {state}, expected {prior['state']}"]
        return []


def _instance_state(sessions: SessionFactory, region: str, instance_id: str) -> str:
    with aws_call(f"DescribeInstances {instance_id}", region):
        reservations = sessions.client("ec2", region).describe_instances(InstanceIds=[instance_id])[
            "Reservations"
        ]
    return str(reservations[0]["Instances"][0]["State"]["Name"])


# ---------------------------------------------------------------------- Lambda


@dataclass(frozen=True)
class ThrottleApi(Fault):
    """Set the API's Lambda reserved concurrency to 0: every request is throttled.

    Nothing in the health pipeline watches the Lambda, so Route 53 keeps sending traffic to a
    region that only returns errors: the health-check blind spot.
    """

    KIND: ClassVar[str] = "throttle_api"
    region: str
    function_name: str

    @property
    def target(self) -> dict[str, Any]:
        return {"region": self.region, "function_name": self.function_name}

    def capture(self, sessions: SessionFactory) -> dict[str, Any]:
        with aws_call(f"GetFunctionConcurrency {self.function_name}", self.region):
            current = sessions.client("lambda", self.region).get_function_concurrency(
                FunctionName=self.function_name
            )
        reserved = current.get("ReservedConcurrentExecutions")
        if reserved == 0:
            raise FaultError(
                f"function {self.function_name} in {self.region} is already throttled; restore it first"
            )
        return {"reserved_concurrency": reserved}

    def inject(self, sessions: SessionFactory, prior: Mapping[str, Any]) -> None:
        with aws_call(f"PutFunctionConcurrency {self.function_name}=0", self.region):
            sessions.client("lambda", self.region).put_function_concurrency(
                FunctionName=self.function_name, ReservedConcurrentExecutions=0
            )

    @classmethod
    def restore(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> None:
        client = sessions.client("lambda", target["region"])
        reserved = prior["reserved_concurrency"]
        with aws_call(f"restore concurrency of {target['function_name']}", target["region"]):
            if reserved is None:
                client.delete_function_concurrency(FunctionName=target["function_name"])
            else:
                client.put_function_concurrency(
                    FunctionName=target["function_name"], ReservedConcurrentExecutions=int(reserved)
                )

    @classmethod
    def verify(
        cls, sessions: SessionFactory, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> list[str]:
        with aws_call(f"GetFunctionConcurrency {target['function_name']}", target["region"]):
            current = (
                sessions.client("lambda", target["region"])
                .get_function_concurrency(FunctionName=target["function_name"])
                .get("ReservedConcurrentExecutions")
            )
        if current != prior["reserved_concurrency"]:
            return [
                f"function {target['function_name']} reserved concurrency {current}, expected {prior['reserved_concurrency']}"
            ]
        return []


CATALOGUE: dict[str, type[Fault]] = {
    cls.KIND: cls
    for cls in (
        InvertHealthCheck,
        FailTargets,
        RevokeEndpointIngress,
        BlackholePeering,
        StopBastion,
        ThrottleApi,
    )
}


# ---------------------------------------------------------------------- constructors


def invert_health_check(deployment: Deployment, region: str) -> InvertHealthCheck:
    return InvertHealthCheck(region, deployment.region(region).health_check_id)


def fail_targets(deployment: Deployment, region: str) -> FailTargets:
    return FailTargets(region, deployment.region(region).target_group_arn)


def revoke_endpoint_ingress(deployment: Deployment, region: str) -> RevokeEndpointIngress:
    return RevokeEndpointIngress(region, deployment.region(region).endpoint_security_group_id)


def blackhole_peering(deployment: Deployment, region_a: str, region_b: str) -> BlackholePeering:
    if region_a == region_b:
        raise FaultError(f"blackhole_peering needs two different regions, got {region_a!r} twice")
    a, b = deployment.region(region_a), deployment.region(region_b)
    return BlackholePeering(
        region_a,
        region_b,
        a.transit_gateway_route_table_id,
        b.transit_gateway_route_table_id,
        a.vpc_cidr,
        b.vpc_cidr,
    )


def throttle_api(deployment: Deployment, region: str) -> ThrottleApi:
    return ThrottleApi(region, deployment.region(region).function_name)


def stop_bastion(deployment: Deployment, instance_id: str) -> StopBastion:
    for region in deployment.regions:
        if instance_id in region.bastion_ids:
            return StopBastion(region.name, instance_id)
    raise FaultError(f"instance {instance_id} is not a bastion of this deployment")


def restore_from_ledger(
    sessions: SessionFactory, kind: str, target: Mapping[str, Any], prior: Mapping[str, Any]
) -> list[str]:
    """Restore one ledger entry and return what still differs afterwards (empty = clean)."""
    fault = CATALOGUE.get(kind)
    if fault is None:
        raise FaultError(f"unknown fault kind {kind!r} in the ledger")
    fault.restore(sessions, target, prior)
    deadline = time.monotonic() + 30
    while True:
        try:
            problems = fault.verify(sessions, target, prior)
        except CloudError as exc:
            problems = [str(exc)]
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)
