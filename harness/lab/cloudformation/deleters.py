"""Deletion for resource types whose moto CloudFormation model cannot delete itself.

moto's ``ResourceMap.delete`` silently does nothing for many types (route tables, routes,
transit gateways, VPC endpoints, target groups, hosted zones...), so a deleted stack would leave
resources behind and the next deployment would collide with them. The engine calls these
deleters with the resource's properties (intrinsics resolved) and fails the deletion loudly for
a type it has no way to delete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from moto.apigateway.models import apigateway_backends
from moto.awslambda.models import lambda_backends
from moto.ec2.models import ec2_backends
from moto.elbv2.models import elbv2_backends

Deleter = Callable[[Any, Mapping[str, Any], str, str], None]


def _route_table(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    ec2_backends[account][region].delete_route_table(instance.id)


def _route(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    ec2 = ec2_backends[account][region]
    if props["RouteTableId"] in ec2.route_tables:
        ec2.delete_route(props["RouteTableId"], str(props.get("DestinationCidrBlock")))


def _security_group_ingress(
    instance: Any, props: Mapping[str, Any], account: str, region: str
) -> None:
    ec2 = ec2_backends[account][region]
    group_id = props.get("GroupId")
    group = ec2.get_security_group_from_id(group_id) if group_id else None
    if group is None:
        return
    cidr = props.get("CidrIp")
    source = props.get("SourceSecurityGroupId")
    ec2.revoke_security_group_ingress(
        group_name_or_id=str(group_id),
        ip_protocol=str(props.get("IpProtocol")),
        from_port=str(props.get("FromPort")),
        to_port=str(props.get("ToPort")),
        ip_ranges=[{"CidrIp": cidr}] if cidr else [],
        source_groups=[{"GroupId": source}] if source else [],
        prefix_list_ids=[],
    )


def _transit_gateway(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    ec2 = ec2_backends[account][region]
    tgw_id = instance.id
    # The default route tables moto creates with the gateway go with it, as on AWS.
    for table_id, table in list(ec2.transit_gateways_route_tables.items()):
        if table.transit_gateway_id == tgw_id and (
            table.default_association_route_table or table.default_propagation_route_table
        ):
            ec2.delete_transit_gateway_route_table(table_id)
    ec2.delete_transit_gateway(tgw_id)


def _vpc_endpoint(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    ec2_backends[account][region].delete_vpc_endpoints([instance.id])
    ec2_backends[account][region].vpc_end_points.pop(instance.id, None)


def _lambda_permission(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    backend = lambda_backends[account][region]
    try:
        function = backend.get_function(props["FunctionName"])
    except Exception:  # the function is already gone, and its resource policy with it
        return
    for statement in list(function.policy.statements):
        principal = statement.get("Principal", {})
        principal = (
            principal.get("Service", principal) if isinstance(principal, dict) else principal
        )
        source_arn = statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn")
        if principal == props.get("Principal") and source_arn == props.get("SourceArn"):
            function.policy.statements.remove(statement)


def _api_resource(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    backend = apigateway_backends[account][region]
    api = backend.apis.get(props["RestApiId"])
    if api is not None and instance.id in api.resources:
        backend.delete_resource(props["RestApiId"], instance.id)


def _api_method(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    backend = apigateway_backends[account][region]
    api = backend.apis.get(props["RestApiId"])
    if api is not None and props["ResourceId"] in api.resources:
        resource = api.resources[props["ResourceId"]]
        if props["HttpMethod"] in resource.resource_methods:
            backend.delete_method(props["RestApiId"], props["ResourceId"], props["HttpMethod"])


def _api_deployment(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    backend = apigateway_backends[account][region]
    api = backend.apis.get(props["RestApiId"])
    if api is not None and instance.id in api.deployments:
        api.deployments.pop(instance.id)


def _target_group(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    backend = elbv2_backends[account][region]
    if instance.arn in backend.target_groups:
        backend.delete_target_group(instance.arn)


def _listener(instance: Any, props: Mapping[str, Any], account: str, region: str) -> None:
    backend = elbv2_backends[account][region]
    for lb in backend.load_balancers.values():
        lb.listeners.pop(instance.arn, None)


DELETERS: dict[str, Deleter] = {
    "AWS::EC2::RouteTable": _route_table,
    "AWS::EC2::Route": _route,
    "AWS::EC2::SecurityGroupIngress": _security_group_ingress,
    "AWS::EC2::TransitGateway": _transit_gateway,
    "AWS::EC2::VPCEndpoint": _vpc_endpoint,
    "AWS::Lambda::Permission": _lambda_permission,
    "AWS::ApiGateway::Resource": _api_resource,
    "AWS::ApiGateway::Method": _api_method,
    "AWS::ApiGateway::Deployment": _api_deployment,
    "AWS::ElasticLoadBalancingV2::TargetGroup": _target_group,
    "AWS::ElasticLoadBalancingV2::Listener": _listener,
}


class CannotDelete(Exception):
    """Neither moto nor the lab can delete this resource type."""


def delete(
    resource_type: str, instance: Any, props: Mapping[str, Any], account: str, region: str
) -> None:
    """Delete one resource created from a template, by the best means available.

    Raises:
        CannotDelete: naming the type, when nothing can delete it.
    """
    deleter = DELETERS.get(resource_type)
    if deleter is not None:
        deleter(instance, props, account, region)
        return
    if callable(getattr(instance, "delete", None)):
        instance.delete(account, region)
        return
    from_json = type(instance).delete_from_cloudformation_json
    if not getattr(from_json, "__isabstractmethod__", False):
        name = getattr(instance, "physical_resource_id", None)
        from_json(name, {"Type": resource_type, "Properties": dict(props)}, account, region)
        return
    raise CannotDelete(f"the regiondrill lab cannot delete resources of type {resource_type}")
