"""Pods the namespace's admission refuses reach status at once: the Deployment's ReplicaFailure condition and the
download Job's FailedCreate Event become Degraded FailedCreate with the API server's words."""

from __future__ import annotations

from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.observe.admission import deployment_create_failure, job_create_failure, job_may_be_refused
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.reconcile import status as observe
from gemma4_operator.render.children import Owner

OWNER = Owner("chat", "ml", "uid-1")
NOW = "2026-12-07T21:00:00Z"
# the refusal of a root spec's pod as kube-apiserver 1.37.2 words it (ReplicaFailure of tests/e2e/test_pod_security.py)
POD_SECURITY_REFUSAL = (
    'pods "chat-6f7c9d8b5-x2x9q" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true '
    "(pod must not set securityContext.runAsNonRoot=false), runAsUser=0 (pod must not set runAsUser=0)")
QUOTA_REFUSAL = ('pods "chat-6f7c9d8b5-x2x9q" is forbidden: exceeded quota: gpu-quota, requested: '
                 "requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=4, limited: requests.nvidia.com/gpu=4")
ADVICE = ("; the namespace enforces a Pod Security level these pods do not meet: remove the serving.securityContext "
          "settings that run as root (the defaults pass \"restricted\"), or label the namespace "
          "pod-security.kubernetes.io/enforce with a level that allows them")


def deployment(*conditions: dict[str, Any]) -> dict[str, Any]:
    """A Deployment whose ReplicaSet cannot create pods, as the Deployment controller reports it."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": "ml", "generation": 1},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 0, "unavailableReplicas": 1, "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                 "message": "Deployment does not have minimum availability."},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                 "message": 'ReplicaSet "chat-6f7c9d8b5" is progressing.'},
                *conditions]}}


def replica_failure(message: str) -> dict[str, Any]:
    return {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message,
            "lastUpdateTime": NOW, "lastTransitionTime": NOW}


def test_a_replica_failure_is_degraded_failed_create_with_the_admission_message() -> None:
    refused = deployment_create_failure(deployment(replica_failure(POD_SECURITY_REFUSAL)))
    assert refused is not None
    assert refused.reason == "FailedCreate"
    assert refused.message == f"Deployment chat cannot create its pods: {POD_SECURITY_REFUSAL}{ADVICE}"


def test_another_refusal_is_reported_without_pod_security_advice() -> None:
    refused = deployment_create_failure(deployment(replica_failure(QUOTA_REFUSAL)))
    assert refused is not None and refused.message == f"Deployment chat cannot create its pods: {QUOTA_REFUSAL}"


def test_no_or_a_resolved_replica_failure_is_no_refusal() -> None:
    assert deployment_create_failure(None) is None
    assert deployment_create_failure(deployment()) is None
    assert deployment_create_failure(deployment({**replica_failure(QUOTA_REFUSAL), "status": "False"})) is None


def test_status_turns_degraded_at_once_not_after_the_progress_deadline() -> None:
    s = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"},
                                             "serving": {"securityContext": {"runAsUser": 0}}})
    p = plan(s, ClusterFacts(frozenset({"nvidia-l4"})))
    new = observe.compute_status(owner=OWNER, generation=1, spec=s, outcome=observe.PlanOutcome(p),
                                 deployment=deployment(replica_failure(POD_SECURITY_REFUSAL)), pods=[],
                                 previous={}, now=NOW)
    degraded = observe.condition(new, observe.DEGRADED)
    assert new["phase"] == "Degraded"
    assert degraded is not None and degraded["status"] == "True" and degraded["reason"] == "FailedCreate"
    assert POD_SECURITY_REFUSAL in degraded["message"]
    events = observe.transition_events({}, new, observe.PlanOutcome(p))
    assert any(e.type == "Warning" and e.reason == "FailedCreate" and POD_SECURITY_REFUSAL in e.message
               for e in events)


JOB_UID = "5d1c8e0a-job"


def job(**status: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "chat-download", "namespace": "ml", "uid": JOB_UID},
            "status": {"startTime": NOW, **status}}


def failed_create(message: str, *, uid: str = JOB_UID, at: str = NOW) -> dict[str, Any]:
    """The Event the Job controller records when it cannot create a pod."""
    return {"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "FailedCreate",
            "message": f"Error creating: {message}", "count": 3, "firstTimestamp": NOW, "lastTimestamp": at,
            "source": {"component": "job-controller"},
            "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "namespace": "ml",
                               "name": "chat-download", "uid": uid}}


JOB_REFUSAL = POD_SECURITY_REFUSAL.replace("chat-6f7c9d8b5-x2x9q", "chat-download-8kq2v")


def test_a_job_whose_pods_are_refused_is_degraded_with_the_event_message() -> None:
    refused = job_create_failure(job(active=0), [], [failed_create(JOB_REFUSAL)])
    assert refused is not None and refused.reason == "FailedCreate"
    assert refused.message == f"Job chat-download cannot create its pods: {JOB_REFUSAL}{ADVICE}"


def test_the_newest_event_of_this_job_wins_and_an_earlier_jobs_events_are_ignored() -> None:
    events = [failed_create(QUOTA_REFUSAL, at="2026-12-07T20:00:00Z"), failed_create(JOB_REFUSAL),
              failed_create("an older Job's refusal", uid="old-uid", at="2026-12-07T22:00:00Z")]
    refused = job_create_failure(job(), [], events)
    assert refused is not None and JOB_REFUSAL in refused.message
    assert job_create_failure(job(), [], [failed_create(JOB_REFUSAL, uid="old-uid")]) is None


def test_a_job_with_pods_or_finished_is_not_looked_at() -> None:
    download_pod = {"metadata": {"name": "chat-download-8kq2v"}, "status": {"phase": "Pending"}}
    assert job_may_be_refused(job(), [])
    assert not job_may_be_refused(job(), [download_pod])
    assert not job_may_be_refused(job(active=1), [])
    assert not job_may_be_refused(job(conditions=[{"type": "Complete", "status": "True"}]), [])
    assert job_create_failure(job(), [download_pod], [failed_create(JOB_REFUSAL)]) is None
    assert job_create_failure(None, [], [failed_create(JOB_REFUSAL)]) is None
