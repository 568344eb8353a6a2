"""The recommendation history kept in status: restart behaviour and no write per tick."""

from __future__ import annotations

import itertools

from gemma4_operator.api import AutoscalingStatus
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.decision import MetricTarget, Policy, Recommendation, Sample, decide
from gemma4_operator.autoscaling.history import MAX_STEPS, from_status, staircase, to_status
from gemma4_operator.reconcile import status as observe

T0 = 1_800_000_000.0  # seconds since the epoch (the autoscaler's clock is the wall clock)
WINDOW = 300.0
POLICY = Policy(1, 20, (MetricTarget(Signal.BATCH_SIZE, 10),), WINDOW)


def _samples(running_per_pod: float, pods: int, now: float) -> list[Sample]:
    return [Sample(f"p{i}", Signal.BATCH_SIZE, running_per_pod, now, True) for i in range(pods)]


def _run(history: tuple[Recommendation, ...], current: int, load: float, start: float, ticks: int,
         ) -> tuple[int, tuple[Recommendation, ...], list[dict[str, object]]]:
    """Tick every 15 s with a total of ``load`` running requests; returns the replicas, the history and
    the status each tick would write."""
    statuses = []
    for i in range(ticks):
        now = start + 15 * i
        d = decide(POLICY, current, _samples(load / current, current, now), history, now)
        current, history = d.desired, d.history
        statuses.append(to_status(history, now, WINDOW))
    return current, history, statuses


def test_staircase_keeps_only_what_can_be_the_window_maximum() -> None:
    h = [Recommendation(T0 + t, r) for t, r in ((0, 5), (15, 8), (30, 6), (45, 7), (60, 3), (75, 3))]
    assert staircase(h, T0 + 75, WINDOW) == (Recommendation(T0 + 15, 8), Recommendation(T0 + 45, 7),
                                             Recommendation(T0 + 75, 3))
    assert staircase(h, T0 + 15 + WINDOW, WINDOW) == (Recommendation(T0 + 45, 7), Recommendation(T0 + 75, 3))


def test_status_round_trip_through_the_api_model() -> None:
    h = (Recommendation(T0, 8), Recommendation(T0 + 30, 4))
    written = to_status(h, T0 + 30, WINDOW)
    assert written == {"recommendations": [{"replicas": 8, "time": "2027-01-15T08:00:00.000Z"}],
                       "recommendedReplicas": 4}
    model = AutoscalingStatus.model_validate({"desiredReplicas": 8, **written})
    assert model.model_dump(by_alias=True, exclude_none=True)["recommendations"] == written["recommendations"]
    assert from_status(written, T0 + 100, WINDOW) == (Recommendation(T0, 8), Recommendation(T0 + 100, 4))


def test_the_history_is_bounded() -> None:
    h = tuple(Recommendation(T0 + i, 100 - i) for i in range(40))
    assert len(to_status(h, T0 + 40, WINDOW)["recommendations"]) == MAX_STEPS


def test_a_repeated_recommendation_writes_nothing() -> None:
    """Steady load: the recommendation repeats, the status (history part) never changes after the first tick."""
    _, _, statuses = _run((), 4, 40.0, T0, 40)
    assert all(s == statuses[0] for s in statuses)


def test_status_changes_only_when_the_recommendation_or_the_window_maximum_changes() -> None:
    current, history, _ = _run((), 8, 80.0, T0, 4)  # 8 replicas, busy
    _, _, statuses = _run(history, current, 20.0, T0 + 60, 40)  # load drops: hold, then scale down
    changes = sum(1 for a, b in itertools.pairwise(statuses) if a != b)
    assert 1 <= changes <= 3  # the drop, the 8 expiring (window maximum changes), nothing per tick


def test_restart_neither_scales_down_early_nor_waits_a_full_window() -> None:
    # 8 replicas busy until T0+45, then the load drops to what 2 replicas carry
    current, history, _ = _run((), 8, 80.0, T0, 4)
    current, history, _ = _run(history, current, 20.0, T0 + 60, 8)  # until T0+165: held at 8
    assert current == 8
    written = to_status(history, T0 + 165, WINDOW)
    restart = T0 + 200
    restored = from_status(written, restart, WINDOW)
    # right after the restart: still held (the 8 of T0+45 is inside the window)
    early = decide(POLICY, 8, _samples(20 / 8, 8, restart), restored, restart)
    assert early.desired == 8
    # once the 8 leaves the window (T0+45+300), down: not a whole window after the restart
    later = T0 + 45 + WINDOW + 15
    down = decide(POLICY, 8, _samples(20 / 8, 8, later), early.history, later)
    assert down.desired == 2 and later < restart + WINDOW
    # without the status, the HPA's restart behaviour: held for a full window after the restart
    blind = decide(POLICY, 8, _samples(20 / 8, 8, restart), (), restart)
    blind_later = decide(POLICY, 8, _samples(20 / 8, 8, later), blind.history, later)
    assert blind_later.desired == 8


def test_an_empty_or_foreign_status_restores_nothing() -> None:
    assert from_status(None, T0, WINDOW) == ()
    assert from_status({"desiredReplicas": 3}, T0, WINDOW) == ()
    odd = {"recommendedReplicas": 2, "recommendations": [{"replicas": "x", "time": "t"}, {"replicas": 5}]}
    assert from_status(odd, T0, WINDOW) == (Recommendation(T0, 2),)
    future = {"recommendedReplicas": 2, "recommendations": [{"replicas": 5, "time": "2099-01-01T00:00:00Z"}]}
    assert from_status(future, T0, WINDOW)[0] == Recommendation(T0, 5)


def test_autoscaler_patch_carries_the_history_only_when_it_changed() -> None:
    h = (Recommendation(T0, 8), Recommendation(T0 + 30, 4))
    auto = {**observe.autoscaling_status(8, "", [("vllm/num_requests_running", 3.0, 10.0)]),
            **to_status(h, T0 + 30, WINDOW)}
    first = observe.autoscaler_patch({}, auto, True, "ValidMetrics", "ok", 1, "t0")
    assert first is not None and first["autoscaling"]["recommendedReplicas"] == 4
    again = {**observe.autoscaling_status(8, "", [("vllm/num_requests_running", 3.0, 10.0)]),
             **to_status((*h, Recommendation(T0 + 45, 4)), T0 + 45, WINDOW)}
    assert observe.autoscaler_patch(first, again, True, "ValidMetrics", "ok", 1, "t1") is None
