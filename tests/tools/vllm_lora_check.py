"""vLLM 0.32's own adapter validation of PEFT directories (runs in the vLLM venv, not ours), as
``vllm/lora/worker_manager.py`` ``_load_adapter`` does it before an adapter serves:

1. ``PEFTHelper.from_local_dir`` and ``validate_legal(LoRAConfig(max_lora_rank=...))`` (peft_helper.py);
2. ``LoRAModel.from_local_checkpoint`` with the expected modules and Gemma 4's weights mapper (lora_model.py),
   which refuses tensors whose module the model does not wrap.

The expected modules are what ``_load_adapter`` derives from ``get_supported_lora_modules(model)`` (every
``LinearBase`` and fused-MoE attribute of the model) unpacked with the model's ``packed_modules_mapping``, plus
``experts``. Building the model needs a GPU, and importing ``gemma4_mm.py`` needs the image processor's
dependencies, which this CPU venv lacks; so the attributes, the packed mapping and the mapper are read from
vLLM's own sources (gemma4.py, gemma4_mm.py) with ``ast``. ``einops`` is replaced by an empty module: the import
chain of vllm.lora reaches the ViT attention wrappers, which import it and which the validation never calls.

    echo '[{"dir": "ADAPTER_DIR", "max_rank": 16}]' | VLLM_TARGET_DEVICE=cpu <cache>/vllm-0.32.0/bin/python \\
        tests/tools/vllm_lora_check.py

stdout: a JSON list, one {"ok": bool, "error": str | null} per directory, in order.
"""

from __future__ import annotations

import ast
import json
import sys
import types
from pathlib import Path
from typing import Any

sys.modules.setdefault("einops", types.ModuleType("einops"))  # see the docstring: never called here

import vllm  # noqa: E402
from vllm.config.lora import LoRAConfig  # noqa: E402
from vllm.lora.lora_model import LoRAModel  # noqa: E402
from vllm.lora.peft_helper import PEFTHelper  # noqa: E402
from vllm.model_executor.models.utils import WeightsMapper  # noqa: E402

MODELS = Path(vllm.__file__).parent / "model_executor" / "models"
# the layer classes get_supported_lora_modules (vllm/lora/utils.py) counts: LinearBase's and the fused MoE's
WRAPPED = {"ColumnParallelLinear", "RowParallelLinear", "QKVParallelLinear", "MergedColumnParallelLinear",
           "ReplicatedLinear", "GateLinear", "FusedMoEFactory"}


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def _assigned(cls: ast.ClassDef, name: str) -> ast.expr:
    return next(n.value for n in cls.body if isinstance(n, ast.Assign | ast.AnnAssign)
                and isinstance(t := (n.targets[0] if isinstance(n, ast.Assign) else n.target), ast.Name)
                and t.id == name and n.value is not None)


def gemma4_facts() -> tuple[set[str], WeightsMapper]:
    text = ast.parse((MODELS / "gemma4.py").read_text(encoding="utf-8"))
    mm = ast.parse((MODELS / "gemma4_mm.py").read_text(encoding="utf-8"))
    attributes = {target.attr for node in ast.walk(text) if isinstance(node, ast.Assign)
                  and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                  and node.value.func.id in WRAPPED
                  for target in node.targets if isinstance(target, ast.Attribute)}
    model = _class(mm, "Gemma4ForConditionalGeneration")
    packed: dict[str, list[str]] = ast.literal_eval(_assigned(model, "packed_modules_mapping"))
    expected = {m for a in attributes for m in packed.get(a, [a])} | {"experts"}
    call = _assigned(model, "hf_to_vllm_mapper")
    assert isinstance(call, ast.Call)
    mapper = WeightsMapper(**{k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg})
    return expected, mapper.get_rename_mapper()


def check(directory: str, max_rank: int, expected: set[str], mapper: WeightsMapper) -> dict[str, Any]:
    try:
        helper = PEFTHelper.from_local_dir(directory, None)
        helper.validate_legal(LoRAConfig(max_lora_rank=max_rank))
        LoRAModel.from_local_checkpoint(directory, expected, helper, lora_model_id=1, device="cpu",
                                        weights_mapper=mapper)
    except (ValueError, RuntimeError) as error:
        return {"ok": False, "error": str(error)}
    return {"ok": True, "error": None}


def main() -> None:
    expected, mapper = gemma4_facts()
    requests = json.load(sys.stdin)
    json.dump([check(r["dir"], r["max_rank"], expected, mapper) for r in requests], sys.stdout)


if __name__ == "__main__":
    main()
