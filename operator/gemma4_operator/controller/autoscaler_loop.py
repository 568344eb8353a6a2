"""The built-in autoscaler (``autoscaling.backend: operator``), the shell half.

One tick per autoscaled object every ``autoscale_interval`` seconds (an asyncio task per object that
``handlers`` starts and that ends with the object): gather the inputs, let the pure core decide
(``autoscaling.policy.tick`` -> ``autoscaling.decision.decide``), execute.

- Pods: the ready serving pods with an IP, from the same source as the reconcile (the pod index in
  watch mode, a list in poll mode).
- Engine metrics: each pod's ``/metrics`` on the plan's container port through the context's one
  shared aiohttp session (timeouts, bounded concurrency, bounded reads: ``controller.scraper.scrape``);
  counters become rates against the previous scrape kept in memory. A pod over a read limit is
  named in ScalingActive's message even while the others answer.
- ``accelerator/duty_cycle``: DCGM's ``DCGM_FI_DEV_GPU_UTIL`` per pod from the Prometheus HTTP
  API (``--prometheus-url``); ``cpu/utilization`` from metrics.k8s.io (metrics-server) as a
  percent of the plan's CPU request.
- A source that cannot be read: ScalingActive=False names the metric and why; replicas stay put.
- Writes: only the child Deployment's ``spec.replicas``, by server-side apply under its own field
  manager (:data:`AUTOSCALER_MANAGER`), so the operator's main apply (which leaves replicas out
  when autoscaling is set) never owns or resets them; ``status.autoscaling`` and ScalingActive by a
  merge patch of ``/status``, only when they change; a Normal ``Scaled`` Event on every scale.
- Speculative decoding: when the plan has an MTP drafter, each ready pod's draft counters (names in
  catalog/drafters.yaml) are read too and kept over the acceptance window (``observe.speculative``); the
  reconcile turns them into ``status.speculativeDecoding`` and Degraded.
- Restart-safe: the recommendations that gate scale-down are kept in ``status.autoscaling``
  (``autoscaling.history``: written only when the recommendation or the window's maximum changes)
  and read back on the first tick of a new process; so are scale to zero's timers (``idleSince``,
  ``lastScaleUpTime``: ``autoscaling.idle``, written only when they change).
- Scale to zero: the engines' running, waiting and request-count series are scraped too (the idle
  gate's activity), and the requests the activator holds (``AutoscalerMemory.held_requests``) wake a
  deployment at zero.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gemma4_operator.api import AutoscalingBackend, Gemma4Deployment, Gemma4DeploymentSpec
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling import history as recorded
from gemma4_operator.autoscaling import idle
from gemma4_operator.autoscaling import policy as scaling
from gemma4_operator.autoscaling.activator import HELD_METRIC_NAMES, held_requests
from gemma4_operator.autoscaling.decision import Policy, Sample
from gemma4_operator.autoscaling.exposition import (
    PodMetrics,
    ScrapeFailure,
    cpu_utilization_samples,
    duty_cycle_samples,
    to_samples,
)
from gemma4_operator.autoscaling.scaled_object import DCGM_GPU_UTIL, pod_selector
from gemma4_operator.catalog import load_catalog
from gemma4_operator.controller.context import ChildSource, Obj, OperatorContext, Parent, now_rfc3339
from gemma4_operator.controller.kube import InvalidRequestError, RetryableApiError
from gemma4_operator.controller.scraper import ScrapeTarget, get_bounded, scrape
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.engines.base import Engine
from gemma4_operator.observe import speculative as drafting
from gemma4_operator.planner.plan import Plan
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.reconcile import status as observe
from gemma4_operator.render.activator import ADMIN_PORT as ACTIVATOR_ADMIN_PORT
from gemma4_operator.render.activator import is_activator_object
from gemma4_operator.render.download import is_download_pod
from gemma4_operator.render.ownership import owned_child

logger = logging.getLogger(__name__)

AUTOSCALER_MANAGER = "gemma4-operator-autoscaler"


def autoscaled(spec: Mapping[str, Any]) -> bool:
    """Whether the built-in autoscaler runs for an object (kopf ``when`` filter on its spec)."""
    a = spec.get("autoscaling")
    return isinstance(a, Mapping) and a.get("backend", AutoscalingBackend.OPERATOR.value) == \
        AutoscalingBackend.OPERATOR.value


def loop_needed(body: Mapping[str, Any]) -> bool:
    """Whether the object gets the per-object loop: the built-in autoscaler, or a plan in force with an MTP
    drafter (the loop is what reads the pods' draft counters, whatever scales the object)."""
    status = body.get("status")
    plan = status.get("plan") if isinstance(status, Mapping) else None
    return autoscaled(body.get("spec") or {}) or bool(isinstance(plan, Mapping) and plan.get("drafter"))


def _serving(pods: Sequence[Obj]) -> list[Obj]:
    return [p for p in pods if _ready(p) and not is_download_pod(p) and not is_activator_object(p)]


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return bool(status.get("podIP")) and not (pod.get("metadata") or {}).get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


async def cpu_utilization(ctx: OperatorContext, namespace: str, name: str, requested: float,
                          ready_pods: Sequence[Obj], now: float) -> list[Sample]:
    """cpu/utilization from metrics.k8s.io (metrics-server), against the plan's CPU request.
    Raises RetryableApiError (NotFound when the metrics API is not served)."""
    items = await asyncio.to_thread(ctx.kube.list, "metrics.k8s.io/v1beta1", "PodMetrics", namespace,
                                    f"app.kubernetes.io/instance={name}")
    ready = {str(p["metadata"]["name"]) for p in ready_pods}
    return cpu_utilization_samples(items, ready, requested, now)


async def duty_cycle(session: aiohttp.ClientSession, prometheus_url: str, name: str, namespace: str,
                     ready: Sequence[str], now: float) -> list[Sample]:
    """Per-pod GPU utilization (average over the pod's GPUs) from the Prometheus HTTP API.
    Raises ValueError (with the reason) when Prometheus cannot answer."""
    query = f"avg by (pod) ({DCGM_GPU_UTIL}{{{pod_selector(name, namespace)}}})"
    try:
        answer = await get_bounded(session, f"{prometheus_url}/api/v1/query", {"query": query}, "Prometheus answer")
    except aiohttp.ClientResponseError as e:
        raise ValueError(f"Prometheus answered HTTP {e.status}") from e
    except (aiohttp.ClientError, TimeoutError) as e:
        raise ValueError(f"Prometheus unreachable: {type(e).__name__}: {e}") from e
    return duty_cycle_samples(answer, ready, now)


@dataclass
class _Tick:
    """What one tick works on: the object's policy, its engine, the ready pods and what was read."""

    ctx: OperatorContext
    parent: Parent
    spec: Gemma4DeploymentSpec
    plan: Plan
    engine: Engine
    pods: list[Obj]
    now: float
    samples: list[Sample] = field(default_factory=list)
    failures: list[ScrapeFailure] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.parent.key[1]

    @property
    def namespace(self) -> str:
        return self.parent.key[0]


async def _read_cpu(t: _Tick, unreadable: dict[Signal, str]) -> None:
    """cpu/utilization first: a cluster without the metrics API stops the tick."""
    try:
        t.samples += await cpu_utilization(t.ctx, t.namespace, t.name, t.plan.cpu_request_cores, t.pods, t.now)
    except RetryableApiError as e:
        if e.reason != "NotFound":
            raise
        unreadable[Signal.CPU_UTILIZATION] = (
            "cpu/utilization reads metrics.k8s.io, which this cluster does not serve: install metrics-server")


async def _read_engines(t: _Tick, signals: set[Signal]) -> None:
    """Each ready pod's /metrics on the plan's container port; counters become rates."""
    names = {s: n for s, n in t.engine.metric_names().items() if s in signals}
    if not names:
        return
    memory = t.ctx.autoscaler_memory(t.parent.key, t.parent.uid)
    targets = [ScrapeTarget(str(p["metadata"]["name"]), t.ctx.config.metrics_url_template.format(
        ip=p["status"]["podIP"], port=t.plan.port)) for p in t.pods]
    results = await scrape(t.ctx.http(), targets, names, now=t.now, concurrency=t.ctx.config.scrape_concurrency)
    ok = [r for r in results if isinstance(r, PodMetrics)]
    t.failures += [r for r in results if isinstance(r, ScrapeFailure)]
    t.ctx.metrics.autoscaler_scrapes.labels(result="ok").inc(len(ok))
    t.ctx.metrics.autoscaler_scrapes.labels(result="failed").inc(len(results) - len(ok))
    t.samples += to_samples(ok, memory.scrapes)
    memory.scrapes = {r.pod: r for r in ok}


async def _read(t: _Tick, pol: Policy, extra: frozenset[Signal] = frozenset()) -> dict[Signal, str]:
    """Gather the samples of every signal the policy uses, and of ``extra`` engine signals (the idle
    gate's); returns the unreadable ones with why."""
    unreadable = scaling.unavailable(pol.targets, t.engine, t.ctx.config.prometheus_url)
    signals = {target.signal for target in pol.targets} | extra
    if not unreadable and Signal.CPU_UTILIZATION in signals:
        await _read_cpu(t, unreadable)
    if unreadable:
        return unreadable
    await _read_engines(t, signals)
    if Signal.DUTY_CYCLE in signals:
        try:
            t.samples += await duty_cycle(t.ctx.http(), t.ctx.config.prometheus_url, t.name, t.namespace,
                                          [str(p["metadata"]["name"]) for p in t.pods], t.now)
        except ValueError as e:
            unreadable[Signal.DUTY_CYCLE] = f"accelerator/duty_cycle: {e}"
    return unreadable


async def get_text(session: aiohttp.ClientSession, url: str) -> str:
    """A pod's /metrics, bounded like the autoscaler's scrapes (``get_bounded``)."""
    return (await get_bounded(session, url, {}, "metrics body")).decode("utf-8", "replace")


async def read_drafts(ctx: OperatorContext, parent: Parent, plan: Plan, pods: Sequence[Obj], now: float) -> None:
    """Each ready pod's draft counters into the object's memory; a pod that cannot be read this time keeps
    nothing new (the window's readings of the others still count)."""
    counters = load_catalog().drafters.engines.get(plan.engine)
    if plan.drafter is None or counters is None:
        return
    memory = ctx.autoscaler_memory(parent.key, parent.uid)
    found: dict[str, drafting.Reading] = {}
    for pod in pods:
        url = ctx.config.metrics_url_template.format(ip=pod["status"]["podIP"], port=plan.port)
        try:
            text = await get_text(ctx.http(), url)
            read = drafting.reading(text, counters.accepted_tokens_metric, counters.draft_tokens_metric, now)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            logger.debug("Gemma4Deployment %s/%s: draft counters of %s: %s", *parent.key, pod["metadata"]["name"], e)
            continue
        if read is not None:
            found[str(pod["metadata"]["name"])] = read
    memory.drafts = drafting.record(memory.drafts, found, now, load_catalog().drafters.acceptance)


async def held_by_activator(t: _Tick, pods: Sequence[Obj]) -> int | None:
    """The requests the object's activator pods hold (their admin port's /metrics), None when unknown
    (no ready activator pod, or one that did not answer): a wake is wanted when it is > 0."""
    targets = [ScrapeTarget(str(p["metadata"]["name"]), t.ctx.config.metrics_url_template.format(
        ip=p["status"]["podIP"], port=ACTIVATOR_ADMIN_PORT)) for p in pods if is_activator_object(p) and _ready(p)]
    results = await scrape(t.ctx.http(), targets, HELD_METRIC_NAMES, now=t.now,
                           concurrency=t.ctx.config.scrape_concurrency)
    return held_requests(results)


async def _scale(t: _Tick, deployment: rc.ChildKey, current: int, desired: int,
                 summary: str) -> list[observe.EventSpec] | None:
    """Set the Deployment's replicas under the autoscaler's own field manager; None if refused."""
    scale = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": deployment.name, "namespace": deployment.namespace},
             "spec": {"replicas": desired}}
    try:
        await asyncio.to_thread(t.ctx.kube.apply, scale, field_manager=AUTOSCALER_MANAGER)
    except InvalidRequestError as e:
        logger.warning("Gemma4Deployment %s/%s: scaling refused: %s", t.namespace, t.name, e)
        return None
    logger.info("Gemma4Deployment %s/%s: scaled from %d to %d: %s", t.namespace, t.name, current, desired, summary)
    return [observe.EventSpec("Normal", "Scaled", f"Scaled from {current} to {desired}: {summary}")]


async def autoscale(ctx: OperatorContext, parent: Parent, source: ChildSource, model: Gemma4Deployment,
                    desired: rc.Desired) -> list[observe.EventSpec] | None:
    """One tick for one object; returns the Events to post, or None when the Deployment does not
    exist yet (the caller ticks again soon rather than a whole interval later). Raises
    RetryableApiError."""
    spec, plan = model.spec, desired.plan
    if plan is None:
        return []
    if spec.autoscaling is None or spec.autoscaling.backend is not AutoscalingBackend.OPERATOR:
        await read_drafts(ctx, parent, plan, _serving(await source.pods(parent)), ctx.clock())
        return []
    deployment_key = next((rc.ChildKey.of(c) for c in desired.children if c["kind"] == "Deployment"), None)
    if deployment_key is None:
        return []
    live = await source.children(parent, [deployment_key])
    deployment = owned_child(live, "Deployment", parent.uid, deployment_key.name)
    if deployment is None:
        return None  # the reconcile is creating it; nothing to scale yet
    replicas = (deployment.get("spec") or {}).get("replicas")
    current = int(replicas) if replicas is not None else 1
    pods = await source.pods(parent)
    serving = _serving(pods)
    t = _Tick(ctx, parent, spec, plan, engine_named(plan.engine), serving, ctx.clock())
    await read_drafts(ctx, parent, plan, serving, t.now)
    try:
        pol = scaling.policy(spec, plan, t.engine)
    except ValueError as e:
        await _report(ctx, parent, current, current, (), False, "InvalidMetrics", str(e), "")
        return []
    zero_spec = scaling.scale_to_zero(spec, plan, t.engine, ctx.config.scale_to_zero_time_scale)
    unreadable = await _read(t, pol, idle.ACTIVITY_SIGNALS if zero_spec is not None else frozenset())
    memory = ctx.autoscaler_memory(parent.key, parent.uid)
    if not memory.restored:  # first tick of this process: what a previous one left in status
        memory.restored = True
        previous = ctx.previous_status(parent).get("autoscaling")
        memory.history = memory.history or recorded.from_status(previous, t.now, pol.scale_down_delay_s)
        memory.timers = idle.timers_from_status(previous, t.now)
    if zero_spec is not None:
        memory.held_requests = await held_by_activator(t, pods)
    zero = None if zero_spec is None else scaling.ZeroInput(
        zero_spec, memory.timers, memory.held_requests, frozenset(str(p["metadata"]["name"]) for p in serving))
    result = scaling.tick(pol, current, t.samples, memory.history, t.now, unreadable, t.failures, zero)
    memory.history, memory.timers = result.history, result.timers or idle.Timers()
    steps = {**recorded.to_status(result.history, t.now, pol.scale_down_delay_s),
             **idle.timers_to_status(memory.timers, result.desired == 0)}
    events: list[observe.EventSpec] = []
    last_scale = ""
    direction = "inactive" if result.reason == "MetricUnavailable" else "none"
    if result.desired != current:
        scaled = await _scale(t, deployment_key, current, result.desired, result.summary)
        if scaled is None:
            return []
        events, last_scale = scaled, now_rfc3339()
        direction = "up" if result.desired > current else "down"
    ctx.metrics.autoscaler_decisions.labels(direction=direction).inc()
    await _report(ctx, parent, current, result.desired, result.metrics, result.active, result.reason,
                  result.message, last_scale, steps)
    return events


async def _report(ctx: OperatorContext, parent: Parent, current: int, desired: int,
                  metrics: Sequence[tuple[str, float | None, float]], active: bool, reason: str, message: str,
                  last_scale: str, steps: Mapping[str, Any] | None = None) -> None:
    """Gauges, then ``status.autoscaling`` and ScalingActive when they changed."""
    namespace, name = parent.key
    ctx.metrics.observe_autoscaler(namespace, name, current, desired)
    async with ctx.lock(parent.key):
        previous = ctx.previous_status(parent)
        if not last_scale:
            last_scale = str((previous.get("autoscaling") or {}).get("lastScaleTime") or "")
        if steps is None:  # no decision this tick (invalid metrics): keep what the last one left
            old = previous.get("autoscaling") or {}
            steps = {k: old[k] for k in ("recommendations", "recommendedReplicas", *idle.timers_to_status(
                idle.Timers(), False)) if k in old}
        status = {**observe.autoscaling_status(desired, last_scale, metrics), **steps}
        patch = observe.autoscaler_patch(previous, status, active, reason, message, parent.generation,
                                         now_rfc3339())
        if patch is None:
            return
        try:
            await asyncio.to_thread(ctx.kube.patch_status, namespace, name, patch)
        except InvalidRequestError as e:
            logger.warning("Gemma4Deployment %s/%s: autoscaling status refused: %s", namespace, name, e)
            return
        ctx.metrics.status_patches.inc()
        ctx.remember_status(parent, {**previous, **patch})
        ctx.metrics.observe_condition(namespace, name, observe.SCALING_ACTIVE,
                                      "True" if active else "False")
