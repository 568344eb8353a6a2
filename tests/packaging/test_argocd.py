"""Argo CD support: health.lua under a real Lua, its test cases, the argocd-cm snippet, the
example Application (sync waves, ignoreDifferences) and its Gemma4Deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from tests.packaging.chart import ARGOCD, ARGOCD_CM, HEALTH_KEY, HEALTH_LUA, ROOT, argocd_cm_yaml
from tests.packaging.conftest import Renderer
from tests.support.crd_schema import cel_errors, schema_errors

HEALTH_TESTS: list[dict[str, Any]] = yaml.safe_load((ARGOCD / "health_test.yaml").read_text(encoding="utf-8"))["tests"]
APPLICATION = yaml.safe_load((ARGOCD / "application.yaml").read_text(encoding="utf-8"))
WAVE = "argocd.argoproj.io/sync-wave"

# What Argo CD's gopher-lua offers a health check from argocd-cm (util/lua/lua.go runLua, without
# useOpenLibs): the base library, `table`, `package` and a restricted `os`; no `string`, `math`,
# `io` or `debug`. The script uses none of `os`, so it is left out here as well.
ARGO_LIBRARIES = ("_G", "_VERSION", "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print",
                  "rawequal", "rawget", "rawset", "require", "select", "setmetatable", "tonumber", "tostring",
                  "type", "unpack", "xpcall", "table", "package")


def run_health(obj: dict[str, Any]) -> dict[str, Any]:
    """health.lua on ``obj`` under Lua 5.1 (Argo CD's gopher-lua dialect), with Argo's libraries only."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])  # 1-based, as Argo CD converts arrays
        return value

    restrict = lua.eval("function(keep) getmetatable('').__index = nil "  # no ("x"):upper() without `string`
                        "for name in pairs(_G) do if not keep[name] then _G[name] = nil end end end")
    restrict(lua.table_from(dict.fromkeys(ARGO_LIBRARIES, True)))
    lua.globals().obj = to_lua(obj)
    result = lua.execute(HEALTH_LUA.read_text(encoding="utf-8"))
    return {str(k): v for k, v in dict(result).items()}


@pytest.mark.parametrize("case", HEALTH_TESTS, ids=lambda c: Path(c["inputPath"]).stem)
def test_health_lua_matches_health_test_yaml(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((ARGOCD / case["inputPath"]).read_text(encoding="utf-8"))
    assert run_health(obj) == case["healthStatus"]


def test_health_test_yaml_covers_every_testdata_object_and_state() -> None:
    inputs = {c["inputPath"] for c in HEALTH_TESTS}
    files = {f"testdata/{p.name}" for p in (ARGOCD / "testdata").glob("*.yaml")}
    assert inputs == files
    assert {c["healthStatus"]["status"] for c in HEALTH_TESTS} == {"Healthy", "Progressing", "Degraded", "Suspended"}
    for required in ("healthy", "progressing", "degraded", "missing-status", "stale-generation"):
        assert f"testdata/{required}.yaml" in inputs


@pytest.mark.parametrize("path", sorted((ARGOCD / "testdata").glob("*.yaml")), ids=lambda p: p.stem)
def test_testdata_objects_are_valid_gemma4deployments(path: Path) -> None:
    obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert schema_errors(obj) == []
    assert cel_errors(obj) == []
    Gemma4Deployment.model_validate(obj)


def test_argocd_cm_carries_health_lua() -> None:
    assert ARGOCD_CM.read_text(encoding="utf-8") == argocd_cm_yaml(), "stale: run `make manifests`"
    config_map = yaml.safe_load(ARGOCD_CM.read_text(encoding="utf-8"))
    assert config_map["metadata"] == {"name": "argocd-cm", "namespace": "argocd", "labels": {
        "app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"}}
    # resource.customizations.health.<group>_<kind>
    assert HEALTH_KEY == "resource.customizations.health.serving.gemma4.dev_Gemma4Deployment"
    assert config_map["data"] == {HEALTH_KEY: HEALTH_LUA.read_text(encoding="utf-8")}


def _gitops_gemma4deployments() -> list[dict[str, Any]]:
    source = APPLICATION["spec"]["sources"][1]
    return [d for p in sorted((ROOT / source["path"]).glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d]


def test_application_syncs_crd_and_operator_before_gemma4deployments(renderer: Renderer) -> None:
    assert APPLICATION["apiVersion"] == "argoproj.io/v1alpha1" and APPLICATION["kind"] == "Application"
    chart_source, models_source = APPLICATION["spec"]["sources"]
    assert (ROOT / chart_source["path"] / "Chart.yaml").is_file()
    assert (ROOT / models_source["path"]).is_dir()
    # The chart renders CRDs, RBAC and the operator in the default wave 0 ...
    chart_waves = {int(o["metadata"].get("annotations", {}).get(WAVE, 0)) for o in renderer.value_set("default")}
    assert chart_waves == {0}
    # ... and every Gemma4Deployment of the Application comes after them.
    models = _gitops_gemma4deployments()
    assert models and {m["kind"] for m in models} == {"Gemma4Deployment"}
    for model in models:
        assert int(model["metadata"]["annotations"][WAVE]) > max(chart_waves), model["metadata"]["name"]
        assert schema_errors(model) == [] and cel_errors(model) == []
        plan(Gemma4Deployment.model_validate(model).spec, ClusterFacts.every_catalog_type())


def test_application_ignores_replicas_owned_by_an_autoscaler() -> None:
    spec = APPLICATION["spec"]
    assert {"group": "serving.gemma4.dev", "kind": "Gemma4Deployment", "jsonPointers": ["/spec/replicas"]} in spec[
        "ignoreDifferences"]
    options = spec["syncPolicy"]["syncOptions"]
    assert "RespectIgnoreDifferences=true" in options  # else the ignored field is still synced from Git
    assert "ServerSideApply=true" in options
    # The Gemma4Deployment that KEDA scales leaves spec.replicas out of Git.
    scaled = [m for m in _gitops_gemma4deployments() if m["spec"].get("autoscaling", {}).get("backend") == "keda"]
    assert scaled and all("replicas" not in m["spec"] for m in scaled)
