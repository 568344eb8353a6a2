"""Planner throughput over the whole catalog matrix, printed as a table.

Every variant x accelerator (cpu + every GPU type) x quantization (auto + every format) x
three context/concurrency shapes, planned repeatedly. Successful plans and PlanErrors are
timed separately: a PlanError also searches for the nearest feasible alternatives, which
re-runs the planner, so its cost is a ratio worth watching. Run: make bench.
"""

from __future__ import annotations

import itertools
import statistics
import time

from pydantic import ValidationError

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.planner.plan import ClusterFacts, PlanError
from gemma4_operator.planner.select import plan

SHAPES = ({"maxModelLen": 8192, "concurrency": 4}, {"maxModelLen": 32768, "concurrency": 8},
          {"maxModelLen": 131072, "concurrency": 2})
ROUNDS = 5


def matrix() -> list[Gemma4DeploymentSpec]:
    catalog = load_catalog()
    specs = []
    for variant, accel, quant, shape in itertools.product(
            catalog.variants, ["auto", "cpu", *catalog.gpu_types], ["auto", *catalog.formats], SHAPES):
        try:
            specs.append(Gemma4DeploymentSpec.model_validate(
                {"model": {"variant": variant}, "accelerator": {"type": accel}, "quantization": quant,
                 "serving": shape}))
        except ValidationError:
            continue  # refused by the schema: never reaches the planner
    return specs


def main() -> None:
    facts = ClusterFacts.every_catalog_type()
    specs = matrix()
    ok_times: list[float] = []
    err_times: list[float] = []
    round_rates = []
    for _ in range(ROUNDS):
        start_round = time.perf_counter()
        for s in specs:
            t0 = time.perf_counter()
            try:
                plan(s, facts)
                ok_times.append(time.perf_counter() - t0)
            except PlanError:
                err_times.append(time.perf_counter() - t0)
        round_rates.append(len(specs) / (time.perf_counter() - start_round))
    rows = [
        ("specs in the matrix", f"{len(specs)}"),
        ("plans per round (fit / PlanError)", f"{len(ok_times) // ROUNDS} / {len(err_times) // ROUNDS}"),
        ("throughput, whole matrix (plans/s)", f"{statistics.median(round_rates):,.0f}  (median of {ROUNDS} rounds)"),
        ("fit: median per plan (ms)", f"{statistics.median(ok_times) * 1e3:.3f}"),
        ("PlanError: median per plan (ms)", f"{statistics.median(err_times) * 1e3:.3f}"),
        ("PlanError / fit cost ratio", f"{statistics.median(err_times) / statistics.median(ok_times):.1f}x"),
    ]
    width = max(len(k) for k, _ in rows)
    print("planner benchmark")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


if __name__ == "__main__":
    main()
