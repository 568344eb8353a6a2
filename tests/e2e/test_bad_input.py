"""Bad input against the real API server (1.20.2) and the running operator: the corpus of invalid and unfit
Gemma4Deployments in tests/data/bad-input/cases.yaml, by who judges each case.

* ``server``: the API server's OpenAPI validation (enums, types, minimum/maximum, lengths, item counts, patterns,
  required fields) and its own name check refuse the object: 422 Invalid, the field named in the causes and in
  the message, nothing stored.
* ``kubectl``: unknown fields. A 1.20 server has no server-side field validation (``fieldValidation=Strict``
  came in 1.25, GA 1.27) and prunes them silently, so the object is stored without the field and planned as if
  the user had not written it. kubectl 1.37's ``apply --validate=strict`` refuses the file: the server does not
  offer field validation (no /openapi/v3), so kubectl validates on the client against the schema the server
  publishes at ``/openapi/v2`` and names the unknown field; only once the server has published the CRD's schema
  there, a moment after the CRD is created: before that, kubectl lets the field through.
* ``cel``: the CRD's CEL rules (``x-kubernetes-validations``: beta 1.25, GA 1.29). 1.20 predates CEL: the CRD is
  installed without the rules and the server **accepts and stores** these objects. So each case is checked twice:
  (a) the same rule of the generated CRD, evaluated with cel-python, refuses it with the rule's message, and
  (b) the running operator refuses it end to end: ``Planned=False``, reason InvalidSpec, phase Failed, a Warning
  event, no children, and a message that starts the problem with the field and says the rule's words, so a
  user on an old server still reads them (``kubectl get g4d -o yaml``, ``kubectl describe``).
* ``operator``: malformed free-form core/v1 fields (tolerations, affinity, env) the CRD's schema leaves open:
  stored by any server, refused by the operator: ``Planned=False`` InvalidSpec naming the field, no children.
* ``planner``: valid objects no plan fits: stored, ``Planned=False`` PlanFailed with the planner's words.

The operator-judged objects (cel, planner, and the kubectl cases applied without kubectl) are created together
and waited for once (the ``judged`` fixture), so the module stays well under its 2-minute budget.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiException

from gemma4_operator.api import KIND, VERSION
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_e2e import OperatorProcess, Rest, condition, wait_for
from tests.support.bad_input import Case, Judge, cases
from tests.support.crd_schema import cel_failures
from tests.tools.binaries import kubectl_path

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]
OPERATOR_JUDGED: tuple[Judge, ...] = ("cel", "operator", "planner", "kubectl")
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
    """Create every operator-judged case at once (the server must store each: it cannot judge them), then wait
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
    # 1.20's validator names a list item's field without its index (spec.serving.env.name for env[0].name)
    named = {case.field, re.sub(r"\[\d+\]", "", case.field)}
    fields = {c.get("field") for c in body["details"]["causes"]}
    assert named & fields, body["details"]["causes"]
    assert any(f in body["message"] for f in named & fields), body["message"]
    assert case.object_name not in {o["metadata"]["name"] for o in rest.objects(KIND, bad_namespace)}


# ---------------------------------------------------------------------------------------------------------------
# unknown fields: kubectl's strict validation; the server prunes them
# ---------------------------------------------------------------------------------------------------------------


def kubectl_apply_strict(cp: ControlPlane, obj: Obj) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kubectl_path()), f"--kubeconfig={cp.kubeconfig_path}", "apply", "--validate=strict",
                           "-f", "-"], input=yaml.safe_dump(obj), capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture(scope="module")
def published_schema(rest: Rest, g4d_crd: Obj) -> Obj:
    """The CRD's schema as the server publishes it at /openapi/v2, which is what kubectl validates with. The
    server publishes it a moment after the CRD is created; until then kubectl has no schema for the kind and
    `apply --validate=strict` lets every unknown field through (to be pruned)."""
    assert g4d_crd

    def published() -> Obj | None:
        definitions: Obj = rest.request("GET", "/openapi/v2")["definitions"]
        return next((d for name, d in definitions.items() if name.endswith(f"{VERSION}.{KIND}")), None)

    return wait_for("the CRD's schema in /openapi/v2", published, interval=0.5)


@pytest.mark.parametrize("case", cases("kubectl"), ids=str)
def test_kubectl_strict_validation_refuses_an_unknown_field(case: Case, control_plane: ControlPlane, rest: Rest,
                                                            published_schema: Obj, bad_namespace: str) -> None:
    assert published_schema["properties"]["spec"]
    parent, _, leaf = case.field.rpartition(".")
    obj = in_namespace(case, bad_namespace)
    obj["metadata"]["name"] = f"{case.name}-kubectl"  # the case's own name is created by `judged`
    proc = kubectl_apply_strict(control_plane, obj)
    assert proc.returncode != 0, proc.stdout
    assert f'ValidationError({KIND}.{parent}): unknown field "{leaf}"' in proc.stderr, proc.stderr
    assert rest.get(KIND, bad_namespace, obj["metadata"]["name"]) is None


@pytest.mark.parametrize("case", cases("kubectl"), ids=str)
def test_without_kubectl_an_unknown_field_is_pruned_and_planned_without(case: Case, judged: Judged) -> None:
    """What a 1.20 server does with a typo when nothing validates on the client: stores the object without the
    field, and the operator plans it as if the field were not there (it cannot know)."""
    assert lookup(case.obj, case.field) is not ABSENT  # the case wrote it ...
    live = judged.objects[case.object_name]
    assert lookup(live, case.field) is ABSENT  # ... and the server dropped it
    planned = condition(live, "Planned")
    assert planned is not None and planned["status"] == "True", planned


# ---------------------------------------------------------------------------------------------------------------
# CEL rules: stored by 1.20, refused by cel-python and by the running operator
# ---------------------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("case", cases("cel"), ids=str)
def test_cel_rule_is_enforced_by_cel_python_and_the_operator(case: Case, judged: Judged) -> None:
    [failure] = cel_failures(case.obj)  # (a) the CRD's rule, evaluated with cel-python
    message = assert_refused(judged, case, "InvalidSpec")  # (b) the operator, end to end
    assert failure.message in message
    assert f": {case.field}" in message or f"; {case.field}" in message, message
    assert failure.message in judged.warnings[case.object_name][0]["message"]


@pytest.mark.parametrize("case", cases("operator"), ids=str)
def test_malformed_free_form_field_is_stored_and_refused_by_the_operator(case: Case, judged: Judged) -> None:
    message = assert_refused(judged, case, "InvalidSpec")
    assert f": {case.field}: " in message or f"; {case.field}: " in message, message


@pytest.mark.parametrize("case", cases("planner"), ids=str)
def test_unfit_spec_is_stored_and_refused_by_the_planner(case: Case, judged: Judged) -> None:
    message = assert_refused(judged, case, "PlanFailed")
    for words in case.words:
        assert words in message, message
