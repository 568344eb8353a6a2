"""Engine monitors: a PodMonitor per Gemma4Deployment where PodMonitors are served, else scrape annotations;
--engine-monitors turns them off; the serving container keeps its last log lines as termination message."""

from __future__ import annotations

from typing import Any

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.cli.main import build_parser
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.config import ConfigError, EngineMonitors, OperatorConfig
from gemma4_operator.controller.handlers import CHILD_RESOURCES, PODMONITORS, child_resources
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, RenderOptions, pod_label_meta, render_children
from tests.packaging.observability import ENGINE_TARGET_LABELS

OWNER = Owner("chat", "ml", "uid-1")


def children(pod_monitors: bool, **overrides: Any) -> dict[str, dict[str, Any]]:
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"},
                                                **overrides})
    p = plan(spec, ClusterFacts(frozenset({"nvidia-l4"})))
    return {o["kind"]: o for o in render_children(OWNER, spec, p, RenderOptions(pod_monitors=pod_monitors))}


def test_pod_monitor_selects_the_engine_pods_and_labels_their_series() -> None:
    objs = children(True)
    pm, dep = objs["PodMonitor"], objs["Deployment"]
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["metadata"]["name"] == "chat" and pm["metadata"]["namespace"] == "ml"
    assert pm["metadata"]["labels"] == dep["metadata"]["labels"]  # name, variant, managed-by
    assert pm["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pm["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    [endpoint] = pm["spec"]["podMetricsEndpoints"]
    ports = dep["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert endpoint["port"] == "http" and [p["name"] for p in ports] == ["http"] and endpoint["path"] == "/metrics"
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    copied = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert copied == {target: [pod_label_meta(label)] for target, label in ENGINE_TARGET_LABELS.items()}
    for label in ENGINE_TARGET_LABELS.values():
        assert label in pod_labels
    assert copied["name"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"]
    assert copied["variant"] == ["__meta_kubernetes_pod_label_serving_gemma4_dev_variant"]
    assert "prometheus.io/scrape" not in (dep["spec"]["template"]["metadata"].get("annotations") or {})


def test_without_pod_monitors_the_pods_carry_scrape_annotations() -> None:
    objs = children(False, podTemplate={"metadata": {"annotations": {"prometheus.io/path": "/custom", "a": "b"}}})
    assert "PodMonitor" not in objs
    annotations = objs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    port = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                           "prometheus.io/path": "/custom", "a": "b"}  # the user's win


def test_engine_container_keeps_its_logs_as_termination_message() -> None:
    container = children(False)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "server" and container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_engine_monitors_flag_and_environment() -> None:
    def run(*argv: str, env: dict[str, str] | None = None) -> OperatorConfig:
        return config_from_args(build_parser().parse_args(["run", *argv]), env=env or {})

    assert run().engine_monitors is EngineMonitors.AUTO
    assert run("--engine-monitors", "off").engine_monitors is EngineMonitors.OFF
    assert run(env={"GEMMA4_ENGINE_MONITORS": "off"}).engine_monitors is EngineMonitors.OFF
    assert run("--engine-monitors", "auto", env={"GEMMA4_ENGINE_MONITORS": "off"}).engine_monitors \
        is EngineMonitors.AUTO
    with pytest.raises(ConfigError):
        run(env={"GEMMA4_ENGINE_MONITORS": "sometimes"})


def test_pod_monitors_are_watched_only_when_the_operator_may_create_them() -> None:
    assert child_resources(OperatorConfig()) == (*CHILD_RESOURCES, PODMONITORS)
    assert child_resources(OperatorConfig(engine_monitors=EngineMonitors.OFF)) == CHILD_RESOURCES
