"""Parsing of spec.model.source.uri: hf://REPO[@REVISION], hf://REPO:QUANT (GGUF), pvc://CLAIM/PATH."""

from __future__ import annotations

from dataclasses import dataclass

# GGUF quant tags as llama.cpp's -hf accepts them, mapped to our format names.
_GGUF_TAGS = {"Q4_K_M": "q4_k_m", "Q8_0": "q8_0", "BF16": "bf16"}
MODEL_MOUNT = "/models"


@dataclass(frozen=True)
class SourceRef:
    scheme: str  # hf | pvc
    repo: str = ""
    revision: str = ""
    quant_tag: str = ""
    claim: str = ""
    path: str = ""

    @property
    def is_gguf(self) -> bool:
        return bool(self.quant_tag) or self.path.endswith(".gguf")

    @property
    def gguf_format(self) -> str | None:
        return _GGUF_TAGS.get(self.quant_tag.upper()) if self.quant_tag else None

    @property
    def local_path(self) -> str:
        """Where the weights appear inside the serving container (pvc sources)."""
        return f"{MODEL_MOUNT}/{self.path}".rstrip("/")

    @property
    def display(self) -> str:
        if self.scheme == "pvc":
            return f"pvc://{self.claim}/{self.path}"
        suffix = f"@{self.revision}" if self.revision else (f":{self.quant_tag}" if self.quant_tag else "")
        return self.repo + suffix


def parse_source(uri: str) -> SourceRef:
    """Split a source URI; the CRD pattern has already checked its shape."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("hf", "pvc") or not rest:
        raise ValueError(f"model.source.uri {uri!r}: expected hf://REPO[@REVISION], hf://REPO:QUANT or pvc://CLAIM/PATH")
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        return SourceRef("pvc", claim=claim, path=path)
    if "@" in rest:
        repo, _, revision = rest.partition("@")
        return SourceRef("hf", repo=repo, revision=revision)
    repo, _, tag = rest.partition(":")
    return SourceRef("hf", repo=repo, quant_tag=tag)
