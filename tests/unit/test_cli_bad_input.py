"""The offline CLI tried as a new user would: every bad input ends in one message and an exit code, never a
traceback. The corpus of hostile files, flags and environment is tests/data/bad-input/cli.yaml
(test_cli_corpus.py); these are the cases that need more than a file and an exit code. Exit 1: bad input
(usage, unreadable or non-text file, not YAML, not a valid Gemma4Deployment); exit 2: the spec cannot be
served or rendered as asked (the planner refused, a child cannot be rendered).

Most cases run ``main([...])`` in-process; a few run ``python -m gemma4_operator`` to prove that nothing escapes
at the process level either.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gemma4_operator.api import NAME_MESSAGE, SOURCE_URI_MESSAGE
from gemma4_operator.cli import files
from gemma4_operator.cli import main as cli_main
from gemma4_operator.cli.main import main
from gemma4_operator.cli.run import no_credentials_message

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
SPECS = ROOT / "tests" / "data" / "specs"
CHAT_KEDA = ROOT / "manifests" / "argocd" / "gemma4deployments" / "chat-keda.yaml"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
RANDOM = bytes([0x91, 0x07, 0xfe, 0x00, 0xc3, 0x28, 0xa0, 0xa1]) * 64  # fixed "random" bytes: invalid UTF-8 at 0

Write = Callable[[str, str | bytes], str]  # the `write` fixture: (file name, content) -> path

HEADER = "apiVersion: serving.gemma4.dev/v1alpha1\nkind: Gemma4Deployment\n"
E2B = "spec:\n  model: {variant: e2b}\n  accelerator: {type: cpu}\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> str:
    """Run, expect `code`, nothing on stdout, each fragment on stderr and no traceback; the stderr text."""
    got, out, err = run(argv, capsys)
    assert got == code, err
    assert out == ""
    assert "Traceback" not in err and err.strip(), err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def write(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)
    return write


def stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# --- 2. render of autoscaling.backend keda ----------------------------------------------------------------

def test_render_keda_without_prometheus_url_says_what_to_pass(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(["render", str(CHAT_KEDA)], capsys, 2,
                  "Gemma4Deployment ml/chat: cannot render: autoscaling.backend keda: ",
                  "render: pass --prometheus-url URL")
    assert "UnrenderableError" not in err


def test_render_keda_with_prometheus_url_renders_the_scaled_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["render", str(CHAT_KEDA), "--prometheus-url", "http://prometheus.monitoring:9090/"], capsys)
    assert code == 0, err
    docs = {d["kind"]: d for d in yaml.safe_load_all(out)}
    triggers = docs["ScaledObject"]["spec"]["triggers"]
    assert triggers and all(t["metadata"]["serverAddress"] == "http://prometheus.monitoring:9090"
                            for t in triggers if t["type"] == "prometheus")


def test_render_refuses_a_prometheus_url_that_is_not_http(capsys: pytest.CaptureFixture[str]) -> None:
    refused(["render", str(CHAT_KEDA), "--prometheus-url", "prometheus:9090"], capsys, 1,
            "--prometheus-url 'prometheus:9090': expected an http(s) URL")


# --- 3. run without credentials (subprocess: the operator's entry point) ------------------------------------

def _env_without_cluster(kubeconfig: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = kubeconfig
    return env


def _module(argv: list[str], env: dict[str, str] | None = None,
            stdin_data: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gemma4_operator", *argv], capture_output=True, text=True,
                          env=env, input=stdin_data.decode("latin-1") if stdin_data is not None else None,
                          timeout=120, cwd=ROOT, check=False)


def test_run_without_kubeconfig_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-kubeconfig")
    done = _module(["run", "--metrics-port", "0", "--health-port", "0"], env=_env_without_cluster(missing))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "During handling" not in done.stderr
    assert done.stderr.strip() == (
        f"gemma4-operator run: no Kubernetes credentials: not in a cluster (no KUBERNETES_SERVICE_HOST) and "
        f"no kubeconfig at {missing} (set KUBECONFIG or --server)")


def test_no_credentials_message_for_the_default_and_an_unusable_kubeconfig(tmp_path: Path) -> None:
    error = Exception("Invalid kube-config file. No configuration found.")
    assert no_credentials_message(error, {"HOME": str(tmp_path)}) == (
        "no Kubernetes credentials: not in a cluster (no KUBERNETES_SERVICE_HOST) and no kubeconfig at "
        "~/.kube/config (set KUBECONFIG or --server)")
    garbage = tmp_path / "config"
    garbage.write_bytes(RANDOM)
    message = no_credentials_message(UnicodeDecodeError("utf-8", RANDOM, 0, 1, "invalid start byte"),
                                     {"KUBECONFIG": str(garbage), "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert message.startswith("no Kubernetes credentials: the in-cluster service account is unusable and "
                              f"kubeconfig {garbage} is unusable: UnicodeDecodeError: ")
    assert "\n" not in message


# --- 4. metadata.name --------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["plan", "render"])
@pytest.mark.parametrize(("metadata", "got"), [
    ("", "it is missing"),
    ("metadata: {namespace: ml}\n", "it is missing"),
    ("metadata: {name: My_Model!}\n", "got 'My_Model!'"),
    ("metadata: {name: " + "a" * 100 + "}\n", "got 'aaaa"),
    ("metadata: {name: " + "a" * 55 + "}\n", "got 'aaaa"),
    ("metadata: {name: 31b-chat}\n", "got '31b-chat'"),
    ("metadata: {name: 42}\n", "got 42"),
], ids=["no-metadata", "no-name", "My_Model!", "100-chars", "55-chars", "starts-with-digit", "a-number"])
def test_bad_names_are_refused_with_the_rule(command: str, metadata: str, got: str, write: Write,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write("named.yaml", HEADER + metadata + E2B)
    err = refused([command, path], capsys, 1, f"{path}: not a valid Gemma4Deployment:\n  {NAME_MESSAGE}; {got}")
    assert "at most 54 characters" in err and "DNS-1035 label" in err and "(object)" not in err


def test_a_54_character_name_is_fine(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("long.yaml", HEADER + "metadata: {name: " + "a" * 54 + "}\n" + E2B)
    code, out, err = run(["render", path], capsys)
    assert code == 0, err
    assert all(len(d["metadata"]["name"]) <= 63 for d in yaml.safe_load_all(out))


# --- 5. --accelerator cpu ----------------------------------------------------------------------------------

def test_accelerator_cpu_means_a_cluster_without_gpus(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("auto.yaml", HEADER + "metadata: {name: auto}\nspec:\n  model: {variant: e2b}\n")
    code, out, err = run(["plan", path, "--accelerator", "cpu"], capsys)
    assert code == 0, err
    assert "(cluster facts: cpu only (no GPU nodes))" in out and "accelerator      cpu" in out
    code, out, err = run(["render", path, "--accelerator", "cpu"], capsys)
    assert code == 0, err
    assert "nvidia.com/gpu" not in out


def test_accelerator_cpu_with_a_gpu_type_keeps_the_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["plan", str(EXAMPLES / "e4b-l4.yaml"), "--accelerator", "cpu", "--accelerator",
                          "nvidia-l4"], capsys)
    assert code == 0, err
    assert "(cluster facts: cpu, nvidia-l4)" in out


def test_accelerator_cpu_for_a_gpu_only_spec_is_infeasible(capsys: pytest.CaptureFixture[str]) -> None:
    refused(["plan", str(EXAMPLES / "chat-autoscaled.yaml"), "--accelerator", "cpu"], capsys, 2,
            "Gemma4Deployment ml/chat: ", "does not fit")


def test_unknown_accelerator_lists_cpu_among_the_known(capsys: pytest.CaptureFixture[str]) -> None:
    refused(["plan", str(EXAMPLES / "e2b-cpu.yaml"), "--accelerator", "h100"], capsys, 1,
            "--accelerator h100: not a catalog accelerator type (known: nvidia-t4,", ", cpu)")


# --- 6. source.uri -----------------------------------------------------------------------------------------

def test_source_uri_error_is_words_not_a_regex(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("s3.yaml", HEADER + "metadata: {name: s3}\nspec:\n  model:\n    variant: e2b\n"
                                     "    source: {uri: 's3://bucket/gemma'}\n")
    err = refused(["plan", path], capsys, 1, f"  spec.model.source.uri: {SOURCE_URI_MESSAGE}; got 's3://bucket/gemma'",
                  "hf://REPO[@REVISION]", "hf://REPO[@REVISION]:GGUF_QUANT", "pvc://CLAIM/PATH")
    assert "^(" not in err and "pattern" not in err


# --- 7. the YAML loader ------------------------------------------------------------------------------------

def test_files_are_read_with_libyaml_when_present() -> None:
    assert issubclass(files.BoundedLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def test_a_large_multi_document_file_loads(write: Write) -> None:
    docs = [HEADER + f"metadata: {{name: m{i}}}\n" + E2B for i in range(400)]
    path = write("many.yaml", "---\n".join(docs))
    assert [d.name for d in files.load_deployments(path)] == [f"m{i}" for i in range(400)]


# --- 8. files and stdin (the rest of the corpus: tests/data/bad-input/cli.yaml, test_cli_corpus.py) ---------

# Root reads a mode-000 file (CAP_DAC_OVERRIDE): as root, the CLI runs without the two capabilities that
# bypass file permissions (util-linux setpriv), so the permission check is real either way.
WITHOUT_DAC_OVERRIDE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                        "--bounding-set=-dac_override,-dac_read_search"]


def test_unreadable_file(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("secret.yaml", "x: 1\n")
    os.chmod(path, 0)
    try:
        if os.geteuid() != 0:
            refused(["plan", path], capsys, 1, f"{path}: cannot read: Permission denied")
            return
        proc = subprocess.run([*WITHOUT_DAC_OVERRIDE, sys.executable, "-m", "gemma4_operator", "plan", path],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1, proc.stderr
        assert proc.stdout == ""
        assert proc.stderr.strip() == f"{path}: cannot read: Permission denied"
    finally:
        os.chmod(path, 0o600)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "stdin: no Gemma4Deployment found"),
    (b"[1, 2]\n", "stdin: expected a Gemma4Deployment mapping"),
    (PNG, "stdin: not a text file (byte 0x89 at offset 0 is not UTF-8)"),
    (b"kind: Gemma4Deployment\nspec: {", "stdin: invalid YAML"),
], ids=["empty", "list", "png", "broken"])
def test_stdin_with_bad_input(data: bytes, message: str, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    stdin(monkeypatch, data)
    refused(["plan", "-"], capsys, 1, message)


def test_stdin_good_input(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    stdin(monkeypatch, (EXAMPLES / "e2b-cpu.yaml").read_bytes())
    code, out, err = run(["render", "-"], capsys)
    assert code == 0 and "kind: Deployment" in out, err


def test_infeasible_plan_exits_2_with_the_planners_words(capsys: pytest.CaptureFixture[str]) -> None:
    refused(["plan", str(SPECS / "31b-nvfp4-h100.yaml")], capsys, 2,
            "Gemma4Deployment ml/wrong-gpu: gemma-4-31b does not fit on nvidia-h100-80gb",
            "nvfp4 needs a Blackwell GPU", "Nearest feasible: ")
    refused(["render", str(SPECS / "31b-nvfp4-h100.yaml")], capsys, 2, "does not fit on nvidia-h100-80gb")


@pytest.mark.parametrize(("argv", "message"), [
    (["plan"], "the following arguments are required: file"),
    (["plan", "x.yaml", "-o", "xml"], "argument -o/--output: invalid choice: 'xml'"),
    (["deploy"], "argument command: invalid choice: 'deploy'"),
    ([], "the following arguments are required: command"),
], ids=["no-file", "bad-output", "bad-command", "no-command"])
def test_usage_errors_exit_1(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    refused(argv, capsys, 1, "usage: gemma4-operator", message)


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["render", "--help"], capsys)
    assert code == 0 and "--prometheus-url URL" in out


def test_an_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_main, "render_children", boom)
    err = refused(["render", str(EXAMPLES / "e2b-cpu.yaml")], capsys, 3,
                  "gemma4-operator render: internal error (a bug, please report it with the input): RuntimeError: boom")
    assert err.count("\n") == 1


# --- at the process level ----------------------------------------------------------------------------------

def test_process_binary_file_and_keda_render(tmp_path: Path) -> None:
    binary = tmp_path / "x.png"
    binary.write_bytes(PNG)
    done = _module(["plan", str(binary)])
    assert (done.returncode, done.stdout) == (1, "") and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{binary}: not a text file (byte 0x89")
    done = _module(["render", str(CHAT_KEDA)])
    assert done.returncode == 2 and "Traceback" not in done.stderr and "During handling" not in done.stderr
    assert "cannot render: autoscaling.backend keda" in done.stderr and "--prometheus-url URL" in done.stderr


def test_process_stdin_and_bad_name() -> None:
    done = _module(["render", "-"], stdin_data=(HEADER + "metadata: {name: My_Model!}\n" + E2B).encode())
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("stdin: not a valid Gemma4Deployment:\n  metadata.name must be a DNS-1035 label")


def test_process_output_closed_early_is_quiet(tmp_path: Path) -> None:
    """`gemma4-operator render ... | head -1`: the reader goes away; no BrokenPipeError traceback."""
    many = tmp_path / "many.yaml"
    many.write_text("---\n".join(HEADER + f"metadata: {{name: m{i}}}\n" + E2B for i in range(40)), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "gemma4_operator", "render", str(many)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err


@pytest.mark.parametrize("value", ["cpu", "none", "cpu,nvidia-l4"])
def test_run_accepts_cpu_like_plan(value: str) -> None:
    from gemma4_operator.cli.main import build_parser
    from gemma4_operator.cli.run import config_from_args

    config = config_from_args(build_parser().parse_args(["run", "--accelerators", value]), env={})
    assert config.accelerator_types == (("nvidia-l4",) if "l4" in value else ())
