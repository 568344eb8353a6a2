"""Reconcile decisions, pure: the desired children of an object and what to write (``desired``), its status
and conditions from what the watch delivered (``status``, ``model_status``). The kopf shell in ``controller``
gathers the inputs and does the writes; nothing here talks to Kubernetes (an import-linter contract)."""
