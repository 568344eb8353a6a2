"""I/O of spec.routing.inferencePool: discovery of the InferencePool and HTTPRoute CRDs, the kinds the operator
watches for it, and the live objects RoutingReady is computed from (reconcile.routing_status decides).

Only with ``--epp-cluster-role`` (Helm routing.enabled): without it the operator neither watches nor may write
these kinds, and an object asking for routing gets RoutingReady=False saying so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from gemma4_operator.config import OperatorConfig
from gemma4_operator.controller.context import Obj, OperatorContext, Parent
from gemma4_operator.controller.kube import InvalidRequestError, RetryableApiError
from gemma4_operator.reconcile import routing_status
from gemma4_operator.reconcile.desired import Desired
from gemma4_operator.render import ownership
from gemma4_operator.render import routing as r

logger = logging.getLogger(__name__)

POOLS = (r.POOL_API_VERSION, r.POOL_PLURAL)
HTTPROUTES = (r.HTTPROUTE_API_VERSION, r.HTTPROUTE_PLURAL)
# The kinds only routing creates, watched (label-filtered like every child) where routing is installed; kopf
# watches the two CRDs' kinds once they are served.
ROUTING_RESOURCES = (POOLS, HTTPROUTES, ("v1", "configmaps"), ("v1", "serviceaccounts"),
                     ("rbac.authorization.k8s.io/v1", "rolebindings"))
RECHECK_S = 60.0  # at most this often, re-discover the CRDs while an object asks for routing without them


def routing_resources(config: OperatorConfig) -> tuple[tuple[str, str], ...]:
    return ROUTING_RESOURCES if config.epp_cluster_role else ()


def asks_for_routing(body: Mapping[str, Any]) -> bool:
    return bool(((body.get("spec") or {}).get("routing") or {}).get("inferencePool") is not None)


async def detect_routing(ctx: OperatorContext) -> None:
    """Whether the InferencePool and HTTPRoute CRDs are served (a failed look keeps the last answer)."""
    ctx.routing_checked_at = time.monotonic()
    if not ctx.config.epp_cluster_role:
        return
    before = ctx.render_options.routing
    try:
        pools = await asyncio.to_thread(ctx.kube.serves, *POOLS)
        routes = await asyncio.to_thread(ctx.kube.serves, *HTTPROUTES)
    except (RetryableApiError, InvalidRequestError) as e:
        logger.warning("API discovery of %s and %s failed (%s)", POOLS[0], HTTPROUTES[0], e)
        return
    after = dataclasses.replace(before, inference_pool_served=pools, httproute_served=routes)
    if after != before:
        ctx.render_options = dataclasses.replace(ctx.render_options, routing=after)
        ctx.desired_cache.clear()
        logger.info("routing: InferencePools %s, HTTPRoutes %s", "served" if pools else "not served",
                    "served" if routes else "not served")


async def follow_routing(ctx: OperatorContext, body: Mapping[str, Any]) -> bool:
    """Re-discover the CRDs (at most every RECHECK_S) for an object that asks for routing; True while one it may
    need is missing, so that the caller looks again later (no watch event says when a CRD arrives)."""
    if not ctx.config.epp_cluster_role or not asks_for_routing(body):
        return False
    if time.monotonic() - ctx.routing_checked_at >= RECHECK_S:
        await detect_routing(ctx)
    cluster = ctx.render_options.routing
    return not (cluster.inference_pool_served and cluster.httproute_served)


def routing_state(parent: Parent, spec: Any, desired: Desired | None,
                  live: Sequence[Obj]) -> routing_status.RoutingState | None:
    """RoutingReady from what the reconcile holds: its own InferencePool and the picker's Deployment."""
    planned = desired is not None and desired.plan is not None
    return routing_status.routing_state(
        parent.owner, spec, planned, desired.routing_refusal if desired is not None else None,
        ownership.owned_child(live, "InferencePool", parent.uid),
        ownership.owned_child(live, "Deployment", parent.uid, r.epp_name(parent.key[1])))

