"""serving.speculativeDecoding: whether a candidate gets its variant's MTP drafter, and the plan note that says
why, in two steps. :func:`decide` is what holds before memory (the engine serves drafters, a drafter exists for
this checkpoint, speculation pays at this concurrency); :func:`without_memory` is the memory step, after the
candidate was fitted with the drafter's weights: `auto` falls back to no drafter when they do not fit, `mtp`
keeps the refusal. Facts come from catalog/drafters.yaml; no engine name is compared here."""

from __future__ import annotations

from dataclasses import dataclass

from gemma4_operator.api import Gemma4DeploymentSpec, SpeculativeDecodingMode
from gemma4_operator.catalog import GIB, Catalog
from gemma4_operator.catalog.drafters import Drafter
from gemma4_operator.planner.sources import SourceRef

AUTO, MTP = SpeculativeDecodingMode.AUTO, SpeculativeDecodingMode.MTP
_OFFLINE_SCHEMES = ("pvc", "oci")  # sources whose pods load local files with the Hub offline (planner/weights.py)


@dataclass(frozen=True)
class Decision:
    """Before memory: the drafter to fit the candidate with (None: plan without one), the tokens it proposes,
    the note for the plan, and for mode mtp the reason the candidate is refused."""

    drafter: Drafter | None = None
    tokens: int = 0
    note: str = ""
    refusal: str | None = None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.lstrip("b").split(".") if part.isdigit())


def _engine_refusal(engine: str, version: str, catalog: Catalog) -> str | None:
    serving = catalog.drafters.engines.get(engine)
    if serving is None:
        return catalog.drafters.refusal(engine)
    floor = serving.versions.removeprefix(">=")
    if _version(version) < _version(floor):
        return f"{engine} {version} does not serve Gemma 4 MTP drafters (method {serving.method} needs {floor}+)"
    return None


def _without(spec: Gemma4DeploymentSpec, why: str) -> Decision:
    """auto: no drafter, and the note says why; mtp: the candidate is refused with the same words."""
    mode = spec.serving.speculative_decoding.mode
    if mode is MTP:
        return Decision(refusal=f"speculativeDecoding mtp refused: {why} (set mode auto or off)")
    return Decision(note=f"speculative decoding auto: off: {why}")


def _catalog_repo(source: SourceRef, variant: str, engine: str, catalog: Catalog) -> bool:
    """A source that names one of the catalog's -it repositories of the variant for this engine (the weights the
    drafter was trained against), e.g. to pin a revision."""
    return any(c.repo == source.repo and c.variant == variant and c.instruction_tuned and c.engine == engine
               for c in catalog.checkpoints)


def decide(spec: Gemma4DeploymentSpec, engine: str, engine_version: str, source: SourceRef | None,
           catalog: Catalog) -> Decision:
    """The drafter a candidate of this engine is fitted with, or why there is none."""
    settings = spec.serving.speculative_decoding
    if settings.mode is SpeculativeDecodingMode.OFF:
        return Decision()
    variant = spec.model.variant.value
    refusal = _engine_refusal(engine, engine_version, catalog)
    if refusal is not None:
        return _without(spec, refusal)
    drafter = catalog.drafters.for_variant(variant)
    if drafter is None or not spec.model.instruction_tuned:
        return _without(spec, f"no MTP drafter for the gemma-4-{variant} base checkpoint (the assistants are "
                              "trained against the -it checkpoints)")
    tokens = settings.num_speculative_tokens or drafter.num_speculative_tokens
    if source is not None and source.scheme in _OFFLINE_SCHEMES:
        return _without(spec, f"model.source {source.display} is mounted with the Hub offline, so the pods cannot "
                              f"fetch {drafter.repo}; use an hf:// source (or storage.modelCache) with the drafter")
    if settings.mode is AUTO and source is not None and not _catalog_repo(source, variant, engine, catalog):
        return Decision(note=f"speculative decoding auto: off: model.source {source.display} is not the catalog's "
                             f"checkpoint, and {drafter.repo} is trained against google's; mode mtp uses it anyway")
    limit = catalog.drafters.auto_max_concurrency
    if settings.mode is AUTO and spec.serving.concurrency > limit:
        return Decision(note=f"speculative decoding auto: off: serving.concurrency {spec.serving.concurrency} is "
                             f"above {limit}; at large batches decoding is compute-bound and verifying drafts costs "
                             "more than it saves (mode mtp uses the drafter anyway)")
    return Decision(drafter, tokens)


def falls_back(spec: Gemma4DeploymentSpec) -> bool:
    """Whether a candidate whose drafter does not fit is planned without it (auto) rather than refused (mtp)."""
    return spec.serving.speculative_decoding.mode is AUTO


def on_note(spec: Gemma4DeploymentSpec, decision: Decision, gpus: int, concurrency: tuple[int, int],
            catalog: Catalog) -> str:
    """The note of a plan that kept its drafter: what it costs, and (auto) from which load on the plan drops it.
    ``concurrency``: the largest load with the drafter, and the largest the plan accepts (without it)."""
    drafter = decision.drafter
    assert drafter is not None
    per_gpu = drafter.download_bytes / max(gpus, 1) / GIB
    keeps = min(concurrency[0], catalog.drafters.auto_max_concurrency)
    beyond = ""
    if falls_back(spec) and concurrency[1] > keeps:
        beyond = f"; above concurrency {keeps} the planner drops it (maxConcurrency {concurrency[1]} is without it)"
    return (f"speculative decoding {spec.serving.speculative_decoding.mode.value}: on: {drafter.repo} proposes "
            f"{decision.tokens} tokens per step for the model to verify (same output, faster decoding at low batch); "
            f"its {per_gpu:.2f} GiB of weights per GPU fit beside the KV cache, whose blocks it shares{beyond}")


def without_memory(spec: Gemma4DeploymentSpec, decision: Decision, shortfall: str) -> Decision:
    """The drafter does not fit in memory: auto plans without it and says so; mtp refuses."""
    drafter = decision.drafter
    assert drafter is not None
    return _without(spec, f"with {drafter.repo}'s {drafter.download_bytes / GIB:.2f} GiB of weights the candidate "
                          f"{shortfall}")
