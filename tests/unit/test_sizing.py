"""The planner: anchor cases, the full catalog matrix, and a property test over the schema's domain."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gemma4_operator.api import METRIC_NAMES, Gemma4DeploymentSpec
from gemma4_operator.catalog import GIB, load_catalog
from gemma4_operator.engines import llamacpp, vllm
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan

CATALOG = load_catalog()
ALL_TYPES = ClusterFacts.every_catalog_type()


def spec(**fields: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate(fields)


def assert_fits(p: Plan) -> None:
    """weights + KV + overhead <= usable memory, and the pool holds concurrency x per-sequence KV."""
    m = p.memory
    usable = m.capacity * (p.gpu_memory_utilization if p.accelerator.is_gpu else 1.0)
    assert m.weights + m.overhead + m.kv_cache <= usable + 0.15  # rounded to 0.1 GiB each
    v = CATALOG.variants[p.variant]
    bpe = CATALOG.engines[p.engine].kv_bytes_per_element[p.kv_cache_dtype]
    if p.engine == "vllm":
        in_flight = p.max_num_batched_tokens * CATALOG.engines["vllm"].in_flight_batches
        per_seq = vllm.kv_reservation_per_gpu(v, p.max_model_len, bpe, p.tensor_parallel_size, in_flight, 16) / GIB
        # speculativeDecoding auto: above the drafter's limit the plan drops it, so maxConcurrency (the largest load
        # accepted) may use the drafter's weights for KV too
        drafter = p.drafter.download_bytes / p.tensor_parallel_size / GIB if p.drafter is not None else 0.0
        assert p.max_concurrency * per_seq <= m.kv_cache + drafter + 0.05
        assert p.concurrency * per_seq <= m.kv_cache + 0.05
    else:
        assert llamacpp.kv_bytes(v, p.max_model_len, p.concurrency, bpe, 512) / GIB <= m.kv_cache + 0.05
    assert p.max_concurrency >= p.concurrency


# ---------------------------------------------------------------------------------------
# anchors from the issue
# ---------------------------------------------------------------------------------------


def test_31b_bf16_on_h100_needs_two_gpus_with_tensor_parallel() -> None:
    p = plan(spec(model={"variant": "31b"}, quantization="bf16", accelerator={"type": "nvidia-h100-80gb"}), ALL_TYPES)
    assert (p.engine, p.quantization, p.gpus_per_replica, p.tensor_parallel_size) == ("vllm", "bf16", 2, 2)
    assert any("fewer GPUs do not hold" in n for n in p.notes)
    assert_fits(p)


def test_31b_auto_on_b200_is_nvfp4_on_one_gpu() -> None:
    p = plan(spec(model={"variant": "31b"}, accelerator={"type": "nvidia-b200"}), ALL_TYPES)
    assert (p.quantization, p.gpus_per_replica, p.model_ref) == ("nvfp4", 1, "nvidia/Gemma-4-31B-IT-NVFP4")
    assert p.quantization_flag == "modelopt"
    assert_fits(p)


def test_26b_auto_on_h100_is_fp8_on_one_gpu() -> None:
    p = plan(spec(model={"variant": "26b-a4b"}, accelerator={"type": "nvidia-h100-80gb"}), ALL_TYPES)
    assert (p.engine, p.quantization, p.gpus_per_replica, p.quantization_flag) == ("vllm", "fp8", 1, "fp8")
    assert not p.expert_parallel
    assert_fits(p)


def test_31b_nvfp4_on_h100_is_refused_with_the_reason_and_alternatives() -> None:
    with pytest.raises(PlanError) as caught:
        plan(spec(model={"variant": "31b"}, quantization="nvfp4", accelerator={"type": "nvidia-h100-80gb"}),
             ALL_TYPES)
    message = caught.value.message
    assert "gemma-4-31b does not fit on nvidia-h100-80gb" in message
    assert "nvfp4 needs a Blackwell GPU" in message and "Marlin" in message
    assert "quantization: auto -> fp8 on 1x h100-80gb" in message


def test_e2b_auto_on_cpu_is_llamacpp_gguf() -> None:
    # q8_0 is near-lossless (the quality floor) and costs the same CPU pod as q4_k_m (lossy)
    p = plan(spec(model={"variant": "e2b"}, accelerator={"type": "cpu"}), ALL_TYPES)
    assert (p.engine, p.quantization, p.gpus_per_replica) == ("llamacpp", "q8_0", 0)
    assert p.model_ref == "ggml-org/gemma-4-E2B-it-GGUF:Q8_0"
    assert_fits(p)


def test_gb200_plans_are_arm64() -> None:
    p = plan(spec(model={"variant": "31b"}, accelerator={"type": "nvidia-gb200"}), ALL_TYPES)
    assert (p.arch, p.quantization) == ("arm64", "nvfp4")
    assert any("arm64" in n for n in p.notes)


def test_moe_on_several_gpus_uses_expert_parallel() -> None:
    p = plan(spec(model={"variant": "26b-a4b"}, quantization="bf16", accelerator={"type": "nvidia-l40s"}), ALL_TYPES)
    assert p.gpus_per_replica == 2 and p.expert_parallel


def test_26b_nvfp4_at_tp2_is_a_known_bad_combination() -> None:
    with pytest.raises(PlanError, match=r"fails at tensor parallel 2.*vllm-project/vllm#39595"):
        plan(spec(model={"variant": "26b-a4b"}, quantization="nvfp4",
                  accelerator={"type": "nvidia-rtx-pro-6000", "count": 2}), ALL_TYPES)


def test_t4_never_gets_vllm() -> None:
    p = plan(spec(model={"variant": "e4b"}, accelerator={"type": "nvidia-t4"}), ALL_TYPES)
    assert p.engine == "llamacpp"
    with pytest.raises(PlanError, match=r"compute capability < 8\.0"):
        plan(spec(model={"variant": "e4b"}, engine="vllm", accelerator={"type": "nvidia-t4"}), ALL_TYPES)


def test_accelerator_auto_picks_the_cheapest_present_type_that_fits() -> None:
    facts = ClusterFacts(frozenset({"nvidia-l4", "nvidia-h100-80gb", "nvidia-b200"}))
    small = plan(spec(model={"variant": "e4b"}), facts)
    assert small.accelerator.name == "nvidia-l4"
    # by hourly cost per replica: 4x L4 fp8 ($3.22 at catalog prices) beats 1x H100 fp8 ($6.88)
    big = plan(spec(model={"variant": "31b"}, serving={"concurrency": 4}), facts)
    assert (big.accelerator.name, big.gpus_per_replica) == ("nvidia-l4", 4)
    assert any("cheapest type present" in n for n in big.notes)
    # with the user's prices, the H100 is cheaper: the ranking follows them
    own = plan(spec(model={"variant": "31b"}, serving={"concurrency": 4}), facts, prices={"nvidia-h100-80gb": 2.0})
    assert (own.accelerator.name, own.gpus_per_replica, own.cost_per_replica_hour) == ("nvidia-h100-80gb", 1, 2.0)


def test_auto_with_no_gpu_types_falls_back_to_cpu_only_when_the_variant_fits() -> None:
    none = ClusterFacts(frozenset())
    assert plan(spec(model={"variant": "e4b"}), none).accelerator.name == "cpu"
    with pytest.raises(PlanError, match=r"does not fit on cpu \(no GPU types present\)"):
        plan(spec(model={"variant": "31b"}, quantization="bf16", engine="llamacpp"), none)


def test_text_only_drops_encoders_and_overhead() -> None:
    base = {"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"}}
    multimodal = plan(spec(**base), ALL_TYPES)
    text = plan(spec(**base, serving={"modalities": ["text"]}), ALL_TYPES)
    assert text.memory.weights < multimodal.memory.weights
    assert text.max_concurrency > multimodal.max_concurrency


def test_unknown_accelerator_type_names_the_known_ones() -> None:
    with pytest.raises(PlanError, match=r"'nvidia-x9' is not in the catalog \(known: cpu, nvidia-t4"):
        plan(spec(model={"variant": "e2b"}, accelerator={"type": "nvidia-x9"}), ALL_TYPES)


def test_plan_error_says_by_how_much_and_offers_alternatives() -> None:
    with pytest.raises(PlanError) as caught:
        plan(spec(model={"variant": "31b"}, quantization="bf16",
                  accelerator={"type": "nvidia-h100-80gb", "count": 1}), ALL_TYPES)
    err = caught.value
    assert err.rejections[0].shortfall_gib > 0
    assert "short by" in err.message
    assert err.alternatives[0].startswith("accelerator.count: 0 (let the planner choose) -> bf16 on 2x h100-80gb")
    assert "try accelerator.count: 0" in err.one_line


# ---------------------------------------------------------------------------------------
# the catalog matrix: every variant x accelerator x quantization either fits or says why
# ---------------------------------------------------------------------------------------

MATRIX = list(itertools.product(
    CATALOG.variants, ["cpu", *CATALOG.gpu_types], ["auto", *CATALOG.formats]))


@pytest.mark.parametrize(("variant", "accelerator", "quantization"), MATRIX,
                         ids=["-".join(m) for m in MATRIX])
def test_matrix_fits_or_explains(variant: str, accelerator: str, quantization: str) -> None:
    try:
        s = spec(model={"variant": variant}, quantization=quantization, accelerator={"type": accelerator})
    except ValidationError as e:  # schema-level refusals (e.g. fp8 on cpu) carry their own message
        assert "quantization" in str(e)
        return
    try:
        p = plan(s, ALL_TYPES)
    except PlanError as e:
        assert e.rejections and all(r.reason for r in e.rejections)
        assert f"gemma-4-{variant} does not fit on {accelerator}" in e.message
        return
    assert p.variant == variant and p.accelerator.name == accelerator
    assert quantization in ("auto", p.quantization)
    assert_fits(p)


def test_matrix_has_both_outcomes_for_every_variant() -> None:
    outcomes: dict[str, set[bool]] = {v: set() for v in CATALOG.variants}
    for variant, accelerator, quantization in MATRIX:
        try:
            plan(spec(model={"variant": variant}, quantization=quantization, accelerator={"type": accelerator}),
                 ALL_TYPES)
            outcomes[variant].add(True)
        except (PlanError, ValidationError):
            outcomes[variant].add(False)
    assert all(o == {True, False} for o in outcomes.values()), outcomes


# ---------------------------------------------------------------------------------------
# property: any spec the schema accepts yields a Plan or a PlanError, and every Plan fits
# ---------------------------------------------------------------------------------------

specs = st.fixed_dictionaries({
    "model": st.fixed_dictionaries({"variant": st.sampled_from(list(CATALOG.variants)),
                                    "instructionTuned": st.booleans()}),
    "engine": st.sampled_from(["auto", "vllm", "llamacpp"]),
    "quantization": st.sampled_from(["auto", *CATALOG.formats]),
    "accelerator": st.fixed_dictionaries({"type": st.sampled_from(["auto", "cpu", *CATALOG.gpu_types]),
                                          "count": st.sampled_from([0, 0, 1, 2, 3, 4, 8, 16])}),
    "serving": st.fixed_dictionaries({
        "maxModelLen": st.integers(256, 262144),
        "concurrency": st.integers(1, 1024),
        "kvCacheDtype": st.sampled_from(["auto", "bf16", "fp8"]),
        "modalities": st.lists(st.sampled_from(["text", "image", "audio"]), min_size=1, max_size=3, unique=True),
    }),
    "autoscaling": st.one_of(st.none(), st.fixed_dictionaries({
        "minReplicaCount": st.integers(1, 3), "maxReplicaCount": st.integers(3, 10),
        "autoscalingMetricSpecs": st.lists(st.fixed_dictionaries({"metricName": st.sampled_from(METRIC_NAMES)}),
                                           max_size=2, unique_by=lambda m: m["metricName"]),
    })),
})
facts = st.frozensets(st.sampled_from(CATALOG.gpu_types)).map(ClusterFacts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=specs, cluster=facts)
def test_any_accepted_spec_plans_or_explains(raw: dict[str, Any], cluster: ClusterFacts) -> None:
    if raw["autoscaling"] is None:
        del raw["autoscaling"]
    try:
        s = Gemma4DeploymentSpec.model_validate(raw)
    except ValidationError:
        return  # the schema refuses it (tested in test_crd.py against the real CEL rules)
    try:
        p = plan(s, cluster)
    except PlanError as e:
        assert e.message
        return
    assert_fits(p)
