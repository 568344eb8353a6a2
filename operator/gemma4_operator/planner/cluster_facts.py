"""Cluster facts from node labels: which catalog accelerator types the cluster has.

The mapping is pure. NVIDIA GPU Feature Discovery's ``nvidia.com/gpu.product`` is matched against each
whole-GPU catalog type's GFD product prefixes, GKE's ``cloud.google.com/gke-accelerator`` against its GKE
values. A prefix only matches at a ``-`` boundary, and the longest prefix wins, so ``NVIDIA-L40S`` is an
L40S and never an L4, and an uncatalogued ``NVIDIA-L40`` is nothing.

Slices are never counted as whole GPUs:

- MIG under GFD's mixed strategy: each profile publishes ``nvidia.com/mig-<profile>.product`` (e.g.
  ``NVIDIA-A100-SXM4-80GB-MIG-1g.10gb``) and ``.count``; those map to the catalog's MIG types (own memory,
  own ``nvidia.com/mig-<profile>`` resource), and the node's whole-GPU product is then ignored.
- MIG under the single strategy (``-MIG-`` in ``nvidia.com/gpu.product``) and GKE GPU partitions: no type
  (the slice is requested as ``nvidia.com/gpu``, which the catalog's MIG types do not render).
- Time-slicing or MPS (GFD's ``-SHARED`` product suffix, ``nvidia.com/gpu.replicas`` > 1, a sharing
  strategy label, GKE's GPU sharing labels): no type. The memory one replica gets is not in any label,
  so the planner refuses rather than promise a whole GPU's memory.

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
GFD_REPLICAS = "nvidia.com/gpu.replicas"
GFD_SHARING_STRATEGY = "nvidia.com/gpu.sharing-strategy"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
GKE_PARTITION_SIZE = "cloud.google.com/gke-gpu-partition-size"
GKE_SHARING_STRATEGY = "cloud.google.com/gke-gpu-sharing-strategy"
SHARED_SUFFIX = "-SHARED"
_MIG_PRODUCT_LABEL = re.compile(r"^nvidia\.com/mig-(?P<profile>[^/]+)\.product$")


def _count(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def is_shared(labels: Mapping[str, str], prefix: str = "nvidia.com/gpu") -> bool:
    """Time-sliced or MPS-shared: GFD's -SHARED suffix, more than one replica, or a sharing strategy."""
    product = labels.get(f"{prefix}.product", "").strip()
    strategy = labels.get(f"{prefix}.sharing-strategy", "none").strip()
    return (product.endswith(SHARED_SUFFIX) or _count(labels.get(f"{prefix}.replicas"), 1) > 1
            or strategy not in ("", "none"))


def gfd_type(product: str, catalog: Catalog) -> str | None:
    """The catalog type whose GFD prefix matches the product (longest prefix at a '-' boundary).
    A MIG product only matches MIG types, and a whole-GPU product only whole-GPU types."""
    product = product.strip()
    if product.endswith(SHARED_SUFFIX):
        return None
    mig = "-MIG-" in product
    best: tuple[int, str] | None = None
    for accel in catalog.accelerators.values():
        if accel.is_mig != mig:
            continue
        for prefix in accel.gfd_products:
            matches = product == prefix if mig else (product == prefix or product.startswith(prefix + "-"))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), accel.name)
    return best[1] if best else None


def gke_type(value: str, catalog: Catalog) -> str | None:
    for accel in catalog.accelerators.values():
        if value.strip() in accel.gke:
            return accel.name
    return None


def mig_types(labels: Mapping[str, str], catalog: Catalog) -> set[str] | None:
    """MIG types a mixed-strategy node announces; None when the node publishes no MIG profile."""
    profiles = [m["profile"] for key in labels if (m := _MIG_PRODUCT_LABEL.match(key))]
    if not profiles:
        return None
    found: set[str] = set()
    for profile in profiles:
        prefix = f"nvidia.com/mig-{profile}"
        if _count(labels.get(f"{prefix}.count"), 1) < 1 or is_shared(labels, prefix):
            continue
        if (name := gfd_type(labels[f"{prefix}.product"], catalog)) is not None:
            found.add(name)
    return found


def accelerator_types(labels: Mapping[str, str], catalog: Catalog | None = None) -> frozenset[str]:
    """Catalog accelerator types one node's labels announce (usually zero or one)."""
    catalog = catalog or load_catalog()
    if (mig := mig_types(labels, catalog)) is not None:
        return frozenset(mig)  # partitioned GPUs: never the whole GPU as well
    if is_shared(labels) or labels.get(GKE_PARTITION_SIZE) or labels.get(GKE_SHARING_STRATEGY):
        return frozenset()
    found: set[str] = set()
    product = labels.get(GFD_PRODUCT, "")
    if "-MIG-" in product:  # single MIG strategy: slices requested as nvidia.com/gpu, no catalog type
        return frozenset()
    if product and (name := gfd_type(product, catalog)) is not None:
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
