"""Pods the API server refused to create: the namespace's admission (Pod Security, a quota, a policy webhook)
rejected the pods that the Deployment's ReplicaSet or the download Job asked for. Nothing else reports it
until the Deployment's progress deadline (ten minutes), so status says it at once, with the server's words.

- The ReplicaSet controller sets ``ReplicaFailure`` (reason ``FailedCreate``, the server's refusal as message)
  on the ReplicaSet and the Deployment controller copies it to the Deployment's conditions
  (kubernetes/kubernetes pkg/controller/replicaset/replica_set_utils.go calculateStatus,
  pkg/controller/deployment/sync.go syncDeploymentStatus / getReplicaFailures).
- The Job controller sets no condition; it records a Warning Event ``FailedCreate`` "Error creating: ERR" on
  the Job (pkg/controller/controller_utils.go RealPodControl.createPods) and retries with a back-off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

Obj = Mapping[str, Any]
FAILED_CREATE = "FailedCreate"
REPLICA_FAILURE = "ReplicaFailure"
POD_SECURITY = "violates PodSecurity"  # pod-security-admission's refusal text
EVENT_PREFIX = "Error creating: "


@dataclasses.dataclass(frozen=True)
class CreateRefusal:
    """A Degraded reason and message: which object could not create its pods, and the server's refusal."""

    reason: str
    message: str


def _advice(refusal: str) -> str:
    if POD_SECURITY not in refusal:
        return ""
    return ("; the namespace enforces a Pod Security level these pods do not meet: remove the "
            "serving.securityContext settings that run as root (the defaults pass \"restricted\"), or label the "
            "namespace pod-security.kubernetes.io/enforce with a level that allows them")


def _refusal(kind: str, name: str, refusal: str) -> CreateRefusal:
    return CreateRefusal(FAILED_CREATE, f"{kind} {name} cannot create its pods: {refusal}{_advice(refusal)}")


def deployment_create_failure(deployment: Obj | None) -> CreateRefusal | None:
    """The Deployment's ReplicaFailure condition (copied from its ReplicaSet), when True."""
    if deployment is None:
        return None
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == REPLICA_FAILURE and cond.get("status") == "True":
            name = str((deployment.get("metadata") or {}).get("name") or "?")
            return _refusal("Deployment", name, str(cond.get("message") or cond.get("reason") or FAILED_CREATE))
    return None


def job_may_be_refused(job: Obj | None, pods: Sequence[Obj]) -> bool:
    """Whether a refusal is worth looking for: the Job runs (not finished) and has no pod, active or past. The
    shell reads the Job's events only then."""
    if job is None or pods:
        return False
    status = job.get("status") or {}
    finished = any(c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
                   for c in status.get("conditions") or [])
    return not finished and not any(int(status.get(k) or 0) for k in ("active", "succeeded", "failed"))


def _event_time(event: Obj) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "")


def job_create_failure(job: Obj | None, pods: Sequence[Obj], events: Sequence[Obj]) -> CreateRefusal | None:
    """The newest FailedCreate Event about this Job (its uid: not an earlier Job of the same name), while the
    Job has no pod."""
    if job is None or not job_may_be_refused(job, pods):
        return None
    meta = job.get("metadata") or {}
    mine = [e for e in events if e.get("reason") == FAILED_CREATE
            and (e.get("involvedObject") or {}).get("uid") == meta.get("uid")]
    if not mine:
        return None
    message = str(max(mine, key=_event_time).get("message") or "")
    return _refusal("Job", str(meta.get("name") or "?"), message.removeprefix(EVENT_PREFIX))
