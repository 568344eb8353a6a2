"""A fault-injecting proxy (mitmproxy) between the operator and the e2e API server: see proxy.py and addon.py."""

from .proxy import FaultProxy, Faults, mitmdump_path

__all__ = ["FaultProxy", "Faults", "mitmdump_path"]
