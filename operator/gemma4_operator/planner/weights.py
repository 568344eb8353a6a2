"""Where the serving container finds the weights, and how they get there (spec.storage.modelCache and the
source's scheme). Four ways:

- ``hub``: each pod downloads at start into its cache volume (an emptyDir sized for the checkpoint, or the
  cache PVC when the download Job cannot name the files);
- ``cache``: the download Job fills the cache PVC once; pods load the directory read-only, the Hub offline;
- ``volume``: a pvc:// source, mounted read-only;
- ``image``: an oci:// source, mounted as an image volume (the container runtime pulls and caches it per node).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gemma4_operator.catalog import Checkpoint
from gemma4_operator.planner.sources import MODEL_MOUNT, SourceRef

CACHE_MOUNT = "/cache"  # the model cache volume (emptyDir or PVC) in serving and download pods
MODELS_DIR = f"{CACHE_MOUNT}/models"  # the download Job's checkpoints: MODELS_DIR/REPO/REVISION

class WeightsMode(enum.StrEnum):
    HUB = "hub"
    CACHE = "cache"
    VOLUME = "volume"
    IMAGE = "image"


@dataclass(frozen=True)
class Weights:
    mode: WeightsMode
    repo: str = ""  # hub, cache: the Hugging Face repository
    revision: str = ""  # cache: the revision downloaded ("" = the repository's default branch)
    directory: str = ""  # cache, image: the directory holding the checkpoint as `hf download --local-dir` lays it out
    gguf: str = ""  # llama.cpp: the GGUF file in `directory`
    mmproj: str = ""  # llama.cpp: the vision/audio projector in `directory` ("" when text-only or none)

    @property
    def download_files(self) -> tuple[str, ...]:
        """The files the download Job fetches; empty: the whole repository (safetensors)."""
        return tuple(f for f in (self.gguf, self.mmproj) if f)

    @property
    def local(self) -> bool:
        """The weights are on a disk when the container starts: no download at start."""
        return self.mode is not WeightsMode.HUB

    def path(self, file: str) -> str:
        return f"{self.directory}/{file}"

    def describe(self, download_bytes: int) -> str:
        """One line for `gemma4-operator plan`: how the weights reach a new pod."""
        size = f"{download_bytes / 1e9:.1f} GB"
        return {
            WeightsMode.HUB: f"each pod downloads {size} from the Hub at start",
            WeightsMode.CACHE: f"a download Job fills the cache PVC once ({size}); pods load {self.directory} "
                               "offline",
            WeightsMode.VOLUME: f"mounted read-only at {self.directory} (pvc://)",
            WeightsMode.IMAGE: f"an image volume at {self.directory}, pulled once per node by the container runtime",
        }[self.mode]


DRAFTER_SUBDIRECTORY = "mtp-drafter"


def drafter_directory(weights: Weights) -> str:
    """Where the download Job puts the speculative-decoding drafter: inside the checkpoint's directory, so that
    pruning older checkpoints keeps it and a new checkpoint replaces both (the engine loads the checkpoint's own
    files from the top level only)."""
    return f"{weights.directory}/{DRAFTER_SUBDIRECTORY}"


def cache_directory(repo: str, revision: str) -> str:
    """One directory per checkpoint: a new repository or revision is a new download, never a mix."""
    return f"{MODELS_DIR}/{repo}/{revision or 'main'}"


def locate(source: SourceRef | None, checkpoint: Checkpoint | None, *, cache: bool, text_only: bool) -> Weights:
    """How this plan's weights reach the pod. ``cache``: spec.storage.modelCache is set; ``checkpoint``: the
    plan's, or the catalog's that a GGUF source names (hf://REPO:QUANT), for its file names."""
    gguf = (checkpoint.file or "") if checkpoint is not None else ""
    mmproj = (checkpoint.mmproj or "") if checkpoint is not None and not text_only else ""
    if source is not None and source.scheme == "pvc":
        return Weights(WeightsMode.VOLUME, directory=source.local_path)
    if source is not None and source.scheme == "oci":
        return Weights(WeightsMode.IMAGE, directory=MODEL_MOUNT, gguf=gguf, mmproj=mmproj)
    repo = source.repo if source is not None else (checkpoint.repo if checkpoint is not None else "")
    revision = source.revision if source is not None else ""
    # A GGUF repository named by a quant tag the catalog does not know: only llama.cpp's -hf resolves the tag
    # to a file, so its pods download into the cache themselves.
    if not cache or (source is not None and source.quant_tag and not gguf):
        return Weights(WeightsMode.HUB, repo=repo)
    return Weights(WeightsMode.CACHE, repo=repo, revision=revision, directory=cache_directory(repo, revision),
                   gguf=gguf, mmproj=mmproj)
