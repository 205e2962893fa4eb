"""Tests for the lab's API Gateway: routing, resource policies, proxy events and error responses.

Pure functions are tested on constructed inputs; the gateway itself on a deployed two-region
stack set (through ``lab.load_balancers.invoke_api``, i.e. without the NLB), plus a small
private API the tests build through the API Gateway and Lambda APIs.
"""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.aws.session import SessionFactory
from harness.aws.stacks import Deployment, StackSetDeployer
from harness.config import load_config
from harness.lab.apigateway import (
    MalformedProxyResponse,
    PolicyError,
    build_proxy_event,
    evaluate_policy,
    match_base_path,
    match_resource,
    proxy_response,
    request_arn,
)
from harness.lab.lab import Lab
from harness.targets import lab_sessions

REGIONS = ("us-east-1", "us-west-2")
ACCOUNT = "123456789012"
API = "abcdef1234"
PREFIX = f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{API}"
VPCE = "vpce-0123456789abcdef0"

TEMPLATE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "execute-api:Invoke",
            "Resource": "execute-api:/*",
        },
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "execute-api:Invoke",
            "Resource": "execute-api:/*",
            "Condition": {"StringNotEquals": {"aws:SourceVpce": VPCE}},
        },
    ],
}


# ----------------------------------------------------------------------------- base paths


@pytest.mark.parametrize(
    ("bases", "path", "expected"),
    [
        (["demo"], "/demo", ("demo", "/")),
        (["demo"], "/demo/", ("demo", "/")),
        (["demo"], "/demo/a/b", ("demo", "/a/b")),
        (["demo"], "/demox", None),
        (["demo"], "/other/demo", None),
        (["demo"], "/", None),
        (["demo", "(none)"], "/other", ("(none)", "/other")),
        (["demo", "(none)"], "/demo/x", ("demo", "/x")),
        (["(none)"], "/", ("(none)", "/")),
        (["v1", "v1/demo"], "/v1/demo/x", ("v1/demo", "/x")),
        (["v1", "v1/demo"], "/v1/democracy", ("v1", "/democracy")),
    ],
)
def test_base_path_mapping_takes_the_longest_whole_segment_prefix(
    bases: list[str], path: str, expected: tuple[str, str] | None
) -> None:
    assert match_base_path(bases, path) == expected


_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=8)


@given(base=_segment, rest=st.lists(_segment, max_size=4))
def test_base_path_remainder_is_the_path_below_the_base(base: str, rest: list[str]) -> None:
    path = "/" + "/".join([base, *rest])
    assert match_base_path([base], path) == (base, "/" + "/".join(rest))
    assert match_base_path([base + "x"], path) is None


# ----------------------------------------------------------------------------- resources

RESOURCES = [
    ("root", "/"),
    ("proxy", "/{proxy+}"),
    ("items", "/items"),
    ("item", "/items/{id}"),
    ("files", "/files/{path+}"),
]


@pytest.mark.parametrize(
    ("path", "resource", "params"),
    [
        ("/", "root", {}),
        ("/items", "items", {}),
        ("/items/", "items", {}),
        ("/items/7", "item", {"id": "7"}),
        ("/items/7/x", "proxy", {"proxy": "items/7/x"}),
        ("/files/a/b/c", "files", {"path": "a/b/c"}),
        ("/files", "proxy", {"proxy": "files"}),
        ("/x%20y/z", "proxy", {"proxy": "x y/z"}),
    ],
)
def test_literal_beats_parameter_beats_greedy(
    path: str, resource: str, params: dict[str, str]
) -> None:
    match = match_resource(RESOURCES, path)
    assert match is not None
    assert (match.resource_id, dict(match.path_parameters)) == (resource, params)


def test_greedy_parameter_needs_a_segment_and_root_only_matches_slash() -> None:
    assert match_resource([("proxy", "/{proxy+}")], "/") is None
    assert match_resource([("root", "/")], "/a") is None
    assert match_resource([("items", "/items")], "/items/1") is None


@given(st.lists(_segment, min_size=1, max_size=5))
def test_any_path_is_caught_by_a_root_greedy_resource(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    match = match_resource([("root", "/"), ("proxy", "/{proxy+}")], path)
    assert match is not None
    assert match.resource_id == "proxy"
    assert match.path_parameters == {"proxy": "/".join(segments)}


# ----------------------------------------------------------------------------- policies


def _decide(policy: Any, *, vpce: str | None = VPCE, method: str = "GET", path: str = "/") -> Any:
    context = {"aws:sourcevpc": "vpc-1", "aws:vpcsourceip": "10.1.1.9"}
    if vpce is not None:
        context["aws:sourcevpce"] = vpce
    return evaluate_policy(
        policy,
        action="execute-api:Invoke",
        resource=request_arn("aws", "us-east-1", ACCOUNT, API, "dev", method, path),
        context=context,
        api_prefix=PREFIX,
    )


def test_template_policy_admits_only_its_endpoint() -> None:
    allowed = _decide(TEMPLATE_POLICY)
    assert (allowed.allowed, allowed.explicit_deny) == (True, False)
    other = _decide(TEMPLATE_POLICY, vpce="vpce-0fffffffffffffff0")
    assert (other.allowed, other.explicit_deny) == (False, True)
    # A request without the key does not equal the endpoint: the negated test holds.
    missing = _decide(json.dumps(TEMPLATE_POLICY), vpce=None)
    assert missing.explicit_deny


def test_no_policy_or_no_matching_allow_is_an_implicit_deny() -> None:
    assert _decide(None) == _decide("") == _decide({"Statement": []})
    assert not _decide(None).allowed
    assert not _decide(None).explicit_deny
    only_post = {
        "Statement": {
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": "execute-api:*",
            "Resource": "execute-api:/*/POST/*",
        }
    }
    assert _decide(only_post, method="POST", path="/a").allowed
    assert not _decide(only_post, method="GET", path="/a").allowed
    iam_only = {
        "Statement": {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:role/dev"},
            "Action": "execute-api:Invoke",
            "Resource": "*",
        }
    }
    assert not _decide(iam_only).allowed


def test_ip_conditions_if_exists_and_not_resource() -> None:
    policy = {
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": f"{PREFIX}/*"},
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "execute-api:Invoke",
                "NotResource": "execute-api:/dev/GET/public/*",
                "Condition": {"NotIpAddress": {"aws:VpcSourceIp": ["10.1.0.0/16"]}},
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "execute-api:Invoke",
                "Resource": "*",
                "Condition": {"StringEqualsIfExists": {"aws:SourceVpc": "vpc-blocked"}},
            },
        ]
    }
    assert _decide(policy, path="/private").allowed  # 10.1.1.9 is inside 10.1.0.0/16
    outside = evaluate_policy(
        policy,
        action="execute-api:Invoke",
        resource=request_arn("aws", "us-east-1", ACCOUNT, API, "dev", "GET", "/private"),
        context={"aws:vpcsourceip": "10.2.1.9", "aws:sourcevpc": "vpc-1"},
        api_prefix=PREFIX,
    )
    assert outside.explicit_deny
    public = evaluate_policy(
        policy,
        action="execute-api:Invoke",
        resource=request_arn("aws", "us-east-1", ACCOUNT, API, "dev", "GET", "/public/x"),
        context={"aws:vpcsourceip": "10.2.1.9", "aws:sourcevpc": "vpc-1"},
        api_prefix=PREFIX,
    )
    assert public.allowed
    # ...IfExists holds when the key is absent, so a request without aws:SourceVpc is denied.
    no_vpc = evaluate_policy(
        policy,
        action="execute-api:Invoke",
        resource=request_arn("aws", "us-east-1", ACCOUNT, API, "dev", "GET", "/public/x"),
        context={"aws:vpcsourceip": "10.1.1.9"},
        api_prefix=PREFIX,
    )
    assert no_vpc.explicit_deny
    blocked = evaluate_policy(
        policy,
        action="execute-api:Invoke",
        resource=request_arn("aws", "us-east-1", ACCOUNT, API, "dev", "GET", "/a"),
        context={"aws:vpcsourceip": "10.1.1.9", "aws:sourcevpc": "vpc-blocked"},
        api_prefix=PREFIX,
    )
    assert blocked.explicit_deny


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [
        ({"Effect": "Allow", "NotPrincipal": "*", "Action": "*", "Resource": "*"}, "NotPrincipal"),
        (
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
            },
            "DateGreaterThan",
        ),
        ({"Effect": "Allow", "Principal": "*", "Resource": "*"}, "Action"),
        ({"Effect": "Maybe", "Principal": "*", "Action": "*", "Resource": "*"}, "Maybe"),
    ],
)
def test_unmodelled_policy_constructs_fail_loudly(statement: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        _decide({"Statement": [statement]})


def test_lambda_permission_is_evaluated_for_the_api_gateway_service() -> None:
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": "apigateway.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
        "Condition": {"ArnLike": {"AWS:SourceArn": f"{PREFIX}/*"}},
    }

    def permitted(source_arn: str) -> bool:
        return evaluate_policy(
            {"Statement": [statement]},
            action="lambda:InvokeFunction",
            resource="arn:aws:lambda:us-east-1:123456789012:function:f",
            context={"aws:sourcearn": source_arn},
            principal_service="apigateway.amazonaws.com",
        ).allowed

    assert permitted(f"{PREFIX}/dev/GET/{{proxy+}}")
    assert not permitted(f"arn:aws:execute-api:us-east-1:{ACCOUNT}:otherapi00/dev/GET/")


# ----------------------------------------------------------------------------- events


def _event(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "method": "POST",
        "resource_path": "/{proxy+}",
        "resource_id": "res123",
        "event_path": "/demo/a",
        "context_path": "/demo/a",
        "headers": [("Host", "api.example.com"), ("Accept", "a"), ("Accept", "b")],
        "query": [("x", "1"), ("x", "2"), ("y", "")],
        "path_parameters": {"proxy": "a"},
        "stage": "dev",
        "stage_variables": {},
        "body": b'{"k": 1}',
        "binary": False,
        "domain_name": "api.example.com",
        "api_id": API,
        "account_id": ACCOUNT,
        "deployment_id": "dep1",
        "request_id": "req-1",
        "extended_request_id": "ext-1=",
        "request_time": 1700000000.25,
        "source_ip": "10.1.1.9",
        "vpce_id": VPCE,
        "vpc_id": "vpc-1",
    }
    arguments.update(overrides)
    return build_proxy_event(**arguments)


def test_proxy_event_has_the_v1_shape() -> None:
    event = _event()
    assert event["headers"] == {"Host": "api.example.com", "Accept": "b"}
    assert event["multiValueHeaders"]["Accept"] == ["a", "b"]
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["pathParameters"] == {"proxy": "a"}
    assert event["stageVariables"] is None
    assert event["body"] == '{"k": 1}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["requestTime"] == "14/Nov/2023:22:13:20 +0000"
    assert context["requestTimeEpoch"] == 1700000000250
    assert context["domainPrefix"] == "api"
    assert context["identity"]["sourceIp"] == "10.1.1.9"
    assert context["identity"]["vpceId"] == VPCE
    assert set(event) == {
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
        "body",
        "isBase64Encoded",
    }


def test_proxy_event_body_binary_and_empty() -> None:
    binary = _event(body=b"\x00\xff", binary=True)
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x00\xff"
    empty = _event(body=b"", query=[], path_parameters={})
    assert empty["body"] is None
    assert empty["isBase64Encoded"] is False
    assert empty["queryStringParameters"] is None
    assert empty["pathParameters"] is None


# ----------------------------------------------------------------------------- responses


def test_proxy_response_maps_status_headers_and_body() -> None:
    status, headers, body = proxy_response(
        {
            "statusCode": "201",
            "headers": {"X-One": 1, "Date": "yesterday", "Content-Length": "999"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(b"\x01\x02").decode(),
            "isBase64Encoded": True,
        }
    )
    assert status == 201
    assert body == b"\x01\x02"
    assert ("Set-Cookie", "a=1") in headers
    assert ("Set-Cookie", "b=2") in headers
    assert ("X-One", "1") in headers
    assert ("x-amzn-Remapped-Date", "yesterday") in headers
    assert all(name.lower() != "content-length" for name, _ in headers)
    assert ("Content-Type", "application/json") in headers


@pytest.mark.parametrize(
    "payload",
    [
        "just a string",
        {"body": "no status"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "unexpected": True},
        {"statusCode": 99},
        {"statusCode": True},
        {"statusCode": 200, "isBase64Encoded": "yes"},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        {"statusCode": 200, "headers": {"X": {"nested": 1}}},
        {"statusCode": 200, "multiValueHeaders": {"X": "not a list"}},
    ],
)
def test_malformed_proxy_responses_are_refused(payload: Any) -> None:
    with pytest.raises(MalformedProxyResponse):
        proxy_response(payload)


# ----------------------------------------------------------------------------- deployed stack

TEST_HANDLER = """\
import base64, json, os, time

def handler(event, context):
    path = event["path"]
    if path.endswith("/raise"):
        raise RuntimeError("boom")
    if path.endswith("/bad"):
        return {"statusCode": 200, "body": {"not": "a string"}}
    if path.endswith("/slow"):
        time.sleep(2)
    if path.endswith("/nap"):
        time.sleep(0.3)
    if path.endswith("/teapot"):
        return {
            "statusCode": 418,
            "headers": {"X-Custom": "1", "Server": "mine"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": "short and stout",
        }
    if path.endswith("/binary"):
        return {"statusCode": 200, "isBase64Encoded": True,
                "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(b"\\x00\\x01").decode()}
    return {"statusCode": 200, "body": json.dumps({"region": os.environ["AWS_REGION"], "event": event})}
"""


@dataclass
class Stack:
    lab: Lab
    sessions: SessionFactory
    deployment: Deployment
    test_api: str = ""
    test_function: str = ""

    def call(
        self,
        path: str,
        *,
        region: str = "us-east-1",
        method: str = "GET",
        host: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        source: str = "10.1.1.8",
        vpce_id: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        status, response_headers, data = self.lab.load_balancers.invoke_api(
            region,
            host or self.deployment.domain,
            method,
            path,
            headers or {"User-Agent": "pytest"},
            body,
            source,
            vpce_id,
        )
        return status, dict(response_headers), data


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", source)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    lab = Lab(REGIONS, speed=20.0).start()
    try:
        sessions = lab_sessions(lab.info)
        config = load_config({"regions": ",".join(REGIONS)}, environ={})
        deployment = StackSetDeployer(config, sessions).deploy()
        built = Stack(lab, sessions, deployment)
        _build_test_api(built)
        yield built
    finally:
        lab.stop()


def _build_test_api(stack: Stack) -> None:
    """A second private API on the same domain (base path "t"): /items, /items/{id} (1 s)."""
    region = stack.deployment.region("us-east-1")
    iam = stack.sessions.client("iam", "us-east-1")
    role = iam.create_role(
        RoleName="regiondrill-test-fn",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            }
        ),
    )["Role"]["Arn"]
    lam = stack.sessions.client("lambda", "us-east-1")
    function_arn = lam.create_function(
        FunctionName="regiondrill-test-fn",
        Runtime="python3.12",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": _zip(TEST_HANDLER)},
        Timeout=5,
    )["FunctionArn"]
    apigw = stack.sessions.client("apigateway", "us-east-1")
    policy = json.loads(json.dumps(TEMPLATE_POLICY).replace(VPCE, region.endpoint_id))
    api_id = apigw.create_rest_api(
        name="regiondrill-test",
        endpointConfiguration={"types": ["PRIVATE"], "vpcEndpointIds": [region.endpoint_id]},
        policy=json.dumps(policy),
    )["id"]
    # moto ignores binaryMediaTypes on create and appends a patch's value (AWS reads the path).
    apigw.update_rest_api(
        restApiId=api_id,
        patchOperations=[
            {
                "op": "add",
                "path": "/binaryMediaTypes/application~1octet-stream",
                "value": "application/octet-stream",
            }
        ],
    )
    root = next(r["id"] for r in apigw.get_resources(restApiId=api_id)["items"] if r["path"] == "/")
    items = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="items")["id"]
    item = apigw.create_resource(restApiId=api_id, parentId=items, pathPart="{id}")["id"]
    uri = (
        f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    )
    for resource, method, timeout in ((items, "GET", None), (item, "ANY", 1000)):
        apigw.put_method(
            restApiId=api_id, resourceId=resource, httpMethod=method, authorizationType="NONE"
        )
        extra = {"timeoutInMillis": timeout} if timeout else {}
        apigw.put_integration(
            restApiId=api_id,
            resourceId=resource,
            httpMethod=method,
            type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri=uri,
            **extra,
        )
    apigw.create_deployment(restApiId=api_id, stageName="v1")
    apigw.create_base_path_mapping(
        domainName=stack.deployment.domain, basePath="t", restApiId=api_id, stage="v1"
    )
    lam.add_permission(
        FunctionName="regiondrill-test-fn",
        StatementId="apigateway",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{api_id}/*",
    )
    stack.test_api = api_id
    stack.test_function = "regiondrill-test-fn"


def test_demo_returns_the_event_from_the_right_region(stack: Stack) -> None:
    for region in REGIONS:
        deployed = stack.deployment.region(region)
        source = f"10.{deployed.index}.1.9"
        status, headers, body = stack.call("/demo?q=1", region=region, source=source)
        assert status == 200, body
        payload = json.loads(body)
        assert payload["region"] == region
        event = payload["event"]
        assert (event["resource"], event["path"], event["httpMethod"]) == ("/", "/demo", "GET")
        assert event["queryStringParameters"] == {"q": "1"}
        context = event["requestContext"]
        assert context["stage"] == deployed.stage == "dev"
        assert context["apiId"] == deployed.api_id
        assert context["path"] == "/demo"
        assert context["domainName"] == stack.deployment.domain
        assert context["identity"]["sourceIp"] == source
        assert context["identity"]["vpceId"] == deployed.endpoint_id
        assert context["identity"]["vpcId"] == deployed.vpc_id
        assert event["headers"]["x-amzn-vpce-id"] == deployed.endpoint_id
        assert event["headers"]["X-Forwarded-For"] == source
        assert headers["x-amzn-RequestId"] == context["requestId"]
        assert headers["x-amz-apigw-id"] == context["extendedRequestId"]
        assert headers["Content-Type"] == "application/json"


def test_greedy_proxy_and_trailing_slash(stack: Stack) -> None:
    status, _, body = stack.call("/demo/anything/deeper")
    event = json.loads(body)["event"]
    assert status == 200
    assert event["resource"] == "/{proxy+}"
    assert event["pathParameters"] == {"proxy": "anything/deeper"}
    assert event["path"] == event["requestContext"]["path"] == "/demo/anything/deeper"
    status, _, body = stack.call("/demo/", method="POST", body=b"hello")
    event = json.loads(body)["event"]
    assert (status, event["resource"], event["body"]) == (200, "/", "hello")


def test_unmapped_paths_and_unknown_hosts_are_forbidden(stack: Stack) -> None:
    for path, host in (("/other", None), ("/", None), ("/demo", "nope.example.com")):
        status, headers, body = stack.call(path, host=host)
        assert (status, body) == (403, b'{"message":"Forbidden"}')
        assert headers["x-amzn-ErrorType"] == "ForbiddenException"


def test_the_apis_own_host_name_takes_the_stage_from_the_path(stack: Stack) -> None:
    deployed = stack.deployment.region("us-east-1")
    host = f"{deployed.api_id}.execute-api.us-east-1.amazonaws.com"
    status, _, body = stack.call("/dev/x/y", host=host)
    event = json.loads(body)["event"]
    assert status == 200
    assert (event["path"], event["requestContext"]["path"]) == ("/x/y", "/dev/x/y")
    assert event["requestContext"]["domainName"] == host
    assert stack.call("/prod/x", host=host)[0] == 403


def test_routes_and_methods_that_do_not_exist_lack_an_authentication_token(stack: Stack) -> None:
    status, _, body = stack.call("/t/items")
    assert status == 200
    assert json.loads(body)["event"]["resource"] == "/items"
    for method, path in (("POST", "/t/items"), ("GET", "/t"), ("GET", "/t/nothing")):
        status, headers, body = stack.call(path, method=method)
        assert (status, body) == (403, b'{"message":"Missing Authentication Token"}')
        assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_lambda_errors_and_malformed_responses_are_502(stack: Stack) -> None:
    for path in ("/t/items/raise", "/t/items/bad"):
        status, headers, body = stack.call(path)
        assert (status, body) == (502, b'{"message": "Internal server error"}')
        assert headers["x-amzn-ErrorType"] == "InternalServerErrorException"


def test_lambda_response_headers_status_and_binary_bodies(stack: Stack) -> None:
    status, headers, body = stack.lab.load_balancers.invoke_api(
        "us-east-1", stack.deployment.domain, "GET", "/t/items/teapot", {}, b"", "10.1.1.8"
    )
    assert (status, body) == (418, b"short and stout")
    assert ("Set-Cookie", "a=1") in headers
    assert ("Set-Cookie", "b=2") in headers
    assert ("x-amzn-Remapped-Server", "mine") in headers
    status, _, body = stack.call("/t/items/binary")
    assert (status, body) == (200, b"\x00\x01")
    status, _, body = stack.call(
        "/t/items/echo",
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
        body=b"\xff\x00",
    )
    event = json.loads(body)["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\x00"


def test_integration_timeout_is_504_while_the_function_runs_on(stack: Stack) -> None:
    started = time.monotonic()
    status, _, body = stack.call("/t/items/slow")
    elapsed = time.monotonic() - started
    assert (status, body) == (504, b'{"message": "Endpoint request timed out"}')
    assert 0.9 <= elapsed < 1.9  # the integration's 1000 ms, not the function's 2 s sleep
    # The invocation still holds its concurrency: with one reserved, the next is throttled
    # until the sleeping one returns.
    lam = stack.sessions.client("lambda", "us-east-1")
    lam.put_function_concurrency(FunctionName=stack.test_function, ReservedConcurrentExecutions=1)
    try:
        assert stack.call("/t/items")[0] == 500
        _wait_for(lambda: stack.call("/t/items")[0] == 200, timeout=3)
    finally:
        lam.delete_function_concurrency(FunctionName=stack.test_function)


def _wait_for(condition: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_throttled_function_is_500_until_concurrency_is_restored(stack: Stack) -> None:
    lam = stack.sessions.client("lambda", "us-east-1")
    name = stack.deployment.region("us-east-1").function_name
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        assert lam.get_function(FunctionName=name)["Concurrency"] == {
            "ReservedConcurrentExecutions": 0
        }
        status, headers, body = stack.call("/demo")
        assert (status, body) == (500, b'{"message": "Internal server error"}')
        assert headers["x-amzn-ErrorType"] == "InternalServerErrorException"
    finally:
        lam.delete_function_concurrency(FunctionName=name)
    assert "Concurrency" not in lam.get_function(FunctionName=name)
    assert stack.call("/demo")[0] == 200


def test_concurrency_beyond_the_lab_worker_cap_waits_but_reservations_throttle(
    stack: Stack,
) -> None:
    def burst(count: int) -> list[int]:
        with ThreadPoolExecutor(max_workers=count) as pool:
            return sorted(pool.map(lambda _: stack.call("/t/items/nap")[0], range(count)))

    # 12 at once exceeds the runtime's 8 workers per function, not AWS's 1000: all succeed.
    assert burst(12) == [200] * 12
    lam = stack.sessions.client("lambda", "us-east-1")
    lam.put_function_concurrency(FunctionName=stack.test_function, ReservedConcurrentExecutions=1)
    try:
        assert burst(2) == [200, 500]
    finally:
        lam.delete_function_concurrency(FunctionName=stack.test_function)


def test_reserving_most_of_the_account_concurrency_is_refused(stack: Stack) -> None:
    lam = stack.sessions.client("lambda", "us-east-1")
    name = stack.deployment.region("us-east-1").function_name
    with pytest.raises(
        lam.exceptions.InvalidParameterValueException, match=r"minimum value of \[100\]"
    ):
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=901)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=900)
    lam.delete_function_concurrency(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_concurrency(FunctionName="no-such-fn", ReservedConcurrentExecutions=1)


def test_resource_policy_denies_other_endpoints_until_restored(stack: Stack) -> None:
    # The test API carries the same policy as api.yaml. (The deployed API cannot be patched
    # through boto3 here: the lab's CloudFormation RestApi keeps Tags as a list, which
    # botocore fails to parse in UpdateRestApi's response.)
    apigw = stack.sessions.client("apigateway", "us-east-1")
    endpoint = stack.deployment.region("us-east-1").endpoint_id
    original = json.dumps(TEMPLATE_POLICY).replace(VPCE, endpoint)
    denying = original.replace(endpoint, "vpce-0aaaaaaaaaaaaaaaa")

    def set_policy(policy: str) -> None:
        apigw.update_rest_api(
            restApiId=stack.test_api,
            patchOperations=[{"op": "replace", "path": "/policy", "value": policy}],
        )
        apigw.create_deployment(restApiId=stack.test_api, stageName="v1")

    set_policy(denying)
    try:
        status, headers, body = stack.call("/t/items/x")
        assert status == 403
        assert headers["x-amzn-ErrorType"] == "AccessDeniedException"
        assert json.loads(body) == {
            "Message": (
                "User: anonymous is not authorized to perform: execute-api:Invoke on resource: "
                f"arn:aws:execute-api:us-east-1:********9012:{stack.test_api}/v1/GET/items/x "
                "with an explicit deny"
            )
        }
        # Only the Allow statement left, for another endpoint's VPC: an implicit deny.
        allow_other = json.loads(original)
        allow_other["Statement"] = [
            {**allow_other["Statement"][0], "Condition": {"StringEquals": {"aws:SourceVpc": "x"}}}
        ]
        set_policy(json.dumps(allow_other))
        status, _, body = stack.call("/t/items/x")
        assert status == 403
        assert not json.loads(body)["Message"].endswith("explicit deny")
    finally:
        set_policy(original)
    assert stack.call("/t/items/x")[0] == 200


def test_missing_lambda_permission_is_500(stack: Stack) -> None:
    lam = stack.sessions.client("lambda", "us-east-1")
    lam.remove_permission(FunctionName=stack.test_function, StatementId="apigateway")
    try:
        status, _, body = stack.call("/t/items")
        assert (status, body) == (500, b'{"message": "Internal server error"}')
    finally:
        lam.add_permission(
            FunctionName=stack.test_function,
            StatementId="apigateway",
            Action="lambda:InvokeFunction",
            Principal="apigateway.amazonaws.com",
            SourceArn=f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{stack.test_api}/*",
        )
    assert stack.call("/t/items")[0] == 200


def test_unsupported_runtime_fails_loudly(stack: Stack) -> None:
    lam = stack.sessions.client("lambda", "us-east-1")
    lam.update_function_configuration(FunctionName=stack.test_function, Runtime="nodejs20.x")
    try:
        status, _, body = stack.call("/t/items")
        assert status == 500
        message = json.loads(body)["message"]
        assert message.startswith("regiondrill lab: not modelled:")
        assert "nodejs20.x" in message
    finally:
        lam.update_function_configuration(FunctionName=stack.test_function, Runtime="python3.12")
    assert stack.call("/t/items")[0] == 200


def test_code_changes_take_effect(stack: Stack) -> None:
    lam = stack.sessions.client("lambda", "us-east-1")
    changed = TEST_HANDLER.replace('"region": os.environ', '"changed": True, "region": os.environ')
    lam.update_function_code(FunctionName=stack.test_function, ZipFile=_zip(changed))
    try:
        assert json.loads(stack.call("/t/items")[2])["changed"] is True
    finally:
        lam.update_function_code(FunctionName=stack.test_function, ZipFile=_zip(TEST_HANDLER))
    assert "changed" not in json.loads(stack.call("/t/items")[2])


@settings(max_examples=25, deadline=None)
@given(st.lists(_segment, min_size=1, max_size=4))
def test_every_path_below_demo_reaches_the_proxy_resource(
    stack: Stack, segments: list[str]
) -> None:
    status, _, body = stack.call("/demo/" + "/".join(segments))
    assert status == 200
    assert json.loads(body)["event"]["pathParameters"] == {"proxy": "/".join(segments)}
