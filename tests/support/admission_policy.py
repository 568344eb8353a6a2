"""Evaluate a ValidatingAdmissionPolicy the way the API server's admission plugin does, without one: its
matchConditions, then its variables in order, then each validation (its message or messageExpression), with
cel-python over the object after the CRD's defaulting and the policy's parameters.

cel-python implements standard CEL; Kubernetes adds the cel-go strings extension, of which the chart's policy
uses ``split`` only: it is supplied here with Go's strings.Split semantics (``"".split("\\n") == [""]``).
"""

from __future__ import annotations

import functools
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel

from tests.support.crd_schema import apply_defaults, crd_schema

Json = dict[str, Any]


class PolicyEvaluationError(AssertionError):
    """An expression failed to evaluate (the server would refuse with failurePolicy Fail, naming no rule)."""


def _split(text: celtypes.StringType, separator: celtypes.StringType) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(part) for part in str(text).split(str(separator))])


@functools.cache
def _program(expression: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(expression), functions={"split": _split})


def _evaluate(expression: str, activation: dict[str, Any], what: str) -> Any:
    result = _program(expression).evaluate(activation)
    if isinstance(result, Exception):
        raise PolicyEvaluationError(f"{what}: {result}\n{expression}")
    return result


def refusals(policy: Json, params: Json, obj: Json, old: Json | None = None) -> list[str]:
    """The message of every validation of ``policy`` that refuses ``obj`` (a CREATE, or an UPDATE from ``old``),
    in the policy's order; [] when it is admitted or the policy does not apply to the request."""
    spec = policy["spec"]
    schema = crd_schema()
    activation: dict[str, Any] = {
        "object": json_to_cel(apply_defaults(schema, obj)),
        "oldObject": json_to_cel(apply_defaults(schema, old) if old is not None else None),
        "params": json_to_cel(params),
        "request": json_to_cel({"operation": "CREATE" if old is None else "UPDATE"}),
    }
    for condition in spec.get("matchConditions", []):
        if not bool(_evaluate(condition["expression"], activation, f"matchCondition {condition['name']}")):
            return []
    variables: dict[celtypes.StringType, Any] = {}
    for variable in spec.get("variables", []):
        activation["variables"] = celtypes.MapType(variables)
        variables[celtypes.StringType(variable["name"])] = _evaluate(
            variable["expression"], activation, f"variable {variable['name']}")
    activation["variables"] = celtypes.MapType(variables)
    messages: list[str] = []
    for i, validation in enumerate(spec["validations"]):
        if bool(_evaluate(validation["expression"], activation, f"validation {i}")):
            continue
        if "messageExpression" in validation:
            messages.append(str(_evaluate(validation["messageExpression"], activation, f"messageExpression {i}")))
        else:
            messages.append(validation["message"])
    return messages
