"""Path to promtool (Prometheus 2.42.0), used to check and unit-test the chart's alerting rules.

Installed on first use by ``promtool.sh`` (≈10 s: Debian 12's 19 MB ``prometheus`` package, fetched with
``apt-get download`` and unpacked with ``dpkg -x``, nothing installed) into
``${GEMMA4_TOOLS_CACHE:-~/.cache/gemma4-operator}/bin``.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from tests.tools.binaries import BinaryToolError, tools_cache_dir

DEB_VERSION = "2.42.0+ds-5+deb12u1"
PROMTOOL_SCRIPT = Path(__file__).resolve().parent / "promtool.sh"


@functools.cache
def promtool_path() -> Path:
    """Path of the promtool binary; runs promtool.sh when it is missing."""
    bin_dir = tools_cache_dir() / "bin"
    if (bin_dir / f".promtool-{DEB_VERSION}").is_file() and os.access(bin_dir / "promtool", os.X_OK):
        return bin_dir / "promtool"
    proc = subprocess.run(["bash", str(PROMTOOL_SCRIPT)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BinaryToolError(f"{PROMTOOL_SCRIPT.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1]) / "promtool"
