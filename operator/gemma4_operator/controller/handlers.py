"""kopf glue: gather inputs, call the pure core, execute its decisions. No sizing, rendering or
status logic lives here (that is ``reconcile.desired``, ``reconcile.status``,
``planner.cluster_facts``); the in-memory state (snapshots, child sources, caches) is ``context``.

Registered on a fresh ``kopf.OperatorRegistry`` by :func:`build_registry`:

- Every reconcile runs from the work queue (``controller.workqueue``): handlers only mark their object
  due and return, so no event body waits in memory for its object's turn; marks merge.
- Gemma4Deployment create/update/resume -> a full :func:`reconcile` (every child; ``kubectl scale``
  arrives here too: it changes ``spec.replicas``). No delete handler, so no finalizer: children
  go with the object through their ownerReferences. A temporary failure marks it again after a back-off.
- Watch mode (default): kopf indices over the owned kinds and their pods (label
  ``app.kubernetes.io/managed-by=gemma4-operator``, filtered server-side). A child event
  re-applies that one child if it vanished or drifted; pod and Deployment events refresh the
  status. Reconciles read nothing from the API: they compare against the indices.
- Poll mode: a kopf timer per object re-reads its children every ``--resync-interval``
  (kopf timers add kopf's finalizer, so deletion then needs the operator running).
- Nodes -> cluster facts (accelerator types) through a kopf index; objects whose plan failed
  are re-planned when the facts change.
- Built-in autoscaler (``autoscaling.backend: operator``), and the draft counters of a plan with an MTP
  drafter whatever scales it: an asyncio loop per object, started from the object's watch events and ended
  when the object goes or stops asking for it; each tick is ``controller.autoscaler_loop.autoscale``. Not a
  kopf timer or daemon: those add a finalizer.
- Startup discovery: the PodDisruptionBudget version, and whether KEDA's ScaledObjects are served
  (``backend: keda`` is Planned=False without them).
- Startup discovery of the Prometheus Operator's PodMonitors: each object gets one for its engine pods
  where they are served (``--engine-monitors auto``), else the pods carry prometheus.io/* annotations.
  PodMonitors are never deleted by the operator (they go with their object).

kopf's progress and diff-base live in ``serving.gemma4.dev/*`` annotations (the CRD's status
schema is strict), and no handler returns a value, so kopf never writes ``status``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import kopf

from gemma4_operator.api import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    AutoscalingBackend,
    Gemma4Deployment,
    Gemma4DeploymentSpec,
)
from gemma4_operator.catalog import load_catalog
from gemma4_operator.config import ChildrenMode, EngineMonitors, OperatorConfig
from gemma4_operator.controller import autoscaler_loop as autoscaler
from gemma4_operator.controller import routing as routing_io
from gemma4_operator.controller.context import (
    ACCELERATORS,
    CHILDREN,
    INSTANCE_LABEL,
    MANAGED_SELECTOR,
    PARENTS,
    PODS,
    RECONCILE_SLOTS,
    CachedDesired,
    ChildSource,
    Key,
    Obj,
    OperatorContext,
    Packed,
    Parent,
    child_snapshot,
    context_of,
    now_rfc3339,
    parent_snapshot,
    pod_snapshot,
    store,
)
from gemma4_operator.controller.kube import InvalidRequestError, RetryableApiError
from gemma4_operator.controller.metrics import ObjectState
from gemma4_operator.controller.workqueue import Mark, WorkQueue, writable
from gemma4_operator.observe import admission
from gemma4_operator.observe import speculative as drafting
from gemma4_operator.planner import cluster_facts
from gemma4_operator.planner.plan import ClusterFacts, Plan
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.reconcile import status as observe
from gemma4_operator.reconcile.model_status import Preflight, current_job, job_succeeded, model_state, preflight
from gemma4_operator.reconcile.routing_status import RoutingState
from gemma4_operator.render import ownership
from gemma4_operator.render.activator import is_activator_object
from gemma4_operator.render.children import MANAGER, image_volume_probe, image_volumes_refusal, keeps_image_volume
from gemma4_operator.render.download import download_id, is_download_pod, job_name

logger = logging.getLogger(__name__)

# (group/version, plural) as kopf selectors take them
# PodDisruptionBudgets without a version: kopf then watches the cluster's preferred one
# (policy/v1 since Kubernetes 1.21, policy/v1beta1 before), as :func:`detect_capabilities` renders.
# ScaledObjects (autoscaling.backend keda) only exist where KEDA is installed; kopf watches them
# once their CRD is served.
CHILD_RESOURCES = (("apps/v1", "deployments"), ("v1", "services"), ("v1", "persistentvolumeclaims"),
                   ("batch/v1", "jobs"), ("policy", "poddisruptionbudgets"), ("keda.sh/v1alpha1", "scaledobjects"),
                   ("networking.k8s.io/v1", "networkpolicies"))
KEDA = ("keda.sh/v1alpha1", "scaledobjects")
# The Prometheus Operator's PodMonitors (one per object for its engine pods) unless --engine-monitors off.
PODMONITORS = ("monitoring.coreos.com/v1", "podmonitors")
PDB_VERSIONS = ("policy/v1", "policy/v1beta1")
KEDA_RECHECK_S = 60.0  # at most this often, re-discover KEDA when an object with backend keda is reconciled
IMAGE_VOLUMES_RECHECK_S = 600.0  # at most this often, re-check image volumes while an oci:// object waits
POD_RESOURCE = ("v1", "pods")
INDEX_IDS = (PARENTS, CHILDREN, PODS, ACCELERATORS)
CONFLICT_RETRY_S = 10.0
# Seconds after which a download Job still without pods is looked at again for a FailedCreate Event: the Job
# controller records it asynchronously and, retrying, changes nothing on the Job that would bring a watch event.
ADMISSION_RECHECKS = (2.0, 6.0, 18.0)
# Failures whose Retry-After the server chose (429, 5xx): they hold every retry loop of the object (HELD_OFF).
SERVER_PACED = frozenset({"Throttled", "ServerError"})
HELD_OFF = "HeldOff"


# ---------------------------------------------------------------------------------------
# reconcile
# ---------------------------------------------------------------------------------------


async def _preflight(source: ChildSource, parent: Parent, model: Gemma4Deployment) -> Preflight | None:
    """The download Job's adapter verdicts, once it has succeeded (read only for an object with adapters)."""
    if not model.spec.model.adapters:
        return None
    job_key = rc.ChildKey("batch/v1", "Job", parent.key[0], job_name(parent.key[1]))
    job = ownership.owned_child(await source.children(parent, [job_key]), "Job", parent.uid)
    if job is None or not job_succeeded(job):
        return None  # no verdicts yet: the pods are not read
    return preflight(job, [p for p in await source.pods(parent) if is_download_pod(p)])


def _desired(ctx: OperatorContext, parent: Parent, model: Gemma4Deployment, facts: ClusterFacts,
             previous: Mapping[str, Any], verdicts: Preflight | None) -> rc.Desired:
    """Plan + render, cached per object while spec, facts, the pinned accelerator and the adapters' verdicts
    are unchanged."""
    keep = rc.keep_accelerator(model.spec.accelerator.type, previous, parent.generation)
    fingerprint = rc.content_hash({"uid": parent.uid, "name": parent.key, "spec": parent.body.get("spec"),
                                   "facts": sorted(facts.accelerator_types), "keep": keep, "preflight": verdicts})
    cached = ctx.desired_cache.get(parent.key)
    if cached is not None and cached.fingerprint == fingerprint:
        return cached.desired()
    desired = rc.desired_state(model, parent.uid, facts, ctx.config, ctx.render_options, keep=keep,
                               preflight=verdicts)
    p = desired.plan
    ctx.metrics.plans.labels(variant=model.spec.model.variant.value,
                             engine=p.engine if p else model.spec.engine.value,
                             quantization=p.quantization if p else model.spec.quantization.value,
                             outcome="fits" if p else "failed").inc()
    ctx.desired_cache[parent.key] = CachedDesired.of(fingerprint, desired)
    return desired


def _outcome(desired: rc.Desired | None, invalid: rc.InvalidObjectError | None) -> observe.PlanOutcome:
    if invalid is not None:
        return observe.PlanOutcome(None, "InvalidSpec", invalid.message, invalid.message)
    assert desired is not None
    if desired.error is not None:
        return observe.PlanOutcome(None, desired.error.reason, desired.error.one_line, desired.error.message)
    return observe.PlanOutcome(desired.plan)


async def _post_events(ctx: OperatorContext, parent: Parent, events: Iterable[observe.EventSpec]) -> None:
    """Best effort: a failed Event never fails a reconcile."""
    for ev in events:
        body = observe.event_object(owner=parent.owner, api_version=API_VERSION, kind=KIND, event=ev,
                                    now=now_rfc3339(), suffix=uuid.uuid4().hex[:16], instance=ctx.instance)
        try:
            await asyncio.to_thread(ctx.kube.create_event, body)
            ctx.metrics.events.labels(type=ev.type, reason=ev.reason).inc()
        except (RetryableApiError, InvalidRequestError) as e:
            logger.warning("could not post event %s for %s/%s: %s", ev.reason, *parent.key, e)


def object_state(spec: Gemma4DeploymentSpec | None, outcome: observe.PlanOutcome, status: Mapping[str, Any],
                 deployment: Obj | None = None) -> ObjectState:
    """The per-object metrics of one Gemma4Deployment from its spec, plan, (merged) status and Deployment."""
    p = outcome.plan
    variant = p.variant if p is not None else (spec.model.variant.value if spec is not None else "")
    engine = p.engine if p is not None else (spec.engine.value if spec is not None else "")
    if spec is None:
        low = high = 0
    elif spec.autoscaling is not None:
        low, high = spec.autoscaling.min_replica_count, spec.autoscaling.max_replica_count
    else:
        low = high = spec.replicas
    conditions = {str(c["type"]): str(c.get("status", "Unknown")) for c in status.get("conditions") or []
                  if isinstance(c, Mapping) and c.get("type")}
    model = status.get("model")
    model_phase = model.get("phase") if isinstance(model, Mapping) else None
    return ObjectState(variant=variant, engine=engine, conditions=conditions,
                       replicas=int(status.get("replicas") or 0), ready_replicas=int(status.get("readyReplicas") or 0),
                       min_replicas=low, max_replicas=high, model_phase=str(model_phase) if model_phase else None,
                       phase=str(status["phase"]) if status.get("phase") else None,
                       desired_replicas=observe.desired_replicas(spec, deployment))


async def _publish(ctx: OperatorContext, parent: Parent, spec: Any, outcome: observe.PlanOutcome,
                   live: Sequence[Obj], pods: Sequence[Obj], previous: Mapping[str, Any],
                   problem: observe.Fault | None, extra_events: Sequence[observe.EventSpec],
                   routing: RoutingState | None = None) -> None:
    deployment = ownership.owned_child(live, "Deployment", parent.uid, parent.key[1])
    downloads: list[Obj] = []
    serving: list[Obj] = []
    for pod in pods:
        if not is_activator_object(pod):
            (downloads if is_download_pod(pod) else serving).append(pod)
    job = ownership.owned_child(live, "Job", parent.uid)
    model = model_state(outcome.plan, spec, job, downloads, deployment,
                        observe.loading_pods(serving)) if outcome.plan is not None else None
    if problem is None and outcome.plan is not None:
        problem = await _job_refusal(ctx, parent.key, current_job(download_id(outcome.plan, spec), job), downloads)
    new = observe.compute_status(owner=parent.owner, generation=parent.generation, spec=spec, outcome=outcome,
                                 deployment=deployment, pods=serving, previous=previous, now=now_rfc3339(),
                                 problem=problem, model=model, routing=routing,
                                 drafts=_drafts(ctx, parent, outcome.plan))
    patch = observe.status_patch(previous, new)
    if patch is not None:
        await asyncio.to_thread(ctx.kube.patch_status, *parent.key, patch)
        ctx.metrics.status_patches.inc()
        merged = {k: v for k, v in {**previous, **new}.items() if v is not None}
        ctx.remember_status(parent, merged)
    ctx.metrics.observe_object(*parent.key, object_state(spec, outcome, {**previous, **new}, deployment))
    await _post_events(ctx, parent, [*extra_events, *observe.transition_events(previous, new, outcome)])


async def _job_refusal(ctx: OperatorContext, key: Key, job: Mapping[str, Any] | None,
                       pods: Sequence[Obj]) -> observe.Fault | None:
    """The download Job's pods refused by the namespace's admission: the Job controller says so only in an
    Event, read while the Job has no pod at all. Best effort: a failed read leaves the status as it is. Not
    found yet: counted, for _process to look again (ADMISSION_RECHECKS)."""
    if job is None or not admission.job_may_be_refused(job, pods):
        ctx.admission_checks.pop(key, None)
        return None
    meta = job.get("metadata") or {}
    try:
        events = await asyncio.to_thread(ctx.kube.list, "v1", "Event", str(meta.get("namespace")),
                                         field_selector=f"involvedObject.name={meta.get('name')},"
                                                        f"reason={admission.FAILED_CREATE}")
    except (RetryableApiError, InvalidRequestError) as e:
        logger.warning("could not read the events of Job %s/%s: %s", meta.get("namespace"), meta.get("name"), e)
        return None
    refused = admission.job_create_failure(job, pods, events)
    if refused is None:
        ctx.admission_checks[key] = ctx.admission_checks.get(key, 0) + 1
        return None
    ctx.admission_checks.pop(key, None)
    return observe.Fault(refused.reason, refused.message)


def _applied_event(applied: Sequence[tuple[Obj, str]]) -> list[observe.EventSpec]:
    if not applied:
        return []
    parts = [f"{'created' if reason == 'missing' else 'updated'} {c['kind']} {c['metadata']['name']}"
             + (f" ({reason})" if reason.startswith("drifted") else "") for c, reason in applied]
    return [observe.EventSpec("Normal", "Applied", ", ".join(parts))]


async def reconcile(ctx: OperatorContext, parent: Parent, source: ChildSource, facts: ClusterFacts,
                    *, trigger: str, only: Collection[tuple[str, str]] | None = None) -> None:
    """Bring one Gemma4Deployment's children and status up to date.

    ``only`` limits which children may be written: None (all, for spec changes and resyncs),
    a list of (kind, name) for a child event, or empty for pod events (status only).
    Raises RetryableApiError (temporary) or kopf.PermanentError (the object or a rendered child is
    invalid; the status says why).
    """
    if parent.deleting:
        return
    async with ctx.lock(parent.key), ctx.slots:
        started, result = time.monotonic(), "error"
        try:
            _respect_hold(ctx, parent.key)
            result = await _reconcile_locked(ctx, parent, source, facts, only)
        except RetryableApiError as e:
            result = "retry"
            ctx.metrics.reconcile_errors.labels(reason=e.reason).inc()
            if e.reason in SERVER_PACED and e.retry_after:
                ctx.hold_until[parent.key] = time.monotonic() + e.retry_after
            raise
        except kopf.PermanentError as e:
            result = "invalid"
            ctx.metrics.reconcile_errors.labels(reason=getattr(e, "reason", "Invalid")).inc()
            raise
        finally:
            ctx.metrics.reconciles.labels(trigger=trigger, result=result).inc()
            ctx.metrics.reconcile_duration.labels(trigger=trigger).observe(time.monotonic() - started)


def _respect_hold(ctx: OperatorContext, key: Key) -> None:
    """An object is reconciled by two retry loops (kopf's for its handlers, ours for watch-triggered repairs):
    when the server told one of them to wait (Retry-After), the other waits as long instead of asking at once."""
    wait = ctx.hold_until.get(key, 0.0) - time.monotonic()
    if wait > 0:
        raise RetryableApiError(f"the API server asked to wait {wait:.1f}s more (Retry-After)", HELD_OFF, wait)


@dataclasses.dataclass
class _Sync:
    """What writing one object's children did: applied (child, reason), a refusal, the children it looked at
    and the name conflicts it found among them."""

    by_name: dict[tuple[Any, Any], Obj]
    applied: list[tuple[Obj, str]] = dataclasses.field(default_factory=list)
    problem: observe.Fault | None = None
    checked: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    conflicts: dict[tuple[str, str], ownership.NameConflict] = dataclasses.field(default_factory=dict)


async def _ours(source: ChildSource, parent: Parent, child: Obj, sync: _Sync) -> bool:
    """Whether the child may be written: the API server holds nothing under its name, or an object of this
    Gemma4Deployment's (render.ownership). A child the source did not return is looked up first (in watch mode a
    read, only for a child the index does not hold: a first apply or a deleted child, never an idle resync);
    someone else's object is recorded as a conflict and left untouched."""
    ident = (child["kind"], child["metadata"]["name"])
    sync.checked.add(ident)
    live = sync.by_name.get(ident)
    if live is None:
        live = await source.look_up(rc.ChildKey.of(child))
        if live is None:
            return True
        sync.by_name[ident] = live
    conflict = ownership.name_conflict(child, live, parent.uid)
    if conflict is not None:
        sync.conflicts[ident] = conflict
    return conflict is None


async def _apply_children(ctx: OperatorContext, parent: Parent, source: ChildSource, desired: rc.Desired,
                          sync: _Sync, only: Collection[tuple[str, str]] | None) -> None:
    """Server-side apply each child of ours that differs from what was last applied (or is missing); the serving
    children wait for the model download (rc.withheld); a changed Job is replaced (its event brings it back)."""
    seen = ctx.applied.setdefault(parent.key, {})
    held = rc.withheld(desired, ownership.owned_child(list(sync.by_name.values()), "Job", parent.uid))
    for child in desired.children:
        ident = (child["kind"], child["metadata"]["name"])
        if (only is not None and ident not in only) or ident in held:
            continue
        if not await _ours(source, parent, child, sync):
            continue
        reason = rc.apply_reason(child, sync.by_name.get(ident), seen.get(ident))
        if reason is None:
            continue
        if child["kind"] in rc.REPLACED_KINDS and reason != "missing":
            if reason == "changed":
                await _replace(ctx, parent, child, sync)
            continue
        try:
            result = await asyncio.to_thread(ctx.kube.apply, child)
        except InvalidRequestError as e:
            sync.problem = observe.Fault("ApplyRejected", e.args[0] if e.args else str(e))
            return
        sync.by_name[ident] = child_snapshot(result)
        result_meta = result.get("metadata") or {}
        if isinstance(result_meta.get("generation"), int):
            seen[ident] = (str(result_meta.get("uid")), int(result_meta["generation"]))
        sync.applied.append((child, reason))
        ctx.metrics.children_applied.labels(kind=child["kind"], reason=reason.split(" ")[0]).inc()
        logger.info("%s %s/%s: %s applied (%s)", KIND, *parent.key, rc.ChildKey.of(child), reason)


async def _replace(ctx: OperatorContext, parent: Parent, child: Obj, sync: _Sync) -> None:
    """Delete a child whose spec cannot change in place; its pods go first (foreground), so an old download
    never writes beside the new one. The deletion event brings the new child."""
    key = rc.ChildKey.of(child)
    await asyncio.to_thread(ctx.kube.delete, key.api_version, key.kind, key.namespace, key.name, "Foreground")
    sync.by_name.pop((key.kind, key.name), None)
    ctx.metrics.children_deleted.labels(kind=key.kind).inc()
    logger.info("%s %s/%s: %s replaced (a new checkpoint)", KIND, *parent.key, key)


async def _delete_stale(ctx: OperatorContext, parent: Parent, desired: rc.Desired, sync: _Sync,
                        only: Collection[tuple[str, str]] | None) -> None:
    """Delete children of ours that the plan no longer renders (e.g. the PDB after scaling to one)."""
    for stale in rc.stale_children(desired.children, sync.by_name.values(), parent.uid):
        if only is not None and (stale.kind, stale.name) not in only:
            continue
        await asyncio.to_thread(ctx.kube.delete, stale.api_version, stale.kind, stale.namespace, stale.name)
        sync.by_name.pop((stale.kind, stale.name), None)
        ctx.metrics.children_deleted.labels(kind=stale.kind).inc()


def _remember_conflicts(ctx: OperatorContext, parent: Parent, desired: rc.Desired | None,
                        sync: _Sync) -> observe.Fault | None:
    """The object's name conflicts after this reconcile (those of the children it did not look at stay), kept
    for the next one; the Degraded fault that reports them, None when there are none."""
    rendered = [(c["kind"], c["metadata"]["name"]) for c in desired.children] if desired is not None else []
    conflicts = ownership.still_conflicting(ctx.conflicts.get(parent.key, {}), sync.checked, sync.conflicts,
                                            rendered)
    if not conflicts:
        ctx.conflicts.pop(parent.key, None)
        return None
    ctx.conflicts[parent.key] = conflicts
    return observe.Fault(ownership.NAME_CONFLICT, ownership.conflict_message(conflicts.values()))


async def _reconcile_locked(ctx: OperatorContext, parent: Parent, source: ChildSource,
                            facts: ClusterFacts, only: Collection[tuple[str, str]] | None) -> str:
    previous = ctx.previous_status(parent)
    model: Gemma4Deployment | None = None
    invalid: rc.InvalidObjectError | None = None
    desired: rc.Desired | None = None
    try:
        model = rc.parse_parent(parent.body)
    except rc.InvalidObjectError as e:
        invalid = e
    else:
        desired = _desired(ctx, parent, model, facts, previous, await _preflight(source, parent, model))
    outcome = _outcome(desired, invalid)

    live = await source.children(parent, [rc.ChildKey.of(c) for c in desired.children] if desired else [])
    if desired is not None and model is not None:  # the Service follows the ready replicas (scale to zero)
        desired = rc.routed(desired, model, ownership.owned_child(live, "Deployment", parent.uid, parent.key[1]))
    sync = _Sync({(c.get("kind"), (c.get("metadata") or {}).get("name")): c for c in live})
    if desired is not None and desired.plan is not None:
        await _apply_children(ctx, parent, source, desired, sync, only)
        await _delete_stale(ctx, parent, desired, sync, only)
    conflicts = _remember_conflicts(ctx, parent, desired, sync)
    if conflicts is not None and sync.problem is None:
        sync.problem = conflicts
    spec = model.spec if model else None
    live_now = list(sync.by_name.values())
    await _publish(ctx, parent, spec, outcome, live_now, await source.pods(parent), previous, sync.problem,
                   _applied_event(sync.applied), routing_io.routing_state(parent, spec, desired, live_now))
    if invalid is not None:
        raise kopf.PermanentError(invalid.message)
    if sync.problem is not None and sync.problem.reason == "ApplyRejected":
        raise InvalidRequestError(sync.problem.message, "ApplyRejected")
    if conflicts is not None:
        # The other object is not labelled as ours, so no watch event tells when it goes: look again later.
        raise RetryableApiError(conflicts.message, ownership.NAME_CONFLICT, CONFLICT_RETRY_S)
    if sync.applied:
        return "applied"
    return "unchanged" if outcome.ok else "plan_failed"


# ---------------------------------------------------------------------------------------
# retries of watch-triggered work (kopf only retries cause handlers)
# ---------------------------------------------------------------------------------------


def _schedule(ctx: OperatorContext, key: Key, delay: float, indices: Mapping[str, Any], trigger: str,
              retry: int) -> None:
    """Mark a failed object again later (as attempt ``retry``), for a full reconcile (every child, then status)
    from the state the indices hold then; one pending retry per object covers every failure before it."""
    if key in ctx.retries and not ctx.retries[key].done():
        return

    async def later() -> None:
        await asyncio.sleep(delay)
        ctx.retries.pop(key, None)
        _mark(ctx, indices, key, None, trigger, retry)

    ctx.retries[key] = asyncio.get_running_loop().create_task(later(), name=f"retry {key[0]}/{key[1]}")


def _mark(ctx: OperatorContext, indices: Mapping[str, Any], key: Key, only: Collection[tuple[str, str]] | None,
          trigger: str, retry: int = 0) -> None:
    """Queue the object for a reconcile (see ``workqueue``): None writes every child, else these children
    and status. The queue keeps kopf's indices (live views), never a handler's event body."""
    if ctx.work is None:
        kept = {name: indices[name] for name in INDEX_IDS if name in indices}
        ctx.work = WorkQueue(RECONCILE_SLOTS, functools.partial(_process, ctx, kept))
    ctx.work.add(key, Mark(writable(only), trigger, retry))


async def _process(ctx: OperatorContext, indices: Mapping[str, Any], key: Key, mark: Mark) -> None:
    """One reconcile of a marked object, from the newest snapshot in the index; a temporary failure marks it
    again after the back-off (a permanent one is in its status)."""
    parent = _parent_from_index(indices, key)
    if parent is None or parent.deleting:
        return
    routing_missing = False
    if mark.only is None:
        await follow_keda(ctx, parent.body, indices)
        await follow_image_volumes(ctx, parent.body)
        routing_missing = await routing_io.follow_routing(ctx, parent.body)
    try:
        await reconcile(ctx, parent, ctx.source(indices), ctx.facts(indices), trigger=mark.trigger, only=mark.only)
        checks = ctx.admission_checks.get(key, 0)
        if 0 < checks <= len(ADMISSION_RECHECKS):
            _schedule(ctx, key, ADMISSION_RECHECKS[checks - 1], indices, "admission", 0)
        elif routing_missing:  # no event says when the CRDs arrive: look again
            _schedule(ctx, key, routing_io.RECHECK_S, indices, "routing", 0)
    except RetryableApiError as e:
        delay = rc.backoff_delay(mark.retry, e.retry_after)
        logger.warning("%s %s/%s: %s; retrying in %.0fs", KIND, *key, e, delay)
        paced = e.reason in SERVER_PACED and e.retry_after is not None
        _schedule(ctx, key, delay, indices, mark.trigger, rc.next_retry(mark.retry, paced))
    except kopf.PermanentError as e:
        logger.warning("%s %s/%s: %s", KIND, *key, e)


def _parent_from_index(indices: Mapping[str, Any], key: Key) -> Parent | None:
    for body in store(indices.get(PARENTS), key):
        return Parent(body)  # a fresh copy of the snapshot index_parent packed
    return None


# ---------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------


def _uses_keda(body: Mapping[str, Any]) -> bool:
    autoscaling = (body.get("spec") or {}).get("autoscaling")
    return isinstance(autoscaling, Mapping) and autoscaling.get("backend") == AutoscalingBackend.KEDA.value


async def follow_keda(ctx: OperatorContext, body: Mapping[str, Any], indices: Mapping[str, Any] | None) -> None:
    """KEDA installed or removed since the last look: re-discover (at most every KEDA_RECHECK_S) when an
    object with backend keda is reconciled, and, while KEDA is absent, look again for it later (watch
    mode; poll mode's resync timer comes back by itself)."""
    if not _uses_keda(body):
        return
    now = time.monotonic()
    if now - ctx.keda_checked_at >= KEDA_RECHECK_S:
        await detect_keda(ctx)
    if not ctx.render_options.keda_served and indices is not None and ctx.config.children is ChildrenMode.WATCH:
        parent = parent_snapshot(body)
        _schedule(ctx, parent.key, KEDA_RECHECK_S, indices, "keda", 0)


def _uses_image_volume(body: Mapping[str, Any]) -> bool:
    source = ((body.get("spec") or {}).get("model") or {}).get("source") or {}
    return str(source.get("uri") or "").startswith("oci://")


async def follow_image_volumes(ctx: OperatorContext, body: Mapping[str, Any]) -> None:
    """Whether the API server serves image volumes: a dry-run create at the first oci:// object (in its
    namespace, where the operator may create Deployments), again at most every IMAGE_VOLUMES_RECHECK_S
    while it does not, so a cluster upgrade needs no operator restart."""
    if not _uses_image_volume(body) or ctx.render_options.image_volumes or \
            time.monotonic() - ctx.image_volumes_checked_at < IMAGE_VOLUMES_RECHECK_S:
        return
    ctx.image_volumes_checked_at = time.monotonic()
    namespace = str((body.get("metadata") or {}).get("namespace") or "")
    try:
        served = keeps_image_volume(await asyncio.to_thread(ctx.kube.dry_run_create, image_volume_probe(namespace)))
        version = "" if served else await asyncio.to_thread(ctx.kube.server_version)
    except (RetryableApiError, InvalidRequestError) as e:
        ctx.image_volumes_checked_at = -math.inf  # try again at the next reconcile
        logger.warning("could not check whether image volumes are served (%s); oci:// sources wait", e)
        return
    refusal = "" if served else image_volumes_refusal(f"this API server ({version})")
    ctx.render_options = dataclasses.replace(ctx.render_options, image_volumes=served, image_volumes_refusal=refusal)
    ctx.desired_cache.clear()
    logger.info("image volumes (oci:// sources) are %s", "served" if served else f"not served: {refusal}")


async def on_parent(namespace: str | None, name: str, reason: str, memo: Any, **kwargs: Any) -> None:
    """create / update / resume: mark the object for a full reconcile (every child, then status)."""
    _mark(context_of(memo), kwargs, (namespace or "", name), None, str(reason or "resume"))


async def on_parent_event(type: str | None, namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    ctx = context_of(memo)
    if type == "DELETED":
        ctx.forget((namespace or "", name))
    else:
        _ensure_autoscaler(ctx, (namespace or "", name), kwargs)


async def on_resync(body: kopf.Body, memo: Any, retry: int = 0, **kwargs: Any) -> None:
    """Poll mode timer: re-read children and pods, repair, refresh status."""
    ctx = context_of(memo)
    await follow_keda(ctx, body, None)
    await routing_io.follow_routing(ctx, body)
    try:
        await reconcile(ctx, parent_snapshot(body), ctx.source(kwargs), ctx.facts(kwargs), trigger="resync")
    except RetryableApiError as e:
        raise kopf.TemporaryError(str(e), delay=rc.backoff_delay(retry, e.retry_after)) from e


async def on_child_event(body: kopf.Body, namespace: str | None, labels: Mapping[str, str],
                         memo: Any, **kwargs: Any) -> None:
    """A child changed or vanished: repair that child if needed, refresh status. Also when another object now
    controls it: the reconcile then reports the conflict (and writes nothing to it)."""
    ctx = context_of(memo)
    parent = _parent_from_index(kwargs, (namespace or "", str(labels.get(INSTANCE_LABEL, ""))))
    if parent is None or parent.deleting:
        return
    only = rc.written_on_event(str(body.get("kind")), str(body.get("metadata", {}).get("name")), parent.key[1])
    _mark(ctx, kwargs, parent.key, only, "child")


async def on_pod_event(namespace: str | None, labels: Mapping[str, str], memo: Any, **kwargs: Any) -> None:
    """A serving pod changed: status only (the worker skips an object that is gone or being deleted)."""
    instance = labels.get(INSTANCE_LABEL)
    if instance:
        _mark(context_of(memo), kwargs, (namespace or "", str(instance)), [], "pod")


async def on_node_event(memo: Any, **kwargs: Any) -> None:
    """Accelerator types changed: re-plan the objects whose plan failed."""
    ctx = context_of(memo)
    facts = ctx.facts(kwargs).accelerator_types
    if ctx.last_facts == facts:
        return
    first, ctx.last_facts = ctx.last_facts is None, facts
    if first:
        return
    logger.info("accelerator types in the cluster: %s", ", ".join(sorted(facts)) or "none (cpu only)")
    parents = kwargs.get(PARENTS) or {}
    for key in list(parents):
        parent = _parent_from_index(kwargs, key)
        if parent is None:
            continue
        planned = observe.condition(ctx.previous_status(parent), observe.PLANNED)
        if planned is None or planned.get("status") != "True":
            _mark(ctx, kwargs, key, None, "facts")


def _drafts(ctx: OperatorContext, parent: Parent, plan: Plan | None) -> drafting.Assessment | None:
    """The drafter's acceptance from the counters the object's loop read (None without a drafter)."""
    if plan is None or plan.drafter is None:
        return None
    return drafting.assess(ctx.drafts(parent.key, parent.uid), ctx.clock(), load_catalog().drafters.acceptance)


def _drafts_changed(ctx: OperatorContext, parent: Parent, plan: Plan | None) -> bool:
    """Whether status.speculativeDecoding would change state: then a status-only reconcile writes it (and
    Degraded) without waiting for the next event."""
    drafts = _drafts(ctx, parent, plan)
    shown = (ctx.previous_status(parent).get("speculativeDecoding") or {}).get("state")
    return drafts is not None and drafts.state != shown


async def autoscale_tick(ctx: OperatorContext, parent: Parent, indices: Mapping[str, Any]) -> bool:
    """One built-in autoscaler tick for one object, see ``autoscaler``. False when there was
    nothing to scale yet (the Deployment is still being created)."""
    try:
        model = rc.parse_parent(parent.body)
    except rc.InvalidObjectError:
        return True
    source = ctx.source(indices)
    desired = _desired(ctx, parent, model, ctx.facts(indices), ctx.previous_status(parent),
                       await _preflight(source, parent, model))
    try:
        events = await autoscaler.autoscale(ctx, parent, source, model, desired)
    except RetryableApiError as e:
        logger.warning("%s %s/%s: autoscaler: %s; next tick in %.0fs", KIND, *parent.key, e,
                       ctx.config.autoscale_interval)
        return True
    if _drafts_changed(ctx, parent, desired.plan):
        _mark(ctx, indices, parent.key, [], "drafts")
    if events is None:
        return False
    await _post_events(ctx, parent, events)
    return True


async def _autoscaler_loop(ctx: OperatorContext, key: Key, indices: Mapping[str, Any]) -> None:
    """Ticks every autoscale_interval while the object exists with ``backend: operator`` or a drafter, reading
    the newest object from the (live) parent index each time."""
    while True:
        parent = _parent_from_index(indices, key)
        if parent is None or parent.deleting or not autoscaler.loop_needed(parent.body):
            ctx.autoscalers.pop(key, None)
            return
        ticked = True
        try:
            ticked = await autoscale_tick(ctx, parent, indices)
        except Exception:  # a bug must not stop autoscaling for good; log it and tick again
            logger.exception("%s %s/%s: autoscaler tick failed", KIND, *key)
        # a new object's first tick usually comes before its Deployment: look again shortly
        await asyncio.sleep(ctx.config.autoscale_interval if ticked else min(1.0, ctx.config.autoscale_interval))


def _ensure_autoscaler(ctx: OperatorContext, key: Key, indices: Mapping[str, Any]) -> None:
    """Start the object's autoscaler loop when it needs one (no kopf timer or daemon: those add a
    finalizer to the object, which watch mode avoids); the loop ends by itself when it is no longer
    needed."""
    parent = _parent_from_index(indices, key)
    if parent is None or parent.deleting or not autoscaler.loop_needed(parent.body):
        return
    task = ctx.autoscalers.get(key)
    if task is None or task.done():
        ctx.autoscalers[key] = asyncio.get_running_loop().create_task(
            _autoscaler_loop(ctx, key, indices), name=f"autoscaler {key[0]}/{key[1]}")


async def stop_tasks(memo: Any, **_: Any) -> None:
    """Cleanup: stop the operator's own tasks before kopf's shutdown waits for stray ones."""
    await context_of(memo).stop_tasks()


# The indices keep each object's snapshot packed (compressed JSON, see Packed): a 1000-object operator
# holds thousands of them, and a snapshot is only unpacked when a reconcile reads it. The index functions
# are coroutines so that kopf runs them in the event loop's thread: kopf runs a plain function in its
# thread pool, and what a pool thread allocates and keeps (the snapshots) lands in that thread's malloc
# arena, where a burst's short-lived allocations around it keep the arena from shrinking again.


async def index_parent(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, Packed]:
    return {(namespace or "", name): Packed.of(parent_snapshot(body).body)}


async def index_child(body: kopf.Body, namespace: str | None, labels: Mapping[str, str],
                **_: Any) -> dict[Key, Packed] | None:
    instance = labels.get(INSTANCE_LABEL)
    return {(namespace or "", instance): Packed.of(child_snapshot(body))} if instance else None


async def index_pod(body: kopf.Body, namespace: str | None, labels: Mapping[str, str],
              **_: Any) -> dict[Key, Packed] | None:
    instance = labels.get(INSTANCE_LABEL)
    return {(namespace or "", instance): Packed.of(pod_snapshot(body))} if instance else None


# Failures of a discovery request that say nothing about what the server serves: worth asking again.
TRANSIENT_REASONS = frozenset({"Throttled", "ServerError", "Timeout", "ConnectionError", "Conflict"})


def _retry_startup_if_transient(e: RetryableApiError | InvalidRequestError, retry: int) -> None:
    """Raise a TemporaryError (kopf runs the startup handler again after the back-off, and starts nothing
    else meanwhile) when a startup discovery failed for a transient reason. Going on with a guess would
    keep it for the life of the process: after one 503, PodDisruptionBudgets rendered as policy/v1 on a
    server that only serves policy/v1beta1 are refused (404) on every reconcile."""
    if isinstance(e, RetryableApiError) and e.reason in TRANSIENT_REASONS:
        raise kopf.TemporaryError(f"API discovery at startup: {e}",
                                  delay=rc.backoff_delay(retry, e.retry_after)) from e


async def detect_capabilities(memo: Any, retry: int = 0, **_: Any) -> None:
    """Startup: render PodDisruptionBudgets in the API version the cluster serves; KEDA; PodMonitors."""
    ctx = context_of(memo)
    try:
        preferred = await asyncio.to_thread(ctx.kube.preferred_group_version, "policy")
    except (RetryableApiError, InvalidRequestError) as e:
        _retry_startup_if_transient(e, retry)
        logger.warning("API discovery of policy failed (%s); rendering PodDisruptionBudgets as %s",
                       e, ctx.render_options.pdb_api_version)
        preferred = None
    if preferred in PDB_VERSIONS and preferred != ctx.render_options.pdb_api_version:
        ctx.render_options = dataclasses.replace(ctx.render_options, pdb_api_version=preferred)
        ctx.desired_cache.clear()
    logger.info("PodDisruptionBudgets are rendered as %s", ctx.render_options.pdb_api_version)
    await detect_keda(ctx, startup_retry=retry)
    await detect_pod_monitors(ctx, retry)
    await routing_io.detect_routing(ctx)


def child_resources(config: OperatorConfig) -> tuple[tuple[str, str], ...]:
    """The owned kinds to watch: PodMonitors only when the operator may create them."""
    return (CHILD_RESOURCES + ((PODMONITORS,) if config.engine_monitors is EngineMonitors.AUTO else ())
            + routing_io.routing_resources(config))


async def detect_pod_monitors(ctx: OperatorContext, retry: int = 0) -> None:
    """Startup: a PodMonitor per object where the Prometheus Operator's PodMonitors are served (and
    --engine-monitors is auto); otherwise the engine pods carry prometheus.io/* scrape annotations."""
    served = False
    if ctx.config.engine_monitors is EngineMonitors.AUTO:
        try:
            served = await asyncio.to_thread(ctx.kube.serves, *PODMONITORS)
        except (RetryableApiError, InvalidRequestError) as e:
            _retry_startup_if_transient(e, retry)
            logger.warning("API discovery of %s failed (%s); no PodMonitors, scrape annotations instead",
                           PODMONITORS[0], e)
    ctx.render_options = dataclasses.replace(ctx.render_options, pod_monitors=served)
    ctx.desired_cache.clear()
    logger.info("engine pods are scraped through %s", "a PodMonitor per Gemma4Deployment" if served
                else "prometheus.io/* annotations (no PodMonitors)")


async def detect_keda(ctx: OperatorContext, *, startup_retry: int | None = None) -> None:
    """Whether KEDA's ScaledObjects are served (autoscaling.backend keda needs them): at startup
    (``startup_retry``: kopf's retry count, transient failures retry the startup), and again from
    :func:`follow_keda` so a KEDA install or removal needs no operator restart."""
    first, ctx.keda_checked_at = ctx.keda_checked_at == -math.inf, time.monotonic()
    before = ctx.render_options.keda_served
    try:
        served = await asyncio.to_thread(ctx.kube.serves, *KEDA)
    except (RetryableApiError, InvalidRequestError) as e:
        if startup_retry is not None:
            _retry_startup_if_transient(e, startup_retry)
        logger.warning("API discovery of %s failed (%s); assuming KEDA is installed", KEDA[0], e)
        served = True
    ctx.render_options = dataclasses.replace(ctx.render_options, keda_served=served,
                                             prometheus_url=ctx.config.prometheus_url)
    if served != before or first:
        ctx.desired_cache.clear()
        logger.info("KEDA ScaledObjects are %s", "served" if served else "not served (backend keda is refused)")


def probe_info(memo: Any, **kwargs: Any) -> dict[str, Any]:
    ctx = context_of(memo)
    return {"objects": len(kwargs.get(PARENTS) or {}), "accelerators": sorted(ctx.facts(kwargs).accelerator_types),
            "mode": ctx.config.children.value}


# ---------------------------------------------------------------------------------------
# registry and settings
# ---------------------------------------------------------------------------------------


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """All handlers of the operator on a fresh registry (tests build one per operator)."""
    registry = kopf.OperatorRegistry()
    g4d = (GROUP, VERSION, PLURAL)

    if config.server:
        server = config.server

        @kopf.on.login(registry=registry)
        def login_to_server(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=server, insecure=True)
    else:
        kopf.on.login(registry=registry)(kopf.login_via_client)

    kopf.on.probe(id="gemma4", registry=registry)(probe_info)
    kopf.on.startup(id="detect_capabilities", registry=registry)(detect_capabilities)
    kopf.on.cleanup(id="stop_tasks", registry=registry)(stop_tasks)

    kopf.index(*g4d, id=PARENTS, registry=registry)(index_parent)
    kopf.on.event(*g4d, id="g4d_parent_event", registry=registry)(on_parent_event)
    for cause in (kopf.on.resume, kopf.on.create, kopf.on.update):
        cause(*g4d, id="reconcile", registry=registry)(on_parent)

    if config.children is ChildrenMode.WATCH:
        managed = {ownership.MANAGED_BY_LABEL: MANAGER}
        for res in child_resources(config):
            kopf.index(*res, id=CHILDREN, labels=managed, registry=registry)(index_child)
            kopf.on.event(*res, id="child_event", labels=managed, registry=registry)(on_child_event)
        kopf.index(*POD_RESOURCE, id=PODS, labels=managed, registry=registry)(index_pod)
        kopf.on.event(*POD_RESOURCE, id="pod_event", labels=managed, registry=registry)(on_pod_event)
    else:
        kopf.timer(*g4d, id="resync", interval=config.resync_interval, initial_delay=config.resync_interval,
                   registry=registry)(on_resync)

    if config.accelerator_types is None:
        kopf.index("v1", "nodes", id=ACCELERATORS, registry=registry)(cluster_facts.node_index)
        kopf.on.event("v1", "nodes", id="node_event", registry=registry)(on_node_event)
    return registry


def build_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP,
                                                                             key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"  # only poll-mode timers need one
    # kopf posts handler failures as Events; its per-handler "succeeded" chatter would be a write
    # on every resume and change.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 4
    if config.children is ChildrenMode.WATCH:
        for res in (*child_resources(config), POD_RESOURCE):
            settings.watching.label_selectors[res] = MANAGED_SELECTOR
    settings.peering.standalone = config.standalone
    settings.peering.priority = config.priority
    if config.peering_name:
        settings.peering.name = config.peering_name
        settings.peering.mandatory = True
    settings.peering.clusterwide = config.clusterwide
    return settings
