"""status.model and the ModelReady condition, pure: from the plan, the download Job and its pods (with
storage.modelCache), or the serving Deployment (weights fetched or mounted by each pod)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec, ModelStatus
from gemma4_operator.planner.plan import Plan
from gemma4_operator.reconcile.status import get_path
from gemma4_operator.render.children import cache_size
from gemma4_operator.render.download import (
    CHECKPOINT_ANNOTATION,
    checkpoint_id,
    download_id,
    needs_download,
    runs_download_job,
)
from gemma4_operator.weights.outcome import DownloadOutcome, read_outcome
from gemma4_operator.weights.preflight import AdapterVerdict

Obj = Mapping[str, Any]
DOWNLOAD_CONTAINER = "download"


@dataclasses.dataclass(frozen=True)
class ModelState:
    """status.model, and the ModelReady condition's reason and message."""

    status: ModelStatus
    reason: str
    message: str
    verdicts: tuple[AdapterVerdict, ...] = ()  # the download Job's adapter preflight, once it has succeeded
    judged: bool | None = None  # the adapters-only Job (no cache) has succeeded; None: the Job is the model's

    @property
    def verdicts_final(self) -> bool:
        return self.ready if self.judged is None else self.judged

    @property
    def ready(self) -> bool:
        return self.status.phase == "Ready"

    @property
    def failed(self) -> bool:
        return self.status.phase == "Failed"

    @property
    def downloading(self) -> bool:
        return self.status.phase == "Downloading"


def current_job(wanted: str, job: Obj | None) -> Obj | None:
    """The download Job, when it is the one that fetches ``wanted`` (render.download.download_id: the checkpoint
    and the adapters); an older one is being replaced."""
    if job is None or get_path(job, "metadata", "annotations", CHECKPOINT_ANNOTATION) != wanted:
        return None
    return None if get_path(job, "metadata", "deletionTimestamp") else job


def job_finished(job: Obj, kind: str) -> bool:
    """The Job's own terminal condition (Complete or Failed) is True."""
    return any(c.get("type") == kind and c.get("status") == "True" for c in get_path(job, "status", "conditions") or [])


def job_succeeded(job: Obj) -> bool:
    return job_finished(job, "Complete") or int(get_path(job, "status", "succeeded") or 0) >= 1


@dataclasses.dataclass(frozen=True)
class Preflight:
    """A succeeded download Job's adapter verdicts, and what that Job fetched (its download_id annotation): the
    plan uses them only while the plan still asks for that download."""

    fetched: str
    verdicts: tuple[AdapterVerdict, ...]


def preflight(job: Obj | None, pods: Sequence[Obj]) -> Preflight | None:
    """The verdicts of the download Job once it has succeeded (``pods``: its pods), else None."""
    if job is None or get_path(job, "metadata", "deletionTimestamp") or not job_succeeded(job):
        return None
    last = _last_terminated(pods)
    if last is None:
        return None
    outcome = read_outcome(str(last.get("message") or ""), exit_code=int(last.get("exitCode") or 0), repo="",
                           expected_bytes=0, cache_size="")
    fetched = str(get_path(job, "metadata", "annotations", CHECKPOINT_ANNOTATION) or "")
    return Preflight(fetched, outcome.adapters) if outcome.succeeded else None


def _last_terminated(pods: Sequence[Obj]) -> Mapping[str, Any] | None:
    """The newest finished download container's state.terminated (its JSON termination message)."""
    finished = []
    for pod in pods:
        for cs in get_path(pod, "status", "containerStatuses") or []:
            terminated = get_path(cs, "state", "terminated")
            if cs.get("name") == DOWNLOAD_CONTAINER and isinstance(terminated, Mapping):
                finished.append((str(terminated.get("finishedAt") or ""), terminated))
    return max(finished, key=lambda f: f[0])[1] if finished else None


def _last_outcome(plan: Plan, cache: str, pods: Sequence[Obj]) -> DownloadOutcome | None:
    """What the newest finished download container reported (the wrapper's JSON termination message)."""
    last = _last_terminated(pods)
    if last is None:
        return None
    return read_outcome(str(last.get("message") or ""), exit_code=int(last.get("exitCode") or 0),
                        repo=plan.weights.repo, expected_bytes=plan.download_bytes, cache_size=cache,
                        revision=plan.weights.revision)


def _base(plan: Plan, phase: str, **extra: Any) -> ModelStatus:
    return ModelStatus(phase=phase, mode=plan.weights.mode.value, source=plan.model_ref,
                       checkpoint=checkpoint_id(plan) if needs_download(plan) else plan.model_ref,
                       bytes=plan.download_bytes, **extra)


def _from_job(plan: Plan, spec: Gemma4DeploymentSpec, job: Obj | None, pods: Sequence[Obj]) -> ModelState:
    job, cache = current_job(download_id(plan, spec), job), cache_size(spec, plan)
    if job is None:
        return ModelState(_base(plan, "Pending"), "DownloadPending",
                          "the download Job is being created (a previous one is replaced first)")
    times = {"started_at": str(get_path(job, "status", "startTime") or ""),
             "finished_at": str(get_path(job, "status", "completionTime") or "")}
    outcome = _last_outcome(plan, cache, pods)
    gib = plan.download_bytes / 2**30
    if job_succeeded(job):
        rate = outcome.throughput_mbps if outcome is not None and outcome.succeeded else None
        return ModelState(_base(plan, "Ready", throughput_mbps=round(rate, 1) if rate else None, **times),
                          "Downloaded", f"{checkpoint_id(plan)} is on the cache PVC ({gib:.1f} GiB expected)",
                          outcome.adapters if outcome is not None and outcome.succeeded else ())
    if job_finished(job, "Failed"):
        said = next((str(c.get("message") or "") for c in get_path(job, "status", "conditions") or []
                     if c.get("type") == "Failed"), "")
        reason, message = (outcome.reason, outcome.message) if outcome is not None and not outcome.succeeded else (
            "DownloadFailed", said or "the download Job failed")
        return ModelState(_base(plan, "Failed", **times), reason,
                          f"{message} (delete Job {get_path(job, 'metadata', 'name')} to retry)")
    retrying = f"; the last attempt failed: {outcome.message}" if outcome is not None and not outcome.succeeded else ""
    return ModelState(_base(plan, "Downloading", **times), "Downloading",
                      f"downloading {checkpoint_id(plan)} ({gib:.1f} GiB) into the cache PVC; the serving "
                      f"Deployment starts when it finishes{retrying}")


def _from_pods(plan: Plan, deployment: Obj | None, loading: int) -> ModelState:
    """Without a download Job: the weights are ready once a serving pod has loaded them."""
    ready = int(get_path(deployment, "status", "readyReplicas") or 0)
    if ready >= 1:
        return ModelState(_base(plan, "Ready"), "Loaded", f"{ready} serving pods have loaded {plan.model_ref}")
    if loading and not plan.weights.local:
        return ModelState(_base(plan, "Downloading"), "DownloadingPerPod",
                          f"each pod downloads {plan.model_ref} ({plan.download_bytes / 2**30:.1f} GiB) at start")
    return ModelState(_base(plan, "Pending"), "WaitingForPods", "no serving pod has loaded the weights yet")


def model_state(plan: Plan, spec: Gemma4DeploymentSpec, job: Obj | None, download_pods: Sequence[Obj],
                deployment: Obj | None, loading: int) -> ModelState:
    """``loading``: the serving pods running but not ready. The spec gives the PVC's size for a disk-full
    message. Without the cache, an adapters-only Job's verdicts ride on the pods' state."""
    if needs_download(plan):
        return _from_job(plan, spec, job, download_pods)
    state = _from_pods(plan, deployment, loading)
    if not runs_download_job(spec, plan):
        return state
    judged = preflight(current_job(download_id(plan, spec), job), download_pods)
    return dataclasses.replace(state, verdicts=judged.verdicts if judged is not None else (),
                               judged=judged is not None)
