"""The chart's side of engine monitors: ``operator.engineMonitors`` reaches the operator's flags and the
PodMonitor permissions follow it (what the operator does with PodMonitors, nothing more)."""

from __future__ import annotations

import pytest

from tests.packaging.chart import HelmError, operator_cluster_role, workload
from tests.packaging.conftest import Renderer
from tests.packaging.test_rbac import all_grants

PODMONITORS = {("monitoring.coreos.com", "podmonitors", verb) for verb in ("get", "list", "watch", "create", "patch")}


def args(renderer: Renderer, value_set: str) -> list[str]:
    return list(workload(renderer.value_set(value_set))["spec"]["template"]["spec"]["containers"][0]["args"])


def test_engine_monitors_on_by_default(renderer: Renderer) -> None:
    assert not any(a.startswith("--engine-monitors") for a in args(renderer, "default"))
    granted = all_grants(renderer.value_set("default"))
    assert granted >= PODMONITORS
    assert ("monitoring.coreos.com", "podmonitors", "delete") not in granted  # they go with their object
    assert {p for p in granted if p[0] == "monitoring.coreos.com"} == PODMONITORS


def test_engine_monitors_off(renderer: Renderer) -> None:
    assert "--engine-monitors=off" in args(renderer, "engine-monitors-off")
    assert not {p for p in all_grants(renderer.value_set("engine-monitors-off")) if p[1] == "podmonitors"}


def test_poll_mode_reads_pod_monitors_one_by_one(renderer: Renderer) -> None:
    granted = all_grants(renderer.value_set("ha-clusterwide"))
    assert {p for p in granted if p[1] == "podmonitors"} == {
        ("monitoring.coreos.com", "podmonitors", verb) for verb in ("get", "create", "patch")}


def test_engine_monitors_value_is_checked(renderer: Renderer) -> None:
    with pytest.raises(HelmError, match="engineMonitors"):
        renderer.objects("--set", "operator.engineMonitors=maybe")
    assert operator_cluster_role(renderer.value_set("default"))
