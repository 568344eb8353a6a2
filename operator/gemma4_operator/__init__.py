"""Gemma 4 operator: plans, renders and reconciles Gemma4Deployments."""
