"""The chart's Grafana dashboards, built with grafana-foundation-sdk (Grafana 11.6 schema).

``python -m tests.packaging.dashboards`` (also run by ``make manifests``) writes
``charts/gemma4-operator/dashboards/*.json``, which the chart ships as ConfigMaps for Grafana's dashboard
sidecar (``metrics.dashboards.enabled``). ``tests/packaging/test_observability.py`` checks that the committed
files are what this script generates, that every query parses (promtool) and that every metric it names
exists (``tests/packaging/observability.py``).

- ``gemma4-operator.json``: the operator's health: reconciles, errors, durations, plans, children, autoscaler.
- ``gemma4-serving.json``: one Gemma4Deployment (``$namespace``/``$deployment``): replicas, queue, running
  requests, KV-cache use, TTFT / inter-token / end-to-end latency quantiles, tokens/s, autoscaler decisions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from grafana_foundation_sdk.builders import common as options
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from tests.packaging.observability import ROOT

DASHBOARDS_DIR = ROOT / "charts" / "gemma4-operator" / "dashboards"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
QUANTILES = (0.5, 0.9, 0.99)
TAGS = ["gemma4", "gemma4-operator"]


def query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).datasource(DATASOURCE)


def queries(*pairs: tuple[str, str]) -> list[prometheus.Dataquery]:
    """(expr, legend) pairs with refIds A, B, C..."""
    return [query(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def series(title: str, description: str, targets: Iterable[prometheus.Dataquery], unit: str = "short",
           width: int = 12, height: int = 8, min_value: float | None = 0) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .span(width).height(height).fill_opacity(10).line_width(1).show_points(common.VisibilityMode.NEVER)
             .legend(options.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(options.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING)))
    if min_value is not None:
        panel = panel.min(min_value)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def single(title: str, description: str, target: prometheus.Dataquery, unit: str = "short", width: int = 6,
           mappings: list[model.ValueMapping] | None = None,
           steps: list[tuple[float | None, str]] | None = None) -> stat.Panel:
    panel = (stat.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit).span(width)
             .height(4).graph_mode(common.BigValueGraphMode.AREA).color_mode(common.BigValueColorMode.VALUE)
             .reduce_options(options.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .with_target(target))
    if mappings:
        panel = panel.mappings(mappings)
    thresholds = [model.Threshold(value=v, color=c) for v, c in (steps or [(None, "green")])]
    return panel.thresholds(dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(thresholds))


def quantiles(metric: str, selector: str, by: str = "le") -> list[prometheus.Dataquery]:
    return queries(*(
        (f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))", f"p{round(q * 100)}")
        for q in QUANTILES))


def value_text(mapping: dict[str, tuple[str, str]]) -> list[model.ValueMapping]:
    return [model.ValueMap(options={k: model.ValueMappingResult(text=t, color=c, index=i)
                                    for i, (k, (t, c)) in enumerate(mapping.items())})]


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, label: str, query_text: str) -> dashboard.QueryVariable:
    return (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE)
            .query({"query": query_text, "refId": f"{name}-variable"})
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC))


def base(title: str, uid: str, description: str) -> dashboard.Dashboard:
    return (dashboard.Dashboard(title).uid(uid).description(description).tags(TAGS).editable()
            .refresh("30s").time("now-3h", "now").timezone(common.TimeZoneBrowser)
            .tooltip(model.DashboardCursorSync.CROSSHAIR).with_variable(datasource_variable()))


# --- operator health ----------------------------------------------------------------------------

def operator_dashboard() -> dashboard.Dashboard:
    job = 'job=~"$job"'
    board = (base("Gemma 4 operator", "gemma4-operator",
                  "Health of the gemma4-operator: reconciles, errors, durations, plans, children and autoscaler.")
             .with_variable(label_variable("job", "Operator job",
                                           "label_values(gemma4_operator_status_patches_total, job)")
                            .multi(True).include_all(True).all_value(".+")))
    board = board.with_row(dashboard.Row("Overview"))
    board = board.with_panel(single(
        "Operator targets up", "Operator pods Prometheus scrapes successfully (with HA: active and standbys).",
        query(f"sum(up{{{job}}})"), steps=[(None, "red"), (1, "green")]))
    board = board.with_panel(single(
        "Reconciles / s", "Reconciles of Gemma4Deployments per second, every trigger and result.",
        query(f"sum(rate(gemma4_operator_reconciles_total{{{job}}}[{RATE}]))"), unit="reqps"))
    board = board.with_panel(single(
        "Failed reconciles", "Share of reconciles that ended in error or retry.",
        query(f'sum(rate(gemma4_operator_reconciles_total{{{job},result=~"error|retry"}}[{RATE}]))'
              f" / sum(rate(gemma4_operator_reconciles_total{{{job}}}[{RATE}]))"),
        unit="percentunit", steps=[(None, "green"), (0.01, "orange"), (0.1, "red")]))
    board = board.with_panel(single(
        "Degraded Gemma4Deployments", "Gemma4Deployments whose Degraded condition is True.",
        query(f'count(gemma4_operator_deployment_condition{{{job},type="Degraded",status="True"}} == 1) or vector(0)'),
        steps=[(None, "green"), (1, "red")]))

    board = board.with_row(dashboard.Row("Reconciles"))
    board = board.with_panel(series(
        "Reconciles by result", "applied: children written; unchanged; plan_failed; invalid: malformed object; "
        "retry: temporary API failure; error: anything else.",
        queries((f"sum by (result) (rate(gemma4_operator_reconciles_total{{{job}}}[{RATE}]))", "{{result}}")),
        unit="reqps"))
    board = board.with_panel(series(
        "Reconcile errors by reason", "Failed reconciles by reason (Conflict, Throttled, ServerError, Timeout, ...).",
        queries((f"sum by (reason) (rate(gemma4_operator_reconcile_errors_total{{{job}}}[{RATE}]))", "{{reason}}")),
        unit="reqps"))
    board = board.with_panel(series(
        "Reconcile duration", "Quantiles of the time to reconcile one Gemma4Deployment.",
        quantiles("gemma4_operator_reconcile_duration_seconds", job), unit="s"))
    board = board.with_panel(series(
        "Reconciles by trigger", "What started the reconciles (create, update, resume, child change, timer...).",
        queries((f"sum by (trigger) (rate(gemma4_operator_reconciles_total{{{job}}}[{RATE}]))", "{{trigger}}")),
        unit="reqps"))

    board = board.with_row(dashboard.Row("Plans and children"))
    board = board.with_panel(series(
        "Plans by outcome", "Planner runs: fits (a variant was chosen) or failed (nothing fits the cluster).",
        queries((f"sum by (outcome) (rate(gemma4_operator_plans_total{{{job}}}[{RATE}]))", "{{outcome}}")),
        unit="ops"))
    board = board.with_panel(series(
        "Plans by engine and variant", "Planner runs that fit, by engine, variant and quantization.",
        queries((f'sum by (engine, variant, quantization) (rate(gemma4_operator_plans_total{{{job},outcome="fits"}}'
                 f"[{RATE}]))", "{{engine}} {{variant}} {{quantization}}")),
        unit="ops"))
    board = board.with_panel(series(
        "Child applies", "Server-side applies of child objects by kind and reason (missing, changed, drifted).",
        queries((f"sum by (kind, reason) (rate(gemma4_operator_children_applied_total{{{job}}}[{RATE}]))",
                 "{{kind}} {{reason}}"),
                (f"sum by (kind) (rate(gemma4_operator_children_deleted_total{{{job}}}[{RATE}]))",
                 "{{kind}} deleted")),
        unit="ops"))
    board = board.with_panel(series(
        "Status patches and events", "Status subresource patches, and Kubernetes Events by type and reason.",
        queries((f"sum(rate(gemma4_operator_status_patches_total{{{job}}}[{RATE}]))", "status patches"),
                (f"sum by (type, reason) (rate(gemma4_operator_events_total{{{job}}}[{RATE}]))",
                 "{{type}} {{reason}}")),
        unit="ops"))

    board = board.with_row(dashboard.Row("Autoscaler"))
    board = board.with_panel(series(
        "Autoscaler decisions", "Built-in autoscaler decisions by direction (up, down, none, inactive).",
        queries((f"sum by (direction) (rate(gemma4_operator_autoscaler_decisions_total{{{job}}}[{RATE}]))",
                 "{{direction}}")),
        unit="ops"))
    return board.with_panel(series(
        "Engine scrapes", "The autoscaler's engine /metrics scrapes by result (ok, failed).",
        queries((f"sum by (result) (rate(gemma4_operator_autoscaler_scrapes_total{{{job}}}[{RATE}]))",
                 "{{result}}")),
        unit="ops"))


# --- one Gemma4Deployment -----------------------------------------------------------------------

def serving_dashboard() -> dashboard.Dashboard:
    obj = 'namespace="$namespace",name="$deployment"'
    board = (base("Gemma 4 serving", "gemma4-serving",
                  "One Gemma4Deployment: replicas, load, KV cache, latency and throughput of its vLLM or "
                  "llama.cpp pods. Engine series are joined to the object by the PodMonitor's namespace and name "
                  "labels.")
             .with_variable(label_variable("namespace", "Namespace",
                                           "label_values(gemma4_operator_deployment_info, namespace)"))
             .with_variable(label_variable("deployment", "Gemma4Deployment",
                                           'label_values(gemma4_operator_deployment_info{namespace="$namespace"}, '
                                           "name)")))

    board = board.with_row(dashboard.Row("Status"))
    board = board.with_panel(single(
        "Ready", "The Ready condition.",
        query(f'max(gemma4_operator_deployment_condition{{{obj},type="Ready",status="True"}})'),
        mappings=value_text({"1": ("Ready", "green"), "0": ("Not ready", "red")}),
        steps=[(None, "red"), (1, "green")]))
    board = board.with_panel(single(
        "Degraded", "The Degraded condition (its reason and message: kubectl describe g4d).",
        query(f'max(gemma4_operator_deployment_condition{{{obj},type="Degraded",status="True"}})'),
        mappings=value_text({"1": ("Degraded", "red"), "0": ("OK", "green")}),
        steps=[(None, "green"), (1, "red")]))
    board = board.with_panel(single(
        "Model", "status.model.phase: the weights' download (Downloading, Ready, Failed).",
        query(f"max by (phase) (gemma4_operator_model_phase{{{obj}}}) == 1", "{{phase}}"),
        steps=[(None, "blue")]).text_mode(common.BigValueTextMode.NAME))
    board = board.with_panel(single(
        "Ready replicas", "status.readyReplicas.",
        query(f"max(gemma4_operator_deployment_ready_replicas{{{obj}}})"), steps=[(None, "red"), (1, "green")]))

    board = board.with_row(dashboard.Row("Replicas and autoscaling"))
    board = board.with_panel(series(
        "Replicas", "The autoscaler's desired replicas, the serving Deployment's replicas and ready replicas, "
        "between minReplicaCount and maxReplicaCount.",
        queries((f"max(gemma4_operator_autoscaler_desired_replicas{{{obj}}})", "desired"),
                (f"max(gemma4_operator_deployment_replicas{{{obj}}})", "current"),
                (f"max(gemma4_operator_deployment_ready_replicas{{{obj}}})", "ready"),
                (f"max(gemma4_operator_deployment_min_replicas{{{obj}}})", "min"),
                (f"max(gemma4_operator_deployment_max_replicas{{{obj}}})", "max"))))
    board = board.with_panel(series(
        "Autoscaler decisions", "Changes of this object's desired replicas, and the built-in autoscaler's "
        "decisions by direction over all the operator's objects.",
        queries((f"changes(gemma4_operator_autoscaler_desired_replicas{{{obj}}}[{RATE}])", "desired changed"),
                (f"sum by (direction) (increase(gemma4_operator_autoscaler_decisions_total[{RATE}]))",
                 "all objects: {{direction}}"))))

    board = board.with_row(dashboard.Row("Load"))
    board = board.with_panel(series(
        "Queue", "Requests waiting for a slot, per pod: vLLM num_requests_waiting, llama.cpp requests_deferred.",
        queries((f"sum by (pod) (vllm:num_requests_waiting{{{obj}}})", "{{pod}}"),
                (f"sum by (pod) (llamacpp:requests_deferred{{{obj}}})", "{{pod}}"))))
    board = board.with_panel(series(
        "Running requests", "Requests being processed, per pod: vLLM num_requests_running, llama.cpp "
        "requests_processing.",
        queries((f"sum by (pod) (vllm:num_requests_running{{{obj}}})", "{{pod}}"),
                (f"sum by (pod) (llamacpp:requests_processing{{{obj}}})", "{{pod}}"))))
    board = board.with_panel(series(
        "KV-cache use", "vLLM's KV-cache usage per pod (1 = full: new requests wait). llama.cpp exports none.",
        queries((f"max by (pod) (vllm:kv_cache_usage_perc{{{obj}}})", "{{pod}}")),
        unit="percentunit").max(1))
    board = board.with_panel(single(
        "LoRA adapters", "vLLM's lora_requests_info, per pod: the adapters in the running batch and those waiting "
        "for one of the max_lora GPU slots (serving.lora.maxActiveAdapters); adapters waiting often mean too few "
        "slots. Its latest series per pod (each scheduling state is a series whose value is when it was seen).",
        query(f"topk by (pod) (1, vllm:lora_requests_info{{{obj}}})",
              "{{pod}}: running [{{running_lora_adapters}}], waiting [{{waiting_lora_adapters}}] of {{max_lora}} "
              "slots"),
        width=12, steps=[(None, "blue")]).text_mode(common.BigValueTextMode.NAME))
    board = board.with_panel(series(
        "Tokens / s", "Prompt and generated tokens per second over all pods.",
        queries((f"sum(rate(vllm:prompt_tokens_total{{{obj}}}[{RATE}]))", "prompt (vLLM)"),
                (f"sum(rate(vllm:generation_tokens_total{{{obj}}}[{RATE}]))", "generated (vLLM)"),
                (f"sum(rate(llamacpp:prompt_tokens_total{{{obj}}}[{RATE}]))", "prompt (llama.cpp)"),
                (f"sum(rate(llamacpp:tokens_predicted_total{{{obj}}}[{RATE}]))", "generated (llama.cpp)"))))

    board = board.with_row(dashboard.Row("Latency"))
    board = board.with_panel(series(
        "Time to first token", "vLLM time_to_first_token_seconds quantiles over all pods.",
        quantiles("vllm:time_to_first_token_seconds", obj), unit="s", width=8))
    board = board.with_panel(series(
        "Inter-token latency", "vLLM inter_token_latency_seconds quantiles over all pods; for llama.cpp the mean "
        "generation time per token.",
        [*quantiles("vllm:inter_token_latency_seconds", obj),
         query(f"sum(rate(llamacpp:tokens_predicted_seconds_total{{{obj}}}[{RATE}])) / "
               f"sum(rate(llamacpp:tokens_predicted_total{{{obj}}}[{RATE}]))", "mean (llama.cpp)", "D")],
        unit="s", width=8))
    return board.with_panel(series(
        "End-to-end request latency", "vLLM e2e_request_latency_seconds quantiles over all pods.",
        quantiles("vllm:e2e_request_latency_seconds", obj), unit="s", width=8))


DASHBOARDS = {"gemma4-operator.json": operator_dashboard, "gemma4-serving.json": serving_dashboard}


def number_panels(board: dict[str, Any]) -> dict[str, Any]:
    """Grafana wants a unique id per panel; the SDK leaves them unset."""
    for i, panel in enumerate(board.get("panels", []), start=1):
        panel["id"] = i
    return board


def render(builder: dashboard.Dashboard) -> str:
    board = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return json.dumps(number_panels(board), indent=2, sort_keys=True) + "\n"


def generated() -> dict[str, str]:
    """File name -> JSON text, as committed under charts/gemma4-operator/dashboards/."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def main() -> int:
    DASHBOARDS_DIR.mkdir(exist_ok=True)
    for name, text in generated().items():
        path = DASHBOARDS_DIR / name
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
