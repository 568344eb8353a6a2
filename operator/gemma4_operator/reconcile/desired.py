"""Desired state, pure: parse the object, compute the desired children, decide what to write.

The kopf glue (``handlers``) gathers inputs and executes what this module decides. Zero writes
for an unchanged object rest on two checks per child, both against the live copy the watch (or
a read) delivered:

- the hash of the rendered child, stored on the child in ``serving.gemma4.dev/applied-hash``,
  changes whenever the desired state changes (also when a field is *dropped*, which a subset
  comparison cannot see), and
- the desired child must still be a subset of the live one (drift: someone edited a field the
  operator owns). Empty values match absent ones, lists of named items match by key, and
  quantities compare by value, so API-server defaulting and normalisation are not drift.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from gemma4_operator.api import Gemma4Deployment, validation_problems
from gemma4_operator.api.wire import parse_object
from gemma4_operator.autoscaling.activator import routes_to_activator
from gemma4_operator.config import OperatorConfig
from gemma4_operator.planner.cluster_facts import sticky_facts
from gemma4_operator.planner.lora import AdapterFacts
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan
from gemma4_operator.policy import check_policy
from gemma4_operator.reconcile.adapter_status import adapter_facts
from gemma4_operator.reconcile.model_status import Preflight, current_job, job_succeeded
from gemma4_operator.reconcile.status import get_path
from gemma4_operator.render.activator import is_activator_object, routed_pool, routed_service, scales_to_zero
from gemma4_operator.render.children import Owner, RenderOptions, UnrenderableError, render_all
from gemma4_operator.render.download import CHECKPOINT_ANNOTATION, NEEDS_WEIGHTS, download_id
from gemma4_operator.render.ownership import owned_by
from gemma4_operator.render.routing import RoutingRefusal, is_routing_child

HASH_ANNOTATION = "serving.gemma4.dev/applied-hash"
# Children that may stop being wanted while the object lives on. A PVC is never deleted by the
# operator: it holds downloaded weights and stays (retainPolicy Retain) or goes with the object.
DELETABLE_KINDS = frozenset({"PodDisruptionBudget", "ScaledObject", "Job", "NetworkPolicy"})
# A Job's pod template is immutable: a changed Job is deleted (its pods first) and created again.
REPLACED_KINDS = frozenset({"Job"})
MAX_BACKOFF_S = 60.0

K8sObject = dict[str, Any]


class InvalidObjectError(Exception):
    """The object cannot be parsed as a Gemma4Deployment (the API server's schema was bypassed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class ChildKey:
    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ChildKey:
        meta = obj.get("metadata") or {}
        return cls(str(obj.get("apiVersion", "")), str(obj.get("kind", "")),
                   str(meta.get("namespace", "")), str(meta.get("name", "")))


@dataclasses.dataclass(frozen=True)
class Desired:
    """What one object should look like: a plan and its children, or why there is none."""

    plan: Plan | None
    error: PlanError | None
    children: tuple[K8sObject, ...]
    routing_refusal: RoutingRefusal | None = None  # why the routing the spec asks for is not rendered

    def child(self, kind: str, name: str) -> K8sObject | None:
        for c in self.children:
            if c["kind"] == kind and c["metadata"]["name"] == name:
                return c
        return None



def parse_parent(body: Mapping[str, Any]) -> Gemma4Deployment:
    """The watched object as a model, or InvalidObjectError naming every bad field."""
    try:
        return parse_object(body)
    except ValidationError as e:
        raise InvalidObjectError("invalid Gemma4Deployment: " + "; ".join(validation_problems(e))) from e


def content_hash(obj: Mapping[str, Any]) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def with_hash(obj: K8sObject) -> K8sObject:
    """The child with the hash of its own content (computed without the annotation)."""
    meta = dict(obj["metadata"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != HASH_ANNOTATION}
    base = {**obj, "metadata": {**meta, "annotations": annotations} if annotations else
            {k: v for k, v in meta.items() if k != "annotations"}}
    return {**obj, "metadata": {**meta, "annotations": {**annotations, HASH_ANNOTATION: content_hash(base)}}}


def keep_accelerator(spec_accelerator: str, previous_status: Mapping[str, Any], generation: int) -> str | None:
    """The accelerator an ``auto`` object should stay on: the one of the plan in force, while the
    spec (generation) is the one that plan was made for."""
    if spec_accelerator != "auto" or previous_status.get("observedGeneration") != generation:
        return None
    previous = (previous_status.get("plan") or {}).get("accelerator")
    return str(previous) if previous else None


def desired_state(parent: Gemma4Deployment, uid: str, facts: ClusterFacts, config: OperatorConfig,
                  options: RenderOptions | None = None, *, keep: str | None = None,
                  preflight: Preflight | None = None) -> Desired:
    """Plan and render. ``keep`` (see :func:`keep_accelerator`) pins an unchanged auto object to
    the accelerator it runs on when the full cluster facts would move it elsewhere. ``preflight``: the succeeded
    download Job's adapter verdicts (model_status.preflight), which size the adapter slots and leave refused
    adapters out of the engine's flags. A spec the tenant policy refuses gets no plan (PolicyViolation)."""
    try:
        check_policy(parent.spec, config.tenant_policy, config.images.values())
        p = _plan(parent, facts, config, keep, preflight)
    except PlanError as e:
        return Desired(None, e, ())
    owner = Owner(parent.name, parent.namespace, uid)
    try:
        rendered, routing_refusal = render_all(owner, parent.spec, p, options)
    except UnrenderableError as e:
        return Desired(None, PlanError(str(e), ()), ())
    children = tuple(with_hash(c) for c in rendered)
    return Desired(p, None, children, routing_refusal)


def _plan(parent: Gemma4Deployment, facts: ClusterFacts, config: OperatorConfig, keep: str | None,
          preflight: Preflight | None) -> Plan:
    adapters = adapter_facts(parent.spec, preflight.verdicts) if preflight is not None else AdapterFacts()
    p = _plan_kept(parent, facts, config, keep, adapters)
    if adapters != AdapterFacts() and preflight is not None and download_id(p, parent.spec) != preflight.fetched:
        # The verdicts are of another download (an older checkpoint or adapter list): the new Job judges again.
        p = _plan_kept(parent, facts, config, keep, AdapterFacts())
    return p


def _plan_kept(parent: Gemma4Deployment, facts: ClusterFacts, config: OperatorConfig, keep: str | None,
               adapters: AdapterFacts) -> Plan:
    p = plan(parent.spec, facts, images=config.images, prices=config.prices, adapters=adapters)
    if keep is not None and p.accelerator.name != keep:
        pinned = sticky_facts(facts, keep)
        if pinned is not None:
            # When the pinned type no longer fits this spec, the full-facts plan stands.
            with contextlib.suppress(PlanError):
                p = plan(parent.spec, pinned, images=config.images, prices=config.prices, adapters=adapters)
    return p


def routed(desired: Desired, parent: Gemma4Deployment, deployment: Mapping[str, Any] | None) -> Desired:
    """The desired children with the object's Service (and its InferencePool, with routing) pointed at the
    activator while the live serving ``deployment`` has no ready replica, for an object that may scale to zero
    (render.activator)."""
    if desired.plan is None or not routes_to_activator(scales_to_zero(parent.spec), deployment):
        return desired
    switch = {("Service", parent.name): lambda c: routed_service(c, True), ("InferencePool", parent.name): routed_pool}
    children = tuple(with_hash(switch[key](c)) if (key := (c["kind"], c["metadata"]["name"])) in switch else c
                     for c in desired.children)
    return dataclasses.replace(desired, children=children)


# ---------------------------------------------------------------------------------------
# desired vs live
# ---------------------------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _quantity(value: str) -> Decimal | None:
    suffixes: dict[str, int | Decimal] = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
                "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "m": Decimal("0.001")}
    number, factor = value, Decimal(1)
    for suffix, multiplier in suffixes.items():
        if value.endswith(suffix):
            number, factor = value[: -len(suffix)], Decimal(str(multiplier))
            break
    try:
        return Decimal(number) * factor
    except ArithmeticError:  # not a number (InvalidOperation), or one like a hash "030e7910178389704709" (Overflow)
        return None


def _same_scalar(want: Any, have: Any) -> bool:
    if want == have:
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    if isinstance(want, str | int | float) and isinstance(have, str | int | float):
        a, b = _quantity(str(want)), _quantity(str(have))
        return a is not None and a == b
    return False


def _list_key(items: Sequence[Any]) -> str | None:
    """Field identifying the items of an associative list, when every item has it and it is unique."""
    if not items or not all(isinstance(i, Mapping) for i in items):
        return None
    for key in ("uid", "mountPath", "name"):
        values = [i.get(key) for i in items]
        if all(v is not None for v in values) and len(set(map(str, values))) == len(values):
            return key
    return None


def first_difference(want: Any, have: Any, path: str = "") -> str | None:
    """The first path where ``want`` is not contained in ``have``, or None when it is."""
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return path or "."
        for k, v in want.items():
            if k not in have:
                if _empty(v):
                    continue
                return f"{path}.{k}"
            if _empty(v) and _empty(have[k]):
                continue
            if (diff := first_difference(v, have[k], f"{path}.{k}")) is not None:
                return diff
        return None
    if isinstance(want, list):
        if not isinstance(have, list):
            return path
        key = _list_key(want)
        if key is not None and _list_key(have) == key:
            by_key = {str(i[key]): i for i in have}
            for item in want:
                match = by_key.get(str(item[key]))
                if match is None:
                    return f"{path}[{key}={item[key]}]"
                if (diff := first_difference(item, match, f"{path}[{key}={item[key]}]")) is not None:
                    return diff
            return None
        if len(want) != len(have):
            return f"{path}[len {len(want)} != {len(have)}]"
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            if (diff := first_difference(w, h, f"{path}[{i}]")) is not None:
                return diff
        return None
    return None if _same_scalar(want, have) else path


def apply_reason(desired: Mapping[str, Any], live: Mapping[str, Any] | None,
                 applied: tuple[str, int] | None = None) -> str | None:
    """Why the child must be (re-)applied: ``missing``, ``changed`` (new desired state),
    ``drifted at PATH``; None when it is current (or terminating: its deletion event brings it back).
    Only for a child that is ours (``render.ownership.name_conflict`` found no conflict).

    ``applied`` is (uid, metadata.generation) of this child as the operator's last apply returned
    it: a live copy of the same object with a lower generation is a stale watch event from before
    that apply, not drift (generation is a monotonic integer; resourceVersions must not be compared).
    """
    if live is None:
        return "missing"
    meta = live.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    generation = meta.get("generation")
    if applied is not None and applied[0] == meta.get("uid") and isinstance(generation, int) \
            and generation < applied[1]:
        return None
    want_hash = desired["metadata"].get("annotations", {}).get(HASH_ANNOTATION)
    have_hash = ((live.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
    if want_hash != have_hash:
        return "changed"
    want = {k: v for k, v in desired.items() if k != "status"}
    if (diff := first_difference(want, live)) is not None:
        return f"drifted at {diff}"
    return None


def stale_children(desired: Iterable[Mapping[str, Any]], live: Iterable[Mapping[str, Any]],
                   owner_uid: str) -> list[ChildKey]:
    """Live children of this owner that are no longer wanted and may be deleted."""
    wanted = {(ChildKey.of(c).kind, ChildKey.of(c).name) for c in desired}
    stale = []
    for obj in live:
        key = ChildKey.of(obj)
        # routing children the spec no longer asks for; the wake path's when scale to zero is off
        deletable = key.kind in DELETABLE_KINDS or is_routing_child(obj) or is_activator_object(obj)
        if deletable and (key.kind, key.name) not in wanted and owned_by(obj, owner_uid):
            stale.append(key)
    return stale


def withheld(desired: Desired, job: Mapping[str, Any] | None) -> frozenset[tuple[str, str]]:
    """(kind, name) of the children not to apply yet: those that start engines, until the download Job of
    this plan (the checkpoint and the adapters, or without the cache the adapters alone, whose verdicts set the
    engine's flags) has succeeded. A Deployment already serving an older download is left as it is (no downtime
    while the new one downloads); a new object gets its Deployment only then."""
    wanted = next((c for c in desired.children if c["kind"] == "Job"), None)
    if desired.plan is None or wanted is None:
        return frozenset()
    current = current_job(get_path(wanted, "metadata", "annotations", CHECKPOINT_ANNOTATION) or "", job)
    if current is not None and job_succeeded(current):
        return frozenset()
    return frozenset((c["kind"], c["metadata"]["name"]) for c in desired.children if c["kind"] in NEEDS_WEIGHTS)


def written_on_event(kind: str, name: str, parent_name: str) -> list[tuple[str, str]]:
    """(kind, name) a child's event lets the reconcile write: that child; for the download Job also the
    children it was holding back (its success starts them); for the serving Deployment also the Service and the
    InferencePool, whose selectors follow its ready replicas when the object scales to zero (:func:`routed`)."""
    held = [(k, parent_name) for k in sorted(NEEDS_WEIGHTS)] if kind == "Job" else []
    routed_by = [("Service", parent_name), ("InferencePool", parent_name)] if (kind, name) == (
        "Deployment", parent_name) else []
    return [(kind, name), *held, *routed_by]


def backoff_delay(retry: int, retry_after: float | None = None) -> float:
    """Seconds before retrying after a temporary API failure: 1, 2, 4, ... capped at 60,
    and never sooner than the server's Retry-After."""
    delay = min(float(2 ** min(retry, 16)), MAX_BACKOFF_S)
    return max(delay, retry_after or 0.0)


def next_retry(retry: int, server_paced: bool) -> int:
    """The attempt number after a temporary failure. A failure for which the API server set the Retry-After
    (429, 5xx from a throttled or starting server) is the server pacing us: we wait as long as it says and do
    not grow our own back-off, so that an outage does not leave a long back-off behind it (client-go's rule
    too). Every other failure doubles the next delay, including those whose floor is ours (a name conflict,
    a 403)."""
    return retry if server_paced else retry + 1
