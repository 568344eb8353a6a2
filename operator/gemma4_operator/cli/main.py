"""Command line: offline `plan`, `render`, `crd`, `accelerators`; `run` (the operator) and `activator` (the
wake path of a scaled-to-zero object, run from the operator's image).

Exit codes: 0 success; 1 bad input: a usage error, an input file that is unreadable, too large, not
text, not YAML or not a valid Gemma4Deployment, or (`run`) a bad flag or environment variable or no
Kubernetes credentials; 2 the spec cannot be served or rendered as asked: the planner refused
(PlanError) or a child cannot be rendered (UnrenderableError, e.g. KEDA without --prometheus-url);
3 the operator stopped with an error, or an unexpected internal error (a bug), reported in one line,
never a traceback. Signals (cli.entry): 128 + the signal, e.g. 130 for SIGINT (Ctrl-C), 143 for SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

import yaml

from gemma4_operator.activator import settings as activator_settings
from gemma4_operator.api import KIND, AutoscalingBackend, Gemma4Deployment
from gemma4_operator.api.crd import crd_yaml
from gemma4_operator.catalog import load_catalog
from gemma4_operator.cli import download
from gemma4_operator.cli import run as operator_main
from gemma4_operator.cli.files import InputError, load_deployments
from gemma4_operator.config import ConfigError, parse_prices
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, RenderOptions, UnrenderableError, render_children

EXIT_INVALID = 1
EXIT_PLAN_ERROR = 2
EXIT_INTERNAL_ERROR = 3  # documented with the operator's own failure: no input reaches it


CPU_ONLY = "cpu"


def _facts(accelerators: Sequence[str] | None) -> tuple[ClusterFacts, str]:
    """Cluster facts from --accelerator: catalog GPU types, or cpu for CPU nodes (always assumed present;
    `--accelerator cpu` alone means a cluster without GPUs)."""
    catalog = load_catalog()
    if not accelerators:
        return ClusterFacts.every_catalog_type(catalog), "every catalog accelerator type"
    unknown = [a for a in accelerators if a != CPU_ONLY and a not in catalog.accelerators]
    if unknown:
        raise InputError(f"--accelerator {', '.join(unknown)}: not a catalog accelerator type "
                         f"(known: {', '.join(catalog.gpu_types)}, {CPU_ONLY})")
    gpus = frozenset(a for a in accelerators if a != CPU_ONLY)
    assumed = ", ".join(dict.fromkeys(accelerators)) if gpus else "cpu only (no GPU nodes)"
    return ClusterFacts(gpus), assumed


def plan_table(d: Gemma4Deployment, p: Plan, assumed: str) -> str:
    m = p.memory
    reserved = m.capacity * (1 - p.gpu_memory_utilization) if p.accelerator.is_gpu else 0.0
    free = m.capacity - reserved - m.weights - m.overhead - (m.lora or 0.0) - m.kv_cache
    unit = "per GPU" if p.accelerator.is_gpu else "per pod"
    hardware = f"{p.gpus_per_replica}x {p.accelerator.name}" if p.accelerator.is_gpu else "cpu"
    rows = [
        ("model", f"{p.served_model_name} ({p.model_ref})"),
        ("engine", f"{p.engine}  {p.image}"),
        ("quantization", p.quantization),
        ("accelerator", f"{hardware}  ({p.arch})"),
        ("tensor parallel", str(p.tensor_parallel_size) + ("  + expert parallel" if p.expert_parallel else "")),
        ("max model len", f"{p.max_model_len} tokens"),
        ("kv cache", p.kv_cache_dtype),
        ("concurrency", f"{p.concurrency} requested, {p.max_concurrency} fit at max model len"),
        ("modalities", ", ".join(p.modalities)),
        ("weights", p.weights.describe(p.download_bytes)),
        ("start", f"~{p.start.first_s} s first, ~{p.start.warm_s} s warm; probe budget "
                  f"{p.startup_budget_s // 60} min"),
        ("cost", f"${p.cost_per_replica_hour:.2f} per replica-hour (indicative)"),
    ]
    width = max(len(k) for k, _ in rows)
    out = [f"{KIND} {d.namespace}/{d.name or '(unnamed)'}   (cluster facts: {assumed})", ""]
    out += [f"  {k:<{width}}  {v}" for k, v in rows]
    out += ["", f"  memory {unit} (GiB)"]
    memory_rows = [("weights", m.weights), ("overhead", m.overhead),
                   *([("lora slots", m.lora)] if m.lora is not None else []), ("kv cache pool", m.kv_cache)]
    if p.accelerator.is_gpu:
        memory_rows.append((f"reserved ({1 - p.gpu_memory_utilization:.0%})", reserved))
    memory_rows += [("unused", max(free, 0.0)), ("capacity", m.capacity)]
    out += [f"    {k:<16}{v:>8.1f}" for k, v in memory_rows]
    if p.notes:
        out += ["", "  notes"] + [f"    - {n}" for n in p.notes]
    if p.alternatives:
        out += ["", "  runners-up"] + [f"    - {a}" for a in p.alternatives]
    return "\n".join(out)


def _plan_document(d: Gemma4Deployment, p: Plan) -> dict[str, Any]:
    return {"name": d.name, "namespace": d.namespace,
            "plan": p.to_status().model_dump(by_alias=True, mode="json")}


def _prices(items: Sequence[str]) -> dict[str, float]:
    try:
        return parse_prices(items)
    except ConfigError as e:
        raise InputError(str(e)) from e


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    facts, assumed = _facts(args.accelerator)
    prices = _prices(args.accelerator_price)
    documents: list[dict[str, Any]] = []
    status = 0
    for d in load_deployments(args.file):
        try:
            p = plan(d.spec, facts, prices=prices)
        except PlanError as e:
            print(f"{KIND} {d.namespace}/{d.name}: {e.message}", file=sys.stderr)
            status = EXIT_PLAN_ERROR
            continue
        if args.output == "table":
            print(plan_table(d, p, assumed), file=out)
        else:
            documents.append(_plan_document(d, p))
    if args.output == "json" and documents:
        print(json.dumps(documents if len(documents) > 1 else documents[0], indent=2), file=out)
    elif args.output == "yaml" and documents:
        print(yaml.safe_dump_all(documents, sort_keys=False), end="", file=out)
    return status


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    facts, _ = _facts(args.accelerator)
    prices = _prices(args.accelerator_price)
    if args.owner_uid is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,128}", args.owner_uid):
        raise InputError(f"--owner-uid {args.owner_uid[:80]!r}: expected the object's uid, e.g. from "
                         "kubectl get gemma4deployment NAME -o jsonpath='{.metadata.uid}'")
    url = (args.prometheus_url or "").rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        raise InputError(f"--prometheus-url {args.prometheus_url!r}: expected an http(s) URL")
    # offline: assume KEDA is installed (keda_served); the operator discovers it
    options = RenderOptions(prometheus_url=url)
    objects: list[dict[str, Any]] = []
    for d in load_deployments(args.file):
        try:
            p = plan(d.spec, facts, prices=prices)
        except PlanError as e:
            print(f"{KIND} {d.namespace}/{d.name}: {e.message}", file=sys.stderr)
            return EXIT_PLAN_ERROR
        try:
            objects += render_children(Owner(d.name, d.namespace, args.owner_uid or ""), d.spec, p, options)
        except UnrenderableError as e:
            print(f"{KIND} {d.namespace}/{d.name}: cannot render: {e}", file=sys.stderr)
            keda = d.spec.autoscaling is not None and d.spec.autoscaling.backend is AutoscalingBackend.KEDA
            if keda and not url:
                print("  render: pass --prometheus-url URL, the Prometheus KEDA's triggers query "
                      "(e.g. --prometheus-url http://prometheus.monitoring:9090)", file=sys.stderr)
            return EXIT_PLAN_ERROR
    print(yaml.safe_dump_all(objects, sort_keys=False), end="", file=out)
    return 0


def cmd_crd(_: argparse.Namespace, out: TextIO) -> int:
    print(crd_yaml(), end="", file=out)
    return 0


def cmd_activator(args: argparse.Namespace, _: TextIO) -> int:
    import asyncio
    import logging

    from gemma4_operator.activator.server import serve  # aiohttp: only when the activator runs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(activator_settings.settings_from_args(args)))
    return 0


def cmd_accelerators(_: argparse.Namespace, out: TextIO) -> int:
    """Catalog types with what the hardware rules make of them: GPUs one replica may span (1 on a MIG slice:
    no tensor parallel across slices), whether vLLM may keep an fp8 KV cache there, the memory CUDA reports (what
    the planner fits within) and vLLM's batch defaults there (batched tokens / sequences, which size its overhead)."""
    catalog = load_catalog()
    fp8_kv = catalog.hardware_rules.fp8_kv_cache
    batch = catalog.engines["vllm"].max_num_batched_tokens
    print(f"{'TYPE':<30}{'MEMORY':>10}  {'SM':<5}{'FAMILY':<14}{'ARCH':<7}{'USD/H':>7} {'AS OF':<9}"
          f"{'GPUS/REPLICA':<13}{'FP8 KV':<7}{'CUDA GIB':>8}  {'VLLM BATCH':<11}GFD PRODUCTS", file=out)
    for a in (*catalog.accelerators.values(), catalog.cpu):
        price = catalog.prices[a.name]
        per_replica = str(a.max_gpus_per_replica) if a.is_gpu else "-"
        kv = ("yes" if fp8_kv.allows(fp8_kv.engine, a, fp8_kv.kv_cache_dtype) else "no") if a.is_gpu else "-"
        cuda = f"{a.capacity_gib:.2f}" if a.is_gpu else "-"
        tier = f"{batch.for_accelerator(a)}/{batch.seqs_for_accelerator(a)}" if a.is_gpu and batch else "-"
        print(f"{a.name:<30}{a.memory_gib:>7.0f}GiB  {a.compute or '-':<5}{a.family:<14}{a.arch:<7}"
              f"{price.usd_per_hour:>7.2f} {price.date:<9}{per_replica:<13}{kv:<7}{cuda:>8}  {tier:<11}"
              f"{', '.join(a.gfd_products) or '-'}", file=out)
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors are bad input: exit 1 (argparse's own 2 is this CLI's "cannot serve as asked")."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gemma4-operator", description=(
        "Plan, render and serve Gemma 4 on Kubernetes. `plan` and `render` work offline."))
    sub = parser.add_subparsers(dest="command", required=True)

    def with_file(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", help="YAML file with one or more Gemma4Deployments ('-' for stdin)")
        p.add_argument("--accelerator-price", action="append", default=[], metavar="TYPE=USD",
                       help="your price per GPU-hour of an accelerator type instead of the catalog's indicative "
                            "one; plans are ranked by cost per replica-hour (repeatable)")
        p.add_argument("--accelerator", action="append", metavar="TYPE",
                       help="accelerator type present in the cluster, for accelerator.type auto (repeatable; "
                            "default: every catalog type)")

    p_plan = sub.add_parser("plan", help="show the serving plan with its memory breakdown")
    with_file(p_plan)
    p_plan.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    p_plan.set_defaults(func=cmd_plan)

    p_render = sub.add_parser("render", help="print the child manifests as a YAML stream")
    with_file(p_render)
    p_render.add_argument("--owner-uid", help="uid of the live Gemma4Deployment, to add ownerReferences")
    p_render.add_argument("--prometheus-url", metavar="URL",
                          help="Prometheus HTTP API base URL for the triggers of autoscaling.backend keda "
                               "(as the operator's --prometheus-url); offline render assumes KEDA is installed")
    p_render.set_defaults(func=cmd_render)

    sub.add_parser("crd", help="print the CustomResourceDefinition").set_defaults(func=cmd_crd)
    sub.add_parser("accelerators", help="list catalog accelerator types").set_defaults(func=cmd_accelerators)

    p_download = sub.add_parser("download", help="the download Job's process: fetch the checkpoint and adapters, "
                                                 "check them, report in the termination log")
    download.add_download_arguments(p_download)
    p_download.set_defaults(func=download.cmd_download)

    p_activator = sub.add_parser("activator", help=(
        "run the activator of a scaled-to-zero object: hold requests until a replica is ready (the operator "
        "renders its Deployment)"))
    activator_settings.add_arguments(p_activator)
    p_activator.set_defaults(func=cmd_activator)

    p_run = sub.add_parser("run", help="run the operator (kopf) against the current cluster")
    operator_main.add_run_arguments(p_run)
    p_run.set_defaults(func=operator_main.cmd_run)

    return parser


def _detach_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what could not be written does not
    complain (with exit status 120) after the command has reported it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (1)
        return e.code if isinstance(e.code, int) else EXIT_INVALID
    stream = out or sys.stdout
    try:
        code: int = args.func(args, stream)
        stream.flush()
    except InputError as e:
        print(str(e), file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly, as other tools do
        _detach_stdout()
        return 0
    except OSError as e:  # writing the output failed (`> /dev/full`, a full disk)
        _detach_stdout()
        print(f"gemma4-operator {args.command}: cannot write the output: {e.strerror or e}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print(f"gemma4-operator {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the last resort: one line, never a traceback
        print(f"gemma4-operator {args.command}: internal error (a bug, please report it with the input): "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
