"""A real download (issue 10): the download Job that render_children renders for storage.modelCache runs its
exact command — ``gemma4-operator download`` (cli/download.py) with huggingface_hub's real Python client — and
fills a model cache from a stand-in for the Hugging Face Hub (tests/engine/hub_standin.py, on 127.0.0.1, because no
machine here reaches the Hub), which serves the tiny Gemma 4 GGUFs of tests/data under the catalog's e2b q8_0
repository and file names; then llama.cpp's real server starts from that cache with the rendered Deployment's
args and env (``HF_HUB_OFFLINE=1``) and answers a chat completion. A gated or private repository (401) and a
missing repository or revision (404) end as the status reasons a user reads (weights/outcome.py).

As a kubelet would run them, except: the ``/cache`` mount is a tmp directory (in the manifest too),
``gemma4-operator`` is the venv's, ``HF_ENDPOINT`` points at the stand-in and ``GEMMA4_TERMINATION_LOG`` at a tmp file
(the kubelet's ``/dev/termination-log``); a Secret's key is passed in where tokenSecretRef names one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gemma4_operator.api import AcceleratorSpec, Gemma4DeploymentSpec
from gemma4_operator.engines.base import HOME_DIR, TMP_DIR
from gemma4_operator.planner.plan import ClusterFacts, Plan
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, render_children
from gemma4_operator.weights.outcome import DownloadOutcome, read_outcome
from tests.engine.conftest import TINY_GGUF, TINY_MM_GGUF, TINY_MMPROJ_GGUF, StartServer
from tests.engine.hub_standin import StandInHub
from tests.engine.llama_server import chat_payload, settings_from_argv

pytestmark = pytest.mark.engine
CACHE = "/cache"  # where the rendered Job and Deployment mount the model cache
OPERATOR = str(Path(sys.executable).with_name("gemma4-operator"))
REPO = "ggml-org/gemma-4-E2B-it-GGUF"  # the catalog's e2b q8_0 GGUF repository
SECRET = {"name": "hf", "key": "token"}
TOKEN = "hf_standin_granted"  # the one token the stand-in grants access to its gated or private repository


def spec(modalities: list[str], uri: str | None = None) -> Gemma4DeploymentSpec:
    source = {"source": {"uri": uri, "tokenSecretRef": SECRET}} if uri else {}
    return Gemma4DeploymentSpec.model_validate({
        "model": {"variant": "e2b", **source}, "accelerator": {"type": "cpu"},
        "serving": {"maxModelLen": 1024, "concurrency": 1, "modalities": modalities},
        "storage": {"modelCache": {"size": "1Gi"}}})


@dataclass(frozen=True)
class Rendered:
    plan: Plan
    job: dict[str, Any]  # the download container
    server: dict[str, Any]  # the serving container


def render(s: Gemma4DeploymentSpec) -> Rendered:
    p = plan(s, ClusterFacts.every_catalog_type())
    children = {c["kind"]: c for c in render_children(Owner("gemma", "default", "uid"), s, p)}
    job = children["Job"]
    assert (job["apiVersion"], job["metadata"]["name"]) == ("batch/v1", "gemma-download")
    (download,) = job["spec"]["template"]["spec"]["containers"]
    assert download["name"] == "download"
    # the cache, and the emptyDirs for HOME and /tmp that a read-only root filesystem needs (Pod Security)
    assert {m["mountPath"] for m in download["volumeMounts"]} == {CACHE, HOME_DIR, TMP_DIR}
    server = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return Rendered(p, download, server)


def local(value: str, cache: Path) -> str:
    """``value`` with a mounted path (the cache, HOME, /tmp) made a directory beside ``cache``."""
    for mounted, here in ((CACHE, cache), (HOME_DIR, cache.parent / "home"), (TMP_DIR, cache.parent / "tmp")):
        if value == mounted or value.startswith(mounted + "/"):
            here.mkdir(exist_ok=True)
            return str(here) + value[len(mounted):]
    return value


@dataclass(frozen=True)
class Ran:
    code: int
    output: str
    termination: str
    seconds: float


def run_download(container: dict[str, Any], cache: Path, hub: StandInHub, termination: Path,
                 secret: str | None = None) -> Ran:
    """The container's command as the kubelet would run it, with the cache and the CLI made local (the
    manifest's paths too); ``secret`` is what the Secret that model.source.tokenSecretRef names holds."""
    argv = [OPERATOR if arg == "gemma4-operator" else arg.replace(f'"{CACHE}', f'"{cache}')
            for arg in container["command"]]
    assert "args" not in container  # the command is the whole argv
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = local(entry["value"], cache)
        else:
            assert entry["valueFrom"] == {"secretKeyRef": SECRET} and secret is not None, entry
            env[entry["name"]] = secret
    env |= {"HF_ENDPOINT": hub.url, "GEMMA4_TERMINATION_LOG": str(termination)}
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)
    return Ran(proc.returncode, proc.stdout + proc.stderr, termination.read_text(encoding="utf-8"),
               time.monotonic() - t0)


def outcome(ran: Ran, r: Rendered) -> DownloadOutcome:
    return read_outcome(ran.termination, exit_code=ran.code, repo=r.plan.weights.repo,
                        expected_bytes=r.plan.download_bytes, cache_size="1Gi", revision=r.plan.weights.revision)


def hub_files(text_only: bool) -> dict[str, Path]:
    """The tiny models under the catalog's e2b q8_0 names: the multimodal pair, or the text model alone."""
    if text_only:
        return {"gemma-4-E2B-it-Q8_0.gguf": TINY_GGUF}
    return {"gemma-4-E2B-it-Q8_0.gguf": TINY_MM_GGUF, "mmproj-gemma-4-E2B-it-Q8_0.gguf": TINY_MMPROJ_GGUF}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.mark.parametrize("modalities", [["text"], ["text", "image"]], ids=["text", "text+image"])
def test_the_job_fills_the_cache_and_llama_cpp_serves_from_it_offline(
        modalities: list[str], cache: Path, tmp_path: Path, start_llama_server: StartServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    r = render(spec(modalities))
    files = hub_files(r.plan.text_only)
    assert r.plan.weights.download_files == tuple(files)  # the catalog's names, the mmproj only for images
    # an older checkpoint on the volume: the new download replaces it
    older = cache / "models/ggml-org/gemma-4-E4B-it-GGUF/main"
    older.mkdir(parents=True)
    (older / "gemma-4-E4B-it-Q8_0.gguf").write_bytes(b"0" * 4096)
    with StandInHub({REPO: files}) as hub:
        ran = run_download(r.job, cache, hub, tmp_path / "termination")
    assert ran.code == 0, ran.output
    result = outcome(ran, r)
    assert (result.succeeded, result.reason) == (True, "Downloaded")
    assert result.bytes == sum(path.stat().st_size for path in files.values())
    assert not older.parent.exists() and f"removed {older.parent} (" in ran.output
    directory = Path(local(r.plan.weights.directory, cache))
    for name, source in files.items():
        assert (directory / name).read_bytes() == source.read_bytes()
    # one metadata call per file on the Hub; the bytes come from the storage origin it redirects to
    assert len([path for _, path, _ in hub.requests if "/resolve/" in path]) == len(files)
    print(f"\ndownload ({'+'.join(modalities)}): {result.bytes} bytes in {result.seconds:.2f} s "
          f"({result.throughput_mbps:.2f} MB/s) by the script, {ran.seconds:.2f} s wall; "
          f"requests {[(m, path.split('?')[0], status) for m, path, status in hub.requests]}", file=sys.stderr)

    # the serving container's env (HF_HUB_OFFLINE=1 among it) and args, the cache made local
    env = {e["name"]: local(e["value"], cache) for e in r.server["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = settings_from_argv([local(arg, cache) for arg in r.server["args"]])
    assert settings.model_path == directory / "gemma-4-E2B-it-Q8_0.gguf"
    assert settings.mmproj_path == (None if r.plan.text_only else directory / "mmproj-gemma-4-E2B-it-Q8_0.gguf")
    server = start_llama_server(settings.replace(host="127.0.0.1", port=0, threads=2))
    print(f"llama.cpp from the cache: up in {server.startup_seconds:.2f} s (load {server.load_seconds:.2f} s)",
          file=sys.stderr)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        reply = client.post("/v1/chat/completions", json=chat_payload("hello", model="gemma-4-e2b-it"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["role"] == "assistant"


GATED_WORDS = (f"the Hub refused {REPO} (HTTP 401): the repository is gated or private (or does not exist) — "
               f"accept its license on https://huggingface.co/{REPO} with the account whose token "
               "model.source.tokenSecretRef names, or set tokenSecretRef to such a token")


@pytest.mark.parametrize("modalities", [["text"], ["text", "image"]], ids=["one file", "two files"])
def test_a_gated_repository_answers_401_and_the_status_says_accept_the_license(
        modalities: list[str], cache: Path, tmp_path: Path) -> None:
    r = render(spec(modalities))
    with StandInHub({REPO: hub_files(r.plan.text_only)}, gated={REPO: TOKEN}) as hub:
        ran = run_download(r.job, cache, hub, tmp_path / "termination")
    assert [status for _, path, status in hub.requests if "/api/agent" not in path] == [401]
    result = outcome(ran, r)
    assert (ran.code, result.reason, result.message) == (1, "GatedRepository", GATED_WORDS), ran.output


def test_a_token_that_was_not_granted_is_refused_and_one_that_was_downloads(cache: Path, tmp_path: Path) -> None:
    # model.source with tokenSecretRef: the Job's HF_TOKEN comes from the Secret (the catalog names the quant
    # tag's file)
    r = render(spec(["text"], uri=f"hf://{REPO}:Q8_0"))
    with StandInHub({REPO: hub_files(True)}, gated={REPO: TOKEN}) as hub:
        refused = run_download(r.job, cache, hub, tmp_path / "refused", secret="hf_not_granted")
        granted = run_download(r.job, cache, hub, tmp_path / "granted", secret=TOKEN)
    assert (refused.code, outcome(refused, r).reason) == (1, "GatedRepository"), refused.output
    assert (granted.code, outcome(granted, r).reason) == (0, "Downloaded"), granted.output
    assert (Path(local(r.plan.weights.directory, cache)) / "gemma-4-E2B-it-Q8_0.gguf").is_file()


def test_a_private_repository_answers_401_too_and_is_worded_as_refused_not_missing(cache: Path,
                                                                                   tmp_path: Path) -> None:
    # huggingface_hub raises RepositoryNotFoundError for a 401 as for a 404; the report keeps its status
    r = render(spec(["text"]))
    with StandInHub({REPO: hub_files(True)}, private={REPO: TOKEN}) as hub:
        ran = run_download(r.job, cache, hub, tmp_path / "termination")
    error = json.loads(ran.termination)["error"]
    assert (error["type"], error["status"]) == ("RepositoryNotFoundError", 401)
    result = outcome(ran, r)
    assert (ran.code, result.reason, result.message) == (1, "GatedRepository", GATED_WORDS), ran.output


@pytest.mark.parametrize("modalities", [["text"], ["text", "image"]], ids=["one file", "two files"])
def test_a_missing_repository_answers_404_and_the_status_names_the_source_uri(
        modalities: list[str], cache: Path, tmp_path: Path) -> None:
    r = render(spec(modalities))
    with StandInHub({"ggml-org/some-other-GGUF": {"x.gguf": TINY_GGUF}}) as hub:
        ran = run_download(r.job, cache, hub, tmp_path / "termination")
    assert [status for _, path, status in hub.requests if "/api/agent" not in path] == [404]
    result = outcome(ran, r)
    assert (ran.code, result.reason) == (1, "RepositoryNotFound"), ran.output
    assert result.message == (f"the Hub has no repository {REPO} (HTTP 404): correct model.source.uri "
                              "(hf://OWNER/NAME) to an existing model repository")


def test_a_missing_revision_answers_404_and_the_status_names_it(cache: Path, tmp_path: Path) -> None:
    # a revision is a repository's (vLLM's, whole-repository download): llama.cpp's GGUF sources name a quant
    # tag instead; the download itself needs no GPU
    s = spec(["text"], uri=f"hf://{REPO}@v9").model_copy(update={"accelerator": AcceleratorSpec(type="nvidia-l4")})
    r = render(s)
    assert '"revision":"v9"' in r.job["command"][-1] and r.plan.engine == "vllm"
    with StandInHub({REPO: hub_files(True)}) as hub:
        ran = run_download(r.job, cache, hub, tmp_path / "termination", secret=TOKEN)
    result = outcome(ran, r)
    assert (ran.code, result.reason) == (1, "RevisionNotFound"), ran.output
    assert result.message.startswith(f"the Hub has no revision 'v9' of {REPO} (HTTP 404): correct the revision")
