"""Autoscaling end to end against kmock: the built-in autoscaler scrapes fake engines (real aiohttp
servers on loopback serving vLLM 0.32's real exposition with the values changed) and sets the
Deployment's replicas; the KEDA backend renders a ScaledObject valid against KEDA's CRD schema.

kmock runs no controllers: the test plays the Deployment controller and kubelet by creating the
pods (status.podIP on its own loopback address, Ready) the replicas call for. Time is the
operator's injectable clock (``OperatorContext.clock``), so the 300 s scale-down delay passes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp.web
import harness as h
import jsonschema
import kmock
import pytest
import pytest_asyncio
import yaml
from harness import DEPLOYMENTS, G4D, PODS
from kmock_plus import Emulator

from gemma4_operator.activator.server import Activator, start
from gemma4_operator.activator.settings import ActivatorSettings
from gemma4_operator.config import ChildrenMode
from gemma4_operator.controller.autoscaler_loop import AUTOSCALER_MANAGER

DATA = Path(__file__).resolve().parents[1] / "data"
VLLM_TEXT = (DATA / "metrics" / "vllm-0.32.0.txt").read_text(encoding="utf-8")
KEDA_SCHEMA = yaml.safe_load((DATA / "keda" / "scaledobject-spec-schema.yaml").read_text(encoding="utf-8"))
SCALEDOBJECTS = "keda.sh/v1alpha1/scaledobjects"
LABELS = {"app.kubernetes.io/name": "gemma4", "app.kubernetes.io/instance": "chat",
          "app.kubernetes.io/managed-by": "gemma4-operator", "app.kubernetes.io/component": "server"}
QUEUE = {"metricName": "vllm/num_requests_waiting", "target": 5}


def exposition(waiting: float, running: float = 3.0, kv: float = 0.42) -> str:
    """vLLM 0.32's real /metrics text with the autoscaling gauges replaced."""
    text = re.sub(r"^(vllm:num_requests_waiting\{[^}]*\}) \S+$", rf"\g<1> {waiting}", VLLM_TEXT, flags=re.M)
    text = re.sub(r"^(vllm:num_requests_running\{[^}]*\}) \S+$", rf"\g<1> {running}", text, flags=re.M)
    return re.sub(r"^(vllm:kv_cache_usage_perc\{[^}]*\}) \S+$", rf"\g<1> {kv}", text, flags=re.M)


def draft_counters(totals: tuple[float, float] | None) -> str:
    """vLLM 0.32's speculative decoding counters (vllm/v1/spec_decode/metrics.py SpecDecodingProm), which its
    /metrics has only with --speculative-config (the recorded exposition has none)."""
    if totals is None:
        return ""
    labels = '{engine="0",model_name="gemma-4-e4b-it"}'
    return "".join(f"# HELP vllm:spec_decode_num_{what} {what}.\n# TYPE vllm:spec_decode_num_{what} counter\n"
                   f"vllm:spec_decode_num_{what}_total{labels} {value}\n"
                   for what, value in (("accepted_tokens", totals[0]), ("draft_tokens", totals[1])))


async def endless(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
    """A hostile image's /metrics: series after series until the scraper hangs up (256 MiB at most)."""
    response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    chunk = b'hostile_series{i="0"} 1\n' * 4096
    try:
        for _ in range((256 << 20) // len(chunk)):
            await response.write(chunk)
    except ConnectionError:
        pass
    return response


class FakeEngines:
    """One aiohttp server per fake pod, all on one port, each on its own loopback address
    (127.0.0.2, 127.0.0.3, ...) as pods share a port on distinct IPs; plus a fake Prometheus."""

    def __init__(self) -> None:
        self.waiting: dict[str, float] = {}
        self.running: dict[str, float] = {}  # vllm:num_requests_running per pod (3 unless a test sets it)
        self.gpu_util: dict[str, float] = {}
        self.ips: dict[str, str] = {}
        self.scrapes: dict[str, int] = {}
        self.runners: list[aiohttp.web.AppRunner] = []
        self.port = 0
        self.container_port = 0  # the serving container's port, set by a test that checks the scrape port
        self.prometheus_url = ""
        self.endless: set[str] = set()  # pods that answer an endless body
        self.drafts: dict[str, tuple[float, float]] = {}  # pod -> speculative decoding (accepted, drafted) totals

    async def _serve(self, app: aiohttp.web.Application, host: str, port: int) -> int:
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, host, port)
        await site.start()
        self.runners.append(runner)
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        return int(sockets[0].getsockname()[1])

    async def add_pod(self, name: str, waiting: float) -> str:
        ip = f"127.0.0.{len(self.ips) + 2}"
        self.ips[name], self.waiting[name], self.scrapes[name] = ip, waiting, 0

        async def metrics(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            self.scrapes[name] += 1
            if name in self.endless:
                return await endless(request)
            text = exposition(self.waiting[name], self.running.get(name, 3.0)) + draft_counters(self.drafts.get(name))
            return aiohttp.web.Response(text=text,
                                        content_type="text/plain", charset="utf-8")

        app = aiohttp.web.Application()
        app.router.add_get("/metrics", metrics)
        # the same exposition under /port/N/metrics: a template that puts the scraped port in the path
        # shows which port the operator scrapes
        app.router.add_get(f"/port/{self.container_port}/metrics", metrics)
        self.port = await self._serve(app, ip, self.port)
        return ip

    async def start_prometheus(self) -> None:
        async def query(request: aiohttp.web.Request) -> aiohttp.web.Response:
            assert "DCGM_FI_DEV_GPU_UTIL" in request.query["query"]
            result = [{"metric": {"pod": pod}, "value": [0, str(v)]} for pod, v in self.gpu_util.items()]
            return aiohttp.web.json_response({"status": "success",
                                              "data": {"resultType": "vector", "result": result}})

        app = aiohttp.web.Application()
        app.router.add_get("/api/v1/query", query)
        self.prometheus_url = f"http://127.0.0.1:{await self._serve(app, '127.0.0.1', 0)}"

    @property
    def url_template(self) -> str:
        return f"http://{{ip}}:{self.port}/metrics"

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


@pytest_asyncio.fixture()
async def engines() -> AsyncIterator[FakeEngines]:
    fake = FakeEngines()
    # Reserve a port that is free on 127.0.0.1 for every fake pod's loopback address.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        fake.port = s.getsockname()[1]
    yield fake
    await fake.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Scraping engine metrics for autoscaling alone: no MTP drafter, whose counters the loop would read too
NO_DRAFTER = {"speculativeDecoding": {"mode": "off"}}


def cr(serving: dict[str, Any] | None = None, **autoscaling: Any) -> dict[str, Any]:
    return h.g4d("chat", accelerator={"type": "nvidia-l4"}, serving=serving or {},
                 autoscaling={"minReplicaCount": 1, "maxReplicaCount": 4, **autoscaling})


def status(k: Emulator) -> dict[str, Any]:
    obj = h.obj(k, G4D, "default", "chat")
    assert obj is not None
    s: dict[str, Any] = obj.get("status", {})
    return s


def cond(k: Emulator, type_: str) -> dict[str, Any] | None:
    return next((c for c in status(k).get("conditions", []) if c["type"] == type_), None)


def replicas(k: Emulator) -> int | None:
    d = h.obj(k, DEPLOYMENTS, "default", "chat")
    return None if d is None else d["spec"].get("replicas")


def scaled_events(k: Emulator) -> list[str]:
    return [e["message"] for e in h.objects(k, h.EVENTS) if e["reason"] == "Scaled"]


def autoscaler_writes(k: Emulator) -> list[kmock.Request]:
    return [r for r in h.writes(k) if r.params.get("fieldManager") == AUTOSCALER_MANAGER]


async def add_pod(k: Emulator, engines: FakeEngines, name: str, waiting: float) -> None:
    ip = await engines.add_pod(name, waiting)
    await h.create(k, PODS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": LABELS},
        "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.32.0"}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})


@contextlib.asynccontextmanager
async def queue_scaled(k: Emulator, engines: FakeEngines) -> AsyncIterator[tuple[h.OperatorRun, Clock]]:
    """An operator on the test's clock, scaling `chat` on the queue; yields once its Deployment exists."""
    clock = Clock()
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                             metrics_url_template=engines.url_template) as op:
        assert op.ctx is not None
        op.ctx.clock = clock
        await h.create(k, G4D, cr(autoscalingMetricSpecs=[QUEUE]))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        yield op, clock


async def test_replicas_follow_engine_metrics_up_and_down(k: Emulator, engines: FakeEngines) -> None:
    async with queue_scaled(k, engines) as (op, clock):
        assert replicas(k) is None  # the main apply leaves replicas to the autoscaler

        # no ready pod yet: no sample, nothing scales, ScalingActive says why
        await h.wait_for(lambda: (cond(k, "ScalingActive") or {}).get("reason") == "MissingMetrics",
                         what="ScalingActive=False (no samples)")
        assert cond(k, "ScalingActive")["status"] == "False"  # type: ignore[index]
        assert "no fresh sample" in cond(k, "ScalingActive")["message"]  # type: ignore[index]
        assert autoscaler_writes(k) == []

        # one pod, 12 requests waiting against a target of 5 per pod: ceil(1 x 12/5) = 3
        await add_pod(k, engines, "chat-a", waiting=12)
        await h.wait_for(lambda: replicas(k) == 3, what="scale up to 3")
        await h.wait_for(lambda: status(k).get("autoscaling", {}).get("desiredReplicas") == 3, what="status")
        auto = status(k)["autoscaling"]
        assert auto["lastScaleTime"] and auto["metrics"] == [
            {"metricName": "vllm/num_requests_waiting", "current": 12.0, "target": 5.0}]
        assert cond(k, "ScalingActive")["status"] == "True"  # type: ignore[index]
        await h.wait_for(lambda: scaled_events(k), what="the Scaled event")  # posted after the status
        assert scaled_events(k)[0].startswith("Scaled from 1 to 3: scale up 1 -> 3")
        writes = autoscaler_writes(k)
        assert len(writes) == 1 and writes[0].headers["Content-Type"].startswith("application/apply-patch")
        assert writes[0].data["spec"] == {"replicas": 3}  # the autoscaler owns nothing but replicas

        # the "Deployment controller" starts two more pods; load spreads: 4 per pod, 20 % under
        # target but ceil(3 x 0.8) = 3: stays
        engines.waiting["chat-a"] = 4
        await add_pod(k, engines, "chat-b", waiting=4)
        await add_pod(k, engines, "chat-c", waiting=4)
        await h.wait_for(lambda: all(engines.scrapes[p] >= 3 for p in ("chat-b", "chat-c")), what="scrapes")
        assert replicas(k) == 3 and len(autoscaler_writes(k)) == 1
        # the main reconcile (pod and Deployment events) never touched replicas
        assert op.metrics.registry.get_sample_value("gemma4_operator_autoscaler_desired_replicas",
                                                    {"namespace": "default", "name": "chat"}) == 3

        # idle: proposes 0, held by the 300 s scale-down delay, then down to minReplicaCount 1
        for pod in ("chat-a", "chat-b", "chat-c"):
            engines.waiting[pod] = 0
        await h.wait_for(lambda: all(engines.scrapes[p] >= 6 for p in ("chat-b", "chat-c")), what="scrapes")
        assert replicas(k) == 3
        clock.now += 301
        await h.wait_for(lambda: replicas(k) == 1, what="scale down to 1")
        await h.wait_for(lambda: any(m.startswith("Scaled from 3 to 1: scale down 3 -> 1") for m in scaled_events(k)),
                         what="the second Scaled event")
        assert op.metrics.value("gemma4_operator_autoscaler_decisions_total", direction="up") == 1
        assert op.metrics.value("gemma4_operator_autoscaler_decisions_total", direction="down") == 1

        # steady: ticks keep scraping, but nothing is written (decision = replicas, status unchanged)
        await h.wait_for(lambda: status(k).get("autoscaling", {}).get("desiredReplicas") == 1, what="status")
        await h.settle(k)  # the tick after a scale reports "keep 1"; the reconcile reports the new count
        assert cond(k, "ScalingActive")["message"].startswith("keep 1")  # type: ignore[index]
        mark = len(h.writes(k))
        seen = engines.scrapes["chat-a"]
        await h.wait_for(lambda: engines.scrapes["chat-a"] >= seen + 5, what="more ticks")
        assert [h.describe(r) for r in h.writes(k)[mark:]] == []


async def test_a_drafter_whose_drafts_are_rejected_turns_degraded(k: Emulator, engines: FakeEngines) -> None:
    """The e4b plan on an L4 uses its MTP drafter (speculativeDecoding auto); the loop reads the pods' draft
    counters, and 10% accepted over the 600 s window turns Degraded with the advice to turn it off."""
    async with queue_scaled(k, engines) as (_, clock):
        await h.wait_for(lambda: status(k).get("plan"), what="status.plan")
        assert status(k)["plan"]["drafter"] == "google/gemma-4-E4B-it-assistant"
        engines.drafts["chat-a"] = (100.0, 200.0)
        await add_pod(k, engines, "chat-a", waiting=0)
        await h.wait_for(lambda: engines.scrapes["chat-a"] >= 4, what="two ticks' scrapes")
        assert status(k)["speculativeDecoding"]["state"] == "Measuring"  # 100 of 200: too few drafts to tell
        engines.drafts["chat-a"] = (500.0, 4200.0)  # 400 of 4000 more drafts accepted
        clock.now += 601
        await h.wait_for(lambda: (cond(k, "Degraded") or {}).get("reason") == "SpeculativeDecodingIneffective",
                         what="Degraded SpeculativeDecodingIneffective")
        assert status(k)["speculativeDecoding"] == {"acceptanceRate": 0.1, "draftTokens": 4000,
                                                    "windowSeconds": 600, "state": "Ineffective"}
        assert cond(k, "Degraded")["message"].endswith("set serving.speculativeDecoding.mode: off")  # type: ignore[index]


async def test_a_drafter_without_the_builtin_autoscaler_still_reports_its_acceptance(k: Emulator,
                                                                                    engines: FakeEngines) -> None:
    """Fixed replicas (no autoscaling): the plan in force has a drafter, so the per-object loop still reads the
    draft counters (and scales nothing)."""
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                             metrics_url_template=engines.url_template) as op:
        assert op.ctx is not None
        clock = Clock()
        op.ctx.clock = clock
        await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
        await h.wait_for(lambda: (status(k).get("plan") or {}).get("drafter"), what="a plan with a drafter")
        engines.drafts["chat-a"] = (100.0, 200.0)
        await add_pod(k, engines, "chat-a", waiting=0)
        await h.wait_for(lambda: engines.scrapes["chat-a"] >= 2, what="the loop's scrapes")
        engines.drafts["chat-a"] = (500.0, 4200.0)
        clock.now += 601
        await h.wait_for(lambda: (cond(k, "Degraded") or {}).get("reason") == "SpeculativeDecodingIneffective",
                         what="Degraded SpeculativeDecodingIneffective")
        assert status(k)["speculativeDecoding"]["acceptanceRate"] == 0.1
        assert not autoscaler_writes(k)  # nothing scaled


async def test_scrapes_the_port_the_engine_container_listens_on(k: Emulator, engines: FakeEngines) -> None:
    """The autoscaler scrapes each pod on the rendered container's port: were the scrape port to drift
    from containerPort (e.g. to the Service's port), no sample would arrive and nothing would scale."""
    template = f"http://{{ip}}:{engines.port}/port/{{port}}/metrics"
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                             metrics_url_template=template):
        await h.create(k, G4D, cr(autoscalingMetricSpecs=[QUEUE]))
        deployment = await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        container, = deployment["spec"]["template"]["spec"]["containers"]
        engines.container_port = container["ports"][0]["containerPort"]
        await add_pod(k, engines, "chat-a", waiting=12)
        await h.wait_for(lambda: replicas(k) == 3, what="scale up to 3 from metrics read on the container port")
        assert engines.scrapes["chat-a"] >= 1


async def test_a_pod_with_an_endless_metrics_body_is_named_on_the_object(k: Emulator, engines: FakeEngines) -> None:
    """The other pod's metrics still scale; ScalingActive names the one left out and the limit it broke."""
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                             metrics_url_template=engines.url_template):
        await h.create(k, G4D, cr(autoscalingMetricSpecs=[QUEUE]))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        engines.endless.add("chat-b")
        await add_pod(k, engines, "chat-a", waiting=12)
        await add_pod(k, engines, "chat-b", waiting=0)
        over = "left out pod chat-b: metrics body exceeds 1 MiB (the operator's limit); the rest was not read"
        await h.wait_for(lambda: over in (cond(k, "ScalingActive") or {}).get("message", ""),
                         what="ScalingActive naming the pod over the limit")
        assert cond(k, "ScalingActive")["status"] == "True"  # type: ignore[index]
        await h.wait_for(lambda: replicas(k) == 3, what="scale up on chat-a's 12 waiting against a target of 5")


async def test_duty_cycle_from_prometheus(k: Emulator, engines: FakeEngines) -> None:
    await engines.start_prometheus()
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                             metrics_url_template=engines.url_template, prometheus_url=engines.prometheus_url):
        await h.create(k, G4D, cr(autoscalingMetricSpecs=[{"metricName": "accelerator/duty_cycle"}]))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        # DCGM exporter series carry the pod name; 90 % against the default target 60: ceil(1.5) = 2
        await add_pod(k, engines, "chat-7d4f9c-x2x9z", waiting=0)
        engines.gpu_util["chat-7d4f9c-x2x9z"] = 90
        await h.wait_for(lambda: replicas(k) == 2, what="scale up to 2")
        # the replicas are applied before the status of that tick is written: wait for the value itself
        expected = [{"metricName": "accelerator/duty_cycle", "current": 90.0, "target": 60.0}]
        await h.wait_for(lambda: status(k).get("autoscaling", {}).get("metrics") == expected,
                         what="status.autoscaling with the duty cycle")


@pytest.mark.parametrize(("metric", "why"), [
    ("accelerator/duty_cycle", "start the operator with --prometheus-url"),
    ("cpu/utilization", "metrics.k8s.io, which this cluster does not serve: install metrics-server"),
])
async def test_unavailable_metric_keeps_replicas(k: Emulator, engines: FakeEngines, metric: str, why: str) -> None:
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                             metrics_url_template=engines.url_template) as op:
        await h.create(k, G4D, cr(NO_DRAFTER, autoscalingMetricSpecs=[{"metricName": metric}, QUEUE]))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        await add_pod(k, engines, "chat-a", waiting=50)  # the queue alone would scale up
        await h.wait_for(lambda: cond(k, "ScalingActive"), what="ScalingActive")
        active = cond(k, "ScalingActive")
        assert active is not None and active["status"] == "False" and active["reason"] == "MetricUnavailable"
        assert metric in active["message"] and why in active["message"]
        assert status(k)["autoscaling"]["metrics"][0] == {"metricName": metric, "target": 60.0}  # no current
        await h.wait_for(lambda: op.metrics.value("gemma4_operator_autoscaler_decisions_total",
                                                  direction="inactive") >= 5, what="ticks")
        assert autoscaler_writes(k) == [] and replicas(k) is None and engines.scrapes["chat-a"] == 0
        assert scaled_events(k) == []


POD_METRICS = "metrics.k8s.io/v1beta1/pods"


async def test_cpu_utilization_from_metrics_server(k: Emulator, engines: FakeEngines) -> None:
    k.resources[POD_METRICS] = kmock.ResourceInfo(kind="PodMetrics", namespaced=True, verbs={"list", "get"})
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                             metrics_url_template=engines.url_template):
        await h.create(k, G4D, cr(NO_DRAFTER, autoscalingMetricSpecs=[{"metricName": "cpu/utilization"}]))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        await add_pod(k, engines, "chat-a", waiting=0)
        # 3.6 cores used of the 4 requested for a 1-GPU pod: 90 % against the default target 60: ceil(1.5) = 2
        await h.create(k, POD_METRICS, {
            "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": "chat-a", "namespace": "default", "labels": LABELS},
            "containers": [{"name": "server", "usage": {"cpu": "3600m", "memory": "2Gi"}}]})
        await h.wait_for(lambda: replicas(k) == 2, what="scale up to 2")
        expected = [{"metricName": "cpu/utilization", "current": 90.0, "target": 60.0}]
        await h.wait_for(lambda: status(k).get("autoscaling", {}).get("metrics") == expected,
                         what="status.autoscaling with the CPU utilization")
        assert engines.scrapes["chat-a"] == 0  # no engine metric asked for: no scrape


def declare_keda(k: Emulator) -> None:
    k.resources[SCALEDOBJECTS] = kmock.ResourceInfo(kind="ScaledObject", namespaced=True,
                                                    verbs={"list", "watch", "get", "create", "patch", "delete"},
                                                    subresources={"status"})


async def test_keda_backend_renders_a_valid_scaled_object(k: Emulator) -> None:
    declare_keda(k)
    prometheus = "http://prometheus.monitoring:9090"
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1, prometheus_url=prometheus):
        await h.create(k, G4D, cr(backend="keda", autoscalingMetricSpecs=[
            QUEUE, {"metricName": "vllm/kv_cache_usage_perc", "target": 80}]))
        so = await h.wait_for(lambda: h.obj(k, SCALEDOBJECTS, "default", "chat"), what="the ScaledObject")
        await h.settle(k)
        jsonschema.validate(so["spec"], KEDA_SCHEMA)
        assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"}
        assert [t["metadata"]["serverAddress"] for t in so["spec"]["triggers"]] == [prometheus] * 2
        assert so["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gemma4-operator"
        cr_uid = h.obj(k, G4D, "default", "chat")["metadata"]["uid"]  # type: ignore[index]
        assert so["metadata"]["ownerReferences"][0]["uid"] == cr_uid
        assert replicas(k) is None and autoscaler_writes(k) == []  # KEDA owns replicas
        assert cond(k, "Planned")["status"] == "True"  # type: ignore[index]
        assert cond(k, "ScalingActive") is None  # the built-in autoscaler does not run

        # a deleted ScaledObject comes back (watched like every other child)
        await h.delete(k, SCALEDOBJECTS, "default", "chat")
        await h.wait_for(lambda: h.obj(k, SCALEDOBJECTS, "default", "chat"), what="the ScaledObject back")

        # switching to the built-in backend deletes the ScaledObject
        await h.patch(k, G4D, "default", "chat", {"spec": {"autoscaling": {"backend": "operator"}}})
        await h.wait_for(lambda: h.obj(k, SCALEDOBJECTS, "default", "chat") is None, what="ScaledObject gone")


async def test_keda_backend_without_keda_is_not_planned(k: Emulator) -> None:
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), prometheus_url="http://prometheus:9090"):
        await h.create(k, G4D, cr(backend="keda", autoscalingMetricSpecs=[QUEUE]))
        await h.wait_for(lambda: cond(k, "Planned"), what="Planned")
        planned = cond(k, "Planned")
        assert planned is not None and planned["status"] == "False"
        assert "KEDA is not installed" in planned["message"]
        assert h.obj(k, DEPLOYMENTS, "default", "chat") is None


async def test_keda_backend_unsupported_metric_is_not_planned(k: Emulator) -> None:
    declare_keda(k)
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):  # no --prometheus-url
        await h.create(k, G4D, cr(backend="keda", autoscalingMetricSpecs=[QUEUE]))
        await h.wait_for(lambda: cond(k, "Planned"), what="Planned")
        planned = cond(k, "Planned")
        assert planned is not None and planned["status"] == "False"
        assert "--prometheus-url" in planned["message"]
        assert h.objects(k, SCALEDOBJECTS) == []


async def test_keda_backend_in_poll_mode(k: Emulator) -> None:
    declare_keda(k)
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), prometheus_url="http://prometheus:9090",
                             children=ChildrenMode.POLL, resync_interval=0.2):
        await h.create(k, G4D, cr(backend="keda", autoscalingMetricSpecs=[QUEUE]))
        await h.wait_for(lambda: h.obj(k, SCALEDOBJECTS, "default", "chat"), what="the ScaledObject")
        # the resync re-reads it (GET) and finds nothing to repair
        await h.wait_for(lambda: any(r.method.value == "GET" and r.name == "chat" and r.resource is not None
                                     and r.resource.plural == "scaledobjects" for r in h.operator_requests(k)),
                         what="a poll of the ScaledObject")


async def test_a_restarted_operator_holds_a_scale_down_only_as_long_as_the_window(k: Emulator,
                                                                                 engines: FakeEngines) -> None:
    """The recommendations that gate scale-down live in status.autoscaling: a new operator process
    neither scales down at once nor waits a whole scaleDownDelaySeconds after its start."""
    clock = Clock()
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                             metrics_url_template=engines.url_template) as op:
        assert op.ctx is not None
        op.ctx.clock = clock
        await h.create(k, G4D, cr(autoscalingMetricSpecs=[QUEUE]))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        await add_pod(k, engines, "chat-a", waiting=12)
        await h.wait_for(lambda: replicas(k) == 3, what="scale up to 3")
        await add_pod(k, engines, "chat-b", waiting=0)
        await add_pod(k, engines, "chat-c", waiting=0)
        engines.waiting["chat-a"] = 0  # idle: recommends 0, held at 3 by the window
        await h.wait_for(lambda: status(k).get("autoscaling", {}).get("recommendedReplicas") == 0, what="idle")
        auto = status(k)["autoscaling"]
        assert [r["replicas"] for r in auto["recommendations"]] == [3] and replicas(k) == 3
        mark = len(h.writes(k))
        seen = engines.scrapes["chat-a"]
        await h.wait_for(lambda: engines.scrapes["chat-a"] >= seen + 5, what="more ticks")
        assert [h.describe(r) for r in h.writes(k)[mark:]] == []  # the held history writes nothing per tick

    clock.now += 200  # the operator was down; the 3 is still inside the 300 s window
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                             metrics_url_template=engines.url_template) as op:
        assert op.ctx is not None
        op.ctx.clock = clock
        seen = engines.scrapes["chat-a"]
        await h.wait_for(lambda: engines.scrapes["chat-a"] >= seen + 3, what="ticks after the restart")
        assert replicas(k) == 3  # not early
        clock.now += 110  # 310 s after the 3, 110 s after the restart: a fresh window would still hold
        await h.wait_for(lambda: replicas(k) == 1, what="scale down when the window really ends")


SCALES_TO_ZERO = {"minReplicaCount": 0, "autoscalingMetricSpecs": [QUEUE],
                  "scaleToZeroSpec": {"idleScaledownPeriod": "5m", "minScaleupPeriod": "5m"}}
ACTIVATOR_LABELS = {**LABELS, "app.kubernetes.io/name": "gemma4-activator", "app.kubernetes.io/component": "activator"}


def service_app(k: Emulator) -> str | None:
    service = h.obj(k, h.SERVICES, "default", "chat")
    return None if service is None else service["spec"]["selector"].get("app.kubernetes.io/name")


@contextlib.asynccontextmanager
async def real_activator(k: Emulator, engines: FakeEngines, ip: str = "127.0.0.9") -> AsyncIterator[tuple[
        Activator, ActivatorSettings]]:
    """The real activator (in-process) as the activator pod's process: on its own loopback address, its admin port
    where the autoscaler scrapes (the fake engines' port); its pod Ready in kmock. Its upstream is an address where
    no replica listens. A scale-to-zero object needs it: an activator that cannot be read is never idle."""
    with socket.socket() as sock:  # a port free on loopback for the requests
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ActivatorSettings(upstream="http://127.0.0.10:9", ready_path="/health", cold_start_s=60,
                                 host=ip, port=port, admin_port=engines.port)
    activator, stop = await start(settings)
    try:
        await h.create(k, PODS, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "chat-activator-a", "namespace": "default", "labels": ACTIVATOR_LABELS},
            "spec": {"containers": [{"name": "activator", "image": "gemma4-operator"}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})
        yield activator, settings
    finally:
        await stop()


async def test_a_request_held_by_the_real_activator_wakes_a_deployment_at_zero(k: Emulator,
                                                                                 engines: FakeEngines) -> None:
    """The real activator holds a request; the built-in autoscaler reads the held gauge at zero replicas and wakes
    one replica; the Service selects the activator until the Deployment reports a ready replica, then the serving
    pods."""
    async with real_activator(k, engines) as (activator, settings), h.OperatorRun(
            k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1, metrics_url_template=engines.url_template):
        await h.create(k, G4D, cr(**SCALES_TO_ZERO))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat-activator"), what="the activator")
        await h.wait_for(lambda: service_app(k) == "gemma4-activator", what="the Service on the activator")
        # asleep: the Deployment at zero (what an earlier idle period left), nothing held
        await h.patch(k, DEPLOYMENTS, "default", "chat", {"spec": {"replicas": 0}})
        await h.wait_for(lambda: status(k).get("autoscaling", {}).get("scaledToZero") is True, what="at zero")
        assert replicas(k) == 0

        async with aiohttp.ClientSession() as client:
            held = asyncio.ensure_future(client.post(f"http://{settings.host}:{settings.port}/v1/completions",
                                                     data=b"{}"))
            await h.wait_for(lambda: replicas(k) == 1, what="the wake")
            assert activator.held == 1 and not held.done()
            await h.wait_for(lambda: any("wake: 1 request(s) held by the activator" in m
                                         for m in scaled_events(k)), what="the Scaled event")
            held.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await held
        # the Deployment controller's report of a ready replica switches the Service back
        await h.patch(k, DEPLOYMENTS, "default", "chat", {"status": {"replicas": 1, "readyReplicas": 1}},
                      subresource="status")
        await h.wait_for(lambda: service_app(k) == "gemma4", what="the Service back on the serving pods")


ZERO = {"minReplicaCount": 0, "scaleToZeroSpec": {"idleScaledownPeriod": "5m", "minScaleupPeriod": "5m"},
        "autoscalingMetricSpecs": [QUEUE]}


def autoscaling_status(k: Emulator) -> dict[str, Any]:
    auto: dict[str, Any] = status(k).get("autoscaling", {})
    return auto


async def test_an_idle_deployment_scales_to_zero_and_a_restart_keeps_the_idle_timer(
        k: Emulator, engines: FakeEngines) -> None:
    """The first operator sees the pod idle (nothing running or waiting, the request counter flat) and writes
    idleSince; a second one, started with empty memory when the period is over, reads it back and scales to
    zero at once instead of starting the period again."""
    async with real_activator(k, engines):  # a scale-to-zero object goes idle only with a readable activator
        clock = Clock()
        async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                                 metrics_url_template=engines.url_template) as op:
            assert op.ctx is not None
            op.ctx.clock = clock
            await h.create(k, G4D, cr(**ZERO))
            await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
            await add_pod(k, engines, "chat-a", waiting=0)
            await h.wait_for(lambda: engines.scrapes["chat-a"] >= 2, what="scrapes of a busy pod (3 running)")
            assert autoscaling_status(k).get("idleSince", "") == ""
            engines.running["chat-a"] = 0
            await h.wait_for(lambda: autoscaling_status(k).get("idleSince"), what="idleSince in status")
            assert autoscaling_status(k)["idleSince"] == "1970-01-01T00:16:40.000Z"  # the clock's 1000 s
            assert autoscaling_status(k)["scaledToZero"] is False
            mark = len(h.writes(k))
            seen = engines.scrapes["chat-a"]
            await h.wait_for(lambda: engines.scrapes["chat-a"] >= seen + 5, what="more idle ticks")
            assert [h.describe(r) for r in h.writes(k)[mark:]] == []  # an idle deployment costs no writes
        clock.now += 300
        async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), autoscale_interval=0.1,
                                 metrics_url_template=engines.url_template) as op:
            assert op.ctx is not None
            op.ctx.clock = clock
            await h.wait_for(lambda: replicas(k) == 0, what="scale to zero on the restored idle timer")
            await h.wait_for(lambda: autoscaling_status(k).get("scaledToZero") is True, what="scaledToZero")
            await h.wait_for(lambda: any(m.startswith("Scaled from 1 to 0: scale to zero: no request for 300s")
                                         for m in scaled_events(k)), what="the Scaled event")  # posted after the status
