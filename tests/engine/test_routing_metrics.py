"""The endpoint picker's config for a llama.cpp deployment (spec.routing.inferencePool) against the real
llama-server: every metric name it reads is on the live /metrics (an absent one would leave the picker's
scorer blind, and upstream's extractor logs an error per scrape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.render import routing as r
from gemma4_operator.render.children import Owner, render_children
from tests.engine.llama_server import LlamaServer, chat_payload, metric_types

pytestmark = pytest.mark.engine
EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "e2b-cpu.yaml"


def _rendered_epp_config() -> dict[str, Any]:
    body = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    body["spec"]["routing"] = {"inferencePool": {}}
    d = Gemma4Deployment.model_validate(body)
    p = plan(d.spec, ClusterFacts.every_catalog_type())
    assert p.engine == "llamacpp"
    children = render_children(Owner(d.name, d.namespace, "uid"), d.spec, p)
    config_map = next(c for c in children if c["kind"] == "ConfigMap" and c["metadata"]["name"].endswith("-epp"))
    config: dict[str, Any] = yaml.safe_load(config_map["data"][r.EPP_CONFIG_FILE])
    return config


def test_the_live_metrics_carry_every_metric_the_pickers_config_reads(llama_server: LlamaServer) -> None:
    config = _rendered_epp_config()
    referenced = r.referenced_metrics(config)
    assert referenced, "the llama.cpp config reads no metric at all"
    response = httpx.post(f"{llama_server.base_url}/v1/chat/completions", json=chat_payload("hi", max_tokens=2),
                          timeout=60)
    assert response.status_code == 200
    exposition = httpx.get(f"{llama_server.base_url}/metrics", timeout=30).text
    exported = set(metric_types(exposition))
    assert referenced <= exported, f"read by the picker, not on llama-server's /metrics: {referenced - exported}"
    assert {metric_types(exposition)[name] for name in referenced} == {"gauge"}  # queue and running: gauges
