"""Capture real llama.cpp /metrics expositions into tests/data/metrics/ (fixtures for the metrics/autoscaling code).

    .venv/bin/python -m tests.engine.capture_llamacpp_metrics

Starts the tiny Gemma 4 on llama.cpp's server (xllamacpp) with 2 slots and ``--metrics``, then writes:

* ``llamacpp-idle.txt``: right after start, nothing served yet (all zero);
* ``llamacpp-real.txt``: after one warm-up request, while 4 concurrent chat requests are in flight
  (2 processing in the 2 slots, 2 deferred in the queue), so counters and gauges are both non-zero.

Values are timing-dependent (throughput gauges, seconds counters); the set of names, types and HELP texts is not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.engine.llama_server import (
    LlamaServer,
    LlamaServerSettings,
    chat_payload,
    metric_types,
    scrape_metrics_under_load,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_GGUF = REPO_ROOT / "tests" / "data" / "tiny-gemma4-f32.gguf"
OUT_DIR = REPO_ROOT / "tests" / "data" / "metrics"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--requests", type=int, default=4, help="concurrent chat requests (1-8)")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between /metrics scrapes")
    args = parser.parse_args(argv)

    settings = LlamaServerSettings(
        model_path=TINY_GGUF, n_ctx=2048, n_parallel=2, metrics=True, alias=("gemma-4-tiny",), threads=2
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with LlamaServer(settings) as srv:
        print(f"server up in {srv.startup_seconds:.2f}s at {srv.base_url}", file=sys.stderr)
        idle = httpx.get(f"{srv.base_url}/metrics", timeout=10).text
        (args.out_dir / "llamacpp-idle.txt").write_text(idle)
        warm = httpx.post(f"{srv.base_url}/v1/chat/completions", json=chat_payload("warm up"), timeout=60)
        warm.raise_for_status()
        capture = scrape_metrics_under_load(
            srv.base_url, requests=args.requests, max_tokens=args.max_tokens, interval=args.interval
        )
        (args.out_dir / "llamacpp-real.txt").write_text(capture.text)
    if set(capture.statuses) != {200}:
        print(f"chat statuses: {capture.statuses}", file=sys.stderr)
        return 1
    types = metric_types(capture.text)
    print(f"{capture.scrapes} scrapes while {args.requests} requests were in flight; kept:", file=sys.stderr)
    for name, value in capture.samples.items():
        flag = "  <- non-zero" if value else ""
        print(f"  {types.get(name, '?'):8} {name} {value:g}{flag}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
