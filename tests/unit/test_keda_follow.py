"""KEDA detection follows its CRD being installed or removed, without an operator restart."""

from __future__ import annotations

import asyncio
from typing import Any

from gemma4_operator.config import ChildrenMode, OperatorConfig
from gemma4_operator.controller import handlers
from gemma4_operator.controller.context import OperatorContext
from gemma4_operator.render.children import RenderOptions


class _Kube:
    def __init__(self) -> None:
        self.served, self.calls = False, 0

    def serves(self, group_version: str, plural: str) -> bool:
        assert (group_version, plural) == handlers.KEDA
        self.calls += 1
        return self.served


def _ctx(kube: _Kube) -> OperatorContext:
    ctx = OperatorContext.__new__(OperatorContext)  # only the fields discovery touches
    ctx.config = OperatorConfig(children=ChildrenMode.POLL, resync_interval=30.0)
    ctx.kube = kube  # type: ignore[assignment]
    ctx.render_options = RenderOptions()
    ctx.desired_cache, ctx.retries = {}, {}
    ctx.keda_checked_at = float("-inf")
    return ctx


def _body(backend: str) -> dict[str, Any]:
    return {"metadata": {"name": "chat", "namespace": "ml", "uid": "u"},
            "spec": {"autoscaling": {"backend": backend, "maxReplicaCount": 3}}}


def test_keda_install_and_removal_are_seen_on_the_next_reconcile(monkeypatch: Any) -> None:
    kube, clock = _Kube(), [1000.0]
    monkeypatch.setattr(handlers.time, "monotonic", lambda: clock[0])
    ctx = _ctx(kube)
    asyncio.run(handlers.detect_keda(ctx))  # startup: absent
    assert ctx.render_options.keda_served is False
    kube.served = True  # KEDA installed
    asyncio.run(handlers.follow_keda(ctx, _body("keda"), None))
    assert ctx.render_options.keda_served is False and kube.calls == 1  # looked less than a minute ago
    clock[0] += handlers.KEDA_RECHECK_S
    ctx.desired_cache[("ml", "chat")] = ("fingerprint", None)  # type: ignore[assignment]
    asyncio.run(handlers.follow_keda(ctx, _body("keda"), None))
    assert ctx.render_options.keda_served is True and ctx.desired_cache == {}  # re-rendered with KEDA
    kube.served = False  # KEDA removed
    clock[0] += handlers.KEDA_RECHECK_S
    asyncio.run(handlers.follow_keda(ctx, _body("keda"), None))
    assert ctx.render_options.keda_served is False


def test_objects_without_backend_keda_never_trigger_discovery() -> None:
    kube = _Kube()
    ctx = _ctx(kube)
    asyncio.run(handlers.follow_keda(ctx, _body("operator"), None))
    asyncio.run(handlers.follow_keda(ctx, {"spec": {}}, None))
    assert kube.calls == 0
