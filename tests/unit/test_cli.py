"""The offline CLI against golden files. Regenerate them with UPDATE_GOLDEN=1 after a deliberate change."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import yaml

from gemma4_operator.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = ROOT / "manifests" / "examples"
SPECS = ROOT / "tests" / "data" / "specs"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    text = text.replace(str(ROOT) + "/", "")
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


CASES = [
    ("plan-31b-h100-table.txt", ["plan", str(EXAMPLES / "31b-h100-bf16-tp2.yaml")], 0, "out"),
    ("plan-26b-h100-yaml.txt", ["plan", str(EXAMPLES / "26b-a4b-h100-fp8.yaml"), "-o", "yaml"], 0, "out"),
    ("plan-e2b-cpu-json.txt", ["plan", str(EXAMPLES / "e2b-cpu.yaml"), "-o", "json"], 0, "out"),
    ("plan-autoscaled-facts.txt", ["plan", str(EXAMPLES / "chat-autoscaled.yaml"),
                                   "--accelerator", "nvidia-l4", "--accelerator", "nvidia-h100-80gb"], 0, "out"),
    ("render-e2b-cpu.yaml", ["render", str(EXAMPLES / "e2b-cpu.yaml")], 0, "out"),
    ("error-plan-refused.txt", ["plan", str(SPECS / "31b-nvfp4-h100.yaml")], 2, "err"),
    ("error-invalid-fields.txt", ["plan", str(SPECS / "invalid-fields.yaml")], 1, "err"),
    ("error-cross-field.txt", ["render", str(SPECS / "cross-field.yaml")], 1, "err"),
    ("error-broken-yaml.txt", ["plan", str(SPECS / "broken.yaml")], 1, "err"),
    ("error-wrong-kind.txt", ["plan", str(SPECS / "wrong-kind.yaml")], 1, "err"),
    ("error-unknown-accelerator.txt", ["plan", str(EXAMPLES / "e2b-cpu.yaml"), "--accelerator", "h100"], 1, "err"),
    ("error-missing-file.txt", ["plan", str(SPECS / "nope.yaml")], 1, "err"),
]


@pytest.mark.parametrize(("golden", "argv", "code", "stream"), CASES, ids=[c[0] for c in CASES])
def test_cli_output(golden: str, argv: list[str], code: int, stream: str,
                    capsys: pytest.CaptureFixture[str]) -> None:
    got_code, out, err = run(argv, capsys)
    assert got_code == code, err
    check_golden(golden, out if stream == "out" else err)
    if stream == "err":
        assert "Traceback" not in err and out == ""


def test_render_output_is_a_kubectl_ready_stream(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["render", str(EXAMPLES / "chat-autoscaled.yaml"), "--owner-uid", "u-1"], capsys)
    assert code == 0
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "PersistentVolumeClaim", "Job",
                                         "PodDisruptionBudget"]
    # the cache PVC outlives the object (storage.modelCache.retainPolicy defaults to Retain)
    owned = [d for d in docs if d["kind"] != "PersistentVolumeClaim"]
    assert all(d["metadata"]["ownerReferences"][0]["uid"] == "u-1" for d in owned)
    assert "ownerReferences" not in docs[2]["metadata"]


def test_plan_json_is_the_status_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plan", str(EXAMPLES / "31b-gb200-nvfp4.yaml"), "-o", "json"], capsys)
    assert code == 0
    p = json.loads(out)["plan"]
    assert (p["quantization"], p["gpusPerReplica"], p["accelerator"]) == ("nvfp4", 1, "nvidia-gb200")
    assert set(p["memoryGiB"]) == {"weights", "kvCache", "overhead", "capacity"}  # "lora" only with adapters


def test_crd_command_prints_the_committed_crd(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["crd"], capsys)
    assert code == 0
    assert out == (ROOT / "crds" / "gemma4deployments.serving.gemma4.dev.yaml").read_text(encoding="utf-8")


def test_accelerators_command_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["accelerators"], capsys)
    assert code == 0
    assert "nvidia-gb200" in out and "arm64" in out and "NVIDIA-H100-80GB-HBM3" in out
    h100 = next(line for line in out.splitlines() if line.startswith("nvidia-h100-80gb "))
    assert " 6.88 2026-11 " in h100  # the catalog's indicative price and when it was read
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    # GPUs per replica and vLLM fp8 KV (catalog/hardware_rules.yaml): a MIG slice is one per replica; Ampere
    # cannot keep an fp8 KV cache in Gemma 4's Triton attention
    assert rows["nvidia-h100-80gb"][7:9] == ["8", "yes"]
    assert rows["nvidia-a100-80gb-mig-3g.40gb"][7:9] == ["1", "no"]
    assert rows["nvidia-gh200"][1:5] == ["96GiB", "9.0", "hopper", "arm64"]
    assert rows["nvidia-gh200"][-1] == "NVIDIA-GH200-480GB"
    # the memory CUDA reports (what the planner fits within: 79.22 GiB logged by vLLM on an H100, below NVML's
    # 79.65) and vLLM's batch defaults there (max_num_batched_tokens / max_num_seqs)
    assert rows["nvidia-h100-80gb"][9:11] == ["79.22", "8192/1024"]
    assert rows["nvidia-l4"][9:11] == ["22.04", "2048/256"]
    assert rows["cpu"][9:11] == ["-", "-"]
