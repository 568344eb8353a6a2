"""API faults: the operator reaches the real API server only through a fault-injecting proxy (issue 14 item 3).

``mitmdump`` (mitmproxy 11.0.2, its own venv in the tools cache) sits in reverse-proxy mode between the operator
and kube-apiserver; ``faultproxy/addon.py`` gives FAULTS.rate of the operator's requests (FAULTS.watch_rate of its
watches) a 429 (Retry-After), 500, 503, a connection reset or a 10 s stall (seeded draws). The operator runs as in
test_operator_e2e.py (subprocess, the chart's args, the chart's ServiceAccount and RBAC), with a kubeconfig that
points at the proxy and trusts the proxy's CA; while it starts, its discovery of the PDB version is refused.

What must hold:

* **converges**: Gemma4Deployments created, then spec-changed, then deleted under faults all end with the
  children the offline rendering gives (controller-owned, none extra, none missing) and a current status;
* **backs off**: the proxy's log shows the operator's requests per object in any 10 s window stay under a bound
  a retry loop without back-off breaks, and during an outage (every request of one object answered 429 with
  Retry-After for 12 s) no path is asked again before the Retry-After has passed;
* **never crash-loops**: one process for the whole module, alive at every check, exit 0 on SIGTERM at the end,
  no traceback in its log (but kopf's own, when it throttles an object after a call failed all its retries).

The numbers (faults by kind, requests, converged, time to converge per phase) are printed in the e2e summary at
the end of the run (the ``table:API faults`` property, see tests/e2e/conftest.py).

Each object gets its own namespace, so that the proxy's log attributes every namespaced request (the parent,
its children, its Events) to one object by path. The module installs the CRD itself and removes it (waiting until
it is gone), so it runs before or after test_operator_e2e.py without touching its state.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from gemma4_operator.api import KIND
from gemma4_operator.api.crd import crd_manifest
from gemma4_operator.reconcile import desired as rc
from tests.e2e import waiting
from tests.e2e.controlplane import ControlPlane
from tests.e2e.faultproxy import FaultProxy, Faults
from tests.e2e.test_operator_e2e import (
    ACCELERATORS,
    CRD_NAME,
    CRD_PATH,
    EXAMPLES,
    RBAC_PATH,
    Obj,
    OperatorProcess,
    Rest,
    condition,
    controller_refs,
    download_pod_status,
    expected_state,
    load_example,
)
from tests.packaging.chart import load_objects, one, operator_cluster_role, template, workload

pytestmark = pytest.mark.e2e

# An operator makes few watch requests (7 in this module without faults: one per watched kind, each open for
# the server's watch timeout), so at 0.2 a seed can leave every one alone: watches get faults at 0.5.
FAULTS = Faults(rate=0.2, seed=14, watch_rate=0.5, stall_s=10.0, retry_after=2)
RELEASE = "gemma4-faults"  # the chart's release and namespace here: no clash with test_operator_e2e.py's
CHANGED = ("e2b-cpu", "e4b-l4", "26b-a4b-l4-llamacpp")  # replicas 1 -> 2: a new PodDisruptionBudget
DELETED = ("26b-a4b-h100-fp8", "31b-gb200-nvfp4")
CONVERGE_S = 90.0
WINDOW_S = 10.0
# A reconcile of one object is ~6-10 requests (kopf's annotations, 2-4 applies, the status, Events); a failed
# one is retried after 1, 2, 4... s (the operator) or 1, 1, 2, 3... s (kopf's own API calls). A client retrying
# without back-off re-sends within milliseconds on loopback and makes hundreds in 10 s.
MAX_PER_WINDOW = 40  # measured: 9-15
OUTAGE_S, OUTAGE_RETRY_AFTER = 12.0, 3
KINDS = (*FAULTS.kinds, "outage")
# The operator's discovery of the PodDisruptionBudget version (GET /apis/policy) fails while it starts: it must
# ask again, not go on with a guess that a server serving another version refuses on every reconcile.
STARTUP_OUTAGE = ("/apis/policy", 5.0)
# kopf's words for an unexpected failure (a handler's exception, a dead worker or root task); a traceback is one
# too, except on kopf's "Throttling for N seconds due to an unexpected error": an API call of its own that failed
# through all its retries (a long outage), after which it carries on (see test_backs_off_through_an_outage).
CRASH_WORDS = ("failed with an exception", "unrecoverable error", "Root task", "crashed", "Unhandled")
HANDLED_TRACEBACK = re.compile(r"^Throttling for \d+ seconds due to an unexpected error")


# ---------------------------------------------------------------------------------------------------------------
# fixtures: CRD, the chart's identity, the proxy, the operator behind it
# ---------------------------------------------------------------------------------------------------------------


def wait_absent(rest: Rest, path: str, timeout: float = 60.0) -> None:
    def gone() -> bool:
        try:
            rest.request("GET", path)
        except ApiException as err:
            return bool(err.status == 404)
        return False

    waiting.wait_for(f"{path} to be gone", gone, timeout)


@pytest.fixture(scope="module")
def rest(k8s_api: client.ApiClient) -> Rest:
    policy = Rest(k8s_api, "policy/v1").request("GET", "/apis/policy")
    return Rest(k8s_api, str(policy["preferredVersion"]["groupVersion"]))


@pytest.fixture(scope="module")
def fault_crd(rest: Rest) -> Iterator[str]:
    """The CRD, installed once an earlier module's copy is gone, and removed before the next module starts."""
    path = f"{CRD_PATH}/{CRD_NAME}"
    wait_absent(rest, path)
    rest.post(CRD_PATH, crd_manifest())
    waiting.wait_for("the CRD to be Established", lambda: any(
        c["type"] == "Established" and c["status"] == "True"
        for c in rest.request("GET", path).get("status", {}).get("conditions") or []))
    yield path
    rest.delete_path(path)
    wait_absent(rest, path, timeout=120.0)


@dataclass
class Identity:
    token: str
    args: list[str]
    created: list[str]


@pytest.fixture(scope="module")
def identity(control_plane: ControlPlane, rest: Rest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Identity]:
    """The chart's ServiceAccount, ClusterRole and binding (release and namespace ``gemma4-faults``)."""
    home = tmp_path_factory.mktemp("helm-faults")
    objects = load_objects(template("--set", f"operator.accelerators={{{ACCELERATORS}}}", home=home,
                                    include_crds=False, release=RELEASE, namespace=RELEASE))
    rest.post("/api/v1/namespaces", {"metadata": {"name": RELEASE}})
    sa, binding = (one(objects, k) for k in ("ServiceAccount", "ClusterRoleBinding"))
    role = operator_cluster_role(objects)
    rest.post(f"/api/v1/namespaces/{RELEASE}/serviceaccounts", sa)
    rest.post(f"{RBAC_PATH}/clusterroles", role)
    rest.post(f"{RBAC_PATH}/clusterrolebindings", binding)
    created = [f"{RBAC_PATH}/clusterrolebindings/{binding['metadata']['name']}",
               f"{RBAC_PATH}/clusterroles/{role['metadata']['name']}", f"/api/v1/namespaces/{RELEASE}"]
    token = control_plane.service_account_token(RELEASE, sa["metadata"]["name"], create=False)
    args = list(workload(objects)["spec"]["template"]["spec"]["containers"][0].get("args") or [])
    yield Identity(token, args, created)
    for path in created:
        rest.delete_path(path)


@pytest.fixture(scope="module")
def proxy(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxy]:
    fp = FaultProxy(control_plane.url, control_plane.ca_path, tmp_path_factory.mktemp("faultproxy"), FAULTS)
    fp.start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def operator(fault_crd: str, identity: Identity, proxy: FaultProxy,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """One operator for the module, reaching the API server only through the proxy."""
    assert fault_crd
    logs = tmp_path_factory.mktemp("operator-faults")
    op = OperatorProcess(identity.args, proxy.kubeconfig(logs / "kubeconfig", identity.token), logs, name="faults")
    proxy.outage(*STARTUP_OUTAGE, retry_after=1)
    op.start(timeout=120.0)  # its startup requests go through the faults too
    yield op
    assert op.starts == 1 and op.running, f"the operator died under faults:\n{op.tail()}"
    op.stop()  # SIGTERM, exit status 0 required
    crashes = crash_lines(op)
    assert not crashes, "the operator's log shows crashes, not handled retries:\n" + "\n".join(crashes[:20])


# ---------------------------------------------------------------------------------------------------------------
# what converged means, and the proxy's numbers
# ---------------------------------------------------------------------------------------------------------------


def crash_lines(op: OperatorProcess) -> list[str]:
    """Log records of unexpected failures, as opposed to handled retries (``failed temporarily``, ``will
    retry``, ``retrying in``). The log is JSON, one record a line; anything else (a dying interpreter's
    traceback on stderr) is checked as plain text."""
    out = []
    for path in op.all_logs():
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = {"message": line}
            message = str(record.get("message", "")) if isinstance(record, dict) else line
            traceback = "Traceback" in line and not HANDLED_TRACEBACK.match(message)
            if traceback or any(word in message for word in CRASH_WORDS):
                out.append(line[:2000])
    return out


def problems(rest: Rest, obj: Obj) -> list[str]:
    """Why ``obj`` (as the test last wrote it) has not converged; empty when it has."""
    meta = obj["metadata"]
    ns, name = meta["namespace"], meta["name"]
    live = rest.get(KIND, ns, name)
    if live is None:
        return [f"{ns}/{name}: missing"]
    uid = live["metadata"]["uid"]
    desired = expected_state(live, uid, rest.kind_paths["PodDisruptionBudget"][0])
    assert desired.plan is not None, desired.error
    out = []
    status = live.get("status") or {}
    planned = condition(live, "Planned")
    if status.get("observedGeneration") != live["metadata"]["generation"] or not planned:
        out.append(f"{ns}/{name}: status of generation {status.get('observedGeneration')}, "
                   f"object at {live['metadata']['generation']}")
    elif status.get("plan") != desired.plan.to_status().model_dump(by_alias=True, mode="json"):
        out.append(f"{ns}/{name}: status.plan is not the current plan")
    if any(c["kind"] == "Job" for c in desired.children):
        play_download_kubelet(rest, ns, name)
    out += child_problems(rest, ns, name, desired.children)
    return out


def play_download_kubelet(rest: Rest, ns: str, name: str) -> None:
    """The download Job's pod (storage.modelCache), which nothing runs here, as a kubelet would report it done:
    the serving Deployment follows only then."""
    for pod in rest.objects("Pod", ns, f"job-name={name}-download"):
        if pod.get("status", {}).get("phase") != "Succeeded":
            report = {"exitCode": 0, "bytes": 0, "seconds": 1.0, "log": ""}
            rest.patch("Pod", ns, pod["metadata"]["name"], download_pod_status(pod, report), subresource="status")


def child_problems(rest: Rest, ns: str, name: str, want: Sequence[Obj]) -> list[str]:
    live = [c for kind_objs in rest.children(ns, name).values() for c in kind_objs]
    by_kind = Counter(c["kind"] for c in live)
    out = [f"{ns}/{name}: {n} {kind}s" for kind, n in by_kind.items() if n > 1]
    extra = by_kind.keys() - {c["kind"] for c in want}
    out += [f"{ns}/{name}: stale {kind}" for kind in sorted(extra)]
    for child in want:
        have = next((c for c in live if c["kind"] == child["kind"]), None)
        if have is None:
            out.append(f"{ns}/{name}: {child['kind']} missing")
        elif (owners := [r["uid"] for r in controller_refs(have)]) != [r["uid"] for r in controller_refs(child)]:
            # the rendering says which children the object controls (a retained cache PVC: none)
            out.append(f"{ns}/{name}: {child['kind']} controlled by {owners}, rendered otherwise")
        elif (diff := rc.first_difference({k: v for k, v in child.items() if k != "status"}, have)) is not None:
            out.append(f"{ns}/{name}: {child['kind']} differs from the rendering at {diff}")
    return out


def gone_problems(rest: Rest, meta: Obj) -> list[str]:
    """What is left of a deleted object: itself, or a child it controlled (a retained PVC is meant to stay)."""
    ns, name = meta["namespace"], meta["name"]
    left = [] if rest.get(KIND, ns, name) is None else [f"{ns}/{name}: still there"]
    return left + [f"{ns}/{name}: {kind} left" for kind, objs in rest.children(ns, name).items()
                   if any(r["uid"] == meta["uid"] for o in objs for r in controller_refs(o))]


@dataclass
class Phase:
    """One row of the table: what was done, what the proxy saw meanwhile, whether and when it converged."""

    name: str
    started: float = field(default_factory=time.monotonic)
    converged_s: float | None = None
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    def row(self) -> str:
        seen = " | ".join(str(self.faults.get(k, 0)) for k in KINDS)
        done = f"yes | {self.converged_s:.1f}" if self.converged_s is not None else "no | -"
        return f"| {self.name} | {self.requests} | {seen} | {done} |"


def converge(phase: Phase, proxy: FaultProxy, op: OperatorProcess, check: Callable[[], list[str]]) -> None:
    """Wait until ``check`` finds nothing, with the operator alive throughout; fill in the phase's numbers."""
    last: list[str] = []

    def probe() -> bool:
        nonlocal last
        assert op.running, f"the operator exited during {phase.name}:\n{op.tail()}"
        assert proxy.running, f"mitmdump exited during {phase.name}:\n{proxy.log_tail()}"
        last = check()
        return not last

    try:
        waiting.wait_for(phase.name, probe, CONVERGE_S, 0.5, lambda: "\n" + "\n".join(last[:20]) + f"\n{op.tail()}")
        phase.converged_s = time.monotonic() - phase.started
    finally:
        entries = [e for e in proxy.log()["requests"] if e["t"] >= phase.started]
        phase.requests = len(entries)
        phase.faults = Counter(e["fault"] for e in entries if e["fault"])


def window_peaks(entries: list[dict[str, Any]], window: float) -> dict[str, int]:
    """Per namespace: the most requests that fell in any ``window`` seconds."""
    times: dict[str, list[float]] = {}
    for e in entries:
        m = re.search(r"/namespaces/([^/]+)/", e["path"])
        if m:
            times.setdefault(m.group(1), []).append(e["t"])
    peaks = {}
    for ns, ts in times.items():
        ts.sort()
        lo, best = 0, 0
        for hi, t in enumerate(ts):
            while t - ts[lo] > window:
                lo += 1
            best = max(best, hi - lo + 1)
        peaks[ns] = best
    return peaks


# ---------------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table() -> list[Phase]:
    return []


@pytest.fixture(scope="module")
def namespace(rest: Rest) -> Iterator[Callable[[str], str]]:
    """Creates a namespace by name; all are deleted at the end of the module."""
    made: list[str] = []

    def make(name: str) -> str:
        rest.post("/api/v1/namespaces", {"metadata": {"name": name}})
        made.append(name)
        return name

    yield make
    for name in made:
        rest.delete_path(f"/api/v1/namespaces/{name}")


def _example(stem: str) -> Path:
    return next(p for p in EXAMPLES if p.stem == stem)


def test_converges_through_faults_create_change_delete(rest: Rest, operator: OperatorProcess, proxy: FaultProxy,
                                                       table: list[Phase], namespace: Callable[[str], str],
                                                       record_property: Callable[[str, object], None]) -> None:
    """Every example created, three spec-changed, two deleted, each step under random faults: each converges."""
    objects = {p.stem: rest.create(load_example(p, namespace(f"faults-{p.stem}"))) for p in EXAMPLES}
    try:
        phase = Phase(f"create {len(objects)}")
        table.append(phase)
        converge(phase, proxy, operator, lambda: [p for o in objects.values() for p in problems(rest, o)])

        phase = Phase(f"spec change {len(CHANGED)} (replicas 2)")
        table.append(phase)
        for stem in CHANGED:
            meta = objects[stem]["metadata"]
            objects[stem] = rest.patch(KIND, meta["namespace"], meta["name"], {"spec": {"replicas": 2}})
        converge(phase, proxy, operator, lambda: [p for o in objects.values() for p in problems(rest, o)])

        phase = Phase(f"delete {len(DELETED)}")
        table.append(phase)
        deleted = [objects.pop(stem)["metadata"] for stem in DELETED]
        for meta in deleted:
            rest.delete(KIND, meta["namespace"], meta["name"])
        converge(phase, proxy, operator, lambda: [
            *[p for o in objects.values() for p in problems(rest, o)],
            *[p for meta in deleted for p in gone_problems(rest, meta)]])
    finally:
        # Each test records the table so far under one title: the summary prints the last one recorded.
        record_property("table:API faults", render_table(table, proxy))
    entries = proxy.log()["requests"]
    assert any(e["watch"] and e["fault"] for e in entries), "no watch request got a fault: watches untested"
    assert_backs_off(entries)


def test_backs_off_through_an_outage(rest: Rest, operator: OperatorProcess, proxy: FaultProxy, table: list[Phase],
                                     namespace: Callable[[str], str],
                                     record_property: Callable[[str, object], None]) -> None:
    """Every request of one object answered 429 (Retry-After 3) for 12 s while its spec changes (kopf's handler
    and its retries) and its Service is deleted (the operator's own watch-triggered repair and its retries): both
    wait as told between attempts, and the object converges once the outage is over."""
    ns = namespace("faults-outage")
    obj = rest.create(load_example(_example("e2b-cpu"), ns))
    converge(Phase("outage: object created"), proxy, operator, lambda: problems(rest, obj))

    phase = Phase(f"outage {OUTAGE_S:g}s (429, Retry-After {OUTAGE_RETRY_AFTER}) + spec change")
    table.append(phase)
    proxy.outage(f"/namespaces/{ns}/", OUTAGE_S, OUTAGE_RETRY_AFTER)
    obj = rest.patch(KIND, ns, obj["metadata"]["name"], {"spec": {"replicas": 2}})
    rest.delete("Service", ns, obj["metadata"]["name"])
    try:
        converge(phase, proxy, operator, lambda: problems(rest, obj))
    finally:
        record_property("table:API faults", render_table(table, proxy))
    mine = [e for e in proxy.log()["requests"] if e["t"] >= phase.started and f"/namespaces/{ns}/" in e["path"]]
    print(f"\n{ns}'s requests from the outage on (s after its start, method, path, fault, status):\n" + "\n".join(
        f"  {e['t'] - phase.started:5.1f} {e['method']} {e['path']} {e['fault']} {e['status']}" for e in mine))
    refused = [e for e in mine if e["fault"] == "outage"]
    assert refused, "the operator sent nothing during the outage: the test did not test anything"
    for (method, path), gap in shortest_gaps(refused).items():
        assert gap >= OUTAGE_RETRY_AFTER * 0.9, f"{method} {path} sent again {gap:.2f}s after a Retry-After 3"
    assert phase.converged_s is not None and phase.converged_s >= OUTAGE_S
    assert_backs_off(proxy.log()["requests"])


def shortest_gaps(entries: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Per (method, path) sent more than once: the shortest time between two of its requests."""
    times: dict[tuple[str, str], list[float]] = {}
    for e in entries:
        times.setdefault((e["method"], e["path"]), []).append(e["t"])
    return {key: min(b - a for a, b in itertools.pairwise(ts)) for key, ts in times.items() if len(ts) > 1}


def assert_backs_off(entries: list[dict[str, Any]]) -> None:
    peaks = window_peaks(entries, WINDOW_S)
    worst = max(peaks.items(), key=lambda kv: kv[1])
    print(f"\nrequests per object namespace, most in any {WINDOW_S:g}s: {json.dumps(peaks, sort_keys=True)}")
    assert worst[1] <= MAX_PER_WINDOW, f"{worst[1]} requests for {worst[0]} within {WINDOW_S:g}s: no back-off"


def render_table(table: list[Phase], proxy: FaultProxy) -> str:
    entries = proxy.log()["requests"]
    total = Counter(e["fault"] for e in entries if e["fault"])
    head = f"| phase | requests | {' | '.join(KINDS)} | converged | time to converge (s) |"
    rule = "|" + "---|" * (len(KINDS) + 4)
    rows = [p.row() for p in table]
    all_faults = " | ".join(str(total.get(k, 0)) for k in KINDS)
    watches = [e for e in entries if e["watch"]]
    hit = sum(1 for e in watches if e["fault"])
    footer = (f"| whole module (fault rate {FAULTS.rate:g}, watches {FAULTS.watch_rate:g}, seed {FAULTS.seed}; "
              f"{len(watches)} watch requests, {hit} faulted) | {len(entries)} | {all_faults} | - | - |")
    return "\n".join([head, rule, *rows, footer])
