"""Bad input against the real API server (1.37; every test here also runs on the 1.29 floor) and the running
operator: the corpus of invalid and unfit Gemma4Deployments in tests/data/bad-input/cases.yaml, by who judges each
case.

* ``server``: the API server's OpenAPI validation (enums, types, minimum/maximum, lengths, item counts, patterns,
  required fields) and its own name check refuse the object: 422 Invalid, the field named in the causes and in
  the message, nothing stored.
* ``kubectl``: unknown fields. ``kubectl apply --server-side --validate=strict`` asks the server for strict field
  validation (``fieldValidation=Strict``, GA in 1.27): the server refuses the object and names the field. Without
  it (a plain create: the server's default is ``Warn``) the server prunes the field, answers with a warning, and
  the operator plans the object as if the user had not written the field.
* ``cel``: the CRD's CEL rules (``x-kubernetes-validations``, GA in 1.29): the server refuses each object with the
  rule's message, and the same rule of the generated CRD evaluated with cel-python (the unit tier's evaluator)
  refuses it with the same words. The operator's pydantic twin of each rule is covered in the unit tier.
* ``operator``: malformed free-form core/v1 fields (tolerations, affinity, env) the CRD's schema leaves open:
  stored by any server, refused by the operator: ``Planned=False`` InvalidSpec naming the field, no children.
* ``planner``: valid objects no plan fits: stored, ``Planned=False`` PlanFailed with the planner's words.

The operator-judged objects (operator, planner, and the kubectl cases created without strict validation) are
created together and waited for once (the ``judged`` fixture), so the module stays well under its 2-minute budget.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiException

from gemma4_operator.api import KIND
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_e2e import OperatorProcess, Rest, condition, wait_for
from tests.support.bad_input import Case, Judge, cases
from tests.support.crd_schema import cel_failures
from tests.tools.binaries import kubectl_path

pytestmark = [pytest.mark.e2e, pytest.mark.floor]

Obj = dict[str, Any]
OPERATOR_JUDGED: tuple[Judge, ...] = ("operator", "planner", "kubectl")
ABSENT = object()


def in_namespace(case: Case, namespace: str) -> Obj:
    return {**case.obj, "metadata": {**case.obj["metadata"], "namespace": namespace}}


def lookup(obj: Any, field: str) -> Any:
    """The value at ``spec.a[0].b`` in ``obj``, or ABSENT."""
    for part in field.replace("[", ".[").split("."):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(obj, list) or index >= len(obj):
                return ABSENT
            obj = obj[index]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return ABSENT
    return obj


@pytest.fixture(scope="module")
def bad_namespace(rest: Rest) -> Iterator[str]:
    name = f"bad-input-{uuid.uuid4().hex[:6]}"
    rest.post("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    rest.delete_path(f"/api/v1/namespaces/{name}")


@dataclass(frozen=True)
class Judged:
    """The operator-judged objects once the operator has reconciled all of them, and their Warning events."""

    objects: dict[str, Obj]
    warnings: dict[str, list[Obj]]
    children: dict[str, int]  # children (Deployment, Service, PVC, PDB) per object name


@pytest.fixture(scope="module")
def judged(rest: Rest, operator: OperatorProcess, bad_namespace: str) -> Judged:
    """Create every operator-judged case at once (the server stores each: it cannot judge them), then wait
    once until the operator has reconciled all of them and posted a Warning for each refusal."""
    batch = [c for judge in OPERATOR_JUDGED for c in cases(judge)]
    for case in batch:
        rest.create(in_namespace(case, bad_namespace))
    refused = {c.object_name for c in batch if c.judge != "kubectl"}

    def all_reconciled() -> tuple[dict[str, Obj], dict[str, list[Obj]]] | None:
        objects = {o["metadata"]["name"]: o for o in rest.objects(KIND, bad_namespace)}
        if len(objects) < len(batch) or not all(
                (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
                and condition(o, "Planned") for o in objects.values()):
            return None
        warnings: dict[str, list[Obj]] = {}
        for event in rest.objects("Event", bad_namespace):
            if event["type"] == "Warning" and event["involvedObject"].get("kind") == KIND:
                warnings.setdefault(event["involvedObject"]["name"], []).append(event)
        return (objects, warnings) if refused <= set(warnings) else None

    objects, warnings = wait_for(f"the operator to reconcile {len(batch)} bad-input objects", all_reconciled,
                                 timeout=90, interval=0.3, operator=operator)
    children = {name: sum(len(v) for v in rest.children(bad_namespace, name).values()) for name in objects}
    return Judged(objects, warnings, children)


# ---------------------------------------------------------------------------------------------------------------
# judged by the API server
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("server"), ids=str)
def test_server_refuses_with_the_field_named(case: Case, rest: Rest, g4d_crd: Obj, bad_namespace: str) -> None:
    assert g4d_crd
    with pytest.raises(ApiException) as refused:
        rest.create(in_namespace(case, bad_namespace))
    assert refused.value.status == 422, refused.value.body
    body = json.loads(refused.value.body or "{}")
    assert body["reason"] == "Invalid"
    fields = {c.get("field") for c in body["details"]["causes"]}
    assert case.field in fields, body["details"]["causes"]
    assert case.field in body["message"], body["message"]
    assert case.object_name not in {o["metadata"]["name"] for o in rest.objects(KIND, bad_namespace)}


# ---------------------------------------------------------------------------------------------------------------
# unknown fields: refused by the server's strict field validation; pruned (with a warning) without it
# ---------------------------------------------------------------------------------------------------------------


def kubectl_apply_strict(cp: ControlPlane, obj: Obj) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kubectl_path()), f"--kubeconfig={cp.kubeconfig_path}", "apply", "--server-side",
                           "--validate=strict", "-f", "-"], input=yaml.safe_dump(obj), capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("case", cases("kubectl"), ids=str)
def test_kubectl_strict_validation_refuses_an_unknown_field(case: Case, control_plane: ControlPlane, rest: Rest,
                                                            g4d_crd: Obj, bad_namespace: str) -> None:
    """The server itself refuses the file (strict field validation) and names the unknown field."""
    assert g4d_crd
    obj = in_namespace(case, bad_namespace)
    obj["metadata"]["name"] = f"{case.name}-kubectl"  # the case's own name is created by `judged`
    proc = kubectl_apply_strict(control_plane, obj)
    assert proc.returncode != 0, proc.stdout
    assert f".{case.field}: field not declared in schema" in proc.stderr, proc.stderr
    assert rest.get(KIND, bad_namespace, obj["metadata"]["name"]) is None


@pytest.mark.parametrize("case", cases("kubectl"), ids=str)
def test_without_strict_validation_an_unknown_field_is_pruned_and_planned_without(case: Case,
                                                                                  judged: Judged) -> None:
    """A plain create (the server's default field validation, Warn) stores the object without the field, and the
    operator plans it as if the field were not there (it cannot know)."""
    assert lookup(case.obj, case.field) is not ABSENT  # the case wrote it ...
    live = judged.objects[case.object_name]
    assert lookup(live, case.field) is ABSENT  # ... and the server dropped it
    planned = condition(live, "Planned")
    assert planned is not None and planned["status"] == "True", planned


# ---------------------------------------------------------------------------------------------------------------
# CEL rules: refused by the server with the rule's message, as cel-python does
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("cel"), ids=str)
def test_cel_rule_is_enforced_by_the_server_with_the_rules_message(case: Case, rest: Rest, g4d_crd: Obj,
                                                                   bad_namespace: str) -> None:
    assert g4d_crd
    [failure] = cel_failures(case.obj)  # the CRD's rule, evaluated with cel-python
    with pytest.raises(ApiException) as refused:
        rest.create(in_namespace(case, bad_namespace))
    assert refused.value.status == 422, refused.value.body
    body = json.loads(refused.value.body or "{}")
    assert body["reason"] == "Invalid"
    assert failure.message in body["message"], body["message"]
    assert any(failure.message in (c.get("message") or "") for c in body["details"]["causes"]), body
    assert rest.get(KIND, bad_namespace, case.object_name) is None


def assert_refused(judged: Judged, case: Case, reason: str) -> str:
    """The object's Planned=False message once it was refused for ``reason``, with phase Failed, a Warning
    event with the same reason, and no children."""
    live = judged.objects[case.object_name]
    planned = condition(live, "Planned")
    assert planned is not None
    assert (planned["status"], planned["reason"]) == ("False", reason), planned
    assert live["status"]["phase"] == "Failed"
    assert not live["status"].get("plan")
    assert {w["reason"] for w in judged.warnings[case.object_name]} == {reason}
    assert judged.children[case.object_name] == 0
    return str(planned["message"])


@pytest.mark.parametrize("case", cases("operator"), ids=str)
def test_malformed_free_form_field_is_stored_and_refused_by_the_operator(case: Case, judged: Judged) -> None:
    message = assert_refused(judged, case, "InvalidSpec")
    assert f": {case.field}: " in message or f"; {case.field}: " in message, message


@pytest.mark.parametrize("case", cases("planner"), ids=str)
def test_unfit_spec_is_stored_and_refused_by_the_planner(case: Case, judged: Judged) -> None:
    message = assert_refused(judged, case, "PlanFailed")
    for words in case.words:
        assert words in message, message
