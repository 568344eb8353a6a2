"""``--metrics-bind-address``: the operator's /metrics (every tenant's namespaces and names) listens where it is
told. The real prometheus-client server, bound to 127.0.0.1, answers there and refuses a connection to another
loopback address (Linux routes all of 127.0.0.0/8 to lo, so 127.0.0.2 reaches a wildcard-bound server)."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import pytest

from gemma4_operator.cli.main import build_parser
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.config import ConfigError, OperatorConfig
from gemma4_operator.controller.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
OTHER_LOCAL_ADDRESS = "127.0.0.2"


def run_config(*argv: str, env: dict[str, str] | None = None) -> OperatorConfig:
    return config_from_args(build_parser().parse_args(["run", *argv]), env=env or {})


@pytest.fixture
def serve() -> Iterator[list[WSGIServer]]:
    """Servers started by a test, shut down after it."""
    servers: list[WSGIServer] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def _connects(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=5):
            return True
    except ConnectionRefusedError:
        return False


def test_bound_to_127_0_0_1_the_metrics_answer_only_there(serve: list[WSGIServer]) -> None:
    metrics = Metrics()
    metrics.reconciles.labels(trigger="create", result="applied").inc()
    server = metrics.serve(0, "127.0.0.1")
    serve.append(server)
    address, port = server.server_address[:2]
    assert address == "127.0.0.1" and port > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert 'gemma4_operator_reconciles_total{result="applied",trigger="create"} 1.0' in body
    assert not _connects(OTHER_LOCAL_ADDRESS, port)


def test_the_default_address_listens_on_every_interface(serve: list[WSGIServer]) -> None:
    """Today's behaviour, and the contrast that makes the test above mean something."""
    server = Metrics().serve(0, run_config().metrics_bind_address)
    serve.append(server)
    assert server.server_address[0] == "0.0.0.0"
    assert _connects(OTHER_LOCAL_ADDRESS, server.server_address[1])


def test_flag_and_environment() -> None:
    assert run_config().metrics_bind_address == "0.0.0.0"
    assert run_config("--metrics-bind-address", "127.0.0.1").metrics_bind_address == "127.0.0.1"
    env = {"GEMMA4_METRICS_BIND_ADDRESS": "::1"}
    assert run_config(env=env).metrics_bind_address == "::1"
    assert run_config("--metrics-bind-address=127.0.0.1", env=env).metrics_bind_address == "127.0.0.1"


def test_a_host_name_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as e:
        run_config("--metrics-bind-address", "localhost")
    assert str(e.value) == ("--metrics-bind-address 'localhost': not an IP address "
                            "(e.g. 127.0.0.1, or 0.0.0.0 for every interface)")


def test_an_address_the_pod_does_not_have_is_one_line(tmp_path: Path) -> None:
    """192.0.2.1 (TEST-NET-1) is on no interface: `run` exits 1 naming both flags, no traceback."""
    kubeconfig = tmp_path / "no-kubeconfig"
    done = subprocess.run(
        [sys.executable, "-m", "gemma4_operator", "run", "--server", "http://127.0.0.1:9", "--health-port", "0",
         "--metrics-port", "18080", "--metrics-bind-address", "192.0.2.1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(kubeconfig)})
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        "gemma4-operator run: cannot serve metrics on 192.0.2.1 port 18080: Cannot assign requested address "
        "(--metrics-bind-address, --metrics-port)")
