"""Autoscaling decisions: metric samples in, desired replicas out; exposition parsing; the KEDA object. Pure."""
