"""Tests for the lab's NLB listeners: real TLS from bastion addresses to the deployed API.

Every test connects from a bastion's loopback address (its VPC address, as the lab sees it) to
an NLB node address on the lab port for 443, verifies the certificate against the lab CA, and
speaks HTTP/1.1, exactly as curl on a bastion would. The stack set is deployed once.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import ssl
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509

from harness.aws.session import SessionFactory
from harness.aws.stacks import Deployment, StackSetDeployer
from harness.config import load_config
from harness.errors import LabError
from harness.lab import netio
from harness.lab.lab import Lab
from harness.lab.nlb import TARGET_CONNECT_TIMEOUT
from harness.lab.pki import LabCA
from harness.targets import lab_sessions

REGIONS = ("us-east-1", "us-west-2")
SPEED = 20.0
# The echo handler of deploy/api.yaml (checked against the template below).
ECHO = """\
import json
import os


def handler(event, context):
    body = {"region": os.environ["AWS_REGION"], "event": event}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }
"""


@dataclass(frozen=True)
class Site:
    """One region as a client sees it: a bastion, the NLB nodes and the endpoint ENIs by AZ."""

    region: str
    bastion: str
    nodes: dict[str, str]  # availability zone -> node address
    endpoints: dict[str, str]  # availability zone -> execute-api ENI address


@dataclass
class Stack:
    lab: Lab
    sessions: SessionFactory
    deployment: Deployment
    sites: dict[str, Site]

    @property
    def domain(self) -> str:
        return self.deployment.domain


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    lab = Lab(REGIONS, speed=SPEED).start()
    try:
        sessions = lab_sessions(lab.info)
        config = load_config({"regions": ",".join(REGIONS)}, environ={})
        deployment = StackSetDeployer(config, sessions).deploy()
        topology = lab.topology()
        sites = {}
        for region in REGIONS:
            deployed = deployment.region(region)
            lb = topology.load_balancers[deployed.load_balancer_arn]
            endpoint = topology.endpoints[deployed.endpoint_id]

            def by_zone(addresses: dict[str, str]) -> dict[str, str]:
                return {topology.subnets[s].availability_zone: a for s, a in addresses.items()}

            bastion = min(
                (b for b in topology.bastions() if b.region == region), key=lambda b: b.address
            )
            sites[region] = Site(
                region, bastion.address, by_zone(dict(lb.nodes)), by_zone(dict(endpoint.addresses))
            )
        built = Stack(lab, sessions, deployment, sites)
        for site in sites.values():
            for node in site.nodes.values():
                _wait_listening(built, node)
        yield built
    finally:
        lab.stop()


def _wait_listening(stack: Stack, node: str, port: int = 443) -> None:
    deadline = time.monotonic() + 5
    endpoint = netio.loopback_endpoint(node, port, stack.lab.ports)
    while True:
        try:
            socket.create_connection(endpoint, timeout=1).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _zones(site: Site) -> tuple[str, str]:
    first, second = sorted(site.nodes)
    return first, second


class Client:
    """One TLS connection from a VPC address to an NLB node, speaking HTTP/1.1."""

    def __init__(
        self,
        stack: Stack,
        source: str,
        node: str,
        *,
        server_hostname: str | None = None,
        context: ssl.SSLContext | None = None,
        timeout: float = 2.0,
        port: int = 443,
    ) -> None:
        self.stack = stack
        raw = netio.connect_from(source, node, port, stack.lab.ports, timeout=timeout)
        try:
            self.tls = (context or stack.lab.ca.client_context()).wrap_socket(
                raw, server_hostname=server_hostname or stack.domain
            )
        except BaseException:
            raw.close()
            raise
        self.connection = http.client.HTTPConnection(stack.domain, timeout=timeout)
        self.connection.sock = self.tls

    def get(
        self, path: str, *, method: str = "GET", body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.connection.request(method, path, body=body, headers={"User-Agent": "curl/8.5.0"})
        response = self.connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()

    def close(self) -> None:
        self.connection.close()
        self.tls.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fetch(stack: Stack, source: str, node: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    with Client(stack, source, node, **kwargs) as client:
        status, headers, body = client.get(path)
    if headers.get("Content-Type") == "application/json":
        return status, json.loads(body)
    return status, body


def _expect_reset(stack: Stack, source: str, node: str, *, within: float = 3.0) -> float:
    """Connect and send a request; return how long until the node reset the connection."""
    started = time.monotonic()
    # The handshake completes; the request is then answered by a reset.
    with (
        Client(stack, source, node, timeout=within) as client,
        pytest.raises((ConnectionResetError, ssl.SSLError)),
    ):
        client.get("/demo")
    return time.monotonic() - started


def _expect_timeout(stack: Stack, source: str, node: str, *, timeout: float = 1.0) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        Client(stack, source, node, timeout=timeout)
    assert time.monotonic() - started >= timeout * 0.9


# ----------------------------------------------------------------------------- the happy path


def test_template_code_is_the_echo_handler_these_tests_restore() -> None:
    template = (Path(__file__).parents[2] / "deploy" / "api.yaml").read_text()
    indented = "".join(f"          {line}\n" if line else "\n" for line in ECHO.splitlines())
    assert indented in template


def test_tls_get_demo_returns_the_event_of_the_nodes_region(stack: Stack) -> None:
    for region, site in stack.sites.items():
        for node in site.nodes.values():
            status, payload = fetch(stack, site.bastion, node, "/demo")
            assert status == 200, payload
            assert payload["region"] == region
            event = payload["event"]
            context = event["requestContext"]
            assert context["domainName"] == stack.domain
            assert context["stage"] == "dev"
            assert event["headers"]["Host"] == stack.domain
            # The endpoint sees the NLB node: a TLS target group of IP targets does not
            # preserve client addresses by default.
            assert context["identity"]["sourceIp"] == node
            assert event["headers"]["X-Forwarded-For"] == node
            assert context["identity"]["vpceId"] == stack.deployment.region(region).endpoint_id


def test_keep_alive_serves_proxy_paths_and_gateway_errors(stack: Stack) -> None:
    site = stack.sites["us-east-1"]
    with Client(stack, site.bastion, site.nodes[_zones(site)[0]]) as client:
        status, _, body = client.get("/demo/anything/deeper?x=1")
        event = json.loads(body)["event"]
        assert status == 200
        assert (event["resource"], event["pathParameters"]) == (
            "/{proxy+}",
            {"proxy": "anything/deeper"},
        )
        status, headers, body = client.get("/other")
        assert (status, body) == (403, b'{"message":"Forbidden"}')
        assert headers["x-amzn-ErrorType"] == "ForbiddenException"
        status, _, body = client.get("/demo", method="POST", body=b"payload")
        assert (status, json.loads(body)["event"]["body"]) == (200, "payload")
        status, headers, body = client.get("/demo", method="HEAD")
        assert (status, body) == (200, b"")
        assert int(headers["Content-Length"]) > 0


def test_listener_presents_the_acm_certificate_of_the_domain(stack: Stack) -> None:
    deployed = stack.deployment.region("us-east-1")
    acm = stack.sessions.client("acm", "us-east-1")
    expected = x509.load_pem_x509_certificate(
        acm.get_certificate(CertificateArn=deployed.certificate_arn)["Certificate"].encode()
    )
    site = stack.sites["us-east-1"]
    with Client(stack, site.bastion, site.nodes[_zones(site)[0]]) as client:
        der = client.tls.getpeercert(binary_form=True)
        assert client.tls.selected_alpn_protocol() in (None, "http/1.1")
    assert der is not None
    assert x509.load_der_x509_certificate(der) == expected


def test_wrong_host_name_fails_verification(stack: Stack) -> None:
    site = stack.sites["us-east-1"]
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        Client(
            stack, site.bastion, site.nodes[_zones(site)[0]], server_hostname="wrong.example.com"
        )


def test_client_not_trusting_the_lab_ca_fails(stack: Stack, tmp_path: Path) -> None:
    other = LabCA.create(tmp_path / "other-ca").client_context()
    site = stack.sites["us-east-1"]
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        Client(stack, site.bastion, site.nodes[_zones(site)[0]], context=other)


def test_malformed_and_chunked_requests_are_refused(stack: Stack) -> None:
    site = stack.sites["us-east-1"]
    with Client(stack, site.bastion, site.nodes[_zones(site)[0]]) as client:
        client.tls.sendall(b"GARBAGE\r\n\r\n")
        response = http.client.HTTPResponse(client.tls)
        response.begin()
        assert (response.status, json.loads(response.read())) == (400, {"message": "Bad Request"})
    with Client(stack, site.bastion, site.nodes[_zones(site)[0]]) as client:
        client.connection.putrequest("POST", "/demo")
        client.connection.putheader("Transfer-Encoding", "chunked")
        client.connection.endheaders(b"5\r\nhello\r\n0\r\n\r\n")
        response = client.connection.getresponse()
        assert response.status == 501
        assert b"chunked" in response.read()


# ----------------------------------------------------------------------------- cross-region


def test_cross_region_works_over_the_tgw_and_times_out_when_blackholed(stack: Stack) -> None:
    east, west = stack.sites["us-east-1"], stack.sites["us-west-2"]
    west_node = west.nodes[_zones(west)[0]]
    status, payload = fetch(stack, east.bastion, west_node, "/demo")
    assert (status, payload["region"]) == (200, "us-west-2")
    assert payload["event"]["requestContext"]["identity"]["sourceIp"] == west_node
    deployed = stack.deployment.region("us-east-1")
    ec2 = stack.sessions.client("ec2", "us-east-1")
    route = {
        "DestinationCidrBlock": stack.deployment.region("us-west-2").vpc_cidr,
        "TransitGatewayRouteTableId": deployed.transit_gateway_route_table_id,
    }
    ec2.replace_transit_gateway_route(**route, Blackhole=True)
    try:
        _expect_timeout(stack, east.bastion, west_node)
        # The region's own NLB is unaffected.
        assert fetch(stack, east.bastion, east.nodes[_zones(east)[0]], "/demo")[0] == 200
    finally:
        ec2.replace_transit_gateway_route(
            **route, TransitGatewayAttachmentId=deployed.peering_attachments["us-west-2"]
        )
    assert fetch(stack, east.bastion, west_node, "/demo")[1]["region"] == "us-west-2"


def test_an_address_no_interface_owns_is_dropped(stack: Stack) -> None:
    site = stack.sites["us-east-1"]
    _expect_timeout(stack, "10.1.1.200", site.nodes[_zones(site)[0]], timeout=0.5)


# ----------------------------------------------------------------------------- targets


def test_revoked_endpoint_ingress_resets_new_connections_only(stack: Stack) -> None:
    site = stack.sites["us-east-1"]
    node = site.nodes[_zones(site)[0]]
    deployed = stack.deployment.region("us-east-1")
    ec2 = stack.sessions.client("ec2", "us-east-1")
    permission = [
        {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "IpRanges": [{"CidrIp": deployed.vpc_cidr}],
        }
    ]
    established = Client(stack, site.bastion, node)
    try:
        assert established.get("/demo")[0] == 200
        ec2.revoke_security_group_ingress(
            GroupId=deployed.endpoint_security_group_id, IpPermissions=permission
        )
        try:
            # Security groups track connections: the established flow keeps working...
            assert established.get("/demo")[0] == 200
            # ...while a new one completes TLS with the node, which then resets it once its
            # attempt to reach the target times out.
            elapsed = _expect_reset(stack, site.bastion, node)
            assert elapsed >= TARGET_CONNECT_TIMEOUT / SPEED * 0.8
        finally:
            ec2.authorize_security_group_ingress(
                GroupId=deployed.endpoint_security_group_id, IpPermissions=permission
            )
    finally:
        established.close()
    assert fetch(stack, site.bastion, node, "/demo")[0] == 200


class FakeHealth:
    """Stands in for lab.health: chosen healthy targets and API Gateway regions that are down."""

    def __init__(self, healthy: set[str] | None = None, down: tuple[str, ...] = ()) -> None:
        self.healthy = healthy
        self.down = set(down)

    def target_group_healthy_targets(self, arn: str) -> set[str]:
        return set(self.healthy or ())

    def api_up(self, region: str) -> bool:
        return region not in self.down


class DenyTargets:
    """Wraps lab.network: the real verdicts, except that some addresses cannot be reached."""

    def __init__(self, network: Any, denied: set[str]) -> None:
        self.network = network
        self.denied = denied

    def check(self, src: str | None, dst: str, port: int, protocol: str = "tcp") -> Any:
        if dst in self.denied:
            return SimpleNamespace(allowed=False, reason=f"test: {dst} unreachable")
        return self.network.check(src, dst, port, protocol)


def test_target_choice_follows_zones_health_and_cross_zone(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = stack.sites["us-east-1"]
    zone_a, zone_b = _zones(site)
    node_a, node_b = site.nodes[zone_a], site.nodes[zone_b]
    monkeypatch.setattr(
        stack.lab, "network", DenyTargets(stack.lab.network, {site.endpoints[zone_a]})
    )
    monkeypatch.setattr(stack.lab, "health", FakeHealth(healthy={site.endpoints[zone_b]}))
    # Cross-zone off: node A only uses zone A's (unhealthy, so fail-open) target.
    _expect_reset(stack, site.bastion, node_a)
    assert fetch(stack, site.bastion, node_b, "/demo")[0] == 200
    elbv2 = stack.sessions.client("elbv2", "us-east-1")
    group = stack.deployment.region("us-east-1").target_group_arn

    def cross_zone(value: str) -> None:
        elbv2.modify_target_group_attributes(
            TargetGroupArn=group,
            Attributes=[{"Key": "load_balancing.cross_zone.enabled", "Value": value}],
        )

    cross_zone("true")
    try:
        # Cross-zone on: node A picks among the healthy targets, i.e. zone B's.
        for _ in range(3):
            assert fetch(stack, site.bastion, node_a, "/demo")[0] == 200
    finally:
        cross_zone("use_load_balancer_configuration")


def test_api_gateway_down_resets_connections(stack: Stack) -> None:
    site = stack.sites["us-east-1"]
    node = site.nodes[_zones(site)[0]]
    health = stack.lab.health  # the lab's health pipeline switches a region's API off
    kept = Client(stack, site.bastion, node)
    try:
        assert kept.get("/demo")[0] == 200
        health.set_api_up("us-east-1", False)
        try:
            with pytest.raises(
                (ConnectionResetError, ssl.SSLError, http.client.RemoteDisconnected)
            ):
                kept.get("/demo")
            elapsed = _expect_reset(stack, site.bastion, node)
            assert elapsed >= TARGET_CONNECT_TIMEOUT / SPEED * 0.8
            with pytest.raises(LabError, match="us-east-1 is down"):
                stack.lab.load_balancers.invoke_api(
                    "us-east-1", stack.domain, "GET", "/demo", {}, b"", site.bastion
                )
            west = stack.sites["us-west-2"]
            assert fetch(stack, site.bastion, west.nodes[_zones(west)[0]], "/demo")[0] == 200
        finally:
            health.set_api_up("us-east-1", True)
    finally:
        kept.close()
    assert fetch(stack, site.bastion, node, "/demo")[0] == 200


def test_preserved_client_addresses_reach_api_gateway(stack: Stack) -> None:
    site = stack.sites["us-east-1"]
    elbv2 = stack.sessions.client("elbv2", "us-east-1")
    group = stack.deployment.region("us-east-1").target_group_arn

    def preserve(value: str) -> None:
        elbv2.modify_target_group_attributes(
            TargetGroupArn=group, Attributes=[{"Key": "preserve_client_ip.enabled", "Value": value}]
        )

    preserve("true")
    try:
        _, payload = fetch(stack, site.bastion, site.nodes[_zones(site)[0]], "/demo")
        assert payload["event"]["requestContext"]["identity"]["sourceIp"] == site.bastion
    finally:
        preserve("false")


# ----------------------------------------------------------------------------- the function


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", source)
    return buffer.getvalue()


def test_function_errors_and_throttling_through_the_listener(stack: Stack) -> None:
    site = stack.sites["us-east-1"]
    node = site.nodes[_zones(site)[0]]
    lam = stack.sessions.client("lambda", "us-east-1")
    name = stack.deployment.region("us-east-1").function_name
    lam.update_function_code(
        FunctionName=name, ZipFile=_zip("def handler(event, context):\n    raise ValueError('x')\n")
    )
    try:
        assert fetch(stack, site.bastion, node, "/demo") == (
            502,
            {"message": "Internal server error"},
        )
    finally:
        lam.update_function_code(FunctionName=name, ZipFile=_zip(ECHO))
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        assert fetch(stack, site.bastion, node, "/demo") == (
            500,
            {"message": "Internal server error"},
        )
    finally:
        lam.delete_function_concurrency(FunctionName=name)
    assert fetch(stack, site.bastion, node, "/demo")[1]["region"] == "us-east-1"


# ----------------------------------------------------------------------------- reconciliation


def test_listeners_follow_the_control_plane(stack: Stack) -> None:
    site = stack.sites["us-west-2"]
    node = site.nodes[_zones(site)[0]]
    deployed = stack.deployment.region("us-west-2")
    elbv2 = stack.sessions.client("elbv2", "us-west-2")
    listener = elbv2.describe_listeners(LoadBalancerArn=deployed.load_balancer_arn)["Listeners"][0]
    elbv2.delete_listener(ListenerArn=listener["ListenerArn"])
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(
                    netio.loopback_endpoint(node, 443, stack.lab.ports), timeout=1
                ).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "listener still open after DeleteListener"
            time.sleep(0.02)
    finally:
        elbv2.create_listener(
            LoadBalancerArn=deployed.load_balancer_arn,
            Protocol="TLS",
            Port=443,
            SslPolicy=listener["SslPolicy"],
            Certificates=[{"CertificateArn": deployed.certificate_arn}],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": deployed.target_group_arn}],
        )
    _wait_listening(stack, node)
    assert fetch(stack, site.bastion, node, "/demo")[1]["region"] == "us-west-2"


def test_tcp_listener_passes_tls_through_to_the_endpoint(stack: Stack) -> None:
    site = stack.sites["us-east-1"]
    deployed = stack.deployment.region("us-east-1")
    elbv2 = stack.sessions.client("elbv2", "us-east-1")
    group = elbv2.create_target_group(
        Name="regiondrill-tcp-test",
        Protocol="TCP",
        Port=443,
        VpcId=deployed.vpc_id,
        TargetType="ip",
        HealthCheckProtocol="TCP",
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(
        TargetGroupArn=group, Targets=[{"Id": ip, "Port": 443} for ip in deployed.endpoint_ips]
    )
    listener = elbv2.create_listener(
        LoadBalancerArn=deployed.load_balancer_arn,
        Protocol="TCP",
        Port=8443,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
    )["Listeners"][0]["ListenerArn"]
    node = site.nodes[_zones(site)[0]]
    try:
        _wait_listening(stack, node, 8443)
        # SNI names the custom domain: the endpoint presents the domain's regional certificate.
        raw = netio.connect_from(site.bastion, node, 8443, stack.lab.ports, timeout=2)
        with stack.lab.ca.client_context().wrap_socket(raw, server_hostname=stack.domain) as tls:
            connection = http.client.HTTPConnection(stack.domain)
            connection.sock = tls
            connection.request("GET", "/demo/tcp")
            response = connection.getresponse()
            event = json.loads(response.read())["event"]
            assert response.status == 200
            assert event["headers"]["x-amzn-tls-version"] == tls.version()
            assert event["requestContext"]["identity"]["sourceIp"] == node
        # Otherwise the endpoint's own *.execute-api certificate, routed by the API's host name.
        host = f"{deployed.api_id}.execute-api.us-east-1.amazonaws.com"
        raw = netio.connect_from(site.bastion, node, 8443, stack.lab.ports, timeout=2)
        with stack.lab.ca.client_context().wrap_socket(raw, server_hostname=host) as tls:
            connection = http.client.HTTPConnection(host)
            connection.sock = tls
            connection.request("GET", "/dev/x")
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())["region"]) == (200, "us-east-1")
        # A TLS listener in front of the same TCP group would send plaintext to the endpoint's
        # TLS port: the endpoint refuses, so the node resets right after the handshake.
        tls_listener = elbv2.create_listener(
            LoadBalancerArn=deployed.load_balancer_arn,
            Protocol="TLS",
            Port=9443,
            Certificates=[{"CertificateArn": deployed.certificate_arn}],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
        )["Listeners"][0]["ListenerArn"]
        try:
            _wait_listening(stack, node, 9443)
            started = time.monotonic()
            with (
                Client(stack, site.bastion, node, port=9443) as client,
                pytest.raises((ConnectionResetError, ssl.SSLError)),
            ):
                client.get("/demo")
            assert time.monotonic() - started < TARGET_CONNECT_TIMEOUT / SPEED / 2
        finally:
            elbv2.delete_listener(ListenerArn=tls_listener)
    finally:
        elbv2.delete_listener(ListenerArn=listener)
        elbv2.delete_target_group(TargetGroupArn=group)


def test_a_certificate_in_use_cannot_be_deleted(stack: Stack) -> None:
    """As on AWS, ACM refuses to delete the certificate the TLS listener and the custom domain
    use (ResourceInUseException, naming both); an unused certificate deletes."""
    from botocore.exceptions import ClientError

    deployed = stack.deployment.region("us-east-1")
    acm = stack.sessions.client("acm", "us-east-1")
    with pytest.raises(ClientError) as caught:
        acm.delete_certificate(CertificateArn=deployed.certificate_arn)
    error = caught.value.response["Error"]
    assert error["Code"] == "ResourceInUseException"
    assert ":listener/net/" in error["Message"]
    assert f"/domainnames/{stack.domain}" in error["Message"]
    acm.describe_certificate(CertificateArn=deployed.certificate_arn)  # still there
    spare = acm.request_certificate(DomainName="spare.internal.example.com")["CertificateArn"]
    acm.delete_certificate(CertificateArn=spare)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        acm.describe_certificate(CertificateArn=spare)
