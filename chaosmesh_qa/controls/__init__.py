"""Chaos Toolkit controls shipped with chaosmesh-qa (safety net; later traffic and sandbox)."""
