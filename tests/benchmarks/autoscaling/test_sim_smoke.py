"""Smoke test of the autoscaling simulator: one short trace, request conservation, determinism."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim import Operator, Result, SimConfig, Static, simulate
from traces import make_trace

from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.decision import MetricTarget, Policy
from gemma4_operator.autoscaling.idle import ScaleToZero

CONFIG = SimConfig()


def _run(controller: Operator | Static, initial: int) -> Result:
    trace = make_trace("bursty", duration_s=1800.0, peak_rate=4.0)
    services = [CONFIG.replica.service_s(p, o) for p, o in zip(trace.prompt_tokens, trace.output_tokens, strict=True)]
    return simulate(trace.arrivals, services, trace.duration_s, controller, initial, CONFIG, trace.name)


def _queue_and_kv() -> Operator:
    targets = (MetricTarget(Signal.QUEUE_LENGTH, 5), MetricTarget(Signal.KV_CACHE_USAGE, 80))
    return Operator("queue+kv", Policy(1, 6, targets, scale_down_delay_s=300))


@pytest.mark.parametrize(
    ("controller", "initial"),
    [
        pytest.param(Static("one replica", 1), 1, id="overloaded-static"),
        pytest.param(Static("plenty", 6), 6, id="idle-static"),
        pytest.param(_queue_and_kv(), 1, id="operator-queue-kv"),
    ],
)
def test_every_arrived_request_is_served_in_service_or_queued(controller: Operator | Static, initial: int) -> None:
    r = _run(controller, initial)
    assert r.arrived == len(make_trace("bursty", duration_s=1800.0, peak_rate=4.0).arrivals) > 1000
    assert r.arrived == r.completed + r.in_service_at_end + r.queued_at_end
    assert r.started == r.completed + r.in_service_at_end
    assert 0 <= r.within_slo <= r.started
    assert r.gpu_hours > 0


def test_overload_queues_and_plenty_does_not() -> None:
    overloaded, plenty = _run(Static("one", 1), 1), _run(Static("six", 6), 6)
    assert overloaded.queued_at_end > 100 and overloaded.slo_attainment < 0.5
    assert plenty.queued_at_end == 0 and plenty.slo_attainment == 1.0
    assert plenty.gpu_hours == pytest.approx(6 * 1800 / 3600)  # static: replicas x hours exactly


def test_autoscaled_run_scales_and_is_deterministic() -> None:
    first, second = _run(_queue_and_kv(), 1), _run(_queue_and_kv(), 1)
    assert first == second
    assert first.max_replicas > 1 and first.scale_events > 0


def test_scale_to_zero_sleeps_through_the_night_and_wakes_for_the_first_request() -> None:
    """Ten hours of idle_nights: nothing until 08:00, then office traffic. The run starts at zero replicas, wakes
    on the first held request, serves everything and counts the requests that waited for the wake."""
    trace = make_trace("idle_nights", duration_s=10 * 3600.0)
    services = [CONFIG.replica.service_s(p, o) for p, o in zip(trace.prompt_tokens, trace.output_tokens, strict=True)]
    targets = (MetricTarget(Signal.QUEUE_LENGTH, 2), MetricTarget(Signal.BATCH_SIZE, 14))
    zero = Operator("zero", Policy(1, 6, targets, 300, slots=CONFIG.replica.slots), ScaleToZero(300, 300, 16))
    r = simulate(trace.arrivals, services, trace.duration_s, zero, 0, CONFIG, trace.name)
    assert r.arrived == r.completed + r.in_service_at_end + r.queued_at_end > 1000
    assert 0 < r.waited_for_wake < 100  # the first requests of the morning, held for one cold start
    assert r.gpu_hours < 2.5 * 1.2  # about two hours of traffic on one or two replicas, not ten hours
    always_on = simulate(trace.arrivals, services, trace.duration_s, Static("one", 1), 1, CONFIG, trace.name)
    assert always_on.gpu_hours == pytest.approx(10.0) and always_on.waited_for_wake == 0


SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "traces" / "azure-llm-2023-conv.csv"


@pytest.mark.skipif(not SHARED.is_file(), reason=f"the shared Azure trace is absent ({SHARED})")
def test_azure_csv_replays_as_recorded_and_stretched() -> None:
    from traces import load_csv

    recorded, day = load_csv(str(SHARED)), load_csv(str(SHARED), 24.0)
    assert len(recorded.arrivals) == len(day.arrivals) == 19366
    assert recorded.duration_s <= 3600 < day.duration_s
    assert day.arrivals[-1] == pytest.approx(24 * recorded.arrivals[-1])
    assert recorded.arrivals == tuple(sorted(recorded.arrivals)) and recorded.arrivals[0] == 0.0


def test_csv_trace_and_json_rows(tmp_path: Path) -> None:
    import json

    # by its package path: a bare `import run` may find the reconcile benchmark's run.py when both
    # benchmark folders are on sys.path in one pytest process
    from tests.benchmarks.autoscaling import run

    csv_path = tmp_path / "t.csv"
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [
        f"2023-11-16 18:{m:02d}:{s:02d}.1234567,{300 + s},{40 + m}" for m in range(10) for s in range(0, 60, 2)]
    csv_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.json"
    assert run.main(["--trace-csv", str(csv_path), "--stretch", "2", "--json", str(out), "--jobs", "1",
                     "--policies", "default"]) == 0
    got = json.loads(out.read_text())
    assert {r["policy"] for r in got} == {"static peak", "oracle", "default"}
    for r in got:
        assert {"trace", "policy", "gpu_hours", "oracle_gpu_hours", "static_peak_gpu_hours", "slo_attainment"} <= set(r)
        assert r["trace"] == "t x2"
