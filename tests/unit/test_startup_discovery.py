"""Startup discovery (PDB version, KEDA, PodMonitors) under API faults: a transient failure retries the startup
instead of going on with a guess that would last for the life of the process (found by tests/e2e/test_api_faults:
one injected 503 left PodDisruptionBudgets rendered as policy/v1 on a 1.20 server, refused on every reconcile)."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from gemma4_operator.config import ChildrenMode, OperatorConfig
from gemma4_operator.controller import handlers
from gemma4_operator.controller.context import OperatorContext
from gemma4_operator.controller.kube import RetryableApiError
from gemma4_operator.render.children import RenderOptions


class _Kube:
    """Discovery of a 1.20-like server (policy/v1beta1, no KEDA, no PodMonitors) that fails ``failures`` times
    with ``reason`` first."""

    def __init__(self, failures: int, reason: str, retry_after: float | None = None) -> None:
        self.failures, self.reason, self.retry_after, self.calls = failures, reason, retry_after, 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RetryableApiError(f"discover: {self.reason}", self.reason, self.retry_after)

    def preferred_group_version(self, group: str) -> str | None:
        assert group == "policy"
        self._maybe_fail()
        return "policy/v1beta1"

    def serves(self, group_version: str, plural: str) -> bool:
        assert (group_version, plural) in (handlers.KEDA, handlers.PODMONITORS)
        return False


def _memo(kube: _Kube) -> kopf.Memo:
    ctx = OperatorContext.__new__(OperatorContext)  # only the fields discovery touches
    ctx.config = OperatorConfig(children=ChildrenMode.WATCH)
    ctx.kube = kube  # type: ignore[assignment]
    ctx.render_options = RenderOptions()
    ctx.desired_cache, ctx.retries = {}, {}
    ctx.keda_checked_at = float("-inf")
    memo = kopf.Memo()
    memo["ctx"] = ctx
    return memo


@pytest.mark.parametrize("reason", sorted(handlers.TRANSIENT_REASONS))
def test_a_transient_failure_retries_the_startup_then_renders_what_the_server_serves(reason: str) -> None:
    kube = _Kube(failures=1, reason=reason)
    memo = _memo(kube)
    with pytest.raises(kopf.TemporaryError) as raised:
        asyncio.run(handlers.detect_capabilities(memo, retry=0))
    assert raised.value.delay == 1.0  # the operator's back-off, first step
    asyncio.run(handlers.detect_capabilities(memo, retry=1))  # kopf's retry
    assert handlers.context_of(memo).render_options.pdb_api_version == "policy/v1beta1"
    assert kube.calls == 2


def test_the_retry_honours_retry_after() -> None:
    memo = _memo(_Kube(failures=1, reason="Throttled", retry_after=7.0))
    with pytest.raises(kopf.TemporaryError) as raised:
        asyncio.run(handlers.detect_capabilities(memo, retry=0))
    assert raised.value.delay == 7.0


def test_a_refusal_is_not_retried_and_the_rest_is_still_detected() -> None:
    """403 on discovery will not go away by asking again: the default PDB version, and KEDA and PodMonitors are
    still looked up (they used to be skipped when the policy lookup failed)."""
    memo = _memo(_Kube(failures=1, reason="Forbidden"))
    asyncio.run(handlers.detect_capabilities(memo, retry=0))
    options = handlers.context_of(memo).render_options
    assert options.pdb_api_version == RenderOptions().pdb_api_version
    assert options.keda_served is False
    assert options.pod_monitors is False


def test_keda_rediscovery_during_reconciles_never_raises() -> None:
    """Outside startup (follow_keda) a failed KEDA lookup keeps the old fallback: no exception into a reconcile."""

    class _Failing(_Kube):
        def serves(self, group_version: str, plural: str) -> bool:
            raise RetryableApiError(f"discover {group_version} {plural}: 503", "ServerError")

    memo = _memo(_Failing(failures=0, reason="ServerError"))
    ctx = handlers.context_of(memo)
    asyncio.run(handlers.detect_keda(ctx))
    assert ctx.render_options.keda_served is True
