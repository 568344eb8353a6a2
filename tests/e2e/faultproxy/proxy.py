"""mitmproxy 11.0.2 (``mitmdump``) as a fault-injecting reverse proxy in front of the e2e kube-apiserver.

The proxy terminates the operator's TLS with its own CA (generated in the proxy's work dir and trusted by the
kubeconfig :meth:`FaultProxy.kubeconfig` writes), and talks TLS to the API server, verifying it with the control
plane's CA. The faults are ``addon.py``'s; this module starts and stops ``mitmdump`` and reads the addon's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from tests.e2e.controlplane import tools_cache_dir
from tests.e2e.controlplane.cluster import free_port

MITMPROXY_VERSION = "11.0.2"
ADDON = Path(__file__).resolve().parent / "addon.py"
VENV_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "mitmproxy_venv.sh"


def mitmdump_path() -> Path:
    """``mitmdump`` from the venv ``mitmproxy_venv.sh`` makes in the tools cache (``make tools`` does it before
    pytest starts; here it is made on first use, ~15-25 s)."""
    marker = tools_cache_dir() / f"mitmproxy-{MITMPROXY_VERSION}" / ".gemma4-complete"
    path = marker.parent / "bin" / "mitmdump"
    if marker.is_file() and os.access(path, os.X_OK):
        return path
    out = subprocess.run(["bash", str(VENV_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True, timeout=600)
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Faults:
    """What the addon injects: ``rate`` of the requests (``watch_rate`` of the watches) get one of ``kinds``
    (seeded draws)."""

    rate: float
    seed: int
    watch_rate: float | None = None
    kinds: tuple[str, ...] = ("429", "500", "503", "reset", "stall")
    stall_s: float = 10.0
    retry_after: int = 1


class FaultProxy:
    """``mitmdump --mode reverse:<upstream>`` on a free loopback port with ``addon.py``; ``start``/``stop``."""

    def __init__(self, upstream: str, upstream_ca: Path, workdir: Path, faults: Faults) -> None:
        self.upstream = upstream
        self.upstream_ca = upstream_ca
        self.workdir = workdir
        self.faults = faults
        self.port = 0
        self.log_path = workdir / "mitmdump.log"
        self.ca_path = workdir / "confdir" / "mitmproxy-ca-cert.pem"
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._ssl: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        f = self.faults
        options = {
            "confdir": str(self.workdir / "confdir"), "ssl_verify_upstream_trusted_ca": str(self.upstream_ca),
            "flow_detail": "0", "termlog_verbosity": "warn", "fault_rate": str(f.rate), "fault_seed": str(f.seed),
            "fault_watch_rate": str(f.rate if f.watch_rate is None else f.watch_rate),
            "fault_kinds": ",".join(f.kinds), "fault_stall_s": str(f.stall_s), "fault_retry_after": str(f.retry_after),
        }
        sets = [arg for key, value in options.items() for arg in ("--set", f"{key}={value}")]
        return [str(mitmdump_path()), "--mode", f"reverse:{self.upstream}", "--listen-host", "127.0.0.1",
                "--listen-port", str(self.port), "-s", str(ADDON), *sets]

    def start(self, timeout: float = 30.0) -> None:
        assert self._popen is None, "already started"
        self.port = free_port()
        argv = self.command()
        self._log = self.log_path.open("wb")
        self._popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                       cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"mitmdump did not come up:\n{self.log_tail()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        if not self.ca_path.is_file():
            return False
        try:
            self.log()
        except (OSError, urllib.error.URLError, ssl.SSLError):
            return False
        return True

    def stop(self) -> None:
        popen, self._popen = self._popen, None
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def _control(self, method: str, action: str, body: Any = None) -> Any:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.ca_path))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/_faultproxy/{action}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=10, context=self._ssl) as resp:
            return json.load(resp)

    def log(self) -> dict[str, Any]:
        """The addon's log: ``{"now": ..., "requests": [{"t", "method", "path", "watch", "fault", "status",
        "error"}, ...]}``."""
        result: dict[str, Any] = self._control("GET", "log")
        return result

    def outage(self, path_contains: str, seconds: float, retry_after: int) -> None:
        """Answer every request whose path contains ``path_contains`` with 429 (Retry-After) for ``seconds``."""
        self._control("POST", "outage", {"path_contains": path_contains, "seconds": seconds,
                                         "retry_after": retry_after})

    def kubeconfig(self, path: Path, token: str) -> Path:
        """A kubeconfig that reaches the API server through the proxy, trusting the proxy's CA."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "faults",
            "clusters": [{"name": "faults",
                          "cluster": {"server": self.url, "certificate-authority": str(self.ca_path)}}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "faults", "context": {"cluster": "faults", "user": "operator"}}],
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path
