"""Degraded reasons from engine errors: each engine's error signatures against its real failure texts
(tests/support/engine_errors.py), and how status reads the serving container's termination message."""

from __future__ import annotations

from typing import Any

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.engines import engine, registry
from gemma4_operator.engines.base import diagnose
from gemma4_operator.planner.plan import ClusterFacts, Plan
from gemma4_operator.planner.select import plan as make_plan
from gemma4_operator.reconcile import status as observe
from gemma4_operator.render.children import Owner
from tests.support import engine_errors

OWNER = Owner("chat", "ml", "uid-1")
T0 = "2026-11-29T10:00:00Z"


def spec(**overrides: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"},
                                                **overrides})


def vllm_plan() -> Plan:
    p = make_plan(spec(engine="vllm"), ClusterFacts(frozenset({"nvidia-l4"})))
    assert p.engine == "vllm"
    return p


def llamacpp_plan() -> Plan:
    p = make_plan(spec(engine="llamacpp", model={"variant": "e2b"}, accelerator={"type": "cpu"}),
                  ClusterFacts(frozenset()))
    assert p.engine == "llamacpp"
    return p


PLANS = {"vllm": vllm_plan, "llamacpp": llamacpp_plan}
CASES = [(name, *case) for name, cases in engine_errors.SAMPLES.items() for case in cases]


@pytest.mark.parametrize(("engine_name", "text", "reason", "words"), CASES,
                         ids=[f"{c[0]}-{i}-{c[2]}" for i, c in enumerate(CASES)])
def test_each_signature_matches_the_engine_text(engine_name: str, text: str, reason: str,
                                                words: tuple[str, ...]) -> None:
    p = PLANS[engine_name]()
    found = diagnose(engine(engine_name).error_signatures(), text, p)
    assert found is not None and found.reason == reason
    for word in words:
        assert word in found.message, (word, found.message)
    assert found.evidence and found.evidence in " ".join(text.split())


@pytest.mark.parametrize("engine_name", sorted(engine_errors.SAMPLES))
def test_every_signature_has_a_sample_that_it_matches_first(engine_name: str) -> None:
    signatures = engine(engine_name).error_signatures()
    first = {next(i for i, s in enumerate(signatures) if s.pattern.search(text))
             for text, _, _ in engine_errors.SAMPLES[engine_name]}
    assert first == set(range(len(signatures)))


def test_every_engine_has_signatures_with_literals_in_their_patterns() -> None:
    assert set(registry()) == set(engine_errors.SAMPLES)
    for e in registry().values():
        assert e.error_signatures(), e.name
        for sig in e.error_signatures():
            assert sig.literals and sig.reason.isidentifier() and sig.reason[0].isupper()
            for text, _, _ in engine_errors.SAMPLES[e.name]:
                if sig.pattern.search(text):
                    assert all(lit in text for lit in sig.literals), (sig.reason, sig.literals)


def test_kv_cache_message_compares_the_plan_with_the_engine() -> None:
    p = vllm_plan()
    found = diagnose(engine("vllm").error_signatures(), engine_errors.KV_CACHE, p)
    assert found is not None
    assert "lower serving.maxModelLen to 38896 or less" in found.message
    assert f"{p.memory.kv_cache:.2f} GiB KV pool per GPU, room for {p.max_concurrency} x {p.max_model_len}" \
        in found.message
    assert "planner's memory estimate is off" in found.message


def test_unrelated_text_matches_nothing() -> None:
    for e in registry().values():
        assert diagnose(e.error_signatures(), "INFO: Started server process\nKeyboardInterrupt\n",
                        PLANS[e.name]()) is None


# ---------------------------------------------------------------------------------------
# status: the serving container's termination message -> Degraded
# ---------------------------------------------------------------------------------------

def server(*, last_message: str = "", message: str = "", waiting: str | None = "CrashLoopBackOff",
           ready: bool = False, restarts: int = 3, name: str = "server") -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    if message:
        state = {"terminated": {"reason": "Error", "exitCode": 1, "message": message}}
    cs: dict[str, Any] = {"name": name, "image": "vllm/vllm-openai:v0.32.0", "restartCount": restarts,
                          "ready": ready, "state": state}
    if last_message:
        cs["lastState"] = {"terminated": {"reason": "Error", "exitCode": 1, "message": last_message}}
    return cs


def pod(*containers: dict[str, Any], name: str = "chat-7d9f-abcde") -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": "Running", "containerStatuses": list(containers)}}


def test_crash_loop_with_a_kv_cache_error_is_kv_cache_too_small() -> None:
    fault = observe.degraded([pod(server(last_message=engine_errors.KV_CACHE))], 1, vllm_plan())
    assert fault is not None and fault.reason == "KVCacheTooSmall"
    assert fault.message.startswith("pod chat-7d9f-abcde: vllm failed to start (restarts: 3): ")
    assert "serving.maxModelLen" in fault.message and "vllm said: To serve at least one request" in fault.message


def test_only_the_end_of_an_overlong_termination_message_is_read() -> None:
    """The error at the end of a 4 MiB message is found; one before the last 4096 bytes is not looked at."""
    noise = "x" * (4 << 20)
    fault = observe.degraded([pod(server(last_message=noise + engine_errors.KV_CACHE))], 1, vllm_plan())
    assert fault is not None and fault.reason == "KVCacheTooSmall"
    assert observe.degraded([pod(server(last_message=engine_errors.KV_CACHE + noise))], 1, vllm_plan()).reason == \
        "CrashLoopBackOff"
    read = observe.termination_message(server(message=noise + "the end"))
    assert read == f"[{len(noise) + 7 - 4096} characters cut: the operator reads the last 4096 bytes] " + \
        noise[-4089:] + "the end"


def test_a_terminated_container_is_read_from_its_current_state() -> None:
    fault = observe.pod_fault(pod(server(message=engine_errors.QUANTIZATION, restarts=0)), 1, vllm_plan())
    assert fault is not None and fault.reason == "QuantizationUnsupported"


def test_a_restarted_container_still_loading_keeps_its_diagnosis() -> None:
    fault = observe.pod_fault(pod(server(last_message=engine_errors.GATED, waiting=None)), 1, vllm_plan())
    assert fault is not None and fault.reason == "GatedRepository"


def test_a_ready_container_is_not_degraded_by_an_old_message() -> None:
    assert observe.pod_fault(pod(server(last_message=engine_errors.KV_CACHE, waiting=None, ready=True)),
                             1, vllm_plan()) is None


def test_without_a_match_or_a_plan_the_crash_loop_stays() -> None:
    plain = pod(server(last_message="Segmentation fault (core dumped)"))
    assert observe.pod_fault(plain, 1, vllm_plan()).reason == "CrashLoopBackOff"  # type: ignore[union-attr]
    kv = pod(server(last_message=engine_errors.KV_CACHE))
    assert observe.pod_fault(kv, 1, None).reason == "CrashLoopBackOff"  # type: ignore[union-attr]


def test_only_the_serving_container_and_its_engines_signatures_count() -> None:
    sidecar = pod(server(name="proxy", last_message=engine_errors.KV_CACHE))
    assert observe.pod_fault(sidecar, 1, vllm_plan()).reason == "CrashLoopBackOff"  # type: ignore[union-attr]
    # a llama.cpp plan reads vLLM's words as nothing of its own
    assert observe.pod_fault(pod(server(last_message=engine_errors.KV_CACHE)), 0,
                             llamacpp_plan()).reason == "CrashLoopBackOff"  # type: ignore[union-attr]
    fault = observe.pod_fault(pod(server(last_message=engine_errors.LLAMACPP_KV_ALLOC)), 0, llamacpp_plan())
    assert fault is not None and fault.reason == "KVCacheTooSmall" and "-c " in fault.message


def test_a_diagnosed_engine_error_outranks_other_faults_and_counts_pods() -> None:
    oom = {"name": "server", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
           "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    pods = [pod(oom, name="a"), pod(server(last_message=engine_errors.CUDA_OOM), name="b"),
            pod(server(last_message=engine_errors.CUDA_OOM), name="c")]
    fault = observe.degraded(pods, 1, vllm_plan())
    assert fault is not None and fault.reason == "GPUOutOfMemory" and fault.message.startswith("2 of 3 pods: ")


def test_compute_status_degraded_names_max_model_len() -> None:
    p = vllm_plan()
    st = observe.compute_status(owner=OWNER, generation=1, spec=spec(engine="vllm"), outcome=observe.PlanOutcome(p),
                                deployment={"metadata": {"generation": 1}, "spec": {"replicas": 1},
                                            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}},
                                pods=[pod(server(last_message=engine_errors.KV_CACHE))], previous={}, now=T0)
    degraded = observe.condition(st, "Degraded")
    assert degraded is not None and degraded["status"] == "True" and degraded["reason"] == "KVCacheTooSmall"
    assert "serving.maxModelLen" in degraded["message"] and len(degraded["message"]) <= observe.MAX_MESSAGE
    assert st["phase"] == "Degraded"
    events = observe.transition_events({}, st, observe.PlanOutcome(p))
    assert any(e.type == "Warning" and e.reason == "KVCacheTooSmall" for e in events)
