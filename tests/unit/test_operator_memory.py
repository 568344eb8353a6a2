"""What keeps the operator's memory flat in the number of objects: packed index entries and cached
children, and a bound on reconciles in progress at once."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from gemma4_operator.api import API_VERSION, KIND
from gemma4_operator.config import OperatorConfig
from gemma4_operator.controller import handlers
from gemma4_operator.controller.context import (
    PARENTS,
    RECONCILE_SLOTS,
    CachedDesired,
    IndexedSource,
    OperatorContext,
    Packed,
    Parent,
    parent_snapshot,
    store,
)
from gemma4_operator.controller.metrics import Metrics
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.reconcile import desired as rc

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "chat", "namespace": "ml", "uid": "d1", "generation": 3,
                           "labels": {"app.kubernetes.io/instance": "chat"},
                           "managedFields": [{"manager": "gemma4-operator", "fieldsV1": {"f:spec": {}}}]},
              "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "engine", "args": ["--x"]}]}}},
              "status": {"replicas": 2, "readyReplicas": 1}}


def _g4d(uid: str = "u1") -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "chat", "namespace": "ml", "uid": uid, "generation": 1,
                         "annotations": {"serving.gemma4.dev/last-handled-configuration": "{...}"}},
            "spec": {"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"}},
            "status": {"phase": "Pending"}}


def test_packed_round_trips_and_every_unpack_is_a_fresh_copy() -> None:
    packed = Packed.of(DEPLOYMENT)
    first = packed.unpack()
    assert first == DEPLOYMENT
    first["spec"]["replicas"] = 9
    assert packed.unpack() == DEPLOYMENT
    assert len(packed.data) < len(repr(DEPLOYMENT))


async def test_indices_keep_packed_snapshots_that_readers_get_unpacked() -> None:
    for fn in (handlers.index_parent, handlers.index_child, handlers.index_pod):
        assert inspect.iscoroutinefunction(fn), "kopf runs plain index functions in its thread pool"
    child = await handlers.index_child(DEPLOYMENT, "ml", DEPLOYMENT["metadata"]["labels"])  # type: ignore[arg-type]
    parent = await handlers.index_parent(_g4d(), "ml", "chat")  # type: ignore[arg-type]
    assert child is not None and isinstance(child[("ml", "chat")], Packed)
    index = {("ml", "chat"): [child[("ml", "chat")]]}
    (live,) = await IndexedSource(index, {}, None).children(Parent(_g4d()), [])  # type: ignore[arg-type]
    assert "managedFields" not in live["metadata"] and live["status"] == DEPLOYMENT["status"]
    assert store({("ml", "chat"): [parent[("ml", "chat")]]}, ("ml", "chat")) == [parent_snapshot(_g4d()).body]
    assert store(None, ("ml", "chat")) == [] and store(index, ("ml", "other")) == []


def test_cached_desired_gives_back_the_same_plan_and_children() -> None:
    model = rc.parse_parent(_g4d())
    desired = rc.desired_state(model, "u1", ClusterFacts(frozenset({"nvidia-l4"})), OperatorConfig())
    assert desired.plan is not None and desired.children
    cached = CachedDesired.of("fp", desired)
    assert cached.desired() == desired
    assert cached.desired().children is not cached.desired().children  # a fresh copy each time


async def test_a_burst_of_reconciles_runs_at_most_the_slots_at_once(monkeypatch: Any) -> None:
    ctx = OperatorContext(config=OperatorConfig(), kube=None, metrics=Metrics())  # type: ignore[arg-type]
    running, most = 0, 0

    async def work(*_: Any) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return "unchanged"

    monkeypatch.setattr(handlers, "_reconcile_locked", work)
    parents = [Parent(parent_snapshot(_g4d(f"u{i}")).body | {"metadata": {"name": f"m{i}", "namespace": "ml"}})
               for i in range(RECONCILE_SLOTS * 3)]
    await asyncio.gather(*(handlers.reconcile(ctx, p, IndexedSource({}, {}, None),  # type: ignore[arg-type]
                                              ClusterFacts(frozenset()),
                                              trigger="create") for p in parents))
    assert most == RECONCILE_SLOTS
    assert ctx.metrics.value("gemma4_operator_reconciles_total", trigger="create", result="unchanged") == len(parents)


async def test_event_handlers_mark_and_return_while_the_object_is_busy(monkeypatch: Any) -> None:
    """No handler waits for its object's turn (kopf would keep each waiting event's body): with the object's
    lock held, create, child and pod events all return at once. A worker took the create's mark and waits for
    the lock; the child's and the pod's marks, made meanwhile, merge into one reconcile after it."""
    ctx = OperatorContext(config=OperatorConfig(), kube=None, metrics=Metrics())  # type: ignore[arg-type]
    seen: list[tuple[str, Any]] = []

    async def work(_ctx: Any, _parent: Any, _source: Any, _facts: Any, only: Any) -> str:
        seen.append(("reconcile", only))
        return "unchanged"

    monkeypatch.setattr(handlers, "_reconcile_locked", work)
    parent = await handlers.index_parent(_g4d(), "ml", "chat")  # type: ignore[arg-type]
    indices = {PARENTS: {key: [packed] for key, packed in parent.items()}}
    memo = {"ctx": ctx}
    labels = {"app.kubernetes.io/instance": "chat"}
    async with ctx.lock(("ml", "chat")):
        await asyncio.wait_for(handlers.on_parent(namespace="ml", name="chat", reason="create", memo=memo,
                                                  **indices), 0.5)
        await asyncio.wait_for(handlers.on_child_event(body=DEPLOYMENT, namespace="ml", labels=labels,  # type: ignore[arg-type]
                                                       memo=memo, **indices), 0.5)
        await asyncio.wait_for(handlers.on_pod_event(namespace="ml", labels=labels, memo=memo, **indices), 0.5)
        await asyncio.sleep(0.05)
        assert seen == []  # the worker waits for the lock; the handlers did not
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert ctx.work is not None
    await ctx.work.stop()
    # the Deployment's event may also rewrite the Service it routes (scale to zero: reconcile.desired.routed)
    assert seen == [("reconcile", None), ("reconcile", frozenset({("Deployment", "chat"), ("Service", "chat"),
                                                                         ("InferencePool", "chat")}))]
    assert ctx.metrics.value("gemma4_operator_reconciles_total", trigger="create", result="unchanged") == 1
    assert ctx.metrics.value("gemma4_operator_reconciles_total", trigger="child", result="unchanged") == 1


def test_the_status_cache_keeps_status_packed() -> None:
    ctx = OperatorContext(config=OperatorConfig(), kube=None, metrics=Metrics())  # type: ignore[arg-type]
    parent = parent_snapshot(_g4d())
    status = {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}
    ctx.remember_status(parent, status)
    assert isinstance(ctx.status_cache[parent.key][1], Packed)
    assert ctx.previous_status(parent) == status
    assert ctx.previous_status(parent_snapshot(_g4d(uid="u2"))) == {"phase": "Pending"}  # a new object: its own
