"""Autoscaling trace benchmark: GPU-hours and queueing SLO of each policy on each trace.

    .venv/bin/python -m tests.benchmarks.autoscaling.run [--trace-csv FILE [--stretch K]] [--json OUT]

Without ``--trace-csv``: the shared Azure LLM conversation trace (``../shared/data/traces/`` from the
repository root; Patel et al., "Splitwise: Efficient generative LLM inference using phase splitting",
ISCA 2024; CC-BY 4.0) as recorded and stretched x24, plus the synthetic and generated traces
(``traces.TRACE_NAMES``). With it: that Azure-format CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``),
inter-arrival times x K.

Goal (DESIGN.md section 5): the operator's default policy (``default``: the engine's
``default_signals(plan)``, no autoscalingMetricSpecs) uses <= 1.25 x the GPU-hours of the oracle while
>= 99 % of requests start within SLO_QUEUE_S, on every trace, with the same settings everywhere.
The oracle (not deployable) knows the per-minute arrival rate one cold start ahead and provisions
exactly ceil(rate / (capacity x target utilisation)) replicas for the highest rate coming.

The replica comes from a plan (``planner.select.plan``, Gemma 4 E4B on one L4, vLLM): slots =
the plan's max concurrency; a replica's start is the plan's estimate (``Plan.start``): ``first``
without caches (each pod downloads at the catalog's load_bandwidth_mib_s and compiles), ``warm``
with storage.modelCache (weights read from the disk, vLLM's compile cache shared on the PVC).
Service time per request = prompt / 2000 + output / 25 tok/s (per sequence, at full batch).
Scale-to-zero rows run the operator's idle gate (``autoscaling.idle``) with SCALE_TO_ZERO (the
CRD's defaults); ``woke`` counts the requests that arrived while no replica was ready.

Sizing, from the trace and the replica model (no look at the simulated outcome):
- capacity of a replica = slots / mean service time (requests/s);
- static peak = ceil(peak per-minute rate / capacity / 0.9);
- autoscaled runs start warm with what the oracle holds at t=0 (the first cold start's peak rate at the target
  utilisation: a known initial state, the same for every policy; at least one replica unless the policy may
  run none) and may use up to 1.5 x static peak.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim import Controller, KedaThreshold, Operator, Oracle, ReplicaModel, Result, SimConfig, Static, simulate
from traces import TRACE_NAMES, Trace, load_csv, make_trace

from gemma4_operator.api import Gemma4DeploymentSpec, ScaleToZeroSpec
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.decision import MetricTarget, Policy
from gemma4_operator.autoscaling.idle import ScaleToZero
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.planner.plan import ClusterFacts, Plan
from gemma4_operator.planner.select import plan as make_plan

REPO = Path(__file__).resolve().parents[3]
SHARED_TRACE = REPO.parent / "shared" / "data" / "traces" / "azure-llm-2023-conv.csv"
TARGET_X_ORACLE, TARGET_SLO = 1.25, 0.99
ORACLE_UTILIZATION = 0.8  # the share of a replica's slots the oracle provisions for
SCALE_DOWN_DELAY_S = 300.0  # the CRD's default scaleDownDelaySeconds
KEDA_COOLDOWN_S = 300.0
SPEC = {"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"}, "autoscaling": {"maxReplicaCount": 64}}
CACHE = {"modelCache": {"accessModes": ["ReadWriteMany"]}}
_DEFAULTS = ScaleToZeroSpec()
SCALE_TO_ZERO = (_DEFAULTS.idle_scaledown_seconds, _DEFAULTS.min_scaleup_seconds)  # the CRD's defaults


def bench_plan(cached: bool) -> Plan:
    spec = {**SPEC, "storage": CACHE} if cached else SPEC
    return make_plan(Gemma4DeploymentSpec.model_validate(spec), ClusterFacts.every_catalog_type())


def config_for(plan: Plan, warm: bool) -> SimConfig:
    start = plan.start.warm_s if warm else plan.start.first_s
    slots = engine_named(plan.engine).slots(plan)
    return SimConfig(replica=ReplicaModel(slots=slots, cold_start_s=start, gpus=plan.gpus_per_replica))


PLAN, CACHED_PLAN = bench_plan(cached=False), bench_plan(cached=True)
CONFIG = config_for(PLAN, warm=False)  # no caches: every start downloads and compiles
WARM_CONFIG = config_for(CACHED_PLAN, warm=True)
SLOTS = engine_named(PLAN.engine).slots(PLAN)
SLO_QUEUE_S = CONFIG.slo_queue_s


@dataclass(frozen=True)
class Sizing:
    mean_service_s: float
    capacity: float  # requests/s one replica serves with all slots busy
    static_peak: int
    start: int
    max_replicas: int
    rate_per_min: tuple[float, ...]


TraceKey = tuple[str, float]  # (synthetic name or CSV path, stretch)


def get_trace(key: TraceKey) -> Trace:
    source, stretch = key
    return make_trace(source) if source in TRACE_NAMES else load_csv(source, stretch)


def services(trace: Trace, config: SimConfig = CONFIG) -> list[float]:
    model = config.replica
    return [model.service_s(p, o) for p, o in zip(trace.prompt_tokens, trace.output_tokens, strict=True)]


def sizing(trace: Trace, config: SimConfig = CONFIG) -> Sizing:
    s = services(trace, config)
    mean_service = sum(s) / len(s)
    capacity = config.replica.slots / mean_service
    peak = math.ceil(trace.peak_rate / capacity / 0.9)
    return Sizing(
        mean_service_s=mean_service,
        capacity=capacity,
        static_peak=peak,
        start=_oracle(ORACLE, capacity, trace.rate_per_min, config)(0.0, 0, (), 0),
        max_replicas=max(2, math.ceil(1.5 * peak)),
        rate_per_min=trace.rate_per_min,
    )


def _operator(name: str, size: Sizing, *targets: tuple[Signal, float]) -> Operator:
    policy = Policy(
        min_replicas=1,
        max_replicas=size.max_replicas,
        targets=tuple(MetricTarget(signal, target) for signal, target in targets),
        scale_down_delay_s=SCALE_DOWN_DELAY_S,
        slots=SLOTS,  # as the operator's policy() sets it
    )
    return Operator(name, policy)


def _default(name: str, size: Sizing, zero: bool = False) -> Operator:
    """What the operator runs with no autoscalingMetricSpecs: the engine's default signals for the plan, the
    plan's slots (starting pods absorb a queue); with ``zero``, minReplicaCount 0 and the default scaleToZeroSpec."""
    targets = tuple(MetricTarget(s, t) for s, t in engine_named(PLAN.engine).default_signals(PLAN))
    policy = Policy(1, size.max_replicas, targets, SCALE_DOWN_DELAY_S, slots=SLOTS)
    idle_s, min_up_s = SCALE_TO_ZERO
    return Operator(name, policy, ScaleToZero(idle_s, min_up_s, SLOTS) if zero else None)


def _oracle(name: str, capacity: float, rate_per_min: tuple[float, ...], config: SimConfig) -> Oracle:
    lead = config.replica.cold_start_s + config.tick_s
    return Oracle(name, rate_per_min, capacity, ORACLE_UTILIZATION, lead)


Q, KV, DUTY, B = Signal.QUEUE_LENGTH, Signal.KV_CACHE_USAGE, Signal.DUTY_CYCLE, Signal.BATCH_SIZE
Factory = Callable[[Sizing, SimConfig], Controller]
ORACLE, STATIC_PEAK, DEFAULT = "oracle", "static peak", "default"
DEFAULT_WARM, DEFAULT_ZERO = "default (warm)", "default+zero (warm)"
OLD_DEFAULT = "queue 2 + kv 80% (old default)"
POLICIES: tuple[tuple[str, Factory], ...] = (
    (STATIC_PEAK, lambda z, _c: Static(STATIC_PEAK, z.static_peak)),
    (ORACLE, lambda z, c: _oracle(ORACLE, z.capacity, z.rate_per_min, c)),
    (DEFAULT, lambda z, _c: _default(DEFAULT, z)),
    (DEFAULT_WARM, lambda z, _c: _default(DEFAULT_WARM, z)),
    (DEFAULT_ZERO, lambda z, _c: _default(DEFAULT_ZERO, z, zero=True)),
    (OLD_DEFAULT, lambda z, _c: _operator(OLD_DEFAULT, z, (Q, 2), (KV, 80))),
    ("queue 5", lambda z, _c: _operator("queue 5", z, (Q, 5))),
    ("kv 80%", lambda z, _c: _operator("kv 80%", z, (KV, 80))),
    ("kv 50%", lambda z, _c: _operator("kv 50%", z, (KV, 50))),
    ("duty 60%", lambda z, _c: _operator("duty 60%", z, (DUTY, 60))),
    ("keda waiting/5", lambda z, _c: KedaThreshold("keda waiting/5", 5, 1, z.max_replicas, KEDA_COOLDOWN_S)),
)
WARM = {DEFAULT_WARM, DEFAULT_ZERO}
FROM_ZERO = {ORACLE, DEFAULT_ZERO}  # may run no replica at all; the others keep at least one


def run_one(job: tuple[TraceKey, int]) -> tuple[TraceKey, Result, Sizing, float]:
    key, index = job
    trace = get_trace(key)
    label, factory = POLICIES[index]
    config = WARM_CONFIG if label in WARM else CONFIG
    size = sizing(trace, config)
    start = size.static_peak if label == STATIC_PEAK else size.start if label in FROM_ZERO else max(1, size.start)
    began = time.process_time()
    result = simulate(trace.arrivals, services(trace, config), trace.duration_s, factory(size, config), start,
                      config, trace.name)
    return key, result, size, time.process_time() - began


def trace_keys(args: argparse.Namespace) -> list[TraceKey]:
    if args.trace_csv:
        return [(str(args.trace_csv), args.stretch)]
    keys: list[TraceKey] = []
    if SHARED_TRACE.is_file():
        keys += [(str(SHARED_TRACE), 1.0), (str(SHARED_TRACE), 24.0)]
    else:
        print(f"note: {SHARED_TRACE} is absent: the real-traffic traces are skipped, synthetic ones only\n")
    return keys + [(n, 1.0) for n in args.traces.split(",") if n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--traces", default=",".join(TRACE_NAMES), help="synthetic traces (comma-separated)")
    parser.add_argument("--trace-csv", type=Path, help="an Azure-format CSV to replay instead of the default set")
    parser.add_argument("--stretch", type=float, default=1.0, help="multiply inter-arrival times by K")
    parser.add_argument("--policies", default="", help="only these policy labels (comma-separated)")
    parser.add_argument("--json", type=Path, help="write one row per (trace, policy) here")
    args = parser.parse_args(argv)
    if args.trace_csv and not args.trace_csv.is_file():
        parser.error(f"--trace-csv {args.trace_csv}: no such file")
    keys = trace_keys(args)
    wanted = {p for p in args.policies.split(",") if p} | {ORACLE, STATIC_PEAK}
    indices = [i for i, (label, _) in enumerate(POLICIES) if not args.policies or label in wanted]
    began = time.perf_counter()
    for key in keys:  # loaded once here; forked workers inherit the caches
        get_trace(key)
    jobs = [(k, i) for k in sorted(keys, key=lambda k: -len(get_trace(k).arrivals)) for i in indices]
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            results = pool.map(run_one, jobs, chunksize=1)
    else:
        results = [run_one(job) for job in jobs]
    rows = report_rows(keys, [POLICIES[i][0] for i in indices], results)
    print_report(keys, rows, results)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\nwall time {time.perf_counter() - began:.1f} s with {args.jobs} process(es); "
          f"CPU time in simulate() summed over runs {sum(r[3] for r in results):.1f} s")
    return 0


def report_rows(keys: list[TraceKey], labels: list[str],
                results: list[tuple[TraceKey, Result, Sizing, float]]) -> list[dict[str, object]]:
    by_key = {(k, r.policy): r for k, r, _, _ in results}
    rows: list[dict[str, object]] = []
    for key in keys:
        oracle, peak = by_key[(key, ORACLE)], by_key[(key, STATIC_PEAK)]
        for label in labels:
            r = by_key[(key, label)]
            x_oracle = r.gpu_hours / oracle.gpu_hours
            rows.append({
                "trace": get_trace(key).name, "policy": label, "gpu_hours": round(r.gpu_hours, 3),
                "oracle_gpu_hours": round(oracle.gpu_hours, 3), "static_peak_gpu_hours": round(peak.gpu_hours, 3),
                "slo_attainment": round(r.slo_attainment, 5), "x_oracle": round(x_oracle, 3),
                "x_static_peak": round(r.gpu_hours / peak.gpu_hours, 3), "scale_events": r.scale_events,
                "p99_wait_s": round(r.p99_wait_s, 1), "max_replicas": r.max_replicas,
                "start_s": (WARM_CONFIG if label in WARM else CONFIG).replica.cold_start_s,
                "waited_for_wake": r.waited_for_wake,
                "meets_goal": x_oracle <= TARGET_X_ORACLE and r.slo_attainment >= TARGET_SLO
                and r.gpu_hours <= peak.gpu_hours + 1e-9,
            })
    return rows


def print_report(keys: list[TraceKey], rows: list[dict[str, object]],
                 results: list[tuple[TraceKey, Result, Sizing, float]]) -> None:
    model, warm = CONFIG.replica, WARM_CONFIG.replica
    targets = ", ".join(f"{s.value} {t:g}" for s, t in engine_named(PLAN.engine).default_signals(PLAN))
    print(f"plan: Gemma 4 {PLAN.variant} {PLAN.quantization} on {PLAN.gpu_label} ({PLAN.engine}), "
          f"{PLAN.download_bytes / 2**30:.1f} GiB checkpoint; replica: {model.slots} slots; start (Plan.start) "
          f"{model.cold_start_s:.0f} s first (download + compile + engine start), {warm.cold_start_s:.0f} s warm "
          f"(model cache + compile cache); service = prompt/{model.prefill_tps:.0f} + output/{model.decode_tps:.0f} "
          f"tok/s; control every {CONFIG.tick_s:.0f} s, scale-down delay {SCALE_DOWN_DELAY_S:.0f} s")
    print(f"default signals: {targets} (starting pods absorb a queue up to their slots); scale to zero: "
          f"idleScaledownPeriod {SCALE_TO_ZERO[0]} s, minScaleupPeriod {SCALE_TO_ZERO[1]} s")
    print(f"SLO: queueing delay <= {SLO_QUEUE_S:.0f} s; goal: default <= {TARGET_X_ORACLE} x oracle GPU-hours at "
          f">= {TARGET_SLO:.0%} SLO; oracle = rate one cold start ahead at {ORACLE_UTILIZATION:.0%} of slots\n")
    sizes = {k: z for k, r, z, _ in results if r.policy == STATIC_PEAK}
    for key in keys:
        trace, size = get_trace(key), sizes[key]
        print(f"{trace.name}: {trace.description}; {len(trace.arrivals)} requests, peak {trace.peak_rate:.2f}/s, "
              f"mean {trace.mean_rate:.2f}/s, service {size.mean_service_s:.1f} s, static peak {size.static_peak}, "
              f"autoscaled start {size.start}, 1..{size.max_replicas}")
    header = ("trace", "policy", "start s", "GPU-h", "x oracle", "x peak", "SLO %", "p99 wait s", "woke",
              "max rep", "changes", "verdict")
    table = [(str(r["trace"]), str(r["policy"]), str(r["start_s"]), f"{r['gpu_hours']:.2f}", f"{r['x_oracle']:.2f}",
              f"{r['x_static_peak']:.2f}", f"{100 * float(str(r['slo_attainment'])):.2f}", f"{r['p99_wait_s']:.1f}",
              str(r["waited_for_wake"]), str(r["max_replicas"]), str(r["scale_events"]),
              "PASS" if r["meets_goal"] else "SHORT") for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs)

    print("\n" + line(header))
    print("  ".join("-" * w for w in widths))
    for i, row in enumerate(table):
        if i and row[0] != table[i - 1][0]:
            print()
        print(line(row))
    print()
    for label in (DEFAULT, DEFAULT_WARM, DEFAULT_ZERO):
        mine = [r for r in rows if r["policy"] == label]
        if mine:
            print(f"{label}: meets the goal (<= {TARGET_X_ORACLE} x oracle, >= {TARGET_SLO:.0%} SLO, <= static peak) "
                  f"on {sum(bool(r['meets_goal']) for r in mine)}/{len(mine)} traces")


if __name__ == "__main__":
    sys.exit(main())
