"""Asynchronous CloudFormation stack engine for the lab, driving moto's resource models.

moto creates a whole stack synchronously inside CreateStack, emits only stack-level events,
turns a resource failure into an API error, and silently skips resource types it does not know
while reporting CREATE_COMPLETE. A harness tested against that would never exercise its waiting,
progress and failure reporting. This engine keeps moto's models (every resource is still created
by moto's ``create_from_cloudformation_json`` through its ``ResourceMap``) but behaves like AWS:

- CreateStack/DeleteStack return at once; resources are created in dependency order on a worker
  thread with per-resource CREATE_IN_PROGRESS / CREATE_COMPLETE / CREATE_FAILED events;
- a resource type neither moto nor the lab supports fails that resource (reason names the type)
  and the stack rolls back (ROLLBACK_COMPLETE, or CREATE_FAILED with OnFailure=DO_NOTHING);
- outputs appear only once the stack is complete; DescribeStackResources lists what exists;
- IAM resources need CAPABILITY_IAM / CAPABILITY_NAMED_IAM, unknown or missing parameters are
  rejected with AWS's ValidationError wording.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from xml.sax.saxutils import escape

from moto.cloudformation.models import Event, cloudformation_backends
from moto.cloudformation.models import Stack as MotoStack
from moto.cloudformation.parsing import clean_json, get_model_map
from moto.cloudformation.utils import generate_stack_id
from moto.ec2 import models as ec2_models
from moto.ec2.models.core import TaggedEC2Resource

from harness.lab.cloudformation import deleters
from harness.lab.cloudformation.graph import CircularDependency, creation_order
from harness.lab.gateway import Gateway, LabRequest, LabResponse, error_response

log = logging.getLogger(__name__)

NS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"
_IAM_TYPES = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::IAM::Policy": None,
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::AccessKey": None,
    "AWS::IAM::UserToGroupAddition": None,
}
_COMPLETE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"}

ChangeHook = Callable[[str], None]


class StackFailure(Exception):
    """A resource could not be created or deleted; carries the resource and the reason."""

    def __init__(self, logical_id: str, resource_type: str, reason: str, physical_id: str = ""):
        super().__init__(reason)
        self.logical_id = logical_id
        self.resource_type = resource_type
        self.reason = reason
        self.physical_id = physical_id


class Stack(MotoStack):
    """A moto Stack whose resources are created by the engine, one at a time, asynchronously.

    The class keeps moto's name on purpose: moto's response serialiser derives attribute
    aliases from the class name (``StackName`` -> ``name`` for a class called ``Stack``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.created: list[str] = []  # logical ids, in creation order
        self.order: list[str] = []
        self.operation_lock = threading.Lock()

    @property
    def stack_resources(self) -> Iterable[Any]:
        # moto's ResourceMap creates a resource when it is looked up: only list what exists.
        parsed = self.resource_map._parsed_resources
        return [parsed[name] for name in self.created if name in parsed]

    @property
    def outputs(self) -> list[dict[str, Any]] | None:
        if self.status not in _COMPLETE:
            return None
        return super().outputs

    def add_event(
        self,
        logical_id: str,
        physical_id: str,
        resource_type: str,
        status: str,
        reason: str | None = None,
    ) -> None:
        self.events.append(
            Event(
                stack_id=self.stack_id,
                stack_name=self.name,
                logical_resource_id=logical_id,
                physical_resource_id=physical_id,
                resource_type=resource_type,
                resource_status=status,
                resource_status_reason=reason,
                resource_properties=None,
            )
        )

    def set_status(self, status: str, reason: str | None = None) -> None:
        self.status = status
        self.add_event(self.name, self.stack_id, "AWS::CloudFormation::Stack", status, reason)


class StackEngine:
    """Answer CloudFormation's mutating stack operations for the lab."""

    def __init__(
        self,
        *,
        lock: threading.RLock,
        on_change: ChangeHook,
        supported: Callable[[str], bool] | None = None,
        workers: int = 8,
    ) -> None:
        self._lock = lock
        self._on_change = on_change
        self._supported = supported or (lambda resource_type: resource_type in get_model_map())
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-cfn")
        self._pending: set[Any] = set()

    def install(self, gateway: Gateway) -> None:
        gateway.overlay("cloudformation", "CreateStack", self.create_stack)
        gateway.overlay("cloudformation", "DeleteStack", self.delete_stack)
        for operation in ("UpdateStack", "CreateChangeSet", "ExecuteChangeSet", "CreateStackSet"):
            gateway.overlay("cloudformation", operation, self._unsupported)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until every queued stack operation has finished (tests, shutdown)."""
        for future in list(self._pending):
            future.result(timeout=timeout)

    # ------------------------------------------------------------------ API operations

    def _unsupported(self, request: LabRequest) -> LabResponse:
        return error_response(
            "query",
            400,
            "ValidationError",
            f"{request.operation} is not supported by the regiondrill lab; delete the stack "
            "and create it again",
        )

    def create_stack(self, request: LabRequest) -> LabResponse:
        params = request.form()
        backend = cloudformation_backends[_account(request)][request.region]
        name = params.get("StackName", "")
        if not name:
            return _validation("1 validation error detected: Value null at 'stackName'")
        if params.get("TemplateURL"):
            return _validation(
                "TemplateURL is not supported by the regiondrill lab; pass TemplateBody"
            )
        body = params.get("TemplateBody", "")
        try:
            template = MotoStack.parse_template(body)
        except Exception as exc:
            return _validation(f"Template format error: {exc}")
        if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
            return _validation(
                "Template format error: At least one Resources member must be defined."
            )
        if any(s.name == name for s in backend.stacks.values() if s.status != "DELETE_COMPLETE"):
            return error_response(
                "query", 400, "AlreadyExistsException", f"Stack [{name}] already exists"
            )
        parameters = _members(params, "Parameters", ("ParameterKey", "ParameterValue"))
        declared = template.get("Parameters") or {}
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            return _validation(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
        missing = sorted(
            key for key, spec in declared.items() if key not in parameters and "Default" not in spec
        )
        if missing:
            return _validation(f"Parameters: [{', '.join(missing)}] must have values")
        capabilities = set(_list(params, "Capabilities"))
        needed = _required_capability(template["Resources"])
        if (
            needed
            and needed not in capabilities
            and not (needed == "CAPABILITY_IAM" and "CAPABILITY_NAMED_IAM" in capabilities)
        ):
            return error_response(
                "query",
                400,
                "InsufficientCapabilitiesException",
                f"Requires capabilities : [{needed}]",
            )
        try:
            order = creation_order(template["Resources"])
        except CircularDependency as exc:
            return _validation(str(exc))
        tags = _members(params, "Tags", ("Key", "Value"))
        on_failure = params.get("OnFailure") or (
            "DO_NOTHING" if params.get("DisableRollback", "").lower() == "true" else "ROLLBACK"
        )
        stack_id = generate_stack_id(name, request.region, _account(request))
        try:
            stack = Stack(  # type: ignore[abstract]  # moto leaves CloudFormationModel hooks abstract
                stack_id=stack_id,
                name=name,
                template=body,
                parameters=parameters,
                account_id=_account(request),
                region_name=request.region,
                notification_arns=_list(params, "NotificationARNs"),
                tags=tags,
                role_arn=params.get("RoleARN"),
                cross_stack_resources=backend.exports,
                timeout_in_mins=int(params["TimeoutInMinutes"])
                if params.get("TimeoutInMinutes")
                else None,
            )
        except Exception as exc:  # moto's parameter / output validation
            return _validation(_reason(exc))
        stack.order = order
        _pin_get_azs(stack.template_dict, request.region)
        stack.status = "CREATE_IN_PROGRESS"
        stack.add_event(
            name, stack_id, "AWS::CloudFormation::Stack", "CREATE_IN_PROGRESS", "User Initiated"
        )
        backend.stacks[stack_id] = stack
        self._submit(stack, lambda: self._create(stack, backend, on_failure))
        return _xml(
            "CreateStack",
            f"<CreateStackResult><StackId>{escape(stack_id)}</StackId></CreateStackResult>",
        )

    def delete_stack(self, request: LabRequest) -> LabResponse:
        params = request.form()
        backend = cloudformation_backends[_account(request)][request.region]
        name = params.get("StackName", "")
        stack = backend.stacks.get(name) or next(
            (s for s in backend.stacks.values() if s.name == name), None
        )
        if stack is None or stack.status == "DELETE_COMPLETE":
            return _xml("DeleteStack", "")  # AWS: deleting a missing stack succeeds silently
        if not isinstance(stack, Stack):
            return None  # type: ignore[return-value]  # created by moto directly: moto deletes it
        if stack.status != "DELETE_IN_PROGRESS":
            # AWS reports DELETE_IN_PROGRESS as soon as DeleteStack returns.
            stack.set_status("DELETE_IN_PROGRESS", "User Initiated")
            self._submit(stack, lambda: self._delete(stack, backend, rollback=False))
        return _xml("DeleteStack", "")

    # ------------------------------------------------------------------ workers

    def _submit(self, stack: Stack, work: Callable[[], None]) -> None:
        def run() -> None:
            with stack.operation_lock:
                try:
                    work()
                except Exception:  # the engine must never die silently with a stack half-done
                    log.exception("lab CloudFormation worker failed for %s", stack.name)
                    with self._lock:
                        stack.set_status(
                            "CREATE_FAILED" if "CREATE" in stack.status else "DELETE_FAILED",
                            "internal lab error; see the lab log",
                        )

        future = self._pool.submit(run)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _create(self, stack: Stack, backend: Any, on_failure: str) -> None:
        resources = stack.template_dict["Resources"]
        resource_map = stack.resource_map
        with self._lock:
            resource_map._template = stack.template_dict
            resource_map._resource_json_map = resources
            resource_map.tags.update(
                {
                    "aws:cloudformation:stack-name": stack.name,
                    "aws:cloudformation:stack-id": stack.stack_id,
                }
            )
        try:
            for logical_id in stack.order:
                self._create_resource(stack, logical_id, resources[logical_id])
            with self._lock:
                for output, spec in (stack.template_dict.get("Outputs") or {}).items():
                    self._check_attributes(stack, output, "Output", spec)
        except StackFailure as failure:
            with self._lock:
                stack.add_event(
                    failure.logical_id,
                    failure.physical_id,
                    failure.resource_type,
                    "CREATE_FAILED",
                    failure.reason,
                )
            log.info("stack %s: %s failed: %s", stack.name, failure.logical_id, failure.reason)
            if on_failure == "DO_NOTHING":
                with self._lock:
                    stack.set_status(
                        "CREATE_FAILED",
                        f"The following resource(s) failed to create: [{failure.logical_id}]. ",
                    )
                return
            with self._lock:
                stack.set_status(
                    "ROLLBACK_IN_PROGRESS",
                    f"The following resource(s) failed to create: [{failure.logical_id}]. "
                    "Rollback requested by user.",
                )
            self._delete(stack, backend, rollback=True)
            if on_failure == "DELETE" and stack.status == "ROLLBACK_COMPLETE":
                self._delete(stack, backend, rollback=False)
            return
        with self._lock:
            stack.description = stack.template_dict.get("Description")
            stack.set_status("CREATE_COMPLETE")
            for export in stack.exports:
                backend.exports[export.name] = export
        self._on_change(stack.region_name)

    def _create_resource(self, stack: Stack, logical_id: str, spec: Mapping[str, Any]) -> None:
        resource_type = str(spec.get("Type", ""))
        resource_map = stack.resource_map
        with self._lock:
            condition = spec.get("Condition")
            if condition and not resource_map.lazy_condition_map[condition]:
                return
            stack.add_event(logical_id, "", resource_type, "CREATE_IN_PROGRESS")
            if not self._supported(resource_type):
                raise StackFailure(
                    logical_id,
                    resource_type,
                    f"Resource type {resource_type} is not supported by the regiondrill lab "
                    "(neither moto nor the lab models it)",
                )
            self._check_attributes(stack, logical_id, resource_type, spec.get("Properties"))
            try:
                instance = resource_map[logical_id]
            except Exception as exc:
                log.debug("creating %s failed", logical_id, exc_info=True)
                raise StackFailure(logical_id, resource_type, _reason(exc)) from exc
            if instance is None:
                raise StackFailure(
                    logical_id,
                    resource_type,
                    f"Resource type {resource_type} was not created by the lab",
                )
            stack.created.append(logical_id)
            physical_id = str(getattr(instance, "physical_resource_id", "") or "")
            if isinstance(instance, TaggedEC2Resource):
                resource_map.tags["aws:cloudformation:logical-id"] = logical_id
                ec2 = ec2_models.ec2_backends[stack.account_id][stack.region_name]
                ec2.create_tags([instance.physical_resource_id], resource_map.tags)
            stack.add_event(logical_id, physical_id, resource_type, "CREATE_COMPLETE")
        self._on_change(stack.region_name)

    def _check_attributes(
        self, stack: Stack, logical_id: str, resource_type: str, node: Any
    ) -> None:
        """Fail a resource whose Fn::GetAtt the lab cannot answer.

        moto logs and substitutes None for an attribute its model does not implement; a
        resource built from a None would be silently wrong, so fail it with the attribute named.
        """
        for target, attribute in _get_atts(node):
            source = stack.resource_map._parsed_resources.get(target)
            if source is None or isinstance(source, str):
                continue  # not a created resource: moto raises its own error
            try:
                value = source.get_cfn_attribute(attribute)
            except Exception:
                value = None
            if value is None:
                source_type = stack.template_dict["Resources"].get(target, {}).get("Type", "?")
                raise StackFailure(
                    logical_id,
                    resource_type,
                    f"Fn::GetAtt {target}.{attribute} is not supported by the lab's model of "
                    f"{source_type}",
                )

    def _delete(self, stack: Stack, backend: Any, *, rollback: bool) -> None:
        resources = stack.template_dict["Resources"]
        for logical_id in reversed(list(stack.created)):
            spec = resources[logical_id]
            resource_type = spec["Type"]
            with self._lock:
                instance = stack.resource_map._parsed_resources.get(logical_id)
                physical_id = str(getattr(instance, "physical_resource_id", "") or "")
                if spec.get("DeletionPolicy") == "Retain":
                    stack.add_event(logical_id, physical_id, resource_type, "DELETE_SKIPPED")
                    stack.created.remove(logical_id)
                    continue
                stack.add_event(logical_id, physical_id, resource_type, "DELETE_IN_PROGRESS")
                try:
                    props = clean_json(spec.get("Properties") or {}, stack.resource_map)
                    deleters.delete(
                        resource_type, instance, props, stack.account_id, stack.region_name
                    )
                except Exception as exc:
                    reason = _reason(exc)
                    stack.add_event(logical_id, physical_id, resource_type, "DELETE_FAILED", reason)
                    stack.set_status(
                        "ROLLBACK_FAILED" if rollback else "DELETE_FAILED",
                        f"The following resource(s) failed to delete: [{logical_id}]. ",
                    )
                    log.info("stack %s: deleting %s failed: %s", stack.name, logical_id, reason)
                    self._on_change(stack.region_name)
                    return
                stack.resource_map._parsed_resources.pop(logical_id, None)
                stack.created.remove(logical_id)
                stack.add_event(logical_id, physical_id, resource_type, "DELETE_COMPLETE")
            self._on_change(stack.region_name)
        with self._lock:
            if rollback:
                stack.set_status("ROLLBACK_COMPLETE")
                return
            for export in stack.exports if stack.status in _COMPLETE else []:
                backend.exports.pop(export.name, None)
            stack.set_status("DELETE_COMPLETE")
            backend.stacks.pop(stack.stack_id, None)
            backend.deleted_stacks[stack.stack_id] = stack


# ---------------------------------------------------------------------- helpers


def _pin_get_azs(node: Any, region: str) -> None:
    """Make ``Fn::GetAZs ""`` mean the stack's own region, as on AWS.

    moto resolves an empty region to us-east-1, which would put every region's subnets (and
    everything in them) in us-east-1's availability zones.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::GetAZs" and (value in ("", None) or value == {"Ref": "AWS::Region"}):
                node[key] = region
            else:
                _pin_get_azs(value, region)
    elif isinstance(node, list):
        for item in node:
            _pin_get_azs(item, region)


def _get_atts(node: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::GetAtt":
                if (
                    isinstance(value, list)
                    and len(value) == 2
                    and all(isinstance(v, str) for v in value)
                ):
                    found.append((value[0], value[1]))
                elif isinstance(value, str) and "." in value:
                    name, attribute = value.split(".", 1)
                    found.append((name, attribute))
            else:
                found.extend(_get_atts(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_get_atts(item))
    return found


def _account(request: LabRequest) -> str:
    from moto.core import DEFAULT_ACCOUNT_ID

    return DEFAULT_ACCOUNT_ID


def _members(params: Mapping[str, str], prefix: str, fields: tuple[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    index = 1
    while f"{prefix}.member.{index}.{fields[0]}" in params:
        out[params[f"{prefix}.member.{index}.{fields[0]}"]] = params.get(
            f"{prefix}.member.{index}.{fields[1]}", ""
        )
        index += 1
    return out


def _list(params: Mapping[str, str], prefix: str) -> list[str]:
    out = []
    index = 1
    while f"{prefix}.member.{index}" in params:
        out.append(params[f"{prefix}.member.{index}"])
        index += 1
    return out


def _required_capability(resources: Mapping[str, Any]) -> str | None:
    needed = None
    for spec in resources.values():
        resource_type = spec.get("Type") if isinstance(spec, Mapping) else None
        if resource_type in _IAM_TYPES:
            name_property = _IAM_TYPES[resource_type]
            if name_property and name_property in (spec.get("Properties") or {}):
                return "CAPABILITY_NAMED_IAM"
            needed = "CAPABILITY_IAM"
    return needed


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        # moto's models index required properties directly: a KeyError names the property.
        return f"Property {exc.args[0]} is required by the lab's model of this resource type"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    code = getattr(exc, "error_type", None) or getattr(exc, "code", None)
    if isinstance(code, str) and code and code not in message:
        return f"{message} (Service: {code})"
    return message


def _validation(message: str) -> LabResponse:
    return error_response("query", 400, "ValidationError", message)


def _xml(operation: str, result: str) -> LabResponse:
    return LabResponse.xml(
        f'<{operation}Response xmlns="{NS}">{result}<ResponseMetadata><RequestId>'
        f"{uuid.uuid4()}</RequestId></ResponseMetadata></{operation}Response>"
    )
