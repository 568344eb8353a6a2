"""Observe, pure: the plan outcome, the live Deployment and its pods -> status and events.

No I/O and no clock: the caller passes ``now`` (RFC 3339). Conditions follow the Kubernetes
API conventions (type/status/reason/message/lastTransitionTime/observedGeneration); a
condition's lastTransitionTime only moves when its status flips. Degraded names what is wrong
with the pods (OOM kills, crash loops, image pulls, GPUs the scheduler cannot find) so users do
not have to read pod events; when the serving container's termination message (its last log lines,
``FallbackToLogsOnError``) matches one of the plan's engine's error signatures, Degraded carries
that diagnosis instead, saying what to change in the spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gemma4_operator.api import Condition, Gemma4DeploymentSpec
from gemma4_operator.api.adapters import ADAPTERS_READY
from gemma4_operator.api.limits import termination_message_tail
from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.engines.base import diagnose
from gemma4_operator.observe import speculative as drafting
from gemma4_operator.observe.admission import deployment_create_failure
from gemma4_operator.planner.plan import Plan
from gemma4_operator.reconcile.adapter_status import AdapterState, adapter_state
from gemma4_operator.render.activator import scales_to_zero
from gemma4_operator.render.children import GPU_RESOURCE, SERVING_CONTAINER, Owner, endpoint, selector_string

if TYPE_CHECKING:  # model_status reads pods and Jobs with get_path from here
    from gemma4_operator.reconcile.model_status import ModelState
    from gemma4_operator.reconcile.routing_status import RoutingState

PLANNED, AVAILABLE, PROGRESSING, DEGRADED, READY = "Planned", "Available", "Progressing", "Degraded", "Ready"
MODEL_READY = "ModelReady"  # its value comes from model_status.model_state
CONDITION_TYPES = (PLANNED, MODEL_READY, ADAPTERS_READY, AVAILABLE, PROGRESSING, DEGRADED, READY)
SCALING_ACTIVE = "ScalingActive"  # the built-in autoscaler's
ROUTING_READY = "RoutingReady"  # only while spec.routing asks for routing (reconcile.routing_status)
_ORDER = {t: i for i, t in enumerate((*CONDITION_TYPES, SCALING_ACTIVE, ROUTING_READY))}
# Status fields this module owns; anything else in status (autoscaling, other conditions) is left alone.
OWNED_FIELDS = ("observedGeneration", "phase", "conditions", "plan", "replicas", "readyReplicas",
                "selector", "endpoint", "gpus", "ready", "model", "adapters", "adaptersReady",
                "speculativeDecoding")

OOM_KILLED = "OOMKilled"
CRASH_LOOP = "CrashLoopBackOff"
IMAGE_PULL = "ImagePullBackOff"
CONFIG_ERROR = "CreateContainerConfigError"
UNSCHEDULABLE = "Unschedulable"
_IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
_SEVERITY = (OOM_KILLED, CRASH_LOOP, IMAGE_PULL, CONFIG_ERROR, UNSCHEDULABLE)
MAX_MESSAGE = 1024

Obj = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class PlanOutcome:
    """What the planner said: a plan, or a refusal with a one-line and a full message."""

    plan: Plan | None
    reason: str = "Fits"  # Fits | PlanFailed | PolicyViolation | InvalidSpec
    message: str = ""  # one line, for the condition
    detail: str = ""  # full text, for the Warning event

    @property
    def ok(self) -> bool:
        return self.plan is not None


@dataclasses.dataclass(frozen=True)
class Fault:
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class EventSpec:
    type: str  # Normal | Warning
    reason: str
    message: str


def get_path(obj: Obj | None, *path: str, default: Any = None) -> Any:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def plan_summary(p: Plan) -> str:
    """``31b nvfp4 on 1x nvidia-b200: 31.2 GiB weights + 96.0 GiB KV`` (per GPU; per pod on cpu)."""
    where = f"{p.gpus_per_replica}x {p.accelerator.name}" if p.accelerator.is_gpu else "cpu"
    return (f"{p.variant} {p.quantization} on {where} with {p.engine}: {p.memory.weights:.1f} GiB weights + "
            f"{p.memory.kv_cache:.1f} GiB KV")


# ---------------------------------------------------------------------------------------
# pods -> Degraded
# ---------------------------------------------------------------------------------------


def _rank(fault: Fault) -> int:
    """Lower is more severe; a diagnosed engine error (any other reason) is the most specific of all."""
    return _SEVERITY.index(fault.reason) if fault.reason in _SEVERITY else -1


def termination_message(cs: Obj) -> str:
    """The serving container's termination message while it is down: its state's if it terminated, else
    its last state's unless it has since become ready (the kubelet fills it from the last log lines
    with ``terminationMessagePolicy: FallbackToLogsOnError``), at most its last 4096 bytes."""
    current = str(get_path(cs, "state", "terminated", "message", default="") or "")
    if current:
        return termination_message_tail(current)
    if cs.get("ready") or not get_path(cs, "lastState", "terminated"):
        return ""
    return termination_message_tail(str(get_path(cs, "lastState", "terminated", "message", default="") or ""))


def engine_fault(pod_name: str, cs: Obj, plan: Plan | None) -> Fault | None:
    """The serving engine's own error, from its termination message and the engine's error signatures."""
    if plan is None or cs.get("name") != SERVING_CONTAINER:
        return None
    text = termination_message(cs)
    found = diagnose(engine_named(plan.engine).error_signatures(), text, plan) if text else None
    if found is None:
        return None
    restarts = int(cs.get("restartCount") or 0)
    return Fault(found.reason, f"pod {pod_name}: {plan.engine} failed to start (restarts: {restarts}): "
                               f"{found.message}. {plan.engine} said: {found.evidence}")


def _container_fault(pod_name: str, cs: Obj, plan: Plan | None = None) -> Fault | None:
    if (diagnosed := engine_fault(pod_name, cs, plan)) is not None:
        return diagnosed
    name = cs.get("name", "?")
    restarts = int(cs.get("restartCount") or 0)
    waiting = get_path(cs, "state", "waiting") or {}
    terminated = get_path(cs, "state", "terminated") or {}
    last = get_path(cs, "lastState", "terminated") or {}
    if terminated.get("reason") == OOM_KILLED or (last.get("reason") == OOM_KILLED and (
            waiting.get("reason") == CRASH_LOOP or restarts > 0)):
        return Fault(OOM_KILLED, f"pod {pod_name}: container {name} was OOM-killed (restarts: {restarts}); "
                                 "the engine needs more memory than the pod's limit")
    reason = waiting.get("reason")
    if reason == CRASH_LOOP:
        exit_info = ""
        if last:
            exit_info = f", last exit code {last.get('exitCode', '?')}"
            if last.get("reason"):
                exit_info += f" ({last['reason']})"
        return Fault(CRASH_LOOP, f"pod {pod_name}: container {name} is crash-looping "
                                 f"(restarts: {restarts}{exit_info})")
    if reason in _IMAGE_PULL_REASONS:
        detail = waiting.get("message") or reason
        return Fault(IMAGE_PULL, f"pod {pod_name}: cannot pull image {cs.get('image', '?')}: {detail}")
    if reason == CONFIG_ERROR:
        return Fault(CONFIG_ERROR, f"pod {pod_name}: container {name} cannot start: "
                                   f"{waiting.get('message') or reason}")
    return None


def _scheduling_fault(pod: Obj, gpus_per_replica: int) -> Fault | None:
    for cond in get_path(pod, "status", "conditions", default=[]) or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == UNSCHEDULABLE:
            name = get_path(pod, "metadata", "name", default="?")
            scheduler = str(cond.get("message") or "").strip()
            if f"insufficient {GPU_RESOURCE}" in scheduler.lower():
                need = f" (the plan needs {gpus_per_replica} per replica)" if gpus_per_replica else ""
                return Fault(UNSCHEDULABLE, f"pod {name} cannot be scheduled: insufficient {GPU_RESOURCE}{need}; "
                                            f"scheduler: {scheduler}")
            return Fault(UNSCHEDULABLE, f"pod {name} cannot be scheduled: {scheduler or 'no reason given'}")
    return None


def pod_fault(pod: Obj, gpus_per_replica: int = 0, plan: Plan | None = None) -> Fault | None:
    """The most severe problem of one pod, or None."""
    if get_path(pod, "metadata", "deletionTimestamp"):
        return None
    name = str(get_path(pod, "metadata", "name", default="?"))
    statuses = [*(get_path(pod, "status", "initContainerStatuses", default=[]) or []),
                *(get_path(pod, "status", "containerStatuses", default=[]) or [])]
    faults = [f for cs in statuses if (f := _container_fault(name, cs, plan)) is not None]
    if (sched := _scheduling_fault(pod, gpus_per_replica)) is not None:
        faults.append(sched)
    return min(faults, key=_rank) if faults else None


def degraded(pods: Sequence[Obj], gpus_per_replica: int = 0, plan: Plan | None = None) -> Fault | None:
    """The most severe fault over all pods, saying how many pods share it. With the plan, the serving
    containers' termination messages are matched against its engine's error signatures."""
    faults = [f for p in pods if (f := pod_fault(p, gpus_per_replica, plan)) is not None]
    if not faults:
        return None
    worst = min(faults, key=_rank)
    same = sum(1 for f in faults if f.reason == worst.reason)
    live = sum(1 for p in pods if not get_path(p, "metadata", "deletionTimestamp"))
    prefix = f"{same} of {live} pods: " if live > 1 else ""
    return Fault(worst.reason, _clip(prefix + worst.message))


def loading_pods(pods: Sequence[Obj]) -> int:
    """Pods running but not ready: the engine is downloading or loading the model."""
    count = 0
    for p in pods:
        if get_path(p, "metadata", "deletionTimestamp") or get_path(p, "status", "phase") != "Running":
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in get_path(p, "status", "conditions", default=[]) or [])
        count += not ready
    return count


# ---------------------------------------------------------------------------------------
# conditions
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConditionValue:
    """One condition as computed, before merge_conditions stamps times and the generation."""

    type: str
    ok: bool | None  # None: Unknown
    reason: str
    message: str

    @property
    def status(self) -> str:
        return "Unknown" if self.ok is None else ("True" if self.ok else "False")

    @property
    def true(self) -> bool:
        return self.ok is True


def _cond(type_: str, ok: bool | None, reason: str, message: str) -> ConditionValue:
    return ConditionValue(type_, ok, reason, _clip(message))


def desired_replicas(spec: Gemma4DeploymentSpec | None, deployment: Obj | None) -> int:
    """The replicas the object asks for now: spec.replicas, or the autoscaler's count within its bounds."""
    if spec is None:
        return int(get_path(deployment, "spec", "replicas", default=0) or 0)
    if spec.autoscaling is None:
        return spec.replicas
    live = get_path(deployment, "spec", "replicas")
    return int(live) if live is not None else spec.autoscaling.min_replica_count


def _rollout(deployment: Obj, desired: int) -> tuple[bool, str, str]:
    """(in progress, reason, message) from the Deployment's own status."""
    generation = get_path(deployment, "metadata", "generation")
    observed = get_path(deployment, "status", "observedGeneration")
    if generation is not None and (observed is None or int(observed) < int(generation)):
        return True, "RolloutInProgress", "the Deployment controller has not seen the newest pod template yet"
    for cond in get_path(deployment, "status", "conditions", default=[]) or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, "ProgressDeadlineExceeded", str(cond.get("message") or "rollout exceeded its deadline")
    updated = int(get_path(deployment, "status", "updatedReplicas", default=0) or 0)
    total = int(get_path(deployment, "status", "replicas", default=0) or 0)
    if updated < desired:
        return True, "RolloutInProgress", f"{updated}/{desired} replicas run the newest pod template"
    if total > desired:
        return True, "RolloutInProgress", f"{total - desired} old replicas are being removed"
    return False, "RolloutComplete", f"{desired} replicas run the newest pod template"


def _planned(p: Plan | None, outcome: PlanOutcome) -> ConditionValue:
    return _cond(PLANNED, True, "Fits", plan_summary(p)) if p is not None else \
        _cond(PLANNED, False, outcome.reason, outcome.message)


def _without_deployment(owner: Owner, p: Plan | None, model: ModelState | None) -> tuple[
        ConditionValue, ConditionValue]:
    if model is not None and not model.ready and not model.failed:
        # the Deployment is withheld until the download Job has filled the cache
        return (_cond(AVAILABLE, False, "NoDeployment", f"Deployment {owner.name} waits for the model download"),
                _cond(PROGRESSING, True, model.reason, model.message))
    available = _cond(AVAILABLE, False, "NoDeployment", "no serving Deployment: the plan failed" if p is None
                      else f"Deployment {owner.name} is not observed yet")
    progressing = _cond(PROGRESSING, p is not None, "Creating" if p is not None else "NotPlanned",
                        f"creating Deployment {owner.name}" if p is not None else "nothing to roll out")
    return available, progressing


SCALED_TO_ZERO = "ScaledToZero"


def _rollout_conditions(deployment: Obj, pods: Sequence[Obj], desired: int, ready: int) -> tuple[
        ConditionValue, ConditionValue]:
    """Available and Progressing from the Deployment's status and the pods still loading."""
    if desired == 0:
        available = _cond(AVAILABLE, False, SCALED_TO_ZERO, "0 replicas requested")
    elif ready >= 1:
        available = _cond(AVAILABLE, True, "ReplicasReady", f"{ready}/{desired} replicas ready")
    else:
        available = _cond(AVAILABLE, False, "NoReplicasReady", f"0/{desired} replicas ready")
    in_progress, reason, message = _rollout(deployment, desired)
    if not in_progress and reason == "RolloutComplete" and ready < desired:
        loading = loading_pods(pods)
        in_progress, reason = True, "ModelLoading" if loading else "WaitingForPods"
        message = (f"{ready}/{desired} replicas ready; {loading} loading the model" if loading
                   else f"{ready}/{desired} replicas ready; waiting for pods to start")
    return available, _cond(PROGRESSING, in_progress, reason, message)


def _aggregate(owner: Owner, planned: ConditionValue, available: ConditionValue, progressing: ConditionValue,
               degraded_c: ConditionValue, ready: str, autoscaled_zero: bool = False) -> tuple[ConditionValue, str]:
    """Ready (what `kubectl wait --for=condition=Ready` waits on) and the phase, from the others. An object the
    autoscaler took to zero is Ready: its Service answers (the activator holds a request and wakes a replica)."""
    if not planned.true:
        return _cond(READY, False, planned.reason, planned.message), "Failed"
    if degraded_c.true:
        return _cond(READY, False, degraded_c.reason, degraded_c.message), "Degraded"
    if autoscaled_zero and available.reason == SCALED_TO_ZERO and not progressing.true:
        return _cond(READY, True, SCALED_TO_ZERO, (
            f"scaled to zero while idle; {endpoint(owner)} still answers: the activator holds requests and wakes "
            "a replica")), "Ready"
    if not available.true:
        return _cond(READY, False, available.reason, available.message), (
            "Progressing" if progressing.true else "Pending")
    if progressing.true:
        return _cond(READY, False, progressing.reason, progressing.message), "Progressing"
    return _cond(READY, True, "Serving", f"{ready} replicas serving at {endpoint(owner)}"), "Ready"


def _model_condition(model: ModelState | None) -> ConditionValue:
    if model is None:
        return _cond(MODEL_READY, False, "NotPlanned", "no plan, no weights")
    return _cond(MODEL_READY, model.ready, model.reason, model.message)


def _drafter_fault(p: Plan | None, assessment: drafting.Assessment | None) -> Fault | None:
    """A drafter whose drafts are persistently rejected (observe/speculative.py's table)."""
    if p is None or p.drafter is None or assessment is None:
        return None
    message = drafting.ineffective_message(assessment, p.drafter.repo, load_catalog().drafters.acceptance)
    return Fault(drafting.INEFFECTIVE, message) if message is not None else None
def _adapters(spec: Gemma4DeploymentSpec | None, model: ModelState | None) -> AdapterState | None:
    if spec is None or model is None:
        return None
    return adapter_state(spec, model.verdicts, fetched=model.verdicts_final,
                         waiting="Downloading" if model.downloading else "Pending")


def _first_fault(problem: Fault | None, model: ModelState | None, deployment: Obj | None, pods: Sequence[Obj],
                 p: Plan | None, drafts: drafting.Assessment | None) -> Fault | None:
    """What Degraded reports, most pressing first: an apply problem, a failed download, pods the namespace's
    admission refused, pod faults, a useless drafter."""
    download_fault = Fault(model.reason, model.message) if model is not None and model.failed else None
    refused = deployment_create_failure(deployment)
    return problem or download_fault or (Fault(refused.reason, _clip(refused.message)) if refused else None) \
        or degraded(pods, p.gpus_per_replica if p is not None and p.accelerator.is_gpu else 0, p) \
        or _drafter_fault(p, drafts)


def compute_status(*, owner: Owner, generation: int, spec: Gemma4DeploymentSpec | None, outcome: PlanOutcome,
                   deployment: Obj | None, pods: Sequence[Obj], previous: Obj, now: str,
                   problem: Fault | None = None, model: ModelState | None = None,
                   routing: RoutingState | None = None,
                   drafts: drafting.Assessment | None = None) -> dict[str, Any]:
    """The status fields this operator owns (see OWNED_FIELDS), as JSON-ready values.

    ``problem`` is a fault found while applying (a child refused by the API server, or owned by
    another object); it takes precedence over a failed download and pod faults in Degraded. ``pods``
    are the serving pods; ``model`` the weights' state (model_status.model_state); ``routing`` RoutingReady and the
    endpoint (reconcile.routing_status), None when the spec asks for no routing; ``drafts`` the
    speculative drafter's acceptance (observe.speculative.assess), the last thing Degraded reports.
    """
    p = outcome.plan
    desired = desired_replicas(spec, deployment)
    ready = int(get_path(deployment, "status", "readyReplicas", default=0) or 0)
    fault = _first_fault(problem, model, deployment, pods, p, drafts)
    planned = _planned(p, outcome)
    if deployment is None:
        available, progressing = _without_deployment(owner, p, model)
    else:
        available, progressing = _rollout_conditions(deployment, pods, desired, ready)
        if fault is None and progressing.reason == "ProgressDeadlineExceeded":
            fault = Fault(progressing.reason, progressing.message)
    degraded_c = _cond(DEGRADED, True, fault.reason, fault.message) if fault is not None else \
        _cond(DEGRADED, False, "AsExpected", "no pod problems detected")
    ready_c, phase = _aggregate(owner, planned, available, progressing, degraded_c, f"{ready}/{desired}",
                                spec is not None and scales_to_zero(spec))
    # A refused update keeps showing the plan still in force while its Deployment runs.
    plan_status: Any = p.to_status().model_dump(by_alias=True, mode="json") if p is not None else (
        previous.get("plan") if deployment is not None else None)
    gpus = (p.gpu_label if p is not None else str(previous.get("gpus") or "")) if plan_status else ""
    adapters = _adapters(spec, model)
    adapters_c = [_cond(ADAPTERS_READY, adapters.ok, adapters.reason, adapters.message)] if adapters else []
    return {
        "observedGeneration": generation,
        "phase": phase,
        "conditions": _with_routing(merge_conditions(
            previous.get("conditions") or [], [planned, _model_condition(model), *adapters_c, available, progressing,
                                               degraded_c, ready_c, *([routing.condition] if routing else [])],
            generation, now),
            routing),
        "plan": plan_status,
        "replicas": int(get_path(deployment, "status", "replicas", default=0) or 0),
        "readyReplicas": ready,
        "selector": selector_string(owner.name),
        "endpoint": (routing.endpoint if routing else endpoint(owner)) if p is not None or deployment is not None
        else "",
        "gpus": gpus,
        "ready": f"{ready}/{desired}",
        # nulls kept: a merge patch deletes what is no longer known (an old download's throughput)
        "model": model.status.model_dump(by_alias=True, mode="json") if model is not None else None,
        "speculativeDecoding": drafts.to_status().model_dump(by_alias=True, mode="json")
        if drafts is not None and p is not None and p.drafter is not None else None,
        "adapters": [a.model_dump(by_alias=True, mode="json") for a in adapters.adapters] if adapters else None,
        "adaptersReady": adapters.ready if adapters else None,
    }


def _with_routing(conditions: list[dict[str, Any]], routing: RoutingState | None) -> list[dict[str, Any]]:
    """RoutingReady only while the spec asks for routing."""
    return conditions if routing is not None else [c for c in conditions if c.get("type") != ROUTING_READY]


def merge_conditions(previous: Sequence[Obj], new: Sequence[ConditionValue], generation: int,
                     now: str) -> list[dict[str, Any]]:
    """The one writer of ``status.conditions``: the ``new`` conditions replace those of their type,
    lastTransitionTime kept unless the status flipped; the others stay as they are. Known types come
    in a fixed order (unknown ones after, in their previous order), so the reconcile and the
    autoscaler, each merging its own, never reorder the list and never write for nothing."""
    before = {str(c.get("type")): dict(c) for c in previous if isinstance(c, Mapping)}
    merged = dict(before)
    for c in new:
        old = before.get(c.type)
        since = str(old.get("lastTransitionTime") or now) if old and old.get("status") == c.status else now
        merged[c.type] = Condition(type=c.type, status=c.status, reason=c.reason, message=c.message,
                                   last_transition_time=since,
                                   observed_generation=generation).model_dump(by_alias=True, mode="json")
    return sorted(merged.values(), key=lambda c: _ORDER.get(str(c.get("type")), len(_ORDER)))


def status_patch(previous: Obj, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch for ``/status`` with only the owned fields that changed; None if none."""
    patch: dict[str, Any] = {}
    for field in OWNED_FIELDS:
        if _without_nulls(previous.get(field)) != _without_nulls(new.get(field)):
            patch[field] = new.get(field)
    return patch or None


def _without_nulls(value: Any) -> Any:
    """As the API server stores a merge-patched value: null members are absent."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def condition(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return None


def _plan_identity(status: Obj) -> tuple[Any, ...]:
    p = status.get("plan") or {}
    return tuple(p.get(k) for k in ("engine", "quantization", "accelerator", "gpusPerReplica", "checkpoint",
                                     "maxModelLen", "image"))


def transition_events(previous: Obj, new: Obj, outcome: PlanOutcome) -> list[EventSpec]:
    """Kubernetes Events for the transitions worth telling a user about (never on a no-op)."""
    events: list[EventSpec] = []
    old_planned, new_planned = condition(previous, PLANNED), condition(new, PLANNED)
    assert new_planned is not None
    if new_planned["status"] == "False":
        if old_planned is None or old_planned.get("status") != "False" or \
                old_planned.get("message") != new_planned.get("message"):
            events.append(EventSpec("Warning", outcome.reason, _clip(outcome.detail or outcome.message)))
    elif old_planned is None or old_planned.get("status") != "True" or _plan_identity(previous) != _plan_identity(new):
        events.append(EventSpec("Normal", "Planned", str(new_planned.get("message", ""))))

    old_deg, new_deg = condition(previous, DEGRADED), condition(new, DEGRADED)
    assert new_deg is not None
    if new_deg["status"] == "True" and (old_deg is None or old_deg.get("status") != "True"
                                         or old_deg.get("reason") != new_deg.get("reason")):
        events.append(EventSpec("Warning", str(new_deg["reason"]), str(new_deg["message"])))
    elif new_deg["status"] == "False" and old_deg is not None and old_deg.get("status") == "True":
        events.append(EventSpec("Normal", "Recovered", f"no longer degraded ({old_deg.get('reason')})"))

    old_ready, new_ready = condition(previous, READY), condition(new, READY)
    assert new_ready is not None
    if new_ready["status"] == "True" and (old_ready is None or old_ready.get("status") != "True"):
        events.append(EventSpec("Normal", "Ready", str(new_ready["message"])))
    elif new_ready["status"] == "False" and old_ready is not None and old_ready.get("status") == "True":
        events.append(EventSpec("Warning", "NotReady", f"{new_ready.get('reason')}: {new_ready.get('message')}"))
    return events


def event_object(*, owner: Owner, api_version: str, kind: str, event: EventSpec, now: str, suffix: str,
                 instance: str) -> dict[str, Any]:
    """A core/v1 Event about the Gemma4Deployment (the name suffix keeps names unique)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{owner.name}.{suffix}", "namespace": owner.namespace},
        "involvedObject": {"apiVersion": api_version, "kind": kind, "name": owner.name,
                           "namespace": owner.namespace, "uid": owner.uid},
        "type": event.type,
        "reason": event.reason,
        "message": _clip(event.message),
        "source": {"component": "gemma4-operator"},
        "reportingComponent": "gemma4-operator",
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


# ---------------------------------------------------------------------------------------
# the built-in autoscaler's part of status: status.autoscaling and ScalingActive
# ---------------------------------------------------------------------------------------


def autoscaling_status(desired: int, last_scale_time: str,
                       metrics: Sequence[tuple[str, float | None, float]]) -> dict[str, Any]:
    """``current`` is left out when unknown: the API server prunes a null of a non-nullable field,
    and a status read back without it must compare equal (no write per tick)."""
    return {"desiredReplicas": desired, "lastScaleTime": last_scale_time,
            "metrics": [{"metricName": n, **({"current": c} if c is not None else {}), "target": t}
                        for n, c, t in metrics]}


def autoscaler_patch(previous: Obj, autoscaling: Mapping[str, Any], active: bool, reason: str, message: str,
                     generation: int, now: str) -> dict[str, Any] | None:
    """A merge patch for ``/status`` setting ``autoscaling`` and the ScalingActive condition (the
    other conditions kept as they are); None when nothing changes."""
    previous_conditions = [c for c in previous.get("conditions") or [] if isinstance(c, Mapping)]
    conditions = merge_conditions(previous_conditions, [_cond(SCALING_ACTIVE, active, reason, message)],
                                  generation, now)
    patch: dict[str, Any] = {}
    if conditions != [dict(c) for c in previous_conditions]:
        patch["conditions"] = conditions
    if previous.get("autoscaling") != dict(autoscaling):
        patch["autoscaling"] = dict(autoscaling)
    return patch or None
