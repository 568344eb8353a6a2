"""Node labels -> catalog accelerator types (GFD and GKE), and the sticky facts of running objects."""

from __future__ import annotations

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.planner.cluster_facts import (
    GFD_PRODUCT,
    GKE_ACCELERATOR,
    accelerator_types,
    facts_from_types,
    node_index,
    sticky_facts,
)
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan


@pytest.mark.parametrize(("product", "expected"), [
    ("NVIDIA-H100-80GB-HBM3", "nvidia-h100-80gb"),
    ("NVIDIA-A100-SXM4-80GB", "nvidia-a100-80gb"),
    ("NVIDIA-A100-80GB-PCIe", "nvidia-a100-80gb"),
    ("A100-SXM4-40GB", "nvidia-a100-40gb"),  # old GFD spelling without the vendor
    ("NVIDIA-L4", "nvidia-l4"),
    ("NVIDIA-L40S", "nvidia-l40s"),  # longest prefix: never an L4
    ("Tesla-T4", "nvidia-t4"),
    ("NVIDIA-B200", "nvidia-b200"),
    ("NVIDIA-GB200", "nvidia-gb200"),
    ("NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", "nvidia-rtx-pro-6000"),
    ("NVIDIA-H200-NVL", "nvidia-h200"),  # a '-'-bounded longer product of a catalogued prefix
    ("NVIDIA-H100-NVL", "nvidia-h100-nvl"),
    ("NVIDIA-B300-SXM6-AC", "nvidia-b300"),
    ("NVIDIA-GeForce-RTX-5090", "nvidia-rtx-5090"),
    (" NVIDIA-L4 ", "nvidia-l4"),
])
def test_gfd_product(product: str, expected: str) -> None:
    assert accelerator_types({GFD_PRODUCT: product}) == {expected}


@pytest.mark.parametrize("product", [
    "NVIDIA-L40", "NVIDIA-H100-NVL9", "NVIDIA-GeForce-RTX-4090", "", "AMD-MI300X",
    # slices and shares are never whole GPUs
    "NVIDIA-H100-80GB-HBM3-SHARED", "NVIDIA-Tesla-T4-SHARED",  # time-slicing (GFD renames the product)
    "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb",  # MIG single strategy: the slice is nvidia.com/gpu, not our MIG types
    "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb",  # ... even for a catalogued profile
    "NVIDIA-A100-SXM4-40GB-MIG-3g.20gb-SHARED",
])
def test_gfd_products_outside_the_catalog_are_ignored(product: str) -> None:
    # "NVIDIA-L40" starts with "NVIDIA-L4" but not at a '-' boundary
    assert accelerator_types({GFD_PRODUCT: product}) == frozenset()


@pytest.mark.parametrize(("value", "expected"), [
    ("nvidia-l4", "nvidia-l4"), ("nvidia-tesla-t4", "nvidia-t4"), ("nvidia-tesla-a100", "nvidia-a100-40gb"),
    ("nvidia-a100-80gb", "nvidia-a100-80gb"), ("nvidia-h100-mega-80gb", "nvidia-h100-80gb"),
    ("nvidia-h200-141gb", "nvidia-h200"), ("nvidia-b200", "nvidia-b200"), ("nvidia-gb200", "nvidia-gb200"),
    ("nvidia-rtx-pro-6000", "nvidia-rtx-pro-6000"),
])
def test_gke_accelerator(value: str, expected: str) -> None:
    assert accelerator_types({GKE_ACCELERATOR: value}) == {expected}


def test_unknown_gke_value_and_unrelated_labels() -> None:
    assert accelerator_types({GKE_ACCELERATOR: "nvidia-tesla-k80", "kubernetes.io/arch": "amd64"}) == frozenset()
    assert accelerator_types({}) == frozenset()


def test_both_schemes_on_one_node_agree() -> None:
    labels = {GFD_PRODUCT: "NVIDIA-H100-80GB-HBM3", GKE_ACCELERATOR: "nvidia-h100-80gb"}
    assert accelerator_types(labels) == {"nvidia-h100-80gb"}


def test_every_catalog_gfd_and_gke_value_maps_to_its_own_type() -> None:
    catalog = load_catalog()
    for accel in catalog.accelerators.values():
        for product in accel.gfd_products:
            if accel.is_mig:  # published per profile under the mixed strategy
                labels = {f"{accel.resource}.product": product, f"{accel.resource}.count": "1"}
                assert accelerator_types(labels) == {accel.name}, product
                continue
            assert accelerator_types({GFD_PRODUCT: product}) == {accel.name}, product
            assert accelerator_types({GFD_PRODUCT: product + "-SHARED"}) == frozenset(), product
        for value in accel.gke:
            assert accelerator_types({GKE_ACCELERATOR: value}) == {accel.name}, value


# ---- real GFD label sets (gpu-feature-discovery, gpu-operator) ----

# An A100 80GB PCIe under the mixed MIG strategy (GFD labels as published on a node): the whole-GPU product
# stays in nvidia.com/gpu.product; each MIG profile has its own .product/.memory/.count labels.
A100_MIXED_MIG = {
    "nvidia.com/gpu.count": "1", "nvidia.com/gpu.family": "ampere", "nvidia.com/gpu.memory": "81920",
    "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-A100-80GB-PCIe",
    "nvidia.com/gpu.replicas": "0",
    "nvidia.com/mig-1g.10gb.count": "1", "nvidia.com/mig-1g.10gb.memory": "9728",
    "nvidia.com/mig-1g.10gb.product": "NVIDIA-A100-80GB-PCIe-MIG-1g.10gb", "nvidia.com/mig-1g.10gb.replicas": "1",
    "nvidia.com/mig-2g.20gb.count": "1", "nvidia.com/mig-2g.20gb.memory": "19968",
    "nvidia.com/mig-2g.20gb.product": "NVIDIA-A100-80GB-PCIe-MIG-2g.20gb", "nvidia.com/mig-2g.20gb.replicas": "1",
    "nvidia.com/mig-3g.40gb.count": "1", "nvidia.com/mig-3g.40gb.memory": "40192",
    "nvidia.com/mig-3g.40gb.product": "NVIDIA-A100-80GB-PCIe-MIG-3g.40gb", "nvidia.com/mig-3g.40gb.replicas": "1",
    "nvidia.com/mig.capable": "true", "nvidia.com/mig.strategy": "mixed",
}

H100_MIXED_MIG = {
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559",
    "nvidia.com/mig-1g.10gb.count": "2", "nvidia.com/mig-1g.10gb.memory": "9984",
    "nvidia.com/mig-1g.10gb.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", "nvidia.com/mig-1g.10gb.replicas": "1",
    "nvidia.com/mig-1g.10gb.sharing-strategy": "none",
    "nvidia.com/mig-2g.20gb.count": "1", "nvidia.com/mig-2g.20gb.memory": "20096",
    "nvidia.com/mig-2g.20gb.product": "NVIDIA-H100-80GB-HBM3-MIG-2g.20gb",
    "nvidia.com/mig.capable": "true", "nvidia.com/mig.strategy": "mixed",
}

# Time-slicing with 4 replicas (device plugin sharing.timeSlicing, renameByDefault false): GFD appends -SHARED.
L4_TIME_SLICED = {
    "nvidia.com/gpu.count": "1", "nvidia.com/gpu.memory": "23034", "nvidia.com/gpu.product": "NVIDIA-L4-SHARED",
    "nvidia.com/gpu.replicas": "4", "nvidia.com/gpu.sharing-strategy": "time-slicing",
    "nvidia.com/mig.capable": "false",
}


def test_mixed_mig_node_announces_its_catalogued_slices_never_the_whole_gpu() -> None:
    # 2g.20gb is not catalogued: ignored, and never mistaken for the whole A100 by prefix.
    assert accelerator_types(A100_MIXED_MIG) == {"nvidia-a100-80gb-mig-1g.10gb", "nvidia-a100-80gb-mig-3g.40gb"}
    assert accelerator_types(H100_MIXED_MIG) == {"nvidia-h100-80gb-mig-1g.10gb"}


def test_mig_profile_with_no_instances_or_shared_is_not_announced() -> None:
    labels = {**H100_MIXED_MIG, "nvidia.com/mig-1g.10gb.count": "0"}
    assert accelerator_types(labels) == frozenset()
    labels = {**H100_MIXED_MIG, "nvidia.com/mig-1g.10gb.replicas": "2",
              "nvidia.com/mig-1g.10gb.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb-SHARED"}
    assert accelerator_types(labels) == frozenset()


@pytest.mark.parametrize("labels", [
    L4_TIME_SLICED,
    # replicas > 1 without the -SHARED rename (renameByDefault or older GFD)
    {**L4_TIME_SLICED, "nvidia.com/gpu.product": "NVIDIA-L4"},
    # MPS sharing
    {**L4_TIME_SLICED, "nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.replicas": "1",
     "nvidia.com/gpu.sharing-strategy": "mps"},
    # GKE time-sharing and GKE MIG partitions (the slice is requested as nvidia.com/gpu)
    {GKE_ACCELERATOR: "nvidia-l4", "cloud.google.com/gke-gpu-sharing-strategy": "time-sharing",
     "cloud.google.com/gke-max-shared-clients-per-gpu": "2"},
    {GKE_ACCELERATOR: "nvidia-tesla-a100", "cloud.google.com/gke-gpu-partition-size": "1g.5gb"},
], ids=["gfd-time-sliced", "gfd-replicas", "gfd-mps", "gke-time-sharing", "gke-mig"])
def test_shared_gpus_are_never_counted_as_whole_gpus(labels: dict[str, str]) -> None:
    assert accelerator_types(labels) == frozenset()


def test_an_unshared_gpu_with_the_sharing_labels_at_their_defaults_is_whole() -> None:
    labels = {**L4_TIME_SLICED, "nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.replicas": "1",
              "nvidia.com/gpu.sharing-strategy": "none"}
    assert accelerator_types(labels) == {"nvidia-l4"}


def test_node_index_keys_are_the_types() -> None:
    assert node_index(labels={GFD_PRODUCT: "NVIDIA-L4"}) == {"nvidia-l4": True}
    assert node_index(labels={"kubernetes.io/os": "linux"}) == {}


def test_a_cluster_without_gpus_plans_auto_onto_cpu() -> None:
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e2b"}})
    p = plan(spec, facts_from_types([]))
    assert p.accelerator.name == "cpu" and p.engine == "llamacpp"


def test_sticky_facts() -> None:
    present = ClusterFacts(frozenset({"nvidia-l4", "nvidia-h100-80gb"}))
    assert sticky_facts(present, "nvidia-h100-80gb") == ClusterFacts(frozenset({"nvidia-h100-80gb"}))
    assert sticky_facts(present, "cpu") == ClusterFacts(frozenset())
    assert sticky_facts(present, "nvidia-b200") is None  # gone from the cluster: re-plan freely
    assert sticky_facts(present, None) is None
