"""A real download (issue 10): the download Job's exact command — weights/download_script.py running the real
``hf download`` of huggingface_hub — fills a model cache from a stand-in for the Hugging Face Hub
(tests/engine/hub_standin.py, on 127.0.0.1, because no machine here reaches the Hub), which serves the tiny
Gemma 4 GGUFs of tests/data under the catalog's repository and file names; then llama.cpp's real server starts
from that cache with the serving Deployment's args and ``HF_HUB_OFFLINE=1`` and answers a chat completion.
A gated repository (401) and a missing one (404) end as the status reasons a user reads (weights/outcome.py).

The rendered ``/cache`` mount becomes a tmp directory, ``python3`` the venv's python and ``hf`` the venv's
``hf``; everything else is run as rendered."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.planner.plan import ClusterFacts, Plan
from gemma4_operator.planner.select import plan
from gemma4_operator.weights import download_script_source
from gemma4_operator.weights.outcome import DownloadOutcome, read_outcome
from tests.engine.conftest import TINY_GGUF, TINY_MM_GGUF, TINY_MMPROJ_GGUF, StartServer
from tests.engine.hub_standin import StandInHub
from tests.engine.llama_server import chat_payload, settings_from_argv

pytestmark = pytest.mark.engine
CACHE = "/cache"  # where the rendered Job and Deployment mount the model cache
HF = str(Path(sys.executable).with_name("hf"))
TOKEN = "hf_standin_granted"  # the one token the stand-in grants access to its gated repository


def spec(modalities: list[str]) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({
        "model": {"variant": "e2b"}, "accelerator": {"type": "cpu"},
        "serving": {"maxModelLen": 1024, "concurrency": 1, "modalities": modalities},
        "storage": {"modelCache": {"size": "1Gi"}}})


def plan_of(s: Gemma4DeploymentSpec) -> Plan:
    return plan(s, ClusterFacts.every_catalog_type())


def model_dir(p: Plan) -> str:
    return f"{CACHE}/models/{p.checkpoint.repo}/main"


def download_container(p: Plan) -> dict[str, Any]:
    # TODO(merge main): the rendered Job's container (render_children -> batch/v1 Job NAME-download, "download")
    files = [p.checkpoint.file, *([p.checkpoint.mmproj] if not p.text_only and p.checkpoint.mmproj else [])]
    return {"name": "download", "command": [
        "python3", "-c", download_script_source(), "--prune-root", f"{CACHE}/models", "--",
        "hf", "download", p.checkpoint.repo, *files, "--local-dir", model_dir(p)],
        "env": [{"name": "HF_HOME", "value": f"{CACHE}/huggingface"}, {"name": "HF_DEBUG", "value": "1"},
                {"name": "HF_HUB_DISABLE_UPDATE_CHECK", "value": "1"}]}


def serving_args(p: Plan) -> list[str]:
    # TODO(merge main): the rendered Deployment's args
    mm = [] if p.text_only else ["-mm", f"{model_dir(p)}/{p.checkpoint.mmproj}"]
    return ["-m", f"{model_dir(p)}/{p.checkpoint.file}", *mm, "--host", "0.0.0.0", "--port", "8000", "-ngl", "0",
            "-c", "1024", "-np", "1", "-kvu", "--metrics", "-a", "gemma-4-e2b-it", "--jinja"]


def serving_env(p: Plan) -> list[dict[str, Any]]:
    # TODO(merge main): the rendered Deployment's env
    del p
    return [{"name": "HF_HOME", "value": f"{CACHE}/huggingface"}, {"name": "HF_HUB_OFFLINE", "value": "1"}]


def local(value: str, cache: Path) -> str:
    return str(cache) + value[len(CACHE):] if value == CACHE or value.startswith(CACHE + "/") else value


@dataclass(frozen=True)
class Ran:
    code: int
    output: str
    termination: str
    seconds: float


def run_download(container: dict[str, Any], cache: Path, hub: StandInHub, termination: Path,
                 token: str | None = None) -> Ran:
    """The container's command as the kubelet would run it, with the cache, python and hf made local;
    ``token`` is what model.source.tokenSecretRef would inject as HF_TOKEN."""
    tools = {"python3": sys.executable, "hf": HF}
    argv = [tools.get(arg, local(arg, cache)) for arg in container["command"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {entry["name"]: local(entry["value"], cache) for entry in container["env"] if "value" in entry}
    env |= {"HF_ENDPOINT": hub.url, "GEMMA4_TERMINATION_LOG": str(termination)}
    if token is not None:
        env["HF_TOKEN"] = token
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)
    return Ran(proc.returncode, proc.stdout + proc.stderr, termination.read_text(encoding="utf-8"),
               time.monotonic() - t0)


def outcome(ran: Ran, p: Plan) -> DownloadOutcome:
    return read_outcome(ran.termination, exit_code=ran.code, repo=p.checkpoint.repo,
                        expected_bytes=p.download_bytes, cache_size="1Gi")


def hub_files(p: Plan) -> dict[str, Path]:
    """The tiny models under the catalog's names: the multimodal pair, or the text model alone."""
    if p.text_only:
        return {p.checkpoint.file: TINY_GGUF}
    assert p.checkpoint.mmproj is not None
    return {p.checkpoint.file: TINY_MM_GGUF, p.checkpoint.mmproj: TINY_MMPROJ_GGUF}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.mark.parametrize("modalities", [["text"], ["text", "image"]], ids=["text", "text+image"])
def test_the_job_fills_the_cache_and_llama_cpp_serves_from_it_offline(
        modalities: list[str], cache: Path, tmp_path: Path, start_llama_server: StartServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    p = plan_of(spec(modalities))
    files = hub_files(p)
    # an older checkpoint on the volume: the new download replaces it
    (cache / "models/ggml-org/gemma-4-E4B-it-GGUF/main").mkdir(parents=True)
    (cache / "models/ggml-org/gemma-4-E4B-it-GGUF/main/gemma-4-E4B-it-Q8_0.gguf").write_bytes(b"0" * 4096)
    with StandInHub({p.checkpoint.repo: files}) as hub:
        ran = run_download(download_container(p), cache, hub, tmp_path / "termination")
    assert ran.code == 0, ran.output
    result = outcome(ran, p)
    expected = sum(path.stat().st_size for path in files.values())
    assert (result.succeeded, result.reason, result.bytes) == (True, "Downloaded", expected)
    assert not (cache / "models/ggml-org/gemma-4-E4B-it-GGUF").exists()
    assert "gemma-4-E4B-it-GGUF (0.00 GiB): an older checkpoint" in ran.output
    directory = Path(local(model_dir(p), cache))
    for name, source in files.items():
        assert (directory / name).read_bytes() == source.read_bytes()
    resolved = [path for method, path, _ in hub.requests if "/resolve/" in path]
    assert len(resolved) == len(files)  # one metadata call per file, the bytes from the storage origin
    print(f"\ndownload ({'+'.join(modalities)}): {result.bytes} bytes in {result.seconds:.2f} s "
          f"({result.throughput_mbps:.2f} MB/s) by the script, {ran.seconds:.2f} s wall; "
          f"requests {[(m, path.split('?')[0], s) for m, path, s in hub.requests]}", file=sys.stderr)

    for entry in serving_env(p):
        monkeypatch.setenv(entry["name"], local(entry["value"], cache))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    argv = [local(arg, cache) for arg in serving_args(p)]
    settings = settings_from_argv(argv)
    assert settings.model_path is not None and settings.model_path.is_file()
    server = start_llama_server(settings.replace(host="127.0.0.1", port=0, threads=2))
    print(f"llama.cpp from the cache: up in {server.startup_seconds:.2f} s (load {server.load_seconds:.2f} s)",
          file=sys.stderr)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        reply = client.post("/v1/chat/completions", json=chat_payload("hello", model="gemma-4-e2b-it"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["role"] == "assistant"


GATED_WORDS = ("the Hub refused {repo} (HTTP 401/403): the repository is gated or private (or does not exist) — "
               "accept its license on https://huggingface.co/{repo} with the account whose token "
               "model.source.tokenSecretRef names, or set tokenSecretRef to such a token")


@pytest.mark.parametrize("modalities", [["text"], ["text", "image"]], ids=["one file", "two files"])
def test_a_gated_repository_answers_401_and_the_status_says_accept_the_license(
        modalities: list[str], cache: Path, tmp_path: Path) -> None:
    p = plan_of(spec(modalities))
    with StandInHub({p.checkpoint.repo: hub_files(p)}, gated={p.checkpoint.repo: TOKEN}) as hub:
        refused = run_download(download_container(p), cache, hub, tmp_path / "refused")
        granted = run_download(download_container(p), cache, hub, tmp_path / "granted", token=TOKEN)
    assert 401 in [status for _, _, status in hub.requests]
    result = outcome(refused, p)
    assert (refused.code, result.reason) == (1, "GatedRepository"), refused.output
    assert result.message == GATED_WORDS.format(repo=p.checkpoint.repo)
    # the same command with a token that was granted access (tokenSecretRef's HF_TOKEN) downloads
    assert (granted.code, outcome(granted, p).reason) == (0, "Downloaded"), granted.output


def test_a_private_repository_answers_401_too_and_is_worded_as_refused_not_missing(cache: Path,
                                                                                   tmp_path: Path) -> None:
    # hf's own line says "not found" for a 401 and a 404 alike; the status code comes from the exception that
    # HF_DEBUG=1 prints, so the Job's env must set it
    p = plan_of(spec(["text"]))
    with StandInHub({p.checkpoint.repo: hub_files(p)}, private={p.checkpoint.repo: TOKEN}) as hub:
        ran = run_download(download_container(p), cache, hub, tmp_path / "termination")
    assert f"Error: Model '{p.checkpoint.repo}' not found." in ran.output
    result = outcome(ran, p)
    assert (ran.code, result.reason) == (1, "GatedRepository"), ran.output
    assert result.message == GATED_WORDS.format(repo=p.checkpoint.repo)


@pytest.mark.parametrize("modalities", [["text"], ["text", "image"]], ids=["one file", "two files"])
def test_a_missing_repository_answers_404_and_the_status_names_the_source_uri(
        modalities: list[str], cache: Path, tmp_path: Path) -> None:
    p = plan_of(spec(modalities))
    with StandInHub({"ggml-org/some-other-GGUF": {"x.gguf": TINY_GGUF}}) as hub:
        ran = run_download(download_container(p), cache, hub, tmp_path / "termination")
    assert 404 in [status for _, _, status in hub.requests]
    result = outcome(ran, p)
    assert (ran.code, result.reason) == (1, "RepositoryNotFound"), ran.output
    assert result.message == (f"the Hub has no repository {p.checkpoint.repo} (HTTP 404): correct model.source.uri "
                              "(hf://OWNER/NAME) to an existing model repository")
