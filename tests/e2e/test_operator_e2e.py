"""The operator as a real subprocess against a real kube-apiserver + kube-controller-manager (1.37; the tests
marked ``floor`` also run on 1.29, the oldest release the chart supports).

What this tier shows that kmock cannot: server-side apply and its field ownership, resourceVersion conflicts,
CRD structural defaulting and OpenAPI validation (422 naming the field), the Helm chart's RBAC against the real
RBAC authorizer, garbage collection through ownerReferences, the scale subresource through kubectl, and which
PodDisruptionBudget API an old server serves.

Module setup, shared by the tests (one operator process for the whole module; only the restart and poll-mode
tests stop it, and they start it again):

* the CRD from ``crd_manifest()``; on servers before 1.25 without ``x-kubernetes-validations`` (no CEL there);
* the chart rendered by the real helm (``operator.accelerators=[nvidia-h100-80gb]``, so ``accelerator.type:
  auto`` plans onto H100s although no GPU node exists): its ServiceAccount, ClusterRole and ClusterRoleBinding
  are created in ``gemma4-system`` and the operator runs with that ServiceAccount's token, so every request it
  makes goes through the real RBAC authorizer with the chart's rules;
* ``gemma4-operator run`` with the args of the chart's Deployment (ports swapped for free ones), its log in a
  file under the test tmp dir, stopped with SIGTERM and required to exit 0.

Nothing schedules or runs pods (no scheduler, no kubelet): the ReplicaSet controller creates the serving pods and
they stay Pending. Timings go to the e2e summary printed at the end of the run (tests/e2e/conftest.py).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException
from prometheus_client.parser import text_string_to_metric_families

from gemma4_operator.api import API_VERSION, GROUP, KIND, PLURAL
from gemma4_operator.api.crd import crd_manifest
from gemma4_operator.config import OperatorConfig
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.render.children import MANAGER, RenderOptions
from gemma4_operator.render.download import NEEDS_WEIGHTS
from tests.e2e import waiting
from tests.e2e.controlplane import ControlPlane
from tests.e2e.controlplane.cluster import free_port
from tests.packaging.chart import Manifest, load_objects, one, operator_cluster_role, template, workload
from tests.tools.binaries import kubectl_path

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
CRD_NAME = f"{PLURAL}.{GROUP}"
ACCELERATORS = "nvidia-h100-80gb"  # the operator's --accelerators (cluster facts for accelerator.type auto)
OPERATOR_NAMESPACE = "gemma4-system"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGER}"
CHILD_KINDS = ("Deployment", "Service", "PersistentVolumeClaim", "Job", "PodDisruptionBudget")
SERVING_SELECTOR = "app.kubernetes.io/name=gemma4"  # the serving pods (the download Job's are gemma4-download)
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
WAIT_S = 30.0

T = TypeVar("T")
Obj = dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_S, interval: float = 0.1,
             operator: OperatorProcess | None = None) -> T:
    """``waiting.wait_for`` that adds the operator's log tail to a timeout."""
    def tail() -> str:
        assert operator is not None
        return f"\n--- operator log tail ({operator.log_path}):\n{operator.tail()}"

    return waiting.wait_for(what, probe, timeout, interval, tail if operator else None)


def server_version(api: client.ApiClient) -> tuple[int, int]:
    info = client.VersionApi(api).get_code()
    return int(info.major), int("".join(ch for ch in info.minor if ch.isdigit()))


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def load_example(path: Path, namespace: str) -> Obj:
    obj: Obj = yaml.safe_load(path.read_text())
    obj["metadata"]["namespace"] = namespace
    return obj


def g4d(name: str, namespace: str, spec: Obj) -> Obj:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


# ---------------------------------------------------------------------------------------------------------------
# raw REST access (any group/version, any patch type, any field manager)
# ---------------------------------------------------------------------------------------------------------------

RBAC_PATH = "/apis/rbac.authorization.k8s.io/v1"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
KIND_PATHS: dict[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "ReplicaSet": ("apps/v1", "replicasets"),
    "Service": ("v1", "services"),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims"),
    "Job": ("batch/v1", "jobs"),
    "Pod": ("v1", "pods"),
    "Event": ("v1", "events"),
    KIND: (API_VERSION, PLURAL),
}


class Rest:
    """Plain-dict requests through an official ``ApiClient`` (its auth and TLS settings), like the operator's
    own ``kube.Kube``: no model round-trip, any content type."""

    def __init__(self, api: client.ApiClient, pdb_api_version: str) -> None:
        self.api = api
        self.kind_paths = {**KIND_PATHS, "PodDisruptionBudget": (pdb_api_version, "poddisruptionbudgets")}

    def path(self, kind: str, namespace: str | None, name: str | None = None,
             subresource: str | None = None) -> str:
        group_version, plural = self.kind_paths[kind]
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        out = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
        if name:
            out += f"/{name}"
        if subresource:
            out += f"/{subresource}"
        return out

    def request(self, method: str, path: str, *, body: Any = None, query: Mapping[str, str] | None = None,
                content_type: str | None = None) -> Obj:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        _, url, header_params, serialized, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()), header_params=headers,
            body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, header_params=header_params, body=serialized, _request_timeout=30)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=response.reason, body=data.decode(errors="replace"))
        parsed: Obj = json.loads(data) if data else {}
        return parsed

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            return self.request("GET", self.path(kind, namespace, name))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def objects(self, kind: str, namespace: str | None, selector: str = "") -> list[Obj]:
        """Objects of ``kind`` in ``namespace`` (None: every namespace)."""
        query = {"labelSelector": selector} if selector else {}
        listed = self.request("GET", self.path(kind, namespace), query=query)
        # list items carry no apiVersion/kind: put them back, as a GET of one object has them
        items: list[Obj] = [{"apiVersion": listed["apiVersion"], "kind": kind, **item}
                            for item in listed.get("items") or []]
        return items

    def create(self, obj: Obj) -> Obj:
        return self.request("POST", self.path(obj["kind"], obj["metadata"]["namespace"]), body=obj)

    def patch(self, kind: str, namespace: str, name: str, body: Any, *, content_type: str = MERGE_PATCH,
              manager: str | None = None, force: bool | None = None, subresource: str | None = None) -> Obj:
        query: dict[str, str] = {}
        if manager:
            query["fieldManager"] = manager
        if force is not None:
            query["force"] = str(force).lower()
        return self.request("PATCH", self.path(kind, namespace, name, subresource), body=body, query=query,
                            content_type=content_type)

    def post(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body=body)

    def delete_path(self, path: str) -> None:
        with contextlib.suppress(ApiException):
            self.request("DELETE", path)

    def put(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return self.request("PUT", self.path(obj["kind"], meta["namespace"], meta["name"]), body=obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.request("DELETE", self.path(kind, namespace, name))

    def children(self, namespace: str, name: str) -> dict[str, list[Obj]]:
        """The operator's children of one Gemma4Deployment by kind (by the labels it puts on them)."""
        selector = f"{INSTANCE_LABEL}={name},{MANAGED_SELECTOR}"
        return {kind: self.objects(kind, namespace, selector) for kind in CHILD_KINDS}

    def events_for(self, namespace: str, name: str) -> list[Obj]:
        return [e for e in self.objects("Event", namespace)
                if (e.get("involvedObject") or {}).get("name") == name
                and (e.get("involvedObject") or {}).get("kind") == KIND]


# ---------------------------------------------------------------------------------------------------------------
# the operator process
# ---------------------------------------------------------------------------------------------------------------


def _operator_command() -> list[str]:
    script = Path(sys.executable).with_name("gemma4-operator")  # the installed console script
    return [str(script), "run"] if script.is_file() else [sys.executable, "-m", "gemma4_operator", "run"]


def with_ports(args: list[str], metrics_port: int, health_port: int) -> list[str]:
    """The chart's args with the listening ports replaced (several operators on one loopback)."""
    out = [a for a in args if not a.startswith(("--metrics-port", "--health-port"))]
    return [*out, f"--metrics-port={metrics_port}", f"--health-port={health_port}"]


@dataclass
class OperatorProcess:
    """``gemma4-operator run`` as a subprocess; ``start``/``stop``/``restart``. Each start gets fresh ports and
    its own log file (``operator-N.log``)."""

    args: list[str]
    kubeconfig: Path
    log_dir: Path
    name: str = "operator"
    popen: subprocess.Popen[bytes] | None = None
    log_path: Path = Path()
    metrics_port: int = 0
    health_port: int = 0
    starts: int = 0
    #: seconds of every start (until /healthz answers) and stop (SIGTERM until exit)
    start_seconds: list[float] = field(default_factory=list)
    stop_seconds: list[float] = field(default_factory=list)
    _log_file: Any = None
    _sigterm_at: float | None = None

    def start(self, timeout: float = 60.0) -> None:
        assert self.popen is None, "already running"
        self.starts += 1
        self.metrics_port, self.health_port = free_port(), free_port()
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GEMMA4_", "KUBERNETES_SERVICE_"))}  # no in-cluster config, no stray flags
        env.update(KUBECONFIG=str(self.kubeconfig), POD_ID=f"{self.name}-{self.starts}",
                   POD_NAMESPACE=OPERATOR_NAMESPACE, PYTHONUNBUFFERED="1")
        argv = [*_operator_command(), *with_ports(self.args, self.metrics_port, self.health_port)]
        t0 = time.monotonic()
        self._log_file = self.log_path.open("wb")
        self._log_file.write(f"# {' '.join(argv)}\n".encode())
        self._log_file.flush()
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                      stderr=subprocess.STDOUT, env=env, cwd=self.log_dir)
        deadline = t0 + timeout
        while not self._healthy():
            code = self.popen.poll()
            if code is not None:
                self._close_log()
                self.popen = None
                raise AssertionError(f"operator exited with {code} while starting:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop(check=False)
                raise AssertionError(f"operator /healthz not up after {timeout:.0f}s:\n{self.tail()}")
            time.sleep(0.05)
        self.start_seconds.append(time.monotonic() - t0)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def terminate(self) -> None:
        """Send SIGTERM without waiting (:meth:`stop` then waits and checks)."""
        assert self.popen is not None, "not running"
        if self._sigterm_at is None:
            self._sigterm_at = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0, *, check: bool = True) -> float:
        """SIGTERM (unless :meth:`terminate` sent it) and wait; with ``check`` assert a graceful exit (status 0
        within ``timeout``). Returns the seconds from SIGTERM to exit."""
        popen = self.popen
        assert popen is not None, "not running"
        self.terminate()
        assert self._sigterm_at is not None
        t0, self._sigterm_at = self._sigterm_at, None
        try:
            code: int | None = popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)
            code = None
        elapsed = time.monotonic() - t0
        self.popen = None
        self._close_log()
        self.stop_seconds.append(elapsed)
        if check:
            assert code is not None, f"operator ignored SIGTERM for {timeout:.0f}s (killed):\n{self.tail()}"
            assert code == 0, f"operator exited with {code} after SIGTERM:\n{self.tail()}"
        return elapsed

    def kill(self) -> None:
        """SIGKILL: a crash (no graceful shutdown)."""
        assert self.popen is not None, "not running"
        self.popen.kill()
        self.popen.wait(timeout=10)
        self.popen = None
        self._sigterm_at = None
        self._close_log()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def all_logs(self) -> list[Path]:
        return sorted(self.log_dir.glob(f"{self.name}-*.log"))

    def log_messages(self) -> list[str]:
        """Every log line of every start (the JSON records' ``message`` when the log format is json)."""
        out: list[str] = []
        for path in self.all_logs():
            for line in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    out.append(line)
                    continue
                out.append(str(record.get("message", line)) if isinstance(record, dict) else line)
        return out

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The operator's /metrics of the running process: (sample name, sorted labels) -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def metric_sum(self, name: str, **labels: str) -> float:
        return sum(v for (n, lbl), v in self.metrics().items()
                   if n == name and all((k, val) in lbl for k, val in labels.items()))


def forbidden_lines(op: OperatorProcess) -> list[str]:
    """RBAC denials in the operator's log. A 403 for writing into a namespace that is being deleted (the
    tests delete their namespaces while the operator runs) is not one."""
    return [m for m in op.log_messages()
            if ("forbidden" in m.lower() or "HTTP 403" in m) and "because it is being terminated" not in m]


# ---------------------------------------------------------------------------------------------------------------
# chart RBAC
# ---------------------------------------------------------------------------------------------------------------

# Every request the operator makes in watch mode with --accelerators (kopf's and its own), as
# (verb, group, resource, subresource, why). `create` on the children: a server-side apply that creates the
# object is authorized as `create` (kube-apiserver's patch handler checks it before create-on-update).
OPERATOR_NEEDS: list[tuple[str, str, str, str, str]] = [
    ("list", "apiextensions.k8s.io", "customresourcedefinitions", "", "kopf discovery"),
    ("watch", "apiextensions.k8s.io", "customresourcedefinitions", "", "kopf discovery"),
    ("list", GROUP, PLURAL, "", "kopf"),
    ("watch", GROUP, PLURAL, "", "kopf"),
    ("patch", GROUP, PLURAL, "", "kopf progress annotations"),
    ("patch", GROUP, PLURAL, "status", "status"),
    *[(verb, group, resource, "", why)
      for group, resource in (("apps", "deployments"), ("", "services"), ("", "persistentvolumeclaims"),
                              ("policy", "poddisruptionbudgets"), ("batch", "jobs"))
      for verb, why in (("list", "watch mode index"), ("watch", "watch mode index"), ("patch", "server-side apply"),
                        ("create", "server-side apply of a missing child is authorized as create"),
                        ("get", "a child the index does not hold is read before its first apply (NameConflict)"))],
    ("delete", "policy", "poddisruptionbudgets", "", "a PDB no longer wanted"),
    ("delete", "batch", "jobs", "", "a download Job replaced by a new checkpoint's"),
    ("list", "", "pods", "", "status from pods"),
    ("watch", "", "pods", "", "status from pods"),
    ("create", "", "events", "", "events"),
]


def render_chart(home: Path, *helm_args: str, release: str = "gemma4-operator") -> list[Manifest]:
    """``helm template`` of the chart (``helm_args`` such as ``--set k=v``), without the CRDs."""
    return load_objects(template(*helm_args, home=home, include_crds=False, release=release,
                                 namespace=OPERATOR_NAMESPACE))


def ssa_create_gaps(cluster_role: Manifest) -> list[Obj]:
    """Rules granting ``patch`` on a kind the operator server-side applies without ``create``: a first apply
    of such a kind is refused (403). Empty when the chart is right."""
    gaps: list[Obj] = []
    for rule in cluster_role.get("rules") or []:
        resources = [r for r in rule.get("resources") or [] if "/" not in r and r != PLURAL]
        verbs = set(rule.get("verbs") or [])
        if resources and "patch" in verbs and "create" not in verbs and "*" not in verbs:
            gaps.append({"apiGroups": rule.get("apiGroups"), "resources": resources, "verbs": ["create"]})
    return gaps


@dataclass
class ChartIdentity:
    """The chart's ServiceAccount, its token, a kubeconfig for it and the operator args the chart renders."""

    service_account: str
    token: str
    kubeconfig: Path
    args: list[str]
    cluster_role: Manifest
    workaround: list[Obj]
    created: list[str]  # API paths of the cluster-scoped objects to delete afterwards


def install_chart_identity(cp: ControlPlane, rest: Rest, objects: list[Manifest], workdir: Path) -> ChartIdentity:
    sa = one(objects, "ServiceAccount")
    role = operator_cluster_role(objects)
    binding = one(objects, "ClusterRoleBinding")
    rest.post(f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/serviceaccounts", sa)
    rest.post(f"{RBAC_PATH}/clusterroles", role)
    rest.post(f"{RBAC_PATH}/clusterrolebindings", binding)
    created = [f"{RBAC_PATH}/clusterrolebindings/{binding['metadata']['name']}",
               f"{RBAC_PATH}/clusterroles/{role['metadata']['name']}"]
    sa_name = sa["metadata"]["name"]
    gaps = ssa_create_gaps(role)
    token = cp.service_account_token(OPERATOR_NAMESPACE, sa_name, create=False)
    kubeconfig = cp.write_kubeconfig(workdir / f"{sa_name}.kubeconfig", token=token, namespace=OPERATOR_NAMESPACE)
    container = workload(objects)["spec"]["template"]["spec"]["containers"][0]
    assert not container.get("command"), "the image's ENTRYPOINT (gemma4-operator run) is expected"
    return ChartIdentity(sa_name, token, kubeconfig, list(container.get("args") or []), role, gaps, created)


def remove_chart_identity(rest: Rest, ident: ChartIdentity) -> None:
    for path in ident.created:
        rest.delete_path(path)


def create_once_gone(rest: Rest, collection: str, obj: Obj, timeout: float = 60.0) -> Obj:
    """POST ``obj`` once an earlier object of that name has finished being deleted: each e2e module that uses
    the module fixtures below creates its own CRD and operator namespace, and deletes them at its end."""
    path = f"{collection}/{obj['metadata']['name']}"

    def gone() -> bool:
        try:
            rest.request("GET", path)
        except ApiException as err:
            if err.status == 404:
                return True
            raise
        return False

    wait_for(f"{path} (from an earlier module) to be deleted", gone, timeout, interval=0.2)
    return rest.post(collection, obj)


def cluster_role_binding(name: str, *, role: str, service_account: str) -> Obj:
    return {"metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": OPERATOR_NAMESPACE}]}


# ---------------------------------------------------------------------------------------------------------------
# module fixtures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def version(k8s_api: client.ApiClient) -> tuple[int, int]:
    return server_version(k8s_api)


@pytest.fixture(scope="module")
def pdb_api_version(control_plane: ControlPlane) -> str:
    """What the server prefers for policy (policy/v1 on every release the tier runs, 1.29 and 1.37)."""
    with control_plane.api_client() as api:
        group = Rest(api, "policy/v1").request("GET", "/apis/policy")
    return str(group["preferredVersion"]["groupVersion"])


@pytest.fixture(scope="module")
def rest(k8s_api: client.ApiClient, pdb_api_version: str) -> Rest:
    return Rest(k8s_api, pdb_api_version)


@pytest.fixture(scope="module")
def g4d_crd(rest: Rest, version: tuple[int, int]) -> Iterator[Obj]:
    crd = crd_manifest()
    t0 = time.monotonic()
    create_once_gone(rest, CRD_PATH, crd)

    def established() -> bool:
        conditions = rest.request("GET", f"{CRD_PATH}/{CRD_NAME}").get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for("the Gemma4Deployment CRD to be Established", established)
    print(f"\nCRD {CRD_NAME} established in {time.monotonic() - t0:.2f}s on {version[0]}.{version[1]}",
          file=sys.stderr)
    yield crd
    rest.delete_path(f"{CRD_PATH}/{CRD_NAME}")


@pytest.fixture(scope="module")
def operator_namespace(rest: Rest) -> Iterator[str]:
    create_once_gone(rest, "/api/v1/namespaces", {"metadata": {"name": OPERATOR_NAMESPACE}})
    yield OPERATOR_NAMESPACE
    rest.delete_path(f"/api/v1/namespaces/{OPERATOR_NAMESPACE}")


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm")


@pytest.fixture(scope="module")
def chart_identity(control_plane: ControlPlane, rest: Rest, operator_namespace: str, helm_home: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartIdentity]:
    assert operator_namespace == OPERATOR_NAMESPACE
    objects = render_chart(helm_home, "--set", f"operator.accelerators={{{ACCELERATORS}}}")
    ident = install_chart_identity(control_plane, rest, objects, tmp_path_factory.mktemp("identity"))
    yield ident
    remove_chart_identity(rest, ident)


@pytest.fixture(scope="module")
def operator(g4d_crd: Obj, chart_identity: ChartIdentity,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """One operator for the module, as the chart's ServiceAccount with the chart's args."""
    assert g4d_crd
    op = OperatorProcess(chart_identity.args, chart_identity.kubeconfig, tmp_path_factory.mktemp("operator-logs"))
    op.start()
    print(f"\noperator up in {op.start_seconds[-1]:.2f}s: {' '.join(op.args)} (log {op.log_path})",
          file=sys.stderr)
    yield op
    if op.running:
        op.stop()
    starts = ", ".join(f"{s:.2f}" for s in op.start_seconds)
    stops = ", ".join(f"{s:.2f}" for s in op.stop_seconds)
    print(f"\noperator: {op.starts} start(s) [{starts}]s, stop(s) [{stops}]s; logs {op.log_dir}", file=sys.stderr)
    denied = forbidden_lines(op)
    assert not denied, "the operator hit RBAC denials with the chart's ServiceAccount:\n" + "\n".join(denied[:10])


def expected_state(obj: Obj, uid: str, pdb_api_version: str) -> rc.Desired:
    """What the operator should compute for ``obj`` with this cluster's facts and PDB API (same code path)."""
    model = rc.parse_parent({**obj, "metadata": {**obj["metadata"], "uid": uid}})
    config = OperatorConfig(accelerator_types=(ACCELERATORS,))
    return rc.desired_state(model, uid, ClusterFacts(frozenset({ACCELERATORS})), config,
                            RenderOptions(pdb_api_version=pdb_api_version))


def create_g4d(rest: Rest, obj: Obj) -> Obj:
    return rest.create(obj)


def create_all(rest: Rest, objects: list[Obj]) -> None:
    for obj in objects:
        rest.create(obj)


def wait_reconciled(rest: Rest, namespace: str, name: str, operator: OperatorProcess,
                    timeout: float = WAIT_S) -> Obj:
    """The object once its status describes its current generation (Planned condition present)."""

    def probe() -> Obj | None:
        obj = rest.get(KIND, namespace, name)
        if obj is None:
            return None
        status = obj.get("status") or {}
        if status.get("observedGeneration") == obj["metadata"]["generation"] and condition(obj, "Planned"):
            return obj
        return None

    return wait_for(f"{namespace}/{name} to be reconciled", probe, timeout, operator=operator)


def wait_children(rest: Rest, namespace: str, name: str, kinds: set[str], operator: OperatorProcess,
                  timeout: float = WAIT_S) -> dict[str, Obj]:
    def probe() -> dict[str, Obj] | None:
        found = {k: v[0] for k, v in rest.children(namespace, name).items() if v}
        return found if set(found) == kinds else None

    return wait_for(f"children {sorted(kinds)} of {namespace}/{name}", probe, timeout, operator=operator)


def download_pod_status(pod: Obj, report: Obj) -> Obj:
    """What a kubelet writes when the download container exited 0: its termination message is the
    download script's JSON report."""
    image = pod["spec"]["containers"][0]["image"]
    return {"status": {"phase": "Succeeded", "conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{
                           "name": "download", "image": image, "imageID": "", "ready": False, "restartCount": 0,
                           "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": json.dumps(report),
                                                    "startedAt": "2026-12-07T10:00:00Z",
                                                    "finishedAt": "2026-12-07T10:02:00Z"}}}]}}


def complete_download(rest: Rest, namespace: str, name: str, operator: OperatorProcess,
                      report: Obj | None = None) -> None:
    """Play the kubelet for the download Job's pod (the Job controller made it; nothing runs it here)."""
    pod = wait_for("the download pod", lambda: next(iter(rest.objects("Pod", namespace, f"job-name={name}-download")),
                                                     None), operator=operator)
    body = download_pod_status(pod, report or {"exitCode": 0, "bytes": 0, "seconds": 1.0, "log": ""})
    rest.patch("Pod", namespace, pod["metadata"]["name"], body, subresource="status")


def controller_refs(obj: Obj) -> list[Obj]:
    return [r for r in (obj["metadata"].get("ownerReferences") or []) if r.get("controller")]


def managed_entries(obj: Obj, manager: str) -> list[Obj]:
    return [m for m in obj["metadata"].get("managedFields") or [] if m.get("manager") == manager]


def resource_versions(rest: Rest, namespace: str | None) -> dict[tuple[str, str, str], str]:
    """resourceVersion of every Gemma4Deployment, child and ReplicaSet in ``namespace`` (None: everywhere),
    leaving out objects being deleted (earlier tests' namespaces are being torn down meanwhile)."""
    out: dict[tuple[str, str, str], str] = {}
    for kind in (*CHILD_KINDS, "ReplicaSet", KIND):
        for obj in rest.objects(kind, namespace):
            meta = obj["metadata"]
            if not meta.get("deletionTimestamp"):
                out[(kind, meta["namespace"], meta["name"])] = meta["resourceVersion"]
    return out


def wait_settled(rest: Rest, operator: OperatorProcess, quiet: float = 1.5,
                 timeout: float = WAIT_S) -> dict[tuple[str, str, str], str]:
    """The cluster-wide resourceVersions once none has changed for ``quiet`` seconds."""
    last: dict[tuple[str, str, str], str] = {}
    since = time.monotonic()

    def probe() -> dict[tuple[str, str, str], str] | None:
        nonlocal last, since
        now = resource_versions(rest, None)
        if now != last:
            last, since = now, time.monotonic()
            return None
        return now if time.monotonic() - since >= quiet else None

    return wait_for("the cluster to settle", probe, timeout, interval=0.2, operator=operator)


# ---------------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.floor
@pytest.mark.usefixtures("g4d_crd")
def test_crd_is_served_with_defaulting_pruning_and_scale(rest: Rest, e2e_namespace: str) -> None:
    """The generated CRD (CEL rules included) is accepted as structural; the server defaults and prunes like the
    schema says."""
    created = rest.create(g4d("defaults", e2e_namespace,
                              {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}, "bogus": 1,
                               "serving": {"image": "", "maxModelLen": 4096}}))
    spec = created["spec"]
    assert "bogus" not in spec  # pruned: a create without fieldValidation=Strict drops it with a warning
    # structural defaulting by the API server, from the schema's defaults
    assert spec["engine"] == "auto"
    assert spec["quantization"] == "auto"
    assert spec["replicas"] == 1
    assert spec["accelerator"] == {"type": "cpu", "count": 0}
    assert spec["serving"]["image"] == ""  # empty strings survive
    assert spec["serving"]["concurrency"] == 4
    assert spec["model"]["instructionTuned"] is True
    assert created["metadata"]["generation"] == 1
    # the scale subresource of the CRD
    scale = rest.request("GET", rest.path(KIND, e2e_namespace, "defaults", "scale"))
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 1


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_planned_with_owned_children(example: Path, rest: Rest, operator: OperatorProcess,
                                                e2e_namespace: str, pdb_api_version: str,
                                                record_property: Callable[[str, object], None]) -> None:
    """Every example: Planned + status.plan; children with a controller ownerReference to the object's uid,
    written by server-side apply as field manager gemma4-operator, equal to what the operator renders."""
    obj = load_example(example, e2e_namespace)
    name = obj["metadata"]["name"]
    t0 = time.monotonic()
    created = create_g4d(rest, obj)
    uid = created["metadata"]["uid"]
    desired = expected_state(created, uid, pdb_api_version)
    assert desired.plan is not None, f"{example.name} does not plan offline: {desired.error}"
    kinds = {c["kind"] for c in desired.children}
    if "Job" in kinds:  # storage.modelCache: the download first, the serving children once it succeeded
        wait_children(rest, e2e_namespace, name, kinds - {"Deployment"}, operator)
        complete_download(rest, e2e_namespace, name, operator)
    children = wait_children(rest, e2e_namespace, name, kinds, operator)
    live = wait_reconciled(rest, e2e_namespace, name, operator)
    record_property("reconciled_s", round(time.monotonic() - t0, 3))

    # status
    planned = condition(live, "Planned")
    assert planned is not None
    assert (planned["status"], planned["reason"]) == ("True", "Fits"), planned
    status = live["status"]
    assert status["plan"] == desired.plan.to_status().model_dump(by_alias=True, mode="json")
    assert status["phase"] == "Progressing"  # pods stay Pending: no scheduler, no kubelet
    assert status["selector"] == f"app.kubernetes.io/name=gemma4,{INSTANCE_LABEL}={name}"
    assert status["endpoint"] == f"http://{name}.{e2e_namespace}.svc:8000/v1"
    if obj["spec"].get("accelerator", {}).get("type") == "auto":
        assert status["plan"]["accelerator"] == ACCELERATORS  # from --accelerators; there are no GPU nodes

    # the children the examples imply, independently of the renderer
    expected_kinds = {"Deployment", "Service"}
    if (obj["spec"].get("storage") or {}).get("modelCache") is not None:
        expected_kinds |= {"PersistentVolumeClaim", "Job"}
    if obj["spec"].get("replicas", 1) > 1 or (obj["spec"].get("autoscaling") or {}).get("maxReplicaCount", 1) > 1:
        expected_kinds.add("PodDisruptionBudget")
    assert kinds == expected_kinds

    for want in desired.children:
        have = children[want["kind"]]
        where = f"{want['kind']} {name}"
        assert have["apiVersion"] == want["apiVersion"], where  # PDB: the version the server serves
        refs = controller_refs(have)
        if want["kind"] == "PersistentVolumeClaim":  # retainPolicy Retain (the default): it outlives the object
            assert refs == [], where
        else:
            assert refs == [{"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": uid, "controller": True,
                             "blockOwnerDeletion": True}], where
            assert len(have["metadata"]["ownerReferences"]) == 1, where
        # server-side apply: the operator's fields are owned by manager gemma4-operator with operation Apply
        mine = managed_entries(have, MANAGER)
        assert [m["operation"] for m in mine] == ["Apply"], (where, have["metadata"].get("managedFields"))
        assert "f:spec" in mine[0]["fieldsV1"] and "f:metadata" in mine[0]["fieldsV1"], where
        # what is live contains what the operator renders (server defaulting and normalisation aside)
        diff = rc.first_difference({k: v for k, v in want.items() if k != "status"}, have)
        assert diff is None, f"{where}: live object differs from the rendering at {diff}"

    # the serving pods exist (ReplicaSet controller) and stay Pending (no scheduler, no kubelet)
    pods = wait_for("the serving pods", lambda: rest.objects("Pod", e2e_namespace,
                                                             f"{INSTANCE_LABEL}={name},{SERVING_SELECTOR}"),
                    operator=operator)
    assert {p["status"].get("phase") for p in pods} == {"Pending"}
    applied = wait_for("the Applied event", lambda: [e for e in rest.events_for(e2e_namespace, name)
                                                      if e["reason"] == "Applied"], operator=operator)
    assert applied[0]["type"] == "Normal"
    assert applied[0]["involvedObject"]["uid"] == uid


def test_server_side_apply_field_ownership(rest: Rest, operator: OperatorProcess, e2e_namespace: str) -> None:
    """Field ownership is per field: the operator (Apply) owns what it renders, the controllers own status, a
    second applier that touches an owned field gets a 409 conflict naming gemma4-operator."""
    obj = load_example(ROOT / "manifests/examples/e2b-cpu.yaml", e2e_namespace)
    name = obj["metadata"]["name"]
    create_g4d(rest, obj)
    deployment = wait_children(rest, e2e_namespace, name, {"Deployment", "Service"}, operator)["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    mine = managed_entries(deployment, MANAGER)
    assert len(mine) == 1
    assert mine[0]["operation"] == "Apply"
    assert mine[0]["apiVersion"] == "apps/v1"
    fields = mine[0]["fieldsV1"]
    containers = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert f'k:{{"name":"{container["name"]}"}}' in containers
    assert "f:args" in containers[f'k:{{"name":"{container["name"]}"}}']
    assert "f:replicas" in fields["f:spec"]
    assert "f:status" not in fields  # status belongs to the deployment controller, once it has written one

    def status_owner() -> Obj | None:
        live = rest.children(e2e_namespace, name)["Deployment"][0]
        return next((m for m in live["metadata"]["managedFields"]
                     if m["manager"] != MANAGER and "f:status" in m.get("fieldsV1", {})), None)

    assert wait_for("the deployment controller to own .status", status_owner, operator=operator)["operation"] \
        == "Update"

    # The CR's status is the operator's (a merge patch of /status: operation Update); its annotations kopf's.
    parent = wait_reconciled(rest, e2e_namespace, name, operator)
    status_owners = [m for m in parent["metadata"]["managedFields"] if "f:status" in m.get("fieldsV1", {})]
    assert [(m["manager"], m["operation"]) for m in status_owners] == [(MANAGER, "Update")]

    # A different manager applying an owned field without force: 409 naming the owner; nothing changes.
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": e2e_namespace},
             "spec": {"replicas": 5}}
    with pytest.raises(ApiException) as excinfo:
        rest.patch("Deployment", e2e_namespace, name, other, content_type=APPLY_PATCH, manager="e2e-other",
                   force=False)
    assert excinfo.value.status == 409
    body = json.loads(excinfo.value.body or "{}")
    assert body["reason"] == "Conflict"
    assert f'conflict with "{MANAGER}"' in body["message"] and ".spec.replicas" in body["message"], body
    after = rest.get("Deployment", e2e_namespace, name)
    assert after is not None
    assert after["spec"]["replicas"] == 1


def test_child_edits_are_reverted(rest: Rest, operator: OperatorProcess, e2e_namespace: str,
                                  record_property: Callable[[str, object], None]) -> None:
    obj = load_example(ROOT / "manifests/examples/e4b-l4.yaml", e2e_namespace)
    name = obj["metadata"]["name"]
    create_g4d(rest, obj)
    children = wait_children(rest, e2e_namespace, name, {"Deployment", "Service"}, operator)
    wait_reconciled(rest, e2e_namespace, name, operator)
    container = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    original_args = container["args"]

    # 1. someone edits the engine's command line (a strategic merge patch, as `kubectl edit` sends)
    t0 = time.monotonic()
    tampered = rest.patch("Deployment", e2e_namespace, name,
                          {"spec": {"template": {"spec": {"containers": [
                              {"name": container["name"], "args": ["--tampered"]}]}}}},
                          content_type=STRATEGIC_PATCH, manager="e2e-tamper")
    assert tampered["spec"]["template"]["spec"]["containers"][0]["args"] == ["--tampered"]

    def args_restored() -> Obj | None:
        live = rest.get("Deployment", e2e_namespace, name)
        return live if live and live["spec"]["template"]["spec"]["containers"][0]["args"] == original_args else None

    restored = wait_for("the Deployment's args to be reverted", args_restored, operator=operator)
    record_property("args_reverted_s", round(time.monotonic() - t0, 3))
    owners = {m["manager"]: m for m in restored["metadata"]["managedFields"]}
    container_key = f'k:{{"name":"{container["name"]}"}}'
    assert "f:args" in owners[MANAGER]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][container_key]
    tamper_fields = json.dumps(owners.get("e2e-tamper", {}).get("fieldsV1", {}))
    assert "f:args" not in tamper_fields, "the forced apply takes the field back from the other manager"

    # 2. someone deletes the Service: it comes back (a new object)
    old_uid = children["Service"]["metadata"]["uid"]
    t0 = time.monotonic()
    rest.delete("Service", e2e_namespace, name)

    def service_recreated() -> Obj | None:
        live = rest.get("Service", e2e_namespace, name)
        return live if live and live["metadata"]["uid"] != old_uid else None

    service = wait_for("the Service to be recreated", service_recreated, operator=operator)
    record_property("service_recreated_s", round(time.monotonic() - t0, 3))
    assert controller_refs(service)[0]["name"] == name

    def applied_messages() -> list[str] | None:
        # the Event follows the write (it is posted after the status): wait for it
        messages = [e["message"] for e in rest.events_for(e2e_namespace, name) if e["reason"] == "Applied"]
        drift = any("drifted" in m and f"Deployment {name}" in m for m in messages)
        created_twice = sum(f"created Service {name}" in m for m in messages) >= 2  # first apply + re-creation
        return messages if drift and created_twice else None

    wait_for("Applied events for the repairs", applied_messages, timeout=10, operator=operator)


def test_an_unowned_service_named_like_a_child_is_left_untouched(rest: Rest, operator: OperatorProcess,
                                                                  e2e_namespace: str) -> None:
    """Someone's Service already has the name of a child (no labels: the operator's watch does not see it). The
    operator reads it before its first apply, writes nothing to it (no field, no ownerReference, so the garbage
    collector never deletes it with the Gemma4Deployment) and says so: Degraded/NameConflict naming the
    Service, and a Warning event. The rest of the object is still applied. Once the Service is deleted, the
    operator's own takes its place (the conflict is looked at again after a back-off of 10 s or more)."""
    obj = load_example(ROOT / "manifests/examples/e2b-cpu.yaml", e2e_namespace)
    name = obj["metadata"]["name"]
    theirs = rest.create({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"name": name, "namespace": e2e_namespace, "labels": {"app": "web"}},
                          "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80}]}})
    create_g4d(rest, obj)
    message = (f"Service/{name} already exists and was not created by this Gemma4Deployment (it has no "
               "controller): the operator leaves it untouched; delete or rename it, or rename this Gemma4Deployment")

    def name_conflict() -> Obj | None:
        live = rest.get(KIND, e2e_namespace, name)
        degraded = condition(live, "Degraded") if live else None
        return live if degraded and degraded.get("reason") == "NameConflict" else None

    live = wait_for("Degraded/NameConflict", name_conflict, operator=operator)
    degraded = condition(live, "Degraded")
    assert degraded is not None and degraded["status"] == "True" and degraded["message"] == message
    assert live["status"]["phase"] == "Degraded"
    wait_for("the NameConflict Warning event", lambda: [
        e for e in rest.events_for(e2e_namespace, name)
        if e["type"] == "Warning" and e["reason"] == "NameConflict" and e["message"] == message] or None,
        timeout=10, operator=operator)
    wait_children(rest, e2e_namespace, name, {"Deployment"}, operator)  # what is ours is still applied
    wait_settled(rest, operator)
    service = rest.get("Service", e2e_namespace, name)
    assert service is not None
    assert service["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
    assert not service["metadata"].get("ownerReferences") and not managed_entries(service, MANAGER)
    assert service["spec"]["selector"] == {"app": "web"}

    rest.delete("Service", e2e_namespace, name)

    def ours_in_its_place() -> Obj | None:
        s = rest.get("Service", e2e_namespace, name)
        return s if s is not None and controller_refs(s) else None

    ours = wait_for("the operator's Service in its place", ours_in_its_place, timeout=60, operator=operator)
    assert controller_refs(ours)[0]["uid"] == live["metadata"]["uid"]
    wait_for("Degraded=False", lambda: (o := rest.get(KIND, e2e_namespace, name)) is not None
             and (condition(o, "Degraded") or {}).get("status") == "False", operator=operator)


def test_concurrent_edits_with_resource_version_conflicts_converge(
        rest: Rest, operator: OperatorProcess, e2e_namespace: str, pdb_api_version: str,
        record_property: Callable[[str, object], None]) -> None:
    """Optimistic concurrency is real here: a stale read-modify-write gets 409 and must re-read; writers
    racing the operator (which bumps the object's resourceVersion with status and kopf annotations) retry; the
    end state is the last spec, rendered, with nothing lost."""
    obj = load_example(ROOT / "manifests/examples/e2b-cpu.yaml", e2e_namespace)
    name = obj["metadata"]["name"]
    create_g4d(rest, obj)
    wait_children(rest, e2e_namespace, name, {"Deployment", "Service"}, operator)
    wait_reconciled(rest, e2e_namespace, name, operator)
    errors_before = operator.metric_sum("gemma4_operator_reconcile_errors_total", reason="Conflict")

    # 1. a stale writer: read the Deployment, let the operator change it, then PUT the stale copy -> 409
    stale = rest.get("Deployment", e2e_namespace, name)
    assert stale is not None
    rest.patch(KIND, e2e_namespace, name, {"spec": {"serving": {"concurrency": 3}}})
    wait_for("the operator to re-apply the Deployment",
             lambda: (d := rest.get("Deployment", e2e_namespace, name)) is not None
             and d["metadata"]["resourceVersion"] != stale["metadata"]["resourceVersion"], operator=operator)
    stale_edit = copy.deepcopy(stale)
    stale_edit["spec"]["template"]["metadata"].setdefault("annotations", {})["e2e/stale"] = "yes"
    with pytest.raises(ApiException) as excinfo:
        rest.put(stale_edit)
    assert excinfo.value.status == 409
    assert "the object has been modified" in json.loads(excinfo.value.body or "{}")["message"]

    # 2. two writers race each other and the operator on the Gemma4Deployment: read-modify-write with retries
    conflicts = {"a": 0, "b": 0}
    rounds = 6

    def writer(key: str) -> None:
        for i in range(rounds):
            while True:
                live = rest.get(KIND, e2e_namespace, name)
                assert live is not None
                annotations = live["spec"].setdefault("podTemplate", {}).setdefault("metadata", {}).setdefault(
                    "annotations", {})
                annotations[f"e2e/{key}"] = str(i)
                try:
                    rest.put(live)
                    break
                except ApiException as err:
                    if err.status != 409:
                        raise
                    conflicts[key] += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in conflicts]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    final = rest.get(KIND, e2e_namespace, name)
    assert final is not None
    wanted = {"e2e/a": str(rounds - 1), "e2e/b": str(rounds - 1)}
    assert final["spec"]["podTemplate"]["metadata"]["annotations"] == wanted  # no lost update

    def converged() -> Obj | None:
        d = rest.get("Deployment", e2e_namespace, name)
        g = rest.get(KIND, e2e_namespace, name)
        if not (d and g and g["status"].get("observedGeneration") == g["metadata"]["generation"]):
            return None
        want = expected_state(g, g["metadata"]["uid"], pdb_api_version).child("Deployment", name)
        assert want is not None
        return d if rc.first_difference(want["spec"], d["spec"]) is None else None

    deployment = wait_for("the Deployment to converge on the last spec", converged, operator=operator)
    record_property("converged_s", round(time.monotonic() - t0, 3))
    record_property("writer_conflicts", sum(conflicts.values()))
    template = deployment["spec"]["template"]
    assert (template["metadata"].get("annotations") or {}).items() >= wanted.items()  # both writers' last edits
    assert "e2e/stale" not in (template["metadata"].get("annotations") or {})  # the refused stale write
    args = template["spec"]["containers"][0]["args"]
    assert args[args.index("-np") + 1] == "3"  # llama.cpp's parallel slots: the concurrency edit of step 1
    print(f"\nconcurrent writers: {rounds} rounds each, {conflicts} resourceVersion conflicts (409) retried",
          file=sys.stderr)
    # the operator itself never conflicts: server-side apply and merge patches carry no resourceVersion
    assert operator.metric_sum("gemma4_operator_reconcile_errors_total", reason="Conflict") == errors_before


@pytest.mark.parametrize(("spec", "field_path"), [
    ({"model": {"variant": "99b"}}, "spec.model.variant"),
    ({"accelerator": {"type": "cpu"}}, "spec.model"),
    ({"model": {"variant": "e2b"}, "engine": "tgi"}, "spec.engine"),
    ({"model": {"variant": "e2b"}, "replicas": -1}, "spec.replicas"),
    ({"model": {"variant": "e2b"}, "serving": {"maxModelLen": 100}}, "spec.serving.maxModelLen"),
    ({"model": {"variant": "e2b"}, "accelerator": {"type": "nvidia-l4", "count": 99}}, "spec.accelerator.count"),
    ({"model": {"variant": "e2b"}, "storage": {"modelCache": {"size": "lots"}}}, "spec.storage.modelCache.size"),
], ids=["variant-enum", "model-required", "engine-enum", "replicas-minimum", "maxModelLen-minimum",
        "count-maximum", "size-pattern"])
def test_schema_invalid_object_is_rejected_with_the_field_named(rest: Rest, g4d_crd: Obj, e2e_namespace: str,
                                                                 spec: Obj, field_path: str) -> None:
    assert g4d_crd
    with pytest.raises(ApiException) as excinfo:
        rest.create(g4d("invalid", e2e_namespace, spec))
    assert excinfo.value.status == 422
    body = json.loads(excinfo.value.body or "{}")
    assert body["reason"] == "Invalid"
    causes = body["details"]["causes"]
    assert any(c.get("field") == field_path for c in causes), causes
    assert field_path in body["message"]
    assert rest.get(KIND, e2e_namespace, "invalid") is None


def _wait_refused(rest: Rest, namespace: str, name: str, operator: OperatorProcess) -> tuple[Obj, Obj]:
    live = wait_reconciled(rest, namespace, name, operator)
    planned = condition(live, "Planned")
    assert planned is not None
    warning = wait_for("a Warning event", lambda: next(
        (e for e in rest.events_for(namespace, name) if e["type"] == "Warning"), None), operator=operator)
    return live, warning


def test_bad_spec_is_refused_with_a_warning_and_no_children(rest: Rest, operator: OperatorProcess,
                                                            e2e_namespace: str) -> None:
    """31B in NVFP4 on an H100: the planner refuses (NVFP4 needs Blackwell): Planned=False, phase Failed, a
    Warning event, and nothing is created."""
    spec = {"model": {"variant": "31b"}, "quantization": "nvfp4", "accelerator": {"type": "nvidia-h100-80gb"}}
    create_g4d(rest, g4d("bad-plan", e2e_namespace, spec))
    live, warning = _wait_refused(rest, e2e_namespace, "bad-plan", operator)
    planned = condition(live, "Planned")
    assert planned is not None
    assert (planned["status"], planned["reason"]) == ("False", "PlanFailed"), planned
    assert live["status"]["phase"] == "Failed"
    assert not live["status"].get("plan")
    assert warning["reason"] == "PlanFailed"
    assert "nvfp4" in warning["message"].lower()
    assert warning["involvedObject"]["uid"] == live["metadata"]["uid"]
    assert warning["source"].get("component") == MANAGER or warning.get("reportingComponent") == MANAGER
    time.sleep(0.5)  # the status is written after the children would have been: nothing may follow it
    assert not any(rest.children(e2e_namespace, "bad-plan").values())
    assert rest.objects("Deployment", e2e_namespace) == []


@pytest.mark.usefixtures("g4d_crd")
def test_cel_rule_is_enforced_by_the_api_server(rest: Rest, e2e_namespace: str) -> None:
    """Audio on 31B breaks a CEL rule: the API server refuses the object with the rule's message, so nothing is
    stored and the operator never sees it (its pydantic twin of the rule, for specs that reach it another way, is
    in the unit tier; every CEL case of the bad-input corpus is in test_bad_input.py)."""
    spec = {"model": {"variant": "31b"}, "accelerator": {"type": "nvidia-h100-80gb"},
            "serving": {"modalities": ["text", "audio"]}}
    with pytest.raises(ApiException) as excinfo:
        create_g4d(rest, g4d("cel-only", e2e_namespace, spec))
    assert excinfo.value.status == 422
    assert "audio is only available on e2b and e4b" in json.loads(excinfo.value.body)["message"]
    assert rest.get(KIND, e2e_namespace, "cel-only") is None


def test_kubectl_scale_through_the_scale_subresource(control_plane: ControlPlane, rest: Rest,
                                                     operator: OperatorProcess, e2e_namespace: str,
                                                     pdb_api_version: str,
                                                     record_property: Callable[[str, object], None]) -> None:
    obj = load_example(ROOT / "manifests/examples/e2b-cpu.yaml", e2e_namespace)
    name = obj["metadata"]["name"]
    create_g4d(rest, obj)
    wait_children(rest, e2e_namespace, name, {"Deployment", "Service"}, operator)
    wait_reconciled(rest, e2e_namespace, name, operator)

    def kubectl(*args: str) -> str:
        proc = subprocess.run([str(kubectl_path()), f"--kubeconfig={control_plane.kubeconfig_path}",
                               f"--namespace={e2e_namespace}", *args], capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    t0 = time.monotonic()
    assert "scaled" in kubectl("scale", f"g4d/{name}", "--replicas=3")
    scaled = rest.get(KIND, e2e_namespace, name)
    assert scaled is not None
    assert scaled["spec"]["replicas"] == 3

    def deployment_at(replicas: int) -> bool:
        d = rest.get("Deployment", e2e_namespace, name)
        return bool(d and d["spec"]["replicas"] == replicas)

    wait_for("the Deployment at 3 replicas", lambda: deployment_at(3), operator=operator)
    record_property("scaled_up_s", round(time.monotonic() - t0, 3))
    # more than one replica: a PodDisruptionBudget, in the version this server serves
    pdb = wait_for("the PodDisruptionBudget", lambda: rest.get("PodDisruptionBudget", e2e_namespace, name),
                   operator=operator)
    assert pdb["apiVersion"] == pdb_api_version
    assert controller_refs(pdb)[0]["uid"] == scaled["metadata"]["uid"]

    def scale_reports(replicas: int) -> Obj | None:
        out = json.loads(kubectl("get", f"g4d/{name}", "--subresource=scale", "-o", "json"))
        return out if out["status"].get("replicas") == replicas else None

    scale = wait_for("the scale subresource to report 3 replicas", lambda: scale_reports(3), operator=operator)
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == f"app.kubernetes.io/name=gemma4,{INSTANCE_LABEL}={name}"
    assert len(rest.objects("Pod", e2e_namespace, scale["status"]["selector"])) == 3  # selector matches the pods

    t0 = time.monotonic()
    kubectl("scale", f"g4d/{name}", "--replicas=1")
    wait_for("the Deployment at 1 replica", lambda: deployment_at(1), operator=operator)
    wait_for("the PodDisruptionBudget to go",
             lambda: rest.get("PodDisruptionBudget", e2e_namespace, name) is None, operator=operator)
    record_property("scaled_down_s", round(time.monotonic() - t0, 3))


@pytest.mark.floor
def test_create_update_delete_cycle(rest: Rest, operator: OperatorProcess, e2e_namespace: str,
                                    pdb_api_version: str) -> None:
    """One whole life on the server: created with every child, a spec change rolls the Deployment's pod template
    once and is observed, a delete leaves nothing (the garbage collector follows the ownerReferences). Also the
    floor check's cycle on 1.29."""
    obj = load_example(ROOT / "manifests/examples/e2b-cpu.yaml", e2e_namespace)
    name = obj["metadata"]["name"]
    kinds = {c["kind"] for c in expected_state(obj, "uid", pdb_api_version).children}
    create_g4d(rest, obj)
    before = wait_children(rest, e2e_namespace, name, kinds, operator)["Deployment"]
    assert wait_reconciled(rest, e2e_namespace, name, operator)["status"]["observedGeneration"] == 1

    rest.patch(KIND, e2e_namespace, name, {"spec": {"serving": {"maxModelLen": 2048}}})

    def rolled() -> Obj | None:
        deployment = rest.children(e2e_namespace, name)["Deployment"][0]
        return deployment if deployment["metadata"]["generation"] > before["metadata"]["generation"] else None

    after = wait_for("the Deployment to follow the spec change", rolled, operator=operator)
    assert after["spec"]["template"] != before["spec"]["template"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1  # one rollout, not several
    live = wait_reconciled(rest, e2e_namespace, name, operator)
    assert live["status"]["observedGeneration"] == 2

    rest.delete(KIND, e2e_namespace, name)
    wait_for("every child garbage-collected",
             lambda: not any(rest.children(e2e_namespace, name).values()), timeout=90, operator=operator)


def test_deleting_the_object_garbage_collects_its_children(rest: Rest, operator: OperatorProcess,
                                                           e2e_namespace: str,
                                                           record_property: Callable[[str, object], None]) -> None:
    """The operator has no finalizer in watch mode: kube-controller-manager's garbage collector removes the
    children (and their ReplicaSets and pods) through the ownerReferences."""
    obj = load_example(ROOT / "manifests/examples/chat-autoscaled.yaml", e2e_namespace)
    obj["spec"]["storage"]["modelCache"]["retainPolicy"] = "Delete"  # the PVC goes with the object too
    name = obj["metadata"]["name"]
    create_g4d(rest, obj)
    kinds = set(CHILD_KINDS)
    wait_children(rest, e2e_namespace, name, kinds - {"Deployment"}, operator)
    complete_download(rest, e2e_namespace, name, operator)
    wait_children(rest, e2e_namespace, name, kinds, operator)
    wait_for("pods", lambda: rest.objects("Pod", e2e_namespace, SERVING_SELECTOR), operator=operator)
    parent = rest.get(KIND, e2e_namespace, name)
    assert parent is not None
    assert not parent["metadata"].get("finalizers")

    t0 = time.monotonic()
    rest.delete(KIND, e2e_namespace, name)

    def all_gone() -> bool:
        left = {k: len(v) for k, v in rest.children(e2e_namespace, name).items() if v}
        left.update({k: n for k in ("ReplicaSet", "Pod") if (n := len(rest.objects(k, e2e_namespace)))})
        return not left

    wait_for("garbage collection of every child", all_gone, timeout=90, interval=0.2, operator=operator)
    seconds = time.monotonic() - t0
    record_property("garbage_collected_s", round(seconds, 3))
    print(f"\nchildren, ReplicaSet and pods garbage-collected {seconds:.1f}s after the delete", file=sys.stderr)


def _burst(namespace: str, suffix: str, pdb_api_version: str) -> tuple[list[Obj], dict[str, set[str]]]:
    """Every example renamed with ``suffix``, and the child kinds each must get."""
    objects = []
    for path in EXAMPLES:
        obj = load_example(path, namespace)
        obj["metadata"]["name"] += f"-{suffix}"
        objects.append(obj)
    kinds = {o["metadata"]["name"]: {c["kind"] for c in expected_state(o, "uid", pdb_api_version).children}
             for o in objects}
    # with storage.modelCache the serving children wait for the download, which nothing runs here
    return objects, {name: k - NEEDS_WEIGHTS if "Job" in k else k for name, k in kinds.items()}


@pytest.fixture
def restarted_operator(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The module's operator for a test that stops it: running again afterwards, whatever happened."""
    yield operator
    if not operator.running:
        if operator.popen is not None:  # exited on its own
            operator.stop(check=False)
        operator.start()


def test_restart_mid_reconcile_leaves_no_duplicates_and_no_write_storm(
        rest: Rest, restarted_operator: OperatorProcess, e2e_namespace: str, pdb_api_version: str,
        record_property: Callable[[str, object], None]) -> None:
    """Stop the operator while it works through a burst of new objects, gracefully (SIGTERM) and by a crash
    (SIGKILL, which leaves kopf's progress annotations mid-way); a new process finishes the work without
    duplicates; then a clean restart re-reconciles everything (resume) and writes nothing."""
    operator = restarted_operator

    def applied_count() -> int:
        return sum(len(rest.objects(kind, e2e_namespace, MANAGED_SELECTOR)) for kind in CHILD_KINDS)

    def more_deployments_than(count: int) -> Callable[[], bool]:
        return lambda: len(rest.objects("Deployment", e2e_namespace)) > count

    expected: dict[str, set[str]] = {}
    # every example once before SIGTERM, three times before SIGKILL: a burst long enough to crash in the middle of
    for how, suffixes in (("SIGTERM", "a"), ("SIGKILL", "bcd")):
        objects: list[Obj] = []
        for suffix in suffixes:
            burst, kinds = _burst(e2e_namespace, suffix, pdb_api_version)
            objects += burst
            expected.update(kinds)
        total, already = sum(len(k) for k in expected.values()), len(rest.objects("Deployment", e2e_namespace))
        creator = threading.Thread(target=create_all, args=(rest, objects))
        creator.start()
        wait_for(f"a first Deployment of the {how} burst", more_deployments_than(already), interval=0.002,
                 operator=operator)
        if how == "SIGTERM":
            operator.terminate()
            at_signal = applied_count()
            stop_s = operator.stop()  # waits for the exit of the SIGTERM above; asserts status 0
            record_property("graceful_stop_s", round(stop_s, 3))
        else:
            at_signal = applied_count()
            operator.kill()
        creator.join(timeout=60)
        at_exit = applied_count()
        record_property(f"children_at_{how}", f"{at_signal}/{total}")
        record_property(f"children_after_{how}", f"{at_exit}/{total}")
        print(f"\n{how} with {at_signal}/{total} children applied, {at_exit}/{total} when the process was gone",
              file=sys.stderr)
        if how == "SIGKILL":
            assert at_exit < total, "the crash came too late to leave work for the next process"
        # a new process finishes the work
        t0 = time.monotonic()
        operator.start()
        for name, kinds_of in expected.items():
            wait_children(rest, e2e_namespace, name, kinds_of, operator)
            wait_reconciled(rest, e2e_namespace, name, operator)
        record_property(f"converged_after_{how}_s", round(time.monotonic() - t0, 3))

    def counts() -> dict[str, int]:
        return {kind: len(rest.objects(kind, e2e_namespace)) for kind in (*CHILD_KINDS, "ReplicaSet", KIND)}

    want = {kind: sum(kind in k for k in expected.values()) for kind in CHILD_KINDS}
    want.update(ReplicaSet=want["Deployment"], **{KIND: len(expected)})
    # the ReplicaSets appear shortly after their Deployments
    wait_for("one ReplicaSet per Deployment", lambda: counts() == want, operator=operator)

    # Then a clean restart of a settled cluster: the resume re-reconciles every object and must write nothing.
    # Settled: no other test's objects left (their namespaces are being deleted, which makes writes), and no
    # object of this test changed for a while (controllers and kopf finish what the crash interrupted).
    def others_gone() -> bool:
        return all(o["metadata"]["namespace"] == e2e_namespace for o in rest.objects(KIND, None))

    t0 = time.monotonic()
    wait_for("the other tests' objects to be gone", others_gone, timeout=90, interval=0.5, operator=operator)
    before = wait_settled(rest, operator)
    record_property("settled_s", round(time.monotonic() - t0, 3))
    assert counts() == want, "duplicates: a second ReplicaSet would mean the pod template was applied twice"
    operator.restart()
    resumed: list[float] = []

    def resume_settled() -> bool:
        # every object is resumed (objects of other tests' namespaces too): wait until the count stops moving
        resumed.append(operator.metric_sum("gemma4_operator_reconciles_total", trigger="resume"))
        return len(resumed) > 5 and resumed[-1] >= len(expected) and resumed[-1] == resumed[-6]

    wait_for("the resume of every object", resume_settled, interval=0.2, operator=operator)
    after = resource_versions(rest, None)
    changed = {k: (v, after[k]) for k, v in before.items() if k in after and after[k] != v}
    assert not changed, f"objects written by a no-op restart (resourceVersion before, after): {changed}"
    applied = operator.metric_sum("gemma4_operator_children_applied_total")
    patches = operator.metric_sum("gemma4_operator_status_patches_total")
    record_property("writes_after_clean_restart", int(applied + patches))
    assert (applied, patches) == (0, 0)
    assert counts() == want


def test_chart_rbac_covers_every_operator_request(control_plane: ControlPlane, rest: Rest,
                                                  chart_identity: ChartIdentity, e2e_namespace: str) -> None:
    """The chart's ClusterRole alone (no e2e workaround) against the real RBAC authorizer: a SubjectAccessReview
    for each request the operator makes, and a first server-side apply as that identity."""
    sa = "chart-only"
    binding = f"e2e-{sa}"
    rest.post(f"{RBAC_PATH}/clusterrolebindings", cluster_role_binding(
        binding, role=chart_identity.cluster_role["metadata"]["name"], service_account=sa))

    def allowed(verb: str, group: str, resource: str, subresource: str) -> bool:
        review = rest.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": f"system:serviceaccount:{OPERATOR_NAMESPACE}:{sa}",
                     "groups": ["system:serviceaccounts", f"system:serviceaccounts:{OPERATOR_NAMESPACE}",
                                "system:authenticated"],
                     "resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                            "subresource": subresource, "namespace": e2e_namespace}}})
        return bool(review["status"].get("allowed"))

    try:
        # the authorizer sees a new binding through its informer: wait until it does (a loaded machine takes
        # a moment), then judge every request
        with contextlib.suppress(AssertionError):
            wait_for("the new binding in the authorizer", lambda: allowed(*OPERATOR_NEEDS[2][:4]) or None,
                     timeout=10)
        denied: list[str] = []
        for verb, group, resource, subresource, why in OPERATOR_NEEDS:
            if not allowed(verb, group, resource, subresource):
                denied.append(f"{verb} {resource}{'/' + subresource if subresource else ''}.{group or 'core'} "
                              f"({why})")
        token = control_plane.service_account_token(OPERATOR_NAMESPACE, sa)
        service = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "ssa-probe", "namespace": e2e_namespace},
                   "spec": {"ports": [{"name": "http", "port": 8000, "protocol": "TCP"}]}}
        with control_plane.api_client(token) as sa_api:
            try:
                Rest(sa_api, "policy/v1").patch("Service", e2e_namespace, "ssa-probe", service,
                                                content_type=APPLY_PATCH, manager=MANAGER, force=True)
                symptom = ""
            except ApiException as err:
                symptom = f"first server-side apply of a Service: HTTP {err.status}: {err.body}"
        assert not denied and not symptom, (
            f"the chart's ClusterRole denies: {denied}; {symptom}. Fix: add `create` to the verbs of "
            "deployments, services, persistentvolumeclaims and poddisruptionbudgets in the chart "
            "(templates/_helpers.tpl namespacedRules)")
    finally:
        rest.delete_path(f"{RBAC_PATH}/clusterrolebindings/{binding}")



@pytest.fixture(scope="class")
def poll_operator(control_plane: ControlPlane, rest: Rest, operator: OperatorProcess, helm_home: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """An operator in ``--children=poll`` mode, with the chart rendered for it (``operator.children=poll``: get
    instead of list/watch); the module's watch-mode operator is stopped meanwhile and started again afterwards."""
    objects = render_chart(helm_home, "--set", f"operator.accelerators={{{ACCELERATORS}}}",
                           "--set", "operator.children=poll",
                           "--set-json", 'operator.extraArgs=["--resync-interval=1"]', release="gemma4-poll")
    ident = install_chart_identity(control_plane, rest, objects, tmp_path_factory.mktemp("poll-identity"))
    assert "--children=poll" in ident.args
    if operator.running:  # (an earlier failure may have left it stopped)
        operator.stop()
    poll = OperatorProcess(ident.args, ident.kubeconfig, tmp_path_factory.mktemp("poll-logs"), name="poll")
    try:
        poll.start()
        yield poll
    finally:
        if poll.running:
            poll.stop()
        denied = forbidden_lines(poll)
        remove_chart_identity(rest, ident)
        operator.start()
    assert not denied, "RBAC denials in poll mode:\n" + "\n".join(denied[:10])


class TestPollMode:
    """``--children=poll``: a timer per object re-reads its children every second (--resync-interval=1)."""

    def test_poll_mode_repairs_and_scales(self, rest: Rest, poll_operator: OperatorProcess, e2e_namespace: str,
                                          pdb_api_version: str) -> None:
        obj = load_example(ROOT / "manifests/examples/e2b-cpu.yaml", e2e_namespace)
        obj["spec"]["replicas"] = 2
        name = obj["metadata"]["name"]
        create_g4d(rest, obj)
        children = wait_children(rest, e2e_namespace, name, {"Deployment", "Service", "PodDisruptionBudget"},
                                 poll_operator)
        assert children["PodDisruptionBudget"]["apiVersion"] == pdb_api_version
        live = wait_reconciled(rest, e2e_namespace, name, poll_operator)
        assert f"{GROUP}/finalizer" in live["metadata"].get("finalizers", [])  # kopf's, for the timer
        old_uid = children["Service"]["metadata"]["uid"]
        rest.delete("Service", e2e_namespace, name)
        wait_for("the timer to recreate the Service", lambda: (s := rest.get("Service", e2e_namespace, name))
                 is not None and s["metadata"]["uid"] != old_uid, operator=poll_operator)
        rest.patch(KIND, e2e_namespace, name, {"spec": {"replicas": 3}})
        wait_for("3 replicas", lambda: (d := rest.get("Deployment", e2e_namespace, name)) is not None
                 and d["spec"]["replicas"] == 3, operator=poll_operator)

    def test_poll_mode_deletes_a_pdb_no_longer_wanted(self, rest: Rest, poll_operator: OperatorProcess,
                                                      e2e_namespace: str) -> None:
        obj = load_example(ROOT / "manifests/examples/e2b-cpu.yaml", e2e_namespace)
        obj["spec"]["replicas"] = 2
        name = obj["metadata"]["name"]
        create_g4d(rest, obj)
        wait_children(rest, e2e_namespace, name, {"Deployment", "Service", "PodDisruptionBudget"}, poll_operator)
        rest.patch(KIND, e2e_namespace, name, {"spec": {"replicas": 1}})
        wait_for("1 replica", lambda: (d := rest.get("Deployment", e2e_namespace, name)) is not None
                 and d["spec"]["replicas"] == 1, operator=poll_operator)
        wait_for("the PodDisruptionBudget to be deleted (resync every 1s)",
                 lambda: rest.get("PodDisruptionBudget", e2e_namespace, name) is None, timeout=4.0)


# ---------------------------------------------------------------------------------------------------------------
# diagnosis from engine errors
# ---------------------------------------------------------------------------------------------------------------


def crash_looping_status(pod: Obj, message: str) -> Obj:
    """A pod status as the kubelet writes it for a serving container that keeps failing: running phase,
    waiting in CrashLoopBackOff, its last termination's message the tail of its log (FallbackToLogsOnError)."""
    image = pod["spec"]["containers"][0]["image"]
    return {"status": {
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
        "containerStatuses": [{
            "name": "server", "image": image, "imageID": "", "ready": False, "restartCount": 3, "started": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": "back-off 40s restarting failed container=server"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message,
                                         "startedAt": "2026-11-29T10:00:00Z",
                                         "finishedAt": "2026-11-29T10:02:00Z"}}}]}}


def test_vllm_kv_cache_error_turns_the_object_degraded(rest: Rest, operator: OperatorProcess,
                                                      e2e_namespace: str) -> None:
    """A serving pod whose vLLM last died because its KV cache cannot hold maxModelLen: Degraded
    KVCacheTooSmall, the message naming serving.maxModelLen and vLLM's estimate, and a Warning event."""
    from tests.support.engine_errors import KV_CACHE

    obj = load_example(ROOT / "manifests/examples/26b-a4b-h100-fp8.yaml", e2e_namespace)
    name = obj["metadata"]["name"]
    create_g4d(rest, obj)
    children = wait_children(rest, e2e_namespace, name, {"Deployment", "Service"}, operator)
    live = wait_reconciled(rest, e2e_namespace, name, operator)
    assert live["status"]["plan"]["engine"] == "vllm"
    [server] = children["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert server["terminationMessagePolicy"] == "FallbackToLogsOnError"

    selector = live["status"]["selector"]
    pod = wait_for("a serving pod", lambda: next(iter(rest.objects("Pod", e2e_namespace, selector)), None),
                   operator=operator)
    rest.patch("Pod", e2e_namespace, pod["metadata"]["name"], crash_looping_status(pod, KV_CACHE),
               subresource="status")

    def degraded() -> Obj | None:
        got = rest.get(KIND, e2e_namespace, name)
        c = condition(got, "Degraded") if got else None
        return dict(c) if c and c.get("status") == "True" else None

    cond = wait_for("Degraded from the engine's error", degraded, operator=operator)
    assert cond["reason"] == "KVCacheTooSmall", cond
    assert "serving.maxModelLen" in cond["message"] and "38896" in cond["message"], cond["message"]
    final = rest.get(KIND, e2e_namespace, name)
    assert final is not None and final["status"]["phase"] == "Degraded"
    ready = condition(final, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "KVCacheTooSmall")
    wait_for("the KVCacheTooSmall event", lambda: [e for e in rest.events_for(e2e_namespace, name)
                                                   if e["reason"] == "KVCacheTooSmall" and e["type"] == "Warning"],
             operator=operator)


# ---------------------------------------------------------------------------------------------------------------
# model weights: the download Job before any serving pod; the cache PVC's retain policy; image volumes
# ---------------------------------------------------------------------------------------------------------------


def _model_in(rest: Rest, namespace: str, name: str, phase: str) -> Callable[[], Obj | None]:
    """A probe: the object once its status.model is in ``phase``."""
    def probe() -> Obj | None:
        obj = rest.get(KIND, namespace, name)
        model = ((obj or {}).get("status") or {}).get("model") or {}
        return obj if model.get("phase") == phase else None
    return probe


def _cache_spec(retain: str) -> Obj:
    return {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"},
            "storage": {"modelCache": {"accessModes": ["ReadWriteOnce"], "retainPolicy": retain}}}


def test_download_job_runs_before_any_serving_pod(rest: Rest, operator: OperatorProcess,
                                                   e2e_namespace: str) -> None:
    """The PVC and the download Job appear first; no Deployment and no serving pod until the Job has
    succeeded (the test plays the kubelet for the Job's pod); then ModelReady=True and the Deployment.
    Deleting the object takes the Job and the Deployment with it; the PVC stays (retainPolicy Retain) or
    goes (Delete), as the CRD's documentation says."""
    created = {retain: create_g4d(rest, g4d(f"cache-{retain.lower()}", e2e_namespace, _cache_spec(retain)))
               for retain in ("Retain", "Delete")}
    for obj in created.values():
        name = obj["metadata"]["name"]
        children = wait_children(rest, e2e_namespace, name, {"Service", "PersistentVolumeClaim", "Job"}, operator)
        live = wait_for("Downloading", _model_in(rest, e2e_namespace, name, "Downloading"), operator=operator)
        assert condition(live, "ModelReady")["reason"] == "Downloading"  # type: ignore[index]
        assert live["status"]["phase"] == "Progressing"
        assert rest.objects("Pod", e2e_namespace, f"{INSTANCE_LABEL}={name},{SERVING_SELECTOR}") == []
        assert rest.children(e2e_namespace, name)["Deployment"] == []
        command = children["Job"]["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[:2] == ["gemma4-operator", "download"]

        complete_download(rest, e2e_namespace, name, operator, {"exitCode": 0, "bytes": 5_000_000_000,
                                                                  "seconds": 50.0, "log": ""})
        wait_children(rest, e2e_namespace, name, {"Service", "PersistentVolumeClaim", "Job", "Deployment"}, operator)
        ready = wait_for("ModelReady", _model_in(rest, e2e_namespace, name, "Ready"), operator=operator)
        assert condition(ready, "ModelReady")["status"] == "True"  # type: ignore[index]
        assert ready["status"]["model"]["throughputMBps"] == 100.0  # 5 GB in 50 s, as the script reported

    for obj in created.values():
        rest.delete(KIND, e2e_namespace, obj["metadata"]["name"])
    # the garbage collector removes what the objects own; a retained PVC stays, an owned one is deleted
    wait_for("owned children gone", lambda: all(
        not rest.children(e2e_namespace, o["metadata"]["name"])[kind] for o in created.values()
        for kind in ("Deployment", "Job")) or None, operator=operator)
    assert rest.get("PersistentVolumeClaim", e2e_namespace, "cache-retain-model-cache") is not None
    deleted = rest.get("PersistentVolumeClaim", e2e_namespace, "cache-delete-model-cache")
    assert deleted is None or deleted["metadata"].get("deletionTimestamp")


def _adapters_of(rest: Rest, namespace: str, name: str) -> dict[str, str]:
    status = (rest.get(KIND, namespace, name) or {}).get("status") or {}
    return {a["name"]: a["phase"] for a in status.get("adapters") or []}


def test_adapters_are_fetched_checked_and_reported_and_an_edited_list_rolls_once(
        rest: Rest, operator: OperatorProcess, e2e_namespace: str) -> None:
    """Adding adapters to a serving object starts a new download Job (checkpoint and adapters) while the
    Deployment keeps serving; status.adapters goes Downloading, then Ready / Refused from the Job's report (the
    test plays the kubelet), AdaptersReady says which did not pass and why; the Deployment then rolls once (the
    adapters' mount, the refused one left out of the engine's flags), and the settled cluster sees no idle
    writes."""
    name = "lora"
    create_g4d(rest, g4d(name, e2e_namespace, _cache_spec("Delete")))
    cached = {"Service", "PersistentVolumeClaim", "Job"}
    wait_children(rest, e2e_namespace, name, cached, operator)
    complete_download(rest, e2e_namespace, name, operator)
    before = wait_children(rest, e2e_namespace, name, {*cached, "Deployment"}, operator)["Deployment"]
    adapters = [{"name": "support", "uri": "hf://me/support-lora"}, {"name": "faq", "uri": "hf://me/faq-lora"}]
    rest.patch(KIND, e2e_namespace, name, {"spec": {"model": {"adapters": adapters}}})
    wait_for("adapters Downloading", lambda: _adapters_of(rest, e2e_namespace, name) == {
        "support": "Downloading", "faq": "Downloading"} or None, operator=operator)
    live = rest.get(KIND, e2e_namespace, name)
    assert condition(live, "AdaptersReady")["reason"] == "AdaptersPending"  # type: ignore[index]
    assert live["status"]["adaptersReady"] == "0/2"  # type: ignore[index]
    deployment = rest.get("Deployment", e2e_namespace, name)
    assert deployment["metadata"]["generation"] == before["metadata"]["generation"]  # type: ignore[index]

    verdicts = [{"name": "support", "reason": "Accepted", "message": "LoRA rank 16", "rank": 16,
                 "targets": ["q_proj"], "towers": False},
                {"name": "faq", "reason": "ModulesToSave", "message": "merge it and serve it as model.source.uri",
                 "rank": 16, "targets": ["q_proj"], "towers": False}]
    complete_download(rest, e2e_namespace, name, operator, {"exitCode": 0, "bytes": 0, "seconds": 1.0, "log": "",
                                                            "error": None, "adapters": verdicts})
    wait_for("adapters checked", lambda: _adapters_of(rest, e2e_namespace, name) == {
        "support": "Ready", "faq": "Refused"} or None, operator=operator)
    wait_settled(rest, operator)
    live = rest.get(KIND, e2e_namespace, name)
    ready = condition(live, "AdaptersReady")
    assert (ready["status"], ready["reason"]) == ("False", "AdaptersRefused")  # type: ignore[index]
    assert "faq refused (ModulesToSave: merge it" in ready["message"]  # type: ignore[index]
    assert live["status"]["adaptersReady"] == "1/2"  # type: ignore[index]
    rolled = rest.get("Deployment", e2e_namespace, name)
    assert rolled["metadata"]["generation"] == before["metadata"]["generation"] + 1  # type: ignore[index]
    container = rolled["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert {"name": "cache", "mountPath": "/models/adapters", "subPath": "adapters", "readOnly": True} in \
        container["volumeMounts"]
    line = " ".join([*container.get("command", []), *container.get("args", [])])
    assert "/models/adapters/support" in line and "/models/adapters/faq" not in line  # faq (refused): not served
    settled = resource_versions(rest, e2e_namespace)
    time.sleep(2)
    assert resource_versions(rest, e2e_namespace) == settled  # no idle writes


@pytest.mark.floor
def test_oci_source_is_served_as_an_image_volume(rest: Rest, operator: OperatorProcess, e2e_namespace: str,
                                                 version: tuple[int, int]) -> None:
    """An ``oci://`` source becomes an image volume. Served by default from 1.35 (the ImageVolume feature gate's
    beta): the Deployment's pod template keeps the ``image`` volume as the server stored it. On 1.29 (the floor)
    the server drops the field, the operator's dry run sees it dropped and says so in Planned, and nothing is
    created."""
    reference = "registry.example.com/gemma/e2b-it:q8"
    spec = {"model": {"variant": "e2b", "source": {"uri": f"oci://{reference}"}}, "accelerator": {"type": "cpu"}}
    create_g4d(rest, g4d("oci", e2e_namespace, spec))
    live = wait_reconciled(rest, e2e_namespace, "oci", operator)
    planned = condition(live, "Planned")
    assert planned is not None
    if version < (1, 35):
        assert planned["status"] == "False"
        assert "image volumes (volumes[].image) are not served by this API server (v1.29" in planned["message"]
        assert rest.children(e2e_namespace, "oci")["Deployment"] == []
        return
    assert planned["status"] == "True", planned
    deployment = wait_for("the Deployment", lambda: next(iter(rest.children(e2e_namespace, "oci")["Deployment"]), None),
                          operator=operator)
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    images = [v["image"] for v in volumes if "image" in v]
    assert [i["reference"] for i in images] == [reference], volumes
