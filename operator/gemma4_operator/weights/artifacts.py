"""What the download Job fetches, verifies and reports: a list of artifacts (the checkpoint, the LoRA adapters;
a kind is a name and a place), handed to ``gemma4-operator download`` (cli/download.py) as one JSON manifest,
and the termination report it writes back (read by weights/outcome.py). Pure.

Adding a kind of artifact: a member of :class:`Kind`, its directory in :data:`KIND_DIRS`, and the code that
builds its :class:`Artifact` from the plan (render/download.py)."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gemma4_operator.planner.weights import CACHE_MOUNT, MODELS_DIR
from gemma4_operator.weights.preflight import AdapterRules, AdapterVerdict

MAX_REPORT_BYTES = 4096  # the kubelet keeps at most 4096 bytes of a termination message
MAX_MESSAGE = 300  # one adapter's or one error's words in the report, before any shortening to fit


class Kind(enum.StrEnum):
    CHECKPOINT = "checkpoint"
    DRAFTER = "drafter"  # speculative decoding's MTP drafter, inside the checkpoint's directory
    ADAPTER = "adapter"


# Where each kind lives under the cache volume's root; a checkpoint's directory is ROOT/models/REPO/REVISION
# (planner/weights.py cache_directory), an adapter's ROOT/adapters/NAME. The Job owns these directories: it
# removes what is in them and not in its manifest.
KIND_DIRS = {Kind.CHECKPOINT: MODELS_DIR.removeprefix(f"{CACHE_MOUNT}/"),
             Kind.DRAFTER: MODELS_DIR.removeprefix(f"{CACHE_MOUNT}/"), Kind.ADAPTER: "adapters"}


@dataclass(frozen=True)
class Artifact:
    """One thing to fetch from the Hub: ``files`` empty means the whole repository. ``token_env``: the
    environment variable that holds its token (from a Secret through secretKeyRef), "" for none."""

    kind: Kind
    name: str
    repo: str
    local_dir: str
    revision: str = ""
    files: tuple[str, ...] = ()
    token_env: str = ""


@dataclass(frozen=True)
class Manifest:
    """The download Job's whole task. ``variant``: the catalog variant the preflight checks against;
    ``rules``: what the engine accepts of an adapter."""

    variant: str
    rules: AdapterRules
    artifacts: tuple[Artifact, ...] = ()
    cache_root: str = CACHE_MOUNT

    def of(self, kind: Kind) -> tuple[Artifact, ...]:
        return tuple(a for a in self.artifacts if a.kind is kind)

    def directory(self, kind: Kind) -> str:
        return f"{self.cache_root}/{KIND_DIRS[kind]}"

    def to_json(self) -> str:
        return json.dumps({"variant": self.variant, "rules": asdict(self.rules), "cacheRoot": self.cache_root,
                           "artifacts": [{**asdict(a), "files": list(a.files)} for a in self.artifacts]},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        artifacts = tuple(Artifact(**{**a, "kind": Kind(a["kind"]), "files": tuple(a["files"])})
                          for a in data["artifacts"])
        return cls(data["variant"], AdapterRules(**data["rules"]), artifacts, data["cacheRoot"])


@dataclass(frozen=True)
class FetchError:
    """Why an artifact could not be fetched: huggingface_hub's exception class and the HTTP status it carries
    (None for an error without one, e.g. the disk's), or the OS's errno."""

    artifact: str
    type: str
    message: str
    status: int | None = None
    errno: int | None = None


@dataclass
class Report:
    """The termination report. ``error``: the checkpoint's failure (the Job fails); ``adapters``: one verdict
    per adapter (a fetch failure is a verdict too: the others still serve)."""

    exit_code: int
    bytes: int = 0
    seconds: float = 0.0
    error: FetchError | None = None
    adapters: list[AdapterVerdict] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def _data(self, message_limit: int | None) -> dict[str, Any]:
        """The report; ``message_limit`` None: the verdicts reduced to name, reason and rank."""
        def cut(text: str) -> str:
            limit = message_limit or 0
            return text if len(text) <= limit else text[: limit - 1] + "…" if limit > 1 else ""

        error = None if self.error is None else {**asdict(self.error), "message": cut(self.error.message)}
        adapters = [{"name": v.name, "reason": v.reason, "rank": v.rank} if message_limit is None else
                    {"name": v.name, "reason": v.reason, "message": cut(v.message), "rank": v.rank,
                     "targets": list(v.target_modules), "towers": v.towers} for v in self.adapters]
        return {"exitCode": self.exit_code, "bytes": self.bytes, "seconds": round(self.seconds, 3), "error": error,
                "adapters": adapters, "log": "\n".join(self.log)}

    def to_json(self) -> str:
        """At most MAX_REPORT_BYTES: the oldest log lines go first, then the messages get shorter, then the
        verdicts keep only name, reason and rank (the API's adapter count fits so), then the last verdicts go
        (``truncated``: an adapter without a verdict is not served)."""
        limits: list[int | None] = [MAX_MESSAGE, 150, 80, 40, 0, None]
        data = self._data(limits.pop(0))
        log = list(self.log)
        while True:
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            if len(text.encode("utf-8")) <= MAX_REPORT_BYTES:
                return text
            if log:
                log.pop(0)
                data["log"] = "\n".join(log)
            elif limits:
                data = {**self._data(limits.pop(0)), "log": ""}
            else:
                data["adapters"].pop()
                data["truncated"] = True


def verdict_from(data: Mapping[str, Any]) -> AdapterVerdict | None:
    """One adapter's verdict from the report, None when it is not one."""
    name, reason = data.get("name"), data.get("reason")
    if not isinstance(name, str) or not isinstance(reason, str):
        return None
    rank = data.get("rank")
    targets = data.get("targets")
    return AdapterVerdict(name, reason, str(data.get("message") or ""),
                          rank if isinstance(rank, int) and not isinstance(rank, bool) else None,
                          tuple(str(t) for t in targets) if isinstance(targets, list) else (),
                          data.get("towers") is True)


def verdicts_from(items: Any) -> tuple[AdapterVerdict, ...]:
    found = (verdict_from(i) for i in items if isinstance(i, Mapping)) if isinstance(items, Sequence) else ()
    return tuple(v for v in found if v is not None)
