"""Engine failure texts as they end a serving container's log (the termination message the kubelet keeps
with ``terminationMessagePolicy: FallbackToLogsOnError``), one per error signature.

The vLLM texts are vLLM 0.32.0's own messages with example numbers filled in (tests/tools checks that
each signature's literals occur in the installed vLLM sources); the llama.cpp ones are lines the real
llama-server printed in tests/engine.
"""

from __future__ import annotations

_VLLM_TAIL = ("\n(EngineCore pid=211) ERROR 11-29 23:58:01 [core.py:1093] EngineCore failed to start.\n"
              "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}\n")

KV_CACHE = (
    "(EngineCore pid=211) ERROR 11-29 23:58:01 [core.py:1093]   File \"/usr/local/lib/python3.12/dist-packages/"
    "vllm/v1/core/kv_cache_utils.py\", line 1030, in _check_enough_kv_cache_memory\n"
    "(EngineCore pid=211) ERROR 11-29 23:58:01 [core.py:1093]     raise ValueError(\n"
    "(EngineCore pid=211) ERROR 11-29 23:58:01 [core.py:1093] ValueError: To serve at least one request with the "
    "model's max seq len (131072), (12.5 GiB KV cache is needed, which is larger than the available KV cache memory "
    "(3.71 GiB). Based on the available memory, the estimated maximum model length is 38896. Try increasing "
    "`gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or decreasing `max_model_len` when "
    "initializing the engine. See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details."
    + _VLLM_TAIL)
KV_CACHE_NO_ESTIMATE = KV_CACHE.replace("Based on the available memory, the estimated maximum model length is 38896. ",
                                        "")
NO_KV_MEMORY = ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
                "initializing the engine (this flag also controls CPU memory reservation on the CPU backend, despite "
                "its name). See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details."
                + _VLLM_TAIL)
FREE_MEMORY = ("ValueError: Free memory on device cuda:0 (10.2/22.05 GiB) on startup is less than desired GPU memory "
               "utilization (0.9, 19.84 GiB). Decrease GPU memory utilization or reduce GPU memory used by other "
               "processes." + _VLLM_TAIL)
QUANTIZATION = ("ValueError: The quantization method modelopt_fp4 is not supported for the current GPU. Minimum "
                "capability: 100. Current capability: 89." + _VLLM_TAIL)
CUDA_OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
            "22.05 GiB of which 1.06 GiB is free. Including non-PyTorch memory, this process has 20.98 GiB memory in "
            "use." + _VLLM_TAIL)
GATED = ("huggingface_hub.errors.GatedRepoError: 403 Client Error. (Request ID: Root=1-6749)\n\n"
         "Cannot access gated repo for url https://huggingface.co/google/gemma-4-e4b-it/resolve/main/config.json.\n"
         "Access to model google/gemma-4-e4b-it is restricted and you are not in the authorized list. Visit "
         "https://huggingface.co/google/gemma-4-e4b-it to ask for access.\n")
NOT_FOUND = ("huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error. (Request ID: Root=1-674a)\n\n"
             "Repository Not Found for url: https://huggingface.co/api/models/acme/gemma-4-e4b-nope/revision/main.\n"
             "Please make sure you specified the correct `repo_id` and `repo_type`.\n")
REVISION = ("huggingface_hub.errors.RevisionNotFoundError: 404 Client Error.\n\n"
            "Revision Not Found for url: https://huggingface.co/api/models/acme/gemma/revision/v9.\n")

# As printed by llama-server (xllamacpp) in tests/engine, with the runs' paths.
LLAMACPP_MISSING_FILE = (
    "0.00.014.921 I srv    load_model: loading model '/models/gemma-4-e2b-it-Q4_K_M.gguf'\n"
    "0.00.014.975 E gguf_init_from_file: failed to open GGUF file '/models/gemma-4-e2b-it-Q4_K_M.gguf' "
    "(No such file or directory)\n"
    "0.00.015.073 E llama_model_load: error loading model: llama_model_loader: failed to load model from "
    "/models/gemma-4-e2b-it-Q4_K_M.gguf\n"
    "0.00.015.075 E llama_model_load_from_file_impl: failed to load model\n"
    "0.00.018.810 E srv          init: exiting due to model loading error\n")
LLAMACPP_KV_ALLOC = (
    "0.59.244.693 E ggml_aligned_malloc: insufficient memory (attempted to allocate 36621.09 MB)\n"
    "0.59.244.720 E ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 38400000000\n"
    "0.59.244.721 E ggml_backend_buft_alloc_buffer_n_default: failed to allocate CPU buffer of size 38400000000\n"
    "1.03.437.993 E llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache\n"
    "1.03.438.015 E srv    load_model: failed to create_context with model '/models/gemma-4-e2b-it-Q4_K_M.gguf'\n"
    "1.03.438.551 E srv          init: exiting due to model loading error\n")
LLAMACPP_BAD_MODEL = "0.00.015.073 E llama_model_load: error loading model: unknown model architecture: 'gemma9'\n"

# Adapters vLLM's API server loads from --lora-modules at start-up (init_static_loras raises the load's message)
_LORA_LOAD = ('  File "/usr/local/lib/python3.12/dist-packages/vllm/entrypoints/openai/models/serving.py", '
              "line 139, in init_static_loras\n    raise ValueError(load_result.error.message)\n")
ADAPTER_RANK = _LORA_LOAD + "ValueError: LoRA rank 64 is greater than max_lora_rank 16.\n"
ADAPTER_MODULES_TO_SAVE = (_LORA_LOAD + 'ValueError: vLLM only supports modules_to_save being either None or '
                           '["classifier", "score"] for classification models. Unsupported modules_to_save: '
                           "['lm_head', 'embed_tokens']\n")
ADAPTER_DORA = _LORA_LOAD + "ValueError: vLLM does not yet support DoRA.\n"
ADAPTER_MISSING = (_LORA_LOAD
                   + "ValueError: Loading lora support failed: No adapter found for /models/adapters/support\n")
# llama-server's lines for an adapter it cannot open or refuses (tests/engine/test_llama_errors.py makes both)
LLAMACPP_ADAPTER_MISSING = (
    "0.00.011.582 E llama_adapter_lora_init: failed to open '/models/adapters/support/adapter.gguf': No such file or "
    "directory\n"
    "0.00.011.607 E cmn  common_init_: failed to load lora adapter '/models/adapters/support/adapter.gguf'\n"
    "0.00.011.961 E srv          init: exiting due to model loading error\n")
LLAMACPP_ADAPTER_REFUSED = (
    "0.00.029.306 E llama_adapter_lora_init_from_file_ptr: failed to apply lora adapter: expect general.type to be "
    "'adapter', but got: mmproj\n"
    "0.00.029.342 E cmn  common_init_: failed to load lora adapter '/models/adapters/support/adapter.gguf'\n")

# engine -> (text, expected reason, words the message must contain)
SAMPLES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "vllm": [
        (KV_CACHE, "KVCacheTooSmall", ("serving.maxModelLen", "38896", "131072", "3.71 GiB", "planner")),
        (KV_CACHE_NO_ESTIMATE, "KVCacheTooSmall", ("serving.maxModelLen", "131072", "3.71 GiB", "planner")),
        (NO_KV_MEMORY, "KVCacheTooSmall", ("serving.maxModelLen", "quantization", "planner")),
        (FREE_MEMORY, "GPUMemoryInUse", ("10.2 of 22.05 GiB", "another process")),
        (QUANTIZATION, "QuantizationUnsupported", ("modelopt_fp4", "100", "89", "spec.quantization")),
        (CUDA_OOM, "GPUOutOfMemory", ("serving.concurrency", "serving.maxModelLen", "planner")),
        (GATED, "GatedRepository", ("tokenSecretRef", "https://huggingface.co/google/gemma-4-e4b-it/resolve/main/"
                                                       "config.json is gated")),
        (NOT_FOUND, "RepositoryNotFound", ("model.source.uri", "acme/gemma-4-e4b-nope/revision/main does not")),
        (REVISION, "RepositoryNotFound", ("revision",)),
        (ADAPTER_RANK, "AdapterRankTooHigh", ("rank 64", "serving.lora.maxRank", "--max-lora-rank")),
        (ADAPTER_MODULES_TO_SAVE, "AdapterNotServable", ("['lm_head', 'embed_tokens']", "save_pretrained_merged",
                                                         "model.source.uri")),
        (ADAPTER_DORA, "AdapterNotServable", ("DoRA", "model.source.uri")),
        (ADAPTER_MISSING, "AdapterNotFound", ("support", "/models/adapters/support", "adapter_config.json")),
    ],
    "llamacpp": [
        (LLAMACPP_KV_ALLOC, "KVCacheTooSmall", ("serving.maxModelLen", "serving.concurrency", "planner")),
        (LLAMACPP_MISSING_FILE, "ModelLoadFailed", ("/models/gemma-4-e2b-it-Q4_K_M.gguf", "No such file or directory",
                                                    "model.source")),
        (LLAMACPP_BAD_MODEL, "ModelLoadFailed", ("unknown model architecture", "model.source")),
        (LLAMACPP_ADAPTER_MISSING, "AdapterLoadFailed", ("/models/adapters/support/adapter.gguf",
                                                         "No such file or directory", "model.adapters")),
        (LLAMACPP_ADAPTER_REFUSED, "AdapterLoadFailed", ("general.type to be 'adapter'", "convert_lora_to_gguf.py")),
    ],
}
