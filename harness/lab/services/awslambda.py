"""Lambda overlay: reserved concurrency as AWS accounts it (the lab's Lambda throttle fault).

moto stores ``PutFunctionConcurrency`` values but accepts any of them, and ``GetFunction`` omits
``Concurrency`` when the reserved value is 0, which is exactly the value that throttles a
function. The lab applies AWS's account rule (the account's unreserved concurrency, 1000 minus
every function's reservation, must stay at least 100) and reports a reservation of 0.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from moto.awslambda.models import lambda_backends

from harness.lab.gateway import Gateway, LabRequest, LabResponse, error_response

if TYPE_CHECKING:
    from harness.lab.lab import Lab

# The default concurrent-executions quota of an account in a region, and the part of it that
# must stay unreserved.
ACCOUNT_CONCURRENCY_LIMIT = 1000
MIN_UNRESERVED_CONCURRENCY = 100


def _function(region: str, name: str, qualifier: str | None = None) -> Any:
    from harness.lab.lab import ACCOUNT_ID

    try:
        return lambda_backends[ACCOUNT_ID][region].get_function(unquote(name), qualifier)
    except Exception:  # moto's not-found exception: let moto answer with its own error
        return None


def install(gateway: Gateway, lab: Lab) -> None:
    def put_function_concurrency(request: LabRequest) -> LabResponse | None:
        name = request.path_params.get("FunctionName", "")
        function = _function(request.region, name)
        if function is None:
            return None
        try:
            requested = int(request.json()["ReservedConcurrentExecutions"])
        except (KeyError, TypeError, ValueError):
            return None  # moto (and botocore's own validation) report the bad value
        from harness.lab.lab import ACCOUNT_ID

        others = sum(
            int(f.reserved_concurrency)
            for f in lambda_backends[ACCOUNT_ID][request.region].list_functions()
            if f.reserved_concurrency not in (None, "")
            and f.function_name != function.function_name
        )
        if ACCOUNT_CONCURRENCY_LIMIT - others - requested < MIN_UNRESERVED_CONCURRENCY:
            return error_response(
                "rest-json",
                400,
                "InvalidParameterValueException",
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of "
                f"[{MIN_UNRESERVED_CONCURRENCY}].",
            )
        return None

    def get_function(request: LabRequest) -> LabResponse | None:
        assert request.forward is not None
        response = request.forward()
        if response.status != 200:
            return response
        qualifier = parse_qs(request.query).get("Qualifier", [None])[0]
        function = _function(request.region, request.path_params.get("FunctionName", ""), qualifier)
        if function is None or function.reserved_concurrency in (None, ""):
            return response
        document = json.loads(response.body)
        document["Concurrency"] = {
            "ReservedConcurrentExecutions": int(function.reserved_concurrency)
        }
        return LabResponse(response.status, json.dumps(document).encode(), response.headers)

    gateway.overlay("lambda", "PutFunctionConcurrency", put_function_concurrency)
    gateway.overlay("lambda", "GetFunction", get_function)
