"""Typed loader for catalog/measurements.yaml: published start-up logs of Gemma 4 deployments, the data the
planner's memory constants are fitted on (tests/unit/test_calibration.py reproduces every row)."""

from __future__ import annotations

import functools
from typing import Literal

from gemma4_operator.catalog import CatalogModel, _read


class VllmMeasurement(CatalogModel):
    """One vLLM start-up log: its configuration and what vLLM logged (GiB are per GPU)."""

    id: str
    source: str
    vllm_version: str
    variant: str
    instruction_tuned: bool
    weights_format: str
    max_model_len: int
    max_num_batched_tokens: int
    weights_gib: float  # `Model loading took X GiB`
    accelerator: str | None = None  # a catalog type; None where the source does not name the GPU
    tensor_parallel: int = 1
    kv_cache_dtype: Literal["bf16", "fp8"] | None = None
    in_flight_batches: int = 1
    gpu_memory_utilization: float | None = None
    cuda_graphs: bool = True
    multimodal: bool = True
    available_kv_gib: float | None = None  # `Available KV cache memory`
    kv_tokens: int | None = None  # `GPU KV cache size: N tokens`
    kv_tokens_reporting: Literal["per_group_blocks", "concurrency_x_length"] | None = None
    max_concurrency: float | None = None  # `Maximum concurrency for L tokens per request: Cx`
    note: str = ""


class LlamaCppMeasurement(CatalogModel):
    """One llama-server load log: its KV-cache lines."""

    id: str
    source: str
    variant: str
    kv_cache_dtype: Literal["bf16", "fp8"]
    n_ctx: int
    n_seq: int
    ubatch: int
    full_kv_mib: float  # the full-attention cache's size
    full_layers: int
    swa_cells: int  # the sliding-window cache's cells


class Measurements(CatalogModel):
    vllm: tuple[VllmMeasurement, ...]
    llamacpp: tuple[LlamaCppMeasurement, ...]


@functools.cache
def load_measurements() -> Measurements:
    """Parse and validate catalog/measurements.yaml once per process."""
    return Measurements(**_read("measurements.yaml"))
