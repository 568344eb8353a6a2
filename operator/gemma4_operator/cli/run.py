"""`gemma4-operator run`: flags (with GEMMA4_* environment twins) -> OperatorConfig -> the operator.

Namespaces: ``--namespace`` (repeatable; kopf globs such as ``ml-*`` work) or cluster-wide
(the default, or ``--all-namespaces``).

High availability uses kopf peering (active/standby, no leader lease): install kopf's
``ClusterKopfPeering`` CRD (``KopfPeering`` for namespaced operators), create a peering object
named like ``--peering`` (default: kopf auto-detects one named ``default`` and falls back to
standalone), and give every replica a distinct ``--priority``: the highest-priority live
replica works, the others pause; equal priorities make all of them freeze. ``--standalone``
ignores peering entirely (a single replica; use a Deployment with ``strategy: Recreate``).

Start: the API server must answer within STARTUP_WAIT_S (exit 3 otherwise, exit 1 when it refuses the
credentials), so that no cluster is an error a user reads rather than kopf retrying forever.

Shutdown: SIGTERM/SIGINT stop kopf gracefully (watchers closed, running handlers finished);
then the API client is closed. Nothing needs cleaning up in the cluster: the operator uses
no finalizers in watch mode.

Heavy imports (kopf, kubernetes) happen when the operator starts, so the offline CLI stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from gemma4_operator.config import (
    ChildrenMode,
    ConfigError,
    EngineMonitors,
    LogFormat,
    OperatorConfig,
    image_keys,
    parse_images,
    parse_prices,
    split_list,
)
from gemma4_operator.controller.runner import configure_logging, make_context, run_operator
from gemma4_operator.policy import TenantPolicy, TenantPolicyError, parse_tenant_policy

if TYPE_CHECKING:
    from gemma4_operator.controller.context import OperatorContext

EXIT_OPERATOR_ERROR = 3
ENV_PREFIX = "GEMMA4_"
HOUR_S, DAY_S = 3600.0, 86400.0
_Choice = TypeVar("_Choice", bound=enum.StrEnum)


def _env(name: str, default: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    return (env if env is not None else os.environ).get(ENV_PREFIX + name, default)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=None, metavar="NS",
                       help="watch this namespace (repeatable; globs allowed). Env GEMMA4_NAMESPACES "
                            "(comma-separated). Default: all namespaces")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch all namespaces (the default)")
    p.add_argument("--image", action="append", default=None, metavar="KEY=IMAGE",
                   help=f"default image, KEY one of {', '.join(image_keys())} (an engine's, or the download Job's: "
                        "an image of this operator, which runs `gemma4-operator download`; the activator's: this "
                        "operator's image too; repeatable; a spec's serving.image still wins). Env GEMMA4_IMAGES "
                        "(comma-separated)")
    p.add_argument("--accelerator-price", action="append", default=None, metavar="TYPE=USD",
                   help="your price per GPU-hour of an accelerator type, instead of the catalog's indicative "
                        "on-demand price, for ranking plans by cost (repeatable). Env GEMMA4_ACCELERATOR_PRICES "
                        "(comma-separated)")
    p.add_argument("--accelerators", metavar="TYPES",
                   help="fixed accelerator types for accelerator.type auto (comma-separated; 'cpu' or 'none' for a "
                        "CPU-only cluster) instead of reading node labels (then no RBAC on nodes is needed). "
                        "Env GEMMA4_ACCELERATORS")
    _add_endpoint_arguments(p)
    _add_peering_arguments(p)
    p.add_argument("--children", choices=[m.value for m in ChildrenMode],
                   help="how drifted or deleted children are noticed: watch (default; kopf watches owned kinds "
                        "and pods, zero reads) or poll (a per-object timer re-reads them every "
                        "--resync-interval; adds kopf's finalizer). Env GEMMA4_CHILDREN")
    p.add_argument("--resync-interval", type=float, metavar="SECONDS",
                   help="poll mode: seconds between re-reads (default 60). Env GEMMA4_RESYNC_INTERVAL")
    p.add_argument("--request-timeout", type=float, metavar="SECONDS",
                   help="timeout of each API request of the operator (default 30). Env GEMMA4_REQUEST_TIMEOUT")
    p.add_argument("--prometheus-url", metavar="URL",
                   help="Prometheus HTTP API base URL, e.g. http://prometheus.monitoring:9090: the built-in "
                        "autoscaler reads accelerator/duty_cycle (DCGM) there and the keda backend points its "
                        "triggers at it. Env GEMMA4_PROMETHEUS_URL")
    p.add_argument("--engine-monitors", choices=[m.value for m in EngineMonitors],
                   help="auto (default): a PodMonitor per Gemma4Deployment for its engine pods where the Prometheus "
                        "Operator's PodMonitors are served; off: never (the pods carry prometheus.io/* scrape "
                        "annotations instead). Env GEMMA4_ENGINE_MONITORS")
    p.add_argument("--network-policy", action="store_true", default=None,
                   help="give every Gemma4Deployment a NetworkPolicy (ingress to its serving port only from its "
                        "namespace, the operator's and spec.networkPolicy.ingressFrom) unless its "
                        "spec.networkPolicy.enabled is false. Env GEMMA4_NETWORK_POLICY=true")
    p.add_argument("--epp-cluster-role", metavar="NAME",
                   help="the ClusterRole the chart ships for the endpoint picker (Helm routing.enabled): "
                        "spec.routing.inferencePool binds it to each object's picker and watches InferencePools, "
                        "HTTPRoutes, ConfigMaps, ServiceAccounts and RoleBindings; unset: no routing. "
                        "Env GEMMA4_EPP_CLUSTER_ROLE")
    p.add_argument("--tenant-policy", metavar="JSON",
                   help="what a Gemma4Deployment may set, as the Helm chart's tenantPolicy values in JSON (e.g. "
                        "'{\"imagePrefixes\": [\"registry.example.com/\"]}'; a key left out refuses everything "
                        "optional it covers): the operator refuses a spec that breaks it with Planned=False "
                        "(PolicyViolation). Default: no policy. Env GEMMA4_TENANT_POLICY")
    p.add_argument("--autoscale-interval", type=float, metavar="SECONDS",
                   help="seconds between two ticks of the built-in autoscaler per object (default 15). "
                        "Env GEMMA4_AUTOSCALE_INTERVAL")
    p.add_argument("--test-time-scale", type=float, help=argparse.SUPPRESS)  # tests only: config.py says why
    p.add_argument("--server", metavar="URL", help="API server URL without credentials (local testing; default: "
                                                   "in-cluster service account, else kubeconfig)")


class _Settings:
    """Each setting from its flag, else its GEMMA4_* environment variable, else its default; a value that
    does not parse is a ConfigError naming where it came from (``GEMMA4_METRICS_PORT 'abc': ...``)."""

    def __init__(self, env: Mapping[str, str] | None) -> None:
        self.env = env

    def text(self, flag_value: Any, flag: str, name: str, default: str) -> tuple[str, str]:
        """The raw value and where it came from: the flag, or the environment variable (empty: unset)."""
        if flag_value is not None:
            return str(flag_value), flag
        return _env(name, None, self.env) or default, ENV_PREFIX + name

    def integer(self, flag_value: Any, flag: str, name: str, default: int) -> int:
        raw, source = self.text(flag_value, flag, name, str(default))
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(f"{source} {raw[:60]!r}: expected a whole number") from None

    def seconds(self, flag_value: Any, flag: str, name: str, default: str, most: float) -> float:
        """A duration from 0 to ``most`` seconds (a huge one overflows the socket and timer calls that get it)."""
        raw, source = self.text(flag_value, flag, name, default)
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0 <= value <= most:  # also refuses nan
            raise ConfigError(f"{source} {raw[:60]!r}: expected a number of seconds from 0 to {most:.0f}")
        return value

    def choice(self, kind: type[_Choice], flag_value: Any, flag: str, name: str, default: _Choice) -> _Choice:
        raw, source = self.text(flag_value, flag, name, default.value)
        try:
            return kind(raw.strip())
        except ValueError:
            raise ConfigError(f"{source} {raw[:60]!r}: expected one of {', '.join(m.value for m in kind)}") from None


def _add_endpoint_arguments(p: argparse.ArgumentParser) -> None:
    """The operator's own endpoints and logs."""
    p.add_argument("--metrics-port", type=int, help="prometheus /metrics port, 0 to disable (default 8080). "
                                                    "Env GEMMA4_METRICS_PORT")
    p.add_argument("--metrics-bind-address", metavar="IP",
                   help="address the /metrics endpoint listens on: 127.0.0.1 keeps the series (they name every "
                        "tenant's objects) inside the pod, where kubectl port-forward still reaches them "
                        "(default 0.0.0.0: every IPv4 interface). Env GEMMA4_METRICS_BIND_ADDRESS")
    p.add_argument("--health-port", type=int, help="kopf liveness endpoint /healthz port, 0 to disable (default "
                                                   "8081). Env GEMMA4_HEALTH_PORT")
    p.add_argument("--log-format", choices=[f.value for f in LogFormat],
                   help="log format (default text). Env GEMMA4_LOG_FORMAT")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _add_peering_arguments(p: argparse.ArgumentParser) -> None:
    """kopf peering (HA: one active replica)."""
    p.add_argument("--peering", metavar="NAME", help="kopf peering object for HA (active/standby). "
                                                     "Env GEMMA4_PEERING")
    p.add_argument("--priority", type=int, help="peering priority; every replica needs a distinct one. "
                                                "Env GEMMA4_PRIORITY")
    p.add_argument("--standalone", action="store_true", help="ignore peering (single replica)")


def config_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> OperatorConfig:
    """Flags win over GEMMA4_* environment variables, which win over defaults."""
    settings = _Settings(env)
    namespaces: tuple[str, ...] = ()
    if args.namespace:
        namespaces = tuple(args.namespace)
    elif not args.all_namespaces:
        namespaces = split_list(_env("NAMESPACES", None, env))
    images = parse_images(args.image if args.image is not None else split_list(_env("IMAGES", None, env)))
    prices = parse_prices(args.accelerator_price if args.accelerator_price is not None
                          else split_list(_env("ACCELERATOR_PRICES", None, env)))
    children = settings.choice(ChildrenMode, args.children, "--children", "CHILDREN", ChildrenMode.WATCH)
    return OperatorConfig(
        namespaces=namespaces,
        images=images,
        prices=prices,
        accelerator_types=_accelerators(args.accelerators, env),
        metrics_port=settings.integer(args.metrics_port, "--metrics-port", "METRICS_PORT", 8080),
        metrics_bind_address=settings.text(args.metrics_bind_address, "--metrics-bind-address",
                                           "METRICS_BIND_ADDRESS", "0.0.0.0")[0],
        health_port=settings.integer(args.health_port, "--health-port", "HEALTH_PORT", 8081),
        log_format=settings.choice(LogFormat, args.log_format, "--log-format", "LOG_FORMAT", LogFormat.TEXT),
        verbose=bool(args.verbose),
        peering_name=args.peering or _env("PEERING", None, env),
        standalone=bool(args.standalone),
        priority=settings.integer(args.priority, "--priority", "PRIORITY", 0),
        children=children,
        resync_interval=settings.seconds(args.resync_interval, "--resync-interval", "RESYNC_INTERVAL",
                                         "60" if children is ChildrenMode.POLL else "0", most=DAY_S),
        request_timeout=settings.seconds(args.request_timeout, "--request-timeout", "REQUEST_TIMEOUT", "30",
                                         most=HOUR_S),
        server=args.server or None,
        prometheus_url=str(args.prometheus_url or _env("PROMETHEUS_URL", "", env) or "").rstrip("/"),
        engine_monitors=settings.choice(EngineMonitors, args.engine_monitors, "--engine-monitors",
                                        "ENGINE_MONITORS", EngineMonitors.AUTO),
        network_policy=bool(args.network_policy) or (_env("NETWORK_POLICY", "", env) or "").lower() in ("true", "1"),
        operator_namespace=(env if env is not None else os.environ).get("POD_NAMESPACE", ""),
        tenant_policy=_tenant_policy(args.tenant_policy, env),
        autoscale_interval=settings.seconds(args.autoscale_interval, "--autoscale-interval", "AUTOSCALE_INTERVAL",
                                            "15", most=HOUR_S),
        scale_to_zero_time_scale=args.test_time_scale or 1.0,
        epp_cluster_role=str(args.epp_cluster_role or _env("EPP_CLUSTER_ROLE", "", env) or ""),
    )


def _tenant_policy(flag: str | None, env: Mapping[str, str] | None) -> TenantPolicy | None:
    """--tenant-policy / GEMMA4_TENANT_POLICY (JSON, set by the chart); None: no policy re-check."""
    raw = flag if flag is not None else _env("TENANT_POLICY", None, env)
    if raw is None:
        return None
    try:
        return parse_tenant_policy(raw)
    except TenantPolicyError as e:
        source = "--tenant-policy" if flag is not None else ENV_PREFIX + "TENANT_POLICY"
        raise ConfigError(f"{source}: {e}") from e


def _accelerators(flag: str | None, env: Mapping[str, str] | None) -> tuple[str, ...] | None:
    """--accelerators / GEMMA4_ACCELERATORS: fixed GPU types; 'none' or 'cpu': CPU nodes only (as
    `plan --accelerator cpu`); None: read node labels."""
    raw = flag if flag is not None else _env("ACCELERATORS", None, env)
    if raw is None:
        return None
    accelerators = tuple(a for a in split_list(raw) if a.lower() not in ("none", "cpu"))
    from gemma4_operator.catalog import load_catalog

    unknown = [a for a in accelerators if a not in load_catalog().accelerators]
    if unknown:
        source = "--accelerators" if flag is not None else ENV_PREFIX + "ACCELERATORS"
        raise ConfigError(f"{source} {', '.join(unknown)}: not a catalog GPU type")
    return accelerators


DEFAULT_KUBECONFIG = "~/.kube/config"


def no_credentials_message(error: Exception, env: Mapping[str, str] | None = None) -> str:
    """One line for the kubernetes client's ConfigException: neither in-cluster nor kubeconfig worked."""
    env = env if env is not None else os.environ
    files = env.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    existing = [f for f in files.split(os.pathsep) if f and os.path.exists(os.path.expanduser(f))]
    where = "not in a cluster (no KUBERNETES_SERVICE_HOST)" if not env.get("KUBERNETES_SERVICE_HOST") else (
        "the in-cluster service account is unusable")
    if not existing:
        kubeconfig = f"no kubeconfig at {files}"
    else:
        detail = " ".join(str(error).split()) or type(error).__name__
        if type(error).__name__ != "ConfigException":
            detail = f"{type(error).__name__}: {detail}"
        kubeconfig = f"kubeconfig {', '.join(existing)} is unusable: {detail}"
    return f"no Kubernetes credentials: {where} and {kubeconfig} (set KUBECONFIG or --server)"


MAX_KUBECONFIG_BYTES = 16 << 20  # the client reads a kubeconfig whole: not /dev/zero, not a pipe that never ends


def kubeconfig_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why the KUBECONFIG files cannot be handed to the kubernetes client (which reads each one whole, without
    a limit), or None. Missing files are the client's to report (with the in-cluster attempt)."""
    env = env if env is not None else os.environ
    for name in (env.get("KUBECONFIG") or "").split(os.pathsep):
        path = os.path.expanduser(name)
        if not name or not os.path.exists(path):
            continue
        if not os.path.isfile(path):
            return f"KUBECONFIG {name}: not a regular file"
        if os.path.getsize(path) > MAX_KUBECONFIG_BYTES:
            return f"KUBECONFIG {name}: larger than {MAX_KUBECONFIG_BYTES >> 20} MiB, not a kubeconfig"
    return None


STARTUP_WAIT_S = 15.0  # how long `run` waits at start for an API server that does not answer
PROBE_TIMEOUT_S = 5.0  # per attempt


def api_server_problem(ctx: OperatorContext, wait_s: float = STARTUP_WAIT_S) -> tuple[int, str] | None:
    """Exit code and message when the API server refuses the credentials (1) or does not answer within
    ``wait_s`` (3: started by the kubelet, the operator is restarted with backoff); None once it answers
    anything else. kopf would otherwise retry forever, logging, with nothing to tell a user it has no cluster."""
    from kubernetes.client import ApiException

    from gemma4_operator.controller.kube import Kube, RetryableApiError

    host = ctx.kube.api.configuration.host
    probe = Kube(ctx.kube.api, request_timeout=min(PROBE_TIMEOUT_S, ctx.config.request_timeout))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            probe.server_version()
            return None
        except RetryableApiError as e:
            cause = e.__cause__
            if isinstance(cause, ApiException) and cause.status == 401:
                return 1, f"the API server at {host} refused the credentials: {e} (check KUBECONFIG)"
            if e.reason not in ("ConnectionError", "Timeout"):
                return None  # it answered: what it answered is the operator's to handle
            if time.monotonic() >= deadline:
                return EXIT_OPERATOR_ERROR, (f"no API server answers at {host} (waited {wait_s:.0f} s): {e} "
                                             "(check KUBECONFIG or --server)")
        time.sleep(1.0)


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:  # noqa: ARG001 - the CLI's command signature
    try:
        config = config_from_args(args)
    except ConfigError as e:
        print(f"gemma4-operator run: {e}", file=sys.stderr)
        return 1
    problem = None if config.server or os.environ.get("KUBERNETES_SERVICE_HOST") else kubeconfig_problem()
    if problem:
        print(f"gemma4-operator run: {problem}", file=sys.stderr)
        return 1
    configure_logging(config)
    try:
        ctx = make_context(config)
    except Exception as e:  # kubernetes' ConfigException, or whatever an unreadable kubeconfig raises
        print(f"gemma4-operator run: {no_credentials_message(e)}", file=sys.stderr)
        return 1
    try:
        return _serve(ctx)
    finally:
        ctx.kube.close()


def _serve(ctx: OperatorContext) -> int:
    """Serve the metrics, check the API server, run the operator until it stops: the exit code. The metrics
    socket comes first: a local setting that cannot work is refused at once, not after waiting for the API."""
    config = ctx.config
    try:
        if config.metrics_port:
            ctx.metrics.serve(config.metrics_port, config.metrics_bind_address)
    except OSError as e:
        print(f"gemma4-operator run: cannot serve metrics on {config.metrics_bind_address} port "
              f"{config.metrics_port}: {e.strerror or e} (--metrics-bind-address, --metrics-port)", file=sys.stderr)
        return 1
    unusable = api_server_problem(ctx)
    if unusable is not None:
        print(f"gemma4-operator run: {unusable[1]}", file=sys.stderr)
        return unusable[0]
    try:
        asyncio.run(run_operator(ctx))
    except Exception as e:
        print(f"gemma4-operator run: stopped with an error: {e}", file=sys.stderr)
        return EXIT_OPERATOR_ERROR
    return 0
