"""Workloads the sandbox can run: the built-in demo app."""
