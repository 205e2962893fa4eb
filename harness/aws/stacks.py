"""Deploy, attach to and tear down the regiondrill stack set through CloudFormation.

Phases run in dependency order — network (per region) → peering → accept peering attachments →
routes → api (per region) → dns — with independent regions in parallel. Every stack is tagged
with the run id and stack set so orphans can be found later. Stack events stream as progress
lines while waiting. The same code drives AWS and the lab.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harness.aws import templates
from harness.aws.session import SessionFactory, aws_call
from harness.config import HarnessConfig
from harness.errors import CloudError, ProvisioningError

Progress = Callable[[str], None]

TAG_RUN_ID = "regiondrill:run-id"
TAG_STACK_SET = "regiondrill:stack-set"
TAG_KIND = "regiondrill:kind"
CAPABILITIES = ["CAPABILITY_IAM"]
_DONE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
_ATTACHABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"}


def new_run_id() -> str:
    """Return a short, sortable-enough id for one harness run."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class StackRecord:
    """One stack of the set: where it lives and whether this run created it."""

    kind: str
    region: str | None  # None for the global dns stack
    name: str
    deployed_in: str
    stack_id: str
    created: bool
    template_sha256: str
    outputs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegionDeployment:
    """Everything the harness needs to know about one region's deployed stack."""

    name: str
    index: int
    vpc_id: str
    vpc_cidr: str
    subnet_ids: tuple[str, str]
    route_table_id: str
    endpoint_id: str
    endpoint_ips: tuple[str, str]
    endpoint_security_group_id: str
    transit_gateway_id: str
    transit_gateway_route_table_id: str
    transit_gateway_vpc_attachment_id: str
    bastion_ids: tuple[str, str]
    api_id: str
    stage: str
    function_name: str
    load_balancer_arn: str
    load_balancer_dns_name: str
    load_balancer_zone_id: str
    load_balancer_full_name: str
    target_group_arn: str
    alarm_name: str
    certificate_arn: str
    health_check_id: str
    peering_attachments: Mapping[str, str]  # peer region -> TGW peering attachment id


@dataclass(frozen=True)
class Deployment:
    """A deployed (or attached) stack set."""

    run_id: str
    stack_set: str
    domain: str
    zone: str
    zone_id: str
    regions: tuple[RegionDeployment, ...]
    stacks: tuple[StackRecord, ...]
    key_name: str = ""  # the EC2 key pair the bastions were launched with ("" = SSM only)
    ssh_key_path: str = ""  # its private key, when this machine has it

    def region(self, name: str) -> RegionDeployment:
        for region in self.regions:
            if region.name == name:
                return region
        raise ProvisioningError(f"region {name!r} is not part of the deployment")

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.regions)

    @property
    def created_stacks(self) -> tuple[StackRecord, ...]:
        return tuple(s for s in self.stacks if s.created)

    @property
    def template_hashes(self) -> dict[str, str]:
        return {s.name: s.template_sha256 for s in self.stacks}


class StackSetDeployer:
    """Deploy or attach to the configured stack set, and tear down what this run created."""

    def __init__(
        self,
        config: HarnessConfig,
        sessions: SessionFactory,
        *,
        run_id: str | None = None,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.run_id = run_id or new_run_id()
        self._progress = progress or (lambda line: None)
        lab = sessions.is_lab
        self._poll_initial, self._poll_max = (0.05, 0.5) if lab else (5.0, 15.0)
        self.timeout = timeout if timeout is not None else (180.0 if lab else 3600.0)
        self._lock = threading.Lock()
        self.records: list[StackRecord] = []  # every stack attached or created so far, in order
        # Bastions get an EC2 key pair for SSH in the lab (the harness owns both ends). On AWS
        # they are reached over SSM and launched without one unless the operator asks.
        self.key_name = ""
        self.ssh_key_path = ""

    # ------------------------------------------------------------------ deploy

    def deploy(self) -> Deployment:
        """Deploy every phase (creating or, with --reuse-stacks, attaching) and collect outputs.

        Raises:
            ProvisioningError: a stack failed (names the resource and reason), timed out, or a
                reused stack does not match the configuration. Stacks created before the
                failure stay in ``records`` so ``teardown()`` can remove them.
        """
        names = self.config.region_names
        started = time.monotonic()
        self._say(
            f"deploying stack set {self.config.stack_prefix!r} (run {self.run_id}) to "
            f"{', '.join(names)} on {'the lab' if self.sessions.is_lab else 'AWS'}"
        )
        outputs: dict[tuple[str, str | None], Mapping[str, str]] = {}
        if self.sessions.is_lab:
            from harness.hosts.keys import bastion_key, ensure_key_pair

            directory = self.config.report_dir / "ssh"
            self.key_name, key_file = bastion_key(directory, self.config.stack_prefix)
            self.ssh_key_path = str(
                ensure_key_pair(self.sessions, names, self.key_name, directory, key_file=key_file)
            )
        self._phase("network", names, outputs)
        endpoint_ips = self._parallel(
            names, lambda region: (region, self._endpoint_ips(region, outputs[("network", region)]))
        )
        ips = dict(endpoint_ips)
        peering_regions = [r for r in names if templates.has_stack("peering", names, r)]
        self._phase("peering", peering_regions, outputs)
        self._accept_peerings(outputs)
        self._phase("routes", names, outputs)
        self._phase("api", names, outputs, endpoint_ips=ips)
        self._phase("dns", [None], outputs)
        self._say(f"stack set ready in {time.monotonic() - started:.1f}s")
        return self._deployment(outputs, ips)

    def _phase(
        self,
        kind: str,
        regions: Sequence[str | None],
        outputs: dict[tuple[str, str | None], Mapping[str, str]],
        *,
        endpoint_ips: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        def one(region: str | None) -> tuple[tuple[str, str | None], Mapping[str, str]]:
            return (kind, region), self._ensure(kind, region, outputs, endpoint_ips)

        for key, value in self._parallel(regions, one):
            outputs[key] = value

    def _parallel(self, items: Sequence[Any], work: Callable[[Any], Any]) -> list[Any]:
        if len(items) <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="stacks") as pool:
            futures = [pool.submit(work, item) for item in items]
            results, errors = [], []
            for future in futures:
                try:
                    results.append(future.result())
                except Exception as exc:  # collect: one region's failure must not hide another's
                    errors.append(exc)
            if errors:
                if len(errors) == 1:
                    raise errors[0]
                raise ProvisioningError("; ".join(str(e) for e in errors)) from errors[0]
            return results

    def _ensure(
        self,
        kind: str,
        region: str | None,
        outputs: Mapping[tuple[str, str | None], Mapping[str, str]],
        endpoint_ips: Mapping[str, tuple[str, str]] | None,
    ) -> Mapping[str, str]:
        names = self.config.region_names
        name = templates.stack_name(self.config.stack_prefix, kind, region)
        deployed_in = templates.stack_region(kind, names, region)
        template = templates.render(kind, names, region)
        params = templates.parameters(
            kind,
            self.config,
            region,
            outputs,
            endpoint_ips=endpoint_ips,
            stack_set=self.config.stack_prefix,
        )
        if kind == "network" and self.key_name:
            params["KeyName"] = self.key_name
        cfn = self.sessions.client("cloudformation", deployed_in)
        existing = self._describe(cfn, name, deployed_in)
        if existing is not None and existing["StackStatus"] != "DELETE_COMPLETE":
            if not self.config.reuse_stacks:
                run = _tag(existing, TAG_RUN_ID) or "unknown"
                raise ProvisioningError(
                    f"stack {name} already exists in {deployed_in} ({existing['StackStatus']}, "
                    f"run {run}); attach to it with --reuse-stacks or remove it with "
                    f"`regiondrill stacks delete --run-id {run}`"
                )
            stack_outputs = self._attach(cfn, existing, kind, region, deployed_in, template, params)
            self._record(
                StackRecord(
                    kind,
                    region,
                    name,
                    deployed_in,
                    existing["StackId"],
                    False,
                    template.sha256,
                    stack_outputs,
                )
            )
            self._say(f"[{deployed_in}] attached to {name}")
            return stack_outputs
        return self._create(cfn, kind, region, name, deployed_in, template, params)

    def _create(
        self,
        cfn: Any,
        kind: str,
        region: str | None,
        name: str,
        deployed_in: str,
        template: templates.Template,
        params: Mapping[str, str],
    ) -> Mapping[str, str]:
        tags = [
            {"Key": TAG_RUN_ID, "Value": self.run_id},
            {"Key": TAG_STACK_SET, "Value": self.config.stack_prefix},
            {"Key": TAG_KIND, "Value": kind},
        ]
        with aws_call(f"CreateStack {name}", deployed_in):
            response = cfn.create_stack(
                StackName=name,
                TemplateBody=template.body,
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                Capabilities=CAPABILITIES,
                Tags=tags,
                OnFailure="ROLLBACK",
            )
        stack_id = response["StackId"]
        record = StackRecord(kind, region, name, deployed_in, stack_id, True, template.sha256)
        self._record(record)
        self._say(f"[{deployed_in}] creating {name}")
        stack = self._wait(cfn, stack_id, name, deployed_in, "CREATE")
        stack_outputs = _outputs(stack)
        templates.verify_outputs(kind, self.config.region_names, region, stack_outputs)
        self._record(
            StackRecord(
                kind, region, name, deployed_in, stack_id, True, template.sha256, stack_outputs
            )
        )
        return stack_outputs

    def _attach(
        self,
        cfn: Any,
        stack: Mapping[str, Any],
        kind: str,
        region: str | None,
        deployed_in: str,
        template: templates.Template,
        params: Mapping[str, str],
    ) -> Mapping[str, str]:
        name = stack["StackName"]
        if stack["StackStatus"] not in _ATTACHABLE:
            raise ProvisioningError(
                f"cannot reuse stack {name} in {deployed_in}: it is {stack['StackStatus']}; "
                f"delete it (`regiondrill stacks delete --run-id {_tag(stack, TAG_RUN_ID) or '?'}`)"
            )
        with aws_call(f"GetTemplate {name}", deployed_in):
            body = cfn.get_template(StackName=name, TemplateStage="Original")["TemplateBody"]
        if not isinstance(body, str):
            raise ProvisioningError(
                f"cannot reuse stack {name}: its template is not the YAML regiondrill renders"
            )
        deployed_sha = hashlib.sha256(body.encode()).hexdigest()
        if deployed_sha != template.sha256:
            raise ProvisioningError(
                f"cannot reuse stack {name} in {deployed_in}: it was deployed from a different "
                f"template (sha256 {deployed_sha[:12]}, expected {template.sha256[:12]}); "
                "the regions or the templates changed — delete it or run without --reuse-stacks"
            )
        deployed = {
            p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])
        }
        # Which key pair the bastions were launched with is not configuration: adopt it (SSH
        # needs its private key, which this machine may not have; SSM does not care).
        wrong = sorted(k for k, v in params.items() if k != "KeyName" and deployed.get(k) != v)
        if kind == "network" and deployed.get("KeyName", "") != self.key_name:
            self.key_name = deployed.get("KeyName", "")
            self.ssh_key_path = ""
        if wrong:
            details = ", ".join(f"{k}={deployed.get(k)!r} (want {params[k]!r})" for k in wrong[:4])
            raise ProvisioningError(
                f"cannot reuse stack {name} in {deployed_in}: its parameters differ from the "
                f"configuration: {details}"
            )
        stack_outputs = _outputs(stack)
        templates.verify_outputs(kind, self.config.region_names, region, stack_outputs)
        return stack_outputs

    def _record(self, record: StackRecord) -> None:
        with self._lock:
            self.records = [
                r
                for r in self.records
                if r.name != record.name or r.deployed_in != record.deployed_in
            ]
            self.records.append(record)

    def _describe(self, cfn: Any, name: str, region: str) -> Mapping[str, Any] | None:
        try:
            with aws_call(f"DescribeStacks {name}", region):
                stacks = cfn.describe_stacks(StackName=name)["Stacks"]
        except CloudError as exc:
            if exc.code == "ValidationError" and "does not exist" in str(exc):
                return None
            raise
        return stacks[0] if stacks else None

    def _wait(
        self, cfn: Any, stack_id: str, name: str, region: str, action: str
    ) -> Mapping[str, Any]:
        """Poll a stack until it leaves *_IN_PROGRESS, streaming its events as progress lines."""
        seen: set[str] = set()
        deadline = time.monotonic() + self.timeout
        started = time.monotonic()
        delay = self._poll_initial
        while True:
            with aws_call(f"DescribeStacks {name}", region):
                stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
            events = self._new_events(cfn, stack_id, region, seen)
            for event in events:
                reason = (
                    f" — {event['ResourceStatusReason']}"
                    if event.get("ResourceStatusReason")
                    else ""
                )
                self._say(
                    f"[{region}] {name} {event['LogicalResourceId']} {event['ResourceStatus']}{reason}"
                )
            status = stack["StackStatus"]
            if not status.endswith("_IN_PROGRESS"):
                break
            if time.monotonic() > deadline:
                raise ProvisioningError(
                    f"stack {name} in {region} still {status} after {self.timeout:.0f}s; "
                    "giving up (it is left for teardown)"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, self._poll_max)
        elapsed = time.monotonic() - started
        if action == "CREATE" and status not in _DONE_OK:
            failure = self._first_failure(cfn, stack_id, region)
            raise ProvisioningError(f"stack {name} in {region} failed ({status}): {failure}")
        if action == "DELETE" and status != "DELETE_COMPLETE":
            failure = self._first_failure(cfn, stack_id, region)
            raise ProvisioningError(
                f"deleting stack {name} in {region} failed ({status}): {failure}"
            )
        self._say(f"[{region}] {name} {status} in {elapsed:.1f}s")
        return stack

    def _new_events(
        self, cfn: Any, stack_id: str, region: str, seen: set[str]
    ) -> list[Mapping[str, Any]]:
        fresh: list[Mapping[str, Any]] = []
        with aws_call(f"DescribeStackEvents {stack_id}", region):
            for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id):
                page_events = page["StackEvents"]
                new = [e for e in page_events if e["EventId"] not in seen]
                fresh.extend(new)
                if len(new) < len(page_events):
                    break
        for event in fresh:
            seen.add(event["EventId"])
        return list(reversed(fresh))  # oldest first

    def _first_failure(self, cfn: Any, stack_id: str, region: str) -> str:
        with aws_call(f"DescribeStackEvents {stack_id}", region):
            events = []
            for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id):
                events.extend(page["StackEvents"])
        for event in reversed(events):
            if (
                event["ResourceStatus"].endswith("_FAILED")
                and event["ResourceType"] != "AWS::CloudFormation::Stack"
            ):
                return (
                    f"resource {event['LogicalResourceId']} ({event['ResourceType']}) "
                    f"{event['ResourceStatus']}: {event.get('ResourceStatusReason') or 'no reason given'}"
                )
        return "no resource failure was recorded in the stack events"

    # ------------------------------------------------------------------ between phases

    def _endpoint_ips(self, region: str, network: Mapping[str, str]) -> tuple[str, str]:
        """Return the execute-api endpoint ENI IPs in (subnet A, subnet B) order."""
        ec2 = self.sessions.client("ec2", region)
        endpoint_id = network["ExecuteApiEndpointId"]
        with aws_call(f"DescribeVpcEndpoints {endpoint_id}", region):
            endpoint = ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])["VpcEndpoints"][0]
        eni_ids = endpoint.get("NetworkInterfaceIds", [])
        if not eni_ids:
            raise ProvisioningError(f"endpoint {endpoint_id} in {region} has no network interfaces")
        with aws_call(f"DescribeNetworkInterfaces of {endpoint_id}", region):
            enis = ec2.describe_network_interfaces(NetworkInterfaceIds=eni_ids)["NetworkInterfaces"]
        by_subnet = {eni["SubnetId"]: eni["PrivateIpAddress"] for eni in enis}
        try:
            return by_subnet[network["SubnetAId"]], by_subnet[network["SubnetBId"]]
        except KeyError as exc:
            raise ProvisioningError(
                f"endpoint {endpoint_id} in {region} has no interface in subnet {exc.args[0]}"
            ) from exc

    def _accept_peerings(self, outputs: Mapping[tuple[str, str | None], Mapping[str, str]]) -> None:
        """Accept every peering attachment in its accepter region and wait until available."""
        names = self.config.region_names
        pending: list[tuple[str, str]] = []  # (accepter region, attachment id)
        for requester in names:
            if not templates.has_stack("peering", names, requester):
                continue
            for peer in names[names.index(requester) + 1 :]:
                attachment = outputs[("peering", requester)][
                    f"PeeringAttachment{templates.region_key(peer)}Id"
                ]
                pending.append((peer, attachment))

        def accept(item: tuple[str, str]) -> None:
            region, attachment_id = item
            ec2 = self.sessions.client("ec2", region)
            deadline = time.monotonic() + self.timeout
            delay = self._poll_initial
            accepted = False
            while True:
                with aws_call(f"DescribeTransitGatewayPeeringAttachments {attachment_id}", region):
                    found = ec2.describe_transit_gateway_peering_attachments(
                        TransitGatewayAttachmentIds=[attachment_id]
                    )["TransitGatewayPeeringAttachments"]
                state = found[0]["State"] if found else "missing"
                if state == "available":
                    break
                if state == "pendingAcceptance" and not accepted:
                    with aws_call(f"AcceptTransitGatewayPeeringAttachment {attachment_id}", region):
                        ec2.accept_transit_gateway_peering_attachment(
                            TransitGatewayAttachmentId=attachment_id
                        )
                    accepted = True
                    self._say(f"[{region}] accepted peering attachment {attachment_id}")
                elif state in ("failed", "rejected", "deleted", "missing"):
                    raise ProvisioningError(
                        f"peering attachment {attachment_id} in {region} is {state}; cannot accept it"
                    )
                if time.monotonic() > deadline:
                    raise ProvisioningError(
                        f"peering attachment {attachment_id} in {region} still {state} after {self.timeout:.0f}s"
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, self._poll_max)

        self._parallel(pending, accept)

    # ------------------------------------------------------------------ results

    def _deployment(
        self,
        outputs: Mapping[tuple[str, str | None], Mapping[str, str]],
        endpoint_ips: Mapping[str, tuple[str, str]],
    ) -> Deployment:
        names = self.config.region_names
        dns = outputs[("dns", None)]
        regions = []
        for plan in self.config.regions:
            net = outputs[("network", plan.name)]
            api = outputs[("api", plan.name)]
            key = templates.region_key(plan.name)
            peerings: dict[str, str] = {}
            for peer in names:
                if peer == plan.name:
                    continue
                requester, accepter = sorted((plan.name, peer), key=names.index)
                peerings[peer] = outputs[("peering", requester)][
                    f"PeeringAttachment{templates.region_key(accepter)}Id"
                ]
            regions.append(
                RegionDeployment(
                    name=plan.name,
                    index=plan.index,
                    vpc_id=net["VpcId"],
                    vpc_cidr=net["VpcCidr"],
                    subnet_ids=(net["SubnetAId"], net["SubnetBId"]),
                    route_table_id=net["RouteTableId"],
                    endpoint_id=net["ExecuteApiEndpointId"],
                    endpoint_ips=endpoint_ips[plan.name],
                    endpoint_security_group_id=net["EndpointSecurityGroupId"],
                    transit_gateway_id=net["TransitGatewayId"],
                    transit_gateway_route_table_id=net["TransitGatewayRouteTableId"],
                    transit_gateway_vpc_attachment_id=net["TransitGatewayVpcAttachmentId"],
                    bastion_ids=(net["BastionAId"], net["BastionBId"]),
                    api_id=api["ApiId"],
                    stage=api["StageName"],
                    function_name=api["FunctionName"],
                    load_balancer_arn=api["LoadBalancerArn"],
                    load_balancer_dns_name=api["LoadBalancerDnsName"],
                    load_balancer_zone_id=api["LoadBalancerCanonicalHostedZoneId"],
                    load_balancer_full_name=api["LoadBalancerFullName"],
                    target_group_arn=api["TargetGroupArn"],
                    alarm_name=api["AlarmName"],
                    certificate_arn=api["CertificateArn"],
                    health_check_id=dns[f"HealthCheck{key}Id"],
                    peering_attachments=peerings,
                )
            )
        return Deployment(
            run_id=self.run_id,
            stack_set=self.config.stack_prefix,
            domain=self.config.domain,
            zone=self.config.zone,
            zone_id=dns["HostedZoneId"],
            regions=tuple(regions),
            stacks=tuple(self.records),
            key_name=self.key_name,
            ssh_key_path=self.ssh_key_path,
        )

    # ------------------------------------------------------------------ teardown

    def teardown(self, records: Iterable[StackRecord] | None = None) -> None:
        """Delete the stacks this run created, in reverse dependency order.

        Raises:
            ProvisioningError: listing every stack that could not be deleted (the others are
                still deleted).
        """
        created = [r for r in (self.records if records is None else records) if r.created]
        if not created:
            return
        self._say(f"deleting {len(created)} stack(s) created by run {self.run_id}")
        errors: list[str] = []
        for kind in reversed(templates.STACK_KINDS):
            batch = [r for r in created if r.kind == kind]
            if not batch:
                continue

            def delete(record: StackRecord) -> str | None:
                try:
                    self.delete_stack(record.name, record.deployed_in, stack_id=record.stack_id)
                except (ProvisioningError, CloudError) as exc:
                    return str(exc)
                return None

            for result in self._parallel(batch, delete):
                if result:
                    errors.append(result)
            if errors:
                break  # later (earlier-phase) stacks depend on these; deleting them would fail too
        if errors:
            raise ProvisioningError("teardown incomplete: " + "; ".join(errors))
        self._say("teardown complete")

    def delete_stack(self, name: str, region: str, *, stack_id: str | None = None) -> None:
        """Delete one stack and wait for DELETE_COMPLETE (a missing stack counts as deleted)."""
        cfn = self.sessions.client("cloudformation", region)
        target = stack_id or name
        try:
            with aws_call(f"DescribeStacks {name}", region):
                stack = cfn.describe_stacks(StackName=target)["Stacks"][0]
        except CloudError as exc:
            if exc.code == "ValidationError":
                return
            raise
        if stack["StackStatus"] == "DELETE_COMPLETE":
            return
        with aws_call(f"DeleteStack {name}", region):
            cfn.delete_stack(StackName=stack["StackId"])
        self._say(f"[{region}] deleting {name}")
        self._wait(cfn, stack["StackId"], name, region, "DELETE")

    # ------------------------------------------------------------------ helpers

    def _say(self, line: str) -> None:
        self._progress(line)


def _outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def _tag(stack: Mapping[str, Any], key: str) -> str | None:
    for tag in stack.get("Tags") or []:
        if tag.get("Key") == key:
            return str(tag.get("Value"))
    return None


@dataclass(frozen=True)
class StackSummary:
    """A regiondrill-tagged stack found in an account (for `regiondrill stacks list`)."""

    name: str
    region: str
    status: str
    run_id: str
    stack_set: str
    kind: str
    created: str


def find_stacks(
    sessions: SessionFactory, regions: Sequence[str], *, run_id: str | None = None
) -> list[StackSummary]:
    """List stacks tagged by regiondrill in ``regions`` (optionally of one run)."""
    found: list[StackSummary] = []
    for region in regions:
        cfn = sessions.client("cloudformation", region)
        with aws_call("DescribeStacks", region):
            for page in cfn.get_paginator("describe_stacks").paginate():
                for stack in page["Stacks"]:
                    stack_set = _tag(stack, TAG_STACK_SET)
                    if stack_set is None or stack["StackStatus"] == "DELETE_COMPLETE":
                        continue
                    stack_run = _tag(stack, TAG_RUN_ID) or ""
                    if run_id is not None and stack_run != run_id:
                        continue
                    found.append(
                        StackSummary(
                            name=stack["StackName"],
                            region=region,
                            status=stack["StackStatus"],
                            run_id=stack_run,
                            stack_set=stack_set,
                            kind=_tag(stack, TAG_KIND) or "",
                            created=str(stack.get("CreationTime", "")),
                        )
                    )
    return found


def delete_run(
    config: HarnessConfig,
    sessions: SessionFactory,
    run_id: str,
    *,
    progress: Progress | None = None,
) -> list[StackSummary]:
    """Delete every stack of ``run_id`` in the configured regions, in reverse phase order."""
    stacks = find_stacks(sessions, config.region_names, run_id=run_id)
    deployer = StackSetDeployer(config, sessions, run_id=run_id, progress=progress)
    records = [
        StackRecord(s.kind, None, s.name, s.region, "", True, "")
        for s in stacks
        if s.kind in templates.STACK_KINDS
    ]
    unknown = [s for s in stacks if s.kind not in templates.STACK_KINDS]
    if unknown:
        raise ProvisioningError(
            "stacks with an unknown regiondrill:kind tag: " + ", ".join(s.name for s in unknown)
        )
    deployer.teardown(records)
    return stacks
