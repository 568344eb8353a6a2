"""Fixtures for the e2e tier: a real kube-apiserver + kube-controller-manager (1.20.2) on loopback.

* ``control_plane_binaries`` (session): the binaries' directory, built when missing; skips the tier when
  ``GEMMA4_SKIP_E2E=1``.
* ``control_plane`` (session): a started :class:`controlplane.ControlPlane`. Builds the binaries with
  ``controlplane/build.sh`` when they are not cached yet (``make test`` does that before pytest starts, in
  ``make tools``; ~5-10 min cold, no root, nothing installed system-wide), showing its progress. Set
  ``GEMMA4_SKIP_E2E=1`` to skip instead.
* ``e2e_summary`` (session): a list of lines to print in the summary at the end of the run.
* ``k8s_api`` (session): ``kubernetes.client.ApiClient`` with the admin (system:masters) token.
* ``e2e_namespace`` (function): a fresh namespace, deleted afterwards.

At the end of a run that included e2e tests, a timing summary is printed: each e2e test (setup + call +
teardown, so the first test carries the control plane start), the values tests recorded with
``record_property`` (phase timings such as ``garbage_collected_s``), and the tier's wall-clock time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.controlplane import ControlPlane, binaries_available, build_binaries, default_bin_dir

#: Lines tests add to the e2e summary at the end of the run (through the ``e2e_summary`` fixture).
SUMMARY_LINES = pytest.StashKey[list[str]]()


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


@pytest.fixture(scope="session")
def e2e_summary(request: pytest.FixtureRequest) -> list[str]:
    """Append lines (e.g. a table of measurements) to print in the e2e summary at the end of the run."""
    return request.config.stash.setdefault(SUMMARY_LINES, [])


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
    for nodeid, reports in by_test.items():
        total = sum(r.duration for r in reports)
        starts += [r.start for r in reports if hasattr(r, "start")]
        stops += [r.stop for r in reports if hasattr(r, "stop")]
        outcome = next((r.outcome for r in reports if r.when == "call"), reports[0].outcome)
        if any(hasattr(r, "wasxfail") for r in reports):
            outcome = "xfail" if outcome == "skipped" else "xpass"
        props = {k: v for r in reports if r.when == "call" for k, v in r.user_properties}
        extra = "  " + ", ".join(f"{k}={v}" for k, v in props.items()) if props else ""
        tr.write_line(f"{total:7.2f}s {outcome:7s} {nodeid.split('::', 1)[-1]}{extra}")
    if starts and stops:
        tr.write_line(f"e2e tier: {len(by_test)} tests, wall clock {max(stops) - min(starts):.1f}s")
    for line in tr.config.stash.get(SUMMARY_LINES, []):
        tr.write_line(line)
