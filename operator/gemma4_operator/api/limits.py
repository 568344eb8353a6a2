"""Bounds on what the operator reads from the pods of a Gemma4Deployment, whose images and commands
its author chooses. Pure.

A container's termination message is what its process wrote to ``/dev/termination-log`` (the serving
wrapper's kept error lines, the download Job's JSON report) or, with ``FallbackToLogsOnError``, the
kubelet's copy of its log tail. The kubelet keeps at most 4096 bytes per container (12 KiB per pod),
but status is a field like any other: whoever may write a pod's status can store more there. The
operator reads at most :data:`MAX_TERMINATION_MESSAGE_BYTES` of it, the end (where the error is),
behind a marker that says what was cut.
"""

from __future__ import annotations

MAX_TERMINATION_MESSAGE_BYTES = 4096  # the kubelet's own limit per container


def termination_message_tail(text: str, limit: int = MAX_TERMINATION_MESSAGE_BYTES) -> str:
    """``text`` when it is at most ``limit`` UTF-8 bytes, else its last ``limit`` bytes behind a marker."""
    if len(text) <= limit and len(text.encode("utf-8")) <= limit:
        return text
    tail = text[-limit:].encode("utf-8")[-limit:].decode("utf-8", "ignore")
    return f"[{len(text) - len(tail)} characters cut: the operator reads the last {limit} bytes] {tail}"
