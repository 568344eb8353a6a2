"""The pure reconcile decisions: desired children, when to (re-)apply, what to delete, backoff, and the
operator's flags."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.cli.main import build_parser
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.config import ChildrenMode, ConfigError, LogFormat, OperatorConfig
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.reconcile import desired as rc

L4 = ClusterFacts(frozenset({"nvidia-l4"}))
UID = "uid-1"


def parent(**spec: Any) -> Gemma4Deployment:
    spec.setdefault("model", {"variant": "e4b"})
    return Gemma4Deployment.model_validate({"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
                                            "metadata": {"name": "chat", "namespace": "ml"}, "spec": spec})


def desired(**spec: Any) -> rc.Desired:
    return rc.desired_state(parent(**spec), UID, L4, OperatorConfig())


def live_copy(child: dict[str, Any]) -> dict[str, Any]:
    """What an API server returns: defaults added, managedFields, quantities normalised."""
    live = copy.deepcopy(child)
    live["metadata"]["uid"] = "child-uid"
    live["metadata"]["managedFields"] = [{"manager": "gemma4-operator"}]
    if live["kind"] == "Deployment":
        pod = live["spec"]["template"]["spec"]
        pod["dnsPolicy"] = "ClusterFirst"
        c = pod["containers"][0]
        c["terminationMessagePath"] = "/dev/termination-log"
        c["resources"]["requests"]["cpu"] = "4000m"  # same quantity, other spelling
        live["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": 0, "maxUnavailable": 1}
        live["status"] = {"replicas": 1}
    return live


def test_children_carry_their_hash_and_render_the_plan() -> None:
    d = desired()
    assert d.plan is not None and d.error is None
    kinds = [c["kind"] for c in d.children]
    assert kinds == ["Deployment", "Service"]
    for c in d.children:
        base = copy.deepcopy(c)
        del base["metadata"]["annotations"]
        assert c["metadata"]["annotations"][rc.HASH_ANNOTATION] == rc.content_hash(base)
    assert d.child("Deployment", "chat") is d.children[0]


def test_plan_error_means_no_children() -> None:
    d = rc.desired_state(parent(model={"variant": "31b"}, quantization="nvfp4",
                                accelerator={"type": "nvidia-h100-80gb"}), UID, L4, OperatorConfig())
    assert d.plan is None and d.error is not None and d.children == ()


def test_image_override_unless_the_spec_names_one() -> None:
    cfg = OperatorConfig(images={"vllm": "mirror/vllm:1", "llamacpp-cpu": "mirror/llama:cpu"})
    p = rc.desired_state(parent(), UID, L4, cfg).plan
    assert p is not None and p.image == "mirror/vllm:1"
    p = rc.desired_state(parent(serving={"image": "own/vllm:2"}), UID, L4, cfg).plan
    assert p is not None and p.image == "own/vllm:2"
    p = rc.desired_state(parent(model={"variant": "e2b"}, accelerator={"type": "cpu"}), UID, L4, cfg).plan
    assert p is not None and p.image == "mirror/llama:cpu"


def test_apply_reason() -> None:
    dep = desired().children[0]
    assert rc.apply_reason(dep, None) == "missing"
    live = live_copy(dep)
    assert rc.apply_reason(dep, live) is None  # defaults and normalised quantities are not drift
    changed = desired(serving={"maxModelLen": 8192}).children[0]
    assert rc.apply_reason(changed, live) == "changed"
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    assert rc.apply_reason(dep, edited) == "drifted at .spec.template.spec.containers[name=server].image"
    extra_env = copy.deepcopy(live)
    extra_env["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "OTHER", "value": "1"})
    assert rc.apply_reason(dep, extra_env) is None  # another manager's list item is not ours to judge
    terminating = {**live, "metadata": {**live["metadata"], "deletionTimestamp": "2026-11-23T00:00:00Z"}}
    assert rc.apply_reason(dep, terminating) is None
    # a watch event older than the operator's own last apply is not drift
    live["metadata"]["generation"] = 3
    stale = copy.deepcopy(edited)
    stale["metadata"]["generation"] = 2
    assert rc.apply_reason(dep, stale, applied=("child-uid", 3)) is None
    current = copy.deepcopy(edited)
    current["metadata"]["generation"] = 3
    assert rc.apply_reason(dep, current, applied=("child-uid", 3)) is not None  # not older: real drift
    assert rc.apply_reason(dep, stale, applied=("other-uid", 3)) is not None  # re-created object


@pytest.mark.parametrize(("want", "have", "diff"), [
    ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}, None),
    ({"a": []}, {}, None),
    ({"a": {}}, {"a": None}, None),
    ({"a": "16Gi"}, {"a": "17179869184"}, None),
    ({"a": "1.5Gi"}, {"a": "1536Mi"}, None),
    ({"a": "8000"}, {"a": 8000}, None),
    ({"a": True}, {"a": "true"}, ".a"),
    ({"a": ["x", "y"]}, {"a": ["y", "x"]}, ".a[0]"),
    ({"a": [{"name": "n", "v": 1}]}, {"a": [{"name": "m"}, {"name": "n", "v": 1}]}, None),
    ({"a": [{"k": 1}]}, {"a": [{"k": 1}, {"k": 2}]}, ".a[len 1 != 2]"),
    ({"a": 1}, {}, ".a"),
    # hashes that read as numbers with a huge exponent (a pod-template-hash seen in the e2e chaos run): unequal,
    # and no decimal.Overflow
    ({"a": "030e7910178389704709"}, {"a": "7c9d5b6f48"}, ".a"),
    ({"a": "1e999999999999"}, {"a": "2e999999999999"}, ".a"),
])
def test_first_difference(want: Any, have: Any, diff: str | None) -> None:
    assert rc.first_difference(want, have) == diff


def test_stale_children_only_deletable_and_owned() -> None:
    wanted = desired().children
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "chat", "namespace": "ml", "ownerReferences": [{"uid": UID, "controller": True}]}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "chat-model-cache", "namespace": "ml",
                        "ownerReferences": [{"uid": UID, "controller": True}]}}
    foreign_pdb = copy.deepcopy(pdb)
    foreign_pdb["metadata"]["ownerReferences"][0]["uid"] = "x"
    assert rc.stale_children(wanted, [*wanted, pdb, pvc], UID) == [
        rc.ChildKey("policy/v1", "PodDisruptionBudget", "ml", "chat")]
    assert rc.stale_children(wanted, [foreign_pdb], UID) == []


def test_keep_accelerator_pins_only_unchanged_auto_objects() -> None:
    status = {"observedGeneration": 3, "plan": {"accelerator": "nvidia-h100-80gb"}}
    assert rc.keep_accelerator("auto", status, 3) == "nvidia-h100-80gb"
    assert rc.keep_accelerator("auto", status, 4) is None
    assert rc.keep_accelerator("nvidia-l4", status, 3) is None
    # an L4 pool joined a cluster where this object runs on an H100: it stays there
    two = ClusterFacts(frozenset({"nvidia-h100-80gb", "nvidia-l4"}))
    p = rc.desired_state(parent(), UID, two, OperatorConfig(), keep="nvidia-h100-80gb").plan
    assert p is not None and p.accelerator.name == "nvidia-h100-80gb"
    p = rc.desired_state(parent(), UID, two, OperatorConfig()).plan
    assert p is not None and p.accelerator.name == "nvidia-l4"


def test_parse_parent_names_every_bad_field() -> None:
    body = {"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment", "metadata": {"name": "x"},
            "spec": {"model": {"variant": "99b"}, "replicas": "many"}}
    with pytest.raises(rc.InvalidObjectError) as e:
        rc.parse_parent(body)
    assert "spec.model.variant" in e.value.message and "spec.replicas" in e.value.message


def test_backoff() -> None:
    assert [rc.backoff_delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert rc.backoff_delay(0, retry_after=7) == 7
    assert rc.backoff_delay(200) == 60


def test_server_paced_failures_do_not_grow_the_back_off() -> None:
    """A 12 s outage answered with 429 + Retry-After 3 leaves the back-off where it was; a reset or a failure
    whose floor is ours (a name conflict's 10 s) doubles it."""
    retry = 2
    for _ in range(4):  # four 429s with Retry-After during the outage
        assert rc.backoff_delay(retry, retry_after=3) == 4
        retry = rc.next_retry(retry, server_paced=True)
    assert retry == 2
    assert rc.next_retry(retry, server_paced=False) == 3  # a reset after it
    assert rc.backoff_delay(rc.next_retry(retry, server_paced=False)) == 8
    conflict = [rc.backoff_delay(n, retry_after=10) for n in range(6)]  # NameConflict: ours, so it grows
    assert conflict == [10, 10, 10, 10, 16, 32]


# ---------------------------------------------------------------------------------------
# `gemma4-operator run` flags
# ---------------------------------------------------------------------------------------


def run_config(*argv: str, env: dict[str, str] | None = None) -> OperatorConfig:
    return config_from_args(build_parser().parse_args(["run", *argv]), env=env or {})


def test_run_defaults_are_cluster_wide_watch_mode() -> None:
    cfg = run_config()
    assert cfg.clusterwide and cfg.children is ChildrenMode.WATCH and cfg.accelerator_types is None
    assert (cfg.metrics_port, cfg.health_port, cfg.log_format) == (8080, 8081, LogFormat.TEXT)
    assert cfg.liveness_endpoint == "http://0.0.0.0:8081/healthz"


def test_run_flags_and_environment() -> None:
    cfg = run_config("-n", "ml", "-n", "team-*", "--image", "vllm=mirror/vllm:1", "--log-format", "json",
                     "--peering", "gemma4", "--priority", "7", "--accelerators", "nvidia-l4,nvidia-h100-80gb")
    assert cfg.namespaces == ("ml", "team-*") and not cfg.clusterwide
    assert cfg.images == {"vllm": "mirror/vllm:1"} and cfg.log_format is LogFormat.JSON
    assert (cfg.peering_name, cfg.priority) == ("gemma4", 7)
    assert cfg.accelerator_types == ("nvidia-l4", "nvidia-h100-80gb")
    env = {"GEMMA4_NAMESPACES": "a,b", "GEMMA4_METRICS_PORT": "0", "GEMMA4_ACCELERATORS": "none",
           "GEMMA4_CHILDREN": "poll"}
    cfg = run_config(env=env)
    assert cfg.namespaces == ("a", "b") and cfg.metrics_port == 0 and cfg.accelerator_types == ()
    assert cfg.children is ChildrenMode.POLL and cfg.resync_interval == 60
    assert run_config("-A", env=env).clusterwide


@pytest.mark.parametrize("argv", [["--image", "sglang=x"], ["--image", "vllm"], ["--accelerators", "nvidia-x"],
                                  ["--children", "poll", "--resync-interval", "0"], ["--metrics-port", "70000"]])
def test_run_rejects_bad_flags(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        run_config(*argv)


def test_a_user_env_overrides_ours_without_a_duplicate_entry() -> None:
    # server-side apply refuses duplicate keys in env (a list map keyed by name)
    d = desired(serving={"env": [{"name": "HF_HOME", "value": "/models/hf"}, {"name": "EXTRA", "value": "1"}]})
    env = d.children[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert env[0] == {"name": "HF_HOME", "value": "/models/hf"} and names[-1] == "EXTRA"
