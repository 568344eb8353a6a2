"""Cluster facts from node labels: which catalog accelerator types the cluster has.

The mapping is pure: NVIDIA GPU Feature Discovery's ``nvidia.com/gpu.product`` (after stripping
the ``-SHARED`` time-slicing and ``-MIG-...`` suffixes) is matched against each catalog type's
GFD product prefixes, GKE's ``cloud.google.com/gke-accelerator`` against its GKE values. A prefix
only matches at a ``-`` boundary, and the longest prefix wins, so ``NVIDIA-L40S`` is an L40S
and never an L4, and an uncatalogued ``NVIDIA-L40`` is nothing.

Kept current by a kopf index on nodes (:func:`node_index`, registered by ``handlers``): the
index keys are the accelerator types, so the facts are simply the index's keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from gemma4_operator.catalog import Catalog, load_catalog
from gemma4_operator.planner.plan import ClusterFacts

GFD_PRODUCT = "nvidia.com/gpu.product"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
_SHARING_SUFFIX = re.compile(r"-SHARED$")
_MIG_SUFFIX = re.compile(r"-MIG-.*$")


def normalize_gfd_product(product: str) -> str:
    """``NVIDIA-A100-SXM4-40GB-MIG-1g.5gb-SHARED`` -> ``NVIDIA-A100-SXM4-40GB``."""
    return _MIG_SUFFIX.sub("", _SHARING_SUFFIX.sub("", product.strip()))


def gfd_type(product: str, catalog: Catalog) -> str | None:
    """The catalog type whose GFD prefix matches the product (longest prefix at a '-' boundary)."""
    normalized = normalize_gfd_product(product)
    best: tuple[int, str] | None = None
    for accel in catalog.accelerators.values():
        for prefix in accel.gfd_products:
            matches = normalized == prefix or normalized.startswith(prefix + "-")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), accel.name)
    return best[1] if best else None


def gke_type(value: str, catalog: Catalog) -> str | None:
    for accel in catalog.accelerators.values():
        if value.strip() in accel.gke:
            return accel.name
    return None


def accelerator_types(labels: Mapping[str, str], catalog: Catalog | None = None) -> frozenset[str]:
    """Catalog accelerator types one node's labels announce (usually zero or one)."""
    catalog = catalog or load_catalog()
    found: set[str] = set()
    if (product := labels.get(GFD_PRODUCT)) and (name := gfd_type(product, catalog)) is not None:
        found.add(name)
    if (gke := labels.get(GKE_ACCELERATOR)) and (name := gke_type(gke, catalog)) is not None:
        found.add(name)
    return frozenset(found)


def facts_from_types(types: Iterable[str]) -> ClusterFacts:
    """No types (a CPU-only cluster) is valid: the planner then plans ``auto`` onto cpu."""
    return ClusterFacts(frozenset(types))


def node_index(labels: Mapping[str, str], **_: Any) -> dict[str, bool]:
    """kopf index function on nodes: one key per accelerator type the node carries."""
    return dict.fromkeys(accelerator_types(labels), True)


def sticky_facts(current: ClusterFacts, previous_accelerator: str | None) -> ClusterFacts | None:
    """Facts that keep an unchanged ``accelerator.type: auto`` object on the type it runs on.

    A node pool of a cheaper type joining the cluster (or an operator restart) must not silently
    re-plan and roll a running model; the caller re-plans with these facts when the plan from
    the full facts moved to another type while the spec did not change. None when the type in
    force has left the cluster (then re-planning onto what is present is right).
    """
    if not previous_accelerator:
        return None
    if previous_accelerator == "cpu":
        return ClusterFacts(frozenset())  # no GPU types: auto plans onto cpu again
    if previous_accelerator in current.accelerator_types:
        return ClusterFacts(frozenset({previous_accelerator}))
    return None
