"""The lab's API Gateway data plane: private REST APIs answering requests that reach an endpoint.

The NLB listeners (:mod:`harness.lab.nlb`) forward each HTTP request that arrives over an
``execute-api`` interface endpoint here, and :class:`ApiGateway` answers it the way API Gateway
would, from moto's live control-plane state (read under the lab's state lock):

1. **Host → API.** A custom domain name of the endpoint's region (``Host`` header, port
   stripped, case-insensitive) and its base path mappings: the longest mapped base path that is
   a whole-segment prefix of the path wins, ``(none)`` maps the rest; a mapping without a stage
   takes the stage from the next path segment. The API's own host names
   (``{api-id}.execute-api.{region}.amazonaws.com``, ``{api-id}-{vpce-id}.execute-api...`` or
   the ``x-apigw-api-id`` header) select the API with the stage as the first path segment. No
   match, a missing stage, or a non-PRIVATE API (an interface endpoint reaches private APIs only)
   is ``403 {"message":"Forbidden"}``.
2. **Resource and method.** Literal path parts beat ``{param}`` beat a greedy ``{param+}``
   (which needs at least one segment); the root resource matches only ``/``. The exact method
   wins over ``ANY``. No match is ``403 {"message":"Missing Authentication Token"}``, which is
   what API Gateway answers for a route it does not have.
3. **Resource policy.** Explicit deny wins, an allow is required (a private API without a policy
   admits nobody). Principal ``*``; ``Action``/``NotAction``; ``Resource``/``NotResource`` with
   the ``execute-api:/`` shorthand and ``*``/``?`` wildcards; conditions ``String*``, ``Arn*``,
   ``IpAddress``/``NotIpAddress``, ``Bool``, ``Null`` (with ``...IfExists`` and
   ``ForAnyValue:``/``ForAllValues:``) on ``aws:SourceVpce``, ``aws:SourceVpc`` and
   ``aws:VpcSourceIp``. A denial is ``403 {"Message":"User: anonymous is not authorized to
   perform: execute-api:Invoke on resource: arn:...[ with an explicit deny]"}`` with the account
   id masked as API Gateway masks it. Anything else in a policy fails loudly (see below).
4. **Lambda proxy integration** (``AWS_PROXY`` to a Lambda ``.../invocations`` URI, stage
   variables substituted): the function needs a resource-based permission for
   ``apigateway.amazonaws.com`` whose conditions admit the method ARN (unless the integration
   has credentials); its code (moto's zip, i.e. the template's inline code as ``index.py``) runs
   in the lab's :class:`~harness.lab.lambda_runtime.LambdaRuntime` with a v1 proxy event. As the
   Lambda documentation states: the Lambda API refusing the invoke (throttled, e.g. by reserved
   concurrency 0; no such function; no permission; payload over 6 MB) is ``500``; a function
   error, the function's own timeout or a malformed proxy response is ``502``; both with body
   ``{"message": "Internal server error"}``. (The lab runtime's cap on worker processes per
   function is not an AWS limit: an invoke that hits it waits for a worker instead of being
   reported as a throttle.) The integration timeout (``timeoutInMillis``,
   default 29 s, real seconds like the runtime's) is ``504 {"message": "Endpoint request timed
   out"}`` while the invocation runs on, holding its concurrency, as on AWS.

Responses carry ``x-amzn-RequestId``, ``x-amz-apigw-id`` and, for gateway errors,
``x-amzn-ErrorType``. Lambda response headers API Gateway reserves are renamed
``x-amzn-Remapped-<name>``.

What is not modelled (and fails loudly rather than being skipped): integration types other than
``AWS_PROXY`` to Lambda, authorization types other than ``NONE`` (an ``AWS_IAM`` method without
an ``Authorization`` header still gets API Gateway's ``Missing Authentication Token``), API keys,
authorizers, request validation, policy constructs outside the list above. These answer
``500 {"message": "regiondrill lab: ..."}`` naming what is missing, and log it. Also not
modelled: deployment snapshots (moto keeps none, so method and policy changes apply at once
instead of at the next deployment), stage and account throttling, caching, gateway response
customisation, chunked request bodies (refused by the listener).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import fnmatch
import io
import ipaddress
import json
import logging
import os
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from harness.errors import LabError
from harness.lab.lambda_runtime import FunctionSpec, Invocation, LambdaRuntime

if TYPE_CHECKING:
    from harness.lab.lab import Lab

log = logging.getLogger(__name__)

__all__ = [
    "ApiGateway",
    "ApiRequest",
    "ApiResponse",
    "ApiUnavailable",
    "PolicyDecision",
    "PolicyError",
    "ResourceMatch",
    "build_proxy_event",
    "evaluate_policy",
    "match_base_path",
    "match_resource",
    "proxy_response",
    "request_arn",
]

# API Gateway's default (and, without a quota increase, maximum) integration timeout.
DEFAULT_INTEGRATION_TIMEOUT_S = 29.0
# REST API payload limit; Lambda's synchronous invoke limit is smaller (6 MB).
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_LAMBDA_EVENT_BYTES = 6 * 1024 * 1024
# Response headers API Gateway does not pass through from a Lambda proxy response.
_REMAPPED_RESPONSE_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "content-md5",
        "date",
        "expect",
        "host",
        "max-forwards",
        "proxy-authenticate",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "via",
        "www-authenticate",
    }
)
# Hop-by-hop request headers that do not reach the integration.
_DROPPED_REQUEST_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-connection",
        "expect",
    }
)
# The runtime throttles with this reason when its own worker cap, not a reservation, is hit.
_LAB_CAP_REASON = "ConcurrentInvocationLimitExceeded"
_LAB_CAP_RETRY_S = 0.005
_PROXY_RESPONSE_KEYS = frozenset(
    {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
)
_LAMBDA_URI = re.compile(
    r"^arn:(?P<partition>aws[\w-]*):apigateway:(?P<region>[\w-]+):lambda:"
    r"path/2015-03-31/functions/(?P<function>.+)/invocations$"
)
_STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
_EXECUTE_API_HOST = re.compile(
    r"^(?P<api>[a-z0-9]{10})(?:-(?P<vpce>vpce-[0-9a-f]+))?\.execute-api\."
    r"(?P<region>[a-z0-9-]+)\.amazonaws\.com$"
)


class ApiUnavailable(LabError):
    """The region's API Gateway service is down (the lab's health component switched it off)."""


class PolicyError(LabError):
    """A resource or function policy uses something the lab's evaluator does not model."""


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request as it reaches API Gateway through an ``execute-api`` endpoint.

    ``target`` is the request-target as sent (path and optional query, percent-encoded);
    ``source_address`` is the address the endpoint sees the connection from (the NLB node, or
    the client when the target group preserves client addresses) and ``vpce_id``/``vpc_id``
    identify the endpoint it came through.
    """

    region: str
    host: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    source_address: str
    vpce_id: str
    vpc_id: str
    tls_version: str = "TLSv1.2"
    cipher_suite: str = "ECDHE-RSA-AES128-GCM-SHA256"


@dataclass(frozen=True)
class ApiResponse:
    """An HTTP response from API Gateway (``headers`` keep their order and duplicates)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


# ----------------------------------------------------------------------------- routing (pure)


def split_target(target: str) -> tuple[str, list[tuple[str, str]]]:
    """Return the raw (still percent-encoded) path and the decoded query pairs of a target."""
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    return path, parse_qsl(query, keep_blank_values=True)


def match_base_path(base_paths: Iterable[str], path: str) -> tuple[str, str] | None:
    """Return ``(base path, remaining path)`` for the mapping a custom-domain request uses.

    ``base_paths`` are the mapping keys as API Gateway stores them (``(none)`` for the empty
    base path). The longest base path that is a whole-segment prefix of ``path`` wins; the
    remaining path always starts with ``/``. None when nothing maps the path.
    """
    segments = list(path.split("/")[1:])
    best: tuple[int, str] | None = None
    for base in base_paths:
        if base == "(none)":
            parts: list[str] = []
        else:
            parts = base.strip("/").split("/")
        if segments[: len(parts)] == parts and (best is None or len(parts) > best[0]):
            best = (len(parts), base)
    if best is None:
        return None
    depth, base = best
    remaining = "/" + "/".join(segments[depth:])
    return base, remaining


@dataclass(frozen=True)
class ResourceMatch:
    """The resource a path selects and the path parameters it binds (values decoded)."""

    resource_id: str
    resource_path: str
    path_parameters: Mapping[str, str]


def match_resource(resources: Iterable[tuple[str, str]], path: str) -> ResourceMatch | None:
    """Return the resource (``(id, path template)`` pairs) that API Gateway routes ``path`` to.

    Each segment ranks literal over ``{param}`` over greedy ``{param+}``, compared from the
    left, as API Gateway walks its resource tree. A greedy parameter takes one or more segments
    (slashes included); a trailing slash is ignored for matching.
    """
    stripped = path.rstrip("/")
    segments = stripped.split("/")[1:] if stripped else []
    best: tuple[tuple[int, ...], ResourceMatch] | None = None
    for resource_id, template in resources:
        bound = _bind(template, segments)
        if bound is None:
            continue
        rank, params = bound
        candidate = ResourceMatch(resource_id, template, params)
        if best is None or rank > best[0]:
            best = (rank, candidate)
    return best[1] if best is not None else None


def _bind(template: str, segments: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
    parts = [p for p in template.split("/") if p]
    params: dict[str, str] = {}
    rank: list[int] = []
    for index, part in enumerate(parts):
        if part.startswith("{") and part.endswith("+}"):
            if index != len(parts) - 1 or index >= len(segments):
                return None
            params[part[1:-2]] = unquote("/".join(segments[index:]))
            rank.append(0)
            return tuple(rank), params
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = unquote(segments[index])
            rank.append(1)
        elif unquote(segments[index]) == part:
            rank.append(2)
        else:
            return None
    if len(parts) != len(segments):
        return None
    return tuple(rank), params


# ------------------------------------------------------------------------ policies (pure)


@dataclass(frozen=True)
class PolicyDecision:
    """The outcome of evaluating a resource policy for one request."""

    allowed: bool
    explicit_deny: bool


def request_arn(
    partition: str, region: str, account_id: str, api_id: str, stage: str, method: str, path: str
) -> str:
    """Return the ``execute-api`` ARN a request is authorised against.

    ``path`` is the path below the stage (after any base path), e.g. ``/`` or ``/a/b``.
    """
    return f"arn:{partition}:execute-api:{region}:{account_id}:{api_id}/{stage}/{method}/{path[1:]}"


def evaluate_policy(
    policy: str | Mapping[str, Any] | None,
    *,
    action: str,
    resource: str,
    context: Mapping[str, str],
    api_prefix: str = "",
    principal_service: str | None = None,
) -> PolicyDecision:
    """Evaluate a resource-based policy for an anonymous caller (or an AWS service principal).

    ``context`` holds the request's condition keys (lower-case names); ``api_prefix`` is what the
    ``execute-api:`` resource shorthand expands to (``arn:aws:execute-api:region:account:api``).
    An explicit deny wins; otherwise an allow is needed.

    Raises:
        PolicyError: the document is not JSON or uses a construct the lab does not model.
    """
    if policy is None or policy == "":
        return PolicyDecision(allowed=False, explicit_deny=False)
    if isinstance(policy, str):
        try:
            document = json.loads(policy)
        except ValueError as exc:
            raise PolicyError(f"policy is not valid JSON: {exc}") from exc
    else:
        document = policy
    if not isinstance(document, Mapping):
        raise PolicyError(f"policy is not a JSON object: {policy!r}")
    statements = document.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    allowed = False
    for statement in statements:
        if not isinstance(statement, Mapping):
            raise PolicyError(f"policy statement is not an object: {statement!r}")
        if not _statement_applies(
            statement, action, resource, context, api_prefix, principal_service
        ):
            continue
        effect = statement.get("Effect")
        if effect == "Deny":
            return PolicyDecision(allowed=False, explicit_deny=True)
        if effect == "Allow":
            allowed = True
        else:
            raise PolicyError(f"policy statement has Effect {effect!r}; expected Allow or Deny")
    return PolicyDecision(allowed=allowed, explicit_deny=False)


def _statement_applies(
    statement: Mapping[str, Any],
    action: str,
    resource: str,
    context: Mapping[str, str],
    api_prefix: str,
    principal_service: str | None,
) -> bool:
    for unsupported in ("NotPrincipal",):
        if unsupported in statement:
            raise PolicyError(f"policy element {unsupported} is not modelled by the lab")
    if not _principal_matches(statement.get("Principal"), principal_service):
        return False
    if "Action" in statement:
        if not any(_glob(p, action, ignore_case=True) for p in _strings(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_glob(p, action, ignore_case=True) for p in _strings(statement["NotAction"])):
            return False
    else:
        raise PolicyError("policy statement has neither Action nor NotAction")
    if "Resource" in statement:
        patterns = [_expand_resource(p, api_prefix) for p in _strings(statement["Resource"])]
        if not any(_glob(p, resource) for p in patterns):
            return False
    elif "NotResource" in statement:
        patterns = [_expand_resource(p, api_prefix) for p in _strings(statement["NotResource"])]
        if any(_glob(p, resource) for p in patterns):
            return False
    condition = statement.get("Condition")
    if condition is not None:
        if not isinstance(condition, Mapping):
            raise PolicyError(f"policy Condition is not an object: {condition!r}")
        for operator, tests in condition.items():
            if not isinstance(tests, Mapping):
                raise PolicyError(f"policy condition {operator} is not an object: {tests!r}")
            for key, expected in tests.items():
                if not _condition_holds(operator, key.lower(), _strings(expected), context):
                    return False
    return True


def _principal_matches(principal: Any, service: str | None) -> bool:
    if principal is None:
        raise PolicyError("policy statement has no Principal (required in resource policies)")
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        if service is None:
            return "*" in _strings(principal.get("AWS", []))
        return service in _strings(principal.get("Service", [])) or "*" in _strings(
            principal.get("AWS", [])
        )
    raise PolicyError(f"policy Principal {principal!r} is not modelled by the lab")


def _expand_resource(pattern: str, api_prefix: str) -> str:
    if pattern.startswith("execute-api:/"):
        if not api_prefix:
            raise PolicyError(f"resource {pattern!r} uses the execute-api shorthand outside an API")
        return api_prefix + pattern[len("execute-api:") :]
    return pattern


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _strings(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    out = []
    for item in values:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            out.append(str(item))
        else:
            raise PolicyError(f"policy value {item!r} is not a string")
    return out


_STRING_TESTS = {
    "StringEquals": (lambda a, e: a == e, False),
    "StringNotEquals": (lambda a, e: a == e, True),
    "StringEqualsIgnoreCase": (lambda a, e: a.lower() == e.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda a, e: a.lower() == e.lower(), True),
    "StringLike": (lambda a, e: _glob(e, a), False),
    "StringNotLike": (lambda a, e: _glob(e, a), True),
    "ArnEquals": (lambda a, e: a == e, False),
    "ArnNotEquals": (lambda a, e: a == e, True),
    "ArnLike": (lambda a, e: _glob(e, a), False),
    "ArnNotLike": (lambda a, e: _glob(e, a), True),
    "IpAddress": (lambda a, e: _in_network(a, e), False),
    "NotIpAddress": (lambda a, e: _in_network(a, e), True),
    "Bool": (lambda a, e: a.lower() == e.lower(), False),
}


def _in_network(address: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise PolicyError(f"policy IpAddress value {cidr!r} is not a CIDR: {exc}") from exc


def _condition_holds(
    operator: str, key: str, expected: list[str], context: Mapping[str, str]
) -> bool:
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise PolicyError(f"policy condition qualifier {qualifier} is not modelled by the lab")
    if_exists = operator.endswith("IfExists") and operator != "IfExists"
    base = operator[: -len("IfExists")] if if_exists else operator
    actual = context.get(key)
    if base == "Null":
        wanted_null = [e.lower() == "true" for e in expected]
        return (actual is None) in wanted_null
    if base not in _STRING_TESTS:
        raise PolicyError(f"policy condition operator {operator} is not modelled by the lab")
    test, negated = _STRING_TESTS[base]
    if actual is None:
        if if_exists or qualifier == "ForAllValues":
            return True
        return negated
    matched = any(test(actual, e) for e in expected)
    return not matched if negated else matched


# ------------------------------------------------------------------- proxy event and response


def build_proxy_event(
    *,
    method: str,
    resource_path: str,
    resource_id: str,
    event_path: str,
    context_path: str,
    headers: Sequence[tuple[str, str]],
    query: Sequence[tuple[str, str]],
    path_parameters: Mapping[str, str],
    stage: str,
    stage_variables: Mapping[str, str],
    body: bytes,
    binary: bool,
    domain_name: str,
    api_id: str,
    account_id: str,
    deployment_id: str | None,
    request_id: str,
    extended_request_id: str,
    request_time: float,
    source_ip: str,
    vpce_id: str,
    vpc_id: str,
    operation_name: str | None = None,
) -> dict[str, Any]:
    """Return the API Gateway REST (payload v1.0) Lambda proxy event for one request.

    For a custom domain, ``event_path`` and ``context_path`` both carry the base path (as API
    Gateway reports them); for the API's own host name, ``context_path`` starts with the stage.
    """
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        single_query[name] = value
        multi_query.setdefault(name, []).append(value)
    if not body:
        body_value: str | None = None
    elif binary:
        body_value = base64.b64encode(body).decode("ascii")
    else:
        body_value = body.decode("utf-8", errors="replace")
    stamp = dt.datetime.fromtimestamp(request_time, dt.UTC)
    user_agent = next(
        (value for name, value in reversed(headers) if name.lower() == "user-agent"), None
    )
    request_context: dict[str, Any] = {
        "resourceId": resource_id,
        "resourcePath": resource_path,
        "httpMethod": method,
        "extendedRequestId": extended_request_id,
        "requestTime": stamp.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "path": context_path,
        "accountId": account_id,
        "protocol": "HTTP/1.1",
        "stage": stage,
        "domainPrefix": domain_name.split(".", 1)[0],
        "requestTimeEpoch": int(request_time * 1000),
        "requestId": request_id,
        "identity": {
            "cognitoIdentityPoolId": None,
            "cognitoIdentityId": None,
            "vpceId": vpce_id,
            "principalOrgId": None,
            "cognitoAuthenticationType": None,
            "userArn": None,
            "userAgent": user_agent,
            "accountId": None,
            "caller": None,
            "sourceIp": source_ip,
            "accessKey": None,
            "vpcId": vpc_id,
            "cognitoAuthenticationProvider": None,
            "user": None,
        },
        "domainName": domain_name,
        "deploymentId": deployment_id,
        "apiId": api_id,
    }
    if operation_name:
        request_context["operationName"] = operation_name
    return {
        "resource": resource_path,
        "path": event_path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": dict(path_parameters) or None,
        "stageVariables": dict(stage_variables) or None,
        "requestContext": request_context,
        "body": body_value,
        "isBase64Encoded": bool(body) and binary,
    }


class MalformedProxyResponse(ValueError):
    """The Lambda returned something API Gateway cannot turn into an HTTP response."""


def proxy_response(payload: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Turn a Lambda proxy result into ``(status, headers, body)`` as API Gateway does.

    Reserved headers are renamed ``x-amzn-Remapped-<name>``; ``Content-Length`` is dropped (it is
    recomputed); ``Content-Type`` defaults to ``application/json``.

    Raises:
        MalformedProxyResponse: not an object, unknown keys, a missing or invalid statusCode, a
            non-string body, headers that are not strings, or bad base64.
    """
    if not isinstance(payload, Mapping):
        raise MalformedProxyResponse(f"result is a {type(payload).__name__}, not an object")
    unknown = set(payload) - _PROXY_RESPONSE_KEYS
    if unknown:
        raise MalformedProxyResponse(f"unexpected keys {sorted(unknown)}")
    status = payload.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int | str):
        raise MalformedProxyResponse(f"statusCode {status!r} is not an integer")
    try:
        code = int(status)
    except ValueError as exc:
        raise MalformedProxyResponse(f"statusCode {status!r} is not an integer") from exc
    if not 100 <= code <= 599:
        raise MalformedProxyResponse(f"statusCode {code} is not an HTTP status")
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        raise MalformedProxyResponse(f"body is a {type(body).__name__}, not a string")
    encoded = payload.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        raise MalformedProxyResponse(f"isBase64Encoded {encoded!r} is not a boolean")
    if body is None:
        data = b""
    elif encoded:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedProxyResponse(f"body is not base64: {exc}") from exc
    else:
        data = body.encode("utf-8")
    pairs: list[tuple[str, str]] = []
    multi = payload.get("multiValueHeaders") or {}
    single = payload.get("headers") or {}
    if not isinstance(multi, Mapping) or not isinstance(single, Mapping):
        raise MalformedProxyResponse("headers and multiValueHeaders must be objects")
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResponse(f"multiValueHeaders[{name!r}] is not a list")
        pairs.extend((str(name), _header_value(name, v)) for v in values)
    for name, value in single.items():
        pairs.append((str(name), _header_value(name, value)))
    headers: list[tuple[str, str]] = []
    for name, value in pairs:
        lower = name.lower()
        if lower == "content-length":
            continue
        if lower in _REMAPPED_RESPONSE_HEADERS:
            headers.append((f"x-amzn-Remapped-{name}", value))
        else:
            headers.append((name, value))
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return code, headers, data


def _header_value(name: Any, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise MalformedProxyResponse(f"header {name!r} has a non-scalar value {value!r}")


# ----------------------------------------------------------------------- the gateway itself


@dataclass(frozen=True)
class _Route:
    """Everything about a routed request that had to be read from moto (under the lock)."""

    partition: str
    api_id: str
    stage: str
    deployment_id: str | None
    stage_variables: Mapping[str, str]
    policy: str | None
    binary_media_types: tuple[str, ...]
    match: ResourceMatch
    method: str
    operation_name: str | None
    event_path: str
    context_path: str
    path_below_stage: str
    domain_name: str
    function: FunctionSpec | None
    function_permission: Any  # the function's policy statements, or None if credentials given
    integration_timeout_s: float
    # Why the integration cannot run; reported only once the resource policy allowed the call.
    integration_error: _Failure | None = None


class _Failure(Exception):
    """End request processing with one of API Gateway's error responses."""

    def __init__(self, response_kind: str, detail: str = "") -> None:
        super().__init__(f"{response_kind}: {detail}")
        self.response_kind = response_kind
        self.detail = detail


class ApiGateway:
    """Answer requests to the lab's private REST APIs (see the module docstring).

    Thread-safe. Invocations run on a small pool of their own, so an integration timeout can
    answer 504 while the function keeps running (and keeps its concurrency), as on AWS.
    """

    def __init__(self, lab: Lab, runtime: LambdaRuntime, *, invoke_workers: int = 16) -> None:
        self._lab = lab
        self._runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=invoke_workers, thread_name_prefix="lab-apigw")
        self._code: dict[str, dict[str, str]] = {}
        self._code_lock = threading.Lock()
        self._warned: set[str] = set()

    def close(self) -> None:
        """Stop accepting invocations; running ones finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ entry point

    def invoke(self, request: ApiRequest) -> ApiResponse:
        """Answer one request (see the module docstring for the exact behaviour).

        Raises:
            ApiUnavailable: the region's API Gateway service is switched off in the lab.
        """
        health = self._lab.health
        if health is not None and not health.api_up(request.region):
            raise ApiUnavailable(f"API Gateway in {request.region} is down")
        now = self._lab.clock.now()
        request_id = str(uuid.uuid4())
        extended_id = base64.b64encode(os.urandom(11)).decode("ascii")
        ids = (request_id, extended_id, now)
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return _gateway_response(413, {"message": "Request Too Long"}, ids, compact=True)
        try:
            route = self._route(request)
            return self._integrate(request, route, ids)
        except _Failure as failure:
            return self._failure_response(failure, ids)

    def default_endpoint(self, region: str, source_address: str | None) -> tuple[str, str]:
        """Return ``(vpce id, vpc id)`` of the region's ``execute-api`` endpoint a caller uses.

        The endpoint in the caller's VPC if there is one, else the region's only one.

        Raises:
            LabError: the region has no such endpoint, or several and none in the caller's VPC.
        """
        topology = self._lab.topology()
        candidates = sorted(
            (
                e
                for e in topology.endpoints.values()
                if e.region == region and e.service_name.endswith(".execute-api")
            ),
            key=lambda e: e.id,
        )
        if source_address:
            vpc = topology.vpc_containing(source_address)
            for endpoint in candidates:
                if vpc is not None and endpoint.vpc_id == vpc.id:
                    return endpoint.id, endpoint.vpc_id
        if len(candidates) == 1:
            return candidates[0].id, candidates[0].vpc_id
        if not candidates:
            raise LabError(
                f"region {region} has no execute-api VPC endpoint; private APIs are reachable "
                "only through one"
            )
        raise LabError(
            f"region {region} has several execute-api endpoints and none in the VPC of "
            f"{source_address}; pass vpce_id"
        )

    # ------------------------------------------------------------------ routing (moto state)

    def _route(self, request: ApiRequest) -> _Route:
        from moto.apigateway.models import apigateway_backends

        account = self._lab.account_id
        raw_path, _ = split_target(request.target)
        host = request.host.split(":", 1)[0].strip().lower().rstrip(".")
        with self._lab.state_lock:
            if account not in apigateway_backends:
                raise _Failure("forbidden")
            backend = apigateway_backends[account][request.region]
            header_api = next(
                (v for k, v in request.headers if k.lower() == "x-apigw-api-id"), None
            )
            execute_api = _EXECUTE_API_HOST.match(host)
            domain = next(
                (d for name, d in backend.domain_names.items() if name.lower() == host), None
            )
            if domain is not None and header_api is None:
                mappings = backend.base_path_mappings.get(domain.domain_name, {})
                found = match_base_path(mappings.keys(), raw_path)
                if found is None:
                    raise _Failure("forbidden")
                base, remaining = found
                mapping = mappings[base]
                api_id = mapping.rest_api_id
                stage_name = mapping.stage
                if not stage_name:
                    stage_name, remaining = _take_stage(remaining)
                event_path = unquote(raw_path)
                context_path = event_path
                domain_name = domain.domain_name
            elif header_api is not None or (
                execute_api is not None and execute_api["region"] == request.region
            ):
                api_id = header_api or (execute_api["api"] if execute_api else "")
                stage_name, remaining = _take_stage(raw_path)
                event_path = unquote(remaining)
                context_path = unquote(raw_path)
                domain_name = host
            else:
                raise _Failure("forbidden")
            api = backend.apis.get(api_id)
            if api is None or not stage_name or stage_name not in api.stages:
                raise _Failure("forbidden")
            types = [t.upper() for t in _endpoint_types(api.endpoint_configuration)]
            if "PRIVATE" not in types:
                raise _Failure("forbidden")
            stage = api.stages[stage_name]
            match = match_resource(
                ((r.id, r.get_path()) for r in api.resources.values()), remaining
            )
            if match is None:
                raise _Failure("missing_token")
            resource = api.resources[match.resource_id]
            method = resource.resource_methods.get(request.method) or resource.resource_methods.get(
                "ANY"
            )
            if method is None:
                raise _Failure("missing_token")
            authorization = (method.authorization_type or "NONE").upper()
            if authorization == "AWS_IAM" and not any(
                k.lower() == "authorization" for k, _ in request.headers
            ):
                raise _Failure("missing_token")
            if authorization != "NONE":
                raise _Failure(
                    "unsupported",
                    f"authorization type {authorization} of "
                    f"{request.method} {match.resource_path} in API {api_id}",
                )
            if method.api_key_required:
                raise _Failure(
                    "unsupported",
                    f"API keys (apiKeyRequired on {request.method} "
                    f"{match.resource_path} in API {api_id})",
                )
            deployment = stage.deployment_id
            deployment_id = getattr(deployment, "id", deployment)
            variables = {str(k): str(v) for k, v in (stage.variables or {}).items()}
            integration_error: _Failure | None = None
            spec, permission, timeout_s = None, None, DEFAULT_INTEGRATION_TIMEOUT_S
            try:
                spec, permission, timeout_s = self._integration(
                    api_id, method, match.resource_path, request, variables
                )
            except _Failure as failure:
                integration_error = failure
            policy = api.policy
            return _Route(
                partition="aws",
                api_id=api_id,
                stage=stage_name,
                deployment_id=str(deployment_id) if deployment_id else None,
                stage_variables=variables,
                policy=policy if isinstance(policy, str) or policy is None else json.dumps(policy),
                binary_media_types=tuple(api.binaryMediaTypes or ()),
                match=match,
                method=request.method,
                operation_name=method.operation_name,
                event_path=event_path,
                context_path=context_path,
                path_below_stage=unquote(remaining),
                domain_name=domain_name,
                function=spec,
                function_permission=permission,
                integration_timeout_s=timeout_s,
                integration_error=integration_error,
            )

    def _integration(
        self,
        api_id: str,
        method: Any,
        resource_path: str,
        request: ApiRequest,
        variables: Mapping[str, str],
    ) -> tuple[FunctionSpec | None, Any, float]:
        """Read the Lambda a method integrates with (called with the state lock held)."""
        from moto.awslambda.models import lambda_backends

        integration = method.method_integration
        where = f"{request.method} {resource_path} in API {api_id}"
        if integration is None:
            raise _Failure("unsupported", f"no integration on {where}")
        kind = (integration.integration_type or "").upper()
        uri = _STAGE_VARIABLE.sub(lambda m: variables.get(m[1], ""), integration.uri or "")
        parsed = _LAMBDA_URI.match(uri)
        if kind != "AWS_PROXY" or parsed is None:
            raise _Failure(
                "unsupported",
                f"integration type {kind} with URI {uri!r} on {where} (only "
                "AWS_PROXY to a Lambda function is modelled)",
            )
        timeout_ms = integration.timeout_in_millis
        timeout_s = int(timeout_ms) / 1000 if timeout_ms else DEFAULT_INTEGRATION_TIMEOUT_S
        account = self._lab.account_id
        function_ref = parsed["function"]
        function_region = parsed["region"]
        try:
            function = lambda_backends[account][function_region].get_function(function_ref)
        except Exception:
            raise _Failure("lambda_rejected", f"function {function_ref} not found") from None
        permission = None if integration.credentials else list(function.policy.statements)
        spec = self._function_spec(function)
        return spec, permission, timeout_s

    def _function_spec(self, function: Any) -> FunctionSpec:
        if (getattr(function, "package_type", "Zip") or "Zip") != "Zip":
            raise _Failure(
                "unsupported", f"package type {function.package_type} of {function.function_name}"
            )
        files = self._files(function)
        reserved = function.reserved_concurrency
        try:
            return FunctionSpec(
                name=function.function_name,
                arn=function.function_arn,
                region=function.region,
                runtime=function.run_time or "",
                handler=function.handler or "",
                files=files,
                environment={str(k): str(v) for k, v in (function.environment_vars or {}).items()},
                timeout=float(function.timeout or 3),
                memory_mb=int(function.memory_size or 128),
                reserved_concurrency=None if reserved in (None, "") else int(reserved),
                code_sha256=function.code_sha_256 or "",
            )
        except ValueError as exc:
            raise _Failure("unsupported", f"function {function.function_name}: {exc}") from exc

    def _files(self, function: Any) -> dict[str, str]:
        digest = function.code_sha_256 or ""
        with self._code_lock:
            cached = self._code.get(digest)
        if cached is not None:
            return cached
        files: dict[str, str] = {}
        try:
            with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
                for info in archive.infolist():
                    if info.is_dir():
                        continue
                    try:
                        files[info.filename] = archive.read(info).decode("utf-8")
                    except UnicodeDecodeError:
                        raise _Failure(
                            "unsupported",
                            f"binary file {info.filename} in the code of "
                            f"{function.function_name} (only text files run in the lab)",
                        ) from None
        except zipfile.BadZipFile as exc:
            raise _Failure(
                "unsupported", f"code of {function.function_name} is not a zip archive: {exc}"
            ) from exc
        with self._code_lock:
            self._code[digest] = files
        return files

    # ------------------------------------------------------------------ authorisation + invoke

    def _integrate(
        self, request: ApiRequest, route: _Route, ids: tuple[str, str, float]
    ) -> ApiResponse:
        account = self._lab.account_id
        method_arn = request_arn(
            route.partition,
            request.region,
            account,
            route.api_id,
            route.stage,
            route.method,
            route.path_below_stage,
        )
        api_prefix = f"arn:{route.partition}:execute-api:{request.region}:{account}:{route.api_id}"
        context = {
            "aws:sourcevpce": request.vpce_id,
            "aws:sourcevpc": request.vpc_id,
            "aws:vpcsourceip": request.source_address,
            "aws:securetransport": "true",
        }
        try:
            decision = evaluate_policy(
                route.policy,
                action="execute-api:Invoke",
                resource=method_arn,
                context=context,
                api_prefix=api_prefix,
            )
        except PolicyError as exc:
            raise _Failure("unsupported", f"resource policy of API {route.api_id}: {exc}") from exc
        if not decision.allowed:
            masked = method_arn.replace(f":{account}:", f":********{account[-4:]}:", 1)
            message = (
                f"User: anonymous is not authorized to perform: execute-api:Invoke on "
                f"resource: {masked}"
            )
            if decision.explicit_deny:
                message += " with an explicit deny"
            return _gateway_response(
                403, {"Message": message}, ids, compact=True, error_type="AccessDeniedException"
            )
        if route.integration_error is not None:
            raise route.integration_error
        spec = route.function
        assert spec is not None
        if route.function_permission is not None:
            source_arn = request_arn(
                route.partition,
                request.region,
                account,
                route.api_id,
                route.stage,
                route.method,
                route.match.resource_path,
            )
            try:
                permitted = evaluate_policy(
                    {"Statement": route.function_permission},
                    action="lambda:InvokeFunction",
                    resource=spec.arn,
                    context={"aws:sourcearn": source_arn, "aws:sourceaccount": account},
                    principal_service="apigateway.amazonaws.com",
                ).allowed
            except PolicyError as exc:
                raise _Failure("unsupported", f"policy of function {spec.name}: {exc}") from exc
            if not permitted:
                raise _Failure(
                    "lambda_rejected",
                    f"invalid permissions on Lambda function {spec.name} for {source_arn}",
                )
        headers = self._integration_headers(request)
        _raw_path, query = split_target(request.target)
        content_type = (
            next((v for k, v in request.headers if k.lower() == "content-type"), "")
            .split(";")[0]
            .strip()
        )
        binary = (
            any(
                fnmatch.fnmatchcase(content_type, pattern.replace("~1", "/"))
                for pattern in route.binary_media_types
            )
            if content_type
            else False
        )
        event = build_proxy_event(
            method=request.method,
            resource_path=route.match.resource_path,
            resource_id=route.match.resource_id,
            event_path=route.event_path,
            context_path=route.context_path,
            headers=headers,
            query=query,
            path_parameters=route.match.path_parameters,
            stage=route.stage,
            stage_variables=route.stage_variables,
            body=request.body,
            binary=binary,
            domain_name=route.domain_name,
            api_id=route.api_id,
            account_id=account,
            deployment_id=route.deployment_id,
            request_id=ids[0],
            extended_request_id=ids[1],
            request_time=ids[2],
            source_ip=request.source_address,
            vpce_id=request.vpce_id,
            vpc_id=request.vpc_id,
            operation_name=route.operation_name,
        )
        if len(json.dumps(event).encode("utf-8")) > MAX_LAMBDA_EVENT_BYTES:
            raise _Failure("lambda_rejected", f"event for {spec.name} exceeds 6 MB")
        invocation = self._invoke(spec, event, route.integration_timeout_s)
        if invocation is None:
            return _gateway_response(
                504, {"message": "Endpoint request timed out"}, ids, compact=False
            )
        if invocation.status == "throttled":
            raise _Failure("lambda_rejected", f"{spec.name} throttled: {invocation.error}")
        if invocation.status != "success":
            raise _Failure("lambda_failed", f"{spec.name}: {invocation.error}")
        try:
            status, response_headers, body = proxy_response(invocation.payload)
        except MalformedProxyResponse as exc:
            raise _Failure("lambda_failed", f"malformed Lambda proxy response: {exc}") from exc
        return ApiResponse(status, (*response_headers, *_id_headers(ids)), body)

    def _integration_headers(self, request: ApiRequest) -> list[tuple[str, str]]:
        headers = [(k, v) for k, v in request.headers if k.lower() not in _DROPPED_REQUEST_HEADERS]
        forwarded = [v for k, v in headers if k.lower() == "x-forwarded-for"]
        headers = [(k, v) for k, v in headers if k.lower() != "x-forwarded-for"]
        headers += [
            ("x-amzn-cipher-suite", request.cipher_suite),
            ("x-amzn-tls-version", request.tls_version),
            ("x-amzn-vpc-id", request.vpc_id),
            ("x-amzn-vpce-config", "1"),
            ("x-amzn-vpce-id", request.vpce_id),
            ("X-Forwarded-For", ", ".join([*forwarded, request.source_address])),
        ]
        return headers

    def _invoke(
        self, spec: FunctionSpec, event: dict[str, Any], timeout_s: float
    ) -> Invocation | None:
        deadline = time.monotonic() + timeout_s

        def run() -> Invocation:
            while True:
                invocation = self._runtime.invoke(spec, event)
                reason = (invocation.error or {}).get("Reason")
                # The runtime's own worker cap is not an AWS limit (an account runs 1000 at
                # once): wait for a worker rather than report a throttle AWS would not give.
                if (
                    invocation.status != "throttled"
                    or reason != _LAB_CAP_REASON
                    or time.monotonic() >= deadline
                ):
                    return invocation
                time.sleep(_LAB_CAP_RETRY_S)

        try:
            future = self._pool.submit(run)
        except RuntimeError as exc:  # the pool is shut down: the lab is stopping
            raise _Failure("unsupported", f"the lab is stopping: {exc}") from exc
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            return None
        except LabError as exc:
            raise _Failure("unsupported", str(exc)) from exc

    # ------------------------------------------------------------------ errors

    def _failure_response(self, failure: _Failure, ids: tuple[str, str, float]) -> ApiResponse:
        if failure.response_kind == "forbidden":
            return _gateway_response(
                403, {"message": "Forbidden"}, ids, compact=True, error_type="ForbiddenException"
            )
        if failure.response_kind == "missing_token":
            return _gateway_response(
                403,
                {"message": "Missing Authentication Token"},
                ids,
                compact=True,
                error_type="MissingAuthenticationTokenException",
            )
        if failure.response_kind in ("lambda_rejected", "lambda_failed"):
            log.info(
                "API Gateway integration error (%s): %s", failure.response_kind, failure.detail
            )
            status = 500 if failure.response_kind == "lambda_rejected" else 502
            return _gateway_response(
                status,
                {"message": "Internal server error"},
                ids,
                compact=False,
                error_type="InternalServerErrorException",
            )
        message = f"regiondrill lab: not modelled: {failure.detail}"
        if message not in self._warned:
            self._warned.add(message)
            log.error("%s", message)
        return _gateway_response(
            500, {"message": message}, ids, compact=False, error_type="InternalServerErrorException"
        )


def _take_stage(path: str) -> tuple[str, str]:
    segments = path.split("/")[1:]
    if not segments or not segments[0]:
        return "", "/"
    return unquote(segments[0]), "/" + "/".join(segments[1:])


def _endpoint_types(configuration: Any) -> list[str]:
    if not isinstance(configuration, Mapping):
        return []
    types = configuration.get("types") or configuration.get("Types") or []
    return [str(t) for t in types]


def _id_headers(ids: tuple[str, str, float]) -> list[tuple[str, str]]:
    request_id, extended_id, now = ids
    trace = f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]};Sampled=0"
    return [
        ("Date", email.utils.formatdate(now, usegmt=True)),
        ("x-amzn-RequestId", request_id),
        ("x-amz-apigw-id", extended_id),
        ("X-Amzn-Trace-Id", trace),
    ]


def _gateway_response(
    status: int,
    payload: Mapping[str, str],
    ids: tuple[str, str, float],
    *,
    compact: bool,
    error_type: str | None = None,
) -> ApiResponse:
    # API Gateway's built-in messages differ in spacing: 4xx are compact, 5xx have a space.
    separators = (",", ":") if compact else (", ", ": ")
    body = json.dumps(payload, separators=separators).encode("utf-8")
    request_id, extended_id, now = ids
    headers = [
        ("Content-Type", "application/json"),
        ("Date", email.utils.formatdate(now, usegmt=True)),
        ("x-amzn-RequestId", request_id),
    ]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    headers.append(("x-amz-apigw-id", extended_id))
    return ApiResponse(status, tuple(headers), body)
