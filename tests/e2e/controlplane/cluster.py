"""A throwaway real Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager.

The binaries come from ``build.sh`` next to this file, built from the Kubernetes and etcd Go modules pinned by the
``go.mod``/``go.sum`` files beside it (see tests/e2e/README.md): Kubernetes 1.37 for the e2e tier, 1.29 (the oldest
release the chart supports) for the floor check, chosen with ``$GEMMA4_K8S_RELEASE`` (default 1.37); etcd 3.6 for
both. Nothing is installed system-wide. Everything listens on 127.0.0.1 only, on free ports, and lives in a
temporary directory.

Authentication and authorization:

* ``--authorization-mode=RBAC``; the static admin token (``ControlPlane.admin_token``) is in group
  ``system:masters``.
* ServiceAccount tokens come from the TokenRequest API (``serviceaccounts/NAME/token``), as a kubelet's projected
  token does: :meth:`ControlPlane.service_account_token` returns one for use as a bearer token.

Usage::

    with ControlPlane() as cp:                       # start(): a few seconds; stop() on exit
        with cp.api_client() as api:                 # kubernetes.client.ApiClient, admin token, TLS verified
            ...
        token = cp.service_account_token("ns", "gemma4-operator")   # bearer token of a (new) ServiceAccount
        kubeconfig = cp.write_kubeconfig(token=token)                # e.g. KUBECONFIG for an operator process
        cp.restart_apiserver(down=1.0)               # an outage: same port, etcd and keys afterwards
        # also: cp.url, cp.admin_token, cp.kubeconfig_path (admin), cp.ca_path, cp.workdir / "logs", cp.version
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from kubernetes import client

BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"
#: The releases build.sh builds: the current one the e2e tier runs on, and the chart's floor.
RELEASES = ("1.37", "1.29")
DEFAULT_RELEASE = "1.37"


def selected_release() -> str:
    """``$GEMMA4_K8S_RELEASE`` (a minor such as ``1.29``), default :data:`DEFAULT_RELEASE`."""
    release = os.environ.get("GEMMA4_K8S_RELEASE") or DEFAULT_RELEASE
    if release not in RELEASES:
        raise ValueError(f"GEMMA4_K8S_RELEASE={release!r}: build.sh builds {', '.join(RELEASES)}")
    return release


def _build_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BUILD_SCRIPT), *args], check=False, timeout=60, capture_output=True, text=True)


def default_bin_dir(release: str | None = None) -> Path:
    """Where build.sh puts ``release``'s kube-apiserver and kube-controller-manager (default: the selected one)."""
    return Path(_build_script("--bin-dir", release or selected_release()).stdout.strip())


def find_etcd() -> Path:
    """etcd built by build.sh; ``$GEMMA4_ETCD`` overrides it."""
    override = os.environ.get("GEMMA4_ETCD")
    return Path(override) if override else Path(_build_script("--bin-dir", "etcd").stdout.strip()) / "etcd"


def binaries_available(release: str | None = None) -> bool:
    """True when build.sh has nothing to do for ``release`` (binaries and etcd cached, openssl present)."""
    return _build_script("--check", release or selected_release()).returncode == 0


def build_binaries(release: str | None = None, timeout: float = 3600.0, *, output: IO[str] | None = None) -> None:
    """Run build.sh for ``release`` (idempotent; instant when cached; see tests/e2e/README.md for cold times).

    Its progress lines go to ``output`` (default: this process's stdout/stderr, i.e. the terminal when pytest's
    capturing is suspended, as the e2e ``control_plane`` fixture does)."""
    subprocess.run(["bash", str(BUILD_SCRIPT), release or selected_release()], check=True, timeout=timeout,
                   stdout=output, stderr=output)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ControlPlaneError(RuntimeError):
    pass


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class ApiserverRestart:
    """Seconds kube-apiserver took to stop (``killed``: SIGKILLed after the grace period) and, started again, to be
    ready; wall-clock (``time.time()``) bounds of the outage, from the stop signal to ready."""

    stop_seconds: float
    killed: bool
    ready_seconds: float
    down_from: float
    down_until: float


_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, \
DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP:10.96.0.1
authorityKeyIdentifier = keyid
"""


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, in a temporary directory.

    Attributes available after :meth:`start`: ``url``, ``admin_token``, ``kubeconfig_path``, ``ca_path``,
    ``workdir`` (logs: ``workdir / "logs" / "<component>.log"``).
    """

    #: Room for 65k Services: a /24 fills at ~250 (then every Service create is a 500), which the reconcile
    #: benchmark's 1000 Gemma4Deployments, one Service each, would hit. 10.96.0.1 (the kubernetes Service, in
    #: the apiserver certificate) is still the range's first address.
    SERVICE_CIDR = "10.96.0.0/16"
    #: Controllers that need nodes or a cloud provider are off; everything else (GC, serviceaccount, token,
    #: deployment, replicaset, namespace, ...) runs.
    CONTROLLERS = "*,-node-ipam-controller,-node-lifecycle-controller"

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        etcd_bin: Path | None = None,
        extra_apiserver_args: list[str] | None = None,
        extra_controller_manager_args: list[str] | None = None,
        keep_workdir: bool | None = None,
    ) -> None:
        self.bin_dir = bin_dir or default_bin_dir()
        self.etcd_bin = etcd_bin or find_etcd()
        if not os.access(self.etcd_bin, os.X_OK):
            raise ControlPlaneError(f"{self.etcd_bin} missing: run {BUILD_SCRIPT} (or make tools)")
        self.extra_apiserver_args = list(extra_apiserver_args or [])
        self.extra_controller_manager_args = list(extra_controller_manager_args or [])
        self.keep_workdir = (
            keep_workdir if keep_workdir is not None else os.environ.get("GEMMA4_E2E_KEEP_WORKDIR") == "1"
        )

        self.admin_token = secrets.token_hex(24)
        self._own_workdir = False
        self.workdir = Path()
        self.url = ""
        self.kubeconfig_path = Path()
        self.ca_path = Path()
        self.startup_seconds = 0.0
        #: Seconds since start() at which each phase was done (pki, etcd, kube-apiserver, kube-controller-manager).
        self.startup_phases: dict[str, float] = {}
        self._procs: list[_Proc] = []
        self._apiserver_argv: list[str] = []
        self._ssl_context: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 90.0, *, wait_for_controllers: bool = True) -> None:
        """Start everything and block until the apiserver is ready (and, by default, until the controller
        manager's serviceaccount controller has made the ``default`` ServiceAccount in ``default``)."""
        if self._procs:
            raise ControlPlaneError("already started")
        for name in ("kube-apiserver", "kube-controller-manager"):
            if not os.access(self.bin_dir / name, os.X_OK):
                raise ControlPlaneError(f"{self.bin_dir / name} missing: run {BUILD_SCRIPT}")
        t0 = time.monotonic()
        deadline = t0 + timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="gemma4-e2e-cp-"))
        self._own_workdir = True
        (self.workdir / "logs").mkdir()
        atexit.register(self.stop)
        try:
            self._make_pki()
            self.startup_phases["pki"] = time.monotonic() - t0
            etcd_url = self._start_etcd(deadline)
            self.startup_phases["etcd"] = time.monotonic() - t0
            self._start_apiserver(etcd_url, deadline)
            self.kubeconfig_path = self.write_kubeconfig(self.workdir / "kubeconfig")
            self.startup_phases["kube-apiserver"] = time.monotonic() - t0
            self._start_controller_manager()
            if wait_for_controllers:
                self.service_account_token("default", "default", create=False, timeout=deadline - time.monotonic())
                self.startup_phases["kube-controller-manager"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        """Kill the components (by process group, controller-manager first) and remove the work dir."""
        atexit.unregister(self.stop)
        for proc in reversed(self._procs):
            self._kill(proc)
        self._procs.clear()
        if self._own_workdir:
            self._own_workdir = False
            if self.keep_workdir:
                print(f"ControlPlane: keeping {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _kill(proc: _Proc, grace: float = 10.0) -> None:
        popen = proc.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=grace)
        else:
            # The leader may be gone while children of its group linger.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
        proc.log_file.close()

    def _spawn(self, name: str, argv: list[str]) -> _Proc:
        log_path = self.workdir / "logs" / f"{name}.log"
        log_file = log_path.open("ab")  # append: a restarted component keeps its earlier log
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # own process group: stop() kills the group by PID
        )
        proc = _Proc(name, popen, log_path, log_file)
        self._procs.append(proc)
        return proc

    def _check_alive(self) -> None:
        for proc in self._procs:
            code = proc.popen.poll()
            if code is not None:
                raise ControlPlaneError(f"{proc.name} exited with {code}; log tail:\n{proc.log_tail()}")

    def _wait(self, what: str, deadline: float, probe: Any) -> None:
        last: object = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if probe():
                    return
            except (OSError, urllib.error.URLError, ValueError) as err:
                last = err
            time.sleep(0.1)
        tails = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in self._procs)
        raise ControlPlaneError(f"timed out waiting for {what} (last error: {last!r})\n{tails}")

    # ------------------------------------------------------------------ components

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=self.workdir / "pki", capture_output=True, timeout=60)

    def _make_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir()
        (pki / "openssl.cnf").write_text(_OPENSSL_CNF)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self._openssl(
            "req", "-config", "openssl.cnf", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "30", "-subj", "/CN=gemma4-e2e-ca", "-extensions", "v3_ca",
        )  # fmt: skip
        self._openssl(
            "req", "-config", "openssl.cnf", "-new", *ec, "-keyout", "apiserver.key", "-out", "apiserver.csr",
            "-subj", "/CN=kube-apiserver",
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "apiserver.crt", "-days", "30", "-extfile", "openssl.cnf", "-extensions", "v3_server",
        )  # fmt: skip
        # ServiceAccount signing key (ES256): KCM signs the legacy token Secrets, the apiserver verifies them.
        self._openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key")
        self._openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        (pki / "tokens.csv").write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        for key in pki.glob("*.key"):
            key.chmod(0o600)
        self.ca_path = pki / "ca.crt"
        self._ssl_context = ssl.create_default_context(cafile=str(self.ca_path))

    def _start_etcd(self, deadline: float) -> str:
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self._spawn(
            "etcd",
            [
                str(self.etcd_bin), "--name", "e2e", "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"e2e={peer_url}", "--initial-cluster-state", "new",
                "--log-level", "warn", "--logger", "zap",
                # Single member: elect itself after ~0.1 s instead of ~1 s.
                "--heartbeat-interval", "10", "--election-timeout", "100",
            ],
        )  # fmt: skip

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client_url}/health", timeout=2) as resp:
                return bool(json.load(resp).get("health") == "true")

        self._wait("etcd /health", deadline, healthy)
        return client_url

    def _start_apiserver(self, etcd_url: str, deadline: float) -> None:
        port = free_port()
        pki = self.workdir / "pki"
        self.url = f"https://127.0.0.1:{port}"
        self._apiserver_argv = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-cluster-ip-range={self.SERVICE_CIDR}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--api-audiences=https://kubernetes.default.svc",
            "--authorization-mode=RBAC",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
            *self.extra_apiserver_args,
        ]
        self._spawn("kube-apiserver", self._apiserver_argv)
        self._wait("kube-apiserver /readyz", deadline, lambda: self._get("/readyz") == "ok")

    def restart_apiserver(self, *, down: float = 0.0, sig: signal.Signals = signal.SIGTERM, grace: float = 2.0,
                          timeout: float = 60.0) -> ApiserverRestart:
        """Stop kube-apiserver with ``sig`` (SIGKILL: a crash), SIGKILL it if it has not exited after ``grace``
        seconds, leave it down ``down`` seconds, start it again with the same arguments (same port, etcd and keys,
        so clients and tokens keep working) and wait for /readyz. etcd and the controller manager run on.

        On SIGTERM, kube-apiserver may wait for its open connections (the controller
        manager's watches) for many seconds: ``grace`` plays the kubelet's termination grace period."""
        index = next(i for i, p in enumerate(self._procs) if p.name == "kube-apiserver")
        old = self._procs.pop(index)
        stopping, wall_stopping = time.monotonic(), time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(old.popen.pid, sig)
        killed = False
        try:
            old.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(old.popen.pid, signal.SIGKILL)
            old.popen.wait(timeout=10)
        old.log_file.close()
        stopped = time.monotonic()
        time.sleep(down)
        t0 = time.monotonic()
        new = self._spawn("kube-apiserver", self._apiserver_argv)
        # back in its place: stop() kills in reverse start order (controller manager before the apiserver)
        self._procs.remove(new)
        self._procs.insert(index, new)
        self._wait("kube-apiserver /readyz after a restart", t0 + timeout, lambda: self._get("/readyz") == "ok")
        ready = time.monotonic()
        return ApiserverRestart(stopped - stopping, killed, ready - t0, wall_stopping,
                                wall_stopping + ready - stopping)

    def write_kubeconfig(
        self, path: Path | None = None, *, token: str | None = None, namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig for ``token`` (default: the admin token) and return its path.

        Without ``path`` it goes into the work dir (removed by :meth:`stop`). The cluster's CA is referenced by
        path, so TLS is verified. Example: run the operator as its ServiceAccount with
        ``KUBECONFIG=cp.write_kubeconfig(token=cp.service_account_token(ns, "gemma4-operator"))``."""
        if path is None:
            fd, name = tempfile.mkstemp(prefix="kubeconfig-", dir=self.workdir)
            os.close(fd)
            path = Path(name)
        path.write_text(
            textwrap.dedent(
                f"""\
                apiVersion: v1
                kind: Config
                clusters:
                - name: e2e
                  cluster:
                    server: {self.url}
                    certificate-authority: {self.ca_path}
                users:
                - name: user
                  user:
                    token: {token or self.admin_token}
                contexts:
                - name: e2e
                  context:
                    cluster: e2e
                    user: user
                    namespace: {namespace}
                current-context: e2e
                """
            )
        )
        path.chmod(0o600)
        return path

    def _start_controller_manager(self) -> None:
        pki = self.workdir / "pki"
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig_path}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={self.SERVICE_CIDR}",
                f"--controllers={self.CONTROLLERS}",
                "--use-service-account-credentials=false",
                "--v=1",
                *self.extra_controller_manager_args,
            ],
        )

    # ------------------------------------------------------------------ client helpers

    def _request(self, method: str, path: str, body: object = None, token: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10, context=self._ssl_context) as resp:
            raw = resp.read().decode()
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def _get(self, path: str) -> Any:
        return self._request("GET", path)

    def api_client(self, token: str | None = None) -> client.ApiClient:
        """A ``kubernetes.client.ApiClient`` (official client) authenticated with ``token`` (default: admin).

        Close it (``with cp.api_client() as api: ...`` or ``api.close()``) when done."""
        config = client.Configuration()
        config.host = self.url
        config.ssl_ca_cert = str(self.ca_path)
        config.verify_ssl = True
        config.api_key = {"authorization": token or self.admin_token}
        config.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(config)

    def service_account_token(self, namespace: str, name: str, *, create: bool = True, timeout: float = 30.0,
                              expiration_seconds: int = 86400) -> str:
        """Bearer token of ServiceAccount ``namespace/name``, created if ``create`` (the namespace must exist).

        The token comes from the TokenRequest API (``POST .../serviceaccounts/NAME/token``), bound to the
        ServiceAccount and valid for ``expiration_seconds``, as a kubelet's projected token is. Without ``create``
        this waits for the ServiceAccount to appear (the serviceaccount controller makes ``default``)."""
        base = f"/api/v1/namespaces/{namespace}/serviceaccounts"
        if create:
            try:
                self._request("POST", base, {"metadata": {"name": name}, "apiVersion": "v1", "kind": "ServiceAccount"})
            except urllib.error.HTTPError as err:
                if err.code != 409:
                    raise
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": expiration_seconds}}
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                token: str = self._request("POST", f"{base}/{name}/token", request)["status"]["token"]
                return token
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    raise
                last = err
            except (OSError, urllib.error.URLError) as err:
                last = err
            time.sleep(0.1)
        tails = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in self._procs)
        raise ControlPlaneError(f"no token for ServiceAccount {namespace}/{name} ({last!r})\n{tails}")

    @property
    def version(self) -> str:
        """The API server's ``gitVersion`` (e.g. ``v1.37.2``), from ``/version``."""
        return str(self._get("/version")["gitVersion"])
