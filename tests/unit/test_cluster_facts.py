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
    normalize_gfd_product,
    sticky_facts,
)
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan


@pytest.mark.parametrize(("product", "expected"), [
    ("NVIDIA-H100-80GB-HBM3", "nvidia-h100-80gb"),
    ("NVIDIA-H100-80GB-HBM3-SHARED", "nvidia-h100-80gb"),  # time-slicing
    ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "nvidia-a100-40gb"),  # MIG (mixed strategy)
    ("NVIDIA-A100-SXM4-40GB-MIG-3g.20gb-SHARED", "nvidia-a100-40gb"),
    ("NVIDIA-A100-SXM4-80GB", "nvidia-a100-80gb"),
    ("NVIDIA-A100-80GB-PCIe", "nvidia-a100-80gb"),
    ("A100-SXM4-40GB", "nvidia-a100-40gb"),  # old GFD spelling without the vendor
    ("NVIDIA-L4", "nvidia-l4"),
    ("NVIDIA-L40S", "nvidia-l40s"),  # longest prefix: never an L4
    ("Tesla-T4", "nvidia-t4"),
    ("NVIDIA-Tesla-T4-SHARED", "nvidia-t4"),
    ("NVIDIA-B200", "nvidia-b200"),
    ("NVIDIA-GB200", "nvidia-gb200"),
    ("NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", "nvidia-rtx-pro-6000"),
    ("NVIDIA-H200-NVL", "nvidia-h200"),  # a '-'-bounded longer product of a catalogued prefix
    (" NVIDIA-L4 ", "nvidia-l4"),
])
def test_gfd_product(product: str, expected: str) -> None:
    assert accelerator_types({GFD_PRODUCT: product}) == {expected}


@pytest.mark.parametrize("product", ["NVIDIA-L40", "NVIDIA-H100-NVL9", "NVIDIA-GeForce-RTX-4090", "", "AMD-MI300X"])
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
            assert accelerator_types({GFD_PRODUCT: product}) == {accel.name}, product
            assert accelerator_types({GFD_PRODUCT: product + "-SHARED"}) == {accel.name}, product
        for value in accel.gke:
            assert accelerator_types({GKE_ACCELERATOR: value}) == {accel.name}, value


def test_normalize() -> None:
    assert normalize_gfd_product("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb-SHARED") == "NVIDIA-A100-SXM4-40GB"
    assert normalize_gfd_product("NVIDIA-L4") == "NVIDIA-L4"


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
