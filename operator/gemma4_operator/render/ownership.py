"""Which existing objects the operator may write as a Gemma4Deployment's children: only its own.

A tenant who may create Services, PodDisruptionBudgets, PVCs or Jobs in a namespace can give one a child's name
(``NAME``, ``NAME-model-cache``, ``NAME-download``) before or after the Gemma4Deployment exists. A forced
server-side apply would take such an object over: overwrite the fields the operator renders (a Service's
selector is atomic, so its traffic would move to the engine pods) and add the Gemma4Deployment as its
controller, so the garbage collector deletes it with the object. So an existing object is written only when it
is ours; any other is a name conflict: left untouched and reported (``Degraded``, reason ``NameConflict``).

Ours means its controller ownerReference names this Gemma4Deployment's uid (every child is rendered with one).
The one exception is the model-cache PVC: with ``retainPolicy: Retain`` (the default) it is rendered without an
ownerReference so that it outlives its object, and a re-created object of the same name reuses the downloaded
weights (README "Model weights"). Such a PVC has no controller and carries the labels the operator put on it
when it created it: ``app.kubernetes.io/managed-by=gemma4-operator`` and ``app.kubernetes.io/instance=NAME``.
Labels are not proof of who created an object (anyone who may write PVCs in the namespace can set them), but a
PVC labelled so is offered to the Gemma4Deployment NAME as its cache by whoever labelled it, and a PVC nobody
offered is never taken. A PVC controlled by another object is never ours.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from gemma4_operator.render.children import INSTANCE_LABEL, MANAGER

_Obj = TypeVar("_Obj", bound=Mapping[str, Any])

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
NAME_CONFLICT = "NameConflict"  # the Degraded reason (and the Warning event's)
# Children that are rendered without an ownerReference when they must outlive their object (see above).
RETAINED_KINDS = frozenset({"PersistentVolumeClaim"})

Ident = tuple[str, str]  # (kind, name) of a child


@dataclass(frozen=True)
class NameConflict:
    """An existing object with a child's name that is not this Gemma4Deployment's."""

    kind: str
    name: str
    controller: str = ""  # "Kind/name" of the object that controls it; empty when nothing does
    instance: str = ""  # the Gemma4Deployment's name (for the label hint of a cache PVC)

    def describe(self) -> str:
        what = f"{self.kind}/{self.name} already exists"
        if self.controller:
            return f"{what} and is controlled by {self.controller}"
        hint = (f" (to use it as the model cache, label it {MANAGED_BY_LABEL}={MANAGER} and "
                f"{INSTANCE_LABEL}={self.instance})") if self.kind in RETAINED_KINDS else ""
        return f"{what} and was not created by this Gemma4Deployment (it has no controller){hint}"


def controller_reference(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller"):
            return ref
    return None


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    ref = controller_reference(obj)
    return str(ref.get("uid")) if ref is not None else None


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether ``uid`` is the object's controller."""
    return controller_uid(obj) == uid


def owned_child(live: Iterable[_Obj], kind: str, uid: str, name: str | None = None) -> _Obj | None:
    """The first of ``live`` of ``kind`` (and ``name``, where an object has several of a kind: the serving
    Deployment beside the endpoint picker's) that ``uid`` controls."""
    return next((c for c in live if c.get("kind") == kind and owned_by(c, uid)
                 and (name is None or (c.get("metadata") or {}).get("name") == name)), None)


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _retained_cache_of(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """A PVC without a controller that carries the operator's labels for this object (see the module's doc)."""
    instance = _labels(desired).get(INSTANCE_LABEL)
    labels = _labels(live)
    return (desired.get("kind") in RETAINED_KINDS and controller_reference(live) is None and bool(instance)
            and labels.get(MANAGED_BY_LABEL) == MANAGER and labels.get(INSTANCE_LABEL) == instance)


def name_conflict(desired: Mapping[str, Any], live: Mapping[str, Any] | None, owner_uid: str) -> NameConflict | None:
    """The conflict when ``live`` (the object the API server holds under the name of the rendered child
    ``desired``) is not this Gemma4Deployment's (uid ``owner_uid``); None when there is none or it is ours.
    An object being deleted is judged like any other: it is not ours to write while it goes."""
    if live is None or owned_by(live, owner_uid) or _retained_cache_of(desired, live):
        return None
    ref = controller_reference(live)
    meta = desired.get("metadata") or {}
    return NameConflict(kind=str(desired.get("kind", "")), name=str(meta.get("name", "")),
                        controller=f"{ref.get('kind', '?')}/{ref.get('name', '?')}" if ref is not None else "",
                        instance=str(_labels(desired).get(INSTANCE_LABEL, "")))


def still_conflicting(previous: Mapping[Ident, NameConflict], checked: Collection[Ident],
                      found: Mapping[Ident, NameConflict], rendered: Iterable[Ident]) -> dict[Ident, NameConflict]:
    """An object's conflicts after a reconcile that looked at the children ``checked``: those it ``found``
    there, and the earlier ones of the children it did not look at (a pod event looks at none, a child's event
    at that child); none for a child that is no longer rendered."""
    wanted = set(rendered)
    kept = {ident: c for ident, c in previous.items() if ident not in checked and ident in wanted}
    return {**kept, **{ident: c for ident, c in found.items() if ident in wanted}}


def conflict_message(conflicts: Iterable[NameConflict]) -> str:
    """The Degraded message: each object, who controls it, and what to do."""
    ordered = sorted(conflicts, key=lambda c: (c.kind, c.name))
    them = "them" if len(ordered) > 1 else "it"
    return (f"{'; '.join(c.describe() for c in ordered)}: the operator leaves {them} untouched; delete or rename "
            f"{them}, or rename this Gemma4Deployment")
