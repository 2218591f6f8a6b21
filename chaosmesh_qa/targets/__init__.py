"""Mesh targets: where faults land and metrics come from (local sandbox, later Kubernetes)."""
