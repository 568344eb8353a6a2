"""The operator's in-memory state, shared by the handlers through kopf's memo (``memo.ctx``).

- Snapshots: the slim copies of Gemma4Deployments, children and pods the kopf indices keep.
- Child sources: where a reconcile finds the live children and pods: the indices (watch mode,
  no reads) or the API (poll mode, reads).
- :class:`OperatorContext`: config, the one API client, metrics, render options, and caches
  (status as last written, desired children per object, per-object locks, the work queue, pending retries,
  Retry-After holds).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import json
import math
import socket
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp

from gemma4_operator.autoscaling.decision import Recommendation
from gemma4_operator.autoscaling.exposition import PodMetrics
from gemma4_operator.autoscaling.idle import Timers
from gemma4_operator.config import ChildrenMode, OperatorConfig
from gemma4_operator.controller.kube import Kube
from gemma4_operator.controller.metrics import Metrics
from gemma4_operator.controller.workqueue import WorkQueue
from gemma4_operator.observe.speculative import Reading
from gemma4_operator.planner import cluster_facts
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.render.children import MANAGER, Owner, RenderOptions
from gemma4_operator.render.ownership import MANAGED_BY_LABEL, NameConflict
from gemma4_operator.render.routing import RoutingRefusal

INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGER}"
# kopf index ids: also the names under which kopf passes the indices to handlers
PARENTS, CHILDREN, PODS, ACCELERATORS = "g4d_parents", "g4d_children", "g4d_pods", "g4d_accelerators"

# Reconciles at once (the work queue's workers; poll-mode timers share the bound): a few more than asyncio's
# API threads (min(32, CPUs + 4)) keep them all busy.
RECONCILE_SLOTS = 16

Key = tuple[str, str]
Obj = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> Any:
    """A deep, plain-dict copy of (part of) a kopf body."""
    return copy.deepcopy(value if isinstance(value, dict | list) else dict(value) if isinstance(value, Mapping)
                         else value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclasses.dataclass(frozen=True, slots=True)
class Packed:
    """A JSON document kept as zlib-compressed compact JSON: what the indices and the desired-state
    cache hold per object (a Deployment: ~1.5 KiB instead of ~25 KiB of dicts). Each
    :meth:`unpack` returns a fresh copy, so a reader may change what it gets."""

    data: bytes

    @classmethod
    def of(cls, value: Any) -> Packed:
        return cls(zlib.compress(json.dumps(value, separators=(",", ":"), default=_jsonable).encode(), 1))

    def unpack(self) -> Any:
        return json.loads(zlib.decompress(self.data))


# ---------------------------------------------------------------------------------------
# snapshots kept in the indices
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Parent:
    """What a reconcile needs of a Gemma4Deployment."""

    body: Obj  # apiVersion, kind, metadata (slim), spec, status

    @property
    def meta(self) -> Mapping[str, Any]:
        meta: Mapping[str, Any] = self.body.get("metadata") or {}
        return meta

    @property
    def key(self) -> Key:
        return str(self.meta.get("namespace", "")), str(self.meta.get("name", ""))

    @property
    def uid(self) -> str:
        return str(self.meta.get("uid", ""))

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation") or 0)

    @property
    def deleting(self) -> bool:
        return bool(self.meta.get("deletionTimestamp"))

    @property
    def status(self) -> Mapping[str, Any]:
        status: Mapping[str, Any] = self.body.get("status") or {}
        return status

    @property
    def owner(self) -> Owner:
        return Owner(self.key[1], self.key[0], self.uid)


def _slim_meta(meta: Mapping[str, Any], *extra: str) -> Obj:
    keep = ("name", "namespace", "uid", "generation", "deletionTimestamp", "labels", "ownerReferences", *extra)
    return {k: _plain(meta[k]) for k in keep if k in meta}


def parent_snapshot(body: Mapping[str, Any]) -> Parent:
    return Parent({"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                   "metadata": _slim_meta(body.get("metadata") or {}),
                   "spec": _plain(body.get("spec") or {}), "status": _plain(body.get("status") or {})})


def child_snapshot(body: Mapping[str, Any]) -> Obj:
    """A child without managedFields (the biggest part of a live object and never compared)."""
    out = {k: _plain(v) for k, v in body.items() if k != "metadata"}
    out["metadata"] = {k: _plain(v) for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return out


def pod_snapshot(body: Mapping[str, Any]) -> Obj:
    return {"metadata": _slim_meta(body.get("metadata") or {}), "status": _plain(body.get("status") or {})}


# ---------------------------------------------------------------------------------------
# where live children come from
# ---------------------------------------------------------------------------------------


class ChildSource(Protocol):
    async def children(self, parent: Parent, wanted: Sequence[rc.ChildKey]) -> list[Obj]: ...

    async def look_up(self, key: rc.ChildKey) -> Obj | None:
        """An object with a child's name that :meth:`children` did not return, if the API server has one."""

    async def pods(self, parent: Parent) -> list[Obj]: ...


def store(index: Any, key: Key) -> list[Obj]:
    """The objects a kopf index keeps under ``key`` (each :class:`Packed`), unpacked."""
    return [packed.unpack() for packed in index[key]] if index is not None and key in index else []


@dataclasses.dataclass(frozen=True)
class IndexedSource:
    """Watch mode: kopf keeps every owned child and pod in memory; no reads, except a look-up of a child the
    index does not hold before it is applied (a first apply, or a deleted child: rare)."""

    children_index: Any
    pods_index: Any
    kube: Kube

    async def children(self, parent: Parent, wanted: Sequence[rc.ChildKey]) -> list[Obj]:  # noqa: ARG002
        return store(self.children_index, parent.key)

    async def look_up(self, key: rc.ChildKey) -> Obj | None:
        """The index holds only objects labelled as ours: one with a child's name but not those labels (someone
        else's) is only found by a read."""
        found = await asyncio.to_thread(self.kube.get, key.api_version, key.kind, key.namespace, key.name)
        return child_snapshot(found) if found is not None else None

    async def pods(self, parent: Parent) -> list[Obj]:
        return store(self.pods_index, parent.key)


@dataclasses.dataclass(frozen=True)
class PolledSource:
    """Poll mode: read the wanted children (and a PDB that may have to go) and list the pods."""

    kube: Kube
    pdb_api_version: str  # the one the server serves (policy/v1beta1 before Kubernetes 1.21)

    async def children(self, parent: Parent, wanted: Sequence[rc.ChildKey]) -> list[Obj]:
        namespace, name = parent.key
        keys = list(wanted)
        if not any(k.kind == "PodDisruptionBudget" for k in keys):
            keys.append(rc.ChildKey(self.pdb_api_version, "PodDisruptionBudget", namespace, name))
        found = await asyncio.gather(*(asyncio.to_thread(self.kube.get, k.api_version, k.kind, k.namespace, k.name)
                                       for k in keys))
        return [child_snapshot(o) for o in found if o is not None]

    async def look_up(self, key: rc.ChildKey) -> Obj | None:  # noqa: ARG002
        return None  # children() has just read every wanted child: what it did not return does not exist

    async def pods(self, parent: Parent) -> list[Obj]:
        namespace, name = parent.key
        items = await asyncio.to_thread(self.kube.list, "v1", "Pod", namespace,
                                        f"{INSTANCE_LABEL}={name},{MANAGED_SELECTOR}")
        return [pod_snapshot(p) for p in items]


# ---------------------------------------------------------------------------------------
# the operator's in-memory state
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CachedDesired:
    """One object's plan and rendered children as the desired-state cache keeps them, valid while its
    fingerprint (spec, cluster facts, pinned accelerator, the download Job's adapter verdicts) holds: the children
    packed."""

    fingerprint: str
    plan: Plan | None
    error: PlanError | None
    children: Packed
    routing_refusal: RoutingRefusal | None = None

    @classmethod
    def of(cls, fingerprint: str, desired: rc.Desired) -> CachedDesired:
        return cls(fingerprint, desired.plan, desired.error, Packed.of(desired.children), desired.routing_refusal)

    def desired(self) -> rc.Desired:
        return rc.Desired(self.plan, self.error, tuple(self.children.unpack()), self.routing_refusal)


@dataclasses.dataclass
class AutoscalerMemory:
    """What the built-in autoscaler remembers of one object between ticks. The history is also kept in
    ``status.autoscaling`` and read back on the first tick after a restart (``restored``)."""

    uid: str
    history: tuple[Recommendation, ...] = ()
    restored: bool = False
    scrapes: dict[str, PodMetrics] = dataclasses.field(default_factory=dict)  # counters need the last one
    # speculative decoding: each pod's draft counters over the acceptance window (observe.speculative)
    drafts: dict[str, tuple[Reading, ...]] = dataclasses.field(default_factory=dict)
    timers: Timers = dataclasses.field(default_factory=Timers)  # scale to zero (autoscaling.idle); also in status
    held_requests: int | None = None  # requests the activator holds for this object (None: unknown)


@dataclasses.dataclass
class OperatorContext:
    """Shared by all handlers through kopf's memo (``memo.ctx``)."""

    config: OperatorConfig
    kube: Kube
    metrics: Metrics
    render_options: RenderOptions = dataclasses.field(default_factory=RenderOptions)
    instance: str = dataclasses.field(default_factory=socket.gethostname)
    # Status as last written by this process (newer than a watch snapshot that has not caught up).
    status_cache: dict[Key, tuple[str, Packed]] = dataclasses.field(default_factory=dict)  # (uid, status)
    desired_cache: dict[Key, CachedDesired] = dataclasses.field(default_factory=dict)
    # (uid, generation) of each child as the last apply returned it, per object and (kind, name).
    applied: dict[Key, dict[tuple[str, str], tuple[str, int]]] = dataclasses.field(default_factory=dict)
    # Children whose name another object holds, per object (see render.ownership): kept between reconciles, as
    # one that looks at some children only (a pod's or a child's event) must still report the others.
    conflicts: dict[Key, dict[tuple[str, str], NameConflict]] = dataclasses.field(default_factory=dict)
    locks: dict[Key, asyncio.Lock] = dataclasses.field(default_factory=dict)
    # Reconciles in progress at once (taken after the object's lock). Without a bound, a burst of N new
    # objects runs N reconciles that all hold their parsed spec, desired children and API responses while
    # they queue for the few API threads: memory grows with N for no gain in throughput.
    slots: asyncio.Semaphore = dataclasses.field(default_factory=lambda: asyncio.Semaphore(RECONCILE_SLOTS))
    # Objects due for a reconcile (watch mode; built by the first handler that marks one, see handlers._mark).
    work: WorkQueue | None = None
    retries: dict[Key, asyncio.Task[None]] = dataclasses.field(default_factory=dict)
    # time.monotonic() before which no reconcile of the object may call the API (the server's Retry-After).
    hold_until: dict[Key, float] = dataclasses.field(default_factory=dict)
    # Reconciles that found the download Job without pods and no FailedCreate Event (handlers.ADMISSION_RECHECKS).
    admission_checks: dict[Key, int] = dataclasses.field(default_factory=dict)
    last_facts: frozenset[str] | None = None
    keda_checked_at: float = -math.inf  # time.monotonic() of the last KEDA discovery
    routing_checked_at: float = -math.inf  # ... of the last InferencePool/HTTPRoute CRD discovery
    image_volumes_checked_at: float = -math.inf  # ... of the last image-volume dry run
    autoscaler: dict[Key, AutoscalerMemory] = dataclasses.field(default_factory=dict)
    autoscalers: dict[Key, asyncio.Task[None]] = dataclasses.field(default_factory=dict)  # per-object loops
    # The autoscaler's time, seconds since the epoch: a wall clock, because the recommendation history
    # kept in status must mean the same after a restart (tests may replace it).
    clock: Callable[[], float] = time.time
    _http: aiohttp.ClientSession | None = None

    def http(self) -> aiohttp.ClientSession:
        """The one HTTP session of the autoscaler's scrapes and Prometheus queries (created in the
        operator's event loop on first use; closed by :meth:`close_http`)."""
        if self._http is None:
            n = self.config.scrape_concurrency
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.scrape_timeout),
                                               connector=aiohttp.TCPConnector(limit=n))
        return self._http

    async def close_http(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def stop_tasks(self) -> None:
        """Stop the reconcile workers, pending retries and autoscaler loops, and close the HTTP session; a
        second call finds nothing to do."""
        if self.work is not None:
            await self.work.stop()
        tasks = [*self.retries.values(), *self.autoscalers.values()]
        self.retries.clear()
        self.autoscalers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.close_http()

    def autoscaler_memory(self, key: Key, uid: str) -> AutoscalerMemory:
        memory = self.autoscaler.get(key)
        if memory is None or memory.uid != uid:
            memory = self.autoscaler[key] = AutoscalerMemory(uid)
        return memory

    def drafts(self, key: Key, uid: str) -> dict[str, tuple[Reading, ...]]:
        """The draft counters the autoscaler loop read for an object (empty when it has none)."""
        memory = self.autoscaler.get(key)
        return memory.drafts if memory is not None and memory.uid == uid else {}

    def lock(self, key: Key) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    def previous_status(self, parent: Parent) -> Mapping[str, Any]:
        cached = self.status_cache.get(parent.key)
        if cached is not None and cached[0] == parent.uid:
            status: Mapping[str, Any] = cached[1].unpack()
            return status
        return parent.status

    def remember_status(self, parent: Parent, status: Mapping[str, Any]) -> None:
        """The object's status as this process last wrote it (packed: ~1 KiB instead of ~7 KiB of dicts)."""
        self.status_cache[parent.key] = (parent.uid, Packed.of(status))

    def forget(self, key: Key) -> None:
        self.status_cache.pop(key, None)
        self.desired_cache.pop(key, None)
        self.applied.pop(key, None)
        self.conflicts.pop(key, None)
        self.locks.pop(key, None)
        self.hold_until.pop(key, None)
        self.admission_checks.pop(key, None)
        self.autoscaler.pop(key, None)
        loop = self.autoscalers.pop(key, None)
        if loop is not None:
            loop.cancel()
        self.metrics.forget(*key)
        if self.work is not None:
            self.work.discard(key)
        task = self.retries.pop(key, None)
        if task is not None:
            task.cancel()

    def facts(self, indices: Mapping[str, Any]) -> ClusterFacts:
        if self.config.accelerator_types is not None:
            return cluster_facts.facts_from_types(self.config.accelerator_types)
        index = indices.get(ACCELERATORS) or {}
        return cluster_facts.facts_from_types(k for k in index if len(index[k]))

    def source(self, indices: Mapping[str, Any]) -> ChildSource:
        if self.config.children is ChildrenMode.POLL:
            return PolledSource(self.kube, self.render_options.pdb_api_version)
        return IndexedSource(indices.get(CHILDREN), indices.get(PODS), self.kube)


def context_of(memo: Any) -> OperatorContext:
    ctx = memo["ctx"] if isinstance(memo, Mapping) else memo.ctx
    assert isinstance(ctx, OperatorContext)
    return ctx
