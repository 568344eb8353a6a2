"""The tenant policy as the chart renders it: the ValidatingAdmissionPolicy's CEL (cel-python, over the
chart-rendered policy and parameters) and the operator's re-check (configured from the same rendering's
environment and flags) refuse the same specs with the same words; the aggregated roles for tenants.

The real API server runs the same policy in tests/e2e/test_admission_policy.py.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.catalog import load_catalog
from gemma4_operator.cli.main import build_parser
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.config import OperatorConfig
from gemma4_operator.policy import catalog_engine_images, policy_refusals
from tests.packaging.chart import CHART, ROOT, HelmError, Manifest, is_aggregated, of_kind, one, workload
from tests.packaging.conftest import Renderer
from tests.support.admission_policy import refusals as cel_refusals

Json = dict[str, Any]

LISTED = {"imagePrefixes": ["registry.example.com/ml/"], "extraArgPrefixes": ["--max-num-seqs=", "--enforce-eager"],
          "secretNames": ["hf-token"], "serviceAccountNames": ["gemma-serving"], "priorityClassNames": ["inference"],
          "runtimeClassNames": ["nvidia"], "schedulerNames": ["volcano"], "tolerationKeys": ["dedicated"],
          "nodeSelectorKeys": ["pool"], "affinity": True, "pvcClaims": ["weights"], "runAsRoot": True,
          "networkPolicyOptOut": True}
FLAGS = ("affinity", "runAsRoot", "networkPolicyOptOut")
OPEN = {**{key: ["*"] for key in LISTED if key not in FLAGS}, **dict.fromkeys(FLAGS, True)}
MIRROR = "mirror.example.com/vllm-openai:v0.32.0"
POLICIES: dict[str, tuple[str, ...]] = {
    "default": (),
    "listed": ("--set-json", f"tenantPolicy={json.dumps(LISTED)}", "--set", f"operator.images.vllm={MIRROR}"),
    "open": ("--set-json", f"tenantPolicy={json.dumps(OPEN)}"),
}
SUFFIX = "is not allowed by the tenant policy; an administrator allows it with the Helm value tenantPolicy."
BASE: Json = {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}}
EVERYTHING: Json = {
    "model": {"variant": "e2b", "source": {"uri": "pvc://weights/gemma-4-e2b",
                                          "tokenSecretRef": {"name": "hf-token", "key": "token"}}},
    "serving": {"image": "registry.example.com/ml/llama.cpp:b1", "extraArgs": ["--max-num-seqs=8", "--enforce-eager"],
                "apiKeySecretRef": {"name": "hf-token", "key": "api-key"}, "securityContext": {"runAsUser": 0},
                "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
    "podTemplate": {"spec": {
        "serviceAccountName": "gemma-serving", "priorityClassName": "inference", "runtimeClassName": "nvidia",
        "schedulerName": "volcano", "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml"}],
        "nodeSelector": {"pool": "gpu"},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}}},
    "networkPolicy": {"enabled": False},
}

# (policy, spec merged over BASE, the refusals in the policy's order)
CASES: dict[str, tuple[str, Json, list[str]]] = {
    "nothing optional": ("default", {}, []),
    "catalog image": ("default", {"serving": {"image": "ghcr.io/ggml-org/llama.cpp:server-b11434"}}, []),
    "other image": ("default", {"serving": {"image": "evil.example.com/miner:1"}}, [
        f'spec.serving.image: image "evil.example.com/miner:1" {SUFFIX}imagePrefixes (the engine images of the '
        "catalog and operator.images are always allowed)"]),
    "operator.images mirror": ("listed", {"serving": {"image": MIRROR}}, []),
    "mirror not configured": ("default", {"serving": {"image": MIRROR}}, [
        f'spec.serving.image: image "{MIRROR}" {SUFFIX}imagePrefixes (the engine images of the catalog and '
        "operator.images are always allowed)"]),
    "image under a prefix": ("listed", {"serving": {"image": "registry.example.com/ml/vllm:2"}}, []),
    "image beside a prefix": ("listed", {"serving": {"image": "registry.example.com/mlx/vllm:2"}}, [
        f'spec.serving.image: image "registry.example.com/mlx/vllm:2" {SUFFIX}imagePrefixes (the engine images of '
        "the catalog and operator.images are always allowed)"]),
    "extra args": ("default", {"serving": {"extraArgs": ["--enforce-eager"]}}, [
        f'spec.serving.extraArgs: argument "--enforce-eager" {SUFFIX}extraArgPrefixes (a flag and its value as one '
        "argument: --flag=value)"]),
    "a flag's value apart": ("listed", {"serving": {"extraArgs": ["--max-num-seqs=8", "--trust-remote-code"]}}, [
        f'spec.serving.extraArgs: argument "--trust-remote-code" {SUFFIX}extraArgPrefixes (a flag and its value as '
        "one argument: --flag=value)"]),
    "env from a Secret": ("default", {"serving": {"env": [
        {"name": "A", "value": "1"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "db-password", "key": "password"}}}]}}, [
        f'spec.serving.env: Secret "db-password" (valueFrom.secretKeyRef) {SUFFIX}secretNames']),
    "env from the pod": ("default", {"serving": {"env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "CFG", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}}, []),
    "the examples' token Secret": ("default", {"model": {"variant": "e2b", "source": {
        "uri": "hf://google/gemma-4-E2B-it", "tokenSecretRef": {"name": "hf-token", "key": "token"}}}}, []),
    "another token Secret": ("default", {"model": {"variant": "e2b", "source": {
        "uri": "hf://google/gemma-4-E2B-it", "tokenSecretRef": {"name": "team-b-token", "key": "token"}}}}, [
        f'spec.model.source.tokenSecretRef: Secret "team-b-token" {SUFFIX}secretNames']),
    "service account": ("default", {"podTemplate": {"spec": {"serviceAccountName": "cluster-admin-sa"}}}, [
        f'spec.podTemplate.spec.serviceAccountName: ServiceAccount "cluster-admin-sa" {SUFFIX}serviceAccountNames']),
    "scheduling and identity names": ("default", {"podTemplate": {"spec": {
        "priorityClassName": "system-node-critical", "runtimeClassName": "runc-privileged",
        "schedulerName": "my-scheduler"}}}, [
        f'spec.podTemplate.spec.priorityClassName: PriorityClass "system-node-critical" {SUFFIX}priorityClassNames',
        f'spec.podTemplate.spec.runtimeClassName: RuntimeClass "runc-privileged" {SUFFIX}runtimeClassNames',
        f'spec.podTemplate.spec.schedulerName: scheduler "my-scheduler" {SUFFIX}schedulerNames']),
    "listed service account": ("listed", {"podTemplate": {"spec": {"serviceAccountName": "gemma-serving"}}}, []),
    "other service account": ("listed", {"podTemplate": {"spec": {"serviceAccountName": "default"}}}, [
        f'spec.podTemplate.spec.serviceAccountName: ServiceAccount "default" {SUFFIX}serviceAccountNames']),
    "toleration of every taint": ("listed", {"podTemplate": {"spec": {"tolerations": [
        {"key": "dedicated", "operator": "Exists"}, {"operator": "Exists"}]}}}, [
        f'spec.podTemplate.spec.tolerations: a toleration of key "" {SUFFIX}tolerationKeys']),
    "control-plane toleration": ("default", {"podTemplate": {"spec": {"tolerations": [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}}}, [
        f'spec.podTemplate.spec.tolerations: a toleration of key "node-role.kubernetes.io/control-plane" '
        f"{SUFFIX}tolerationKeys"]),
    "node label": ("listed", {"podTemplate": {"spec": {"nodeSelector": {"pool": "a", "kubernetes.io/hostname": "n"}}}},
                   [f'spec.podTemplate.spec.nodeSelector: node label "kubernetes.io/hostname" '
                    f"{SUFFIX}nodeSelectorKeys"]),
    "node labels": ("default", {"podTemplate": {"spec": {"nodeSelector": {"a": "1", "b": "2"}}}}, [
        f"spec.podTemplate.spec.nodeSelector: each of 2 node labels {SUFFIX}nodeSelectorKeys"]),
    "affinity": ("default", {"podTemplate": {"spec": {"affinity": {"nodeAffinity": {}}}}}, [
        f"spec.podTemplate.spec.affinity: an affinity {SUFFIX}affinity"]),
    "pvc claim": ("default", {"model": {"variant": "e2b", "source": {"uri": "pvc://weights/gemma"}}}, [
        f'spec.model.source.uri: the claim of "pvc://weights/gemma" {SUFFIX}pvcClaims']),
    "claim with the listed name as prefix": ("listed", {"model": {"variant": "e2b", "source": {
        "uri": "pvc://weights-other/gemma"}}}, [
        f'spec.model.source.uri: the claim of "pvc://weights-other/gemma" {SUFFIX}pvcClaims']),
    "API key from another Secret": ("default", {"serving": {"apiKeySecretRef": {"name": "openai", "key": "key"}}}, [
        f'spec.serving.apiKeySecretRef: Secret "openai" {SUFFIX}secretNames']),
    "API key from a listed Secret": ("listed", {"serving": {"apiKeySecretRef": {"name": "hf-token", "key": "k"}}}, []),
    "root": ("default", {"serving": {"securityContext": {"runAsUser": 0}}}, [
        f"spec.serving.securityContext.runAsUser: running as root (0) {SUFFIX}runAsRoot"]),
    "another non-root identity": ("default", {"serving": {"securityContext": {
        "runAsUser": 4242, "runAsGroup": 4242, "fsGroup": 4242, "readOnlyRootFilesystem": True}}}, []),
    "NetworkPolicy turned off": ("default", {"networkPolicy": {"enabled": False}}, [
        f"spec.networkPolicy.enabled: turning the NetworkPolicy off (false) {SUFFIX}networkPolicyOptOut"]),
    "NetworkPolicy on, or left to the operator": ("default", {"networkPolicy": {"enabled": True, "ingressFrom": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}]}}, []),
    "hub source": ("default", {"model": {"variant": "e2b", "source": {"uri": "hf://google/gemma-4-E2B-it"}}}, []),
    "everything, listed": ("listed", EVERYTHING, []),
    "everything, open": ("open", EVERYTHING, []),
    "everything, default": ("default", EVERYTHING, [
        f'spec.serving.image: image "registry.example.com/ml/llama.cpp:b1" {SUFFIX}imagePrefixes (the engine images '
        "of the catalog and operator.images are always allowed)",
        f'spec.serving.extraArgs: argument "--max-num-seqs=8" {SUFFIX}extraArgPrefixes (a flag and its value as one '
        "argument: --flag=value)",
        f'spec.podTemplate.spec.serviceAccountName: ServiceAccount "gemma-serving" {SUFFIX}serviceAccountNames',
        f'spec.podTemplate.spec.priorityClassName: PriorityClass "inference" {SUFFIX}priorityClassNames',
        f'spec.podTemplate.spec.runtimeClassName: RuntimeClass "nvidia" {SUFFIX}runtimeClassNames',
        f'spec.podTemplate.spec.schedulerName: scheduler "volcano" {SUFFIX}schedulerNames',
        f'spec.podTemplate.spec.tolerations: a toleration of key "dedicated" {SUFFIX}tolerationKeys',
        f'spec.podTemplate.spec.nodeSelector: node label "pool" {SUFFIX}nodeSelectorKeys',
        f"spec.podTemplate.spec.affinity: an affinity {SUFFIX}affinity",
        f'spec.model.source.uri: the claim of "pvc://weights/gemma-4-e2b" {SUFFIX}pvcClaims',
        f"spec.serving.securityContext.runAsUser: running as root (0) {SUFFIX}runAsRoot",
        f"spec.networkPolicy.enabled: turning the NetworkPolicy off (false) {SUFFIX}networkPolicyOptOut"]),
}


def merged(base: Json, patch: Json) -> Json:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def g4d(spec: Json, name: str = "chat") -> Json:
    return {"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
            "metadata": {"name": name, "namespace": "ml"}, "spec": spec}


def policy_params(objects: list[Manifest]) -> Manifest:
    """The ConfigMap the policy's binding names as its parameters."""
    ref = one(objects, "ValidatingAdmissionPolicyBinding")["spec"]["paramRef"]
    found = [o for o in of_kind(objects, "ConfigMap") if (o["metadata"]["namespace"], o["metadata"]["name"]) == (
        ref["namespace"], ref["name"])]
    assert len(found) == 1, ref
    return found[0]


class RenderedPolicy:
    """One rendering of the chart: its admission policy and parameters, and the operator's configuration."""

    def __init__(self, objects: list[Manifest]) -> None:
        self.objects = objects
        self.policy = one(objects, "ValidatingAdmissionPolicy")
        self.params = policy_params(objects)
        container = workload(objects)["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        self.config: OperatorConfig = config_from_args(build_parser().parse_args(["run", *container["args"]]), env=env)

    def admission(self, obj: Json, old: Json | None = None) -> list[str]:
        return cel_refusals(self.policy, self.params, obj, old)

    def operator(self, obj: Json) -> list[str]:
        assert self.config.tenant_policy is not None, "the chart passes the policy to the operator"
        spec = Gemma4Deployment.model_validate(obj).spec
        return policy_refusals(spec, self.config.tenant_policy, self.config.images.values())


@pytest.fixture(scope="module")
def rendered(renderer: Renderer) -> dict[str, RenderedPolicy]:
    return {name: RenderedPolicy(renderer.objects(*args)) for name, args in POLICIES.items()}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_admission_policy_and_operator_refuse_alike(case: str, rendered: dict[str, RenderedPolicy]) -> None:
    policy, patch, expected = CASES[case]
    obj = g4d(merged(BASE, patch))
    assert rendered[policy].admission(obj) == expected
    assert rendered[policy].operator(obj) == expected


def documented_examples() -> dict[str, Json]:
    """manifests/examples, and every Gemma4Deployment in the README's yaml blocks."""
    examples = {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "manifests" / "examples").glob("*.yaml"))}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", readme, re.S)):
        for doc in yaml.safe_load_all(block):
            if isinstance(doc, dict) and doc.get("kind") == "Gemma4Deployment":
                examples[f"README block {i}"] = doc
    return examples


def test_every_documented_example_passes_the_default_policy(rendered: dict[str, RenderedPolicy]) -> None:
    examples = documented_examples()
    assert len(examples) >= 8
    for name, obj in examples.items():
        assert rendered["default"].admission(obj) == [], name
        assert rendered["default"].operator(obj) == [], name


def test_an_update_that_leaves_the_spec_alone_is_not_checked(rendered: dict[str, RenderedPolicy]) -> None:
    """Tightening the policy must not block finalizer removal (deletion) of an object admitted before it."""
    old = g4d(merged(BASE, {"podTemplate": {"spec": {"serviceAccountName": "legacy"}}}))
    finalizing = merged(old, {"metadata": {"finalizers": []}})
    assert rendered["default"].admission(finalizing, old) == []
    edited = merged(old, {"spec": {"replicas": 2}})
    assert rendered["default"].admission(edited, old) == [
        f'spec.podTemplate.spec.serviceAccountName: ServiceAccount "legacy" {SUFFIX}serviceAccountNames']


def test_the_catalog_engine_images_are_the_charts() -> None:
    text = (CHART / "templates" / "_tenant-policy.tpl").read_text(encoding="utf-8")
    listed = re.search(r'define "gemma4-operator.catalogEngineImages" -\}\}\n(.*?)\{\{- end', text, re.S)
    assert listed, "the catalogEngineImages define is missing"
    assert set(yaml.safe_load(listed.group(1))) == catalog_engine_images(load_catalog())


def test_params_and_binding(renderer: Renderer, rendered: dict[str, RenderedPolicy]) -> None:
    listed = rendered["listed"]
    data = listed.params["data"]
    images = data["images"].split("\n")
    assert set(images) == {*catalog_engine_images(load_catalog()), MIRROR} and len(images) == len(set(images))
    assert data["secretNames"] == "hf-token" and data["affinity"] == "true"
    assert rendered["open"].params["data"]["secretNames"] == "*"
    assert data["extraArgPrefixes"].split("\n") == ["--max-num-seqs=", "--enforce-eager"]
    binding = one(listed.objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == listed.policy["metadata"]["name"]
    assert binding["spec"]["paramRef"] == {"name": listed.params["metadata"]["name"], "namespace": "gemma4-system",
                                           "parameterNotFoundAction": "Deny"}
    assert binding["spec"]["validationActions"] == ["Deny"] and "matchResources" not in binding["spec"]
    assert listed.policy["spec"]["failurePolicy"] == "Fail"
    namespaced = renderer.value_set("ha-namespaced")
    selector = one(namespaced, "ValidatingAdmissionPolicyBinding")["spec"]["matchResources"]["namespaceSelector"]
    assert selector == {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ml", "team-a"]}]}
    audit = renderer.objects("--set-json", 'tenantPolicy.admission.validationActions=["Warn","Audit"]')
    assert one(audit, "ValidatingAdmissionPolicyBinding")["spec"]["validationActions"] == ["Warn", "Audit"]


@pytest.mark.parametrize("args", [("--kube-version", "1.29.0"), ("--set", "tenantPolicy.admission.enabled=false")],
                         ids=["kubernetes 1.29", "admission disabled"])
def test_without_admission_the_operator_still_checks(args: tuple[str, ...], renderer: Renderer) -> None:
    objects = renderer.objects(*args)
    assert not [o for o in objects if o["kind"].startswith("ValidatingAdmissionPolicy")
                or o["metadata"]["name"].endswith("-tenant-policy")]
    env = {e["name"]: e.get("value") for e in workload(objects)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["GEMMA4_TENANT_POLICY"])["affinity"] is False


def test_values_schema_refuses_a_bad_policy(renderer: Renderer) -> None:
    for args, where in ((("--set-json", 'tenantPolicy.imagePrefixes=[""]'), "/tenantPolicy/imagePrefixes/0"),
                        (("--set", "tenantPolicy.imagePrefix=x"), "additional properties 'imagePrefix' not allowed"),
                        (("--set-json", 'tenantPolicy.admission.validationActions=["Reject"]'),
                         "/tenantPolicy/admission/validationActions/0")):
        with pytest.raises(HelmError) as e:
            renderer.objects(*args)
        assert where in e.value.output, e.value.output


def _rules(role: Manifest) -> set[tuple[str, str]]:
    return {(resource, verb) for rule in role["rules"] if rule["apiGroups"] == ["serving.gemma4.dev"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_aggregated_roles_for_tenants(renderer: Renderer) -> None:
    objects = renderer.value_set("default")
    roles = {r["metadata"]["name"]: r for r in of_kind(objects, "ClusterRole") if is_aggregated(r)}
    assert sorted(roles) == ["gemma4-edit", "gemma4-view"]
    read = {"get", "list", "watch"}
    resources = ("gemma4deployments", "gemma4deployments/status", "gemma4deployments/scale")
    assert _rules(roles["gemma4-view"]) == {(r, v) for r in resources for v in read}
    assert _rules(roles["gemma4-edit"]) == (
        {(r, v) for r in resources for v in read}
        | {("gemma4deployments", v) for v in ("create", "update", "patch", "delete", "deletecollection")}
        | {("gemma4deployments/scale", v) for v in ("update", "patch")})
    labels = {name: {k.rsplit("-", 1)[-1] for k, v in r["metadata"]["labels"].items()
                     if k.startswith("rbac.authorization.k8s.io/aggregate-to-") and v == "true"}
              for name, r in roles.items()}
    assert labels == {"gemma4-view": {"view", "edit", "admin"}, "gemma4-edit": {"edit", "admin"}}
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for r in roles.values() for rule in r["rules"])
    bound = {b["roleRef"]["name"] for b in of_kind(objects, "ClusterRoleBinding")}
    assert not bound & set(roles), "aggregated roles are granted through view/edit/admin, never bound by the chart"
    assert not [r for r in of_kind(renderer.objects("--set", "rbac.aggregatedRoles=false"), "ClusterRole")
                if is_aggregated(r)]

