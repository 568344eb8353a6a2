"""Hostile and malformed input through `plan`, `render` and `run`: every case ends with its documented exit code
(0 done, 1 bad input, 2 cannot be served as asked, 3 the operator's error; 130/143 for SIGINT/SIGTERM), a
message naming the problem, nothing on stdout, no traceback, in bounded time and memory.

The data-driven part (tests/data/bad-input/cli.yaml, and every case of the API corpus cases.yaml written as a
file) runs ``main(argv)`` in-process; what needs a process of its own (signals, endless stdin, /dev/zero, an
alias bomb, a hostile KUBECONFIG) runs ``python -m gemma4_operator`` under a 1 GiB address-space limit, so that
a regression fails here instead of eating the machine.
"""

from __future__ import annotations

import http.server
import io
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gemma4_operator.cli import run as operator_main
from gemma4_operator.cli.main import main
from tests.support.bad_input import Case as ApiCase
from tests.support.bad_input import expand, load_cases, merge_patch

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "bad-input" / "cli.yaml"
DATA: dict[str, Any] = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
EXAMPLE = ROOT / "manifests" / "examples" / "e2b-cpu.yaml"
DOCUMENTED_EXIT_CODES = {0, 1, 2, 3}
IN_PROCESS_SECONDS = 10.0  # per case; they take milliseconds
PROCESS_SECONDS = 60  # per process, start-up (imports) included, on a loaded machine
MEMORY_LIMIT = 1 << 30  # address space of each process; a CLI run needs about 300 MiB of it


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    code: int
    message: str
    content: bytes | None = None  # the file FILE stands for; None: FILE is a valid example
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "".join(expand(value))


def _content(raw: dict[str, Any]) -> bytes:
    if "bytes" in raw:
        return bytes(raw["bytes"])
    if "doc" in raw:
        return yaml.safe_dump(merge_patch(DATA["base"], expand(raw["doc"])), sort_keys=False).encode()
    return _text(raw["text"]).encode("utf-8", "surrogatepass")


def file_cases() -> list[Case]:
    return [Case(f"{raw['name']}-{command}", [command, "FILE"], raw["code"], raw["message"], _content(raw))
            for raw in DATA["files"] for command in ("plan", "render")]


def flag_cases() -> list[Case]:
    return [Case(raw["name"], [a if isinstance(a, str) else _text([a]) for a in raw["argv"]], raw["code"],
                 raw["message"]) for raw in DATA["flags"]]


def run_cases() -> list[Case]:
    return [Case(f"run-{raw['name']}", ["run", *raw.get("argv", [])], raw["code"], raw["message"],
                 env=raw.get("env", {})) for raw in DATA["run"]]


def api_cases() -> list[Case]:
    """The API corpus (what the server, kubectl, CEL or the planner refuse), each through plan and render: the
    CLI refuses the same objects, naming the same field, or (planner) exits 2 with the planner's words."""
    def case(c: ApiCase, command: str) -> Case:
        content = yaml.safe_dump(c.obj, sort_keys=False).encode()
        argv = [command, "FILE", "--accelerator", "nvidia-h100-80gb"]
        if c.judge == "planner":
            return Case(f"api-{c.name}-{command}", argv, 2, c.words[0] if c.words else "", content)
        field = "metadata.name must be" if c.field == "metadata.name" else f"\n  {c.field}"
        return Case(f"api-{c.name}-{command}", argv, 1, field, content)
    return [case(c, command) for c in load_cases() for command in ("plan", "render")]


def test_the_corpus_is_large_and_its_names_unique() -> None:
    cases = file_cases() + flag_cases() + run_cases() + api_cases()
    assert len(cases) >= 400
    assert len({c.name for c in cases}) == len(cases)
    assert {c.code for c in cases} <= DOCUMENTED_EXIT_CODES


def _isolate_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith(("GEMMA4_", "KUBERNETES_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def check(case: Case, code: int, out: str, err: str, seconds: float) -> None:
    assert code == case.code, f"{case}: exit {code}, expected {case.code}\n{err}"
    assert "Traceback" not in err and "During handling" not in err, err
    assert case.message in err or (not case.message and case.code == 0), f"{case}: {case.message!r} not in\n{err}"
    if case.code != 0:
        assert out == "" and err.strip(), (out, err)
    else:  # valid input stays valid: its plan, manifests or help, and nothing on stderr
        assert out.strip() and err == "", (out, err)
    assert seconds < IN_PROCESS_SECONDS, f"{case}: {seconds:.1f} s"


@pytest.mark.parametrize("case", file_cases() + flag_cases() + run_cases() + api_cases(), ids=str)
def test_in_process(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "case.yaml"
    if case.content is not None:
        path.write_bytes(case.content)
    else:
        path.write_bytes(EXAMPLE.read_bytes())
    argv = [str(path) if a == "FILE" else str(tmp_path) if a == "DIR" else a for a in case.argv]
    if case.argv[:1] == ["run"]:
        _isolate_run(monkeypatch, tmp_path, case.env)
    out = io.StringIO()
    start = time.monotonic()
    code = main(argv, out=out)
    seconds = time.monotonic() - start
    captured = capsys.readouterr()
    expected = Case(case.name, case.argv, case.code,
                    case.message.replace("FILE", str(path)).replace("DIR", str(tmp_path)))
    check(expected, code, out.getvalue() + captured.out, captured.err, seconds)


def test_well_formed_scheduling_is_rendered_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The core/v1 checks validate; they do not rewrite what the user wrote."""
    [raw] = [c for c in DATA["files"] if c["name"] == "well-formed-scheduling"]
    path = tmp_path / "ok.yaml"
    path.write_bytes(_content(raw))
    out = io.StringIO()
    assert main(["render", str(path)], out=out) == 0, capsys.readouterr().err
    pod = next(d for d in yaml.safe_load_all(out.getvalue()) if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    wanted = raw["doc"]["spec"]["podTemplate"]["spec"]
    assert all(t in pod["tolerations"] for t in wanted["tolerations"])
    assert pod["affinity"]["podAntiAffinity"] == wanted["affinity"]["podAntiAffinity"]
    assert pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == \
        wanted["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]


# --- as processes: signals, endless input, memory ------------------------------------------------------------

BILLION_LAUGHS = ROOT / "tests" / "data" / "bad-input" / "billion-laughs.yaml"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMMA4_", "KUBERNETES_"))}
    return {**env, **extra}


def spawn(argv: list[str], *, stdin: Any = subprocess.DEVNULL, env: dict[str, str] | None = None,
          ) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gemma4_operator", *argv], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=env or _env(), preexec_fn=_limit_memory)


def finish(proc: subprocess.Popen[bytes], code: int, message: str) -> str:
    """Wait (bounded), then check the exit code, the message, an empty stdout and no traceback; stderr. Stdin is
    left alone (closing it would end an endless pipe); the outputs are small enough for the pipes' buffers."""
    assert proc.stdout is not None and proc.stderr is not None
    try:
        proc.wait(timeout=PROCESS_SECONDS)
    finally:
        proc.kill()
    out, err = proc.stdout.read(), proc.stderr.read().decode(errors="replace")
    assert proc.returncode == code, err
    assert message in err, err
    assert "Traceback" not in err and "MemoryError" not in err, err
    if code:
        assert out == b""
    return err


def wait_until_caught(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Until the process handles ``sig`` (SigCgt in /proc). Before cli.entry installs its handler, a signal
    finds the interpreter starting (its default action, or a KeyboardInterrupt in its own start-up code)."""
    deadline = time.monotonic() + PROCESS_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (sig - 1)):
            return
        time.sleep(0.005)
    raise AssertionError(f"{sig.name} never handled")


@pytest.mark.parametrize("command", ["plan", "render"])
def test_an_alias_bomb_is_refused_in_bounded_memory(command: str) -> None:
    finish(spawn([command, str(BILLION_LAUGHS)]), 1,
           f"{BILLION_LAUGHS}: refused YAML at line 8, column 6: more than 100000 values, counting each alias")


def test_dev_zero_is_read_up_to_the_limit() -> None:
    finish(spawn(["render", "/dev/zero"]), 1, "/dev/zero: larger than 1 MiB, the limit for a file of Gemma4Deployments")


def test_stdin_from_dev_zero() -> None:
    with open("/dev/zero", "rb") as zero:
        finish(spawn(["plan", "-"], stdin=zero), 1, "stdin: larger than 1 MiB")


def test_an_endless_pipe_on_stdin() -> None:
    proc = spawn(["render", "-"], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    pipe = proc.stdin

    def write_forever() -> None:
        try:
            while True:
                pipe.write(b"spec: {model: {variant: e2b}}\n" * 1000)
        except (BrokenPipeError, ValueError, OSError):
            pass

    threading.Thread(target=write_forever, daemon=True).start()
    finish(proc, 1, "stdin: larger than 1 MiB")


def test_a_named_pipe_nobody_writes_to(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    finish(spawn(["render", str(fifo)]), 1, f"{fifo}: no Gemma4Deployment found")


def test_output_that_cannot_be_written() -> None:
    with open("/dev/full", "wb") as full:
        proc = subprocess.Popen([sys.executable, "-m", "gemma4_operator", "render", str(EXAMPLE)],
                                stdout=full, stderr=subprocess.PIPE, cwd=ROOT, env=_env(), preexec_fn=_limit_memory)
        _, err = proc.communicate(timeout=PROCESS_SECONDS)
    assert proc.returncode == 1, err
    assert err.decode() == "gemma4-operator render: cannot write the output: No space left on device\n"


def test_an_ascii_only_output_encoding_loses_no_message(tmp_path: Path) -> None:
    path = tmp_path / "accent.yaml"
    path.write_bytes(_content({"doc": {"metadata": {"name": "gemmá"}}}))
    env = _env(PYTHONIOENCODING="ascii", LC_ALL="C")
    finish(spawn(["plan", str(path)], env=env), 1, "; got 'gemm\\xe1'")


def test_stdin_closed_at_once() -> None:
    finish(spawn(["plan", "-"]), 1, "stdin: no Gemma4Deployment found")


@pytest.mark.parametrize(("sig", "code", "word", "delay"), [
    (signal.SIGINT, 130, "interrupted", 0.0), (signal.SIGINT, 130, "interrupted", 1.5),
    (signal.SIGTERM, 143, "terminated (SIGTERM)", 0.0), (signal.SIGTERM, 143, "terminated (SIGTERM)", 1.5),
    (signal.SIGHUP, 129, "terminated (SIGHUP)", 0.0), (signal.SIGUSR1, 138, "terminated (SIGUSR1)", 0.0),
], ids=["SIGINT-starting", "SIGINT-reading-stdin", "SIGTERM-starting", "SIGTERM-reading-stdin", "SIGHUP", "SIGUSR1"])
def test_signals_end_the_cli_with_a_code_and_one_line(sig: signal.Signals, code: int, word: str,
                                                      delay: float) -> None:
    """A signal as soon as the process handles it (its modules are still loading), or while `plan -` waits for
    stdin that never comes."""
    proc = spawn(["plan", "-"], stdin=subprocess.PIPE)
    wait_until_caught(proc, signal.SIGTERM)  # cli.entry runs: from here on, no signal gives a traceback
    time.sleep(delay)
    proc.send_signal(sig)
    err = finish(proc, code, word)
    assert err.count("\n") == 1, err


UNUSABLE = "gemma4-operator run: no Kubernetes credentials: not in a cluster (no KUBERNETES_SERVICE_HOST) and "


@pytest.mark.parametrize(("name", "content", "message"), [
    ("garbage", bytes(range(256)) * 4, UNUSABLE + "kubeconfig {path} is unusable: "),
    ("empty", b"", UNUSABLE + "kubeconfig {path} is unusable: "),
    ("a-list", b"- 1\n- 2\n", UNUSABLE + "kubeconfig {path} is unusable: TypeError: "),
    ("no-context", b"apiVersion: v1\nkind: Config\n", UNUSABLE + "kubeconfig {path} is unusable: "),
    ("directory", None, "gemma4-operator run: KUBECONFIG {path}: not a regular file"),
    ("huge", None, "gemma4-operator run: KUBECONFIG {path}: larger than 16 MiB, not a kubeconfig"),
])
def test_run_with_a_hostile_kubeconfig(name: str, content: bytes | None, message: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (kopf's logging configuration left alone): what reaches the kubernetes client is refused in one
    line; what it would read whole (not a regular file, too large) is refused before."""
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    elif name == "directory":
        path.mkdir()
    else:
        with path.open("wb") as f:
            f.truncate(17 << 20)  # sparse: nothing is written
    _isolate_run(monkeypatch, tmp_path, {"KUBECONFIG": str(path)})
    monkeypatch.setattr(operator_main, "configure_logging", lambda _: None)
    start = time.monotonic()
    code = main(["run", "--metrics-port", "0", "--health-port", "0"])
    captured = capsys.readouterr()
    case = Case(name, ["run"], 1, message.replace("{path}", str(path)))
    check(case, code, captured.out, captured.err, time.monotonic() - start)
    assert captured.err.count("\n") == 1, captured.err


@pytest.mark.parametrize(("kubeconfig", "message"), [
    (BILLION_LAUGHS, f"kubeconfig {BILLION_LAUGHS} is unusable: Invalid kube-config file."),
    (Path("/dev/zero"), "gemma4-operator run: KUBECONFIG /dev/zero: not a regular file"),
], ids=["alias-bomb", "dev-zero"])
def test_run_with_a_kubeconfig_that_could_eat_memory(kubeconfig: Path, message: str) -> None:
    proc = spawn(["run", "--metrics-port", "0", "--health-port", "0"], env=_env(KUBECONFIG=str(kubeconfig)))
    finish(proc, 1, message)


class _Refusing(http.server.BaseHTTPRequestHandler):
    """An API server that refuses every request's credentials."""

    def do_GET(self) -> None:
        body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","code":401}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_run_against_an_api_server_that_refuses_the_credentials(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        proc = spawn(["run", "--server", url, "--metrics-port", "0", "--health-port", "0", "--standalone"],
                     env=_env(KUBECONFIG=str(tmp_path / "none")))
        finish(proc, 1, f"gemma4-operator run: the API server at {url} refused the credentials: read the server "
                        "version: HTTP 401: Unauthorized (check KUBECONFIG)")
    finally:
        server.shutdown()


def test_run_without_an_api_server_gives_up_with_exit_3() -> None:
    """Nothing listens where the kubeconfig (here --server) points: `run` says so and exits 3 instead of kopf
    retrying forever; in-process with a short wait (the command waits STARTUP_WAIT_S)."""
    from gemma4_operator.config import OperatorConfig
    from gemma4_operator.controller.runner import make_context

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    ctx = make_context(OperatorConfig(server=url, request_timeout=1.0))
    try:
        start = time.monotonic()
        code, message = operator_main.api_server_problem(ctx, wait_s=0.5) or (0, "")
    finally:
        ctx.kube.close()
    assert code == 3 and time.monotonic() - start < 10
    assert message.startswith(f"no API server answers at {url} (waited 0 s): read the server version: "), message
    assert message.endswith("(check KUBECONFIG or --server)"), message
