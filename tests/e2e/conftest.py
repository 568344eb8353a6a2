"""Fixtures for the e2e tier: a real kube-apiserver + kube-controller-manager (1.20.2) on loopback.

* ``control_plane`` (session): a started :class:`controlplane.ControlPlane`. Builds the binaries with
  ``controlplane/build.sh`` when they are not cached yet (~5-10 min cold, needs root + Debian 12). Set
  ``GEMMA4_SKIP_E2E=1`` to skip instead.
* ``k8s_api`` (session): ``kubernetes.client.ApiClient`` with the admin (system:masters) token.
* ``e2e_namespace`` (function): a fresh namespace, deleted afterwards.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e.controlplane import ControlPlane, binaries_available, build_binaries


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    if os.environ.get("GEMMA4_SKIP_E2E") == "1":
        pytest.skip("GEMMA4_SKIP_E2E=1: real control plane tests skipped")
    if not binaries_available():
        t0 = time.monotonic()
        build_binaries()
        print(f"\ncontrol plane binaries built in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    cp = ControlPlane()
    cp.start()
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in cp.startup_phases.items())
    print(
        f"\ncontrol plane up at {cp.url} in {cp.startup_seconds:.1f}s ({phases}; workdir {cp.workdir})", file=sys.stderr
    )
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def k8s_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api:
        yield api


@pytest.fixture
def e2e_namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)
