"""Which existing objects the operator may write as children (render.ownership): only its own; any other
object with a child's name is a NameConflict, with the message a user reads in Degraded."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.config import OperatorConfig
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.render.ownership import NameConflict, conflict_message, name_conflict, still_conflicting

UID = "uid-1"
CPU = ClusterFacts(frozenset())
OURS = [{"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment", "name": "chat", "uid": UID,
         "controller": True, "blockOwnerDeletion": True}]
OUR_LABELS = {"app.kubernetes.io/managed-by": "gemma4-operator", "app.kubernetes.io/instance": "chat"}


def children(retain: str = "Retain") -> dict[str, dict[str, Any]]:
    """The rendered children of a CPU object with a model cache, by kind."""
    model = Gemma4Deployment.model_validate({
        "apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
        "metadata": {"name": "chat", "namespace": "ml"},
        "spec": {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"},
                 "storage": {"modelCache": {"retainPolicy": retain}}}})
    desired = rc.desired_state(model, UID, CPU, OperatorConfig())
    return {c["kind"]: c for c in desired.children}


def live(kind: str, name: str, *, owners: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None,
         deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ml", "uid": "live-uid"}
    if owners is not None:
        meta["ownerReferences"] = copy.deepcopy(owners)
    if labels is not None:
        meta["labels"] = dict(labels)
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T10:00:00Z"
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def controlled_by(kind: str, name: str, uid: str = "other-uid") -> list[dict[str, Any]]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": True}]


NO_CONTROLLER = "and was not created by this Gemma4Deployment (it has no controller)"
CACHE_HINT = (" (to use it as the model cache, label it app.kubernetes.io/managed-by=gemma4-operator and "
              "app.kubernetes.io/instance=chat)")


@pytest.mark.parametrize(("kind", "retain", "found", "described"), [
    # nothing there, or ours: no conflict
    ("Service", "Retain", None, None),
    ("Service", "Retain", live("Service", "chat", owners=OURS), None),
    ("Deployment", "Retain", live("Deployment", "chat", owners=OURS, deleting=True), None),
    # someone else's
    ("Service", "Retain", live("Service", "chat"), f"Service/chat already exists {NO_CONTROLLER}"),
    ("Service", "Retain", live("Service", "chat", labels=OUR_LABELS),  # labels count for the cache PVC only
     f"Service/chat already exists {NO_CONTROLLER}"),
    ("Service", "Retain", live("Service", "chat", owners=[{**OURS[0], "controller": False}]),
     f"Service/chat already exists {NO_CONTROLLER}"),  # an owner, but not the controller
    ("Service", "Retain", live("Service", "chat", owners=controlled_by("Deployment", "web")),
     "Service/chat already exists and is controlled by Deployment/web"),
    ("Service", "Retain", live("Service", "chat", owners=controlled_by("Deployment", "web"), deleting=True),
     "Service/chat already exists and is controlled by Deployment/web"),  # not ours to write while it goes
    ("Deployment", "Retain", live("Deployment", "chat", owners=[{**OURS[0], "uid": "uid-0"}]),  # a predecessor's
     "Deployment/chat already exists and is controlled by Gemma4Deployment/chat"),
    ("Job", "Retain", live("Job", "chat-download"), f"Job/chat-download already exists {NO_CONTROLLER}"),
    # the cache PVC: a retained one (no controller, the operator's labels for this name) is this object's
    ("PersistentVolumeClaim", "Retain", live("PersistentVolumeClaim", "chat-model-cache", labels=OUR_LABELS), None),
    ("PersistentVolumeClaim", "Delete", live("PersistentVolumeClaim", "chat-model-cache", labels=OUR_LABELS), None),
    ("PersistentVolumeClaim", "Retain", live("PersistentVolumeClaim", "chat-model-cache", owners=OURS), None),
    ("PersistentVolumeClaim", "Retain", live("PersistentVolumeClaim", "chat-model-cache"),
     f"PersistentVolumeClaim/chat-model-cache already exists {NO_CONTROLLER}{CACHE_HINT}"),
    ("PersistentVolumeClaim", "Retain", live("PersistentVolumeClaim", "chat-model-cache",
                                             labels={**OUR_LABELS, "app.kubernetes.io/instance": "other"}),
     f"PersistentVolumeClaim/chat-model-cache already exists {NO_CONTROLLER}{CACHE_HINT}"),
    ("PersistentVolumeClaim", "Retain", live("PersistentVolumeClaim", "chat-model-cache",
                                             labels={"app.kubernetes.io/instance": "chat"}),
     f"PersistentVolumeClaim/chat-model-cache already exists {NO_CONTROLLER}{CACHE_HINT}"),
    ("PersistentVolumeClaim", "Retain", live("PersistentVolumeClaim", "chat-model-cache", labels=OUR_LABELS,
                                             owners=controlled_by("StatefulSet", "db")),
     "PersistentVolumeClaim/chat-model-cache already exists and is controlled by StatefulSet/db"),
])
def test_name_conflict(kind: str, retain: str, found: dict[str, Any] | None, described: str | None) -> None:
    conflict = name_conflict(children(retain)[kind], found, UID)
    assert (conflict.describe() if conflict is not None else None) == described


def test_the_rendered_children_are_ours_as_the_api_server_returns_them() -> None:
    for retain in ("Retain", "Delete"):
        for child in children(retain).values():
            assert name_conflict(child, {**copy.deepcopy(child), "status": {}}, UID) is None, child["kind"]


SVC, PDB, DEP = ("Service", "chat"), ("PodDisruptionBudget", "chat"), ("Deployment", "chat")
SVC_CONFLICT, PDB_CONFLICT = NameConflict("Service", "chat"), NameConflict("PodDisruptionBudget", "chat", "X/y")


@pytest.mark.parametrize(("previous", "checked", "found", "rendered", "expected"), [
    ({SVC: SVC_CONFLICT}, set(), {}, [SVC, DEP], {SVC: SVC_CONFLICT}),  # a pod event looks at no child
    ({SVC: SVC_CONFLICT}, {DEP}, {}, [SVC, DEP], {SVC: SVC_CONFLICT}),  # a Deployment event
    ({SVC: SVC_CONFLICT}, {SVC, DEP}, {}, [SVC, DEP], {}),  # the Service's name is free again
    ({}, {SVC, DEP}, {SVC: SVC_CONFLICT}, [SVC, DEP], {SVC: SVC_CONFLICT}),
    ({PDB: PDB_CONFLICT}, set(), {}, [SVC, DEP], {}),  # scaled to one: no PDB is rendered any more
    ({PDB: PDB_CONFLICT}, {SVC}, {SVC: SVC_CONFLICT}, [SVC, PDB], {SVC: SVC_CONFLICT, PDB: PDB_CONFLICT}),
])
def test_conflicts_are_kept_for_the_children_a_reconcile_did_not_look_at(
        previous: dict[Any, NameConflict], checked: set[Any], found: dict[Any, NameConflict], rendered: list[Any],
        expected: dict[Any, NameConflict]) -> None:
    assert still_conflicting(previous, checked, found, rendered) == expected


def test_conflict_message() -> None:
    assert conflict_message([SVC_CONFLICT]) == (
        "Service/chat already exists and was not created by this Gemma4Deployment (it has no controller): the "
        "operator leaves it untouched; delete or rename it, or rename this Gemma4Deployment")
    assert conflict_message([SVC_CONFLICT, PDB_CONFLICT]) == (
        "PodDisruptionBudget/chat already exists and is controlled by X/y; Service/chat already exists and was not "
        "created by this Gemma4Deployment (it has no controller): the operator leaves them untouched; delete or "
        "rename them, or rename this Gemma4Deployment")
