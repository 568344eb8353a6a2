"""The process's entry point: Ctrl-C, SIGTERM, SIGHUP and the other terminating signals end it with an exit
code (128 + the signal's number, as shells report it) and one line, never a traceback, whenever they arrive,
even while the CLI's modules are still being imported (which is why this module imports nothing heavy and
imports the CLI inside the handlers' reach).

`run` hands SIGINT and SIGTERM to kopf once the operator starts (a graceful stop, exit 0).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import NoReturn

# the signals whose default action ends the process without a core dump (SIGPIPE: Python ignores it)
TERMINATING = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)


class Terminated(BaseException):
    """A terminating signal, raised where the program is, like KeyboardInterrupt for SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - a signal handler's signature
    raise Terminated(signum)


def run() -> NoReturn:
    for sig in TERMINATING:
        signal.signal(sig, _terminate)
    for stream in (sys.stdout, sys.stderr):  # a message is never lost to an ASCII-only PYTHONIOENCODING
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        from gemma4_operator.cli.main import main

        code = main()
    except KeyboardInterrupt:
        print("gemma4-operator: interrupted", file=sys.stderr)
        code = 128 + signal.SIGINT
    except Terminated as e:
        print(f"gemma4-operator: terminated ({signal.Signals(e.signum).name})", file=sys.stderr)
        code = 128 + e.signum
    sys.exit(code)
