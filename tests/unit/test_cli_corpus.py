"""Hostile and malformed input through `plan`, `render` and `run`: every case ends with its documented exit code
(0 done, 1 bad input, 2 cannot be served as asked, 3 the operator's error; 130/143 for SIGINT/SIGTERM), a
message naming the problem, nothing on stdout, no traceback, in bounded time and memory.

The data-driven part (tests/data/bad-input/cli.yaml, and every case of the API corpus cases.yaml written as a
file) runs ``main(argv)`` in-process; what needs a process of its own (signals, endless stdin, /dev/zero, an
alias bomb, a hostile KUBECONFIG) runs ``python -m gemma4_operator`` under a 1 GiB address-space limit, so that
a regression fails here instead of eating the machine.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

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
