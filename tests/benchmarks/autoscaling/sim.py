"""Discrete-event simulator of vLLM replicas behind one global FIFO queue (benchmark only).

Model (deliberately simple; every number is a parameter of :class:`ReplicaModel`):

- A replica serves at most ``slots`` requests at once (vLLM ``max_num_seqs``, the plan's
  maxConcurrency). A request's service time is fixed by its tokens:
  ``prompt / prefill_tps + output / decode_tps`` (per-sequence speeds at full batch), so a
  replica is never faster when lightly loaded: pessimistic for light load, fine for sizing.
- A new replica costs GPU time from creation and serves only after ``cold_start_s``
  (scheduling, image pull, weight load, engine start).
- Requests wait in one global FIFO queue and start on the ready replica with the fewest running
  requests (a perfect load balancer). Queueing delay = start - arrival.
- Every ``tick_s`` each ready replica is scraped and the controller is asked for a replica
  count. Metrics, as the engine would expose them: ``vllm:num_requests_waiting`` = the global
  queue split evenly over ready replicas; ``vllm:kv_cache_usage_perc`` ≈ running / slots
  (0..1); duty cycle = percent of the last interval with at least one request running (NVML's
  definition: "one or more kernels executing"), so it saturates long before the slots do.
- Scaling down removes not-yet-ready replicas first (newest first), then the ready ones with the
  fewest running requests; those drain (finish running requests, take no new ones) and cost
  GPU time until empty.
- Scale to zero: with no ready replica, arriving requests wait in the queue as the activator would
  hold them; the controller is told how many are held (``held``) and each one counts as having
  waited for a wake. ``vllm:request_success_total`` is modelled too, as each replica's completions
  since the last scrape (the controller sees the per-minute rate), so the idle gate sees requests
  that came and went between two scrapes.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.decision import Policy, Recommendation, Sample
from gemma4_operator.autoscaling.idle import ACTIVITY_SIGNALS, ScaleToZero, Timers
from gemma4_operator.autoscaling.policy import ZeroInput, tick


@dataclass(frozen=True)
class ReplicaModel:
    slots: int = 16  # maxConcurrency from the plan
    prefill_tps: float = 2000.0  # prompt tokens/s per sequence
    decode_tps: float = 25.0  # output tokens/s per sequence at full batch
    cold_start_s: float = 240.0
    gpus: int = 1

    def service_s(self, prompt_tokens: int, output_tokens: int) -> float:
        return prompt_tokens / self.prefill_tps + output_tokens / self.decode_tps


@dataclass(frozen=True)
class SimConfig:
    replica: ReplicaModel = ReplicaModel()
    tick_s: float = 15.0
    slo_queue_s: float = 30.0


class Controller(Protocol):
    """Returns the replica count wanted now, given per-pod samples of ``signals``."""

    name: str
    signals: tuple[Signal, ...]

    def __call__(self, now: float, current: int, samples: Sequence[Sample], held: int, /) -> int: ...


@dataclass(frozen=True)
class Result:
    trace: str
    policy: str
    arrived: int
    started: int
    completed: int
    in_service_at_end: int
    queued_at_end: int
    within_slo: int  # started with queueing delay <= slo_queue_s
    gpu_hours: float
    max_replicas: int
    scale_events: int
    p99_wait_s: float
    waited_for_wake: int = 0  # arrived while no replica was ready (held by the activator)

    @property
    def slo_attainment(self) -> float:
        """Share of arrived requests that started within the bound (still queued = missed)."""
        return self.within_slo / self.arrived if self.arrived else 1.0


class _Replica:
    __slots__ = (
        "busy_mark",
        "busy_since",
        "busy_total",
        "completed",
        "completed_mark",
        "created",
        "draining",
        "mark_at",
        "ready_at",
        "removed",
        "rid",
        "running",
    )

    def __init__(self, rid: int, created: float, ready_at: float) -> None:
        self.rid, self.created, self.ready_at = rid, created, ready_at
        self.running = self.completed = self.completed_mark = 0
        self.draining = self.removed = False
        self.busy_since = self.busy_total = self.busy_mark = 0.0
        self.mark_at = ready_at

    def busy_until(self, t: float) -> float:
        return self.busy_total + (t - self.busy_since if self.running else 0.0)


def simulate(
    arrivals: Sequence[float],
    services: Sequence[float],
    duration_s: float,
    controller: Controller,
    initial_replicas: int,
    config: SimConfig = SimConfig(),
    trace_name: str = "",
) -> Result:
    """Run one controller over one trace; ``initial_replicas`` start warm (ready at t=0)."""
    slots, cold, slo = config.replica.slots, config.replica.cold_start_s, config.slo_queue_s
    inf = math.inf
    next_rid = 0
    alive: list[_Replica] = []  # created, not removed (starting, serving or draining)
    serving: list[_Replica] = []  # ready and not draining: where requests may start
    starting: list[_Replica] = []  # not ready yet
    readies: list[tuple[float, int, _Replica]] = []  # heap by ready time
    done: list[tuple[float, int, _Replica]] = []  # heap of completions
    queue: deque[tuple[float, float]] = deque()  # (arrival, service)
    gpu_seconds = 0.0
    started = completed = within = seq = scale_events = woke = 0
    waits: list[float] = []  # non-zero queueing delays (most requests start on arrival)
    max_seen = 0

    def add_replica(now: float, ready_at: float) -> _Replica:
        nonlocal next_rid
        rep = _Replica(next_rid, now, ready_at)
        next_rid += 1
        alive.append(rep)
        return rep

    def remove(rep: _Replica, now: float) -> None:
        nonlocal gpu_seconds
        rep.removed = True
        alive.remove(rep)
        gpu_seconds += now - rep.created

    def start(rep: _Replica, arrival: float, service: float, now: float) -> None:
        nonlocal started, within, seq
        if rep.running == 0:
            rep.busy_since = now
        rep.running += 1
        started += 1
        wait = now - arrival
        if wait <= slo:
            within += 1
        if wait > 0:
            waits.append(wait)
        seq += 1
        heapq.heappush(done, (now + service, seq, rep))

    for _ in range(initial_replicas):
        rep = add_replica(0.0, 0.0)
        serving.append(rep)

    n = len(arrivals)
    i = 0
    next_tick = config.tick_s
    while True:
        t_arr = arrivals[i] if i < n else inf
        t_done = done[0][0] if done else inf
        t_ready = readies[0][0] if readies else inf
        now = min(t_arr, t_done, t_ready, next_tick)
        if now >= duration_s:
            break
        if t_done == now:  # a request finishes
            _, _, rep = heapq.heappop(done)
            rep.running -= 1
            rep.completed += 1
            completed += 1
            if rep.running == 0:
                rep.busy_total += now - rep.busy_since
            if rep.draining:
                if rep.running == 0:
                    remove(rep, now)
            elif queue:
                arrival, service = queue.popleft()
                start(rep, arrival, service, now)
        elif t_ready == now:  # a replica finished its cold start
            _, _, rep = heapq.heappop(readies)
            if not rep.removed:
                starting.remove(rep)
                serving.append(rep)
                while queue and rep.running < slots:
                    arrival, service = queue.popleft()
                    start(rep, arrival, service, now)
        elif t_arr == now:  # a request arrives
            service = services[i]
            i += 1
            if not serving:
                woke += 1
            if not queue and serving:
                rep = min(serving, key=lambda r: r.running)
                if rep.running < slots:
                    start(rep, now, service, now)
                    continue
            queue.append((now, service))
        else:  # scrape + control loop
            next_tick += config.tick_s
            samples = _scrape(serving, len(queue), now, config.tick_s, slots, controller.signals)
            current = len(serving) + len(starting)
            desired = max(0, controller(now, current, samples, 0 if serving else len(queue)))
            if desired != current:
                scale_events += 1
            for _ in range(desired - current):
                rep = add_replica(now, now + cold)
                starting.append(rep)
                heapq.heappush(readies, (rep.ready_at, rep.rid, rep))
            for _ in range(current - desired):
                if starting:
                    remove(starting.pop(), now)  # newest not-ready replica first
                    continue
                rep = min(serving, key=lambda r: r.running)
                serving.remove(rep)
                rep.draining = True
                if rep.running == 0:
                    remove(rep, now)
            max_seen = max(max_seen, len(serving) + len(starting))

    for rep in alive:
        gpu_seconds += duration_s - rep.created
    waits.sort()
    rank = math.ceil(0.99 * started) - (started - len(waits))  # 1-based rank among non-zero waits
    p99 = waits[rank - 1] if rank >= 1 else 0.0
    return Result(
        trace=trace_name,
        policy=controller.name,
        arrived=i,
        started=started,
        completed=completed,
        in_service_at_end=len(done),
        queued_at_end=len(queue),
        within_slo=within,
        gpu_hours=gpu_seconds * config.replica.gpus / 3600,
        max_replicas=max(max_seen, initial_replicas),
        scale_events=scale_events,
        p99_wait_s=p99,
        waited_for_wake=woke,
    )


def _scrape(
    serving: Sequence[_Replica], waiting: int, now: float, tick_s: float, slots: int, signals: tuple[Signal, ...]
) -> list[Sample]:
    samples: list[Sample] = []
    if not serving or not signals:
        return samples
    per_replica_queue = waiting / len(serving)
    for rep in serving:
        pod = f"r{rep.rid}"
        for signal in signals:
            if signal is Signal.QUEUE_LENGTH:
                value = per_replica_queue
            elif signal is Signal.KV_CACHE_USAGE:
                value = rep.running / slots
            elif signal is Signal.BATCH_SIZE:
                value = float(rep.running)
            elif signal is Signal.REQUEST_COUNT:
                value = (rep.completed - rep.completed_mark) * 60 / tick_s
                rep.completed_mark = rep.completed
            elif signal is Signal.DUTY_CYCLE:
                busy = rep.busy_until(now)
                span = now - rep.mark_at
                value = 100.0 * (busy - rep.busy_mark) / span if span > 0 else 0.0
                rep.busy_mark, rep.mark_at = busy, now
            else:
                raise ValueError(f"the simulator does not model {signal.value}")
            samples.append(Sample(pod, signal, value, now, True))
    return samples


# ---------------------------------------------------------------- controllers


class Static:
    """A fixed replica count."""

    signals: tuple[Signal, ...] = ()

    def __init__(self, name: str, replicas: int) -> None:
        self.name, self.replicas = name, replicas

    def __call__(self, _now: float, _current: int, _samples: Sequence[Sample], _held: int, /) -> int:
        return self.replicas


class Operator:
    """The operator's own tick (:func:`tick`: ``decide``, then with ``zero`` the idle gate) with a carried
    history and timers, as the built-in backend runs it."""

    def __init__(self, name: str, policy: Policy, zero: ScaleToZero | None = None) -> None:
        self.name, self.policy, self.zero = name, policy, zero
        wanted = {t.signal for t in policy.targets} | (set(ACTIVITY_SIGNALS) if zero is not None else set())
        self.signals = tuple(sorted(wanted))
        self.history: tuple[Recommendation, ...] = ()
        self.timers = Timers()

    def __call__(self, now: float, current: int, samples: Sequence[Sample], held: int) -> int:
        zero = None if self.zero is None else ZeroInput(self.zero, self.timers, held,
                                                         frozenset(s.pod for s in samples))
        result = tick(self.policy, current, samples, self.history, now, {}, (), zero)
        self.history, self.timers = result.history, result.timers or Timers()
        return result.desired


class KedaThreshold:
    """KEDA Prometheus trigger on ``sum(vllm:num_requests_waiting)``: replicas =
    ceil(total waiting / threshold), up at once, down only ``cooldown_s`` after the last change."""

    signals: tuple[Signal, ...] = (Signal.QUEUE_LENGTH,)

    def __init__(
        self, name: str, threshold: float, min_replicas: int, max_replicas: int, cooldown_s: float = 300.0
    ) -> None:
        self.name, self.threshold, self.cooldown_s = name, threshold, cooldown_s
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.last_change = -math.inf

    def __call__(self, now: float, current: int, samples: Sequence[Sample], _held: int) -> int:
        waiting = sum(s.value for s in samples)
        wanted = min(self.max_replicas, max(self.min_replicas, math.ceil(waiting / self.threshold - 1e-9)))
        if wanted > current or (wanted < current and now - self.last_change >= self.cooldown_s):
            self.last_change = now
            return wanted
        return current


class Oracle:
    """Not deployable, a reference: knows the trace's rate function and provisions, ahead by
    ``lead_s`` (cold start + margin), for the highest rate coming at ``utilization`` of the slots;
    zero replicas while no request is coming within the lead."""

    signals: tuple[Signal, ...] = ()

    def __init__(
        self, name: str, rate_per_min: Sequence[float], capacity: float, utilization: float, lead_s: float
    ) -> None:
        self.name, self.rates, self.lead_s = name, rate_per_min, lead_s
        self.per_replica = capacity * utilization

    def __call__(self, now: float, _current: int, _samples: Sequence[Sample], _held: int, /) -> int:
        first, last = int(now // 60), int((now + self.lead_s) // 60) + 1
        coming = max(self.rates[first : last + 1], default=self.rates[-1])
        return math.ceil(coming / self.per_replica - 1e-9)
