"""Reconcile benchmark against the real control plane of the e2e tier (etcd + kube-apiserver +
kube-controller-manager 1.37, ``tests/e2e/controlplane``): the operator as a subprocess, as in e2e,
and N Gemma4Deployments created at once (the kmock benchmark's mix of specs and nodes).

Measured per (operator source, N), each on a fresh control plane:

- seconds from the first create until every object's Deployment and Service exist (counted on the
  server), and until the operator has written nothing for ``QUIET_S``;
- the operator's API requests, counted on the server's side from its **audit log** (the operator runs as
  its own ServiceAccount and only that user is audited): reads (get/list), watch requests, writes
  (server-side applies, status patches, Events, kopf's annotation patches, deletes), per object;
- the same during an idle period once everything settled (target: 0 writes and, in watch mode, 0 reads);
- the operator's RSS after start-up (no object yet) and its peak RSS (VmHWM of the subprocess).

The controller-manager runs, so every Deployment gets its ReplicaSet and Pending pods (no scheduler, no
kubelet), and the operator sees that churn through its watches. ``operator_dir`` runs another source
tree's operator (``--against REF``) against an identical control plane.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))  # this directory is no package: tests.* must resolve when pytest runs it alone

from bench_reconcile import NODES, _cpu_seconds, _free_port, _peak_rss_mib, spec_for  # noqa: E402
from tests.e2e.controlplane import ControlPlane  # noqa: E402

from gemma4_operator.api import API_VERSION, GROUP, KIND, PLURAL  # noqa: E402
from gemma4_operator.api.crd import crd_manifest  # noqa: E402

NAMESPACE = "gemma4-bench"  # the operator's ServiceAccount
SERVICE_ACCOUNT = "gemma4-operator"
USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
OBJECT_NAMESPACES = 5
QUIET_S = 5.0
CREATE_THREADS = 8
AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["{USER}"]
- level: None
"""
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


@dataclasses.dataclass
class Counts:
    reads: int = 0
    watches: int = 0
    writes: int = 0
    applies: int = 0
    status: int = 0
    events: int = 0
    kopf: int = 0
    deletes: int = 0

    @property
    def requests(self) -> int:
        return self.reads + self.watches + self.writes


@dataclasses.dataclass
class RealResult:
    source: str
    n: int
    children_s: float
    settle_s: float
    burst: Counts
    idle_s: float
    idle: Counts
    start_rss_mib: float
    peak_rss_mib: float
    operator_cpu_s: float
    exit_code: int


def classify(event: dict[str, Any], counts: Counts) -> None:
    """Count one audit event of the operator (Metadata level: verb, objectRef, no body or content type).
    Every patch of a child is a server-side apply: the operator writes children no other way."""
    verb = str(event.get("verb"))
    ref = event.get("objectRef") or {}
    if verb == "watch":
        counts.watches += 1
        return
    if verb not in WRITE_VERBS:
        counts.reads += 1
        return
    counts.writes += 1
    resource, subresource = ref.get("resource"), ref.get("subresource")
    if resource == PLURAL:
        if subresource == "status":
            counts.status += 1
        else:
            counts.kopf += 1
    elif resource == "events":
        counts.events += 1
    elif verb == "patch":
        counts.applies += 1
    elif verb.startswith("delete"):
        counts.deletes += 1


class AuditLog:
    """The operator's requests as the API server's audit log records them, one per auditID (a watch is
    logged when its response starts and again when it ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._offset = 0

    def refresh(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return self.events
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            event = json.loads(line)
            if event.get("auditID") not in self._seen and (event.get("user") or {}).get("username") == USER:
                self._seen.add(event["auditID"])
                self.events.append(event)
        return self.events

    def count(self, start: int, stop: int | None = None) -> Counts:
        counts = Counts()
        for event in self.refresh()[start:stop]:
            classify(event, counts)
        return counts

    def writes(self) -> int:
        return sum(1 for e in self.refresh() if e.get("verb") in WRITE_VERBS)


class Admin:
    """Plain JSON requests as the control plane's admin (system:masters)."""

    def __init__(self, cp: ControlPlane) -> None:
        self.url = cp.url
        self.token = cp.admin_token
        self.ssl = ssl.create_default_context(cafile=str(cp.ca_path))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode() if body is not None else None,
                                     method=method, headers={"Authorization": f"Bearer {self.token}",
                                                             "Accept": "application/json",
                                                             "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60, context=self.ssl) as resp:
            return json.loads(resp.read() or b"{}")

    def patch_status(self, path: str, body: Any) -> None:
        req = urllib.request.Request(self.url + path + "/status", data=json.dumps(body).encode(), method="PATCH",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/merge-patch+json"})
        with urllib.request.urlopen(req, timeout=60, context=self.ssl):
            pass

    def count(self, path: str) -> int:
        """Objects at a list path: one item is listed, the server counts the rest (remainingItemCount)."""
        listed = self.request("GET", f"{path}?limit=1")
        return len(listed.get("items") or []) + int(listed["metadata"].get("remainingItemCount") or 0)


def _g4d(i: int) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": f"m{i:04d}", "namespace": f"ns{i % 5}"},
            "spec": spec_for(i)}


def prepare(cp: ControlPlane, admin: Admin) -> str:
    """The CRD, nodes, namespaces, and the operator's ServiceAccount bound to cluster-admin (the chart's RBAC
    is the e2e tier's subject); returns a kubeconfig for it."""
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    admin.request("POST", crds, crd_manifest())
    for ns in [NAMESPACE, *(f"ns{i}" for i in range(OBJECT_NAMESPACES))]:
        admin.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    for name, labels in NODES:
        admin.request("POST", "/api/v1/nodes", {"metadata": {"name": name, "labels": labels}})
    admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "metadata": {"name": "gemma4-bench"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]})
    token = cp.service_account_token(NAMESPACE, SERVICE_ACCOUNT)
    deadline = time.monotonic() + 60
    while not any(c["type"] == "Established" and c["status"] == "True"
                  for c in admin.request("GET", f"{crds}/{PLURAL}.{GROUP}").get("status", {}).get("conditions") or []):
        if time.monotonic() > deadline:
            raise RuntimeError("the CRD was never Established")
        time.sleep(0.1)
    return str(cp.write_kubeconfig(token=token, namespace=NAMESPACE))


@contextlib.contextmanager
def operator(kubeconfig: str, operator_dir: Path | None, log: Path,
             trace: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``gemma4-operator run`` (of ``operator_dir``'s source when given) as a subprocess, healthy; with
    ``trace``, under tracemalloc (traced_operator.py, its reports appended to that file on SIGUSR1)."""
    health = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMMA4_", "KUBERNETES_SERVICE_"))}
    env.update(KUBECONFIG=kubeconfig, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([*([str(operator_dir)] if operator_dir else []), str(ROOT)])
    main = ["-m", "tests.benchmarks.reconcile.traced_operator", str(trace)] if trace else ["-m", "gemma4_operator"]
    argv = [sys.executable, *main, "run", "--standalone", "--log-format", "json", "--metrics-port", "0",
            "--health-port", str(health)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT)
        try:
            _wait("the operator's /healthz", 120, lambda: _healthy(health, proc))
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _healthy(port: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"the operator exited with {proc.returncode} while starting")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except OSError:
        return False


def _wait(what: str, timeout: float, probe: Any, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _wait_quiet(audit: AuditLog, timeout: float) -> None:
    """Until the operator wrote nothing for QUIET_S seconds."""
    deadline = time.monotonic() + timeout
    seen, since = audit.writes(), time.monotonic()
    while time.monotonic() - since < QUIET_S:
        if time.monotonic() > deadline:
            raise RuntimeError("the operator never went quiet")
        time.sleep(0.25)
        now = audit.writes()
        if now != seen:
            seen, since = now, time.monotonic()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _finish_downloads(admin: Admin, stop: threading.Event) -> None:
    """Play the kubelet for the model download Jobs' pods (nothing runs them here): each exits 0, so the Job
    controller completes its Job and the operator creates the Deployment it held back."""
    done: set[str] = set()
    while not stop.wait(0.5):
        pods = admin.request("GET", "/api/v1/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Ddownload")
        for pod in pods.get("items") or []:
            meta = pod["metadata"]
            if meta["uid"] in done:
                continue
            admin.patch_status(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", {"status": {
                "phase": "Succeeded", "containerStatuses": [{
                    "name": "download", "image": pod["spec"]["containers"][0]["image"], "imageID": "",
                    "ready": False, "restartCount": 0, "state": {"terminated": {
                        "exitCode": 0, "reason": "Completed", "message": "",
                        "startedAt": "2026-12-07T10:00:00Z", "finishedAt": "2026-12-07T10:01:00Z"}}}]}})
            done.add(meta["uid"])


def _burst(admin: Admin, audit: AuditLog, n: int) -> tuple[float, float, int]:
    """Create the N objects at once; seconds until all children exist, until quiet, audit mark before."""
    deployments = admin.count("/apis/apps/v1/deployments")
    services = admin.count("/api/v1/services")
    mark = len(audit.refresh())
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
        path = "/apis/{group}/{version}/namespaces/{ns}/{plural}"
        list(pool.map(lambda obj: admin.request("POST", path.format(
            group=GROUP, version=API_VERSION.split("/")[1], ns=obj["metadata"]["namespace"], plural=PLURAL), obj),
            (_g4d(i) for i in range(n))))
    stop = threading.Event()
    kubelet = threading.Thread(target=_finish_downloads, args=(admin, stop), daemon=True)
    kubelet.start()
    try:
        _wait("all children", 900, lambda: admin.count("/apis/apps/v1/deployments") >= deployments + n
              and admin.count("/api/v1/services") >= services + n, interval=0.25)
    finally:
        stop.set()
        kubelet.join()
    children_s = time.monotonic() - started
    _wait_quiet(audit, 900)
    return children_s, time.monotonic() - started - QUIET_S, mark


def run_real(n: int, idle: float, source: str = "this tree", operator_dir: Path | None = None,
             logs: Path | None = None, trace: Path | None = None) -> RealResult:
    with tempfile.TemporaryDirectory(prefix="gemma4-bench-") as tmp:
        work = Path(tmp)
        (work / "audit-policy.yaml").write_text(AUDIT_POLICY)
        audit = AuditLog(work / "audit.log")
        cp = ControlPlane(extra_apiserver_args=[f"--audit-policy-file={work / 'audit-policy.yaml'}",
                                                f"--audit-log-path={audit.path}", "--audit-log-format=json"])
        with cp:
            admin = Admin(cp)
            kubeconfig = prepare(cp, admin)
            log = (logs or work) / f"operator-{source.replace(' ', '-').replace('/', '-')}-{n}.log"
            with operator(kubeconfig, operator_dir, log, trace) as proc:
                _wait("the operator's watch of Gemma4Deployments", 120, lambda: any(
                    e.get("verb") == "watch" and (e.get("objectRef") or {}).get("resource") == PLURAL
                    for e in audit.refresh()))
                time.sleep(1.0)  # the initial listings are done
                start_rss = _rss_mib(proc.pid)
                children_s, settle_s, mark = _burst(admin, audit, n)
                idle_mark = len(audit.refresh())
                burst = audit.count(mark, idle_mark)
                if trace:
                    proc.send_signal(signal.SIGUSR1)
                time.sleep(idle)
                idle_counts = audit.count(idle_mark)
                peak, cpu = _peak_rss_mib(proc.pid), _cpu_seconds(proc.pid)
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(60)
    return RealResult(source=source, n=n, children_s=children_s, settle_s=settle_s, burst=burst, idle_s=idle,
                      idle=idle_counts, start_rss_mib=start_rss, peak_rss_mib=peak, operator_cpu_s=cpu,
                      exit_code=code)


def real_table(results: list[RealResult]) -> str:
    head = ("operator", "N", "children s", "settled s", "requests/obj", "reads/obj", "watches",
            "writes/obj", "apply/status/event/kopf per obj", "idle s", "idle reads", "idle writes",
            "RSS at start MiB", "peak RSS MiB", "CPU s")
    rows = [head]
    for r in results:
        b = r.burst
        rows.append((r.source, str(r.n), f"{r.children_s:.1f}", f"{r.settle_s:.1f}", f"{b.requests / r.n:.2f}",
                     f"{b.reads / r.n:.2f}", str(b.watches), f"{b.writes / r.n:.2f}",
                     "/".join(f"{c / r.n:.2f}" for c in (b.applies, b.status, b.events, b.kopf)),
                     f"{r.idle_s:.0f}", str(r.idle.reads), str(r.idle.writes), f"{r.start_rss_mib:.0f}",
                     f"{r.peak_rss_mib:.0f}", f"{r.operator_cpu_s:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                             strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
