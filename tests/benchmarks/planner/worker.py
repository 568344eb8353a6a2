"""One measurement of the planner over the catalog matrix, printed as JSON on stdout.

Run by ``run.py`` in a subprocess, with ``PYTHONPATH`` pointing at the package to measure, so two
commits (whose module paths may differ) are timed side by side in one benchmark run.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

SHAPES = ({"maxModelLen": 8192, "concurrency": 4}, {"maxModelLen": 32768, "concurrency": 8},
          {"maxModelLen": 131072, "concurrency": 2})


def _planner() -> tuple[Callable[..., Any], type[Exception], Any]:
    """The planner of whichever layout is on the path (the flat one before the package split)."""
    try:
        from gemma4_operator.planner.plan import ClusterFacts, PlanError
        from gemma4_operator.planner.select import plan
    except ImportError:
        from gemma4_operator.sizing import ClusterFacts, PlanError, plan  # type: ignore[no-redef]
    return plan, PlanError, ClusterFacts.every_catalog_type()


def matrix() -> list[Any]:
    from gemma4_operator.api import Gemma4DeploymentSpec
    from gemma4_operator.catalog import load_catalog

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


def measure(rounds: int) -> dict[str, Any]:
    plan, plan_error, facts = _planner()
    specs = matrix()
    ok_times: list[float] = []
    err_times: list[float] = []
    rates: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        for s in specs:
            t0 = time.perf_counter()
            try:
                plan(s, facts)
                ok_times.append(time.perf_counter() - t0)
            except plan_error:
                err_times.append(time.perf_counter() - t0)
        rates.append(len(specs) / (time.perf_counter() - start))
    return {"specs": len(specs), "ok": ok_times, "err": err_times, "rates": rates}


if __name__ == "__main__":
    json.dump(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1), sys.stdout)
