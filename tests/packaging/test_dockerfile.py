"""The Dockerfile, checked without a Docker engine: its instructions statically, its build context
through .dockerignore, and its build steps replayed in a fresh venv so that the ENTRYPOINT is
known to start from nothing but the wheel."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.packaging.chart import CHART, ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ["gemma4-operator", "run"]
# python:<major.minor.patch>-slim[-<debian release>], optionally pinned by digest as well.
PINNED_PYTHON = re.compile(r"^python:3\.\d+\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [v for k, v in self.instructions if k == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # also comments inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
BUILD, FINAL = STAGES[0], STAGES[-1]


def _resolve(base: str) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: ARGS[m.group(1) or m.group(2)], base)


def test_multi_stage_on_a_pinned_slim_python() -> None:
    assert len(STAGES) >= 2
    names = {s.name for s in STAGES if s.name}
    for stage in STAGES:
        base = _resolve(stage.base)
        assert base in names or PINNED_PYTHON.match(base), f"FROM {stage.base} -> {base}: not a pinned slim Python"
    assert _resolve(FINAL.base) == _resolve(BUILD.base), "run on the same interpreter the venv was built with"


def test_the_package_is_installed_from_its_wheel() -> None:
    build_steps = " ".join(BUILD.values("RUN"))
    assert "pip wheel --no-deps --wheel-dir /dist ." in build_steps
    assert "pip install /dist/*.whl" in build_steps
    copies = FINAL.values("COPY")
    assert copies == [f"--from={BUILD.name} /opt/gemma4-operator /opt/gemma4-operator"], copies
    assert not FINAL.values("RUN"), "the final stage runs nothing: no shell is needed to build or start it"


def test_runs_as_a_non_root_numeric_user() -> None:
    users = FINAL.values("USER")
    assert users, "no USER in the final stage: the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}: must be a numeric, non-zero UID"
    assert not group or (group.isdigit() and int(group) != 0)
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["podSecurityContext"]["runAsUser"] == int(user)


def test_exec_form_entrypoint_and_exposed_ports() -> None:
    assert [json.loads(v) for v in FINAL.values("ENTRYPOINT")] == [ENTRYPOINT], "exec form: no shell at run time"
    assert not FINAL.values("CMD")
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    exposed = {int(p) for v in FINAL.values("EXPOSE") for p in v.split()}
    assert exposed == {values["metrics"]["port"], values["health"]["port"]}


def test_ready_for_a_read_only_root_filesystem() -> None:
    env = " ".join(FINAL.values("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written next to the code
    assert "HOME=/tmp" in env  # the chart mounts an emptyDir at /tmp
    assert "compileall" in " ".join(BUILD.values("RUN"))  # bytecode is built into the image


# -- .dockerignore --------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex on slash-separated paths."""
    pattern = os.path.normpath(pattern.strip("/"))
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _rules() -> list[tuple[bool, re.Pattern[str], str]]:
    rules = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern(line.removeprefix("!")), line.removeprefix("!")))
    return rules


def _excluded(path: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Docker semantics: the last matching rule wins; a rule matching a parent directory matches too."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negate, regex, _ in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def build_context() -> list[str]:
    """Files Docker would send as the build context, relative to the repository root."""
    rules = _rules()
    exceptions = [source.rstrip("/") for negate, _, source in rules if negate]
    files: list[str] = []
    for directory, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(directory, ROOT)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        # Prune excluded directories unless an exception could re-include something inside.
        dirnames[:] = [d for d in dirnames
                       if not _excluded(rel_dir + d, rules)
                       or any(e.startswith(rel_dir + d + "/") for e in exceptions)]
        files += [rel_dir + f for f in filenames if not _excluded(rel_dir + f, rules)]
    return sorted(files)


def test_build_context_is_the_wheel_sources_only() -> None:
    context = build_context()
    assert "pyproject.toml" in context and "README.md" in context
    assert "operator/gemma4_operator/cli/main.py" in context
    assert "operator/gemma4_operator/render/templates/deployment.yaml.j2" in context
    assert any(f.startswith("operator/gemma4_operator/catalog/") and f.endswith(".yaml") for f in context)
    assert all(f in ("pyproject.toml", "README.md") or f.startswith("operator/gemma4_operator/") for f in context), (
        [f for f in context if not f.startswith("operator/")])
    assert not [f for f in context if "__pycache__" in f or ".egg-info" in f or f.endswith(".pyc")]
    for copy in BUILD.values("COPY"):
        *sources, _ = shlex.split(copy)
        for source in sources:
            assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in context), (
                f"COPY {source}: excluded by .dockerignore")


# -- the entry point from a wheel, in a fresh venv ----------------------------------------------


def _run(args: list[str], *, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, check=False, env=env, cwd=cwd)
    output = f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{output}"
    return proc


@pytest.mark.slow
def test_entrypoint_starts_from_a_wheel_install(tmp_path: Path) -> None:
    """The build stage's steps in a temp dir: the wheel from the .dockerignore'd context, a fresh
    venv, `pip install dist/*.whl`, then the ENTRYPOINT's command answers."""
    context = tmp_path / "context"
    for rel in build_context():
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    dist = tmp_path / "dist"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("VIRTUAL_ENV", None)
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(context)], env=env)
    wheels = list(dist.glob("gemma4_operator-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=env)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheels[0])], env=env)

    command = shutil.which(ENTRYPOINT[0], path=str(venv / "bin"))
    assert command == str(venv / "bin" / ENTRYPOINT[0]), "the console script is missing from the venv"
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    help_text = _run([command, *ENTRYPOINT[1:], "--help"], env=clean, cwd=tmp_path).stdout
    for flag in ("--metrics-port", "--health-port", "--log-format", "--namespace", "--peering", "--standalone"):
        assert flag in help_text, f"`{' '.join(ENTRYPOINT)} --help` does not mention {flag}"
    # The package data came along (catalog and templates): plan and render an example offline.
    example = ROOT / "manifests" / "examples" / "e2b-cpu.yaml"
    assert "llamacpp" in _run([command, "plan", str(example)], env=clean, cwd=tmp_path).stdout
    assert "kind: Deployment" in _run([command, "render", str(example)], env=clean, cwd=tmp_path).stdout
    # The code imports from the venv, not from this checkout.
    where = _run([str(venv / "bin" / "python"), "-c", "import gemma4_operator; print(gemma4_operator.__file__)"],
                 env=clean, cwd=tmp_path).stdout
    assert where.startswith(str(venv))
