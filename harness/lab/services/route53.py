"""Route 53 health-check overlay: the CLOUDWATCH_METRIC health checks the stack relies on.

moto drops ``AlarmIdentifier`` and ``InsufficientDataHealthStatus`` and cannot update
``Inverted`` faithfully, yet those fields are the whole point here: the health check follows a
region's alarm, and inverting it is the reference way to simulate an outage. The lab answers the
health-check operations itself, on moto's health-check objects (so record sets and tags keep
working), and renders responses in Route 53's XML. Health-check status (GetHealthCheckStatus,
GetHealthCheckLastFailureReason) comes from the lab's health pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from moto.cloudwatch.models import cloudwatch_backends
from moto.route53.models import route53_backends

from harness.lab.cloudformation.resources import annotate_health_check
from harness.lab.gateway import Gateway, LabRequest, LabResponse, error_response

if TYPE_CHECKING:
    from harness.lab.lab import Lab

NS = "https://route53.amazonaws.com/doc/2013-04-01/"
_Q = f"{{{NS}}}"


def _backend() -> Any:
    from harness.lab.lab import ACCOUNT_ID

    return route53_backends[ACCOUNT_ID]["aws"]


def _text(element: ET.Element | None, path: str) -> str | None:
    if element is None:
        return None
    found = element.find(_Q + path.replace("/", "/" + _Q))
    return found.text if found is not None else None


def _bool(value: str | None) -> bool | None:
    return None if value is None else value.strip().lower() == "true"


def _not_found(health_check_id: str) -> LabResponse:
    return error_response(
        "rest-xml",
        404,
        "NoSuchHealthCheck",
        f"A health check with id {health_check_id} does not exist.",
    )


def render_health_check(hc: Any) -> str:
    """Render one <HealthCheck> element as Route 53 returns it."""
    alarm = getattr(hc, "lab_alarm_identifier", None)
    parts = [f"<Type>{escape(hc.type_)}</Type>"]
    if hc.type_ == "CLOUDWATCH_METRIC":
        pass
    elif hc.type_ == "CALCULATED":
        parts.append(f"<HealthThreshold>{hc.health_threshold or 0}</HealthThreshold>")
        children = "".join(f"<ChildHealthCheck>{c}</ChildHealthCheck>" for c in hc.children or [])
        parts.append(f"<ChildHealthChecks>{children}</ChildHealthChecks>")
    else:
        for tag, value in (
            ("IPAddress", hc.ip_address),
            ("Port", hc.port),
            ("ResourcePath", hc.resource_path),
            ("FullyQualifiedDomainName", hc.fqdn),
            ("SearchString", hc.search_string),
            ("RequestInterval", hc.request_interval),
            ("FailureThreshold", hc.failure_threshold),
        ):
            if value is not None:
                parts.append(f"<{tag}>{escape(str(value))}</{tag}>")
        parts.append(f"<MeasureLatency>{str(bool(hc.measure_latency)).lower()}</MeasureLatency>")
        parts.append(f"<EnableSNI>{str(bool(hc.enable_sni)).lower()}</EnableSNI>")
    parts.append(f"<Inverted>{str(bool(hc.inverted)).lower()}</Inverted>")
    parts.append(f"<Disabled>{str(bool(hc.disabled)).lower()}</Disabled>")
    if alarm:
        parts.append(
            f"<AlarmIdentifier><Region>{escape(alarm['Region'])}</Region>"
            f"<Name>{escape(alarm['Name'])}</Name></AlarmIdentifier>"
        )
    status = getattr(hc, "lab_insufficient_data_health_status", None)
    if hc.type_ == "CLOUDWATCH_METRIC" and status:
        parts.append(f"<InsufficientDataHealthStatus>{status}</InsufficientDataHealthStatus>")
    alarm_config = _alarm_configuration(alarm)
    return (
        f"<HealthCheck><Id>{hc.id}</Id><CallerReference>{escape(hc.caller_reference)}</CallerReference>"
        f"<HealthCheckConfig>{''.join(parts)}</HealthCheckConfig>"
        f"<HealthCheckVersion>{hc.health_check_version}</HealthCheckVersion>"
        f"{alarm_config}</HealthCheck>"
    )


def _alarm_configuration(alarm: dict[str, str] | None) -> str:
    """Route 53 copies the alarm's definition into CloudWatchAlarmConfiguration."""
    if not alarm:
        return ""
    from harness.lab.lab import ACCOUNT_ID

    found = cloudwatch_backends[ACCOUNT_ID][alarm["Region"]].alarms.get(alarm["Name"])
    if found is None:
        return ""
    dimensions = "".join(
        f"<Dimension><Name>{escape(d.name or '')}</Name><Value>{escape(d.value or '')}</Value></Dimension>"
        for d in found.dimensions
    )
    return (
        "<CloudWatchAlarmConfiguration>"
        f"<EvaluationPeriods>{found.evaluation_periods}</EvaluationPeriods>"
        f"<Threshold>{found.threshold}</Threshold>"
        f"<ComparisonOperator>{found.comparison_operator}</ComparisonOperator>"
        f"<Period>{found.period}</Period>"
        f"<MetricName>{escape(found.metric_name)}</MetricName>"
        f"<Namespace>{escape(found.namespace)}</Namespace>"
        f"<Statistic>{escape(found.statistic or '')}</Statistic>"
        f"<Dimensions>{dimensions}</Dimensions>"
        "</CloudWatchAlarmConfiguration>"
    )


def _observations(observations: list[dict[str, str]]) -> str:
    """Render HealthCheckObservations (GetHealthCheckStatus, ...LastFailureReason)."""
    return (
        "<HealthCheckObservations>"
        + "".join(
            f"<HealthCheckObservation><Region>{escape(o['Region'])}</Region>"
            f"<IPAddress>{escape(o['IPAddress'])}</IPAddress><StatusReport>"
            f"<Status>{escape(o['Status'])}</Status><CheckedTime>{o['CheckedTime']}</CheckedTime>"
            "</StatusReport></HealthCheckObservation>"
            for o in observations
        )
        + "</HealthCheckObservations>"
    )


def _xml(root: str, inner: str, status: int = 200) -> LabResponse:
    return LabResponse.xml(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{NS}">{inner}</{root}>', status
    )


def install(gateway: Gateway, lab: Lab) -> None:
    def create(request: LabRequest) -> LabResponse:
        root = ET.fromstring(request.body)
        caller_reference = _text(root, "CallerReference") or ""
        config = root.find(_Q + "HealthCheckConfig")
        if config is None or not _text(config, "Type"):
            return error_response(
                "rest-xml", 400, "InvalidInput", "HealthCheckConfig/Type is required"
            )
        backend = _backend()
        for existing in backend.health_checks.values():
            if existing.caller_reference == caller_reference:
                return error_response(
                    "rest-xml",
                    409,
                    "HealthCheckAlreadyExists",
                    f"A health check with caller reference {caller_reference} already exists.",
                )
        kind = _text(config, "Type")
        alarm = None
        if config.find(_Q + "AlarmIdentifier") is not None:
            alarm = {
                "Name": _text(config, "AlarmIdentifier/Name"),
                "Region": _text(config, "AlarmIdentifier/Region"),
            }
        if kind == "CLOUDWATCH_METRIC" and not alarm:
            return error_response(
                "rest-xml", 400, "InvalidInput", "AlarmIdentifier is required for CLOUDWATCH_METRIC"
            )
        children = [c.text for c in config.iter(_Q + "ChildHealthCheck") if c.text]
        regions = [
            r.text
            for r in config.iter(_Q + "Region")
            if r.text and (alarm is None or r.text != alarm["Region"])
        ]
        hc = backend.create_health_check(
            caller_reference=caller_reference,
            health_check_args={
                "ip_address": _text(config, "IPAddress"),
                "port": int(_text(config, "Port") or 0) or None,
                "type": kind,
                "resource_path": _text(config, "ResourcePath"),
                "fqdn": _text(config, "FullyQualifiedDomainName"),
                "search_string": _text(config, "SearchString"),
                "request_interval": int(_text(config, "RequestInterval") or 0) or None,
                "failure_threshold": int(_text(config, "FailureThreshold") or 0) or None,
                "health_threshold": int(_text(config, "HealthThreshold") or 0) or None,
                "measure_latency": _bool(_text(config, "MeasureLatency")),
                "inverted": _bool(_text(config, "Inverted")),
                "disabled": _bool(_text(config, "Disabled")),
                "enable_sni": _bool(_text(config, "EnableSNI")),
                "children": children,
                "regions": regions if kind != "CLOUDWATCH_METRIC" else [],
            },
        )
        try:
            annotate_health_check(
                hc,
                alarm_identifier=alarm,
                insufficient_data_health_status=_text(config, "InsufficientDataHealthStatus"),
            )
        except ValueError as exc:
            backend.delete_health_check(hc.id)
            return error_response("rest-xml", 400, "InvalidInput", str(exc))
        response = _xml("CreateHealthCheckResponse", render_health_check(hc), 201)
        response.headers.append(
            ("Location", f"https://route53.amazonaws.com/2013-04-01/healthcheck/{hc.id}")
        )
        return response

    def update(request: LabRequest) -> LabResponse:
        health_check_id = request.path_params["HealthCheckId"]
        hc = _backend().health_checks.get(health_check_id)
        if hc is None:
            return _not_found(health_check_id)
        root = ET.fromstring(request.body)
        version = _text(root, "HealthCheckVersion")
        if version is not None and int(version) != hc.health_check_version:
            return error_response(
                "rest-xml",
                409,
                "HealthCheckVersionMismatch",
                "The value of HealthCheckVersion in the request doesn't match the value of "
                "HealthCheckVersion in the health check.",
            )
        simple = {
            "IPAddress": "ip_address",
            "ResourcePath": "resource_path",
            "FullyQualifiedDomainName": "fqdn",
            "SearchString": "search_string",
        }
        for tag, attribute in simple.items():
            value = _text(root, tag)
            if value is not None:
                setattr(hc, attribute, value)
        for tag, attribute in (
            ("Port", "port"),
            ("FailureThreshold", "failure_threshold"),
            ("HealthThreshold", "health_threshold"),
        ):
            value = _text(root, tag)
            if value is not None:
                setattr(hc, attribute, int(value))
        for tag, attribute in (
            ("Inverted", "inverted"),
            ("Disabled", "disabled"),
            ("EnableSNI", "enable_sni"),
        ):
            flag = _bool(_text(root, tag))
            if flag is not None:
                setattr(hc, attribute, flag)
        alarm = None
        if root.find(_Q + "AlarmIdentifier") is not None:
            alarm = {
                "Name": _text(root, "AlarmIdentifier/Name"),
                "Region": _text(root, "AlarmIdentifier/Region"),
            }
        try:
            annotate_health_check(
                hc,
                alarm_identifier=alarm,
                insufficient_data_health_status=_text(root, "InsufficientDataHealthStatus"),
            )
        except ValueError as exc:
            return error_response("rest-xml", 400, "InvalidInput", str(exc))
        hc.health_check_version += 1
        lab.health_check_changed(hc.id)
        return _xml("UpdateHealthCheckResponse", render_health_check(hc))

    def get(request: LabRequest) -> LabResponse:
        health_check_id = request.path_params["HealthCheckId"]
        hc = _backend().health_checks.get(health_check_id)
        if hc is None:
            return _not_found(health_check_id)
        return _xml("GetHealthCheckResponse", render_health_check(hc))

    def list_all(request: LabRequest) -> LabResponse:
        from urllib.parse import parse_qs

        query = {k: v[0] for k, v in parse_qs(request.query).items()}
        max_items = int(query.get("maxitems", "100"))
        checks = sorted(_backend().health_checks.values(), key=lambda h: h.id)
        marker = query.get("marker")
        if marker:
            checks = [h for h in checks if h.id >= marker]
        page, rest = checks[:max_items], checks[max_items:]
        inner = "<HealthChecks>" + "".join(render_health_check(h) for h in page) + "</HealthChecks>"
        inner += f"<Marker>{escape(marker or '')}</Marker><IsTruncated>{str(bool(rest)).lower()}</IsTruncated>"
        if rest:
            inner += f"<NextMarker>{rest[0].id}</NextMarker>"
        inner += f"<MaxItems>{max_items}</MaxItems>"
        return _xml("ListHealthChecksResponse", inner)

    def status(request: LabRequest) -> LabResponse:
        health_check_id = request.path_params["HealthCheckId"]
        hc = _backend().health_checks.get(health_check_id)
        if hc is None:
            return _not_found(health_check_id)
        observations = lab.health_check_observations(hc)
        return _xml("GetHealthCheckStatusResponse", _observations(observations))

    def last_failure(request: LabRequest) -> LabResponse:
        health_check_id = request.path_params["HealthCheckId"]
        hc = _backend().health_checks.get(health_check_id)
        if hc is None:
            return _not_found(health_check_id)
        if lab.health is None:
            return error_response(
                "rest-xml", 400, "InvalidInput", "the lab's health pipeline is not running"
            )
        observations = lab.health.last_failure_observations(hc)
        return _xml("GetHealthCheckLastFailureReasonResponse", _observations(observations))

    gateway.overlay("route53", "CreateHealthCheck", create)
    gateway.overlay("route53", "UpdateHealthCheck", update)
    gateway.overlay("route53", "GetHealthCheck", get)
    gateway.overlay("route53", "ListHealthChecks", list_all)
    gateway.overlay("route53", "GetHealthCheckStatus", status)
    gateway.overlay("route53", "GetHealthCheckLastFailureReason", last_failure)
