"""catalog/drafters.yaml as typed rows: Gemma 4's MTP drafter checkpoints, the engines that serve them, when
`speculativeDecoding.mode: auto` turns one on and when a running one counts as ineffective."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Drafter(_Row):
    """One variant's drafter checkpoint (instruction-tuned targets only)."""

    variant: str
    repo: str
    download_bytes: int
    num_speculative_tokens: int  # the engine recipe's default
    source: str


class DrafterEngine(_Row):
    """How an engine serves drafters: its method name and the counters it reports."""

    versions: str
    method: str
    accepted_tokens_metric: str
    draft_tokens_metric: str
    source: str


class AcceptanceRule(_Row):
    """When status calls a drafter ineffective (observe/speculative.py)."""

    min_acceptance_rate: float
    window_seconds: int
    min_draft_tokens: int


class DrafterCatalog(_Row):
    drafters: tuple[Drafter, ...]
    engines: dict[str, DrafterEngine]
    refusals: dict[str, str]  # engine -> why it does not serve drafters
    auto_max_concurrency: int
    acceptance: AcceptanceRule

    def for_variant(self, variant: str) -> Drafter | None:
        return next((d for d in self.drafters if d.variant == variant), None)

    def refusal(self, engine: str) -> str:
        """Why an engine without a drafters row does not serve them."""
        return self.refusals.get(engine, f"{engine} does not serve Gemma 4 MTP drafters")
