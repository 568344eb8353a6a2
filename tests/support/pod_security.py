"""The Pod Security Standards' "restricted" profile as checks over a pod spec, for tests.

Written from the standard (https://kubernetes.io/docs/concepts/security/pod-security-standards/) and its
implementation, the checks in kubernetes/kubernetes staging/src/k8s.io/pod-security-admission/policy/check_*.go
(read at release-1.36; 1.37 adds only two safe sysctls). Restricted is every Baseline control plus the
Restricted ones; where a Restricted check overrides a Baseline one (volumes, seccomp, capabilities, procMount),
only the stricter one is here. Each check returns what it forbids in words, or None.

| control (standard) | upstream check ID | what is forbidden |
|---|---|---|
| HostProcess | windowsHostProcess | windowsOptions.hostProcess true (pod or container) |
| Host Namespaces | hostNamespaces | hostNetwork, hostPID, hostIPC true |
| Privileged Containers | privileged | securityContext.privileged true |
| Host Ports | hostPorts | ports[].hostPort other than 0 |
| AppArmor | appArmorProfile | a profile type other than RuntimeDefault or Localhost |
| SELinux | seLinuxOptions | a type outside the allowed set; any user or role |
| /proc Mount Type | procMount_restricted | procMount other than Default |
| Sysctls | sysctls | a sysctl outside the safe set |
| Host probes / lifecycle hooks | hostProbesAndHostLifecycle | httpGet.host or tcpSocket.host on probes and hooks |
| Volume Types | restrictedVolumes | a volume other than the nine allowed types |
| Privilege Escalation | allowPrivilegeEscalation | a container without allowPrivilegeEscalation: false |
| Running as Non-root | runAsNonRoot | runAsNonRoot not true (pod level, or on every container) |
| Running as Non-root user | runAsUser | runAsUser 0 (pod or container) |
| Seccomp | seccompProfile_restricted | no RuntimeDefault/Localhost profile (pod, or every container) |
| Capabilities | capabilities_restricted | drop without ALL; add other than NET_BIND_SERVICE |

The `image` volume type (oci:// sources) is allowed since Kubernetes 1.33 (kubernetes/kubernetes#130394, added
to the 1.0 check, so at every policy version); older servers refuse those pods in a restricted namespace.
User-namespace pods (hostUsers: false) relax runAsNonRoot and runAsUser since policy 1.35; our pods do not use
them, so the relaxation is left out (the check is stricter, never looser).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Pod = dict[str, Any]  # a PodSpec
Check = Callable[[Pod, dict[str, Any]], "str | None"]

ALLOWED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                             "persistentVolumeClaim", "projected", "secret"})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})


def containers(pod: Pod) -> Iterator[dict[str, Any]]:
    """Containers, init containers and ephemeral containers (upstream's visitor.go visits all three)."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(key) or []


def _ctx(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


def _names(bad: list[str]) -> str | None:
    return ", ".join(bad) if bad else None


def host_process(pod: Pod, _meta: dict[str, Any]) -> str | None:
    owners = [("pod", _ctx(pod)), *((c["name"], _ctx(c)) for c in containers(pod))]
    return _names([n for n, ctx in owners if (ctx.get("windowsOptions") or {}).get("hostProcess")])


def host_namespaces(pod: Pod, _meta: dict[str, Any]) -> str | None:
    return _names([f for f in ("hostNetwork", "hostPID", "hostIPC") if pod.get(f)])


def privileged(pod: Pod, _meta: dict[str, Any]) -> str | None:
    return _names([c["name"] for c in containers(pod) if _ctx(c).get("privileged")])


def host_ports(pod: Pod, _meta: dict[str, Any]) -> str | None:
    return _names([f"{c['name']}:{p['hostPort']}" for c in containers(pod) for p in c.get("ports") or []
                   if p.get("hostPort")])


def app_armor(pod: Pod, meta: dict[str, Any]) -> str | None:
    owners = [("pod", _ctx(pod)), *((c["name"], _ctx(c)) for c in containers(pod))]
    bad = [n for n, ctx in owners if "appArmorProfile" in ctx and ctx["appArmorProfile"].get("type")
           not in APPARMOR_TYPES]
    bad += [k for k, v in (meta.get("annotations") or {}).items() if k.startswith(APPARMOR_ANNOTATION)
            and v != "runtime/default" and not v.startswith("localhost/")]
    return _names(bad)


def se_linux(pod: Pod, _meta: dict[str, Any]) -> str | None:
    owners = [("pod", _ctx(pod)), *((c["name"], _ctx(c)) for c in containers(pod))]
    bad = [n for n, ctx in owners if (opts := ctx.get("seLinuxOptions")) is not None
           and (opts.get("type", "") not in SELINUX_TYPES or opts.get("user") or opts.get("role"))]
    return _names(bad)


def proc_mount(pod: Pod, _meta: dict[str, Any]) -> str | None:
    return _names([c["name"] for c in containers(pod) if _ctx(c).get("procMount", "Default") != "Default"])


def sysctls(pod: Pod, _meta: dict[str, Any]) -> str | None:
    return _names([s["name"] for s in _ctx(pod).get("sysctls") or [] if s["name"] not in SAFE_SYSCTLS])


def host_probes(pod: Pod, _meta: dict[str, Any]) -> str | None:
    bad = []
    for c in containers(pod):
        handlers = [c.get(p) or {} for p in ("livenessProbe", "readinessProbe", "startupProbe")]
        handlers += [(c.get("lifecycle") or {}).get(h) or {} for h in ("postStart", "preStop")]
        if any((h.get(kind) or {}).get("host") for h in handlers for kind in ("httpGet", "tcpSocket")):
            bad.append(c["name"])
    return _names(bad)


def volume_types(pod: Pod, _meta: dict[str, Any]) -> str | None:
    return _names([v["name"] for v in pod.get("volumes") or [] if not (set(v) - {"name"}) <= ALLOWED_VOLUMES])


def privilege_escalation(pod: Pod, _meta: dict[str, Any]) -> str | None:
    return _names([c["name"] for c in containers(pod) if _ctx(c).get("allowPrivilegeEscalation") is not False])


def run_as_non_root(pod: Pod, _meta: dict[str, Any]) -> str | None:
    pod_level = _ctx(pod).get("runAsNonRoot")
    bad = [c["name"] for c in containers(pod) if _ctx(c).get("runAsNonRoot") is False
           or (_ctx(c).get("runAsNonRoot") is None and pod_level is not True)]
    return _names(["pod"] if pod_level is False else bad)


def run_as_user(pod: Pod, _meta: dict[str, Any]) -> str | None:
    owners = [("pod", _ctx(pod)), *((c["name"], _ctx(c)) for c in containers(pod))]
    return _names([n for n, ctx in owners if ctx.get("runAsUser") == 0])


def seccomp(pod: Pod, _meta: dict[str, Any]) -> str | None:
    pod_type = (_ctx(pod).get("seccompProfile") or {}).get("type")
    bad = ["pod"] if pod_type is not None and pod_type not in SECCOMP_TYPES else []
    for c in containers(pod):
        own = (_ctx(c).get("seccompProfile") or {}).get("type")
        if (own is not None and own not in SECCOMP_TYPES) or (own is None and pod_type not in SECCOMP_TYPES):
            bad.append(c["name"])
    return _names(bad)


def capabilities(pod: Pod, _meta: dict[str, Any]) -> str | None:
    bad = []
    for c in containers(pod):
        caps = _ctx(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(c["name"])
    return _names(bad)


CHECKS: dict[str, Check] = {
    "windowsHostProcess": host_process, "hostNamespaces": host_namespaces, "privileged": privileged,
    "hostPorts": host_ports, "appArmorProfile": app_armor, "seLinuxOptions": se_linux,
    "procMount_restricted": proc_mount, "sysctls": sysctls, "hostProbesAndHostLifecycle": host_probes,
    "restrictedVolumes": volume_types, "allowPrivilegeEscalation": privilege_escalation,
    "runAsNonRoot": run_as_non_root, "runAsUser": run_as_user, "seccompProfile_restricted": seccomp,
    "capabilities_restricted": capabilities,
}


def restricted_violations(template: dict[str, Any]) -> dict[str, str]:
    """check ID -> what it forbids, for a pod template ({metadata, spec}); empty when the pod passes."""
    pod, meta = template.get("spec") or {}, template.get("metadata") or {}
    return {name: found for name, check in CHECKS.items() if (found := check(pod, meta)) is not None}
