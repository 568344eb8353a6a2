"""``gemma4-operator download`` (cli/download.py), run as the download Job runs it, with huggingface_hub's real
client against the stand-in Hub (tests/engine/hub_standin.py, on 127.0.0.1: no machine here reaches the Hub):
older checkpoints pruned, the checkpoint and the adapters fetched, each adapter through the preflight, the
Hub's refusals as typed errors with their status, and the report within the kubelet's 4096 bytes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gemma4_operator.weights.artifacts import MAX_REPORT_BYTES, Artifact, FetchError, Kind, Manifest, Report
from gemma4_operator.weights.preflight import AdapterRules, AdapterVerdict
from tests.engine.hub_standin import StandInHub
from tests.support.adapter_recipes import COOKBOOK_MODULES_TO_SAVE, UNSLOTH_31B, write_adapter

OPERATOR = str(Path(sys.executable).with_name("gemma4-operator"))
BASE = "google/gemma-4-31B-it"
TOKEN = "hf_granted"


def manifest(cache: Path, *adapters: tuple[str, str], files: tuple[str, ...] = (), token_env: str = "") -> Manifest:
    checkpoint = Artifact(Kind.CHECKPOINT, "model", BASE, f"{cache}/models/{BASE}/main", files=files)
    listed = tuple(Artifact(Kind.ADAPTER, name, repo, f"{cache}/adapters/{name}", token_env=token_env)
                   for name, repo in adapters)
    return Manifest("31b", AdapterRules(max_rank=16), (checkpoint, *listed), str(cache))


def start(m: Manifest, hub_url: str, termination: Path, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environ |= {"HF_ENDPOINT": hub_url, "HF_HOME": str(termination.parent / "hf-home"),
                "GEMMA4_TERMINATION_LOG": str(termination), **env}
    return subprocess.Popen([OPERATOR, "download", "--manifest", m.to_json()], env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run(m: Manifest, hub: StandInHub, tmp_path: Path, **env: str) -> tuple[int, str, dict[str, Any]]:
    termination = tmp_path / "termination"
    proc = start(m, hub.url, termination, **env)
    output, _ = proc.communicate(timeout=120)
    return proc.returncode, output, json.loads(termination.read_text(encoding="utf-8"))


@pytest.fixture
def repos(tmp_path: Path) -> dict[str, dict[str, Path]]:
    """The base (a config.json of Gemma 4 31B and one weights file) and two adapters (Unsloth's, the cookbook's)."""
    base = tmp_path / "hub" / "base"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"architectures": ["Gemma4ForConditionalGeneration"],
                                                  "text_config": {"num_hidden_layers": 60, "hidden_size": 5376}}))
    (base / "model.safetensors").write_bytes(b"w" * 3000)
    out: dict[str, dict[str, Path]] = {BASE: {p.name: p for p in base.iterdir()}}
    for repo, recipe in (("me/unsloth-31b", UNSLOTH_31B), ("me/cookbook", COOKBOOK_MODULES_TO_SAVE)):
        directory = write_adapter(recipe, tmp_path / "hub" / repo)
        out[repo] = {p.name: p for p in directory.iterdir()}
    return out


def test_the_checkpoint_and_adapters_are_staged_and_each_adapter_gets_its_verdict(
        tmp_path: Path, repos: dict[str, dict[str, Path]]) -> None:
    cache = tmp_path / "cache"
    older = cache / "models/google/gemma-4-E4B-it/main"
    older.mkdir(parents=True)
    (older / "model.safetensors").write_bytes(b"0" * 4096)
    gone = cache / "adapters/no-longer-listed"
    gone.mkdir(parents=True)
    m = manifest(cache, ("support", "me/unsloth-31b"), ("faq", "me/cookbook"))
    with StandInHub(repos) as hub:
        code, output, report = run(m, hub, tmp_path)
    assert code == 0, output
    assert not older.parent.exists() and not gone.exists()
    assert (cache / f"models/{BASE}/main/model.safetensors").read_bytes() == b"w" * 3000
    assert (cache / "adapters/support/adapter_config.json").is_file()
    verdicts = {a["name"]: a for a in report["adapters"]}
    assert (verdicts["support"]["reason"], verdicts["support"]["rank"]) == ("Accepted", 16)
    assert verdicts["faq"]["reason"] == "ModulesToSave" and "save_pretrained_merged" in verdicts["faq"]["message"]
    assert report["error"] is None
    assert report["bytes"] == sum(p.stat().st_size for files in repos.values() for p in files.values())


def test_an_adapter_the_hub_refuses_is_a_verdict_and_the_others_still_serve(
        tmp_path: Path, repos: dict[str, dict[str, Path]]) -> None:
    m = manifest(tmp_path / "cache", ("gone", "me/missing"), ("support", "me/unsloth-31b"))
    with StandInHub(repos, gated={"me/unsloth-31b": TOKEN}) as hub:
        refused = run(m, hub, tmp_path)
        granted = run(manifest(tmp_path / "cache", ("support", "me/unsloth-31b"), token_env="SUPPORT_TOKEN"), hub,
                      tmp_path, SUPPORT_TOKEN=TOKEN)
    code, output, report = refused
    assert code == 0, output
    verdicts = {a["name"]: (a["reason"], a["message"]) for a in report["adapters"]}
    assert verdicts["gone"] == ("RepositoryNotFound", "the Hub has no repository me/missing (HTTP 404): correct the "
                                "adapter gone's uri (hf://OWNER/NAME) to an existing model repository")
    assert verdicts["support"][0] == "GatedRepository" and "its tokenSecretRef names" in verdicts["support"][1]
    assert [a["reason"] for a in granted[2]["adapters"]] == ["Accepted"], granted[1]


def test_an_adapters_only_manifest_fetches_and_judges_the_adapters_and_no_checkpoint(
        tmp_path: Path, repos: dict[str, dict[str, Path]]) -> None:
    """Without storage.modelCache: the Job (for the verdicts) and each serving pod's init container."""
    cache = tmp_path / "cache"
    m = manifest(cache, ("support", "me/unsloth-31b"), ("faq", "me/cookbook"), token_env="SUPPORT_TOKEN")
    adapters_only = Manifest(m.variant, m.rules, m.of(Kind.ADAPTER), m.cache_root)
    with StandInHub(repos, gated={"me/unsloth-31b": TOKEN}) as hub:
        code, output, report = run(adapters_only, hub, tmp_path, SUPPORT_TOKEN=TOKEN)
    assert code == 0, output
    assert not (cache / "models").exists() and (cache / "adapters/support/adapter_model.safetensors").is_file()
    assert [(a["name"], a["reason"]) for a in report["adapters"]] == [("support", "Accepted"),
                                                                       ("faq", "ModulesToSave")]
    assert report["error"] is None
    assert report["bytes"] == sum(p.stat().st_size for repo in ("me/unsloth-31b", "me/cookbook")
                                  for p in repos[repo].values())


def test_a_missing_checkpoint_fails_the_job_with_the_typed_error_and_fetches_no_adapter(
        tmp_path: Path, repos: dict[str, dict[str, Path]]) -> None:
    del repos[BASE]
    with StandInHub(repos) as hub:
        code, _, report = run(manifest(tmp_path / "cache", ("support", "me/unsloth-31b")), hub, tmp_path)
    assert code == 1
    assert (report["error"]["type"], report["error"]["status"]) == ("RepositoryNotFoundError", 404)
    assert report["adapters"] == [] and not (tmp_path / "cache/adapters/support").exists()


DRAFTER = "google/gemma-4-31B-it-assistant"


def with_drafter(m: Manifest, cache: Path) -> Manifest:
    """The manifest of a plan with speculative decoding: the drafter after the checkpoint, inside its directory."""
    drafter = Artifact(Kind.DRAFTER, "drafter", DRAFTER, f"{cache}/models/{BASE}/main/mtp-drafter")
    return Manifest(m.variant, m.rules, (m.artifacts[0], drafter, *m.artifacts[1:]), m.cache_root)


def test_the_drafter_lands_in_the_checkpoint_s_directory_and_survives_its_pruning(
        tmp_path: Path, repos: dict[str, dict[str, Path]]) -> None:
    drafter = tmp_path / "hub" / "drafter"
    drafter.mkdir(parents=True)
    (drafter / "model.safetensors").write_bytes(b"d" * 100)
    repos[DRAFTER] = {"model.safetensors": drafter / "model.safetensors"}
    older = tmp_path / "cache" / "models" / "google" / "gemma-4-E2B-it" / "main"
    older.mkdir(parents=True)
    with StandInHub(repos) as hub:
        m = with_drafter(manifest(tmp_path / "cache"), tmp_path / "cache")
        code, output, _ = run(m, hub, tmp_path)
        again, _, _ = run(m, hub, tmp_path)  # a restarted Job: the checkpoint's pruning keeps the drafter
    directory = tmp_path / "cache" / "models" / BASE / "main"
    assert (code, again) == (0, 0), output
    assert (directory / "mtp-drafter" / "model.safetensors").read_bytes() == b"d" * 100
    assert (directory / "model.safetensors").is_file() and not older.exists()


def test_a_missing_drafter_fails_the_job(tmp_path: Path, repos: dict[str, dict[str, Path]]) -> None:
    with StandInHub(repos) as hub:
        code, _, report = run(with_drafter(manifest(tmp_path / "cache"), tmp_path / "cache"), hub, tmp_path)
    assert code == 1
    assert (report["error"]["type"], report["error"]["status"]) == ("RepositoryNotFoundError", 404)


def test_a_named_file_the_repository_lacks_fails_the_job(tmp_path: Path, repos: dict[str, dict[str, Path]]) -> None:
    with StandInHub(repos) as hub:
        code, _, report = run(manifest(tmp_path / "cache", files=("model-Q4_K_M.gguf",)), hub, tmp_path)
    assert (code, report["error"]["type"]) == (1, "MissingFiles")
    assert report["error"]["message"] == f"{BASE} has no model-Q4_K_M.gguf"


def test_a_merged_fine_tune_of_another_size_fails_the_job_in_words(tmp_path: Path,
                                                                   repos: dict[str, dict[str, Path]]) -> None:
    m = manifest(tmp_path / "cache")
    m = Manifest("e4b", m.rules, m.artifacts, m.cache_root)
    with StandInHub(repos) as hub:
        code, _, report = run(m, hub, tmp_path)
    assert (code, report["error"]["type"]) == (3, "VariantMismatch")
    assert report["error"]["message"].startswith(f"{BASE}'s config.json is not Gemma 4 E4B: num_hidden_layers 60")


def test_sigterm_during_a_fetch_still_writes_the_report(tmp_path: Path) -> None:
    with socket.socket() as silent:  # a Hub that accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        termination = tmp_path / "termination"
        proc = start(manifest(tmp_path / "cache"), f"http://127.0.0.1:{silent.getsockname()[1]}", termination)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    report = json.loads(termination.read_text(encoding="utf-8"))
    assert proc.returncode == report["exitCode"] == 128 + signal.SIGTERM, output
    assert report["log"].endswith("stopped: Terminated")


def test_the_report_fits_the_kubelet_s_4096_bytes_with_every_verdict() -> None:
    verdicts = [AdapterVerdict(f"adapter-{i:02d}-" + "n" * 40, "ModulesToSave", "m" * 900, 16,
                               ("q_proj", "k_proj", "v_proj", "o_proj"), False) for i in range(32)]
    report = Report(1, 10, 1.0, FetchError("model", "HfHubHTTPError", "e" * 5000, 503), verdicts,
                    [f"line {i} " + "x" * 300 for i in range(50)])
    text = report.to_json()
    data = json.loads(text)
    assert len(text.encode("utf-8")) <= MAX_REPORT_BYTES
    assert [a["name"] for a in data["adapters"]] == [v.name for v in verdicts]
    assert {a["reason"] for a in data["adapters"]} == {"ModulesToSave"}
    assert data["error"]["status"] == 503


def test_a_short_report_keeps_everything() -> None:
    report = Report(0, 5, 2.0, None, [AdapterVerdict("a", "Accepted", "LoRA rank 8", 8, ("q_proj",))], ["one"])
    data = json.loads(report.to_json())
    assert data["adapters"] == [{"name": "a", "reason": "Accepted", "message": "LoRA rank 8", "rank": 8,
                                 "targets": ["q_proj"], "towers": False}]
    assert data["log"] == "one"


def test_the_manifest_round_trips_through_json() -> None:
    m = manifest(Path("/cache"), ("a", "me/a"), files=("x.gguf",), token_env="T")
    assert Manifest.from_json(m.to_json()) == m


def test_more_verdicts_than_fit_are_cut_from_the_end_and_flagged() -> None:
    verdicts = [AdapterVerdict(f"adapter-{i:03d}-" + "n" * 50, "Accepted", "ok", 16) for i in range(80)]
    text = Report(0, 1, 1.0, None, verdicts).to_json()
    data = json.loads(text)
    assert len(text.encode("utf-8")) <= MAX_REPORT_BYTES and data["truncated"] is True
    assert [a["name"] for a in data["adapters"]] == [v.name for v in verdicts[: len(data["adapters"])]]


def test_the_job_s_default_image_is_this_release_of_the_operator() -> None:
    from importlib.metadata import version

    from gemma4_operator.render.download import downloader_image

    assert downloader_image() == f"ghcr.io/gemma4-operator/gemma4-operator:{version('gemma4-operator')}"


def test_a_gguf_adapter_for_llama_cpp_is_linked_under_the_name_its_flag_gives(
        tmp_path: Path, repos: dict[str, dict[str, Path]]) -> None:
    gguf = tmp_path / "hub" / "fr-lora.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    two = tmp_path / "hub" / "other.gguf"
    two.write_bytes(b"GGUF" + bytes(60))
    repos |= {"me/fr-gguf": {"fr-lora.gguf": gguf}, "me/two-gguf": {"a.gguf": gguf, "b.gguf": two}}
    m = manifest(tmp_path / "cache", ("fr", "me/fr-gguf"), ("two", "me/two-gguf"), ("peft", "me/unsloth-31b"))
    m = Manifest(m.variant, AdapterRules(max_rank=16, gguf=True), m.artifacts, m.cache_root)
    with StandInHub(repos) as hub:
        code, output, report = run(m, hub, tmp_path)
    assert code == 0, output
    verdicts = {a["name"]: a for a in report["adapters"]}
    assert verdicts["fr"]["reason"] == "Accepted"
    assert os.readlink(tmp_path / "cache/adapters/fr/adapter.gguf") == "fr-lora.gguf"
    assert verdicts["two"]["reason"] == "InvalidConfig" and "holds 2 GGUF files" in verdicts["two"]["message"]
    assert verdicts["peft"]["reason"] == "NeedsGGUF" and "convert_lora_to_gguf.py" in verdicts["peft"]["message"]
