"""The download Job's adapter verdicts reach the plan and the engine's flags (reconcile/desired.py desired_state
with model_status.preflight): a refused adapter is left out and the others serve, --max-lora-rank follows the
adapters' ranks, a tower adapter turns on --enable-tower-connector-lora; verdicts of another download are not
used."""

from __future__ import annotations

import json
from typing import Any

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.config import OperatorConfig
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.reconcile.model_status import Preflight, preflight
from gemma4_operator.render.download import CHECKPOINT_ANNOTATION, download_id
from gemma4_operator.weights.artifacts import Report
from gemma4_operator.weights.preflight import AdapterVerdict

FACTS = ClusterFacts.every_catalog_type()
SUPPORT = {"name": "support", "uri": "hf://me/support-lora"}
FAQ = {"name": "faq", "uri": "hf://me/faq-lora"}
VISION = {"name": "vision", "uri": "hf://me/vision-lora"}
CACHE = {"modelCache": {"accessModes": ["ReadWriteMany"]}}
SUPPORT_OK = AdapterVerdict("support", "Accepted", "LoRA rank 64 on q_proj", 64, ("q_proj",))
FAQ_REFUSED = AdapterVerdict("faq", "ModulesToSave", "modules_to_save ['lm_head']: merge it", 8, ("q_proj",))
VISION_OK = AdapterVerdict("vision", "Accepted", "LoRA rank 8 on the vision tower", 8, ("q_proj",), towers=True)


def parent(*adapters: dict[str, Any], lora: dict[str, Any] | None = None, **spec: Any) -> Gemma4Deployment:
    body = {"model": {"variant": "31b", "adapters": list(adapters)}, "quantization": "bf16",
            "accelerator": {"type": "nvidia-h100-80gb"}, "storage": CACHE,
            **({"serving": {"lora": lora}} if lora else {}), **spec}
    return Gemma4Deployment.model_validate({"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
                                            "metadata": {"name": "chat", "namespace": "ml"}, "spec": body})


def fetched(model: Gemma4Deployment, *verdicts: AdapterVerdict) -> Preflight:
    """What the succeeded Job of this spec's download reported."""
    return Preflight(download_id(plan(model.spec, FACTS), model.spec), verdicts)


def command_line(model: Gemma4Deployment, verdicts: Preflight | None) -> list[str]:
    desired = rc.desired_state(model, "uid", FACTS, OperatorConfig(), preflight=verdicts)
    deployment = desired.child("Deployment", "chat")
    assert deployment is not None, desired.error
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return [*container.get("command", []), *container.get("args", [])]


def flag(line: list[str], name: str) -> list[str]:
    return [line[i + 1] for i, arg in enumerate(line) if arg == name]


def lora_modules(line: list[str]) -> list[str]:
    """The adapters' names in --lora-modules (one JSON argument each, up to the next flag)."""
    rest = line[line.index("--lora-modules") + 1:]
    modules = rest[:next((i for i, arg in enumerate(rest) if arg.startswith("--")), len(rest))]
    return [json.loads(module)["name"] for module in modules]


def test_a_refused_adapter_is_not_given_to_vllm_and_the_others_serve() -> None:
    model = parent(SUPPORT, FAQ)
    assert lora_modules(command_line(model, None)) == ["support", "faq"]  # before the Job: both, Deployment held
    line = command_line(model, fetched(model, SUPPORT_OK, FAQ_REFUSED))
    assert lora_modules(line) == ["support"]
    assert flag(line, "--max-loras") == ["1"]


def test_the_max_rank_follows_the_served_adapters_ranks_unless_max_rank_is_set() -> None:
    model = parent(SUPPORT, VISION)
    assert flag(command_line(model, None), "--max-lora-rank") == ["16"]  # vLLM's default until the Job has read them
    assert flag(command_line(model, fetched(model, SUPPORT_OK, VISION_OK)), "--max-lora-rank") == ["64"]
    # a refused adapter's rank does not size the slots
    only_faq_large = AdapterVerdict("faq", "Bias", "bias 'all'", 256, ("q_proj",))
    faq = parent(SUPPORT, FAQ)
    assert flag(command_line(faq, fetched(faq, SUPPORT_OK, only_faq_large)), "--max-lora-rank") == ["64"]
    pinned = parent(SUPPORT, VISION, lora={"maxRank": 128})
    assert flag(command_line(pinned, fetched(pinned, SUPPORT_OK, VISION_OK)), "--max-lora-rank") == ["128"]


def test_a_served_tower_adapter_turns_on_tower_connector_lora() -> None:
    model = parent(SUPPORT, VISION)
    assert "--enable-tower-connector-lora" not in command_line(model, None)
    assert "--enable-tower-connector-lora" not in command_line(model, fetched(model, SUPPORT_OK))  # vision: Pending
    assert "--enable-tower-connector-lora" in command_line(model, fetched(model, SUPPORT_OK, VISION_OK))
    refused_vision = AdapterVerdict("vision", "RankTooHigh", "rank 1024", 1024, ("q_proj",), towers=True)
    assert "--enable-tower-connector-lora" not in command_line(model, fetched(model, SUPPORT_OK, refused_vision))


def test_verdicts_of_another_download_are_not_used() -> None:
    model = parent(SUPPORT, FAQ)
    stale = Preflight("google/gemma-4-31B-it@main; adapters faq=hf://me/old-faq", (SUPPORT_OK, FAQ_REFUSED))
    line = command_line(model, stale)
    assert lora_modules(line) == ["support", "faq"] and flag(line, "--max-lora-rank") == ["16"]


def test_a_refused_adapter_is_not_given_to_llama_cpp() -> None:
    model = parent(SUPPORT, FAQ, engine="llamacpp", model={"variant": "e2b", "adapters": [SUPPORT, FAQ]},
                   quantization="q4_k_m", accelerator={"type": "cpu"})
    both = flag(command_line(model, None), "--lora-scaled")
    assert both == ["/models/adapters/support/adapter.gguf:0", "/models/adapters/faq/adapter.gguf:0"]
    assert flag(command_line(model, fetched(model, SUPPORT_OK, FAQ_REFUSED)), "--lora-scaled") == both[:1]


def test_without_a_model_cache_the_adapters_only_job_s_verdicts_set_the_flags_too() -> None:
    model = parent(SUPPORT, FAQ, storage={})
    line = command_line(model, fetched(model, SUPPORT_OK, FAQ_REFUSED))
    assert lora_modules(line) == ["support"] and flag(line, "--max-lora-rank") == ["64"]
    desired = rc.desired_state(model, "uid", FACTS, OperatorConfig(), preflight=fetched(model, SUPPORT_OK, FAQ_REFUSED))
    assert desired.child("Job", "chat-download") is not None and desired.child("PersistentVolumeClaim",
                                                                                 "chat-model-cache") is None


def _job(model: Gemma4Deployment, **status: Any) -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": "chat-download", "annotations": {
        CHECKPOINT_ANNOTATION: download_id(plan(model.spec, FACTS), model.spec)}}, "status": status}


def _pod(report: Report) -> dict[str, Any]:
    return {"metadata": {"labels": {"app.kubernetes.io/component": "download"}}, "status": {"containerStatuses": [
        {"name": "download", "state": {"terminated": {"exitCode": report.exit_code, "message": report.to_json(),
                                                      "finishedAt": "2026-12-07T10:05:00Z"}}}]}}


def test_the_preflight_is_read_from_the_succeeded_jobs_report_only() -> None:
    model = parent(SUPPORT, FAQ)
    report = _pod(Report(0, 10, 1.0, None, [SUPPORT_OK, FAQ_REFUSED]))
    assert preflight(None, [report]) is None
    assert preflight(_job(model, active=1), [report]) is None  # still running: its verdicts are not final
    done = preflight(_job(model, succeeded=1), [report])
    assert done == fetched(model, SUPPORT_OK, FAQ_REFUSED)
    assert preflight(_job(model, succeeded=1), []) is None
