"""Reconcile benchmark against kmock: the operator (`gemma4-operator run`, a subprocess) and N
Gemma4Deployments created at once.

Measured per (mode, N):
- seconds from the first create until every object's Deployment and Service exist;
- API requests per object until the operator goes quiet, reads (list/get; watch streams are
  counted apart, they are long-lived) and writes (server-side applies, status patches, events,
  kopf's own annotation patches);
- requests during an idle period (default 120 s) that includes every resync the mode has;
- the operator's peak RSS (VmHWM of the subprocess).

The Emulator (kmock_plus) runs in this process; kmock is a Python mock, so absolute latencies
are an upper bound of what a real API server would show. kmock runs no controllers and no
kubelet: Deployments never get ready, so no pod churn is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "integration"))

import harness as h  # noqa: E402
from kmock_plus import APPLY_PATCH, Emulator  # noqa: E402

NODES = [("gpu-l4", {"nvidia.com/gpu.product": "NVIDIA-L4"}),
         ("gpu-h100", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
         ("cpu-1", {"kubernetes.io/arch": "amd64"})]


def spec_for(i: int) -> dict[str, Any]:
    """A mix: auto on the cheapest GPU, an MoE on H100, a CPU model, and one with PVC + PDB."""
    return [
        {"model": {"variant": "e4b"}},
        {"model": {"variant": "26b-a4b"}, "quantization": "fp8", "accelerator": {"type": "nvidia-h100-80gb"}},
        {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}},
        {"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"}, "replicas": 2,
         "storage": {"modelCache": {"accessModes": ["ReadWriteMany"]}}},
    ][i % 4]


@dataclasses.dataclass
class Result:
    mode: str
    n: int
    children_s: float
    settle_s: float
    reads: int
    event_reads: int  # of the reads: lists of Events (the download Job's FailedCreate, while it has no pod)
    watches: int
    writes: int
    applies: int
    status_patches: int
    events: int
    kopf_patches: int
    idle_s: float
    idle_reads: int
    idle_writes: int
    peak_rss_mib: float
    operator_cpu_s: float
    shutdown_s: float
    exit_code: int

    @property
    def reads_per_object(self) -> float:
        return self.reads / self.n

    @property
    def writes_per_object(self) -> float:
        return self.writes / self.n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _classify(requests: list[Any]) -> dict[str, int]:
    out = {"reads": 0, "event_reads": 0, "watches": 0, "writes": 0, "applies": 0, "status": 0, "events": 0,
           "kopf": 0}
    for r in requests:
        if not h.is_write(r):
            if r.params.get("watch") in ("true", "1"):
                out["watches"] += 1
            elif h.is_resource(r):
                out["reads"] += 1
                out["event_reads"] += r.resource.plural == "events"
            continue
        out["writes"] += 1
        plural = r.resource.plural if h.is_resource(r) else ""
        if str(r.headers.get("Content-Type", "")).startswith(APPLY_PATCH):
            out["applies"] += 1
        elif plural == "gemma4deployments" and r.subresource == "status":
            out["status"] += 1
        elif plural == "events":
            out["events"] += 1
        elif plural == "gemma4deployments":
            out["kopf"] += 1
    return out


async def _healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {proc.returncode} while starting")
        try:
            await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError("the operator never answered /healthz")


async def _complete_downloads(k: Emulator) -> None:
    """Play the Job controller (kmock has none): each model download Job succeeds as soon as it exists, so
    the serving Deployments it holds back are created. Its requests are not the operator's."""
    while True:
        for job in h.objects(k, h.JOBS):
            if not (job.get("status") or {}).get("succeeded"):
                await h.complete_download(k, job["metadata"]["namespace"],
                                          job["metadata"]["name"].removesuffix("-download"))
        await asyncio.sleep(0.05)


async def _quiet(k: Emulator, quiet: float, timeout: float) -> None:
    """Until the operator wrote nothing for `quiet` seconds (poll mode never stops reading)."""
    deadline = time.monotonic() + timeout
    seen, since = len(h.writes(k)), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = len(h.writes(k))
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise RuntimeError("the operator never went quiet")


async def run_one(mode: str, n: int, idle: float, resync: float, log: Path | None = None) -> Result:
    async with h.emulator() as k:
        for name, labels in NODES:
            await h.create(k, h.NODES, h.node(name, labels))
        health = _free_port()
        cmd = [sys.executable, "-m", "gemma4_operator", "run", "--server", str(k.url).rstrip("/"), "--standalone",
               "--metrics-port", "0", "--health-port", str(health), "--children", mode, "--log-format", "json"]
        if mode == "poll":
            cmd += ["--resync-interval", str(resync)]
        out = log.open("wb") if log else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            await _healthy(health, proc)
            await h.wait_for(lambda: any(r.params.get("watch") and h.is_resource(r)
                                         and r.resource.plural == "gemma4deployments" for r in h.all_requests(k)),
                             timeout=30, what="the operator watching")
            await asyncio.sleep(1.0)  # initial listing done
            mark = len(h.operator_requests(k))

            started = time.monotonic()
            downloads = asyncio.create_task(_complete_downloads(k))
            await h.gather_limited((h.create(k, h.G4D, h.g4d(f"m{i:04d}", f"ns{i % 5}", **spec_for(i)))
                                    for i in range(n)), limit=n)

            def all_children() -> bool:
                deployments = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in h.objects(k, h.DEPLOYMENTS)}
                services = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in h.objects(k, h.SERVICES)}
                return len(deployments) >= n and len(services) >= n

            await h.wait_for(all_children, timeout=600, interval=0.05, what="all children")
            children_s = time.monotonic() - started
            downloads.cancel()
            await _quiet(k, 2.0, 600)
            settle_s = time.monotonic() - started - 2.0
            cpu_s = _cpu_seconds(proc.pid)
            burst = _classify(h.operator_requests(k)[mark:])

            idle_mark = len(h.operator_requests(k))
            idle_started = time.monotonic()
            await asyncio.sleep(idle)
            idle_requests = h.operator_requests(k)[idle_mark:]
            idle_counts = _classify(idle_requests)
            idle_s = time.monotonic() - idle_started
            peak = _peak_rss_mib(proc.pid)

            stop = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 60)
            shutdown_s = time.monotonic() - stop
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if log:
                with contextlib.suppress(Exception):
                    out.close()  # type: ignore[union-attr]
        return Result(mode=mode, n=n, children_s=children_s, settle_s=settle_s, reads=burst["reads"],
                      event_reads=burst["event_reads"],
                      watches=burst["watches"], writes=burst["writes"], applies=burst["applies"],
                      status_patches=burst["status"], events=burst["events"], kopf_patches=burst["kopf"],
                      idle_s=idle_s, idle_reads=idle_counts["reads"], idle_writes=idle_counts["writes"],
                      peak_rss_mib=peak, operator_cpu_s=cpu_s, shutdown_s=shutdown_s, exit_code=code)


def table(results: list[Result]) -> str:
    head = ("mode", "N", "children s", "settled s", "reads/obj", "writes/obj", "apply/status/event/kopf per obj",
            "idle s", "idle reads", "idle writes", "peak RSS MiB", "operator CPU s", "SIGTERM s")
    rows = [head]
    for r in results:
        rows.append((r.mode, str(r.n), f"{r.children_s:.1f}", f"{r.settle_s:.1f}", f"{r.reads_per_object:.2f}",
                     f"{r.writes_per_object:.2f}",
                     "/".join(f"{count / r.n:.2f}" for count in (r.applies, r.status_patches, r.events,
                                                                  r.kopf_patches)),
                     f"{r.idle_s:.0f}", str(r.idle_reads), str(r.idle_writes), f"{r.peak_rss_mib:.0f}",
                     f"{r.operator_cpu_s:.1f}",
                     f"{r.shutdown_s:.1f} (exit {r.exit_code})"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def run_all(sizes: list[int], modes: list[str], idle: float, resync: float, logs: Path | None) -> list[Result]:
    results = []
    for mode in modes:
        for n in sizes:
            log = logs / f"operator-{mode}-{n}.log" if logs else None
            result = await run_one(mode, n, idle, resync, log)
            print(f"  {mode:5} N={n:<4} children {result.children_s:.1f}s, {result.writes_per_object:.2f} "
                  f"writes/obj, idle writes {result.idle_writes}, peak RSS {result.peak_rss_mib:.0f} MiB",
                  file=sys.stderr, flush=True)
            results.append(result)
    return results


def environment() -> str:
    return f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
