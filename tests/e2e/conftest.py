"""Fixtures for the e2e tier: a real etcd + kube-apiserver + kube-controller-manager on loopback, built from Go
modules: Kubernetes 1.37 by default, the 1.29 floor with ``GEMMA4_K8S_RELEASE=1.29`` (``make test`` runs the tests
marked ``floor`` on it as the ``e2e-floor`` tier). The tier's header names the binaries' versions.

* ``control_plane_binaries`` (session): the binaries' directory, built when missing; skips the tier when
  ``GEMMA4_SKIP_E2E=1`` (``make test`` then fails the tier: a tier that runs nothing is a failure).
* ``control_plane`` (session): a started :class:`controlplane.ControlPlane`. Builds the binaries with
  ``controlplane/build.sh`` when they are not cached yet (``make test`` does that before pytest starts, in
  ``make tools``; no root, nothing installed system-wide), showing its progress. Set ``GEMMA4_SKIP_E2E=1`` to
  skip instead.
* ``k8s_api`` (session): ``kubernetes.client.ApiClient`` with the admin (system:masters) token.
* ``e2e_namespace`` (function): a fresh namespace, deleted afterwards.
* the module fixtures of ``test_operator_e2e`` (``rest``, ``g4d_crd``, ``operator`` and what they need), for
  every e2e module.

At the end of a run that included e2e tests, a timing summary is printed: each e2e test (setup + call +
teardown, so the first test carries the control plane start), the values tests recorded with
``record_property`` (phase timings such as ``garbage_collected_s``), and the tier's wall-clock time; a property
named ``table:TITLE`` is printed after that as a section of its own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.controlplane import (
    ControlPlane,
    binaries_available,
    build_binaries,
    default_bin_dir,
    selected_release,
)
from tests.e2e.controlplane.cluster import find_etcd

# The operator's module fixtures, for the other e2e modules too: each module that uses them gets its own CRD,
# chart identity (ServiceAccount, ClusterRole, binding) and operator process, and leaves none of them behind.
from tests.e2e.test_operator_e2e import (  # noqa: F401
    chart_identity,
    g4d_crd,
    helm_home,
    operator,
    operator_namespace,
    pdb_api_version,
    rest,
    version,
)


def _binary_version(path: Path) -> str:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not built yet"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def pytest_report_header() -> list[str]:
    """The control plane this run uses, from the binaries themselves (``--version``)."""
    release = selected_release()
    bin_dir = default_bin_dir(release)
    versions = [_binary_version(bin_dir / "kube-apiserver"), _binary_version(bin_dir / "kube-controller-manager"),
                _binary_version(find_etcd())]
    return [f"control plane (GEMMA4_K8S_RELEASE={release}): " + "; ".join(versions)]


@pytest.fixture(scope="session")
def control_plane_binaries(request: pytest.FixtureRequest) -> Path:
    """The control plane binaries' directory, built if missing; skips the tier when GEMMA4_SKIP_E2E=1."""
    if os.environ.get("GEMMA4_SKIP_E2E") == "1":
        pytest.skip("GEMMA4_SKIP_E2E=1: real control plane tests skipped")
    if not binaries_available():
        # `make test` builds the binaries before pytest starts (`make tools`); a bare `pytest tests/e2e` on a
        # cold cache builds them here (~5-10 min). pytest's output capturing is suspended meanwhile so that
        # build.sh's progress lines reach the terminal instead of sitting silently in a capture buffer.
        capman = request.config.pluginmanager.getplugin("capturemanager")
        suspended = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
        with suspended:
            print("\ncontrol plane binaries missing: running build.sh (progress below)", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            build_binaries()
            print(f"control plane binaries built in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    return default_bin_dir()


@pytest.fixture(scope="session")
def control_plane(control_plane_binaries: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(control_plane_binaries)
    cp.start()
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in cp.startup_phases.items())
    print(
        f"\ncontrol plane {cp.version} up at {cp.url} in {cp.startup_seconds:.1f}s ({phases}; workdir {cp.workdir})",
        file=sys.stderr,
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


# A recorded property named "table:TITLE" is printed as a section of its own (e.g. a markdown table for the note).
TABLE = "table:"


def _e2e_reports(terminalreporter: Any) -> dict[str, list[Any]]:
    """Test reports (setup, call, teardown) of the tests under tests/e2e, by node id (relative to the rootdir)."""
    by_test: dict[str, list[Any]] = {}
    for reports in terminalreporter.stats.values():
        for rep in reports:
            nodeid = str(getattr(rep, "nodeid", ""))
            if getattr(rep, "when", None) in ("setup", "call", "teardown") and nodeid.startswith("tests/e2e/"):
                by_test.setdefault(nodeid, []).append(rep)
    return by_test


def pytest_terminal_summary(terminalreporter: Any) -> None:
    by_test = _e2e_reports(terminalreporter)
    if not by_test:
        return
    tr = terminalreporter
    tr.section("e2e timings (setup + call + teardown)")
    starts, stops = [], []
    tables: dict[str, str] = {}
    for nodeid, reports in by_test.items():
        total = sum(r.duration for r in reports)
        starts += [r.start for r in reports if hasattr(r, "start")]
        stops += [r.stop for r in reports if hasattr(r, "stop")]
        outcome = next((r.outcome for r in reports if r.when == "call"), reports[0].outcome)
        if any(hasattr(r, "wasxfail") for r in reports):
            outcome = "xfail" if outcome == "skipped" else "xpass"
        props = {k: v for r in reports if r.when == "call" for k, v in r.user_properties}
        tables.update({k.removeprefix(TABLE): str(props.pop(k)) for k in list(props) if k.startswith(TABLE)})
        extra = "  " + ", ".join(f"{k}={v}" for k, v in props.items()) if props else ""
        tr.write_line(f"{total:7.2f}s {outcome:7s} {nodeid.split('::', 1)[-1]}{extra}")
    if starts and stops:
        tr.write_line(f"e2e tier: {len(by_test)} tests, wall clock {max(stops) - min(starts):.1f}s")
    for title, text in tables.items():
        tr.section(f"e2e: {title}")
        for line in text.splitlines():
            tr.write_line(line)
