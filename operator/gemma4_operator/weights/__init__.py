"""Model weights: the download Job's script (``download_script.py``, standard library only, run as
``python3 -c SOURCE``) and what its termination message means for the model's status (``outcome.py``).
Pure: no kopf, kubernetes or HTTP client here."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def download_script_source() -> str:
    """The source of ``download_script.py``, for ``python3 -c`` in the download Job."""
    return resources.files(__package__).joinpath("download_script.py").read_text(encoding="utf-8")
