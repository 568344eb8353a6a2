"""Support for test_chaos.py: a fleet of Gemma4Deployments whose specs change between faults, and the check that
the operator's work has converged (children correct and present once, nothing stale, status current).

The fleet's specs are small and plan on the e2e server (explicit accelerator types, or ``auto`` onto the H100s of
the chart's ``--accelerators``). A :class:`Profile` per object is the test's own model of the spec: it decides
the child kinds independently of the renderer (``expected_kinds``), while the children's content is compared with
what the operator's own code renders for the live (server-defaulted) spec (:class:`Expectations`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from gemma4_operator.api import API_VERSION, KIND
from gemma4_operator.cli.run import add_run_arguments, config_from_args
from gemma4_operator.config import OperatorConfig
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.render.children import KEDA_API_VERSION, RenderOptions
from tests.e2e.test_operator_e2e import (
    INSTANCE_LABEL,
    MANAGED_SELECTOR,
    OperatorProcess,
    Rest,
    condition,
    controller_refs,
    g4d,
)

Obj = dict[str, Any]
DATA = Path(__file__).resolve().parents[1] / "data"
# Listed to find stale or stray children too (a PVC or a download Job would be one: the fleet has no model cache).
CHILD_KINDS = ("Deployment", "Service", "PersistentVolumeClaim", "Job", "PodDisruptionBudget", "ScaledObject")

# Small specs that plan on the e2e server: two engines, CPU, L4 and auto (H100 from --accelerators).
BASES: dict[str, Obj] = {
    "e2b-cpu": {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"},
                "serving": {"maxModelLen": 8192, "modalities": ["text"]}},
    "e4b-l4": {"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"}, "serving": {"maxModelLen": 8192}},
    "moe-auto": {"model": {"variant": "26b-a4b"}, "quantization": "fp8", "accelerator": {"type": "auto"},
                 "serving": {"maxModelLen": 16384}},
    "moe-llamacpp": {"model": {"variant": "26b-a4b"}, "engine": "llamacpp", "quantization": "q4_k_m",
                     "accelerator": {"type": "nvidia-l4", "count": 1}, "serving": {"maxModelLen": 8192}},
}
AUTOSCALING = (None, "operator", "keda")
CONCURRENCY = (2, 4)


@dataclasses.dataclass
class Profile:
    """The test's model of one object's spec. No ``storage.modelCache``: with one, the serving children wait for the
    download Job, whose pod nothing runs here (test_operator_e2e plays the kubelet for it)."""

    base: str
    replicas: int = 1
    autoscaling: str | None = None
    concurrency: int = CONCURRENCY[0]

    def spec(self) -> Obj:
        base = BASES[self.base]
        spec: Obj = {**base, "replicas": self.replicas,
                     "serving": {**base["serving"], "concurrency": self.concurrency}}
        if self.autoscaling is not None:
            spec["autoscaling"] = {"minReplicaCount": 1, "maxReplicaCount": 3, "backend": self.autoscaling,
                                   "autoscalingMetricSpecs": [{"metricName": "vllm/num_requests_waiting",
                                                               "target": 5}]}
        return spec

    def expected_kinds(self) -> set[str]:
        """The child kinds this spec implies (the renderer's rules restated, not called)."""
        kinds = {"Deployment", "Service"}
        if self.replicas > 1 or self.autoscaling is not None:  # autoscaling here always has maxReplicaCount 3
            kinds.add("PodDisruptionBudget")
        if self.autoscaling == "keda":
            kinds.add("ScaledObject")
        return kinds

    def mutated(self, rng: random.Random) -> tuple[Profile, Obj]:
        """A random one-field spec change: the new profile and the merge patch of ``spec`` that makes it."""
        what = rng.choice(["replicas", "concurrency", "autoscaling"])
        if what == "replicas":
            new = dataclasses.replace(self, replicas=3 - self.replicas)
            return new, {"replicas": new.replicas}
        if what == "concurrency":
            new = dataclasses.replace(self, concurrency=rng.choice([c for c in CONCURRENCY if c != self.concurrency]))
            return new, {"serving": {"concurrency": new.concurrency}}
        new = dataclasses.replace(self, autoscaling=rng.choice([a for a in AUTOSCALING if a != self.autoscaling]))
        return new, {"autoscaling": new.spec().get("autoscaling")}


def operator_config(chart_args: list[str]) -> OperatorConfig:
    """The operator's configuration from the chart's args, parsed as ``gemma4-operator run`` parses them."""
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return config_from_args(parser.parse_args(chart_args), env={})


class Expectations:
    """What the operator should compute for a live object, by the operator's own planning and rendering with the
    operator's configuration and this server's capabilities; cached per (uid, generation)."""

    def __init__(self, config: OperatorConfig, pdb_api_version: str) -> None:
        self.config = config
        self.facts = ClusterFacts(frozenset(config.accelerator_types or ()))
        self.options = RenderOptions(pdb_api_version=pdb_api_version, keda_served=True,
                                     prometheus_url=config.prometheus_url)
        self._cache: dict[tuple[str, int], rc.Desired] = {}

    def of(self, obj: Mapping[str, Any]) -> rc.Desired:
        meta = obj["metadata"]
        key = (str(meta["uid"]), int(meta["generation"]))
        if key not in self._cache:
            model = rc.parse_parent(obj)
            self._cache[key] = rc.desired_state(model, key[0], self.facts, self.config, self.options)
        return self._cache[key]


class Fleet:
    """``size`` Gemma4Deployments in ``namespace`` over the bases in turn, changed at random through merge patches
    (``rng`` seeded by the test, so a failing run can be repeated). Not thread-safe: one thread changes and looks."""

    def __init__(self, rest: Rest, namespace: str, rng: random.Random, size: int = 20) -> None:
        self.rest = rest
        self.namespace = namespace
        self.rng = rng
        bases = sorted(BASES)
        self.profiles = {f"chaos-{i:02d}": Profile(bases[i % len(bases)]) for i in range(size)}
        self.changes = 0
        self.changed_at: dict[str, float] = {}  # time.monotonic() each object's last change was accepted

    def create(self) -> None:
        for name, profile in self.profiles.items():
            self.rest.create(g4d(name, self.namespace, profile.spec()))

    def change(self, count: int) -> None:
        """``count`` random spec changes, one object each."""
        for name in self.rng.sample(sorted(self.profiles), count):
            new, patch = self.profiles[name].mutated(self.rng)
            self.rest.patch(KIND, self.namespace, name, {"spec": patch})
            self.profiles[name] = new
            self.changes += 1
            self.changed_at[name] = time.monotonic()


@dataclasses.dataclass
class Verdict:
    """One look at the fleet: what is not converged yet, and children present more than once."""

    problems: list[str]
    duplicates: list[str]
    unconverged: set[str] = dataclasses.field(default_factory=set)  # names of the objects with a problem

    @property
    def converged(self) -> bool:
        return not self.problems and not self.duplicates


def look(fleet: Fleet, expect: Expectations) -> Verdict:
    """Every object's status and children against its profile and the operator's rendering; every managed child
    in the namespace must belong to an object of the fleet and be wanted."""
    rest, namespace = fleet.rest, fleet.namespace
    objects = {o["metadata"]["name"]: o for o in rest.objects(KIND, namespace)}
    children = [c for kind in CHILD_KINDS for c in rest.objects(kind, namespace, MANAGED_SELECTOR)]
    by_owner: dict[str, list[Obj]] = {}
    for child in children:
        by_owner.setdefault(child["metadata"].get("labels", {}).get(INSTANCE_LABEL, ""), []).append(child)
    verdict = Verdict([], [])
    for owner in sorted(set(by_owner) - set(fleet.profiles)):
        verdict.problems.append(f"children of no fleet object {owner!r}: {kinds_of(by_owner[owner])}")
    for name, profile in fleet.profiles.items():
        obj = objects.get(name)
        if obj is None:
            verdict.problems.append(f"{name}: the Gemma4Deployment is missing")
            continue
        before = len(verdict.problems)
        _look_at_one(obj, profile, by_owner.get(name, []), expect, verdict)
        if len(verdict.problems) > before:
            verdict.unconverged.add(name)
    return verdict


def kinds_of(objs: list[Obj]) -> list[str]:
    return sorted(f"{o['kind']} {o['metadata']['name']}" for o in objs)


def _look_at_one(obj: Obj, profile: Profile, live: list[Obj], expect: Expectations, verdict: Verdict) -> None:
    name, uid = obj["metadata"]["name"], obj["metadata"]["uid"]
    desired = expect.of(obj)
    if desired.plan is None:
        verdict.problems.append(f"{name}: does not plan offline ({desired.error}); the fleet's specs must plan")
        return
    status = obj.get("status") or {}
    planned = condition(obj, "Planned")
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        verdict.problems.append(f"{name}: observedGeneration {status.get('observedGeneration')} "
                                f"!= generation {obj['metadata']['generation']}")
    elif planned is None or planned.get("status") != "True":
        verdict.problems.append(f"{name}: Planned is {planned}")
    elif status.get("plan") != desired.plan.to_status().model_dump(by_alias=True, mode="json"):
        verdict.problems.append(f"{name}: status.plan is not the plan of the current spec")
    rendered = {c["kind"]: c for c in desired.children}
    if set(rendered) != profile.expected_kinds():
        verdict.problems.append(f"{name}: renders {sorted(rendered)}, the spec implies "
                                f"{sorted(profile.expected_kinds())}")
    counts = Counter(c["kind"] for c in live)
    verdict.duplicates += [f"{name}: {n} x {kind}" for kind, n in counts.items() if n > 1]
    stale = [c for c in live if c["kind"] not in rendered]
    if stale:
        verdict.problems.append(f"{name}: stale children {kinds_of(stale)}")
    owner_ref = [{"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": uid, "controller": True,
                  "blockOwnerDeletion": True}]
    for child in live:
        if child["kind"] in rendered and controller_refs(child) != owner_ref:
            verdict.problems.append(f"{name}: {child['kind']} is not controlled by uid {uid}")
    live_by_kind = {c["kind"]: c for c in live}
    for kind, want in rendered.items():
        _compare_child(name, want, live_by_kind.get(kind), verdict)


def _compare_child(name: str, want: Obj, have: Obj | None, verdict: Verdict) -> None:
    where = f"{name}: {want['kind']} {want['metadata']['name']}"
    if have is None:
        verdict.problems.append(f"{where} is missing")
        return
    if have["metadata"]["name"] != want["metadata"]["name"] or have["apiVersion"] != want["apiVersion"]:
        verdict.problems.append(f"{where}: live is {have['apiVersion']} {have['metadata']['name']}")
    elif have["metadata"].get("deletionTimestamp"):
        verdict.problems.append(f"{where} is being deleted")
    elif (diff := rc.first_difference({k: v for k, v in want.items() if k != "status"}, have)) is not None:
        verdict.problems.append(f"{where} differs from the rendering at {diff}")


def rest_with_keda(rest: Rest) -> Rest:
    """``rest`` that also knows KEDA's ScaledObjects (served by :func:`keda_crd`)."""
    rest.kind_paths["ScaledObject"] = (KEDA_API_VERSION, "scaledobjects")
    return rest


def keda_crd() -> Obj:
    """KEDA's ScaledObject CRD with its real ``.spec`` schema (vendored in tests/data/keda), so the server
    validates the ScaledObjects the operator writes; KEDA's controller itself is not installed."""
    spec_schema = yaml.safe_load((DATA / "keda" / "scaledobject-spec-schema.yaml").read_text(encoding="utf-8"))
    group, version = KEDA_API_VERSION.split("/")
    schema = {"type": "object", "required": ["spec"], "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "spec": spec_schema, "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"scaledobjects.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": "ScaledObject", "listKind": "ScaledObjectList", "plural": "scaledobjects",
                               "singular": "scaledobject"},
                     "versions": [{"name": version, "served": True, "storage": True,
                                   "subresources": {"status": {}}, "schema": {"openAPIV3Schema": schema}}]}}


def denials(operator: OperatorProcess, outages: list[tuple[float, float]]) -> list[str]:
    """RBAC denials in the operator's logs (403s, as ``forbidden_lines`` finds them), leaving out those logged
    during an API server outage (wall-clock start, until ready again): a starting API server answers 403 until
    its RBAC caches are filled, which is no RBAC gap of the chart."""
    out: list[str] = []
    for path in operator.all_logs():
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                message, at = str(record["message"]), datetime.fromisoformat(record["timestamp"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            denied = "forbidden" in message.lower() or "HTTP 403" in message
            if denied and not any(start <= at <= end for start, end in outages):
                out.append(message)
    return out
