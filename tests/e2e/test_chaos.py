"""Chaos on the real API server: the operator SIGKILLed at random points of its work on 20 Gemma4Deployments, 20
times in a row, and kube-apiserver restarted under a running operator. After each fault everything must converge
within 30 s: every object's children present exactly once and equal to what the operator renders for its current
spec (controller ownerReference to the object), nothing stale (a PodDisruptionBudget after replicas drop to one, a
ScaledObject after the KEDA backend is dropped), status current (observedGeneration, Planned, status.plan).

The module runs its own control plane (~5 s to start, printed): the API server restarts and a KEDA ScaledObject CRD
(KEDA's real ``.spec`` schema, no KEDA controller) then never touch the session's control plane the other modules
share. The operator runs as in test_operator_e2e.py: a subprocess with the chart's args and RBAC.

The random choices (which objects change how, when the kill comes, how long the API server stays down) come from a
seeded RNG: the seed is printed, and ``GEMMA4_CHAOS_SEED=N`` repeats a run. The table of convergence times goes to
the e2e summary at the end of the run (the ``table:chaos`` property, see tests/e2e/conftest.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gemma4_operator.api.crd import crd_manifest
from tests.e2e import waiting
from tests.e2e.chaos import (
    Expectations,
    Fleet,
    Verdict,
    denials,
    keda_crd,
    look,
    operator_config,
    rest_with_keda,
)
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_e2e import (
    ACCELERATORS,
    CRD_PATH,
    OPERATOR_NAMESPACE,
    OperatorProcess,
    Rest,
    install_chart_identity,
    render_chart,
)

pytestmark = pytest.mark.e2e

FLEET_SIZE = 20
KILLS = 20
APISERVER_RESTARTS = 4
CONVERGE_S = 30.0  # from the operator's (re)start, or from the API server being ready again
MAX_KILL_DELAY_S = 2.0
CHANGE_GAP_S = 0.4  # at most this long between two rounds of spec changes while a kill is due
KILL_AFTER_CHANGE_S = 0.05  # the kill comes at most this long after the latest change: the work is in flight
PROMETHEUS_URL = "http://prometheus.monitoring:9090"  # KEDA's Prometheus triggers need one; never contacted
NAMESPACE = "chaos"


@dataclasses.dataclass
class Chaos:
    plane: ControlPlane
    rest: Rest
    operator: OperatorProcess
    fleet: Fleet
    expect: Expectations
    rng: random.Random
    seed: int
    #: wall-clock (start, ready again) of each API server outage, see ``denials``
    outages: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    rows: list[str] = dataclasses.field(default_factory=list)  # of the table in the e2e summary
    notes: list[str] = dataclasses.field(default_factory=list)  # under it


def seed() -> int:
    return int(os.environ.get("GEMMA4_CHAOS_SEED") or random.SystemRandom().randrange(2**32))


@pytest.fixture(scope="module")
def plane(control_plane_binaries: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(control_plane_binaries)
    cp.start()
    print(f"\nchaos: own control plane up in {cp.startup_seconds:.1f}s", file=sys.stderr)
    try:
        yield cp
    finally:
        cp.stop()


def _wait_established(rest: Rest, name: str) -> None:
    def established() -> bool:
        conditions = rest.request("GET", f"{CRD_PATH}/{name}").get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    waiting.wait_for(f"CRD {name} Established", established)


@pytest.fixture(scope="module")
def chaos(plane: ControlPlane, helm_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    """The CRDs, the chart's identity and args (with a Prometheus URL, for KEDA's triggers), the operator process
    (not started) and a fleet of FLEET_SIZE objects (not created)."""
    with plane.api_client() as api:
        policy = Rest(api, "policy/v1").request("GET", "/apis/policy")["preferredVersion"]["groupVersion"]
        rest = rest_with_keda(Rest(api, str(policy)))
        for definition in (crd_manifest(), keda_crd()):
            rest.post(CRD_PATH, definition)
            _wait_established(rest, definition["metadata"]["name"])
        for namespace in (OPERATOR_NAMESPACE, NAMESPACE):
            rest.post("/api/v1/namespaces", {"metadata": {"name": namespace}})
        objects = render_chart(helm_home, "--set", f"operator.accelerators={{{ACCELERATORS}}}",
                               "--set", f"operator.prometheusUrl={PROMETHEUS_URL}")
        ident = install_chart_identity(plane, rest, objects, tmp_path_factory.mktemp("chaos-identity"))
        operator = OperatorProcess(ident.args, ident.kubeconfig, tmp_path_factory.mktemp("chaos-operator-logs"))
        chosen = seed()
        print(f"\nchaos: seed {chosen} (GEMMA4_CHAOS_SEED={chosen} repeats this run)", file=sys.stderr)
        rng = random.Random(chosen)
        state = Chaos(plane, rest, operator, Fleet(rest, NAMESPACE, rng, FLEET_SIZE),
                      Expectations(operator_config(ident.args), str(policy)), rng, chosen)
        yield state
        if operator.running:
            operator.stop()
        denied = denials(operator, state.outages)
        assert not denied, "RBAC denials with the chart's ServiceAccount:\n" + "\n".join(denied[:10])


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chaos-helm")


@pytest.fixture(scope="module")
def fleet_created(chaos: Chaos) -> Chaos:
    """The fleet created and converged under a first operator process (left running)."""
    t0 = time.monotonic()
    chaos.operator.start()
    chaos.fleet.create()
    seconds, duplicates = wait_converged(chaos, t0)
    assert not duplicates, duplicates
    chaos.notes.append(f"{FLEET_SIZE} Gemma4Deployments created and converged in {seconds:.1f}s (operator start "
                       f"included); seed {chaos.seed}")
    return chaos


def wait_converged(chaos: Chaos, since: float) -> tuple[float, set[str]]:
    """Seconds from ``since`` until the fleet has converged (at most CONVERGE_S from ``since``), and the
    duplicate children seen on the way (any is a failure)."""
    duplicates: set[str] = set()
    last: list[Verdict] = []

    def converged() -> bool:
        verdict = look(chaos.fleet, chaos.expect)
        duplicates.update(verdict.duplicates)
        last[:] = [verdict]
        return verdict.converged

    def detail() -> str:
        problems = "\n".join(last[0].problems[:20] + last[0].duplicates) if last else ""
        return f"; not converged:\n{problems}\n--- operator log tail:\n{chaos.operator.tail()}"

    remaining = CONVERGE_S - (time.monotonic() - since)
    waiting.wait_for("the fleet to converge", converged, remaining, interval=0.1, detail=detail)
    return time.monotonic() - since, duplicates


def add_row(chaos: Chaos, record_property: Callable[[str, object], None], what: str, count: int,
            seconds: list[float], duplicates: int, notes: str) -> None:
    """A row of the chaos table; the table so far is recorded as ``table:chaos`` (conftest prints the last test's
    in the e2e summary, so it holds every row of the module)."""
    chaos.rows.append(f"| {what} | {count} | {max(seconds):.2f} | {statistics.median(seconds):.2f} | {duplicates} |"
                      f" {notes} |")
    record_property(TABLE, "\n".join([*TABLE_HEADER, *chaos.rows, "", *chaos.notes]))


TABLE = "table:chaos"
TABLE_HEADER = ["| chaos run | faults | convergence max (s) | median (s) | duplicates | notes |",
                "|---|---|---|---|---|---|"]


def _kill_once(chaos: Chaos, kill: int) -> int:
    """Spec changes keep arriving while the operator works (1-3 objects every 0-0.4 s); at a random moment 0-2 s
    into them, SIGKILL within 0.05 s of the latest change, so the process dies with work in hand; more changes pile
    up while it is down (work for the next process's resume). Returns how many objects changed before the kill the
    killed process left unconverged."""
    operator, fleet, rng = chaos.operator, chaos.fleet, chaos.rng
    due = time.monotonic() + rng.uniform(0, MAX_KILL_DELAY_S)
    while True:
        fleet.change(rng.randint(1, 3))
        if time.monotonic() >= due:
            break
        time.sleep(min(rng.uniform(0, CHANGE_GAP_S), max(0.0, due - time.monotonic())))
    time.sleep(rng.uniform(0, KILL_AFTER_CHANGE_S))
    assert operator.running, f"the operator exited on its own before kill {kill}:\n{operator.tail()}"
    killed_at = time.monotonic()
    operator.kill()
    unfinished = {name for name in look(fleet, chaos.expect).unconverged
                  if fleet.changed_at.get(name, -math.inf) < killed_at}
    fleet.change(rng.randint(1, 3))
    return len(unfinished)


def test_operator_sigkilled_mid_reconcile_converges_every_time(
        fleet_created: Chaos, record_property: Callable[[str, object], None]) -> None:
    """KILLS rounds of: SIGKILL during work, a new process, convergence within 30 s of its start, no duplicate,
    nothing stale."""
    chaos = fleet_created
    if not chaos.operator.running:
        chaos.operator.start()
    seconds: list[float] = []
    unconverged_at_kill: list[int] = []
    duplicates: set[str] = set()
    for kill in range(1, KILLS + 1):
        unconverged_at_kill.append(_kill_once(chaos, kill))
        t0 = time.monotonic()
        chaos.operator.start()
        took, seen = wait_converged(chaos, t0)
        seconds.append(took)
        duplicates |= seen
    interrupted = sum(1 for n in unconverged_at_kill if n)
    starts = chaos.operator.start_seconds[-KILLS:]
    record_property("kills", KILLS)
    record_property("converged_max_s", round(max(seconds), 2))
    record_property("converged_median_s", round(statistics.median(seconds), 2))
    add_row(chaos, record_property, "operator SIGKILL", KILLS, seconds, len(duplicates),
            f"{interrupted}/{KILLS} kills left work unfinished (objects changed before the kill and not converged: "
            f"{' '.join(map(str, unconverged_at_kill))}); operator start to /healthz median "
            f"{statistics.median(starts):.2f}s (included); {chaos.fleet.changes} spec changes in all")
    assert not duplicates, f"duplicate children: {sorted(duplicates)}"
    # The kills must interrupt work, or this test shows nothing about crashes mid-reconcile (a quarter: the share
    # depends on the machine's speed; 15-20 of 20 were measured).
    assert interrupted >= KILLS // 4, f"only {interrupted} of {KILLS} kills left work for the next process"


def test_apiserver_restarts_under_a_running_operator(
        fleet_created: Chaos, record_property: Callable[[str, object], None]) -> None:
    """kube-apiserver stopped (SIGTERM and SIGKILL in turn) while the operator works on fresh spec changes, down
    0.5-3 s, started again on the same etcd: the operator never exits and converges within 30 s of the API server
    being ready."""
    chaos = fleet_created
    operator, rng = chaos.operator, chaos.rng
    if not operator.running:
        operator.start()
    starts = operator.starts
    wait_converged(chaos, time.monotonic())
    seconds: list[float] = []
    duplicates: set[str] = set()
    notes: list[str] = []
    for restart in range(APISERVER_RESTARTS):
        chaos.fleet.change(rng.randint(3, 6))
        time.sleep(rng.uniform(0, 0.5))
        sig = signal.SIGKILL if restart % 2 else signal.SIGTERM
        down = rng.uniform(0.5, 3.0)
        outage = chaos.plane.restart_apiserver(down=down, sig=sig)
        chaos.outages.append((outage.down_from, outage.down_until))
        t0 = time.monotonic()
        assert operator.running, f"the operator exited while the API server was down:\n{operator.tail()}"
        took, seen = wait_converged(chaos, t0)
        seconds.append(took)
        duplicates |= seen
        how = f"{sig.name}{' (SIGKILL after the grace period)' if sig is signal.SIGTERM and outage.killed else ''}"
        notes.append(f"{how}: gone in {outage.stop_seconds:.1f}s, down {down:.1f}s, "
                     f"{outage.ready_seconds:.1f}s to ready")
    assert operator.running, f"the operator exited after the API server restarts:\n{operator.tail()}"
    assert operator.starts == starts, "the operator was restarted"
    errors = {labels: n for (name, labels), n in operator.metrics().items()
              if name == "gemma4_operator_reconcile_errors_total" and n}
    notes.append("failed reconciles (retried): " + (", ".join(
        f"{dict(labels).get('reason')} {n:.0f}" for labels, n in sorted(errors.items())) or "none"))
    record_property("apiserver_restarts", APISERVER_RESTARTS)
    record_property("apiserver_converged_max_s", round(max(seconds), 2))
    add_row(chaos, record_property, "kube-apiserver restart", APISERVER_RESTARTS, seconds, len(duplicates),
            "; ".join(notes) + "; operator never exited")
    assert not duplicates, f"duplicate children: {sorted(duplicates)}"
