"""serving.speculativeDecoding: Gemma 4's MTP drafters as a planner choice (fit, auto, mtp, off), their vLLM
command line and download, and the acceptance-rate decision table that turns status Degraded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import GIB, load_catalog
from gemma4_operator.catalog.drafters import AcceptanceRule
from gemma4_operator.engines import vllm
from gemma4_operator.observe import speculative as drafting
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan
from gemma4_operator.planner.weights import DRAFTER_SUBDIRECTORY
from gemma4_operator.reconcile import status as observe
from gemma4_operator.render.children import Owner
from gemma4_operator.render.download import checkpoint_id, download_manifest
from gemma4_operator.weights.artifacts import Kind

CATALOG = load_catalog()
FACTS = ClusterFacts.every_catalog_type(CATALOG)
DRAFTER_31B = "google/gemma-4-31B-it-assistant"
# 31B BF16 on two H100s at the recipe's 32K context: the drafter fits beside 4 sequences
TP2_31B: dict[str, Any] = {"model": {"variant": "31b"}, "engine": "vllm", "quantization": "bf16",
                           "accelerator": {"type": "nvidia-h100-80gb", "count": 2},
                           "serving": {"maxModelLen": 32768, "concurrency": 4}}
# 26B-A4B FP8 on two L4s at 8K with fp8 KV: 15 sequences fit without the drafter, not with its 0.81 GiB
TIGHT_26B: dict[str, Any] = {"model": {"variant": "26b-a4b"}, "engine": "vllm", "quantization": "fp8",
                             "accelerator": {"type": "nvidia-l4", "count": 2},
                             "serving": {"maxModelLen": 8192, "concurrency": 15, "kvCacheDtype": "fp8"}}


def _spec(fields: dict[str, Any], **drafting_fields: Any) -> Gemma4DeploymentSpec:
    serving = {**fields.get("serving", {}), "speculativeDecoding": drafting_fields} if drafting_fields else \
        fields.get("serving", {})
    return Gemma4DeploymentSpec.model_validate({**fields, "serving": serving})


def _plan(fields: dict[str, Any], **drafting_fields: Any) -> Plan:
    return plan(_spec(fields, **drafting_fields), FACTS, CATALOG, suggest=False)


def _note(p: Plan) -> str:
    found = [n for n in p.notes if n.startswith("speculative decoding")]
    assert len(found) == 1, p.notes
    return found[0]


def _with(fields: dict[str, Any], **serving: Any) -> dict[str, Any]:
    return {**fields, "serving": {**fields["serving"], **serving}}


# ---- catalog rows ---------------------------------------------------------------------------------------

def test_every_variant_has_a_drafter_row_with_the_recipe_tokens() -> None:
    rows = {d.variant: d for d in CATALOG.drafters.drafters}
    assert set(rows) == set(CATALOG.variants)
    # vllm-project/recipes Google/Gemma4.md "Recommended Settings": E2B 2, E4B 4, 26B-A4B 4, 31B 4-8
    assert {v: d.num_speculative_tokens for v, d in rows.items()} == {"e2b": 2, "e4b": 4, "26b-a4b": 4, "31b": 4}
    for variant, d in rows.items():
        assert d.repo == f"google/gemma-4-{CATALOG.variants[variant].hf_name}-it-assistant"
        assert 0 < d.download_bytes < 2e9 and d.source.startswith(f"https://huggingface.co/{d.repo}")


# ---- auto: on, and what the fit adds ----------------------------------------------------------------------

def test_auto_adds_the_drafter_weights_and_says_so() -> None:
    on, off = _plan(TP2_31B), _plan(TP2_31B, mode="off")
    drafter = CATALOG.drafters.for_variant("31b")
    assert drafter is not None and on.drafter == drafter and on.speculative_tokens == 4
    assert off.drafter is None and not [n for n in off.notes if n.startswith("speculative")]
    # sharded over the tensor-parallel GPUs like the target; no KV of its own (the pool shrinks by the weights only)
    per_gpu = drafter.download_bytes / 2 / GIB
    assert on.memory_needed_gib - off.memory_needed_gib == pytest.approx(per_gpu, abs=1e-9)
    assert on.download_bytes - off.download_bytes == drafter.download_bytes
    assert _note(on) == (
        "speculative decoding auto: on: google/gemma-4-31B-it-assistant proposes 4 tokens per step for the model "
        "to verify (same output, faster decoding at low batch); its 0.44 GiB of weights per GPU fit beside the KV "
        "cache, whose blocks it shares")


def test_auto_reports_the_largest_load_it_accepts_which_is_without_the_drafter() -> None:
    on, off = _plan(TP2_31B), _plan(TP2_31B, mode="off")
    assert on.max_concurrency == off.max_concurrency
    forced = _plan(TP2_31B, mode="mtp")
    assert forced.max_concurrency <= off.max_concurrency and forced.drafter is not None


@pytest.mark.parametrize(("fields", "words"), [
    # llama.cpp: the server loads gemma4-assistant GGUFs, but the catalog has none
    ({"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}},
     "speculative decoding auto: off: llama.cpp is not planned with a drafter: llama-server b11434 loads Gemma 4 "
     "assistant drafters"),
    ({**TP2_31B, "model": {"variant": "31b", "instructionTuned": False}},
     "speculative decoding auto: off: no MTP drafter for the gemma-4-31b base checkpoint"),
    ({**TP2_31B, "model": {"variant": "31b", "source": {"uri": "hf://acme/gemma-4-31b-legal"}}},
     "speculative decoding auto: off: model.source acme/gemma-4-31b-legal is not the catalog's checkpoint"),
    (_with(TP2_31B, concurrency=17, maxModelLen=8192),
     "speculative decoding auto: off: serving.concurrency 17 is above 16"),
    (TIGHT_26B,
     "speculative decoding auto: off: with google/gemma-4-26B-A4B-it-assistant's 0.81 GiB of weights the candidate "
     "needs 20.0 GiB per GPU (13.5 weights + 2.2 overhead + 15 x 0.28 KV) but has 19.8 GiB usable: short by 0.2 GiB"),
], ids=["llamacpp", "base-model", "custom-source", "high-concurrency", "memory"])
def test_auto_plans_without_the_drafter_and_says_why(fields: dict[str, Any], words: str) -> None:
    p = _plan(fields)
    assert p.drafter is None and p.speculative_tokens == 0
    assert _note(p).startswith(words)
    if p.engine == "vllm":
        assert "--speculative-config" not in vllm.command_line(p, _spec(fields))


def test_auto_keeps_the_drafter_for_a_pinned_revision_of_the_catalog_repo() -> None:
    p = _plan({**TP2_31B, "model": {"variant": "31b", "source": {"uri": "hf://google/gemma-4-31B-it@abc123"}}})
    assert p.drafter is not None and p.drafter.repo == DRAFTER_31B


def test_the_tight_plan_is_not_bought_with_more_gpus() -> None:
    """auto never changes the hardware: where the drafter does not fit, the same GPUs serve without it."""
    p = _plan({**TIGHT_26B, "accelerator": {"type": "nvidia-l4"}})
    assert (p.gpus_per_replica, p.drafter) == (2, None)


# ---- mtp: forced or refused ---------------------------------------------------------------------------------

def test_mtp_keeps_the_drafter_where_auto_would_not() -> None:
    p = _plan(_with(TP2_31B, concurrency=17, maxModelLen=8192), mode="mtp", numSpeculativeTokens=6)
    assert p.drafter is not None and p.speculative_tokens == 6
    assert _note(p).startswith("speculative decoding mtp: on: google/gemma-4-31B-it-assistant proposes 6 tokens")


@pytest.mark.parametrize(("fields", "words"), [
    (TIGHT_26B, ["speculativeDecoding mtp refused: with google/gemma-4-26B-A4B-it-assistant's 0.81 GiB",
                 "short by 0.2 GiB", "(set mode auto or off)"]),
    ({"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}},
     ["speculativeDecoding mtp refused: llama.cpp is not planned with a drafter", "--spec-type draft-mtp"]),
    ({**TP2_31B, "model": {"variant": "31b", "source": {"uri": "pvc://weights/gemma-4-31B-it"}}},
     ["speculativeDecoding mtp refused: model.source pvc://weights/gemma-4-31B-it is mounted with the Hub offline"]),
], ids=["memory", "llamacpp", "offline-source"])
def test_mtp_refuses_with_the_reason(fields: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(PlanError) as refused:
        _plan(fields, mode="mtp")
    for w in words:
        assert w in refused.value.message


def test_mtp_on_a_tight_plan_takes_more_gpus_when_allowed() -> None:
    p = _plan({**TIGHT_26B, "accelerator": {"type": "nvidia-l4"}}, mode="mtp")
    assert p.drafter is not None and p.gpus_per_replica == 4


@pytest.mark.parametrize(("fields", "message"), [
    ({**TP2_31B, "model": {"variant": "31b", "instructionTuned": False}, "serving": {"speculativeDecoding": {
        "mode": "mtp"}}}, "serving.speculativeDecoding.mode: mtp needs an instruction-tuned model"),
    ({**TP2_31B, "serving": {"speculativeDecoding": {"mode": "off", "numSpeculativeTokens": 2}}},
     "serving.speculativeDecoding.numSpeculativeTokens has no effect with mode off"),
    ({**TP2_31B, "serving": {"speculativeDecoding": {"numSpeculativeTokens": 17}}},
     "less than or equal to 16"),
])
def test_bad_settings_are_refused_in_words(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Gemma4DeploymentSpec.model_validate(fields)


# ---- command line and download -------------------------------------------------------------------------------

def _speculative_config(p: Plan, spec: Gemma4DeploymentSpec) -> dict[str, Any]:
    args = vllm.command_line(p, spec)
    parsed: dict[str, Any] = json.loads(args[args.index("--speculative-config") + 1])
    return parsed


def test_vllm_gets_the_method_drafter_and_tokens() -> None:
    spec = _spec(TP2_31B)
    assert _speculative_config(plan(spec, FACTS), spec) == {
        "method": "mtp", "model": DRAFTER_31B, "num_speculative_tokens": 4}


def test_a_cached_checkpoint_loads_its_drafter_from_the_cache_too() -> None:
    spec = _spec({**TP2_31B, "storage": {"modelCache": {"size": "80Gi"}}})
    p = plan(spec, FACTS)
    drafter_dir = f"{p.weights.directory}/{DRAFTER_SUBDIRECTORY}"
    assert _speculative_config(p, spec)["model"] == drafter_dir
    assert checkpoint_id(p).endswith(f" +{DRAFTER_31B}")  # a new drafter is a new download Job
    artifacts = download_manifest(p, spec).artifacts
    assert [(a.kind, a.repo, a.local_dir) for a in artifacts] == [
        (Kind.CHECKPOINT, p.weights.repo, p.weights.directory), (Kind.DRAFTER, DRAFTER_31B, drafter_dir)]


# ---- the acceptance rate: decision table ----------------------------------------------------------------------

RULE = AcceptanceRule(min_acceptance_rate=0.20, window_seconds=600, min_draft_tokens=2000)


def _history(span_s: float, drafted: float, accepted: float, now: float = 10_000.0) -> dict[str, tuple[
        drafting.Reading, ...]]:
    """Two pods, each growing by half the totals over span_s."""
    start = now - span_s
    return {pod: (drafting.Reading(start, 1000.0, 5000.0), drafting.Reading(now, 1000.0 + accepted / 2,
                                                                           5000.0 + drafted / 2))
            for pod in ("a", "b")}


@pytest.mark.parametrize(("span_s", "drafted", "accepted", "state", "rate"), [
    (600, 1999, 0, "Measuring", None),          # too few drafts to tell, however long
    (60, 4000, 2000, "Effective", 0.5),         # a good rate shows at once
    (600, 4000, 800, "Effective", 0.2),         # at the threshold is enough
    (300, 4000, 400, "Measuring", 0.1),         # low, but not for the whole window yet
    (600, 4000, 400, "Ineffective", 0.1),       # low for the whole window: Degraded
    (3600, 4000, 400, "Ineffective", 0.1),      # readings older than the window cover it too
])
def test_acceptance_decision_table(span_s: float, drafted: float, accepted: float, state: str,
                                   rate: float | None) -> None:
    a = drafting.assess(_history(span_s, drafted, accepted), 10_000.0, RULE)
    assert a.state == state and a.drafted == int(drafted)
    assert a.rate == (None if rate is None else pytest.approx(rate))
    message = drafting.ineffective_message(a, DRAFTER_31B, RULE)
    assert (message is not None) == (state == "Ineffective")


def test_a_restarted_pod_counts_only_since_its_restart() -> None:
    history = {"a": (drafting.Reading(0, 5000, 50000), drafting.Reading(300, 5100, 51000),
                     drafting.Reading(310, 10, 100), drafting.Reading(900, 1510, 3100))}
    a = drafting.assess(history, 900, RULE)
    assert (a.drafted, a.rate) == (3000, pytest.approx(0.5))


def test_record_keeps_one_reading_before_the_window_and_drops_gone_pods() -> None:
    history = {"a": tuple(drafting.Reading(t, t, 2 * t) for t in (0, 100, 200)), "gone": (drafting.Reading(0, 0, 0),)}
    kept = drafting.record(history, {"a": drafting.Reading(900, 900, 1800)}, 900, RULE)
    assert list(kept) == ["a"] and [r.at for r in kept["a"]] == [200, 900]


def test_an_ineffective_drafter_turns_degraded_with_the_advice_and_status_shows_the_rate() -> None:
    p = _plan(TP2_31B)
    spec = _spec(TP2_31B)
    owner = Owner(name="chat", namespace="ml", uid="u1")
    low = drafting.assess(_history(600, 4000, 400), 10_000.0, RULE)
    st = observe.compute_status(owner=owner, generation=1, spec=spec, outcome=observe.PlanOutcome(p),
                                deployment=None, pods=[], previous={}, now="2026-01-01T00:00:00Z", drafts=low)
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "SpeculativeDecodingIneffective")
    assert degraded["message"] == (
        "the MTP drafter google/gemma-4-31B-it-assistant had 10% of its 4000 draft tokens accepted over the last 10 "
        "minutes, below 20%: verifying its drafts costs more than they save on this traffic; set "
        "serving.speculativeDecoding.mode: off")
    assert st["speculativeDecoding"] == {"acceptanceRate": 0.1, "draftTokens": 4000, "windowSeconds": 600,
                                         "state": "Ineffective"}
    good = drafting.assess(_history(600, 4000, 2400), 10_000.0, RULE)
    st = observe.compute_status(owner=owner, generation=1, spec=spec, outcome=observe.PlanOutcome(p),
                                deployment=None, pods=[], previous={}, now="2026-01-01T00:00:00Z", drafts=good)
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "False" and st["speculativeDecoding"]["state"] == "Effective"


def test_the_catalog_rule_is_the_one_status_uses() -> None:
    assert CATALOG.drafters.acceptance == RULE
    assert CATALOG.drafters.engines["vllm"].accepted_tokens_metric == "vllm:spec_decode_num_accepted_tokens_total"
    assert CATALOG.drafters.engines["vllm"].draft_tokens_metric == "vllm:spec_decode_num_draft_tokens_total"


def test_a_reading_sums_the_engines_series_of_the_two_counters() -> None:
    vllm_counters = CATALOG.drafters.engines["vllm"]
    text = (Path(__file__).resolve().parents[1] / "data" / "metrics" / "vllm-0.32.0.txt").read_text(encoding="utf-8")
    assert drafting.reading(text, vllm_counters.accepted_tokens_metric, vllm_counters.draft_tokens_metric, 5.0) is None
    text += "".join(f'{name}{{engine="{e}",model_name="m"}} {v}\n' for e, (a, d) in enumerate(((10, 40), (5, 60)))
                    for name, v in ((vllm_counters.accepted_tokens_metric, a), (vllm_counters.draft_tokens_metric, d)))
    assert drafting.reading(text, vllm_counters.accepted_tokens_metric, vllm_counters.draft_tokens_metric, 5.0) == \
        drafting.Reading(5.0, 15.0, 100.0)
    with pytest.raises(ValueError, match="could not convert string to float"):
        drafting.reading(f"{vllm_counters.draft_tokens_metric} not-a-number\n", "a", vllm_counters.draft_tokens_metric,
                         5.0)
