"""The default autoscaling policy (no autoscalingMetricSpecs): the engine's default signals."""

from __future__ import annotations

import math

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.api.metric_names import DEFAULT_TARGETS, Signal
from gemma4_operator.autoscaling.decision import Sample, decide
from gemma4_operator.autoscaling.policy import metric_targets, policy
from gemma4_operator.engines import engine
from gemma4_operator.engines.vllm import DEFAULT_QUEUE
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan


def _spec(engine_name: str) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"},
                                                "engine": engine_name, "autoscaling": {"maxReplicaCount": 10}})


def test_vllm_default_is_kv_use_with_a_fast_queue() -> None:
    spec = _spec("vllm")
    p = plan(spec, ClusterFacts.every_catalog_type())
    targets = {t.signal: t.target for t in metric_targets(spec, p, engine(p.engine))}
    kv = DEFAULT_TARGETS[Signal.KV_CACHE_USAGE]
    assert targets == {Signal.QUEUE_LENGTH: DEFAULT_QUEUE, Signal.KV_CACHE_USAGE: kv}
    assert (DEFAULT_TARGETS[Signal.QUEUE_LENGTH] or math.inf) > DEFAULT_QUEUE  # reacts before the API's default


def test_vllm_default_scales_up_on_a_short_queue_and_holds_on_kv_use() -> None:
    spec = _spec("vllm")
    p = plan(spec, ClusterFacts.every_catalog_type())
    pol = policy(spec, p, engine(p.engine))
    busy = [Sample(f"p{i}", Signal.QUEUE_LENGTH, 3.0, 100.0, True) for i in range(2)] + \
        [Sample(f"p{i}", Signal.KV_CACHE_USAGE, 0.8, 100.0, True) for i in range(2)]
    assert decide(pol, 2, busy, (), 100.0).desired == 3  # queue 3 > 2 (+10 %): ceil(2 x 1.5)
    calm = [Sample(f"p{i}", Signal.QUEUE_LENGTH, 0.0, 100.0, True) for i in range(2)] + \
        [Sample(f"p{i}", Signal.KV_CACHE_USAGE, 0.78, 100.0, True) for i in range(2)]
    assert decide(pol, 2, calm, (), 100.0).desired == 2  # KV within 80 % ± 10 %: keep


def test_llamacpp_default_is_busy_slots_against_the_plan() -> None:
    spec = _spec("llamacpp")
    p = plan(spec, ClusterFacts.every_catalog_type())
    targets = dict(engine(p.engine).default_signals(p))
    assert targets[Signal.BATCH_SIZE] == max(1.0, round(0.8 * p.concurrency))
    assert Signal.KV_CACHE_USAGE not in targets  # llama-server exposes no KV metric
