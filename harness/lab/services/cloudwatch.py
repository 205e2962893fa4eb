"""CloudWatch overlay: alarm state and history as the lab's health pipeline keeps them.

moto starts every alarm ``OK``, never evaluates it, keeps wall-clock timestamps and has no
``DescribeAlarmHistory``. The health pipeline (``harness.lab.health``) evaluates alarms on the
lab clock; this overlay makes the API agree with it:

- ``DescribeAlarms`` first lets the pipeline give alarms it has not seen yet their AWS initial
  state (``INSUFFICIENT_DATA``), so no caller ever sees moto's ``OK``;
- ``PutMetricAlarm`` on an existing alarm keeps its state (AWS: "when you update an existing
  alarm, its state is left unchanged"); moto would replace it with a fresh ``OK`` alarm;
- ``SetAlarmState`` gets lab-clock timestamps and a history item, and Route 53 health checks
  follow at once;
- ``DescribeAlarmHistory`` is served from the pipeline's history (lab-clock timestamps).

botocore speaks CloudWatch's JSON protocol here (``x-amz-target:
GraniteServiceVersion20100801.<Operation>``); DescribeAlarmHistory is answered in it and any
other protocol is refused with an error naming it.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from moto.cloudwatch.models import cloudwatch_backends

from harness.lab.gateway import Gateway, LabRequest, LabResponse, error_response
from harness.lab.health import epoch_seconds

if TYPE_CHECKING:
    from harness.lab.lab import Lab

HISTORY_ITEM_TYPES = (
    "ConfigurationUpdate",
    "StateUpdate",
    "Action",
    "AlarmContributorStateUpdate",
    "AlarmContributorAction",
)
ALARM_TYPES = ("MetricAlarm", "CompositeAlarm")
SCAN_BY = ("TimestampDescending", "TimestampAscending")
MAX_RECORDS = 100


def _json_response(payload: Any) -> LabResponse:
    return LabResponse(
        200, json.dumps(payload).encode(), [("Content-Type", "application/x-amz-json-1.0")]
    )


def _params(request: LabRequest) -> dict[str, Any]:
    """Return a request's parameters (JSON body, or the query protocol's form)."""
    if request.protocol == "json":
        return request.json()
    if request.protocol == "query":
        return dict(request.form())
    return {}


def _instant(value: Any) -> float:
    """Parse a JSON-protocol timestamp (epoch seconds, or ISO 8601 text)."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    return epoch_seconds(datetime.fromisoformat(text.replace("Z", "+00:00")))


def install(gateway: Gateway, lab: Lab) -> None:
    """Register the CloudWatch operations the lab answers itself."""

    def backend(region: str) -> Any:
        return cloudwatch_backends[lab.account_id][region]

    def describe_alarms(request: LabRequest) -> LabResponse | None:
        if lab.health is not None:
            lab.health.sync_alarms()
        return None  # moto renders the (corrected) alarms

    def put_metric_alarm(request: LabRequest) -> LabResponse | None:
        name = _params(request).get("AlarmName")
        if not name or request.forward is None:
            return None
        if lab.health is not None:
            lab.health.sync_alarms()  # an alarm created a moment ago must count as existing
        old = backend(request.region).alarms.get(name)
        response = request.forward()
        new = backend(request.region).alarms.get(name)
        if response.status < 300 and lab.health is not None:
            if old is not None and new is not None and new is not old:
                lab.health.alarm_replaced(request.region, old, new)
            else:
                lab.health.sync_alarms()
        return response

    def set_alarm_state(request: LabRequest) -> LabResponse | None:
        name = _params(request).get("AlarmName")
        if not name or request.forward is None:
            return None
        if lab.health is not None:
            lab.health.sync_alarms()
        alarm = backend(request.region).alarms.get(name)
        old_state = alarm.state_value if alarm is not None else ""
        old_reason = alarm.state_reason if alarm is not None else ""
        response = request.forward()
        if response.status < 300 and alarm is not None and lab.health is not None:
            lab.health.alarm_state_set(request.region, name, old_state, old_reason)
        return response

    def describe_alarm_history(request: LabRequest) -> LabResponse:
        if request.protocol != "json":
            return error_response(
                request.protocol if request.protocol in ("query", "json") else "json",
                400,
                "InvalidAction",
                f"the regiondrill lab serves DescribeAlarmHistory over the JSON protocol only, "
                f"not {request.protocol!r}",
            )
        if lab.health is None:
            return error_response(
                "json", 400, "InvalidAction", "the lab's health pipeline is not running"
            )
        params = request.json()
        try:
            page = _history_page(lab, request.region, params)
        except _Invalid as invalid:
            return error_response("json", 400, invalid.code, str(invalid))
        return _json_response(page)

    gateway.overlay("cloudwatch", "DescribeAlarms", describe_alarms)
    gateway.overlay("cloudwatch", "PutMetricAlarm", put_metric_alarm)
    gateway.overlay("cloudwatch", "SetAlarmState", set_alarm_state)
    gateway.overlay("cloudwatch", "DescribeAlarmHistory", describe_alarm_history)


class _Invalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _history_page(lab: Lab, region: str, params: dict[str, Any]) -> dict[str, Any]:
    """Filter, order and page the region's alarm history as DescribeAlarmHistory does."""
    item_type = params.get("HistoryItemType")
    if item_type is not None and item_type not in HISTORY_ITEM_TYPES:
        raise _Invalid(
            "ValidationError",
            f"HistoryItemType {item_type!r} must be one of {', '.join(HISTORY_ITEM_TYPES)}",
        )
    alarm_types = params.get("AlarmTypes") or ["MetricAlarm"]
    for alarm_type in alarm_types:
        if alarm_type not in ALARM_TYPES:
            raise _Invalid(
                "ValidationError",
                f"AlarmTypes value {alarm_type!r} must be one of {', '.join(ALARM_TYPES)}",
            )
    scan_by = params.get("ScanBy") or "TimestampDescending"
    if scan_by not in SCAN_BY:
        raise _Invalid("ValidationError", f"ScanBy {scan_by!r} must be one of {', '.join(SCAN_BY)}")
    max_records = params.get("MaxRecords", MAX_RECORDS)
    if not isinstance(max_records, int) or not 1 <= max_records <= MAX_RECORDS:
        raise _Invalid(
            "ValidationError", f"MaxRecords {max_records!r} must be between 1 and {MAX_RECORDS}"
        )
    try:
        start = _instant(params["StartDate"]) if params.get("StartDate") is not None else None
        end = _instant(params["EndDate"]) if params.get("EndDate") is not None else None
    except (ValueError, TypeError) as exc:
        raise _Invalid("ValidationError", f"StartDate/EndDate: {exc}") from exc
    name = params.get("AlarmName")
    items = [
        item
        for item in lab.health.alarm_history(region)
        if (name is None or item.alarm_name == name)
        and (item_type is None or item.item_type == item_type)
        and item.alarm_type in alarm_types
        and (start is None or item.timestamp >= start)
        and (end is None or item.timestamp <= end)
    ]
    if scan_by == "TimestampDescending":
        items.reverse()
    offset = 0
    token = params.get("NextToken")
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Invalid("InvalidNextToken", f"NextToken {token!r} is not valid") from exc
    page = items[offset : offset + max_records]
    result: dict[str, Any] = {
        "AlarmHistoryItems": [
            {
                "AlarmName": item.alarm_name,
                "AlarmType": item.alarm_type,
                "Timestamp": item.timestamp,
                "HistoryItemType": item.item_type,
                "HistorySummary": item.summary,
                "HistoryData": item.data,
            }
            for item in page
        ]
    }
    if offset + max_records < len(items):
        result["NextToken"] = base64.urlsafe_b64encode(str(offset + max_records).encode()).decode()
    return result
