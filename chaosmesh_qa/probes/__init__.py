"""Chaos Toolkit probes: numbers and booleans for tolerances (Prometheus, client timeline, recovery)."""
