"""Resource dependency graph of a CloudFormation template (Ref, GetAtt, Sub, DependsOn)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


class CircularDependency(ValueError):
    """The template's resources depend on each other in a cycle."""


def references(node: Any, names: frozenset[str]) -> set[str]:
    """Return the resource logical ids ``node`` refers to (only ids in ``names`` count)."""
    found: set[str] = set()
    for target in _walk(node):
        base = target.split(".", 1)[0]
        if base in names:
            found.add(base)
    return found


def _walk(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                if isinstance(value, list) and value and isinstance(value[0], str):
                    yield value[0]
                elif isinstance(value, str):
                    yield value
                else:
                    yield from _walk(value)
            elif key == "Fn::Sub":
                template, variables = (
                    (value, {}) if isinstance(value, str) else (value[0], value[1])
                )
                local = set(variables) if isinstance(variables, Mapping) else set()
                for var in _SUB_VAR.findall(template if isinstance(template, str) else ""):
                    if var.split(".", 1)[0] not in local:
                        yield var
                yield from _walk(variables)
            else:
                yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def dependencies(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """Return, for each resource, the resources it must be created after."""
    names = frozenset(resources)
    deps: dict[str, set[str]] = {}
    for name, spec in resources.items():
        wanted = references(spec.get("Properties", {}), names)
        depends_on = spec.get("DependsOn", [])
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        wanted.update(d for d in depends_on if d in names)
        wanted.discard(name)
        deps[name] = wanted
    return deps


def creation_order(resources: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Order resources so each comes after its dependencies; ties keep template order.

    Raises:
        CircularDependency: naming the resources involved.
    """
    deps = dependencies(resources)
    order: list[str] = []
    done: set[str] = set()
    pending = list(resources)
    while pending:
        ready = [name for name in pending if deps[name] <= done]
        if not ready:
            raise CircularDependency(
                "Circular dependency between resources: [" + ", ".join(sorted(pending)) + "]"
            )
        for name in ready:
            order.append(name)
            done.add(name)
        pending = [name for name in pending if name not in done]
    return order
