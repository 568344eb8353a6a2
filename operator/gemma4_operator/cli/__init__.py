"""The command line: offline plan / render / crd / accelerators, and run (the operator)."""
