"""Start the operator: logging, the shared context, and kopf with the operator's registry.

Heavy imports (kopf, kubernetes) happen when the operator starts, so the offline CLI stays fast.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from gemma4_operator.config import LogFormat, OperatorConfig

if TYPE_CHECKING:
    from gemma4_operator.controller.context import OperatorContext
    from gemma4_operator.controller.metrics import Metrics


# kopf logs every successful handler at INFO, including the watch-event handlers that run on
# each pod and child update and the probe activity on each liveness check: noise, unless -v.
_CHATTER = re.compile(r"^(Handler '(child_event|pod_event|node_event|g4d_parent_event)'|Activity 'gemma4') "
                      r"succeeded\.$")


class _QuietHandlers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and _CHATTER.match(record.getMessage()))


def configure_logging(config: OperatorConfig) -> None:
    import kopf

    kopf.configure(verbose=config.verbose,
                   log_format=kopf.LogFormat.JSON if config.log_format is LogFormat.JSON else kopf.LogFormat.FULL,
                   log_prefix=config.log_format is LogFormat.TEXT)
    if not config.verbose:
        for name in ("kopf.objects", "kopf.activities.probe"):
            logging.getLogger(name).addFilter(_QuietHandlers())
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per liveness probe


def make_context(config: OperatorConfig, *, api_client: Any = None, metrics: Metrics | None = None) -> OperatorContext:
    """The shared state of one operator; ``api_client`` defaults to the process's single client."""
    from gemma4_operator.controller.context import OperatorContext
    from gemma4_operator.controller.kube import Kube, build_api_client
    from gemma4_operator.controller.metrics import Metrics
    from gemma4_operator.render.activator import ACTIVATOR_IMAGE_KEY
    from gemma4_operator.render.children import RenderOptions
    from gemma4_operator.render.download import DOWNLOADER_IMAGE_KEY
    from gemma4_operator.render.routing import RoutingCluster

    api = api_client if api_client is not None else build_api_client(config.server)
    return OperatorContext(config=config, kube=Kube(api, request_timeout=config.request_timeout),
                           metrics=metrics or Metrics(),
                           render_options=RenderOptions(
                               prometheus_url=config.prometheus_url,
                               downloader_image=config.images.get(DOWNLOADER_IMAGE_KEY, ""),
                               activator_image=config.images.get(ACTIVATOR_IMAGE_KEY, ""),
                               network_policy=config.network_policy,
                               operator_namespace=config.operator_namespace,
                               # the CRDs: discovery at startup (controller.routing.detect_routing)
                               routing=RoutingCluster(epp_cluster_role=config.epp_cluster_role,
                                                      inference_pool_served=False, httproute_served=False),
                               # checked by a dry run at the first oci:// object (handlers.follow_image_volumes)
                               image_volumes=False, image_volumes_refusal="not checked yet"))


async def run_operator(ctx: OperatorContext, *, stop_flag: Any = None, ready_flag: Any = None) -> None:
    """Run kopf with the operator's registry and settings until stopped (signal or ``stop_flag``)."""
    import kopf

    from gemma4_operator.controller.handlers import build_registry, build_settings

    config = ctx.config
    try:
        await kopf.operator(
            registry=build_registry(config), settings=build_settings(config),
            clusterwide=config.clusterwide, namespaces=list(config.namespaces),
            liveness_endpoint=config.liveness_endpoint, memo=kopf.Memo(ctx=ctx),
            stop_flag=stop_flag, ready_flag=ready_flag,
        )
    finally:
        await ctx.stop_tasks()  # kopf's cleanup handler did this unless kopf stopped before it ran


