"""Status from pod and Deployment fixtures: Degraded reasons and wording, conditions and their
transition times, phases, status patches and the events of transitions."""

from __future__ import annotations

from typing import Any

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan
from gemma4_operator.reconcile import status as observe
from gemma4_operator.render.children import Owner

OWNER = Owner("chat", "ml", "uid-1")
T0, T1, T2 = "2026-11-23T10:00:00Z", "2026-11-23T10:05:00Z", "2026-11-23T10:10:00Z"


def spec(**overrides: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"},
                                                "accelerator": {"type": "nvidia-l4"}, **overrides})


def l4_plan(s: Gemma4DeploymentSpec | None = None) -> Plan:
    return plan(s or spec(), ClusterFacts(frozenset({"nvidia-l4"})))


def pod(name: str = "chat-7d9f-abcde", *, containers: list[dict[str, Any]] | None = None,
        conditions: list[dict[str, Any]] | None = None, phase: str = "Running",
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = T0
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": containers or [],
                                         "conditions": conditions or []}}


def container(*, waiting: str | None = None, message: str = "", terminated: str | None = None,
              last: str | None = None, exit_code: int = 1, restarts: int = 0) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = {"reason": waiting, **({"message": message} if message else {})}
    if terminated:
        state["terminated"] = {"reason": terminated, "exitCode": exit_code}
    cs: dict[str, Any] = {"name": "server", "image": "vllm/vllm-openai:v0.32.0", "restartCount": restarts,
                          "state": state or {"running": {}}}
    if last:
        cs["lastState"] = {"terminated": {"reason": last, "exitCode": exit_code}}
    return cs


UNSCHEDULABLE_GPU = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": "0/4 nodes are available: 1 node(s) had untolerated taint, "
                                 "3 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available."}]


# ---------------------------------------------------------------------------------------
# Degraded: each reason detected and worded
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "reason", "words"), [
    (pod(containers=[container(waiting="CrashLoopBackOff", last="Error", exit_code=1, restarts=5)]),
     "CrashLoopBackOff", ["chat-7d9f-abcde", "container server is crash-looping", "restarts: 5",
                          "last exit code 1 (Error)"]),
    (pod(containers=[container(waiting="CrashLoopBackOff", last="OOMKilled", exit_code=137, restarts=3)]),
     "OOMKilled", ["container server was OOM-killed", "restarts: 3", "more memory than the pod's limit"]),
    (pod(containers=[container(terminated="OOMKilled", exit_code=137)]),
     "OOMKilled", ["OOM-killed"]),
    (pod(containers=[container(waiting="ImagePullBackOff",
                               message='Back-off pulling image "vllm/vllm-openai:v0.32.0"')]),
     "ImagePullBackOff", ["cannot pull image vllm/vllm-openai:v0.32.0", "Back-off pulling image"]),
    (pod(containers=[container(waiting="ErrImagePull", message="rpc error: code = NotFound desc = manifest unknown")]),
     "ImagePullBackOff", ["cannot pull image vllm/vllm-openai:v0.32.0", "manifest unknown"]),
    (pod(containers=[container(waiting="CreateContainerConfigError", message='secret "hf-token" not found')]),
     "CreateContainerConfigError", ['secret "hf-token" not found']),
    (pod(phase="Pending", conditions=UNSCHEDULABLE_GPU),
     "Unschedulable", ["cannot be scheduled: insufficient nvidia.com/gpu", "the plan needs 2 per replica",
                       "3 Insufficient nvidia.com/gpu"]),
    (pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                       "message": "0/2 nodes are available: 2 node(s) didn't match node affinity."}]),
     "Unschedulable", ["cannot be scheduled: 0/2 nodes are available: 2 node(s) didn't match node affinity."]),
], ids=["crash-loop", "oom-crash-loop", "oom-terminated", "image-pull-backoff", "err-image-pull", "config-error",
        "no-gpu", "affinity"])
def test_degraded_reason_detected_and_worded(fixture: dict[str, Any], reason: str, words: list[str]) -> None:
    fault = observe.degraded([fixture], gpus_per_replica=2)
    assert fault is not None
    assert fault.reason == reason
    for w in words:
        assert w in fault.message, (w, fault.message)


def test_healthy_loading_and_terminating_pods_are_not_faults() -> None:
    loading = pod(containers=[container()], conditions=[{"type": "Ready", "status": "False"}])
    gone = pod("old", containers=[container(waiting="CrashLoopBackOff", restarts=9)], deleting=True)
    assert observe.degraded([loading, gone]) is None
    assert observe.degraded([]) is None


def test_the_most_severe_fault_wins_and_counts_pods() -> None:
    pods = [pod("a", phase="Pending", conditions=UNSCHEDULABLE_GPU),
            pod("b", containers=[container(waiting="CrashLoopBackOff", restarts=2)]),
            pod("c", containers=[container(waiting="CrashLoopBackOff", restarts=7)])]
    fault = observe.degraded(pods)
    assert fault is not None and fault.reason == "CrashLoopBackOff"
    assert fault.message.startswith("2 of 3 pods: pod b:")


def test_long_scheduler_messages_are_clipped() -> None:
    noisy = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "x" * 5000}]
    fault = observe.degraded([pod(phase="Pending", conditions=noisy)])
    assert fault is not None and len(fault.message) <= observe.MAX_MESSAGE


# ---------------------------------------------------------------------------------------
# conditions, phase, transition times
# ---------------------------------------------------------------------------------------


def deployment(*, generation: int = 1, observed: int | None = 1, replicas: int = 1, updated: int = 1,
               ready: int = 0, spec_replicas: int | None = 1, conditions: list[dict[str, Any]] | None = None
               ) -> dict[str, Any]:
    status: dict[str, Any] = {"replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready,
                              "conditions": conditions or []}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"generation": generation},
            "spec": {} if spec_replicas is None else {"replicas": spec_replicas}, "status": status}


def compute(*, s: Gemma4DeploymentSpec | None = None, outcome: observe.PlanOutcome | None = None,
            dep: dict[str, Any] | None = None, pods: list[dict[str, Any]] | None = None,
            previous: dict[str, Any] | None = None, now: str = T0, generation: int = 1) -> dict[str, Any]:
    s = s or spec()
    outcome = outcome or observe.PlanOutcome(l4_plan(s))
    return observe.compute_status(owner=OWNER, generation=generation, spec=s, outcome=outcome, deployment=dep,
                                  pods=pods or [], previous=previous or {}, now=now)


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_fresh_object_all_conditions_present_in_order() -> None:
    st = compute(dep=deployment(observed=None, replicas=0, updated=0))
    assert [c["type"] for c in st["conditions"]] == ["Planned", "ModelReady", "Available", "Progressing", "Degraded",
                                                      "Ready"]
    c = conds(st)
    assert c["Planned"]["status"] == "True" and c["Planned"]["reason"] == "Fits"
    assert c["Planned"]["message"] == "e4b fp8 on 1x nvidia-l4 with vllm: 11.3 GiB weights + 6.4 GiB KV"
    assert c["Progressing"]["status"] == "True" and c["Progressing"]["reason"] == "RolloutInProgress"
    assert c["Ready"]["status"] == "False"
    assert all(x["lastTransitionTime"] == T0 and x["observedGeneration"] == 1 for x in st["conditions"])
    assert st["phase"] == "Progressing" and st["ready"] == "0/1" and st["gpus"] == "1x l4"
    assert st["endpoint"] == "http://chat.ml.svc:8000/v1"
    assert st["selector"] == "app.kubernetes.io/name=gemma4,app.kubernetes.io/instance=chat"


def test_model_loading_then_ready() -> None:
    loading = pod(containers=[container()], conditions=[{"type": "Ready", "status": "False"}])
    st = compute(dep=deployment(ready=0), pods=[loading])
    assert conds(st)["Progressing"]["reason"] == "ModelLoading"
    assert "1 loading the model" in conds(st)["Progressing"]["message"]
    assert st["phase"] == "Progressing"
    st2 = compute(dep=deployment(ready=1), previous=st, now=T1)
    c = conds(st2)
    assert c["Ready"]["status"] == "True" and c["Ready"]["reason"] == "Serving"
    assert c["Available"]["status"] == "True" and c["Progressing"]["status"] == "False"
    assert st2["phase"] == "Ready" and st2["ready"] == "1/1" and st2["readyReplicas"] == 1


def test_last_transition_time_moves_only_on_a_flip() -> None:
    st0 = compute(dep=deployment(ready=0), now=T0)
    st1 = compute(dep=deployment(ready=0), previous=st0, now=T1)  # nothing changed
    assert st1 == st0
    st2 = compute(dep=deployment(ready=1), previous=st1, now=T2)  # Available, Ready, Progressing flip
    before, after = conds(st1), conds(st2)
    assert after["Planned"]["lastTransitionTime"] == T0 and after["Degraded"]["lastTransitionTime"] == T0
    for flipped in ("Available", "Ready", "Progressing"):
        assert before[flipped]["status"] != after[flipped]["status"]
        assert after[flipped]["lastTransitionTime"] == T2
    # a new message with the same status keeps the time
    st3 = compute(s=spec(replicas=2), dep=deployment(ready=1, replicas=2, updated=2, spec_replicas=2),
                  previous=st2, now="2026-11-23T11:00:00Z", generation=2)
    assert conds(st3)["Available"]["message"] == "1/2 replicas ready"
    assert conds(st3)["Available"]["lastTransitionTime"] == T2
    assert conds(st3)["Planned"]["observedGeneration"] == 2


def test_conditions_of_other_owners_are_kept() -> None:
    foreign = {"type": "ScalingActive", "status": "True", "reason": "Metrics", "message": "",
               "lastTransitionTime": T0, "observedGeneration": 1}
    st = compute(dep=deployment(), previous={"conditions": [foreign]})
    assert st["conditions"][-1] == foreign


def test_degraded_phase_and_ready_reason() -> None:
    crash = pod(containers=[container(waiting="CrashLoopBackOff", restarts=3)])
    st = compute(dep=deployment(ready=0), pods=[crash])
    c = conds(st)
    assert st["phase"] == "Degraded"
    assert c["Degraded"]["status"] == "True" and c["Degraded"]["reason"] == "CrashLoopBackOff"
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "CrashLoopBackOff"


def test_progress_deadline_exceeded_is_degraded() -> None:
    dep = deployment(ready=0, conditions=[{"type": "Progressing", "status": "False",
                                           "reason": "ProgressDeadlineExceeded",
                                           "message": 'ReplicaSet "chat-7d9f" has timed out progressing.'}])
    st = compute(dep=dep)
    c = conds(st)
    assert c["Degraded"]["reason"] == "ProgressDeadlineExceeded" and st["phase"] == "Degraded"
    assert c["Progressing"]["status"] == "False"


def test_plan_failure_is_failed_with_the_planners_words() -> None:
    bad = spec(model={"variant": "31b"}, quantization="nvfp4", accelerator={"type": "nvidia-h100-80gb"})
    with pytest.raises(PlanError) as refused:
        plan(bad, ClusterFacts(frozenset({"nvidia-h100-80gb"})))
    outcome = observe.PlanOutcome(None, "PlanFailed", refused.value.one_line, refused.value.message)
    st = compute(s=bad, outcome=outcome, dep=None)
    c = conds(st)
    assert st["phase"] == "Failed" and st["plan"] is None and st["gpus"] == "" and st["endpoint"] == ""
    assert c["Planned"] == {"type": "Planned", "status": "False", "reason": "PlanFailed",
                            "message": refused.value.one_line, "lastTransitionTime": T0, "observedGeneration": 1}
    assert c["Ready"]["reason"] == "PlanFailed"
    events = observe.transition_events({}, st, outcome)
    assert [(e.type, e.reason) for e in events] == [("Warning", "PlanFailed")]
    assert events[0].message == refused.value.message
    assert observe.transition_events(st, compute(s=bad, outcome=outcome, previous=st, now=T1), outcome) == []


def test_a_refused_update_keeps_showing_the_plan_in_force() -> None:
    good = compute(dep=deployment(ready=1))
    outcome = observe.PlanOutcome(None, "PlanFailed", "does not fit", "does not fit\n- details")
    st = compute(outcome=outcome, dep=deployment(ready=1), previous=good, now=T1, generation=2)
    assert st["plan"] == good["plan"] and st["gpus"] == "1x l4"
    assert st["phase"] == "Failed" and conds(st)["Available"]["status"] == "True"


def test_autoscaled_desired_replicas_come_from_the_deployment() -> None:
    s = spec(autoscaling={"minReplicaCount": 1, "maxReplicaCount": 4})
    st = compute(s=s, dep=deployment(spec_replicas=3, replicas=3, updated=3, ready=2))
    assert st["ready"] == "2/3"
    assert compute(s=s, dep=None)["ready"] == "0/1"


def test_apply_problem_overrides_pod_faults() -> None:
    st = observe.compute_status(owner=OWNER, generation=1, spec=spec(), outcome=observe.PlanOutcome(l4_plan()),
                                deployment=deployment(), pods=[], previous={}, now=T0,
                                problem=observe.Fault("ApplyRejected", "Deployment.apps is invalid"))
    assert conds(st)["Degraded"]["reason"] == "ApplyRejected" and st["phase"] == "Degraded"


# ---------------------------------------------------------------------------------------
# patches and events
# ---------------------------------------------------------------------------------------


def test_status_patch_only_carries_changes() -> None:
    st = compute(dep=deployment())
    assert observe.status_patch(st, st) is None
    assert observe.status_patch({**st, "autoscaling": {"desiredReplicas": 2}}, st) is None  # not ours
    # from nothing: every field that has a value (a null one is absent already)
    assert observe.status_patch({}, st) == {k: v for k, v in st.items() if v is not None}
    changed = {**st, "readyReplicas": 1, "plan": None}
    assert observe.status_patch(st, changed) == {"readyReplicas": 1, "plan": None}


def test_transition_events() -> None:
    outcome = observe.PlanOutcome(l4_plan())
    fresh = compute(dep=deployment())
    assert [(e.type, e.reason) for e in observe.transition_events({}, fresh, outcome)] == [("Normal", "Planned")]
    ready = compute(dep=deployment(ready=1), previous=fresh, now=T1)
    assert [(e.type, e.reason) for e in observe.transition_events(fresh, ready, outcome)] == [("Normal", "Ready")]
    oom = pod(containers=[container(waiting="CrashLoopBackOff", last="OOMKilled", restarts=1)])
    degraded = compute(dep=deployment(ready=1), pods=[oom], previous=ready, now=T2)
    assert [(e.type, e.reason) for e in observe.transition_events(ready, degraded, outcome)] == [
        ("Warning", "OOMKilled"), ("Warning", "NotReady")]
    assert observe.transition_events(degraded, degraded, outcome) == []
    healed = compute(dep=deployment(ready=1), previous=degraded, now=T2)
    assert [(e.type, e.reason) for e in observe.transition_events(degraded, healed, outcome)] == [
        ("Normal", "Recovered"), ("Normal", "Ready")]


def test_event_object_shape() -> None:
    ev = observe.event_object(owner=OWNER, api_version="serving.gemma4.dev/v1alpha1", kind="Gemma4Deployment",
                              event=observe.EventSpec("Warning", "PlanFailed", "m" * 3000), now=T0, suffix="abc",
                              instance="pod-1")
    assert ev["metadata"] == {"name": "chat.abc", "namespace": "ml"}
    assert ev["involvedObject"]["uid"] == "uid-1" and ev["type"] == "Warning"
    assert len(ev["message"]) <= observe.MAX_MESSAGE and ev["count"] == 1
