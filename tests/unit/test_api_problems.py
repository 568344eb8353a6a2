"""Validation errors in the words a Gemma4Deployment author reads (api.problems) and the core/v1 shapes of the
free-form fields (api.core_v1): exact messages, table by table."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gemma4_operator.api.core_v1 import (
    KEY_MESSAGE,
    NAME_MESSAGE,
    VALUE_MESSAGE,
    label_problems,
    name_problems,
    shape_problems,
)
from gemma4_operator.api.problems import quantity_hint, shown, validation_problems
from gemma4_operator.api.wire import parse_object

QUANTITY = ("is not a Kubernetes quantity: a number with a binary suffix Ki, Mi, Gi, Ti, Pi (or a decimal one k, M, "
            "G, T, P), e.g. 80Gi")


@pytest.mark.parametrize(("value", "hint"), [
    ("10GB", "; use 10Gi"), ("10gb", "; use 10Gi"), ("10 Gi", "; use 10Gi"), ("1.5TB", "; use 1.5Ti"),
    ("512mb", "; use 512Mi"), ("64kb", "; use 64Ki"), ("80gi", "; use 80Gi"), ("2PiB", "; use 2Pi"),
    ("ten", ""), ("-5Gi", ""), ("1e3", ""), ("Gi", ""),
])
def test_quantity_hint_suggests_the_binary_unit(value: str, hint: str) -> None:
    assert quantity_hint(value) == f"{value!r} {QUANTITY}{hint}"


@pytest.mark.parametrize(("value", "text"), [
    (True, "true (a boolean)"), (None, "null (nothing)"), ("4", "'4' (a string)"), (4.5, "4.5"), ({}, "a mapping"),
    ([1], "a list"), ("x" * 101, "'" + "x" * 100 + "'... (a string)"), (10 ** 200, "a 201-digit number"),
    (float("inf"), "inf"),
])
def test_shown_spells_values_as_yaml_does(value: Any, text: str) -> None:
    assert shown(value) == text


@pytest.mark.parametrize(("value", "problems"), [
    ([], []),
    ([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}, {"operator": "Exists"}], []),
    ([{"key": "a", "value": "b", "effect": "NoExecute", "tolerationSeconds": 30}], []),
    ({"key": "gpu"}, ["tolerations: expected a list, got a mapping"]),
    ([{"key": "gpu", "operator": "Exists", "value": "x"}],
     ["tolerations[0].value: must be empty when operator is Exists"]),
    ([{"value": "x"}], ["tolerations[0].operator: must be Exists when key is empty (which tolerates every taint)"]),
    ([{"key": "a", "tolerationSeconds": 5}],
     ["tolerations[0].effect: must be NoExecute when tolerationSeconds is set"]),
    ([{"key": "a", "tolerationSeconds": True, "effect": "NoExecute"}],
     ["tolerations[0].tolerationSeconds: expected a whole number, got true (a boolean)"]),
    ([{"key": "a", "Effect": "NoSchedule"}],
     ["tolerations[0].Effect: unknown field (not part of this object's schema: check the spelling and indentation)"]),
])
def test_tolerations(value: Any, problems: list[str]) -> None:
    assert shape_problems("tolerations", value) == problems


TERM = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}


@pytest.mark.parametrize(("value", "problems"), [
    ({}, []),
    ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [TERM]},
                       "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": TERM}]},
      "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
          {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone", "matchLabelKeys": ["rev"]}]}}, []),
    ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
     ["affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: required field is "
      "missing"]),
    ({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 101, "podAffinityTerm": {"topologyKey": ""}}]}},
     ["affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Input should be less "
      "than or equal to 100",
      "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey: "
      "String should have at least 1 character"]),
])
def test_affinity(value: Any, problems: list[str]) -> None:
    assert shape_problems("affinity", value) == problems


@pytest.mark.parametrize(("value", "problems"), [
    ({"secretKeyRef": {"name": "hf", "key": "token", "optional": True}}, []),
    ({"fieldRef": {"fieldPath": "status.podIP"}}, []),
    ({"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}, []),
    ({}, ["valueFrom: must set exactly one of secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef"]),
    ({"configMapKeyRef": {"name": "c"}}, ["valueFrom.configMapKeyRef.key: required field is missing"]),
    ({"secretKeyRef": {"name": "hf", "key": "token", "optional": "yes"}},
     ["valueFrom.secretKeyRef.optional: expected true or false, got 'yes' (a string)"]),
])
def test_env_value_from(value: Any, problems: list[str]) -> None:
    assert shape_problems("valueFrom", value) == problems


@pytest.mark.parametrize(("labels", "problems"), [
    ({"app": "chat", "example.com/tier": "gold", "a.b_c-d": "", "x": "A-1.b_2"}, []),
    ({"-app": "x"}, [f"labels.-app: '-app' is not a valid key: {KEY_MESSAGE}"]),
    ({"Example.com/x": "y"}, [f"labels.Example.com/x: 'Example.com/x' is not a valid key: {KEY_MESSAGE}"]),
    ({"a/b/c": "y"}, [f"labels.a/b/c: 'a/b/c' is not a valid key: {KEY_MESSAGE}"]),
    ({"k" * 64: "y"}, [f"labels.{'k' * 64}: '{'k' * 64}' is not a valid key: {KEY_MESSAGE}"]),
    ({"app": "chat bot"}, [f"labels.app: 'chat bot' is not a valid label value: {VALUE_MESSAGE}"]),
    ({"app": "v" * 64}, [f"labels.app: '{'v' * 64}' is not a valid label value: {VALUE_MESSAGE}"]),
])
def test_labels(labels: dict[str, str], problems: list[str]) -> None:
    assert label_problems("labels", labels) == problems


def test_annotations_take_any_value_within_256_kib_altogether() -> None:
    assert label_problems("annotations", {"note": "any text: at all\n", "example.com/x": "y" * 200_000},
                          values=False) == []
    assert label_problems("annotations", {"a": "x" * 140_000, "b": "y" * 140_000}, values=False) == [
        "annotations: more than 256 KiB altogether, the API server's limit"]


def test_names_a_pod_refers_to() -> None:
    assert name_problems({"serviceAccountName": "", "priorityClassName": "high.example-1"}) == []
    assert name_problems({"serviceAccountName": "Model_Server", "schedulerName": "s" * 254}) == [
        f"serviceAccountName: 'Model_Server' is not {NAME_MESSAGE}",
        f"schedulerName: '{'s' * 100}' is not {NAME_MESSAGE}"]


def _object(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment", "metadata": {"name": "a"},
            "spec": {"model": {"variant": "e2b"}, **spec}}


def test_parse_object_is_strict_as_the_api_server() -> None:
    with pytest.raises(ValidationError) as refused:
        parse_object(_object(replicas=True, serving={"concurrency": "4"}, model={"variant": "e2b",
                                                                                 "instructionTuned": 1}))
    assert validation_problems(refused.value) == [
        "spec.model.instructionTuned: expected true or false, got 1",
        "spec.serving.concurrency: expected a whole number, got '4' (a string)",
        "spec.replicas: expected a whole number, got true (a boolean)",
    ]


def test_parse_object_refuses_deep_nesting_where_it_starts() -> None:
    """The API server stores free-form fields as deep as a tenant nests them; JSON encoding is recursive."""
    deep: Any = 1
    for _ in range(5000):
        deep = {"a": deep}
    with pytest.raises(ValidationError) as refused:
        parse_object(_object(podTemplate={"spec": {"affinity": {"nodeAffinity": deep}}}))
    assert validation_problems(refused.value) == [
        "spec.podTemplate.spec.affinity.nodeAffinity.a.a.a: nested more than 64 levels deep"]
