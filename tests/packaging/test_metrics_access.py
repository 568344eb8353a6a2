"""``metrics.access``: who may read the operator's /metrics, whose series name every tenant's Gemma4Deployments.
networkPolicy (the default) renders a NetworkPolicy for the operator's pods; localhost binds the endpoint to
127.0.0.1 and renders nothing that points at it; open is the chart's old behaviour. Every rendered object is
also validated against the Kubernetes schemas by test_chart.test_every_rendered_object_is_valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gemma4_operator.cli.main import build_parser
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.config import OperatorConfig
from tests.packaging.chart import CHART, NAMESPACE, RELEASE, HelmError, Manifest, helm, of_kind, one, workload
from tests.packaging.conftest import Renderer

BIND_FLAG = "--metrics-bind-address"
HA_NAMESPACED = ("-f", str(CHART / "ci" / "ha-namespaced-values.yaml"))  # metrics on 9090, health on 9091


def _container(objects: list[Manifest]) -> dict[str, Any]:
    container: dict[str, Any] = workload(objects)["spec"]["template"]["spec"]["containers"][0]
    return container


def _config(objects: list[Manifest]) -> OperatorConfig:
    """What `gemma4-operator run` reads from the rendered flags (the StatefulSet's priority env as replica 0)."""
    return config_from_args(build_parser().parse_args(["run", *_container(objects)["args"]]),
                            env={"GEMMA4_PRIORITY": "0"})


def _port_names(objects: list[Manifest]) -> set[str]:
    return {p["name"] for p in _container(objects)["ports"]}


def _metrics_ingress(namespaces: list[str], metrics_port: int, health_port: int) -> list[dict[str, Any]]:
    return [
        {"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]}}],
         "ports": [{"port": metrics_port, "protocol": "TCP"}]},
        {"ports": [{"port": health_port, "protocol": "TCP"}]},  # every source: the kubelet's probes
    ]


def test_network_policy_is_the_default(renderer: Renderer) -> None:
    objects = renderer.value_set("default")
    policy = one(objects, "NetworkPolicy")
    assert policy["metadata"]["namespace"] == NAMESPACE
    operator = workload(objects)
    assert policy["spec"]["podSelector"] == {"matchLabels": operator["spec"]["selector"]["matchLabels"]}
    pod_labels = operator["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()  # it selects the operator
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # the operator's own requests stay as they are
    assert policy["spec"]["ingress"] == _metrics_ingress(["monitoring", NAMESPACE], 8080, 8081)
    # The operator listens on every interface, where the metrics Service and the NetworkPolicy expect it.
    assert not any(a.startswith(BIND_FLAG) for a in _container(objects)["args"])
    assert _config(objects).metrics_bind_address == "0.0.0.0"
    assert "http-metrics" in _port_names(objects)
    assert one(objects, "Service")["metadata"]["name"] == "gemma4-operator-metrics"


def test_network_policy_follows_the_ports_and_namespaces(renderer: Renderer) -> None:
    objects = renderer.objects(*HA_NAMESPACED, "--set-json", f'metrics.allowedNamespaces=["prometheus","{NAMESPACE}"]')
    policy = one(objects, "NetworkPolicy")
    # The release's namespace is listed once; the ports are the pod's.
    assert policy["spec"]["ingress"] == _metrics_ingress(["prometheus", NAMESPACE], 9090, 9091)
    assert policy["spec"]["podSelector"] == {"matchLabels": workload(objects)["spec"]["selector"]["matchLabels"]}


def test_an_empty_namespace_list_admits_only_the_release_namespace(renderer: Renderer) -> None:
    policy = one(renderer.objects("--set-json", "metrics.allowedNamespaces=[]"), "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == [
        NAMESPACE]


@pytest.mark.parametrize("extra", [(), HA_NAMESPACED],
                         ids=["default", "ha-namespaced"])
def test_localhost_binds_127_0_0_1_and_renders_nothing_that_points_at_it(
        extra: tuple[str, ...], renderer: Renderer) -> None:
    # that values file scrapes the operator: a ServiceMonitor and the alerts
    unscraped = ("--set", "metrics.serviceMonitor.enabled=false", "--set", "metrics.prometheusRule.enabled=false")
    objects = renderer.objects(*extra, *(unscraped if extra else ()), "--set", "metrics.access=localhost")
    assert f"{BIND_FLAG}=127.0.0.1" in _container(objects)["args"]
    config = _config(objects)
    assert config.metrics_bind_address == "127.0.0.1" and config.metrics_port == (9090 if extra else 8080)
    assert _port_names(objects) == {"http-health"}  # no containerPort that a pod monitor could discover
    assert not of_kind(objects, "Service") and not of_kind(objects, "NetworkPolicy")


@pytest.mark.parametrize(("access", "line"), [
    ("networkPolicy", "Operator metrics: service gemma4-operator-metrics, port 8080, path /metrics (its NetworkPolicy "
                      f"admits namespaces monitoring, {NAMESPACE})."),
    ("localhost", f"kubectl -n {NAMESPACE} port-forward deployment/gemma4-operator 8080"),
])
def test_notes_say_how_to_read_the_metrics(access: str, line: str, helm_home: Path) -> None:
    out = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
               "--set", f"metrics.access={access}", home=helm_home)
    assert line in out[out.index("NOTES:"):]


@pytest.mark.parametrize("key", ["serviceMonitor", "prometheusRule"])
def test_localhost_refuses_what_would_scrape_the_metrics(key: str, renderer: Renderer) -> None:
    kind = {"serviceMonitor": "ServiceMonitor", "prometheusRule": "PrometheusRule"}[key]
    with pytest.raises(HelmError) as e:
        renderer.objects("--set", "metrics.access=localhost", "--set", f"metrics.{key}.enabled=true",
                         "--api-versions", f"monitoring.coreos.com/v1/{kind}")
    assert (f"metrics.{key}.enabled needs metrics.access networkPolicy or open: with localhost the operator's "
            "metrics listen on 127.0.0.1 inside its pod, where Prometheus cannot scrape them") in e.value.output


def test_open_is_the_old_behaviour(renderer: Renderer) -> None:
    objects = renderer.value_set("metrics-open")
    assert not of_kind(objects, "NetworkPolicy")
    assert one(objects, "Service")["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert "http-metrics" in _port_names(objects)
    assert _config(objects).metrics_bind_address == "0.0.0.0"
    default = renderer.value_set("default")
    assert _container(objects)["args"] == _container(default)["args"]
