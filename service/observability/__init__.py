"""Metrics, readiness probes, request log context and the offline API explorer."""
