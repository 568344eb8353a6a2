"""The per-Gemma4Deployment series: kept current on each reconcile, dropped when the object goes."""

from __future__ import annotations

from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.controller.handlers import object_state
from gemma4_operator.controller.metrics import Metrics, ObjectState
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.reconcile import status as observe

OBJ = {"namespace": "ml", "name": "chat"}


def state(**overrides: Any) -> ObjectState:
    values: dict[str, Any] = {"variant": "e4b", "engine": "vllm", "conditions": {"Ready": "False", "Degraded": "True"},
                              "replicas": 2, "ready_replicas": 1, "min_replicas": 1, "max_replicas": 4}
    return ObjectState(**{**values, **overrides})


def test_series_follow_the_object() -> None:
    m = Metrics()
    m.observe_object("ml", "chat", state())
    assert m.value("gemma4_operator_deployment_info", **OBJ, variant="e4b", engine="vllm") == 1
    assert m.value("gemma4_operator_deployment_condition", **OBJ, type="Degraded", status="True") == 1
    assert m.value("gemma4_operator_deployment_condition", **OBJ, type="Degraded", status="False") == 0
    assert m.has("gemma4_operator_deployment_condition", **OBJ, type="Degraded", status="Unknown")
    assert m.value("gemma4_operator_deployment_replicas", **OBJ) == 2
    assert m.value("gemma4_operator_deployment_ready_replicas", **OBJ) == 1
    assert m.value("gemma4_operator_deployment_min_replicas", **OBJ) == 1
    assert m.value("gemma4_operator_deployment_max_replicas", **OBJ) == 4
    assert not m.has("gemma4_operator_model_phase", **OBJ, phase="Ready")  # no status.model: no series

    m.observe_object("ml", "chat", state(engine="llamacpp", conditions={"Ready": "True"}, model_phase="Ready"))
    assert not m.has("gemma4_operator_deployment_info", **OBJ, variant="e4b", engine="vllm")
    assert m.value("gemma4_operator_deployment_info", **OBJ, variant="e4b", engine="llamacpp") == 1
    assert not m.has("gemma4_operator_deployment_condition", **OBJ, type="Degraded", status="True")
    assert m.value("gemma4_operator_model_phase", **OBJ, phase="Ready") == 1
    assert m.value("gemma4_operator_model_phase", **OBJ, phase="Downloading") == 0

    m.observe_condition("ml", "chat", "ScalingActive", "False")
    assert m.value("gemma4_operator_deployment_condition", **OBJ, type="ScalingActive", status="False") == 1
    m.observe_condition("ml", "never-reconciled", "ScalingActive", "True")
    assert not m.has("gemma4_operator_deployment_condition", namespace="ml", name="never-reconciled",
                     type="ScalingActive", status="True")

    m.observe_object("ml", "other", state())
    m.forget("ml", "chat")
    names = {s.name for f in m.registry.collect() for s in f.samples if s.labels.get("name") == "chat"}
    assert names == set()
    assert m.value("gemma4_operator_deployment_replicas", namespace="ml", name="other") == 2


def test_object_state_from_spec_plan_and_status() -> None:
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"},
                                                "autoscaling": {"minReplicaCount": 2, "maxReplicaCount": 5}})
    p = plan(spec, ClusterFacts(frozenset({"nvidia-l4"})))
    status = {"replicas": 3, "readyReplicas": 2, "model": {"phase": "Downloading"}, "phase": "Progressing",
              "conditions": [{"type": "Ready", "status": "False"}, {"type": "ScalingActive", "status": "True"}]}
    deployment = {"spec": {"replicas": 4}}  # the autoscaler's count, within 2..5
    got = object_state(spec, observe.PlanOutcome(p), status, deployment)
    assert got == ObjectState(variant=p.variant, engine=p.engine,
                              conditions={"Ready": "False", "ScalingActive": "True"}, replicas=3,
                              ready_replicas=2, min_replicas=2, max_replicas=5, model_phase="Downloading",
                              phase="Progressing", desired_replicas=4)
    fixed = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "replicas": 3})
    got = object_state(fixed, observe.PlanOutcome(None, "PlanFailed", "no"), {})
    assert (got.variant, got.engine, got.min_replicas, got.max_replicas, got.model_phase) == ("e4b", "auto", 3, 3, None)
    assert object_state(None, observe.PlanOutcome(None, "InvalidSpec"), {}).max_replicas == 0


def test_phase_and_desired_replicas_follow_status_and_go_with_the_object() -> None:
    m = Metrics()

    def sample(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, {"namespace": "ml", "name": "chat", **labels})

    m.observe_object("ml", "chat", state(phase="Degraded", desired_replicas=3))
    assert sample("gemma4_operator_deployment_phase", phase="Degraded") == 1
    assert sample("gemma4_operator_deployment_phase", phase="Ready") == 0
    assert sample("gemma4_operator_deployment_desired_replicas") == 3
    m.observe_object("ml", "chat", state(phase="Ready", desired_replicas=3))
    assert sample("gemma4_operator_deployment_phase", phase="Ready") == 1
    assert sample("gemma4_operator_deployment_phase", phase="Degraded") == 0
    m.forget("ml", "chat")
    assert sample("gemma4_operator_deployment_phase", phase="Ready") is None
    assert sample("gemma4_operator_deployment_desired_replicas") is None
