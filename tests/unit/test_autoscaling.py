"""Table tests for the Vertex-style autoscaling decision (the Kubernetes HPA algorithm with Vertex AI metric names)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemma4_operator.api.metric_names import ACCEPTED_METRIC_NAMES, DEFAULT_TARGETS, Signal, signal_for_metric_name
from gemma4_operator.autoscaling.decision import (
    Decision,
    MetricTarget,
    Policy,
    Recommendation,
    Sample,
    decide,
    to_target_units,
)

Q = Signal.QUEUE_LENGTH
KV = Signal.KV_CACHE_USAGE
DUTY = Signal.DUTY_CYCLE
CPU = Signal.CPU_UTILIZATION
NOW = 10_000.0


def policy(*targets: tuple[Signal, float], min_: int = 1, max_: int = 100, delay: float = 0.0) -> Policy:
    return Policy(
        min_replicas=min_,
        max_replicas=max_,
        scale_down_delay_s=delay,
        targets=tuple(MetricTarget(s, t) for s, t in targets),
    )


def pods(signal: Signal, *values: float, at: float = NOW, ready: bool = True, first: int = 0) -> list[Sample]:
    """One sample per pod: p<first>, p<first+1>, ..."""
    return [Sample(f"p{first + i}", signal, v, at, ready) for i, v in enumerate(values)]


def run(
    pol: Policy,
    current: int,
    samples: Sequence[Sample],
    history: Sequence[Recommendation] = (),
    now: float = NOW,
) -> Decision:
    return decide(pol, current, samples, history, now)


# ---------------------------------------------------------------- one metric: tolerance and formula


@pytest.mark.parametrize(
    ("current", "values", "target", "expected"),
    [
        pytest.param(4, [5.5] * 4, 5, 4, id="ratio-1.10-inside-tolerance-keeps"),
        pytest.param(4, [4.5] * 4, 5, 4, id="ratio-0.90-inside-tolerance-keeps"),
        pytest.param(4, [5.6] * 4, 5, 5, id="ratio-1.12-scales-up-ceil(4.48)"),
        pytest.param(10, [4.4] * 10, 5, 9, id="ratio-0.88-scales-down-ceil(8.8)"),
        pytest.param(2, [7.5, 7.5], 5, 3, id="up-ceil(2x1.5)"),
        pytest.param(3, [10, 10, 10], 5, 6, id="up-double"),
        pytest.param(4, [1, 1, 1, 1], 5, 1, id="down-ceil(0.8)"),
        pytest.param(4, [0, 0, 0, 0], 5, 0, id="down-to-zero-before-clamp"),
        pytest.param(3, [2, 4, 12], 5, 4, id="average-over-pods-6-ceil(3.6)"),
        pytest.param(3, [0, 0, 15], 5, 3, id="uneven-pods-average-on-target"),
        pytest.param(5, [4.2] * 5, 3, 7, id="float-noise-5x1.4-is-7-not-8"),
    ],
)
def test_single_metric_proposal(current: int, values: list[float], target: float, expected: int) -> None:
    d = run(policy((Q, target), min_=0), current, pods(Q, *values))
    assert d.reasons[0].proposal == expected
    assert d.desired == expected


@pytest.mark.parametrize(
    ("current", "samples", "reason"),
    [
        pytest.param(
            2,
            pods(Q, 7.5, 7.5),
            "vllm/num_requests_waiting 7.5 > target 5 (+10% tolerance): propose 3",
            id="up",
        ),
        pytest.param(
            4,
            pods(Q, 1, 1, 1, 1),
            "vllm/num_requests_waiting 1 < target 5 (-10% tolerance): propose 1",
            id="down",
        ),
        pytest.param(
            4,
            pods(Q, 5.5, 5.5, 5.5, 5.5),
            "vllm/num_requests_waiting 5.5 within target 5 ±10%: keep 4",
            id="within",
        ),
        pytest.param(
            4,
            [],
            "vllm/num_requests_waiting: no fresh sample from a ready pod: no proposal, scale-down blocked",
            id="no-samples",
        ),
        pytest.param(
            3,
            pods(Q, 15, 15),
            "vllm/num_requests_waiting 15 > target 5 (+10% tolerance); 1 pod(s) without a fresh "
            "sample counted at 0 -> 10: propose 6",
            id="missing-pod-up",
        ),
    ],
)
def test_reason_text(current: int, samples: list[Sample], reason: str) -> None:
    assert run(policy((Q, 5)), current, samples).reasons[0].reason == reason


@pytest.mark.parametrize(
    ("current", "samples", "history", "summary"),
    [
        pytest.param(2, pods(Q, 7.5, 7.5), (), "scale up 2 -> 3 (vllm/num_requests_waiting proposes 3)", id="up"),
        pytest.param(4, pods(Q, 5, 5, 5, 5), (), "keep 4", id="keep"),
        pytest.param(
            1,
            pods(Q, 100),
            (),
            "scale up 1 -> 5 (vllm/num_requests_waiting proposes 20); "
            "scale-up limited to 5: at most +100% or +4 pods per 15s",
            id="rate-limited",
        ),
        pytest.param(
            4,
            pods(Q, 1, 1, 1, 1),
            (Recommendation(NOW - 100, 3),),
            "scale down 4 -> 3 (vllm/num_requests_waiting proposes 1); "
            "scale-down held at 3: highest recommendation in the last 300s",
            id="stabilized",
        ),
    ],
)
def test_summary_text(current: int, samples: list[Sample], history: tuple[Recommendation, ...], summary: str) -> None:
    assert run(policy((Q, 5), delay=300), current, samples, history).summary == summary


# ---------------------------------------------------------------- several metrics (Vertex rule)


@pytest.mark.parametrize(
    ("current", "samples", "expected"),
    [
        pytest.param(2, pods(Q, 10, 10) + pods(KV, 0.4, 0.4), 4, id="queue-over-kv-under-scales-up"),
        pytest.param(2, pods(Q, 1, 1) + pods(KV, 1.0, 1.0), 3, id="kv-over-queue-under-scales-up"),
        pytest.param(4, pods(Q, 2, 2, 2, 2) + pods(KV, 0.6, 0.6, 0.6, 0.6), 3, id="both-under-max-of-2-and-3"),
        pytest.param(4, pods(Q, 1, 1, 1, 1) + pods(KV, 0.8, 0.8, 0.8, 0.8), 4, id="one-on-target-blocks-down"),
        pytest.param(2, pods(Q, 10, 10) + pods(KV, 1.0, 1.0), 4, id="both-over-take-larger-4-vs-3"),
    ],
)
def test_max_over_metrics(current: int, samples: list[Sample], expected: int) -> None:
    assert run(policy((Q, 5), (KV, 80)), current, samples).desired == expected


@pytest.mark.parametrize(
    ("current", "duty", "cpu", "history", "expected"),
    [
        pytest.param(2, 90, 30, (), 3, id="duty-over-60-cpu-under-scales-up"),
        pytest.param(2, 30, 90, (), 3, id="cpu-over-60-duty-under-scales-up"),
        pytest.param(4, 30, 15, (Recommendation(NOW - 299, 4),), 4, id="both-under-inside-window-holds"),
        pytest.param(4, 30, 15, (Recommendation(NOW - 300, 4),), 2, id="both-under-after-window-scales-down"),
    ],
)
def test_vertex_accelerator_example(
    current: int, duty: float, cpu: float, history: tuple[Recommendation, ...], expected: int
) -> None:
    """Vertex with an accelerator: duty cycle and CPU at the default target 60."""
    vertex = "aiplatform.googleapis.com/prediction/online/"
    targets = (
        MetricTarget.from_spec(vertex + "accelerator/duty_cycle"),
        MetricTarget.from_spec(vertex + "cpu/utilization"),
    )
    pol = Policy(1, 10, targets, scale_down_delay_s=300)
    samples = pods(DUTY, *[duty] * current) + pods(CPU, *[cpu] * current)
    assert run(pol, current, samples, history).desired == expected


# ---------------------------------------------------------------- scale-down stabilization


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        pytest.param(0, [1, 1, 1, 1, 1, 1], id="no-delay-immediately"),
        pytest.param(30, [4, 4, 1, 1, 1, 1], id="30s-down-at-t30"),
        pytest.param(60, [4, 4, 4, 4, 1, 1], id="60s-down-at-t60"),
        pytest.param(300, [4, 4, 4, 4, 4, 4], id="300s-not-within-75s"),
    ],
)
def test_scale_down_only_after_delay(delay: float, expected: list[int]) -> None:
    """Ticks every 15 s from t=0 with low load; the empty starting history counts as `current`."""
    pol = policy((Q, 5), delay=delay)
    history: tuple[Recommendation, ...] = ()
    got = []
    for tick in range(6):
        d = run(pol, 4, pods(Q, 1, 1, 1, 1, at=tick * 15.0), history, now=tick * 15.0)
        history = d.history
        got.append(d.desired)
    assert got == expected


@pytest.mark.parametrize(
    ("current", "history", "expected"),
    [
        pytest.param(4, [Recommendation(NOW - 200, 3), Recommendation(NOW - 100, 2)], 3, id="highest-in-window"),
        pytest.param(4, [Recommendation(NOW - 301, 4), Recommendation(NOW - 100, 2)], 2, id="old-one-expired"),
        pytest.param(6, [Recommendation(NOW - 10, 9)], 6, id="higher-than-current-keeps-current"),
        pytest.param(4, [Recommendation(NOW - 400, 9)], 1, id="all-expired-uses-new"),
    ],
)
def test_stabilization_window_uses_highest_recommendation(
    current: int, history: list[Recommendation], expected: int
) -> None:
    """Every pod reports queue 0.5 (target 5), so the new recommendation is 1."""
    assert run(policy((Q, 5), delay=300), current, pods(Q, *[0.5] * current), history).desired == expected


def test_history_is_pruned_and_records_the_raw_recommendation() -> None:
    history = [Recommendation(NOW - 301, 9), Recommendation(NOW - 299, 2, 1), Recommendation(NOW - 20, 3)]
    d = run(policy((Q, 5), delay=300), 2, pods(Q, 50, 50), history)
    assert d.desired == 6  # wants 20; +4 pods per 15 s (the +1 at NOW-299 is older than 15 s)
    assert d.history == (
        Recommendation(NOW - 299, 2, 1),
        Recommendation(NOW - 20, 3),
        Recommendation(NOW, 20, 4),
    )


# ---------------------------------------------------------------- scale-up rate limit


@pytest.mark.parametrize(
    ("current", "wanted", "expected"),
    [
        pytest.param(1, 20, 5, id="1-pods-rule-wins-+4"),
        pytest.param(2, 20, 6, id="2-pods-rule-wins-+4"),
        pytest.param(4, 20, 8, id="4-both-rules-give-8"),
        pytest.param(5, 20, 10, id="5-percent-rule-wins-+100%"),
        pytest.param(10, 40, 20, id="10-percent-rule-wins-+100%"),
        pytest.param(10, 14, 14, id="10-to-14-not-limited"),
    ],
)
def test_scale_up_rate_limit(current: int, wanted: int, expected: int) -> None:
    # every pod reports wanted/current x target, so the metric proposes `wanted`
    d = run(policy((Q, 5)), current, pods(Q, *[5 * wanted / current] * current))
    assert d.reasons[0].proposal == wanted
    assert d.desired == expected


def test_rate_limit_sequence_every_15s() -> None:
    pol = policy((Q, 5), max_=40)
    current, got = 1, []
    history: tuple[Recommendation, ...] = ()
    for tick in range(5):
        d = run(pol, current, pods(Q, *[1000] * current, at=tick * 15.0), history, now=tick * 15.0)
        current, history = d.desired, d.history
        got.append(current)
    assert got == [5, 10, 20, 40, 40]


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        pytest.param(5, 5, id="scaled-1-to-5-5s-ago-no-more"),
        pytest.param(14.9, 5, id="14.9s-ago-still-counts"),
        pytest.param(15, 10, id="15s-ago-new-period"),
    ],
)
def test_rate_limit_counts_recent_scale_ups(age: float, expected: int) -> None:
    history = [Recommendation(NOW - age, 20, scaled_up_by=4)]
    assert run(policy((Q, 5)), 5, pods(Q, *[100] * 5), history).desired == expected


# ---------------------------------------------------------------- clamping


@pytest.mark.parametrize(
    ("targets", "current", "samples", "min_", "max_", "expected"),
    [
        pytest.param([(Q, 5)], 8, pods(Q, *[7.5] * 8), 1, 10, 10, id="over-max"),
        pytest.param([(Q, 5)], 4, pods(Q, 1, 1, 1, 1), 3, 10, 3, id="under-min"),
        pytest.param([], 0, [], 2, 10, 2, id="no-metrics-0-below-min"),
        pytest.param([], 1, [], 10, 20, 10, id="no-metrics-min-beats-rate-limit"),
        pytest.param([], 12, [], 1, 10, 10, id="no-metrics-above-max"),
        pytest.param([], 5, [], 1, 10, 5, id="no-metrics-in-range-keeps"),
        pytest.param([(Q, 5)], 0, [], 0, 10, 0, id="zero-stays-zero-with-min-0"),
    ],
)
def test_clamp(
    targets: list[tuple[Signal, float]],
    current: int,
    samples: list[Sample],
    min_: int,
    max_: int,
    expected: int,
) -> None:
    assert run(policy(*targets, min_=min_, max_=max_), current, samples).desired == expected


# ---------------------------------------------------------------- stale, not ready, missing


@pytest.mark.parametrize(
    ("samples", "expected_proposal"),
    [
        pytest.param(pods(Q, 1, 1, at=NOW - 61), None, id="all-stale-no-proposal"),
        pytest.param(pods(Q, 1, 1, at=NOW - 60), 1, id="exactly-60s-old-is-fresh"),
        pytest.param(pods(Q, 5) + pods(Q, 100, at=NOW - 10), 2, id="newest-sample-per-pod-wins-regardless-of-order"),
        pytest.param(pods(Q, 100, 100, at=NOW - 61) + pods(Q, 5, 5, at=NOW - 1), 2, id="stale-values-ignored"),
        pytest.param(pods(Q, 20) + pods(Q, 1000, ready=False, first=1), 4, id="not-ready-pod-ignored"),
        pytest.param(pods(Q, 1000, 1000, ready=False), None, id="only-not-ready-no-proposal"),
    ],
)
def test_stale_and_not_ready_samples(samples: list[Sample], expected_proposal: int | None) -> None:
    d = run(policy((Q, 5)), 2, samples)
    assert d.reasons[0].proposal == expected_proposal
    assert d.desired == (2 if expected_proposal is None else expected_proposal)


@pytest.mark.parametrize(
    ("current", "samples", "expected"),
    [
        pytest.param(4, pods(Q, 1, 1, 1, 1), 4, id="queue-wants-1-kv-silent-blocks-down"),
        pytest.param(4, pods(Q, 1, 1, 1, 1) + pods(KV, 0.1, 0.1, 0.1, 0.1, at=NOW - 120), 4, id="kv-stale-blocks-down"),
        pytest.param(4, pods(Q, 10, 10, 10, 10), 8, id="queue-wants-8-kv-silent-still-scales-up"),
        pytest.param(4, pods(Q, 5, 5, 5, 5), 4, id="queue-on-target-kv-silent-keeps"),
    ],
)
def test_missing_metric_blocks_scale_down_only(current: int, samples: list[Sample], expected: int) -> None:
    d = run(policy((Q, 5), (KV, 80)), current, samples)
    assert d.desired == expected
    kv = d.reasons[1]
    assert (kv.signal, kv.current, kv.proposal) == (KV, None, None)


def test_missing_metric_note_in_summary() -> None:
    d = run(policy((Q, 5), (KV, 80)), 4, pods(Q, 1, 1, 1, 1))
    assert d.summary == "keep 4; scale-down blocked: no fresh samples for vllm/kv_cache_usage_perc"
    assert d.history[-1] == Recommendation(NOW, 4)  # the blocked recommendation is what is remembered


@pytest.mark.parametrize(
    ("current", "values", "expected"),
    [
        pytest.param(4, [8, 8], 4, id="up-reverses-to-down-(16/20)-keeps"),
        pytest.param(3, [8, 8], 3, id="up-falls-into-tolerance-(16/15)-keeps"),
        pytest.param(3, [15, 15], 6, id="up-survives-(30/15)-ceil(6)"),
        pytest.param(3, [30], 6, id="one-of-three-reports-30-(30/15)"),
        pytest.param(10, [0], 10, id="down-falls-into-tolerance-(45/50)-keeps"),
        pytest.param(4, [0, 0], 2, id="down-missing-at-target-(10/20)-gives-2-not-0"),
        pytest.param(4, [1, 1], 3, id="down-missing-at-target-(12/20)-ceil(2.4)"),
    ],
)
def test_conservative_recompute_for_pods_without_samples(current: int, values: list[float], expected: int) -> None:
    d = run(policy((Q, 5), min_=0), current, pods(Q, *values))
    assert d.desired == expected
    assert d.reasons[0].current == sum(values) / len(values)  # status shows the original average


# ---------------------------------------------------------------- metric names, defaults, units

METRIC_NAMES = {
    "accelerator/duty_cycle": DUTY,
    "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle": DUTY,
    "prometheus.googleapis.com/vertex_dcgm_fi_dev_gpu_util": DUTY,
    "vertex_dcgm_fi_dev_gpu_util": DUTY,
    "cpu/utilization": CPU,
    "aiplatform.googleapis.com/prediction/online/cpu/utilization": CPU,
    "request_count": Signal.REQUEST_COUNT,
    "aiplatform.googleapis.com/prediction/online/request_count": Signal.REQUEST_COUNT,
    "vllm/num_requests_waiting": Q,
    "prometheus.googleapis.com/vertex_vllm_num_requests_waiting": Q,
    "vertex_vllm_num_requests_waiting": Q,
    "vllm/kv_cache_usage_perc": KV,
    "prometheus.googleapis.com/vertex_vllm_kv_cache_usage_perc": KV,
    "prometheus.googleapis.com/vertex_vllm_gpu_cache_usage_perc": KV,
    "vertex_vllm_kv_cache_usage_perc": KV,
    "vertex_vllm_gpu_cache_usage_perc": KV,
    "vllm/num_requests_running": Signal.BATCH_SIZE,
    "prometheus.googleapis.com/vertex_vllm_num_requests_running": Signal.BATCH_SIZE,
    "vertex_vllm_num_requests_running": Signal.BATCH_SIZE,
}


@pytest.mark.parametrize(("name", "signal"), list(METRIC_NAMES.items()), ids=list(METRIC_NAMES))
def test_metric_name_spelling(name: str, signal: Signal) -> None:
    assert signal_for_metric_name(name) is signal


def test_accepted_names_are_exactly_the_table_short_ones_first() -> None:
    assert sorted(ACCEPTED_METRIC_NAMES) == sorted(METRIC_NAMES)
    assert ACCEPTED_METRIC_NAMES[:6] == (
        "accelerator/duty_cycle",
        "cpu/utilization",
        "request_count",
        "vllm/num_requests_waiting",
        "vllm/kv_cache_usage_perc",
        "vllm/num_requests_running",
    )


@pytest.mark.parametrize("name", ["vllm/queue", "VLLM/num_requests_waiting", "vllm:num_requests_waiting", ""])
def test_unknown_metric_name(name: str) -> None:
    with pytest.raises(ValueError, match=r"^unknown metricName .*; accepted: accelerator/duty_cycle, ") as e:
        signal_for_metric_name(name)
    assert str(e.value).startswith(f"unknown metricName {name!r}; accepted: ")
    assert str(e.value).endswith(", vertex_vllm_gpu_cache_usage_perc, vertex_dcgm_fi_dev_gpu_util")
    assert all(n in str(e.value) for n in METRIC_NAMES)


def test_default_targets() -> None:
    assert dict(DEFAULT_TARGETS) == {
        DUTY: 60,
        CPU: 60,
        Q: 5,
        KV: 80,
        Signal.REQUEST_COUNT: None,
        Signal.BATCH_SIZE: None,
    }


@pytest.mark.parametrize(
    ("name", "target", "expected"),
    [
        pytest.param("vertex_vllm_num_requests_waiting", None, MetricTarget(Q, 5), id="queue-default-5"),
        pytest.param(
            "prometheus.googleapis.com/vertex_vllm_gpu_cache_usage_perc",
            None,
            MetricTarget(KV, 80),
            id="kv-default-80",
        ),
        pytest.param("accelerator/duty_cycle", None, MetricTarget(DUTY, 60), id="duty-default-60"),
        pytest.param("vllm/num_requests_waiting", 3, MetricTarget(Q, 3), id="explicit-target-wins"),
        pytest.param("request_count", 120, MetricTarget(Signal.REQUEST_COUNT, 120), id="request-count-set"),
    ],
)
def test_metric_target_from_spec(name: str, target: float | None, expected: MetricTarget) -> None:
    assert MetricTarget.from_spec(name, target) == expected


@pytest.mark.parametrize("name", ["request_count", "vllm/num_requests_running"])
def test_metric_without_default_target_needs_one(name: str) -> None:
    with pytest.raises(ValueError, match=f"^metricName '{name}' has no default target; set target$"):
        MetricTarget.from_spec(name)


@pytest.mark.parametrize(
    ("current", "kv", "expected_avg", "expected"),
    [
        pytest.param(4, [0.9] * 4, 90, 5, id="0.9-is-90%-over-80-ceil(4.5)"),
        pytest.param(4, [0.85] * 4, 85, 4, id="0.85-is-85%-inside-tolerance"),
        pytest.param(4, [0.2] * 4, 20, 1, id="0.2-is-20%-ceil(1.0)"),
        pytest.param(2, [1.0, 0.6], 80, 2, id="mixed-average-80%"),
    ],
)
def test_kv_cache_fraction_is_normalised_to_percent(
    current: int, kv: list[float], expected_avg: float, expected: int
) -> None:
    d = run(policy((KV, 80)), current, pods(KV, *kv))
    assert d.reasons[0].current == pytest.approx(expected_avg)
    assert d.desired == expected


@pytest.mark.parametrize(
    ("signal", "raw", "converted"),
    [
        (KV, 0.5, 50),
        (Q, 0.5, 0.5),
        (DUTY, 90, 90),
        (CPU, 30, 30),
        (Signal.BATCH_SIZE, 12, 12),
        (Signal.REQUEST_COUNT, 240, 240),
    ],
    ids=["kv", "queue", "duty", "cpu", "batch", "request-count"],
)
def test_to_target_units(signal: Signal, raw: float, converted: float) -> None:
    assert to_target_units(signal, raw) == converted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"min_replicas": 5, "max_replicas": 2}, "min_replicas <= max_replicas", id="min>max"),
        pytest.param({"max_replicas": 0, "min_replicas": 0}, "max_replicas >= 1", id="max-0"),
        pytest.param(
            {"targets": (MetricTarget(Q, 5), MetricTarget.from_spec("vertex_vllm_num_requests_waiting"))},
            "at most one target per metric",
            id="duplicate-metric",
        ),
        pytest.param({"scale_down_delay_s": -1}, "scale_down_delay_s must be >= 0", id="negative-delay"),
        pytest.param({"tolerance": 1.0}, "0 <= tolerance < 1", id="tolerance-1"),
    ],
)
def test_policy_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"min_replicas": 1, "max_replicas": 5, "targets": (), "scale_down_delay_s": 0}
    with pytest.raises(ValueError, match=message):
        Policy(**{**args, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize("target", [0, -5, float("nan"), float("inf")])
def test_metric_target_must_be_positive(target: float) -> None:
    with pytest.raises(ValueError, match="must be a positive number"):
        MetricTarget(Q, target)


# ---------------------------------------------------------------- properties

_signals = st.sampled_from([Q, KV, DUTY])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Policy, int, list[Sample], list[Recommendation]]:
    min_ = draw(st.integers(0, 5))
    max_ = draw(st.integers(max(1, min_), 12))
    signals = draw(st.lists(_signals, unique=True, max_size=3))
    pol = Policy(
        min_,
        max_,
        tuple(MetricTarget(s, draw(st.floats(0.5, 90))) for s in signals),
        scale_down_delay_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
    )
    current = draw(st.integers(0, 15))
    samples = draw(
        st.lists(
            st.builds(
                Sample,
                pod=st.sampled_from([f"p{i}" for i in range(15)]),
                signal=_signals,
                value=st.floats(0, 200),
                at=st.floats(NOW - 120, NOW),
                ready=st.booleans(),
            ),
            max_size=30,
        )
    )
    history = draw(
        st.lists(
            st.builds(
                Recommendation,
                at=st.floats(NOW - 400, NOW),
                replicas=st.integers(0, 30),
                scaled_up_by=st.integers(0, 8),
            ),
            max_size=5,
        )
    )
    return pol, current, samples, history


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_property_bounds_and_no_blind_scale_down(
    scenario: tuple[Policy, int, list[Sample], list[Recommendation]],
) -> None:
    pol, current, samples, history = scenario
    d = decide(pol, current, samples, history, NOW)
    assert pol.min_replicas <= d.desired <= pol.max_replicas
    if any(r.proposal is None for r in d.reasons) and current <= pol.max_replicas:
        assert d.desired >= current
    assert d.history[-1].at == NOW
    assert all(h.at > NOW - max(15, pol.scale_down_delay_s) for h in d.history)
