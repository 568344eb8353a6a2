"""Parsing of spec.model.source.uri: hf://REPO[@REVISION], hf://REPO[@REVISION]:QUANT (GGUF), pvc://CLAIM/PATH and
oci://REGISTRY/REPO:TAG|@DIGEST (an OCI artifact of a catalog checkpoint, mounted as an image volume)."""

from __future__ import annotations

from dataclasses import dataclass

# GGUF quant tags as llama.cpp's -hf accepts them, mapped to our format names.
_GGUF_TAGS = {"Q4_K_M": "q4_k_m", "Q8_0": "q8_0", "BF16": "bf16"}
MODEL_MOUNT = "/models"


@dataclass(frozen=True)
class SourceRef:
    scheme: str  # hf | pvc | oci
    repo: str = ""
    revision: str = ""
    quant_tag: str = ""
    claim: str = ""
    path: str = ""
    image: str = ""  # oci: the artifact's reference, REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...

    @property
    def is_gguf(self) -> bool:
        return bool(self.quant_tag) or self.path.endswith(".gguf")

    @property
    def custom_weights(self) -> bool:
        """Weights the catalog does not describe (sized from the format). An oci:// artifact holds a
        catalog checkpoint as `hf download --local-dir` lays it out, so the catalog still sizes and names it."""
        return self.scheme != "oci"

    @property
    def gguf_format(self) -> str | None:
        return _GGUF_TAGS.get(self.quant_tag.upper()) if self.quant_tag else None

    @property
    def local_path(self) -> str:
        """Where the weights appear inside the serving container (pvc and oci sources)."""
        return f"{MODEL_MOUNT}/{self.path}".rstrip("/")

    @property
    def display(self) -> str:
        if self.scheme == "pvc":
            return f"pvc://{self.claim}/{self.path}"
        if self.scheme == "oci":
            return f"oci://{self.image}"
        return self.repo + (f"@{self.revision}" if self.revision else "") + (
            f":{self.quant_tag}" if self.quant_tag else "")


def custom(source: SourceRef | None) -> SourceRef | None:
    """The source when the catalog does not describe its weights; None for the catalog's checkpoint (no
    source, or an oci:// artifact of one): what the search and the engine settings go by."""
    return source if source is not None and source.custom_weights else None


def parse_source(uri: str) -> SourceRef:
    """Split a source URI; the CRD pattern has already checked its shape."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("hf", "pvc", "oci") or not rest:
        raise ValueError(f"model.source.uri {uri!r}: expected hf://REPO[@REVISION][:QUANT], pvc://CLAIM/PATH "
                         "or oci://REGISTRY/REPO:TAG")
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        return SourceRef("pvc", claim=claim, path=path)
    if scheme == "oci":
        return SourceRef("oci", image=rest)
    # a git ref holds no ':' (git check-ref-format), so hf://REPO@REV:QUANT splits at the last ':' after '@'
    repo, _, revision = rest.partition("@")
    if revision:
        revision, _, tag = revision.partition(":")
    else:
        repo, _, tag = repo.partition(":")
    return SourceRef("hf", repo=repo, revision=revision, quant_tag=tag)
