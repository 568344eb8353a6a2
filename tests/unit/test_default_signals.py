"""The default autoscaling policy (no autoscalingMetricSpecs): the engine's default signals."""

from __future__ import annotations

import math

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.api.metric_names import DEFAULT_TARGETS, Signal
from gemma4_operator.autoscaling.decision import Sample, decide
from gemma4_operator.autoscaling.policy import metric_targets, policy
from gemma4_operator.engines import engine
from gemma4_operator.engines.base import BUSY_SLOTS, DEFAULT_QUEUE
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan


def _spec(engine_name: str) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"},
                                                "engine": engine_name, "autoscaling": {"maxReplicaCount": 10}})


@pytest.mark.parametrize("engine_name", ["vllm", "llamacpp"])
def test_the_default_is_requests_in_flight_against_the_plans_slots_with_a_fast_queue(engine_name: str) -> None:
    spec = _spec(engine_name)
    p = plan(spec, ClusterFacts.every_catalog_type())
    targets = {t.signal: t.target for t in metric_targets(spec, p, engine(p.engine))}
    slots = engine(p.engine).slots(p)  # vLLM: maxConcurrency; llama.cpp: its -np, serving.concurrency
    assert slots == (p.max_concurrency if engine_name == "vllm" else p.concurrency)
    assert targets == {Signal.QUEUE_LENGTH: DEFAULT_QUEUE, Signal.BATCH_SIZE: round(BUSY_SLOTS * slots, 2)}
    assert (DEFAULT_TARGETS[Signal.QUEUE_LENGTH] or math.inf) > DEFAULT_QUEUE  # reacts before the API's default
    assert Signal.KV_CACHE_USAGE not in targets  # rises with prompt length, not with load


def test_a_full_batch_holds_the_count_and_only_a_queue_scales_up() -> None:
    spec = _spec("vllm")
    p = plan(spec, ClusterFacts.every_catalog_type())
    pol = policy(spec, p, engine(p.engine))
    slots = float(p.max_concurrency)

    def samples(running: float, waiting: float) -> list[Sample]:
        return [Sample(f"p{i}", s, v, 100.0, True) for i in range(2)
                for s, v in ((Signal.BATCH_SIZE, running), (Signal.QUEUE_LENGTH, waiting))]

    assert decide(pol, 1, samples(slots, 0)[:2], (), 100.0).desired == 1  # one full replica: within tolerance
    assert decide(pol, 2, samples(slots, 3), (), 100.0).desired == 3  # queue 3 > 2 (+10 %): ceil(2 x 1.5)
    assert decide(pol, 2, samples(slots * 0.9, 0), (), 100.0).desired == 2  # busy: hold
