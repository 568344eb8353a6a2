"""Scale to zero's decision tables (autoscaling.idle through autoscaling.policy.tick) and the capacity-aware
queue (autoscaling.decision): the idle timer resets on any request, nothing scales down inside
minScaleupPeriod, held requests block scale-down and wake from zero, missing metrics never go to zero,
starting pods count as capacity, and an operator restart keeps the timers (they come back from status)."""

from __future__ import annotations

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling import idle
from gemma4_operator.autoscaling.decision import MetricTarget, Policy, Sample, decide
from gemma4_operator.autoscaling.policy import Tick, ZeroInput, policy, scale_to_zero, tick
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan as make_plan

RUNNING, WAITING, COUNT = Signal.BATCH_SIZE, Signal.QUEUE_LENGTH, Signal.REQUEST_COUNT
POLICY = Policy(1, 8, (MetricTarget(RUNNING, 12), MetricTarget(WAITING, 2)), 300, slots=15)
ZERO = idle.ScaleToZero(idle_s=600, min_scaleup_s=300, slots=15)
T0 = 1_000_000.0


def pod(name: str, at: float, running: float = 0, waiting: float = 0, rate: float | None = None) -> list[Sample]:
    samples = [Sample(name, RUNNING, running, at, True), Sample(name, WAITING, waiting, at, True)]
    return samples + ([Sample(name, COUNT, rate, at, True)] if rate is not None else [])


def run(current: int, samples: list[Sample], timers: idle.Timers, now: float, held: int = 0,
        pods: frozenset[str] = frozenset({"a"}), unreadable: dict[Signal, str] | None = None) -> Tick:
    return tick(POLICY, current, samples, (), now, unreadable or {}, (), ZeroInput(ZERO, timers, held, pods))


# --- the idle timer resets on any request ------------------------------------------------------------------

@pytest.mark.parametrize(("why", "samples", "held"), [
    ("a request running", pod("a", T0, running=1), 0),
    ("a request waiting", pod("a", T0, waiting=1), 0),
    ("a request served between two scrapes (the counter rose)", pod("a", T0, rate=4.0), 0),
    ("a request held by the activator", pod("a", T0), 1),
])
def test_any_request_resets_the_idle_timer(why: str, samples: list[Sample], held: int) -> None:
    before = idle.Timers(idle_since=T0 - 3000)  # idle far longer than idleScaledownPeriod
    t = run(1, samples, before, T0, held)
    assert t.timers is not None and t.timers.idle_since is None, why
    assert t.desired == 1, why


def test_idle_starts_at_the_first_quiet_tick_and_scales_to_zero_after_the_period() -> None:
    timers = idle.Timers()
    desired = []
    for k in range(0, 700, 15):  # a tick every 15 s, nothing served or waiting
        t = run(1, pod("a", T0 + k, rate=0.0), timers, T0 + k)
        assert t.timers is not None
        timers = t.timers
        desired.append((k, t.desired))
    assert timers.idle_since == T0
    assert [k for k, d in desired if d == 0] == [k for k, _ in desired if k >= 600]
    assert "scale to zero: no request for 600s, idleScaledownPeriod 600s" in run(
        1, pod("a", T0 + 600), timers, T0 + 600).summary


# --- no scale-down inside minScaleupPeriod ------------------------------------------------------------------

@pytest.mark.parametrize(("since_up", "idle_for", "expected"), [
    (100, 700, 2),   # idle long enough, but scaled up 100 s ago: held
    (299, 700, 2),
    (300, 700, 0),   # the period is over: to zero
    (100, 0, 2),     # a plain metric scale-down (2 -> 1) is held as well
    (400, 0, 1),
])
def test_no_scale_down_inside_min_scaleup_period(since_up: float, idle_for: float, expected: int) -> None:
    timers = idle.Timers(idle_since=T0 - idle_for if idle_for else None, last_scale_up=T0 - since_up)
    history = ()  # decide's own scale-down window is not what is tested here: a zero-delay policy
    pol = Policy(1, 8, POLICY.targets, 0, slots=15)
    pods = pod("a", T0, rate=0.0) + pod("b", T0, rate=0.0) if idle_for else pod("a", T0, running=3) + pod("b", T0)
    t = tick(pol, 2, pods, history, T0, {}, (), ZeroInput(ZERO, timers, 0, frozenset({"a", "b"})))
    assert t.desired == expected
    if expected == 2:
        assert f"scale-down held: {since_up}s since the last scale-up, minScaleupPeriod 300s" in t.summary


def test_a_scale_up_starts_the_min_scaleup_period() -> None:
    t = run(1, pod("a", T0, running=15, waiting=20), idle.Timers(), T0)
    assert t.desired > 1 and t.timers == idle.Timers(idle_since=None, last_scale_up=T0)


# --- held requests block scale-down and wake from zero ------------------------------------------------------

def test_held_requests_block_scale_to_zero() -> None:
    t = run(1, pod("a", T0, rate=0.0), idle.Timers(idle_since=T0 - 5000), T0, held=1)
    assert t.desired == 1 and t.timers is not None and t.timers.idle_since is None


@pytest.mark.parametrize(("held", "wake"), [(0, 0), (1, 1), (15, 1), (16, 2), (1000, 8)])
def test_at_zero_held_requests_wake_replicas_for_their_slots(held: int, wake: int) -> None:
    t = run(0, [], idle.Timers(), T0, held=held, pods=frozenset())
    assert (t.desired, t.active) == (wake, True)
    assert t.reason == ("ScaledToZero" if wake == 0 else "WakeFromZero")
    if wake:
        assert t.message == f"wake: {held} request(s) held by the activator, {wake} replica(s) of 15 slots"
        assert t.timers == idle.Timers(last_scale_up=T0)


@pytest.mark.parametrize(("held", "expected"), [(10, 1), (15, 1), (16, 2), (40, 3)])
def test_held_requests_beyond_the_starting_replicas_slots_ask_for_more(held: int, expected: int) -> None:
    """Woken, not ready yet: the activator still holds; the starting replica's 15 slots count."""
    t = run(1, [], idle.Timers(last_scale_up=T0 - 30), T0, held=held, pods=frozenset())
    assert t.desired == expected


def test_at_zero_an_unreadable_metric_source_wakes_nothing() -> None:
    t = run(0, [], idle.Timers(), T0, pods=frozenset(), unreadable={Signal.CPU_UTILIZATION: "no metrics-server"})
    assert t.desired == 0


# --- missing metrics never go to zero -----------------------------------------------------------------------

@pytest.mark.parametrize(("why", "samples", "pods", "unreadable"), [
    ("no sample at all", [], frozenset({"a"}), {}),
    ("one pod's queue gauge is missing", [*pod("a", T0), Sample("b", RUNNING, 0, T0, True)],
     frozenset({"a", "b"}), {}),
    ("a stale sample", pod("a", T0 - 120), frozenset({"a"}), {}),
    ("a metric source is unreadable", pod("a", T0), frozenset({"a"}), {Signal.CPU_UTILIZATION: "no metrics-server"}),
    ("no pod is ready (starting)", [], frozenset(), {}),
])
def test_missing_metrics_never_scale_to_zero(why: str, samples: list[Sample], pods: frozenset[str],
                                             unreadable: dict[Signal, str]) -> None:
    t = run(len(pods) or 1, samples, idle.Timers(idle_since=T0 - 5000), T0, pods=pods, unreadable=unreadable)
    assert t.desired >= 1, why
    assert t.timers is not None and t.timers.idle_since is None, why  # the period starts again


def test_the_counter_missing_on_a_first_scrape_does_not_block_idle() -> None:
    """Right after a restart a pod has no counter rate yet: the gauges decide (or the timers could not survive)."""
    assert idle.activity(pod("a", T0), {"a"}, 0, T0, 60) is idle.Activity.IDLE
    assert idle.activity(pod("a", T0, rate=0.5), {"a"}, 0, T0, 60) is idle.Activity.BUSY


# --- starting pods are capacity on its way ------------------------------------------------------------------

@pytest.mark.parametrize(("slots", "waiting", "expected"), [
    (15, 10, 2),    # the starting pod's 15 slots absorb a queue of 10: no second scale-up
    (15, 14, 2),
    (15, 40, 13),   # 40 - 15 absorbed = 25 waiting over 2 replicas at target 2 -> ceil(25 / 2)
    (0, 10, 5),     # slots unknown: the HPA's rule alone (starting pods count 0) -> ceil(10 / 2)
])
def test_starting_pods_absorb_the_queue(slots: int, waiting: float, expected: int) -> None:
    pol = Policy(1, 20, (MetricTarget(WAITING, 2),), 300, slots=slots)
    d = decide(pol, 2, [Sample("a", WAITING, waiting, T0, True)], (), T0)  # 2 replicas, 1 ready, 1 starting
    assert d.reasons[0].proposal == expected  # (the scale-up rate limit then caps a big step)
    if slots and expected == 2:
        assert "1 starting pod(s) absorb 15 queued" in d.reasons[0].reason


# --- a restart keeps the timers -----------------------------------------------------------------------------

def test_timers_round_trip_through_status() -> None:
    timers = idle.Timers(idle_since=T0 - 90.5, last_scale_up=T0 - 400.25)
    status = idle.timers_to_status(timers, False)
    assert status == {"idleSince": "1970-01-12T13:45:09.500Z", "lastScaleUpTime": "1970-01-12T13:39:59.750Z",
                      "scaledToZero": False}
    assert idle.timers_from_status(status, T0) == timers
    assert idle.timers_to_status(idle.Timers(), True) == {"idleSince": "", "lastScaleUpTime": "",
                                                          "scaledToZero": True}


def test_a_restarted_operator_scales_to_zero_when_the_old_one_would_have() -> None:
    """The old process saw the deployment go idle at T0 and wrote idleSince; a new one, started at T0 + 590 with
    empty memory, reads it back and scales to zero at T0 + 600, not a full period after its start."""
    written = idle.timers_to_status(idle.Timers(idle_since=T0), False)
    restored = idle.timers_from_status(written, T0 + 590)
    assert run(1, pod("a", T0 + 590), restored, T0 + 590).desired == 1
    assert run(1, pod("a", T0 + 600), restored, T0 + 600).desired == 0
    assert run(1, pod("a", T0 + 600), idle.Timers(), T0 + 600).desired == 1  # without status: starts again


@pytest.mark.parametrize("status", [None, {}, {"idleSince": "yesterday"}, {"lastScaleUpTime": 5}])
def test_unreadable_or_absent_timers_read_as_none(status: dict[str, object] | None) -> None:
    assert idle.timers_from_status(status, T0) == idle.Timers()


def test_a_timer_from_the_future_counts_as_now() -> None:
    status = idle.timers_to_status(idle.Timers(idle_since=T0 + 3600), False)
    assert idle.timers_from_status(status, T0) == idle.Timers(idle_since=T0)


# --- the spec's side ----------------------------------------------------------------------------------------

SPEC = {"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"},
        "autoscaling": {"minReplicaCount": 0, "maxReplicaCount": 4,
                        "scaleToZeroSpec": {"idleScaledownPeriod": "1h30m", "minScaleupPeriod": "300s"}}}


def test_the_spec_gives_the_gate_its_periods_and_the_metric_math_a_floor_of_one() -> None:
    spec = Gemma4DeploymentSpec.model_validate(SPEC)
    p = make_plan(spec, ClusterFacts.every_catalog_type())
    vllm = engine_named(p.engine)
    assert scale_to_zero(spec, p, vllm) == idle.ScaleToZero(5400, 300, p.max_concurrency)
    assert scale_to_zero(spec, p, vllm, time_scale=0.01) == idle.ScaleToZero(54, 3, p.max_concurrency)
    pol = policy(spec, p, vllm)
    assert (pol.min_replicas, pol.max_replicas, pol.slots) == (1, 4, p.max_concurrency)
    without = Gemma4DeploymentSpec.model_validate({**SPEC, "autoscaling": {"maxReplicaCount": 4}})
    assert scale_to_zero(without, p, vllm) is None


def test_a_llama_cpp_replica_has_its_np_slots() -> None:
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"},
                                                "serving": {"concurrency": 5}, "autoscaling": SPEC["autoscaling"]})
    p = make_plan(spec, ClusterFacts.every_catalog_type())
    llama = engine_named(p.engine)
    assert p.engine == "llamacpp" and p.max_concurrency > p.concurrency == 5  # memory would hold more
    assert policy(spec, p, llama).slots == 5 and scale_to_zero(spec, p, llama) == idle.ScaleToZero(5400, 300, 5)
