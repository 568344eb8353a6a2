"""Observe, pure: what the live objects (children, pods, their events) say about a Gemma4Deployment, as
status faults. New status derivations live here; reconcile/status.py calls them."""
