"""Engine monitors against kmock: a PodMonitor child where PodMonitors are served (discovered at start-up),
scrape annotations where not, none with --engine-monitors off; and the per-object metrics of the object."""

from __future__ import annotations

import harness as h
import kmock
from harness import DEPLOYMENTS, G4D
from kmock_plus import Emulator

from gemma4_operator.config import ChildrenMode, EngineMonitors

PODMONITORS = "monitoring.coreos.com/v1/podmonitors"
OBJ = {"namespace": "default", "name": "chat"}


def declare_pod_monitors(k: Emulator) -> None:
    k.resources[PODMONITORS] = kmock.ResourceInfo(kind="PodMonitor", namespaced=True,
                                                  verbs={"list", "watch", "get", "create", "patch", "delete"})


def pod_annotations(k: Emulator) -> dict[str, str]:
    dep = h.obj(k, DEPLOYMENTS, "default", "chat")
    assert dep is not None
    return dict(dep["spec"]["template"]["metadata"].get("annotations") or {})


def podmonitor_requests(k: Emulator) -> list[str]:
    return [r.method.value for r in h.operator_requests(k)
            if r.resource is not None and r.resource.plural == "podmonitors"]


async def test_pod_monitor_where_served(k: Emulator) -> None:
    declare_pod_monitors(k)
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)) as op:
        cr = await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
        pm = await h.wait_for(lambda: h.obj(k, PODMONITORS, "default", "chat"), what="the PodMonitor")
        await h.settle(k)
        assert pm["metadata"]["ownerReferences"][0]["uid"] == cr["metadata"]["uid"]
        assert pm["metadata"]["labels"]["app.kubernetes.io/instance"] == "chat"
        assert pm["metadata"]["labels"]["serving.gemma4.dev/variant"]
        assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "http"
        assert "prometheus.io/scrape" not in pod_annotations(k)

        # a deleted PodMonitor comes back (watched like every other child)
        await h.delete(k, PODMONITORS, "default", "chat")
        await h.wait_for(lambda: h.obj(k, PODMONITORS, "default", "chat"), what="the PodMonitor back")

        m = op.metrics
        variant = pm["metadata"]["labels"]["serving.gemma4.dev/variant"]
        assert m.value("gemma4_operator_deployment_info", **OBJ, variant=variant, engine="vllm") == 1
        assert m.value("gemma4_operator_deployment_condition", **OBJ, type="Planned", status="True") == 1
        assert m.value("gemma4_operator_deployment_condition", **OBJ, type="Planned", status="False") == 0
        assert m.value("gemma4_operator_deployment_min_replicas", **OBJ) == 1
        assert m.has("gemma4_operator_deployment_ready_replicas", **OBJ)

        await h.delete(k, G4D, "default", "chat")
        await h.wait_for(lambda: not m.has("gemma4_operator_deployment_min_replicas", **OBJ),
                         what="the object's series gone")
        assert not m.has("gemma4_operator_deployment_info", **OBJ, variant=variant, engine="vllm")


async def test_scrape_annotations_without_pod_monitors(k: Emulator) -> None:
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):
        await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        await h.settle(k)
        assert pod_annotations(k) == {"prometheus.io/scrape": "true", "prometheus.io/port": "8000",
                                      "prometheus.io/path": "/metrics"}


async def test_engine_monitors_off(k: Emulator) -> None:
    declare_pod_monitors(k)
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), engine_monitors=EngineMonitors.OFF):
        await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        await h.settle(k)
        assert h.objects(k, PODMONITORS) == []
        assert podmonitor_requests(k) == []  # not even watched: off needs no RBAC on them
        assert pod_annotations(k)["prometheus.io/scrape"] == "true"


async def test_pod_monitor_in_poll_mode(k: Emulator) -> None:
    declare_pod_monitors(k)
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), children=ChildrenMode.POLL, resync_interval=0.2):
        await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
        await h.wait_for(lambda: h.obj(k, PODMONITORS, "default", "chat"), what="the PodMonitor")
        await h.wait_for(lambda: "GET" in podmonitor_requests(k), what="a poll of the PodMonitor")
