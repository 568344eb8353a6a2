"""The NetworkPolicy child: when it is rendered (operator default, spec switch) and whom it admits."""

from __future__ import annotations

from typing import Any

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.cli.main import build_parser
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, RenderOptions, render_children

OWNER = Owner("chat", "ml", "uid-1")
INGRESS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}


def policy(options: RenderOptions, **spec: Any) -> dict[str, Any] | None:
    s = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}, **spec})
    children = render_children(OWNER, s, plan(s, ClusterFacts.every_catalog_type()), options)
    return next((c for c in children if c["kind"] == "NetworkPolicy"), None)


@pytest.mark.parametrize(("default", "switch", "rendered"), [
    (False, None, False), (True, None, True), (False, True, True), (True, False, False)])
def test_the_spec_switch_wins_over_the_operator_default(default: bool, switch: bool | None, rendered: bool) -> None:
    spec = {} if switch is None else {"networkPolicy": {"enabled": switch}}
    assert (policy(RenderOptions(network_policy=default), **spec) is not None) is rendered


def test_it_admits_the_namespace_the_operator_and_the_named_peers_on_the_serving_port_only() -> None:
    found = policy(RenderOptions(operator_namespace="gemma4-system"),
                   networkPolicy={"enabled": True, "ingressFrom": [INGRESS]})
    assert found is not None
    assert found["metadata"]["name"] == "chat" and found["metadata"]["namespace"] == "ml"
    assert found["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert found["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "gemma4", "app.kubernetes.io/instance": "chat"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {}},
                              {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gemma4-system"}}},
                              INGRESS],
                     "ports": [{"protocol": "TCP", "port": 8000}]}]}


def test_an_offline_render_knows_no_operator_namespace() -> None:
    found = policy(RenderOptions(), networkPolicy={"enabled": True})
    assert found is not None and found["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]


@pytest.mark.parametrize(("argv", "env", "expected"), [
    ([], {}, False), (["--network-policy"], {}, True), ([], {"GEMMA4_NETWORK_POLICY": "true"}, True)])
def test_the_operator_default_comes_from_the_flag_or_its_environment_twin(argv: list[str], env: dict[str, str],
                                                                          expected: bool) -> None:
    args = build_parser().parse_args(["run", *argv])
    config = config_from_args(args, {**env, "POD_NAMESPACE": "gemma4-system"})
    assert config.network_policy is expected and config.operator_namespace == "gemma4-system"
