"""The Helm chart under the real helm v4 binary: lint, render, Kubernetes schemas, values schema."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.cli.main import build_parser
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from tests.packaging.chart import CHART, CI_VALUES, RELEASE, HelmError, Manifest, helm, of_kind, one, workload
from tests.packaging.conftest import VALUE_SETS, Renderer
from tests.support.crd_schema import cel_errors, schema_errors

K8S_VERSIONS = ("1.29.0", "1.37.0")
# Kinds kubernetes-validate has no schema for (it bundles only built-in APIs). CRDs themselves
# (apiextensions.k8s.io/v1) are built in and validated.
# PrometheusRule: its rules are checked by promtool in test_observability.py.
NO_SCHEMA_KINDS = {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering"}
VALUES = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def _container(objects: list[Manifest]) -> dict[str, Any]:
    containers = workload(objects)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "default")
def test_helm_lint_strict(values: Path | None, helm_home: Path) -> None:
    out = helm("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []), home=helm_home)
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_object_is_valid(value_set: str, version: str, renderer: Renderer) -> None:
    unvalidated = set()
    # rendered for that version: the chart leaves out what the server does not serve (the admission policy < 1.30)
    for obj in renderer.objects(*VALUE_SETS[value_set], "--kube-version", version):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unvalidated.add(obj["kind"])
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{value_set}: {where} invalid for Kubernetes {version}: {e.message} at {e.path}")
    assert unvalidated <= NO_SCHEMA_KINDS


def test_default_render(renderer: Renderer) -> None:
    objects = renderer.value_set("default")
    assert sorted(o["kind"] for o in objects) == sorted([
        "CustomResourceDefinition", "CustomResourceDefinition", "CustomResourceDefinition",
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment",
        "ClusterRole", "ClusterRole",  # gemma4-view, gemma4-edit (aggregated)
        "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",  # the tenant policy
        "NetworkPolicy"])  # metrics.access networkPolicy
    assert {o["metadata"]["name"] for o in of_kind(objects, "CustomResourceDefinition")} == {
        "gemma4deployments.serving.gemma4.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    deployment = one(objects, "Deployment")  # a StatefulSet only with ha.enabled
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _container(objects)
    assert container["image"] == f"{VALUES['image']['repository']}:0.1.0"  # appVersion, never latest
    # the download Job and scale to zero's activator run the operator's own image (gemma4-operator download,
    # gemma4-operator activator)
    assert container["args"] == ["--metrics-port=8080", "--health-port=8081", "--log-format=json",
                                 f"--image=downloader={container['image']}", f"--image=activator={container['image']}",
                                 "--standalone"]
    assert "GEMMA4_PRIORITY" not in _env(container)
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_restricted_pod_security(value_set: str, renderer: Renderer) -> None:
    pod = workload(renderer.value_set(value_set))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    assert all(set(v) <= {"name", "emptyDir"} for v in pod["volumes"])  # no hostPath
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_probes_and_ports_follow_values(value_set: str, renderer: Renderer) -> None:
    objects = renderer.value_set(value_set)
    container = _container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if "http-metrics" in ports:  # not with metrics.access localhost: nothing outside the pod reaches it
        assert f"--metrics-port={ports['http-metrics']}" in container["args"]
    assert f"--health-port={ports['http-health']}" in container["args"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http-health"}, probe


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_args_are_a_valid_operator_configuration(value_set: str, renderer: Renderer) -> None:
    """`gemma4-operator run` accepts the chart's flags and environment, and reads them as meant."""
    objects = renderer.value_set(value_set)
    container = _container(objects)
    args = container["args"]
    try:
        parsed = build_parser().parse_args(["run", *args])
    except SystemExit as e:  # argparse prints the reason to stderr
        pytest.fail(f"`gemma4-operator run {' '.join(args)}` is rejected by the CLI (exit {e.code})")
    ha = workload(objects)["kind"] == "StatefulSet"
    env = {"GEMMA4_PRIORITY": "1"} if ha else {}  # the pod-index label of the second replica
    assert ("GEMMA4_PRIORITY" in _env(container)) == ha
    config = config_from_args(parsed, env=env)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.health_port == ports["http-health"]
    if "http-metrics" in ports:
        assert (config.metrics_port, config.metrics_bind_address) == (ports["http-metrics"], "0.0.0.0")
    else:  # metrics.access localhost
        assert config.metrics_bind_address == "127.0.0.1"
    assert config.standalone is not ha
    peerings = {p["metadata"]["name"] for p in of_kind(objects, "ClusterKopfPeering") + of_kind(objects, "KopfPeering")}
    assert peerings == ({config.peering_name} if ha else set())  # the operator joins the peering the chart makes
    assert config.priority == (1 if ha else 0)
    clusterwide = not of_kind(objects, "Role")
    assert config.clusterwide is clusterwide


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_ha_namespaced(renderer: Renderer) -> None:
    objects = renderer.value_set("ha-namespaced")
    operator = one(objects, "StatefulSet")
    assert operator["metadata"]["name"] == "g4op"
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["podManagementPolicy"] == "Parallel"
    pod = operator["spec"]["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"]  # spread over nodes by default
    assert pod["serviceAccountName"] == "gemma4-operator-ml"
    container = pod["containers"][0]
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert container["args"] == [
        "--metrics-port=9090", "--health-port=9091", "--log-format=text",
        "--namespace=ml", "--namespace=team-a",
        f"--image=downloader={container['image']}",  # the operator's own image, by digest like itself
        f"--image=activator={container['image']}",
        "--image=llamacpp-cpu=registry.example.com/mirror/llama.cpp:server-b11434",
        "--image=vllm=registry.example.com/mirror/vllm-openai:v0.32.0",
        "--peering=gemma4-ml",
        "--request-timeout=20"]
    # kopf freezes replicas of equal priority: each pod's ordinal is its priority.
    assert _env(container)["GEMMA4_PRIORITY"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}
    peerings = of_kind(objects, "KopfPeering")
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings] == [
        ("ml", "gemma4-ml"), ("team-a", "gemma4-ml")]
    assert not of_kind(objects, "ClusterKopfPeering")
    assert [r["metadata"]["namespace"] for r in of_kind(objects, "Role")] == ["ml", "team-a"]
    assert [r["metadata"]["namespace"] for r in of_kind(objects, "RoleBinding")] == ["ml", "team-a"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"]["selector"] == operator["spec"]["selector"]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for obj in objects:
        if obj["kind"] != "CustomResourceDefinition":
            assert obj["metadata"]["labels"]["example.com/cost-center"] == "ml-platform", obj["kind"]


def test_ha_clusterwide(renderer: Renderer) -> None:
    objects = renderer.value_set("ha-clusterwide")
    operator = one(objects, "StatefulSet")
    assert operator["spec"]["replicas"] == 3
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert "--peering=gemma4-operator" in container["args"]
    assert "--accelerators=nvidia-l4,nvidia-h100-80gb" in container["args"]
    assert "GEMMA4_PRIORITY" in _env(container)
    assert "podAntiAffinity" not in operator["spec"]["template"]["spec"]["affinity"]  # explicit affinity wins
    assert one(objects, "ClusterKopfPeering")["metadata"]["name"] == "gemma4-operator"
    assert not of_kind(objects, "ServiceAccount") and not of_kind(objects, "Service")
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "platform-operators", "namespace": "gemma4-system"}]


def test_accelerator_prices_reach_the_operator(renderer: Renderer) -> None:
    """`operator.acceleratorPrices` becomes --accelerator-price flags the operator reads as USD per GPU-hour."""
    # --set-json: helm's --set reads 2.49 as a string (a values file has numbers anyway)
    objects = renderer.objects("--set-json", 'operator.acceleratorPrices={"nvidia-h100-80gb":2.49,"nvidia-l4":0.6}')
    args = _container(objects)["args"]
    assert "--accelerator-price=nvidia-h100-80gb=2.49" in args and "--accelerator-price=nvidia-l4=0.6" in args
    config = config_from_args(build_parser().parse_args(["run", *args]), env={})
    assert config.prices == {"nvidia-h100-80gb": 2.49, "nvidia-l4": 0.6}


def test_the_network_policy_default_reaches_the_operator(renderer: Renderer) -> None:
    """`operator.networkPolicy` becomes --network-policy; the operator's namespace (the NetworkPolicy's scraper
    peer) comes from POD_NAMESPACE, which the chart sets from the pod's own namespace."""
    for value, expected in (("false", False), ("true", True)):
        container = _container(renderer.objects("--set", f"operator.networkPolicy={value}"))
        config = config_from_args(build_parser().parse_args(["run", *container["args"]]),
                                  env={"POD_NAMESPACE": "gemma4-system"})
        assert config.network_policy is expected and config.operator_namespace == "gemma4-system"
        assert _env(container)["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_servicemonitor_follows_the_cluster_capabilities(renderer: Renderer) -> None:
    monitor = one(renderer.value_set("servicemonitor-capability"), "ServiceMonitor")
    # The operator's per-object series carry the Gemma4Deployment's namespace: Prometheus keeps it.
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    with pytest.raises(HelmError) as e:
        renderer.objects("--set", "metrics.serviceMonitor.enabled=true")
    assert "does not serve monitoring.coreos.com/v1 ServiceMonitor" in e.value.output
    assert "metrics.serviceMonitor.force=true" in e.value.output


# (--set arguments, the lines helm must print). Helm 4 reports the JSON pointer of each violation.
SCHEMA_VIOLATIONS = {
    "unknown key": (["--set", "replicas=2"], ["at '': additional properties 'replicas' not allowed"]),
    "log format": (["--set", "operator.logFormat=xml"],
                   ["at '/operator/logFormat': value must be one of 'json', 'text'"]),
    "namespace name": (["--set", "watchNamespaces[0]=Team_A"],
                       ["at '/watchNamespaces/0': 'Team_A' does not match pattern"]),
    "two replicas without HA": (["--set", "replicaCount=2"], ["at '/replicaCount': value must be 1"]),
    "HA with one replica": (["--set", "ha.enabled=true"], ["at '/replicaCount': minimum: got 1, want 2"]),
    "privileged port": (["--set", "metrics.port=80"], ["at '/metrics/port': minimum: got 80, want 1,024"]),
    "writable root filesystem": (["--set", "securityContext.readOnlyRootFilesystem=false"],
                                 ["at '/securityContext/readOnlyRootFilesystem': value must be true"]),
    "root pod": (["--set", "podSecurityContext.runAsNonRoot=false"],
                 ["at '/podSecurityContext/runAsNonRoot': value must be true"]),
    "wrong type": (["--set-string", "ha.enabled=yes"], ["at '/ha/enabled': got string, want boolean"]),
    "short digest": (["--set", "image.digest=sha256:abc"], ["at '/image/digest': 'sha256:abc' does not match pattern"]),
    "metrics access": (["--set", "metrics.access=token"],
                       ["at '/metrics/access': value must be one of 'networkPolicy', 'localhost', 'open'"]),
    "metrics namespace name": (["--set", "metrics.allowedNamespaces[0]=Monitoring"],
                               ["at '/metrics/allowedNamespaces/0': 'Monitoring' does not match pattern"]),
    "negative price": (["--set", "operator.acceleratorPrices.nvidia-l4=-1"],
                       ["at '/operator/acceleratorPrices/nvidia-l4': minimum: got -1, want 0"]),
}


@pytest.mark.parametrize("case", SCHEMA_VIOLATIONS, ids=str)
def test_values_schema_violations_are_rejected_readably(case: str, helm_home: Path) -> None:
    args, lines = SCHEMA_VIOLATIONS[case]
    for command in (["template", RELEASE, str(CHART)], ["lint", "--strict", str(CHART)]):
        with pytest.raises(HelmError) as e:
            helm(*command, *args, home=helm_home)
        message = e.value.output
        assert "values don't meet the specifications of the schema(s) in the following chart(s):" in message
        for line in lines:
            assert line in message, f"{case}: {line!r} not in helm's message:\n{message}"


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "health.port=8080"], "metrics.port and health.port must differ (both are 8080)"),
    (["--set", "image.tag=latest"], "image.tag: `latest` is not allowed"),
])
def test_template_checks_are_readable(args: list[str], message: str, helm_home: Path) -> None:
    with pytest.raises(HelmError) as e:
        helm("template", RELEASE, str(CHART), *args, home=helm_home)
    assert message in e.value.output


def test_notes_show_a_first_deployment_that_plans(helm_home: Path) -> None:
    out = helm("install", RELEASE, str(CHART), "--namespace", "gemma4-system", "--dry-run=client", home=helm_home)
    notes = out[out.index("NOTES:"):]
    assert "kubectl -n gemma4-system rollout status deployment/gemma4-operator" in notes
    heredoc = re.search(r"kubectl apply -f - <<'EOF'\n(.*?)\n\s*EOF\n", notes, re.S)
    assert heredoc, notes
    document = yaml.safe_load(textwrap.dedent(heredoc.group(1)))
    assert schema_errors(document) == [] and cel_errors(document) == []
    deployment = Gemma4Deployment.model_validate(document)
    assert plan(deployment.spec, ClusterFacts(frozenset())).engine == "llamacpp"  # runs without a GPU
    name = deployment.name
    for command in (f"get g4d {name} -o jsonpath='{{.status.plan}}'", f"wait --for=condition=Ready g4d/{name}"):
        assert command in notes


def test_kubernetes_version_floor(helm_home: Path) -> None:
    """Kubernetes 1.29+ (the oldest version validated above; HA needs the pod-index label of 1.28+)."""
    assert helm("template", RELEASE, str(CHART), "--kube-version", "1.29.0", home=helm_home)
    with pytest.raises(HelmError) as e:
        helm("template", RELEASE, str(CHART), "--kube-version", "1.28.5", home=helm_home)
    assert "chart requires kubeVersion: >=1.29.0-0" in e.value.output
