"""CloudFormation resource types the stack uses that moto's CloudFormation does not model.

Each class registers itself through moto's own mechanism (a direct ``CloudFormationModel``
subclass, discovered by ``moto.cloudformation.parsing.get_model_map``) and creates the resource
with moto's backend, so the result is visible through the ordinary AWS APIs. ``Ref`` returns what
AWS returns (the primary identifier; ``|``-joined for composite identifiers, as the CloudFormation
registry does) and ``GetAtt`` supports the attributes AWS documents for the type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from moto.acm.models import CertBundle, acm_backends
from moto.apigateway.models import apigateway_backends
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.cloudformation.parsing import get_model_list, get_model_map, get_name_type_map
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.ec2.models import ec2_backends
from moto.elbv2.models import elbv2_backends
from moto.route53.models import route53_backends
from moto.utilities.utils import get_partition

# (certificate PEM, private key PEM, chain PEM) for the given domain names.
CertificateIssuer = Callable[[Sequence[str]], tuple[bytes, bytes, bytes]]
_issuer_lock = threading.Lock()
_issuer: CertificateIssuer | None = None


def set_certificate_issuer(issuer: CertificateIssuer | None) -> None:
    """Install the lab CA that issues ``AWS::CertificateManager::Certificate`` resources."""
    global _issuer
    with _issuer_lock:
        _issuer = issuer


def _bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() == "true"


class _LabModel:
    """Mixin: GetAtt through a per-class table of getters.

    Concrete models also subclass ``CloudFormationModel`` directly, because moto discovers
    models with ``CloudFormationModel.__subclasses__()`` (direct subclasses only).
    """

    ATTRIBUTES: dict[str, Callable[[Any], Any]] = {}

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        """moto's creation hook: every lab model needs only the resource's Properties."""
        return cls.from_properties(
            resource_name, cloudformation_json.get("Properties", {}), account_id, region_name
        )

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> Any:
        """Create the resource from its template Properties; returns the model moto keeps."""
        raise NotImplementedError(f"{cls.__name__} must define from_properties")

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        getter = self.ATTRIBUTES.get(attribute_name)
        if getter is None:
            raise UnformattedGetAttTemplateException()
        return getter(self)


# ---------------------------------------------------------------------------------- EC2 / TGW


class Instance(_LabModel, CloudFormationModel):
    """AWS::EC2::Instance, honouring ``SecurityGroupIds`` (moto only reads ``SecurityGroups``).

    Without this a bastion launched into a VPC would sit in the VPC's default group, and every
    security-group rule written for it would silently not apply. Returns moto's own instance
    object, so Ref and Fn::GetAtt are moto's.
    """

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::Instance"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        from moto.ec2.models.instances import Instance as MotoInstance

        return MotoInstance.has_cfn_attr(attr)

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> Any:
        backend = ec2_backends[account_id][region_name]
        names = []
        for group in props.get("SecurityGroups", []):
            found = backend.get_security_group_from_id(group) if group.startswith("sg-") else None
            names.append(found.name if found is not None else group)
        reservation = backend.run_instances(
            image_id=props["ImageId"],
            user_data=props.get("UserData"),
            count=1,
            security_group_names=names,
            security_group_ids=list(props.get("SecurityGroupIds", [])),
            instance_type=props.get("InstanceType", "m1.small"),
            is_instance_type_default=not props.get("InstanceType"),
            subnet_id=props.get("SubnetId"),
            key_name=props.get("KeyName") or None,
            private_ip=props.get("PrivateIpAddress"),
            block_device_mappings=props.get("BlockDeviceMappings", {}),
        )
        instance = reservation.instances[0]
        for tag in props.get("Tags", []):
            instance.add_tag(tag["Key"], tag["Value"])
        if props.get("IamInstanceProfile"):
            backend.associate_iam_instance_profile(
                instance_id=instance.id, iam_instance_profile_name=props["IamInstanceProfile"]
            )
        return instance


class SubnetRouteTableAssociation(_LabModel, CloudFormationModel):
    """AWS::EC2::SubnetRouteTableAssociation, made through the route table like the EC2 API.

    moto's own model records the association in a side table that DescribeRouteTables never
    shows, so the subnet would silently keep using the main route table. Ref is the
    association id, as on AWS.
    """

    ATTRIBUTES = {"Id": lambda self: self.id}

    def __init__(self, account_id: str, region: str, association_id: str) -> None:
        self.account_id, self.region, self.id = account_id, region, association_id

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::SubnetRouteTableAssociation"

    @property
    def physical_resource_id(self) -> str:
        return self.id

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> SubnetRouteTableAssociation:
        backend = ec2_backends[account_id][region_name]
        association_id = backend.associate_route_table(
            props["RouteTableId"], subnet_id=props["SubnetId"]
        )
        return cls(account_id, region_name, association_id)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        for table in backend.route_tables.values():
            if self.id in table._associations:
                backend.disassociate_route_table(self.id)
                return


class TransitGatewayAttachment(_LabModel, CloudFormationModel):
    """AWS::EC2::TransitGatewayAttachment (a VPC attachment)."""

    ATTRIBUTES = {"Id": lambda self: self.id}

    def __init__(self, account_id: str, region: str, attachment: Any) -> None:
        self.account_id, self.region, self.attachment, self.id = (
            account_id,
            region,
            attachment,
            attachment.id,
        )

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::TransitGatewayAttachment"

    @property
    def physical_resource_id(self) -> str:
        return self.id

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> TransitGatewayAttachment:
        backend = ec2_backends[account_id][region_name]
        attachment = backend.create_transit_gateway_vpc_attachment(
            transit_gateway_id=props["TransitGatewayId"],
            vpc_id=props["VpcId"],
            subnet_ids=list(props["SubnetIds"]),
            tags=_tags(props.get("Tags")),
            options=props.get("Options"),
        )
        return cls(account_id, region_name, attachment)

    def delete(self, account_id: str, region_name: str) -> None:
        ec2_backends[account_id][region_name].delete_transit_gateway_vpc_attachment(self.id)


class TransitGatewayPeeringAttachment(_LabModel, CloudFormationModel):
    """AWS::EC2::TransitGatewayPeeringAttachment (requester side; the accepter accepts it).

    CloudFormation completes the resource in ``pendingAcceptance``: no resource type accepts a
    peering attachment, so acceptance is an API call in the accepter region
    (AcceptTransitGatewayPeeringAttachment), after which moto reports it ``available``.
    """

    ATTRIBUTES = {
        "TransitGatewayAttachmentId": lambda self: self.id,
        "State": lambda self: self.attachment.state,
        "Status": lambda self: dict(self.attachment.status),
        "Status.Code": lambda self: self.attachment.status["Code"],
        "Status.Message": lambda self: self.attachment.status["Message"],
        "CreationTime": lambda self: self.attachment.create_time,
    }

    def __init__(self, account_id: str, region: str, attachment: Any) -> None:
        self.account_id, self.region, self.attachment, self.id = (
            account_id,
            region,
            attachment,
            attachment.id,
        )

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::TransitGatewayPeeringAttachment"

    @property
    def physical_resource_id(self) -> str:
        return self.id

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> TransitGatewayPeeringAttachment:
        peer_region = props["PeerRegion"]
        peer_account = str(props.get("PeerAccountId") or account_id)
        # moto only links the attachment into backends that exist: make sure the peer's does.
        peer_backend = ec2_backends[peer_account][peer_region]
        if props["PeerTransitGatewayId"] not in peer_backend.transit_gateways:
            raise ValueError(
                f"Transit gateway {props['PeerTransitGatewayId']} does not exist in {peer_region}"
            )
        backend = ec2_backends[account_id][region_name]
        attachment = backend.create_transit_gateway_peering_attachment(
            transit_gateway_id=props["TransitGatewayId"],
            peer_transit_gateway_id=props["PeerTransitGatewayId"],
            peer_region=peer_region,
            peer_account_id=peer_account,
            tags=_tags(props.get("Tags")),
        )
        return cls(account_id, region_name, attachment)

    def delete(self, account_id: str, region_name: str) -> None:
        ec2_backends[account_id][region_name].delete_transit_gateway_peering_attachment(self.id)


class TransitGatewayRouteTable(_LabModel, CloudFormationModel):
    """AWS::EC2::TransitGatewayRouteTable."""

    ATTRIBUTES = {"TransitGatewayRouteTableId": lambda self: self.id}

    def __init__(self, account_id: str, region: str, table: Any) -> None:
        self.account_id, self.region, self.table, self.id = account_id, region, table, table.id

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::TransitGatewayRouteTable"

    @property
    def physical_resource_id(self) -> str:
        return self.id

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> TransitGatewayRouteTable:
        table = ec2_backends[account_id][region_name].create_transit_gateway_route_table(
            transit_gateway_id=props["TransitGatewayId"], tags=_tags(props.get("Tags"))
        )
        return cls(account_id, region_name, table)

    def delete(self, account_id: str, region_name: str) -> None:
        ec2_backends[account_id][region_name].delete_transit_gateway_route_table(self.id)


class TransitGatewayRouteTableAssociation(_LabModel, CloudFormationModel):
    """AWS::EC2::TransitGatewayRouteTableAssociation."""

    def __init__(self, account_id: str, region: str, table_id: str, attachment_id: str) -> None:
        self.account_id, self.region = account_id, region
        self.table_id, self.attachment_id = table_id, attachment_id

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::TransitGatewayRouteTableAssociation"

    @property
    def physical_resource_id(self) -> str:
        return f"{self.table_id}|{self.attachment_id}"

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> TransitGatewayRouteTableAssociation:
        backend = ec2_backends[account_id][region_name]
        attachment_id = props["TransitGatewayAttachmentId"]
        attachment = backend.transit_gateway_attachments.get(attachment_id)
        if attachment is None:
            raise ValueError(
                f"Transit gateway attachment {attachment_id} does not exist in {region_name}"
            )
        if attachment.state != "available":
            # AWS: "the attachment must be in an available state; otherwise, the request will
            # return an error" - e.g. a peering attachment nobody accepted yet.
            raise ValueError(
                f"IncorrectState: transit gateway attachment {attachment_id} is in state "
                f"{attachment.state}; it must be available to be associated"
            )
        backend.associate_transit_gateway_route_table(
            transit_gateway_attachment_id=attachment_id,
            transit_gateway_route_table_id=props["TransitGatewayRouteTableId"],
        )
        return cls(account_id, region_name, props["TransitGatewayRouteTableId"], attachment_id)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        if self.attachment_id in backend.transit_gateway_associations:
            backend.disassociate_transit_gateway_route_table(self.attachment_id, self.table_id)


class TransitGatewayRoute(_LabModel, CloudFormationModel):
    """AWS::EC2::TransitGatewayRoute (static route or blackhole)."""

    def __init__(self, account_id: str, region: str, table_id: str, cidr: str) -> None:
        self.account_id, self.region, self.table_id, self.cidr = account_id, region, table_id, cidr

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::TransitGatewayRoute"

    @property
    def physical_resource_id(self) -> str:
        return f"{self.table_id}|{self.cidr}"

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> TransitGatewayRoute:
        backend = ec2_backends[account_id][region_name]
        blackhole = _bool(props.get("Blackhole"))
        attachment_id = props.get("TransitGatewayAttachmentId")
        if not blackhole and not attachment_id:
            raise ValueError("TransitGatewayAttachmentId is required unless Blackhole is true")
        if attachment_id and attachment_id not in backend.transit_gateway_attachments:
            raise ValueError(
                f"Transit gateway attachment {attachment_id} does not exist in {region_name}"
            )
        backend.create_transit_gateway_route(
            transit_gateway_route_table_id=props["TransitGatewayRouteTableId"],
            destination_cidr_block=props["DestinationCidrBlock"],
            transit_gateway_attachment_id=attachment_id,
            blackhole=blackhole,
        )
        return cls(
            account_id,
            region_name,
            props["TransitGatewayRouteTableId"],
            props["DestinationCidrBlock"],
        )

    def delete(self, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        table = backend.transit_gateways_route_tables.get(self.table_id)
        if table is not None and self.cidr in table.routes:
            backend.delete_transit_gateway_route(self.table_id, self.cidr)


# ---------------------------------------------------------------------------------- CloudWatch


class MetricAlarm(_LabModel, CloudFormationModel):
    """AWS::CloudWatch::Alarm (metric alarms; Ref is the alarm name)."""

    ATTRIBUTES = {"Arn": lambda self: self.alarm.alarm_arn}

    def __init__(self, account_id: str, region: str, alarm: Any) -> None:
        self.account_id, self.region, self.alarm, self.name = account_id, region, alarm, alarm.name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> MetricAlarm:
        if props.get("Metrics"):
            raise ValueError(
                "metric-math alarms (Metrics) are not supported by the regiondrill lab"
            )
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=props.get("AlarmName") or resource_name,
            namespace=props["Namespace"],
            metric_name=props["MetricName"],
            comparison_operator=props["ComparisonOperator"],
            evaluation_periods=int(props["EvaluationPeriods"]),
            period=int(props["Period"]),
            threshold=float(props["Threshold"]),
            # Absent with ExtendedStatistic; moto takes None although it annotates str.
            statistic=props.get("Statistic"),  # type: ignore[arg-type]
            description=props.get("AlarmDescription", ""),
            dimensions=[
                {"Name": d["Name"], "Value": d["Value"]} for d in props.get("Dimensions", [])
            ],
            alarm_actions=list(props.get("AlarmActions", [])),
            datapoints_to_alarm=int(props["DatapointsToAlarm"])
            if props.get("DatapointsToAlarm")
            else None,
            extended_statistic=props.get("ExtendedStatistic"),
            ok_actions=list(props.get("OKActions", [])),
            insufficient_data_actions=list(props.get("InsufficientDataActions", [])),
            unit=props.get("Unit"),
            actions_enabled=_bool(props.get("ActionsEnabled"), True),
            treat_missing_data=props.get("TreatMissingData", "missing"),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=props.get("ThresholdMetricId"),
            tags=[{"Key": t["Key"], "Value": t["Value"]} for t in props.get("Tags", [])],
        )
        return cls(account_id, region_name, alarm)

    def delete(self, account_id: str, region_name: str) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([self.name])


# ---------------------------------------------------------------------------------- API Gateway


class ApiStage(_LabModel, CloudFormationModel):
    """AWS::ApiGateway::Stage (Ref is the stage name)."""

    def __init__(self, account_id: str, region: str, api_id: str, name: str) -> None:
        self.account_id, self.region, self.api_id, self.name = account_id, region, api_id, name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGateway::Stage"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> ApiStage:
        name = props.get("StageName") or resource_name
        apigateway_backends[account_id][region_name].create_stage(
            function_id=props["RestApiId"],
            stage_name=name,
            deploymentId=props["DeploymentId"],
            variables=props.get("Variables"),
            description=props.get("Description", ""),
            cacheClusterEnabled=props.get("CacheClusterEnabled"),
            cacheClusterSize=props.get("CacheClusterSize"),
            tags=_tags(props.get("Tags")),
            tracing_enabled=props.get("TracingEnabled"),
        )
        return cls(account_id, region_name, props["RestApiId"], name)

    def delete(self, account_id: str, region_name: str) -> None:
        apigateway_backends[account_id][region_name].delete_stage(self.api_id, self.name)


class ApiDomainName(_LabModel, CloudFormationModel):
    """AWS::ApiGateway::DomainName (regional or edge custom domain)."""

    ATTRIBUTES = {
        "RegionalDomainName": lambda self: self.domain.regional_domain_name,
        "RegionalHostedZoneId": lambda self: self.domain.regional_hosted_zone_id,
        "DistributionDomainName": lambda self: self.domain.distribution_domain_name,
        "DistributionHostedZoneId": lambda self: self.domain.distribution_hosted_zone_id,
        "DomainNameArn": lambda self: (
            f"arn:{get_partition(self.region)}:apigateway:{self.region}::/domainnames/{self.name}"
        ),
    }

    def __init__(self, account_id: str, region: str, domain: Any) -> None:
        self.account_id, self.region, self.domain, self.name = (
            account_id,
            region,
            domain,
            domain.domain_name,
        )

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGateway::DomainName"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "DomainName"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> ApiDomainName:
        domain = apigateway_backends[account_id][region_name].create_domain_name(
            domain_name=props["DomainName"],
            certificate_name="",
            tags=props.get("Tags") or [],
            certificate_arn=props.get("CertificateArn", ""),
            certificate_body="",
            certificate_private_key="",
            certificate_chain="",
            regional_certificate_name="",
            regional_certificate_arn=props.get("RegionalCertificateArn", ""),
            endpoint_configuration=props.get("EndpointConfiguration"),
            security_policy=props.get("SecurityPolicy", ""),
        )
        return cls(account_id, region_name, domain)

    def delete(self, account_id: str, region_name: str) -> None:
        apigateway_backends[account_id][region_name].delete_domain_name(self.name)


class ApiBasePathMapping(_LabModel, CloudFormationModel):
    """AWS::ApiGateway::BasePathMapping."""

    def __init__(self, account_id: str, region: str, domain: str, base_path: str) -> None:
        self.account_id, self.region, self.domain, self.base_path = (
            account_id,
            region,
            domain,
            base_path,
        )

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGateway::BasePathMapping"

    @property
    def physical_resource_id(self) -> str:
        return f"{self.domain}|{self.base_path}"

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> ApiBasePathMapping:
        mapping = apigateway_backends[account_id][region_name].create_base_path_mapping(
            domain_name=props["DomainName"],
            rest_api_id=props["RestApiId"],
            base_path=props.get("BasePath", ""),
            # A mapping may omit its stage (AWS); moto takes None although it annotates str.
            stage=props.get("Stage"),  # type: ignore[arg-type]
        )
        return cls(account_id, region_name, props["DomainName"], mapping.base_path)

    def delete(self, account_id: str, region_name: str) -> None:
        apigateway_backends[account_id][region_name].delete_base_path_mapping(
            self.domain, self.base_path
        )


class PrivateRestApi(_LabModel, CloudFormationModel):
    """AWS::ApiGateway::RestApi, keeping the resource Policy moto's own model drops.

    The private API's resource policy (only the VPC endpoint may invoke it) is what the lab's
    API Gateway enforces, so it must survive deployment.
    """

    ATTRIBUTES = {
        "RootResourceId": lambda self: (
            self.api.get_root_resource().id
            if hasattr(self.api, "get_root_resource")
            else next(r.id for r in self.api.resources.values() if r.path_part == "/")
        ),
        "RestApiId": lambda self: self.api.id,
    }

    def __init__(self, account_id: str, region: str, api: Any) -> None:
        self.account_id, self.region, self.api, self.id = account_id, region, api, api.id

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGateway::RestApi"

    @property
    def physical_resource_id(self) -> str:
        return self.id

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> PrivateRestApi:
        import json

        if props.get("Body") or props.get("BodyS3Location"):
            raise ValueError(
                "RestApi Body/BodyS3Location (OpenAPI import) is not supported by the lab"
            )
        policy = props.get("Policy")
        if isinstance(policy, dict):
            policy = json.dumps(policy)
        api = apigateway_backends[account_id][region_name].create_rest_api(
            name=props.get("Name") or resource_name,
            description=props.get("Description", ""),
            api_key_source=props.get("ApiKeySourceType"),
            endpoint_configuration=props.get("EndpointConfiguration"),
            # moto's hint says a list, but its API path (and the REST response) use a map.
            tags=_tags(props.get("Tags")),  # type: ignore[arg-type]
            policy=policy,
            minimum_compression_size=props.get("MinimumCompressionSize"),
            disable_execute_api_endpoint=_bool(props.get("DisableExecuteApiEndpoint")),
        )
        return cls(account_id, region_name, api)

    def delete(self, account_id: str, region_name: str) -> None:
        apigateway_backends[account_id][region_name].delete_rest_api(self.id)


# ---------------------------------------------------------------------------------- ACM


class LabCertificate(_LabModel, CloudFormationModel):
    """AWS::CertificateManager::Certificate, issued at once by the lab CA (Ref is the ARN)."""

    def __init__(self, account_id: str, region: str, arn: str) -> None:
        self.account_id, self.region, self.arn = account_id, region, arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CertificateManager::Certificate"

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> LabCertificate:
        names = [
            props["DomainName"],
            *[n for n in props.get("SubjectAlternativeNames", []) if n != props["DomainName"]],
        ]
        with _issuer_lock:
            issuer = _issuer
        if issuer is None:
            raise ValueError("the lab CA is not running; certificates cannot be issued")
        certificate, key, chain = issuer(names)
        bundle = CertBundle(
            account_id,
            certificate,
            key,
            chain=chain,
            region=region_name,
            cert_type="AMAZON_ISSUED",
            cert_status="ISSUED",
        )
        if props.get("Tags"):
            bundle.tags.add(props["Tags"])
        acm_backends[account_id][region_name]._certificates[bundle.arn] = bundle
        return cls(account_id, region_name, bundle.arn)

    def delete(self, account_id: str, region_name: str) -> None:
        acm_backends[account_id][region_name].delete_certificate(self.arn)


# ---------------------------------------------------------------------------------- ELBv2


class LoadBalancer(_LabModel, CloudFormationModel):
    """AWS::ElasticLoadBalancingV2::LoadBalancer, honouring ``Type`` (moto always makes an ALB).

    The lab's fidelity pass runs at once, so ``Ref`` already returns the network load
    balancer's final ``loadbalancer/net/...`` ARN to every resource that references it.
    """

    ATTRIBUTES = {
        "LoadBalancerArn": lambda self: self.lb.arn,
        "DNSName": lambda self: self.lb.dns_name,
        "LoadBalancerName": lambda self: self.lb.name,
        "CanonicalHostedZoneID": lambda self: self.lb.canonical_hosted_zone_id,
        "LoadBalancerFullName": lambda self: self.lb.arn.split(":loadbalancer/", 1)[1],
        "SecurityGroups": lambda self: list(self.lb.security_groups or []),
    }

    def __init__(self, account_id: str, region: str, lb: Any) -> None:
        self.account_id, self.region, self.lb = account_id, region, lb

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ElasticLoadBalancingV2::LoadBalancer"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @property
    def physical_resource_id(self) -> str:
        return self.lb.arn

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> LoadBalancer:
        from harness.lab import fidelity

        backend = elbv2_backends[account_id][region_name]
        lb = backend.create_load_balancer(
            name=resource_name,
            security_groups=list(props.get("SecurityGroups") or []),
            subnet_ids=list(props.get("Subnets") or []),
            subnet_mappings=props.get("SubnetMappings"),
            scheme=props.get("Scheme", "internet-facing"),
            loadbalancer_type=props.get("Type", "application"),
            ip_address_type=props.get("IpAddressType", "ipv4"),
            tags=[{"Key": t["Key"], "Value": t["Value"]} for t in props.get("Tags", [])],
        )
        for attribute in props.get("LoadBalancerAttributes", []):
            lb.attrs[attribute["Key"]] = attribute["Value"]
        fidelity.reconcile(account_id, region_name)
        return cls(account_id, region_name, lb)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = elbv2_backends[account_id][region_name]
        if self.lb.arn in backend.load_balancers:
            backend.delete_load_balancer(self.lb.arn)


class TargetGroup(_LabModel, CloudFormationModel):
    """AWS::ElasticLoadBalancingV2::TargetGroup, registering its ``Targets`` (moto drops them)."""

    ATTRIBUTES = {
        "TargetGroupArn": lambda self: self.group.arn,
        "TargetGroupName": lambda self: self.group.name,
        "TargetGroupFullName": lambda self: self.group.arn.split(":", 5)[5],
        "LoadBalancerArns": lambda self: list(self.group.load_balancer_arns),
    }

    def __init__(self, account_id: str, region: str, group: Any) -> None:
        self.account_id, self.region, self.group = account_id, region, group

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ElasticLoadBalancingV2::TargetGroup"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @property
    def physical_resource_id(self) -> str:
        return self.group.arn

    @property
    def arn(self) -> str:
        return self.group.arn

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> TargetGroup:
        backend = elbv2_backends[account_id][region_name]

        def number(key: str) -> int | None:
            return int(props[key]) if props.get(key) is not None else None

        port = number("Port")
        group = backend.create_target_group(
            name=resource_name,
            vpc_id=props.get("VpcId"),
            protocol=props.get("Protocol"),
            protocol_version=props.get("ProtocolVersion"),
            port=port,
            healthcheck_protocol=props.get("HealthCheckProtocol"),
            healthcheck_port=str(props["HealthCheckPort"])
            if props.get("HealthCheckPort")
            else None,
            healthcheck_path=props.get("HealthCheckPath"),
            healthcheck_interval_seconds=number("HealthCheckIntervalSeconds"),
            healthcheck_timeout_seconds=number("HealthCheckTimeoutSeconds"),
            healthcheck_enabled=str(props.get("HealthCheckEnabled", "true")).lower(),
            healthy_threshold_count=number("HealthyThresholdCount"),
            unhealthy_threshold_count=number("UnhealthyThresholdCount"),
            matcher=props.get("Matcher"),
            target_type=props.get("TargetType"),
            ip_address_type=props.get("IpAddressType"),
            tags=[{"Key": t["Key"], "Value": t["Value"]} for t in props.get("Tags", [])],
        )
        targets = [
            {"Id": t["Id"], "Port": int(t.get("Port") or port or 0)}
            for t in props.get("Targets", [])
        ]
        if targets:
            backend.register_targets(group.arn, targets)
        return cls(account_id, region_name, group)


# ---------------------------------------------------------------------------------- Route 53


class HostedZone(_LabModel, CloudFormationModel):
    """AWS::Route53::HostedZone; ``VPCs`` make it a private zone associated with each VPC.

    moto's model ignores ``VPCs`` and creates a public zone, which would make every private
    hosted-zone rule (association, most specific zone, no fall-through) untestable.
    """

    ATTRIBUTES = {
        "Id": lambda self: self.zone.id.replace("/hostedzone/", ""),
        "NameServers": lambda self: (
            list(self.zone.delegation_set.name_servers) if self.zone.delegation_set else []
        ),
    }

    def __init__(self, zone: Any) -> None:
        self.zone = zone

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Route53::HostedZone"

    @property
    def physical_resource_id(self) -> str:
        return str(self.zone.id).replace("/hostedzone/", "")

    @property
    def id(self) -> str:
        return self.physical_resource_id

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> HostedZone:
        backend = route53_backends[account_id][get_partition(region_name)]
        vpcs = props.get("VPCs") or []
        first = vpcs[0] if vpcs else {}
        zone = backend.create_hosted_zone(
            name=props["Name"],
            private_zone=bool(vpcs),
            caller_reference=resource_name,
            vpcid=first.get("VPCId"),
            vpcregion=first.get("VPCRegion"),
            comment=(props.get("HostedZoneConfig") or {}).get("Comment"),
        )
        zone_id = str(zone.id).replace("/hostedzone/", "")
        for vpc in vpcs[1:]:
            backend.associate_vpc_with_hosted_zone(zone_id, vpc["VPCId"], vpc["VPCRegion"])
        tags = props.get("HostedZoneTags") or []
        if tags:
            backend.change_tags_for_resource(
                resource_type="hostedzone",
                resource_id=zone_id,
                add_tags=[{"Key": t["Key"], "Value": t["Value"]} for t in tags],
                remove_tag_keys=[],
            )
        return cls(zone)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = route53_backends[account_id][get_partition(region_name)]
        if self.id in backend.zones:
            backend.delete_hosted_zone(self.id)


class HealthCheck(_LabModel, CloudFormationModel):
    """AWS::Route53::HealthCheck, including the CLOUDWATCH_METRIC fields moto drops.

    moto keeps neither ``AlarmIdentifier`` nor ``InsufficientDataHealthStatus``; the lab stores
    them on moto's health-check object (``lab_*`` attributes), where the Route 53 overlay and
    the health pipeline read them.
    """

    ATTRIBUTES = {"HealthCheckId": lambda self: self.id}

    def __init__(self, health_check: Any) -> None:
        self.health_check, self.id = health_check, health_check.id

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Route53::HealthCheck"

    @property
    def physical_resource_id(self) -> str:
        return self.id

    @classmethod
    def from_properties(
        cls, resource_name: str, props: Mapping[str, Any], account_id: str, region_name: str
    ) -> HealthCheck:
        config = props["HealthCheckConfig"]
        backend = route53_backends[account_id][get_partition(region_name)]
        health_check = backend.create_health_check(
            caller_reference=resource_name,
            health_check_args={
                "ip_address": config.get("IPAddress"),
                "port": config.get("Port"),
                "type": config["Type"],
                "resource_path": config.get("ResourcePath"),
                "fqdn": config.get("FullyQualifiedDomainName"),
                "search_string": config.get("SearchString"),
                "request_interval": config.get("RequestInterval"),
                "failure_threshold": config.get("FailureThreshold"),
                "health_threshold": config.get("HealthThreshold"),
                "measure_latency": _bool(config.get("MeasureLatency")),
                "inverted": _bool(config.get("Inverted")),
                "disabled": _bool(config.get("Disabled")),
                "enable_sni": _bool(config.get("EnableSNI")),
                "children": config.get("ChildHealthChecks"),
                "regions": config.get("Regions"),
            },
        )
        annotate_health_check(
            health_check,
            alarm_identifier=config.get("AlarmIdentifier"),
            insufficient_data_health_status=config.get("InsufficientDataHealthStatus"),
        )
        if config["Type"] == "CLOUDWATCH_METRIC" and not config.get("AlarmIdentifier"):
            backend.delete_health_check(health_check.id)
            raise ValueError("AlarmIdentifier is required for CLOUDWATCH_METRIC health checks")
        tags = props.get("HealthCheckTags") or []
        if tags:
            backend.change_tags_for_resource(
                resource_type="healthcheck",
                resource_id=health_check.id,
                add_tags=[{"Key": t["Key"], "Value": t["Value"]} for t in tags],
                remove_tag_keys=[],
            )
        return cls(health_check)

    def delete(self, account_id: str, region_name: str) -> None:
        route53_backends[account_id][get_partition(region_name)].delete_health_check(self.id)


def annotate_health_check(
    health_check: Any,
    *,
    alarm_identifier: Any = None,
    insufficient_data_health_status: str | None = None,
) -> None:
    """Store the CLOUDWATCH_METRIC fields moto drops on moto's health-check object."""
    if alarm_identifier is not None:
        health_check.lab_alarm_identifier = {
            "Name": alarm_identifier["Name"],
            "Region": alarm_identifier["Region"],
        }
    elif not hasattr(health_check, "lab_alarm_identifier"):
        health_check.lab_alarm_identifier = None
    if insufficient_data_health_status is not None:
        if insufficient_data_health_status not in ("Healthy", "Unhealthy", "LastKnownStatus"):
            raise ValueError(
                f"InsufficientDataHealthStatus {insufficient_data_health_status!r} must be "
                "Healthy, Unhealthy or LastKnownStatus"
            )
        health_check.lab_insufficient_data_health_status = insufficient_data_health_status
    elif not hasattr(health_check, "lab_insufficient_data_health_status"):
        # AWS's default when the field is omitted.
        health_check.lab_insufficient_data_health_status = "LastKnownStatus"


def _tags(tags: Any) -> dict[str, str]:
    if not tags:
        return {}
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {t["Key"]: t["Value"] for t in tags}


LAB_TYPES = tuple(
    model.cloudformation_type()
    for model in (
        Instance,
        SubnetRouteTableAssociation,
        TransitGatewayAttachment,
        TransitGatewayPeeringAttachment,
        TransitGatewayRouteTable,
        TransitGatewayRouteTableAssociation,
        TransitGatewayRoute,
        MetricAlarm,
        ApiStage,
        ApiDomainName,
        ApiBasePathMapping,
        PrivateRestApi,
        LabCertificate,
        HealthCheck,
        HostedZone,
        LoadBalancer,
        TargetGroup,
    )
)


def register() -> None:
    """Make moto's CloudFormation see the lab models (they win over moto's for the same type)."""
    for cached in (get_model_list, get_model_map, get_name_type_map):
        cached.cache_clear()
    model_map = get_model_map()
    for resource_type in LAB_TYPES:
        assert model_map[resource_type].__module__ == __name__, resource_type
