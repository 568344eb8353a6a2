"""The tenant policy in Python: its values as the chart passes them, the operator's flag, and the refusal that
reaches status. The admission policy's CEL is run on the same table as these rules in
tests/packaging/test_tenant_policy_chart.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.cli.main import build_parser
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.config import ConfigError, OperatorConfig
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.policy import (
    PolicyViolationError,
    TenantPolicy,
    TenantPolicyError,
    helm_key,
    parse_tenant_policy,
    policy_refusals,
)
from gemma4_operator.reconcile import desired as rc

CHART = Path(__file__).resolve().parents[2] / "charts" / "gemma4-operator"
CPU = ClusterFacts(frozenset())
SA_REFUSAL = ('spec.podTemplate.spec.serviceAccountName: ServiceAccount "admin" is not allowed by the tenant policy; '
              "an administrator allows it with the Helm value tenantPolicy.serviceAccountNames")


def g4d(**spec: Any) -> Gemma4Deployment:
    return Gemma4Deployment.model_validate({
        "apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
        "metadata": {"name": "chat", "namespace": "ml"},
        "spec": {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}, **spec}})


def test_defaults_are_the_charts() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["tenantPolicy"]
    del values["admission"]
    defaults = TenantPolicy()
    assert {helm_key(f.name): getattr(defaults, f.name) for f in dataclasses.fields(TenantPolicy)} == {
        key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    assert parse_tenant_policy("{}") == defaults


def test_values_are_read_as_helm_writes_them() -> None:
    policy = parse_tenant_policy(json.dumps({"imagePrefixes": ["registry.example.com/"], "affinity": True,
                                             "serviceAccountNames": ["*"]}))
    assert policy.image_prefixes == ("registry.example.com/",) and policy.affinity is True
    assert policy.service_account_names == ("*",) and policy.secret_names == ("hf-token",)


@pytest.mark.parametrize(("text", "message"), [
    ("[", "tenant policy: not JSON (Expecting value at character 1)"),
    ("[]", "tenant policy: expected a JSON object, got list"),
    ('{"imagePrefix": []}', "tenant policy: unknown key imagePrefix (known: imagePrefixes, extraArgPrefixes, "),
    ('{"affinity": "yes"}', "tenantPolicy.affinity: expected true or false, got 'yes'"),
    ('{"pvcClaims": "weights"}',
     "tenantPolicy.pvcClaims: expected a list of non-empty one-line strings, got 'weights'"),
    ('{"secretNames": [""]}', "tenantPolicy.secretNames: expected a list of non-empty one-line strings, got ['']"),
    ('{"schedulerNames": ["a\\nb"]}', "tenantPolicy.schedulerNames: expected a list of non-empty one-line strings"),
])
def test_malformed_values_are_refused_in_words(text: str, message: str) -> None:
    with pytest.raises(TenantPolicyError) as e:
        parse_tenant_policy(text)
    assert str(e.value).startswith(message)


def test_operator_flag_and_environment() -> None:
    parser = build_parser()
    assert config_from_args(parser.parse_args(["run"]), env={}).tenant_policy is None  # no policy unless given
    from_env = config_from_args(parser.parse_args(["run"]), env={"GEMMA4_TENANT_POLICY": '{"affinity": true}'})
    assert from_env.tenant_policy == TenantPolicy(affinity=True)
    flag = config_from_args(parser.parse_args(["run", "--tenant-policy", "{}"]),
                            env={"GEMMA4_TENANT_POLICY": '{"affinity": true}'})
    assert flag.tenant_policy == TenantPolicy()  # the flag wins
    with pytest.raises(ConfigError) as e:
        config_from_args(parser.parse_args(["run", "--tenant-policy", '{"affinity": 1}']), env={})
    assert str(e.value) == "--tenant-policy: tenantPolicy.affinity: expected true or false, got 1"


def test_a_refused_spec_gets_no_plan_and_no_children() -> None:
    parent = g4d(podTemplate={"spec": {"serviceAccountName": "admin"}})
    desired = rc.desired_state(parent, "uid", CPU, OperatorConfig(tenant_policy=TenantPolicy()))
    assert desired.plan is None and desired.children == ()
    assert isinstance(desired.error, PolicyViolationError)
    assert desired.error.reason == "PolicyViolation"  # the Planned=False condition's reason
    assert desired.error.one_line == SA_REFUSAL and desired.error.message == SA_REFUSAL


def test_every_refusal_is_in_status_one_per_line_in_the_event() -> None:
    parent = g4d(podTemplate={"spec": {"serviceAccountName": "admin", "affinity": {"nodeAffinity": {}}}})
    error = rc.desired_state(parent, "uid", CPU, OperatorConfig(tenant_policy=TenantPolicy())).error
    affinity = ("spec.podTemplate.spec.affinity: an affinity is not allowed by the tenant policy; an administrator "
                "allows it with the Helm value tenantPolicy.affinity")
    assert error is not None
    assert error.one_line == f"{SA_REFUSAL}; {affinity}" and error.message == f"{SA_REFUSAL}\n{affinity}"


def test_without_a_policy_or_within_it_the_spec_plans() -> None:
    parent = g4d(podTemplate={"spec": {"serviceAccountName": "admin"}})
    assert rc.desired_state(parent, "uid", CPU, OperatorConfig()).plan is not None
    listed = OperatorConfig(tenant_policy=TenantPolicy(service_account_names=("admin",)))
    assert rc.desired_state(parent, "uid", CPU, listed).plan is not None


def test_operator_images_are_always_allowed() -> None:
    spec = g4d(serving={"image": "mirror.local/llama.cpp:server-b11434"}).spec
    assert policy_refusals(spec, TenantPolicy(), ["mirror.local/llama.cpp:server-b11434"]) == []
    assert policy_refusals(spec, TenantPolicy(), []) == [
        'spec.serving.image: image "mirror.local/llama.cpp:server-b11434" is not allowed by the tenant policy; an '
        "administrator allows it with the Helm value tenantPolicy.imagePrefixes (the engine images of the catalog "
        "and operator.images are always allowed)"]
