"""The generated CRD: in sync with the committed file, and it judges objects like the pydantic models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gemma4_operator.api import NAME_MAX_LENGTH, NAME_MESSAGE, SOURCE_URI_MESSAGE, Gemma4Deployment
from gemma4_operator.api.crd import crd_manifest, crd_yaml
from tests.support.crd_schema import cel_errors, schema_errors

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / "gemma4deployments.serving.gemma4.dev.yaml"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


def test_committed_crd_matches_generated() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == crd_yaml(), (
        "crds/ is stale: run `gemma4-operator crd > crds/gemma4deployments.serving.gemma4.dev.yaml`")


def test_crd_has_subresources_columns_and_names() -> None:
    crd = crd_manifest()
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Variant", "Engine", "Quant", "GPUs", "Ready", "Status", "Model", "Adapters", "Age"]
    assert crd["spec"]["names"]["shortNames"] == ["g4d"]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for name, sub in node.get("properties", {}).items():
            found += _walk(sub, f"{path}.{name}")
        if "items" in node:
            found += _walk(node["items"], f"{path}[]")
    return found


def test_schema_is_structural_and_every_field_is_described() -> None:
    root = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(root):
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "const", "title"):
            assert forbidden not in node, f"{path}: {forbidden}"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: no type"
        if "properties" in node:
            assert "additionalProperties" not in node, path
            for name, sub in node["properties"].items():
                if path.startswith(".spec") or path.startswith(".status"):
                    assert sub.get("description"), f"{path}.{name} has no description (kubectl explain)"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate_against_schema_and_cel(path: Path) -> None:
    obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert schema_errors(obj) == []
    assert cel_errors(obj) == []
    Gemma4Deployment.model_validate(obj)


def _obj(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
            "metadata": {"name": "x", "namespace": "ns"}, "spec": spec}


BAD_CEL = [
    ({"model": {"variant": "31b"}, "serving": {"modalities": ["text", "audio"]}},
     "serving.modalities: audio is only available on e2b and e4b"),
    ({"model": {"variant": "26b-a4b"}, "serving": {"modalities": ["audio"]}},
     "serving.modalities: audio is only available on e2b and e4b"),
    ({"model": {"variant": "e4b"}, "serving": {"maxModelLen": 262144}},
     "serving.maxModelLen: e2b and e4b have a 131072-token context"),
    ({"model": {"variant": "e4b", "instructionTuned": False}, "serving": {"reasoning": True}},
     "serving.reasoning needs an instruction-tuned model"),
    ({"model": {"variant": "e4b", "instructionTuned": False}, "serving": {"toolCalling": True}},
     "serving.toolCalling needs an instruction-tuned model"),
    ({"model": {"variant": "e2b"}, "autoscaling": {"minReplicaCount": 5, "maxReplicaCount": 2}},
     "minReplicaCount must not exceed maxReplicaCount"),
    ({"model": {"variant": "e2b"}, "autoscaling": {"minReplicaCount": 0, "maxReplicaCount": 2}},
     "minReplicaCount: 0 (scale to zero) needs scaleToZeroSpec"),
    ({"model": {"variant": "e2b"}, "autoscaling": {"minReplicaCount": 0, "maxReplicaCount": 2,
                                                   "scaleToZeroSpec": {"idleScaledownPeriod": "1m"}}},
     "scaleToZeroSpec.idleScaledownPeriod must be between 5m (300s) and 8h (28800s)"),
    ({"model": {"variant": "e2b"}, "autoscaling": {"maxReplicaCount": 2, "backend": "keda"}},
     "autoscalingMetricSpecs: backend keda needs at least one entry"),
    ({"model": {"variant": "e2b"}, "autoscaling": {"maxReplicaCount": 2, "autoscalingMetricSpecs": [
        {"metricName": "request_count", "target": 10}, {"metricName": "request_count", "target": 20}]}},
     "autoscalingMetricSpecs: at most one entry per metricName"),
    ({"model": {"variant": "e2b"}, "engine": "vllm", "accelerator": {"type": "cpu"}},
     "engine: vllm is not planned on cpu"),
    ({"model": {"variant": "e2b"}, "accelerator": {"type": "cpu", "count": 1}},
     "accelerator.count must be 0 when accelerator.type is cpu"),
    ({"model": {"variant": "e2b"}, "engine": "vllm", "quantization": "q4_k_m"},
     "quantization: q8_0 and q4_k_m are GGUF formats served by llama.cpp"),
    ({"model": {"variant": "e2b"}, "engine": "llamacpp", "quantization": "nvfp4"},
     "quantization: fp8, nvfp4 and int4 are vLLM formats"),
    ({"model": {"variant": "e2b"}, "quantization": "fp8", "accelerator": {"type": "cpu"}},
     "quantization: fp8, nvfp4 and int4 need an NVIDIA GPU"),
    ({"model": {"variant": "e2b", "source": {"uri": "s3://bucket/x"}}},
     "source.uri must be hf://REPO[@REVISION] (a Hugging Face repo"),
    ({"model": {"variant": "e2b", "source": {"uri": ""}}}, "source.uri must be hf://REPO[@REVISION]"),
    # vLLM's --gpu-memory-utilization: llama-server has no such setting, and cpu is served by llama.cpp
    ({"model": {"variant": "e2b"}, "engine": "llamacpp", "serving": {"gpuMemoryUtilization": 0.95}},
     "serving.gpuMemoryUtilization is vLLM's --gpu-memory-utilization; llama.cpp has no such setting"),
    ({"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}, "serving": {"gpuMemoryUtilization": 0.95}},
     "serving.gpuMemoryUtilization is vLLM's --gpu-memory-utilization; llama.cpp has no such setting"),
    # a ReadWriteOnce cache (the default access mode) cannot serve replicas on several nodes
    ({"model": {"variant": "e2b"}, "replicas": 2, "storage": {"modelCache": {}}},
     "storage.modelCache.accessModes: a ReadWriteOnce (or ReadWriteOncePod) cache mounts on one node only"),
    ({"model": {"variant": "e2b"}, "autoscaling": {"maxReplicaCount": 3},
      "storage": {"modelCache": {"accessModes": ["ReadWriteOncePod"]}}},
     "storage.modelCache.accessModes: a ReadWriteOnce (or ReadWriteOncePod) cache mounts on one node only"),
    # LoRA adapters: names are OpenAI model names, so unique and not the base's served name
    ({"model": {"variant": "e2b", "adapters": [{"name": "a", "uri": "hf://x/a"}, {"name": "a", "uri": "hf://x/b"}]}},
     "adapters: each name must be unique"),
    ({"model": {"variant": "31b", "instructionTuned": False,
                "adapters": [{"name": "gemma-4-31b", "uri": "hf://x/a"}]}},
     "adapters: a name must differ from the base model's served name"),
    ({"model": {"variant": "e4b", "adapters": [{"name": "gemma-4-e4b-it", "uri": "pvc://loras/e4b/support"}]}},
     "adapters: a name must differ from the base model's served name"),
    ({"model": {"variant": "e2b", "adapters": [{"name": "a", "uri": "https://huggingface.co/x/a"}]}},
     "adapters: every uri must be hf://REPO[@REVISION]"),
    ({"model": {"variant": "e2b", "adapters": [{"name": "a", "uri": "oci://ghcr.io/acme/lora"}]}},
     "adapters: every uri must be hf://REPO[@REVISION]"),
    # vLLM's rank ladder (vllm/config/lora.py MaxLoRARanks) and --max-cpu-loras >= --max-loras
    ({"model": {"variant": "e2b", "adapters": [{"name": "a", "uri": "hf://x/a"}]},
      "serving": {"lora": {"maxRank": 48}}},
     "maxRank must be one of vLLM's --max-lora-rank values 1, 8, 16, 32, 64, 128, 256, 320, 512"),
    ({"model": {"variant": "e2b", "adapters": [{"name": "a", "uri": "hf://x/a"}]},
      "serving": {"lora": {"maxActiveAdapters": 3, "cachedAdapters": 2}}},
     "cachedAdapters must be at least maxActiveAdapters"),
    ({"model": {"variant": "e2b"}, "serving": {"lora": {"maxActiveAdapters": 2}}},
     "serving.lora sizes the adapter slots of model.adapters"),
]


@pytest.mark.parametrize("spec", [
    {"model": {"variant": "e2b"}, "storage": {"modelCache": {}}},
    {"model": {"variant": "e2b"}, "replicas": 3, "storage": {"modelCache": {"accessModes": ["ReadWriteMany"]}}},
    {"model": {"variant": "e2b"}, "autoscaling": {"maxReplicaCount": 1}, "storage": {"modelCache": {}}},
], ids=["one-replica-rwo", "rwx-many", "autoscaled-to-one-rwo"])
def test_a_cache_that_fits_the_replicas_is_accepted(spec: dict[str, Any]) -> None:
    obj = _obj(spec)
    assert schema_errors(obj) == [] and cel_errors(obj) == []
    Gemma4Deployment.model_validate(obj)


@pytest.mark.parametrize("spec", [
    {"model": {"variant": "26b-a4b", "adapters": [
        {"name": "support", "uri": "hf://acme/gemma-4-26b-support-lora@v2"},
        {"name": "legal", "uri": "pvc://loras/26b/legal", "tokenSecretRef": {"name": "hf", "key": "token"}},
        {"name": "gemma-4-26b-a4b", "uri": "oci://ghcr.io/acme/lora:1.0"}]},  # the base is -it: no clash
     "serving": {"lora": {"maxRank": 320, "maxActiveAdapters": 2, "cachedAdapters": 3,
                          "targetModules": ["qkv_proj", "o_proj"]}}},
    {"model": {"variant": "e2b", "adapters": [{"name": "a", "uri": "hf://x/a"}]}, "serving": {"lora": {}}},
], ids=["every-field", "empty-lora"])
def test_adapters_and_lora_slots_are_accepted(spec: dict[str, Any]) -> None:
    obj = _obj(spec)
    assert schema_errors(obj) == [] and cel_errors(obj) == []
    parsed = Gemma4Deployment.model_validate(obj)
    assert [a.name for a in parsed.spec.model.adapters] == [a["name"] for a in spec["model"]["adapters"]]


@pytest.mark.parametrize(("spec", "message"), BAD_CEL, ids=[m[:40] for _, m in BAD_CEL])
def test_cross_field_rules_refuse_with_the_same_message_in_cel_and_pydantic(spec: dict[str, Any],
                                                                           message: str) -> None:
    obj = _obj(spec)
    assert schema_errors(obj) == []
    cel = cel_errors(obj)
    assert len(cel) == 1 and cel[0].startswith(message), cel
    with pytest.raises(ValidationError) as caught:
        Gemma4Deployment.model_validate(obj)
    assert message in str(caught.value)


BAD_SCHEMA = [
    ({"model": {"variant": "70b"}}, "spec.model.variant: '70b' is not one of"),
    ({"model": {}}, "spec.model: 'variant' is a required property"),
    ({"model": {"variant": "e2b"}, "serving": {"concurrency": 0}}, "spec.serving.concurrency: 0 is less than"),
    ({"model": {"variant": "e2b"}, "autoscaling": {"maxReplicaCount": 2,
                                                   "autoscalingMetricSpecs": [{"metricName": "gpu"}]}},
     "spec.autoscaling.autoscalingMetricSpecs.0.metricName: 'gpu' is not one of"),
    ({"model": {"variant": "e2b"}, "replicaz": 3}, "Additional properties are not allowed ('replicaz'"),
    ({"model": {"variant": "e2b"}, "serving": {"gpuMemoryUtilization": 0.99}},
     "spec.serving.gpuMemoryUtilization: 0.99 is greater than the maximum of 0.98"),
    ({"model": {"variant": "e2b"}, "serving": {"gpuMemoryUtilization": 0.4}},
     "spec.serving.gpuMemoryUtilization: 0.4 is less than the minimum of 0.5"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SCHEMA, ids=[m[:40] for _, m in BAD_SCHEMA])
def test_schema_refuses_bad_fields_by_path(spec: dict[str, Any], message: str) -> None:
    errors = schema_errors(_obj(spec))
    assert any(message in e for e in errors), errors
    with pytest.raises(ValidationError):
        Gemma4Deployment.model_validate(_obj(spec))


def _named(name: str | None) -> dict[str, Any]:
    obj = _obj({"model": {"variant": "e2b"}})
    if name is None:
        del obj["metadata"]["name"]
    else:
        obj["metadata"]["name"] = name
    return obj


GOOD_NAMES = ["a", "gemma-e2b-cpu", "x" * 54, "a-1", "chat2"]
BAD_NAMES = ["My_Model!", "x" * 55, "x" * 100, "1chat", "-chat", "chat-", "Chat", "chat.v1", "chat\n", "ch at"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_name_rule_accepts_dns_1035_labels_up_to_54(name: str) -> None:
    obj = _named(name)
    assert schema_errors(obj) == [] and cel_errors(obj) == []
    Gemma4Deployment.model_validate(obj)


@pytest.mark.parametrize("name", BAD_NAMES, ids=[n[:12] for n in BAD_NAMES])
def test_name_rule_refuses_with_the_same_message_in_cel_and_pydantic(name: str) -> None:
    obj = _named(name)
    assert schema_errors(obj) == []
    assert cel_errors(obj) == [NAME_MESSAGE]
    with pytest.raises(ValidationError) as caught:
        Gemma4Deployment.model_validate(obj)
    assert NAME_MESSAGE in str(caught.value) and repr(name) in str(caught.value)


def test_name_rule_is_at_the_top_level_where_cel_reads_metadata() -> None:
    root = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert [r["message"] for r in root["x-kubernetes-validations"]] == [NAME_MESSAGE]
    assert NAME_MAX_LENGTH == 63 - len("-download") == 54


def test_pydantic_refuses_a_missing_name() -> None:
    # the API server always has a name (generateName is resolved before validation); a file may not
    with pytest.raises(ValidationError) as caught:
        Gemma4Deployment.model_validate(_named(None))
    assert NAME_MESSAGE in str(caught.value) and "it is missing" in str(caught.value)


GOOD_URIS = ["hf://google/gemma-4-E4B-it", "hf://google/gemma-4-E4B-it@main", "hf://google/gemma-4-31B-it@abc/def",
             "hf://ggml-org/gemma-4-E4B-it-GGUF:Q4_K_M", "pvc://models/gemma/e4b", "pvc://models/"]
BAD_URIS = ["s3://bucket/x", "hf://google", "hf://google/", "google/gemma-4-E4B-it", "pvc://Models/x", "pvc://models",
            "hf://google/gemma-4-E4B-it\n", "pvc://models/a b", "HF://google/gemma-4-E4B-it", ""]


@pytest.mark.parametrize("uri", GOOD_URIS + BAD_URIS)
def test_source_uri_rule_agrees_with_pydantic(uri: str) -> None:
    obj = _obj({"model": {"variant": "e2b", "source": {"uri": uri}}})
    assert schema_errors(obj) == []
    cel = cel_errors(obj)
    try:
        Gemma4Deployment.model_validate(obj)
        pydantic_error = ""
    except ValidationError as e:
        pydantic_error = str(e)
    if uri in GOOD_URIS:
        assert cel == [] and pydantic_error == ""
    else:
        assert cel == [SOURCE_URI_MESSAGE] and SOURCE_URI_MESSAGE in pydantic_error
        assert "^(" not in pydantic_error, "the user sees words, not the regex"


field_values = st.fixed_dictionaries({
    "model": st.fixed_dictionaries({"variant": st.sampled_from(["e2b", "e4b", "26b-a4b", "31b"]),
                                    "instructionTuned": st.booleans()}),
    "engine": st.sampled_from(["auto", "vllm", "llamacpp"]),
    "quantization": st.sampled_from(["auto", "bf16", "fp8", "nvfp4", "int4", "q8_0", "q4_k_m"]),
    "accelerator": st.fixed_dictionaries({"type": st.sampled_from(["auto", "cpu", "nvidia-l4"]),
                                          "count": st.integers(0, 2)}),
    "serving": st.fixed_dictionaries({
        "maxModelLen": st.sampled_from([4096, 131072, 262144]),
        "modalities": st.lists(st.sampled_from(["text", "image", "audio"]), min_size=1, max_size=3, unique=True),
        "reasoning": st.booleans(), "toolCalling": st.booleans()}),
    "autoscaling": st.fixed_dictionaries({"minReplicaCount": st.integers(0, 3), "maxReplicaCount": st.integers(1, 3),
                                          "backend": st.sampled_from(["operator", "keda"])}),
})


@settings(max_examples=200, deadline=None)
@given(spec=field_values,
       name=st.sampled_from(GOOD_NAMES + BAD_NAMES) | st.from_regex(r"[a-z0-9-]{1,60}", fullmatch=True),
       uri=st.none() | st.sampled_from(GOOD_URIS + BAD_URIS))
def test_pydantic_accepts_exactly_what_the_crd_accepts(spec: dict[str, Any], name: str, uri: str | None) -> None:
    obj = _obj(copy.deepcopy(spec))
    obj["metadata"]["name"] = name
    if uri is not None:
        obj["spec"]["model"]["source"] = {"uri": uri}
    crd_ok = not schema_errors(obj) and not cel_errors(obj)
    try:
        Gemma4Deployment.model_validate(obj)
        pydantic_ok = True
    except ValidationError:
        pydantic_ok = False
    assert crd_ok == pydantic_ok, (schema_errors(obj), cel_errors(obj))
