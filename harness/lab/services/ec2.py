"""EC2 overlay: transit-gateway route operations moto lacks or renders wrongly.

- SearchTransitGatewayRoutes: moto stores a route's attachment as one dict and renders an empty
  ``TransitGatewayAttachments`` list, hiding where a route goes; the lab renders it as AWS does
  and supports the filters the harness and operators use.
- ReplaceTransitGatewayRoute: not implemented by moto; it is how a peering route is blackholed
  (the ``blackhole_peering`` fault) and restored.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from moto.ec2.models import ec2_backends

from harness.lab.gateway import Gateway, LabRequest, LabResponse, error_response

if TYPE_CHECKING:
    from harness.lab.lab import Lab

NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
_SUPPORTED_FILTERS = (
    "state",
    "type",
    "route-search.exact-match",
    "route-search.longest-prefix-match",
    "route-search.subnet-of-match",
    "route-search.supernet-of-match",
    "attachment.transit-gateway-attachment-id",
    "attachment.resource-type",
    "attachment.resource-id",
)


def _filters(params: Mapping[str, str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    index = 1
    while f"Filter.{index}.Name" in params:
        values = []
        value_index = 1
        while f"Filter.{index}.Value.{value_index}" in params:
            values.append(params[f"Filter.{index}.Value.{value_index}"])
            value_index += 1
        filters[params[f"Filter.{index}.Name"]] = values
        index += 1
    return filters


def _attachment(route: Mapping[str, Any]) -> Mapping[str, Any] | None:
    attached = route.get("transitGatewayAttachments")
    return attached if isinstance(attached, Mapping) and attached else None


def _matches(route: Mapping[str, Any], filters: Mapping[str, list[str]]) -> bool:
    destination = ipaddress.IPv4Network(str(route["destinationCidrBlock"]))
    attachment = _attachment(route) or {}
    for name, values in filters.items():
        if name == "state" and route.get("state") not in values:
            return False
        if name == "type" and route.get("type", "static") not in values:
            return False
        if (
            name == "attachment.transit-gateway-attachment-id"
            and attachment.get("transitGatewayAttachmentId") not in values
        ):
            return False
        if name == "attachment.resource-type" and attachment.get("resourceType") not in values:
            return False
        if name == "attachment.resource-id" and attachment.get("resourceId") not in values:
            return False
        networks = (
            [ipaddress.IPv4Network(v, strict=False) for v in values]
            if name.startswith("route-search")
            else []
        )
        if name == "route-search.exact-match" and destination not in networks:
            return False
        if name == "route-search.subnet-of-match" and not any(
            destination.subnet_of(n) for n in networks
        ):
            return False
        if name == "route-search.supernet-of-match" and not any(
            destination.supernet_of(n) for n in networks
        ):
            return False
    return True


def _render_route(route: Mapping[str, Any]) -> str:
    attachment = _attachment(route)
    attachments = ""
    if attachment is not None:
        attachments = (
            "<transitGatewayAttachments><item>"
            f"<resourceId>{escape(str(attachment.get('resourceId') or ''))}</resourceId>"
            f"<transitGatewayAttachmentId>{escape(str(attachment['transitGatewayAttachmentId']))}"
            "</transitGatewayAttachmentId>"
            f"<resourceType>{escape(str(attachment.get('resourceType') or ''))}</resourceType>"
            "</item></transitGatewayAttachments>"
        )
    return (
        f"<item><destinationCidrBlock>{escape(route['destinationCidrBlock'])}</destinationCidrBlock>"
        f"{attachments}<type>{route.get('type', 'static')}</type><state>{route.get('state', 'active')}</state></item>"
    )


def install(gateway: Gateway, lab: Lab) -> None:
    def backend(region: str) -> Any:
        return ec2_backends[lab.account_id][region]

    def search(request: LabRequest) -> LabResponse:
        params = request.form()
        table_id = params.get("TransitGatewayRouteTableId", "")
        table = backend(request.region).transit_gateways_route_tables.get(table_id)
        if table is None:
            return error_response(
                "ec2",
                400,
                "InvalidRouteTableID.NotFound",
                f"The routeTable ID '{table_id}' does not exist",
            )
        filters = _filters(params)
        unknown = sorted(set(filters) - set(_SUPPORTED_FILTERS))
        if unknown:
            return error_response(
                "ec2",
                400,
                "InvalidParameterValue",
                f"The filter '{unknown[0]}' is not supported by the regiondrill lab for "
                "SearchTransitGatewayRoutes",
            )
        routes = [
            r for r in table.routes.values() if r.get("state") != "deleted" and _matches(r, filters)
        ]
        longest = filters.get("route-search.longest-prefix-match")
        if longest:
            address = ipaddress.IPv4Network(longest[0], strict=False)
            covering = [
                r
                for r in routes
                if address.subnet_of(ipaddress.IPv4Network(r["destinationCidrBlock"]))
            ]
            covering.sort(
                key=lambda r: ipaddress.ip_network(r["destinationCidrBlock"]).prefixlen,
                reverse=True,
            )
            routes = covering[:1]
        limit = int(params.get("MaxResults") or 1000)
        body = (
            f'<SearchTransitGatewayRoutesResponse xmlns="{NS}"><requestId>{uuid.uuid4()}</requestId>'
            f"<routeSet>{''.join(_render_route(r) for r in routes[:limit])}</routeSet>"
            f"<additionalRoutesAvailable>{str(len(routes) > limit).lower()}</additionalRoutesAvailable>"
            "</SearchTransitGatewayRoutesResponse>"
        )
        return LabResponse.xml(body)

    def replace(request: LabRequest) -> LabResponse:
        params = request.form()
        ec2 = backend(request.region)
        table_id = params.get("TransitGatewayRouteTableId", "")
        table = ec2.transit_gateways_route_tables.get(table_id)
        if table is None:
            return error_response(
                "ec2",
                400,
                "InvalidRouteTableID.NotFound",
                f"The routeTable ID '{table_id}' does not exist",
            )
        cidr = params.get("DestinationCidrBlock", "")
        if cidr not in table.routes or table.routes[cidr].get("state") == "deleted":
            return error_response(
                "ec2",
                400,
                "InvalidRoute.NotFound",
                f"No route with destination-cidr-block {cidr} in transit gateway route table {table_id}",
            )
        blackhole = params.get("Blackhole", "false").lower() == "true"
        attachment_id = params.get("TransitGatewayAttachmentId")
        if not blackhole and not attachment_id:
            return error_response(
                "ec2",
                400,
                "MissingParameter",
                "Either TransitGatewayAttachmentId or Blackhole must be specified",
            )
        if attachment_id and attachment_id not in ec2.transit_gateway_attachments:
            return error_response(
                "ec2",
                400,
                "InvalidTransitGatewayAttachmentID.NotFound",
                f"Transit Gateway Attachment {attachment_id} was deleted or does not exist.",
            )
        route = ec2.create_transit_gateway_route(
            transit_gateway_route_table_id=table_id,
            destination_cidr_block=cidr,
            transit_gateway_attachment_id=None if blackhole else attachment_id,
            blackhole=blackhole,
        )
        lab.notify_changed()
        body = (
            f'<ReplaceTransitGatewayRouteResponse xmlns="{NS}"><requestId>{uuid.uuid4()}</requestId>'
            f"<route>{_render_route(route)[6:-7]}</route></ReplaceTransitGatewayRouteResponse>"
        )
        return LabResponse.xml(body)

    gateway.overlay("ec2", "SearchTransitGatewayRoutes", search)
    gateway.overlay("ec2", "ReplaceTransitGatewayRoute", replace)
