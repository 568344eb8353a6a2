"""Scale to zero and the wake path on the real API server (kube-apiserver + kube-controller-manager 1.37).

The test plays the kubelet with real processes on loopback addresses of their own: for a serving pod it starts
llama.cpp's server (the tiny Gemma 4) on the pod's IP and port and marks the pod Ready; for the activator's pod it
starts ``gemma4-operator activator`` with the args the operator rendered (its upstream, the serving pods' headless
Service in a cluster, is the serving pod's address here: no cluster DNS) and marks it Ready. The operator runs as
the chart's ServiceAccount with the chart's args plus ``--autoscale-interval=1`` and the test-only
``--test-time-scale`` (scaleToZeroSpec's 5 minute periods become 6 s).

One object in a namespace that enforces Pod Security "restricted", one story: serving -> idle -> the operator is
killed (SIGKILL) mid-idle and restarted, the idle timer it kept in status goes on -> zero: the Service selects the
activator, Ready=True reason ScaledToZero, and nothing is written while it stays there -> a request to the Service's
activator is held, wakes a replica, and is answered by the engine once the pod is Ready -> the Service selects the
serving pods again.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gemma4_operator.api import KIND
from tests.e2e.controlplane.cluster import free_port
from tests.e2e.test_operator_e2e import (
    ChartIdentity,
    Obj,
    OperatorProcess,
    Rest,
    condition,
    g4d,
    resource_versions,
    wait_for,
    wait_settled,
)
from tests.engine.llama_server import LlamaServer, LlamaServerSettings

pytestmark = pytest.mark.e2e

TINY_GGUF = Path(__file__).resolve().parents[1] / "data" / "tiny-gemma4-f32.gguf"
TIME_SCALE = 0.02  # 300 s (Vertex's least period) -> 6 s
PERIOD_S = 300 * TIME_SCALE
TICK_S = 1.0
SPEC: Obj = {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"},
             "serving": {"maxModelLen": 1024, "concurrency": 2, "modalities": ["text"]},
             "autoscaling": {"minReplicaCount": 0, "maxReplicaCount": 1,
                             "autoscalingMetricSpecs": [{"metricName": "vllm/num_requests_waiting", "target": 5}],
                             "scaleToZeroSpec": {"idleScaledownPeriod": "5m", "minScaleupPeriod": "5m"}}}
SERVING = "app.kubernetes.io/name=gemma4"
ACTIVATOR = "app.kubernetes.io/name=gemma4-activator"


@pytest.fixture(scope="module")
def fast_operator(g4d_crd: Obj, chart_identity: ChartIdentity,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    assert g4d_crd
    args = [*chart_identity.args, f"--autoscale-interval={TICK_S:g}", f"--test-time-scale={TIME_SCALE:g}"]
    op = OperatorProcess(args, chart_identity.kubeconfig, tmp_path_factory.mktemp("s2z-operator"), name="s2z")
    op.start()
    yield op
    if op.running:
        op.stop()


class Kubelet:
    """Runs the processes of the pods the test marks Ready; stops them when their pod goes."""

    def __init__(self, rest: Rest, namespace: str, log_dir: Path) -> None:
        self.rest, self.namespace, self.log_dir = rest, namespace, log_dir
        net = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"  # apart from other runs on this machine
        self.serving_ip, self.activator_ip = f"{net}.2", f"{net}.3"
        self.engine: LlamaServer | None = None
        self.activator: subprocess.Popen[bytes] | None = None
        self.activator_port = 0

    def pod(self, selector: str) -> Obj | None:
        live = [p for p in self.rest.objects("Pod", self.namespace, selector)
                if not p["metadata"].get("deletionTimestamp")]
        return live[0] if live else None

    def mark_ready(self, pod: Obj, ip: str) -> None:
        container = pod["spec"]["containers"][0]
        ready = [{"type": t, "status": "True", "lastTransitionTime": "2026-12-08T00:00:00Z"}
                 for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
        self.rest.patch("Pod", self.namespace, pod["metadata"]["name"], {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1", "conditions": ready,
            "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
                                   "ready": True, "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": "2026-12-08T00:00:00Z"}}}]}},
            subresource="status")

    def start_engine(self, port: int) -> None:
        settings = LlamaServerSettings(model_path=TINY_GGUF, host=self.serving_ip, port=port, n_ctx=1024,
                                       n_parallel=2, metrics=True, alias=("gemma-4-e2b-it",), threads=2)
        self.engine = LlamaServer(settings, log_path=self.log_dir / "engine.log").start()

    def stop_engine(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    def start_activator(self, args: list[str], upstream_port: int) -> None:
        script = Path(sys.executable).with_name("gemma4-operator")
        # the rendered args, but the upstream (no cluster DNS here) and the requests' port (the Service's
        # targetPort in a cluster; a free one here, so that nothing else on this machine holds it)
        self.activator_port = free_port()
        argv = [str(script), "activator", *[a for a in args if not a.startswith(("--upstream=", "--port="))],
                f"--upstream=http://{self.serving_ip}:{upstream_port}", f"--host={self.activator_ip}",
                f"--port={self.activator_port}"]
        log = (self.log_dir / "activator.log").open("wb")
        self.activator = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def remove_terminating(self, selector: str) -> None:
        """What the kubelet does for a deleted pod once its containers stopped: the pod object goes."""
        for p in self.rest.objects("Pod", self.namespace, selector):
            if p["metadata"].get("deletionTimestamp"):
                with contextlib.suppress(Exception):
                    self.rest.request("DELETE", self.rest.path("Pod", self.namespace, p["metadata"]["name"]),
                                      body={"gracePeriodSeconds": 0})

    def close(self) -> None:
        self.stop_engine()
        if self.activator is not None:
            self.activator.terminate()
            self.activator.wait(timeout=10)


def _service_selects(rest: Rest, ns: str, name: str, app: str) -> Obj | None:
    service = rest.get("Service", ns, name)
    return service if service and service["spec"]["selector"].get("app.kubernetes.io/name") == app else None


def _container(deployment: Obj) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_idle_object_goes_to_zero_keeps_its_timer_across_a_kill_and_wakes_on_a_request(
        rest: Rest, fast_operator: OperatorProcess, e2e_namespace: str, tmp_path: Path) -> None:
    op, ns, name = fast_operator, e2e_namespace, "chat"
    kubelet = Kubelet(rest, ns, tmp_path)
    try:
        # Pod Security "restricted" enforced: the activator's pod and the serving pods must be admitted
        rest.request("PATCH", f"/api/v1/namespaces/{ns}", content_type="application/merge-patch+json",
                     body={"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
        rest.create(g4d(name, ns, SPEC))
        serving = wait_for("the serving Deployment", lambda: rest.get("Deployment", ns, name), operator=op)
        activator = wait_for("the activator Deployment", lambda: rest.get("Deployment", ns, f"{name}-activator"),
                             operator=op)
        port = _container(serving)["ports"][0]["containerPort"]
        headless = wait_for("the replicas' headless Service", lambda: rest.get("Service", ns, f"{name}-replicas"),
                            operator=op)
        assert headless["spec"]["clusterIP"] == "None"
        # no replica ready yet: the Service already answers through the activator
        wait_for("the Service to select the activator", lambda: _service_selects(rest, ns, name, "gemma4-activator"),
                 operator=op)

        kubelet.start_activator(_container(activator)["args"], port)
        kubelet.mark_ready(wait_for("the activator pod", lambda: kubelet.pod(ACTIVATOR), operator=op),
                           kubelet.activator_ip)
        kubelet.start_engine(port)
        kubelet.mark_ready(wait_for("the serving pod", lambda: kubelet.pod(SERVING), operator=op), kubelet.serving_ip)
        wait_for("the Service to select the serving pods", lambda: _service_selects(rest, ns, name, "gemma4"),
                 operator=op)

        # idle: the timer starts and is kept in status; the operator dies (SIGKILL) and a new one goes on with it
        def idle_since() -> str | None:
            obj = rest.get(KIND, ns, name)
            return ((obj or {}).get("status", {}).get("autoscaling") or {}).get("idleSince") or None

        started = wait_for("the idle timer in status", idle_since, timeout=30, operator=op)
        op.kill()
        op.start()
        seen: set[str] = set()

        def at_zero() -> Obj | None:
            obj = rest.get(KIND, ns, name)
            autoscaling = ((obj or {}).get("status") or {}).get("autoscaling") or {}
            if autoscaling.get("idleSince"):
                seen.add(autoscaling["idleSince"])
            deployment = rest.get("Deployment", ns, name)
            return deployment if deployment and deployment["spec"]["replicas"] == 0 else None

        wait_for("the Deployment to go to zero", at_zero, timeout=60, interval=0.2, operator=op)
        assert seen == {started}, f"the idle timer restarted after the kill: {sorted(seen)} (first {started})"

        # the kubelet's part of a scale-down: the container stops, the pod object goes
        kubelet.stop_engine()
        kubelet.remove_terminating(SERVING)
        wait_for("the Service to select the activator again",
                 lambda: _service_selects(rest, ns, name, "gemma4-activator"), operator=op)

        def scaled_to_zero() -> Obj | None:
            obj = rest.get(KIND, ns, name)
            ready = condition(obj or {}, "Ready")
            return obj if ready and ready["reason"] == "ScaledToZero" and ready["status"] == "True" else None

        obj = wait_for("Ready=True ScaledToZero", scaled_to_zero, operator=op)
        assert condition(obj, "Available")["reason"] == "ScaledToZero"  # type: ignore[index]

        # no idle writes: once the scale-down's own writes are done, five ticks at zero change nothing
        wait_settled(rest, op, quiet=3 * TICK_S)
        settled = resource_versions(rest, ns)
        time.sleep(5 * TICK_S)
        assert resource_versions(rest, ns) == settled

        # a request reaches the Service (its activator): held, a replica wakes, the engine answers it
        answer: dict[str, Any] = {}

        def ask() -> None:
            with httpx.Client(timeout=60) as http:
                answer["response"] = http.post(
                    f"http://{kubelet.activator_ip}:{kubelet.activator_port}/v1/chat/completions",
                    json={"model": "gemma-4-e2b-it", "messages": [{"role": "user", "content": "Hi"}],
                          "max_tokens": 4})

        asking = threading.Thread(target=ask)
        asking.start()
        woken = wait_for("a wake (replicas 1)",
                         lambda: (d := rest.get("Deployment", ns, name)) and d["spec"]["replicas"] == 1 and d,
                         timeout=30, operator=op)
        assert woken
        assert asking.is_alive()  # held while no replica serves
        pod = wait_for("the woken serving pod", lambda: kubelet.pod(SERVING), operator=op)
        kubelet.start_engine(port)
        kubelet.mark_ready(pod, kubelet.serving_ip)
        asking.join(timeout=30)
        assert answer["response"].status_code == 200, answer["response"].text
        assert answer["response"].json()["choices"][0]["message"]["role"] == "assistant"
        wait_for("the Service to select the serving pods again", lambda: _service_selects(rest, ns, name, "gemma4"),
                 operator=op)
        events = [e["message"] for e in rest.events_for(ns, name) if e["reason"] == "Scaled"]
        assert any("wake: 1 request(s) held by the activator" in m for m in events), events
    finally:
        kubelet.close()
