"""The process's entry point: Ctrl-C and SIGTERM end it with an exit code and one line, never a traceback,
whenever they arrive, even while the CLI's modules are still being imported (which is why this module
imports nothing heavy and imports the CLI inside the handlers' reach).

`run` hands both signals to kopf once the operator starts (a graceful stop, exit 0).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import NoReturn

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, as shells report a process Ctrl-C stopped
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(BaseException):
    """SIGTERM, raised where the program is, like KeyboardInterrupt for SIGINT."""


def _terminate(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - a signal handler's signature
    raise Terminated


def run() -> NoReturn:
    signal.signal(signal.SIGTERM, _terminate)
    for stream in (sys.stdout, sys.stderr):  # a message is never lost to an ASCII-only PYTHONIOENCODING
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        from gemma4_operator.cli.main import main

        code = main()
    except KeyboardInterrupt:
        print("gemma4-operator: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Terminated:
        print("gemma4-operator: terminated", file=sys.stderr)
        code = EXIT_TERMINATED
    sys.exit(code)
