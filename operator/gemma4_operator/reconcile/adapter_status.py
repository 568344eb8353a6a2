"""status.adapters, status.adaptersReady and the AdaptersReady condition, pure: from spec.model.adapters and what
the download Job reported for each adapter (the preflight's verdict, or why it could not be fetched); and the
adapters the engine may be given (``served``): a refused or failed adapter is never passed to the engine, so the
others serve."""

from __future__ import annotations

import dataclasses

from gemma4_operator.api import AdapterStatus, Gemma4DeploymentSpec
from gemma4_operator.planner.lora import AdapterFacts
from gemma4_operator.planner.sources import parse_source
from gemma4_operator.weights.preflight import AdapterVerdict

# The Job's verdicts that are a fetch's failure (weights/outcome.py fetch_failure), not the preflight's refusal.
FETCH_FAILURES = frozenset({"GatedRepository", "RepositoryNotFound", "RevisionNotFound", "FileNotFound",
                            "DownloadFailed"})


@dataclasses.dataclass(frozen=True)
class AdapterState:
    """What status says of the adapters; ``served``: the names the engine's flags may name."""

    adapters: tuple[AdapterStatus, ...]
    ready: str  # "2/3"
    ok: bool
    reason: str
    message: str
    served: frozenset[str]


def _phase(verdict: AdapterVerdict) -> str:
    if verdict.accepted:
        return "Ready"
    return "Failed" if verdict.reason in FETCH_FAILURES else "Refused"


def _status(name: str, verdict: AdapterVerdict | None, waiting: str, mounted: bool) -> AdapterStatus:
    if mounted:  # pvc:// and oci:// adapters are mounted, not fetched: nothing reads them before the engine does
        return AdapterStatus(name=name, phase="Ready", reason="mounted read-only; the engine checks it at load")
    if verdict is None:
        return AdapterStatus(name=name, phase="Downloading" if waiting == "Downloading" else "Pending",
                             reason=f"{waiting}: fetched and checked by the download Job with the checkpoint")
    reason = "" if verdict.accepted else f"{verdict.reason}: {verdict.message}"
    return AdapterStatus(name=name, phase=_phase(verdict), rank=verdict.rank,
                         target_modules=list(verdict.target_modules), reason=reason)


def adapter_state(spec: Gemma4DeploymentSpec, verdicts: tuple[AdapterVerdict, ...], *, fetched: bool,
                  waiting: str = "Pending") -> AdapterState | None:
    """None without adapters. ``verdicts``: the current download Job's; ``fetched``: that Job has succeeded
    (its verdicts are final); ``waiting``: Pending or Downloading, while it has not. An adapter the Job's
    report does not name (cut to fit 4096 bytes) is Pending, and not served."""
    if not spec.model.adapters:
        return None
    by_name = {v.name: v for v in verdicts}
    statuses = tuple(_status(a.name, by_name.get(a.name) if fetched else None, waiting,
                             parse_source(a.uri).scheme != "hf") for a in spec.model.adapters)
    ready = [s.name for s in statuses if s.phase == "Ready"]
    bad = [s for s in statuses if s.phase in ("Refused", "Failed")]
    total = len(statuses)
    if bad:
        named = "; ".join(f"{s.name} {s.phase.lower()} ({s.reason})" for s in bad)
        reason, message = "AdaptersRefused", f"{len(ready)} of {total} adapters serve; {named}"
    elif len(ready) < total:
        reason, message = "AdaptersPending", (f"{total - len(ready)} of {total} adapters are not fetched and "
                                              "checked yet")
    else:
        reason, message = "AdaptersServed", f"all {total} adapters passed the preflight"
    return AdapterState(statuses, f"{len(ready)}/{total}", not bad and len(ready) == total, reason, message,
                        frozenset(ready))


def adapter_facts(spec: Gemma4DeploymentSpec, verdicts: tuple[AdapterVerdict, ...]) -> AdapterFacts:
    """The plan's input from a succeeded download Job's verdicts: the served adapters' ranks and tower targets,
    and the adapters not to give the engine (``AdapterState.served``'s complement: refused, failed, or missing
    from the Job's report)."""
    state = adapter_state(spec, verdicts, fetched=True)
    if state is None:
        return AdapterFacts()
    served = [v for v in verdicts if v.name in state.served]
    return AdapterFacts(ranks=tuple(v.rank for v in served if v.rank is not None),
                        towers=any(v.towers for v in served),
                        refused=frozenset(a.name for a in spec.model.adapters) - state.served)
