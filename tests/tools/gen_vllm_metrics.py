"""Regenerate tests/data/metrics/vllm-0.32.0.txt and vllm-0.32.0-names.txt from the installed vLLM 0.32.0.

Run with the vLLM venv's interpreter (see vllm_venv.sh), from anywhere:

    VLLM_TARGET_DEVICE=cpu "$(tests/tools/vllm_venv.sh | tail -n1)" tests/tools/gen_vllm_metrics.py

The exposition is what vLLM's own code serves, not a hand-written imitation:

* vLLM's ``PrometheusStatLogger`` (vllm/v1/metrics/loggers.py) is instantiated; it defines every ``vllm:*`` metric
  that a default single-API-server ``vllm serve`` registers (PrometheusStatLogger, SpecDecodingProm,
  KVConnectorProm, ECConnectorProm, PerfMetricsProm), with labels ``model_name`` and ``engine``.
* It is then fed real ``SchedulerStats`` / ``IterationStats`` / ``FinishedRequestStats`` objects through its
  ``record()`` method (num_requests_running=3, num_requests_waiting=7, kv_cache_usage_perc=0.42, ...).
* ``/metrics`` is served by vLLM's own ``attach_router`` (prometheus-fastapi-instrumentator plus
  prometheus_client's ASGI app on the default registry) on a FastAPI app that is driven in-process over ASGI, with
  a few requests to a stub ``/v1/chat/completions`` route so that the ``http_*`` metrics have samples. The body of
  ``GET /metrics`` is written verbatim (it includes prometheus_client's default ``python_*`` / ``process_*``
  collectors, whose values differ on every run).

The only stand-in is the config: a real ``VllmConfig`` needs the model's HF config and importing its model class
(network / CUDA-only dependencies), so ``vllm_config`` is an object with vLLM's real ``ObservabilityConfig``,
``CacheConfig``, ``ParallelConfig`` and ``LoRAConfig`` (two adapter slots, so the LoRA gauge is registered too) and
a small stand-in ``model_config`` (served_model_name, max_model_len).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "tests" / "data" / "metrics"


def _vllm_config(served_model_name: str, max_model_len: int, num_gpu_blocks: int) -> Any:
    from vllm.config import CacheConfig, ObservabilityConfig, ParallelConfig
    from vllm.config.lora import LoRAConfig

    cache = CacheConfig(block_size=16, gpu_memory_utilization=0.9, cache_dtype="auto")
    cache.num_gpu_blocks = num_gpu_blocks  # set by the engine after KV-cache profiling
    cache.num_cpu_blocks = 0
    model = SimpleNamespace(
        served_model_name=served_model_name,
        max_model_len=max_model_len,
        is_diffusion=False,
        dtype="bfloat16",
    )
    return SimpleNamespace(
        model_config=model,
        cache_config=cache,
        observability_config=ObservabilityConfig(),
        parallel_config=ParallelConfig(),
        speculative_config=None,
        kv_transfer_config=None,
        ec_transfer_config=None,
        watermark_config=None,
        lora_config=LoRAConfig(max_loras=2),  # --enable-lora: vllm:lora_requests_info is registered
    )


def _record(logger: Any) -> None:
    """Feeds the logger what an engine reports after a few requests (as EngineCore -> OutputProcessor would)."""
    from vllm.v1.engine import FinishReason
    from vllm.v1.metrics.stats import FinishedRequestStats, IterationStats, PrefixCacheStats, SchedulerStats

    # 10 finished requests: (prompt tokens, cached, generated, queue s, prefill s, decode s, finish reason)
    finished = [
        (812, 512, 256, 0.012, 0.085, 4.10, FinishReason.STOP),
        (1530, 1024, 128, 0.020, 0.140, 2.05, FinishReason.STOP),
        (95, 0, 512, 0.004, 0.031, 8.30, FinishReason.LENGTH),
        (2048, 1536, 64, 0.350, 0.210, 1.02, FinishReason.STOP),
        (400, 256, 300, 0.090, 0.060, 4.90, FinishReason.STOP),
        (6100, 4096, 220, 1.200, 0.520, 3.70, FinishReason.STOP),
        (230, 0, 40, 0.002, 0.028, 0.61, FinishReason.ABORT),
        (980, 768, 175, 0.045, 0.090, 2.80, FinishReason.STOP),
        (15000, 8192, 900, 2.400, 1.900, 15.2, FinishReason.LENGTH),
        (512, 512, 96, 0.008, 0.020, 1.50, FinishReason.STOP),
    ]
    iteration = IterationStats()
    for i, (prompt, cached, gen, queued, prefill, decode, reason) in enumerate(finished):
        iteration.prompt_token_stats.computed += prompt - cached
        iteration.prompt_token_stats.local_cache_hit += cached
        iteration.prompt_token_stats.cached_tokens += cached
        iteration.prompt_token_stats.total += prompt
        iteration.num_generation_tokens += gen
        iteration.time_to_first_tokens_iter.append(queued + prefill)
        iteration.inter_token_latencies_iter.extend([decode / max(gen - 1, 1)] * 3)
        iteration.n_params_iter.append(1)
        iteration.max_num_generation_tokens_iter.append(gen)
        iteration.finished_requests.append(
            FinishedRequestStats(
                finish_reason=reason,
                request_id=f"chatcmpl-{i:04d}",
                e2e_latency=queued + prefill + decode,
                num_prompt_tokens=prompt,
                num_preemptions=1 if i == 8 else 0,
                num_generation_tokens=gen,
                max_tokens_param=1024 if reason == FinishReason.LENGTH else None,
                queued_time=queued,
                prefill_time=prefill,
                inference_time=prefill + decode,
                decode_time=decode,
                mean_time_per_output_token=decode / max(gen - 1, 1),
                num_cached_tokens=cached,
            )
        )
    iteration.num_preempted_reqs = 1
    prefix = PrefixCacheStats(requests=10, queries=sum(p for p, *_ in finished), hits=sum(c for _, c, *_ in finished))
    sched = SchedulerStats(
        num_running_reqs=3,
        num_waiting_reqs=7,
        kv_cache_usage=0.42,
        prefix_cache_stats=prefix,
        running_lora_adapters={"support": 2, "legal": 1},
        waiting_lora_adapters={"billing": 1},
    )
    logger.record(scheduler_stats=sched, iteration_stats=iteration, engine_idx=0)


async def _asgi(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status = 0
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def _serve_metrics() -> bytes:
    from fastapi import FastAPI
    from vllm.entrypoints.serve.instrumentator.metrics import attach_router

    async def chat() -> dict[str, Any]:
        return {"object": "chat.completion", "choices": []}

    async def models() -> dict[str, Any]:
        return {"object": "list", "data": []}

    app = FastAPI()
    app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    attach_router(app)
    req = json.dumps({"model": "x", "messages": [{"role": "user", "content": "hi"}]}).encode()
    for _ in range(4):
        assert (await _asgi(app, "POST", "/v1/chat/completions", req))[0] == 200
    assert (await _asgi(app, "GET", "/v1/models"))[0] == 200
    assert (await _asgi(app, "GET", "/health"))[0] == 404  # excluded from http_* metrics anyway
    status, body = await _asgi(app, "GET", "/metrics")
    assert status == 200, status
    return body


_METRIC_NAME = re.compile(r"^vllm:[a-z][a-z0-9_]*$")
_KINDS = ("histogram", "counter", "gauge", "summary", "info")


def _kind(func: ast.expr) -> str | None:
    src = ast.unparse(func).lower()
    return next((k for k in _KINDS if k in src), None)


def metric_definitions(vllm_root: Path) -> list[tuple[str, str, str]]:
    """(name, type, file) for every literal ``vllm:<name>`` string in vLLM's source (benchmarks/ excluded).

    The type comes from the Gauge/Counter/Histogram call (or ``Offloading*Metadata``/``counter_specs`` table) that
    the literal, or the constant holding it, is passed to; ``unknown`` when no such use was found.
    """
    trees: dict[str, ast.Module] = {}
    for path in sorted(vllm_root.rglob("*.py")):
        relpath = path.relative_to(vllm_root.parent)
        if relpath.parts[1] == "benchmarks":  # only reads metrics (e.g. startswith("vllm:spec_decode"))
            continue
        try:
            trees[str(relpath)] = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue

    found: dict[str, list[str]] = {}  # name -> [kind, file]
    consts: dict[str, str] = {}  # constant identifier (NAME or Class.ATTR's ATTR) -> metric name
    for rel, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _METRIC_NAME.match(node.value):
                found.setdefault(node.value, ["unknown", rel])
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            value = getattr(node, "value", None)
            if (
                targets
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and _METRIC_NAME.match(value.value)
            ):
                for t in targets:
                    ident = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else None
                    if ident and ident.isupper():  # module/class constants only, not e.g. a local `name`
                        consts[ident] = value.value

    def resolve(expr: ast.expr | None) -> str | None:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str) and _METRIC_NAME.match(expr.value):
            return expr.value
        if isinstance(expr, ast.Name):
            return consts.get(expr.id)
        if isinstance(expr, ast.Attribute):
            return consts.get(expr.attr)
        return None

    def typed(name: str | None, kind: str | None, rel: str) -> None:
        if name and kind and name in found and found[name][0] == "unknown":
            found[name] = [kind, rel]  # the file that defines it, rather than the first that mentions it

    for rel, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (kind := _kind(node.func)):
                for cand in [kw.value for kw in node.keywords if kw.arg == "name"] + node.args[:1]:
                    typed(resolve(cand), kind, rel)
            elif isinstance(node, ast.Dict):
                for key, val in zip(node.keys, node.values, strict=True):
                    if isinstance(val, ast.Call):
                        typed(resolve(key), _kind(val.func), rel)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.List | ast.Tuple):
                kind = next((k for t in node.targets if (k := _kind(t))), None)
                for sub in ast.walk(node.value):
                    typed(resolve(sub) if isinstance(sub, ast.Constant) else None, kind, rel)
    return sorted((name, kind, file) for name, (kind, file) in found.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--served-model-name", default="gemma-4-e4b")
    ap.add_argument("--max-model-len", type=int, default=32768)
    ap.add_argument("--num-gpu-blocks", type=int, default=9984)
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    opts = ap.parse_args()

    import vllm
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    version = vllm.__version__
    t0 = time.monotonic()
    logger = PrometheusStatLogger(
        _vllm_config(opts.served_model_name, opts.max_model_len, opts.num_gpu_blocks), engine_indexes=[0]
    )
    logger.log_engine_initialized()
    _record(logger)
    body = asyncio.run(_serve_metrics()).decode()
    elapsed = time.monotonic() - t0

    opts.out_dir.mkdir(parents=True, exist_ok=True)
    exposition = opts.out_dir / f"vllm-{version}.txt"
    header = (
        f"# GET /metrics of vLLM {version} as served by its own code (PrometheusStatLogger + attach_router on\n"
        "# prometheus_client's default registry), generated by tests/tools/gen_vllm_metrics.py; not a live server:\n"
        "# the logger was given a stand-in VllmConfig (real CacheConfig/ObservabilityConfig/ParallelConfig,\n"
        f"# served_model_name={opts.served_model_name}, max_model_len={opts.max_model_len}) and fed recorded stats\n"
        "# (num_requests_running=3, num_requests_waiting=7, kv_cache_usage_perc=0.42, 10 finished requests).\n"
        "# These comment lines are the only addition; everything below is the verbatim response body.\n"
    )
    exposition.write_text(header + body, encoding="utf-8")

    vllm_root = Path(vllm.__file__).resolve().parent
    defs = metric_definitions(vllm_root)
    from prometheus_client import REGISTRY

    # prometheus_client strips a counter's _total from its family name (vllm:estimated_flops_per_gpu_total ->
    # vllm:estimated_flops_per_gpu); the registry's types are authoritative for what is served.
    served = {m.name: m.type for m in REGISTRY.collect() if m.name.startswith("vllm:")}

    def served_as(name: str) -> str | None:
        return served.get(name) or served.get(name.removesuffix("_total"))

    names = opts.out_dir / f"vllm-{version}-names.txt"
    with names.open("w", encoding="utf-8") as f:
        f.write(
            f"# Every vllm:* metric name in vLLM {version}'s source (each literal 'vllm:<name>' string outside\n"
            "# benchmarks/), generated by tests/tools/gen_vllm_metrics.py. Columns: name, type, default, file.\n"
            "# type: from the registry for served metrics, else from the Gauge/Counter/Histogram (or\n"
            "# Offloading*Metadata) call the name is passed to; unknown where the scan could not tell.\n"
            "# Not listed: 4 KVCR metrics named f'vllm:{CONST}' with constants from the external kvcr package.\n"
            "# default=yes: registered by a default single-API-server `vllm serve` (present in\n"
            f"# vllm-{version}.txt); default=no: only with a feature (speculative decoding, KV connectors, LoRA,\n"
            "# --kv-cache-metrics, VLLM_COMPUTE_NANS_IN_LOGITS, watermarking, sleep mode, RL, ...).\n"
            "# Exposition suffixes (prometheus_client): counters add _total and _created, histograms _bucket,\n"
            "# _sum, _count and _created.\n"
        )
        gone = "vllm:gpu_cache_usage_perc"
        f.write(
            f"# {gone}: {'DEFINED' if any(n == gone for n, *_ in defs) else 'not defined'} in {version}"
            " (replaced by vllm:kv_cache_usage_perc).\n"
        )
        for name, kind, file in defs:
            kind = served_as(name) or kind
            f.write(f"{name} {kind} {'yes' if served_as(name) else 'no'} {file}\n")
    listed = {n for n, *_ in defs} | {n.removesuffix("_total") for n, *_ in defs}
    missing = sorted(set(served) - listed)
    print(
        f"wrote {exposition} ({len(body.splitlines())} lines, {len(served)} vllm:* families) and {names} "
        f"({len(defs)} names) in {elapsed:.2f}s",
        file=sys.stderr,
    )
    if missing:
        print(f"warning: served but not found by the source scan: {missing}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
